"""Start-up: wall time of `wabulk --help`, `wabulk status --json` and `wabulk status` vs `python -c pass`,
and which heavy modules (Typer, pydantic, Rich, Selenium, httpx, phonenumbers...) those commands import
(python -X importtime). None of them may load provider code (selenium, httpx, wabulk.web).

`wabulk status --json` is answered by the console script's fast path (src/wabulk/entry.py) without Typer;
`wabulk --help` and `wabulk status` go through Typer."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, ROOT, Row, finish, median, parser  # noqa: E402

HEAVY = (
    "typer",
    "pydantic",
    "rich",
    "selenium",
    "phonenumbers",
    "openpyxl",
    "segno",
    "tenacity",
    "sqlite_utils",
    "httpx",
    "wabulk.web",
    "wabulk.cloud",
    "wabulk.worker",
    "wabulk.contacts",
)
# Provider code (a browser driver or an HTTP client): `status` must load none of it.
PROVIDER_CODE = {"selenium", "httpx", "wabulk.web"}


def _entry() -> list[str]:
    """How a user runs wabulk: the console script when installed next to this Python, else the module."""
    script = Path(PYTHON).with_name("wabulk")
    return [str(script)] if script.exists() else [PYTHON, "-m", "wabulk"]


def wall(cmd: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - t)
    return median(times)


def imported(cmd_args: list[str], env: dict[str, str]) -> tuple[list[str], float]:
    """Top-level heavy packages imported by ``python -X importtime -m wabulk <args>``, and the total
    cumulative import time of wabulk.cli in ms."""
    p = subprocess.run(
        [PYTHON, "-X", "importtime", "-m", "wabulk", *cmd_args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found, cli_us = set(), 0
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = [x.strip() for x in line[len("import time:") :].split("|")]
        name = parts[2]
        for h in HEAVY:
            if name == h or name.startswith(h + "."):
                found.add(h)
        if name == "wabulk.cli":
            cli_us = int(parts[1])
    return sorted(found), cli_us / 1000


def main() -> int:
    args = parser(__doc__).parse_args()
    runs = args.runs or (2 if args.quick else 15)
    with tempfile.TemporaryDirectory(prefix="wabulk-bench-") as d:
        home = Path(d)
        env = {
            **os.environ,
            "WABULK_HOME": str(home),
            "WABULK_DB": str(home / "wabulk.db"),
            "PYTHONPATH": str(ROOT / "src"),
        }
        # An installed wabulk runs from cached bytecode; without it every run would recompile wabulk's
        # modules (cli.py alone is 1,000 lines), which users never pay.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        # A database with one job, so status has something to read.
        subprocess.run(
            [
                PYTHON,
                "-c",
                "from wabulk.queue import Queue; from wabulk.models import NewJob, NewMessage;"
                f"Queue({str(home / 'wabulk.db')!r}).enqueue(NewJob(name='j', template='hi'),"
                " [NewMessage(phone='+12015550123', body='hi')])",
            ],
            env=env,
            check=True,
        )
        base = wall([PYTHON, "-c", "pass"], env, runs)
        rows: list[Row] = [
            {
                "command": "python -c pass (baseline)",
                "median ms": f"{base * 1000:.0f}",
                "ratio": "1.00",
                "heavy imports": "",
                "target": "",
                "met": "",
            }
        ]
        for label, cmd_args in (
            ("wabulk --help", ["--help"]),
            ("wabulk status --json", ["status", "--json"]),
            ("wabulk status (Typer)", ["status"]),
        ):
            t = wall([*_entry(), *cmd_args], env, runs)
            heavy, cli_ms = imported(cmd_args, env)
            clean = not (PROVIDER_CODE | {"phonenumbers"}) & set(heavy)
            rows.append(
                {
                    "command": label,
                    "median ms": f"{t * 1000:.0f}",
                    "ratio": f"{t / base:.1f}",
                    "heavy imports": ", ".join(heavy) or "none",
                    "target": "<= 3x, no selenium/httpx/phonenumbers",
                    "met": "yes" if t / base <= 3 and clean else "NO",
                }
            )
    finish(
        "Start-up",
        rows,
        args,
        notes=[
            f"median of {runs} runs; wall time of a fresh process including interpreter start-up,"
            " with cached bytecode",
            "wabulk status --json: entry.py answers it without Typer; --help: Typer (which imports pydantic"
            " for commands with parameters)",
            "heavy imports: which of " + ", ".join(HEAVY) + " the command imports (python -X importtime)",
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
