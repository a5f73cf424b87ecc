"""``make torture``: every torture script at full size, one after the other. Prints each script's figures,
writes them into docs/reliability.md (between the ``torture:begin``/``torture:end`` markers, with the date
and the machine) and exits 1 if any script found a loss, a duplicate, a stuck message or corruption.

    python -m tests.torture.run_all [--quick] [--no-docs] [--skip kill_storm_browser,...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from tests.torture.common import ROOT, python_env

FULL: list[tuple[str, list[str]]] = [
    ("kill_storm_fake", ["--messages", "3000", "--kills", "300", "--seed", "11"]),
    ("kill_storm_fake", ["--messages", "1000", "--kills", "40", "--seed", "14", "--blind-page"]),
    ("kill_storm_browser", ["--messages", "500", "--kills", "60", "--seed", "7"]),
    ("kill_storm_browser", ["--messages", "120", "--kills", "30", "--seed", "8", "--blind-page"]),
    ("kill_storm_cloud", ["--messages", "2000", "--kills", "30", "--seed", "3"]),
    ("zombie", ["--rounds", "3"]),
    ("importer_kill", ["--rows", "100000", "--kills", "4", "--seed", "1"]),
    ("queue_stress", ["--messages", "100000", "--procs", "4"]),
    ("faults", []),
]
QUICK: dict[str, list[str]] = {
    "kill_storm_fake": ["--messages", "100", "--kills", "10"],
    "kill_storm_fake --blind-page": [
        *("--messages", "120", "--kills", "9", "--blind-page", "--blind-seconds", "20"),
    ],
    "kill_storm_browser": ["--messages", "12", "--kills", "3"],
    "kill_storm_browser --blind-page": [
        "--messages",
        "12",
        "--kills",
        "4",
        "--blind-page",
        "--blind-seconds",
        "20",
    ],
    "kill_storm_cloud": ["--messages", "200", "--kills", "4"],
    "zombie": ["--rounds", "1"],
    "importer_kill": ["--rows", "5000", "--kills", "2"],
    "queue_stress": ["--messages", "3000"],
    "faults": [],
}
BEGIN, END = "<!-- torture:begin -->", "<!-- torture:end -->"


def run_one(name: str, args: list[str]) -> tuple[int, dict | None, str]:
    cmd = [sys.executable, "-m", f"tests.torture.{name}", *args]
    res = subprocess.run(cmd, cwd=ROOT, env=python_env(), capture_output=True, text=True)
    figures = None
    for line in res.stdout.splitlines():
        if line.startswith("FIGURES "):
            figures = json.loads(line[len("FIGURES ") :])
        else:
            print(f"  {line}", flush=True)
    if figures is None:
        print(res.stderr[-3000:], file=sys.stderr)
    return res.returncode, figures, " ".join(["python -m", f"tests.torture.{name}", *args])


def table(results: list[tuple[int, dict | None, str]], seconds: float) -> str:
    cpu = os.cpu_count()
    lines = [
        f"Last full run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.system()} "
        f"{platform.machine()}, {cpu} CPU(s), Python {platform.python_version()}, "
        f"{seconds / 60:.1f} min in all (`make torture`).",
        "",
        "| script | messages | kills | delivered | lost | duplicates | stuck | integrity | other | result |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for code, f, cmd in results:
        if f is None:
            lines.append(f"| `{cmd}` | - | - | - | - | - | - | - | crashed | FAIL |")
            continue
        other = ", ".join(f"{k}={v}" for k, v in f["extra"].items() if k != "problems")
        lines.append(
            f"| `{cmd}` | {f['messages']} | {f['kills']} | {f['delivered']} | {f['lost']} | "
            f"{f['duplicates']} | {f['stuck']} | {f['integrity']} | {other} | "
            f"{'PASS' if code == 0 else 'FAIL'} |"
        )
    return "\n".join(lines)


def write_docs(text: str) -> None:
    doc = ROOT / "docs" / "reliability.md"
    body = doc.read_text(encoding="utf-8")
    if BEGIN not in body or END not in body:
        print(f"{doc} has no {BEGIN} markers; figures not written", file=sys.stderr)
        return
    head, rest = body.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the small sizes of make test")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/reliability.md")
    ap.add_argument("--skip", default="", help="comma-separated scripts to leave out")
    a = ap.parse_args(argv)
    skip = {s for s in a.skip.split(",") if s}
    t0 = time.monotonic()
    results = []
    for name, args in FULL:
        if name in skip:
            continue
        key = name + (" --blind-page" if "--blind-page" in args else "")
        args = QUICK[key] if a.quick else args
        print(f"== {name} {' '.join(args)}", flush=True)
        results.append(run_one(name, args))
    text = table(results, time.monotonic() - t0)
    print(text)
    if not a.quick and not a.no_docs and not skip:
        write_docs(text)
    return 0 if all(code == 0 for code, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
