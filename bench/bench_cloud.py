"""End-to-end Cloud API throughput: ``wabulk run`` on a Cloud session against the bundled Graph simulator,
beside a naive sequential sender in the same run.

Three processes besides this one, as in production: the Graph simulator (``python -m wabulk.cloud.simulator``,
its own process, as Meta is), ``wabulk serve`` receiving the simulator's signed status webhooks into the
same database, and the sender. Measured:

- ``wabulk run --until-done --rate 1000``: the CLI at Meta's highest per-number rate (the limiter caps it);
- the same run loop with the per-number limit lifted (``rate`` 5,000, the simulator's number set to match):
  what the pipeline itself sustains, i.e. that the queue is not the bottleneck;
- a naive sequential sender: claim → stamp → one POST → mark, one message at a time (the generic worker's
  shape), on a fresh database.

Every message is stamped durably (``synchronous=FULL``) before its POST in all three. Reported: messages/s
(accepted by the simulator / wall seconds of the sending process, start-up included, and without it), the
sender's peak RSS, and that each recipient got exactly one message.

    python bench/bench_cloud.py [--messages 20000] [--quick] [--json PATH]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, ROOT, finish, parser  # noqa: E402

TOKEN = "bench-token"
SECRET = "bench-secret"
PHONE_ID = "1234567890"


def env_for(db: Path, home: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WABULK_")}
    env.update(
        PYTHONPATH=str(ROOT / "src"),
        WABULK_DB=str(db),
        WABULK_HOME=str(home),
        WABULK_GRAPH_URL=url,
        WABULK_CLOUD_TOKEN=TOKEN,
        WABULK_CLOUD_APP_SECRET=SECRET,
        WABULK_CLOUD_SETTLE_SECONDS="5",
    )
    return env


def start(cmd: list[str], env: dict[str, str], marker: str) -> tuple[subprocess.Popen[str], str]:
    """Start a server process and return it with the first output line containing ``marker``."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if marker in line:
            return proc, line
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"{cmd[:4]} did not start")


def enqueue(db: Path, n: int) -> None:
    from wabulk.models import NewJob, NewMessage
    from wabulk.queue import Queue

    with Queue(db) as q:
        q.enqueue(
            NewJob(name="bench", template="Hello"),
            [NewMessage(phone=f"+4915{i:09d}", body="Hello") for i in range(n)],
        )


def wait_usage(proc: subprocess.Popen[Any]) -> tuple[float, float]:
    """Wait for the child; its peak RSS in MiB and its CPU seconds (user + system), from wait4."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_sender(
    kind: str, messages: int, sim_url: str, tmp: Path, serve_db: Path, others: dict[str, int]
) -> dict[str, Any]:
    env = env_for(serve_db, tmp / "home", sim_url)
    if kind == "run --rate 1000":
        cmd = [PYTHON, "-m", "wabulk", "run", "--session", "biz", "--until-done", "--rate", "1000"]
    elif kind == "run loop, no per-number cap":
        code = (
            "import sys; from pathlib import Path; from wabulk.cloud.runner import CloudRunConfig, run_cloud;"
            f"cfg = CloudRunConfig(session='biz', phone_number_id='{PHONE_ID}', rate=5000.0, until_done=True,"
            " settle_seconds=5.0);"
            f"r = run_cloud(Path({str(serve_db)!r}), cfg, token='{TOKEN}', base_url='{sim_url}');"
            "sys.exit(r.code)"
        )
        cmd = [PYTHON, "-c", code]
    else:
        cmd = [PYTHON, str(Path(__file__).resolve()), "--naive", str(serve_db), sim_url]
    before = {name: cpu_seconds(pid) for name, pid in others.items()}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=(tmp / f"{kind[:3]}.err").open("w")
    )
    rss, cpu = wait_usage(proc)
    wall = time.perf_counter() - t0
    time.sleep(1.0)  # the last webhooks reach wabulk serve
    spent = {name: cpu_seconds(pid) - before[name] for name, pid in others.items()}
    from wabulk.queue import Queue

    with Queue(serve_db) as q:
        job = q.list_jobs()[-1]
        counts = q.counts(job.id)
        stamps = q.conn.execute(
            "SELECT min(send_started_at), max(sent_at) FROM messages WHERE job_id = ? AND status = 'sent'",
            (job.id,),
        ).fetchone()
    sent = counts["sent"]
    sending_secs = (stamps[1] - stamps[0]) if stamps[0] and stamps[1] else wall
    per = {"sender": cpu / max(sent, 1) * 1000, **{k: v / max(sent, 1) * 1000 for k, v in spent.items()}}
    # What two idle cores would allow: the sender is one interpreter (one core at most), and the three
    # processes share two. A projection from CPU time, which a loaded machine does not distort much.
    projected = min(1000 / per["sender"], 2000 / sum(per.values()))
    return {
        "sender": kind,
        "messages": messages,
        "sent": sent,
        "exit": proc.returncode,
        "wall s": round(wall, 2),
        "msg/s (wall, with start-up)": round(sent / wall),
        "msg/s (first stamp to last answer)": round(sent / max(sending_secs, 1e-6)),
        "peak RSS MiB": round(rss, 1),
        "CPU ms/msg: sender": round(per["sender"], 2),
        "wabulk serve": round(per["serve"], 2),
        "simulator": round(per["simulator"], 2),
        "projected msg/s on 2 idle cores": round(projected),
    }


def naive(db: Path, url: str) -> None:
    """One message at a time: claim, stamp (durable), POST, mark (durable). No batching, no concurrency."""
    from wabulk import errors
    from wabulk.cloud.client import GraphClient
    from wabulk.cloud.provider import build_payload
    from wabulk.queue import Queue

    with Queue(db, synchronous="FULL") as q, GraphClient(TOKEN, base_url=url) as client:
        worker = q.register_worker("naive", pid=os.getpid(), host="bench")
        while True:
            c = q.claim(worker, "naive", lease_seconds=60)
            if c is None:
                return
            q.mark_send_started(c, None)
            client.send(PHONE_ID, build_payload(c))
            try:
                q.mark_sent(c, tick="sent", session="naive", at=None)
            except errors.LeaseLost:
                pass  # its status webhook (stored by wabulk serve) settled it first


def measure(messages: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="wabulk-bench-cloud-") as d:
        tmp = Path(d)
        for kind in ("run --rate 1000", "run loop, no per-number cap", "naive sequential"):
            db = tmp / f"{len(rows)}.db"
            enqueue(db, messages)
            env = env_for(db, tmp / "home", "http://127.0.0.1:9")
            serve, line = start(
                [PYTHON, "-m", "wabulk", "serve", "--port", "0", "--token", "bench-api"], env, "API: http://"
            )
            hook = line.split("API: ")[1].split("/api/")[0] + "/webhooks/whatsapp"
            sim, sline = start(
                [PYTHON, "-m", "wabulk.cloud.simulator", "--port", "0", "--token", TOKEN,
                 "--app-secret", SECRET, "--mps", "5000", "--webhook-url", hook,
                 "--config", json.dumps({"all_windows_open": True, "keep_webhook_bodies": False})],
                env,
                " at http",
            )  # fmt: skip
            url = sline.split(" at ")[1].split()[0]
            try:
                run_env = env_for(db, tmp / "home", url)
                login = subprocess.run(
                    [
                        PYTHON,
                        "-m",
                        "wabulk",
                        "login",
                        "--session",
                        "biz",
                        "--cloud",
                        "--phone-number-id",
                        PHONE_ID,
                    ],
                    env=run_env,
                    capture_output=True,
                    text=True,
                )
                assert login.returncode == 0, login.stderr
                row = one_sender(kind, messages, url, tmp, db, {"serve": serve.pid, "simulator": sim.pid})
                from urllib.request import urlopen

                state = json.loads(urlopen(f"{url}/_sim/state").read())
                row["accepted at the simulator"] = state.get("accepted", "?")
                rows.append(row)
            finally:
                for p in (sim, serve):
                    p.terminate()
                    p.wait(10)
    return rows


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--naive":
        naive(Path(sys.argv[2]), sys.argv[3])
        return
    p = parser(__doc__)
    p.add_argument("--messages", type=int, default=None, help="messages per sender (20,000; quick 300)")
    args = p.parse_args()
    messages = args.messages or (300 if args.quick else 20000)
    rows = measure(messages)
    notes = [
        "target (#19): ≥ 1,000 messages/s end to end on this 2-core machine; Meta caps one number at 1,000/s,"
        " so the CLI row is bounded by its limiter and the uncapped row shows what the pipeline sustains",
        "every message is stamped with synchronous=FULL before its POST; webhooks are stored by wabulk serve",
        "CPU ms/msg per process (sender, wabulk serve storing the webhooks, the simulator) and the projection"
        " from them: the wall-clock rates depend on what else runs on the two cores",
        f"load: {os.getloadavg()[0]:.1f} (1-min) when finished",
    ]
    finish("Cloud API end to end (wabulk run vs a naive sequential sender)", rows, args, notes)


if __name__ == "__main__":
    main()
