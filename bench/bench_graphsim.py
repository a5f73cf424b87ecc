"""Throughput of the bundled Graph API simulator alone: template sends on kept-alive connections, webhooks on.

The simulator runs as its own process (``python -m wabulk.cloud.simulator``), as in the end-to-end benchmark
of #19 where wabulk must reach 1,000 messages/s through it on this 2-core machine: so it has to sustain
several times that by itself. The load comes from a raw asyncio HTTP/1.1 client in this process (httpx
would be the bottleneck), over C kept-alive connections; status webhooks (sent + delivered + read for a
share of them) go to a raw asyncio receiver in this process that answers 200. Reported: requests/s by wall
clock and per CPU-second of the simulator (the figure that survives a loaded machine), statuses received
and their batching, the simulator's RSS.

    python bench/bench_graphsim.py [--messages 20000] [--connections 1,16] [--quick] [--json PATH]
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, ROOT, finish, parser, rss_mib  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Hook:
    """A raw asyncio webhook receiver: counts POSTs and statuses, answers 200 with keep-alive."""

    def __init__(self) -> None:
        self.posts = 0
        self.statuses = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.posts += 1
                self.statuses += body.count(b'"status":')
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()  # (cancelled: the benchmark is over)


async def load(host: str, port: int, total: int, connections: int, token: str) -> tuple[int, int, float]:
    """Send ``total`` template messages over ``connections`` kept-alive connections: (ok, refused, secs)."""
    counter = iter(range(total))
    ok = refused = 0

    async def one_connection() -> None:
        nonlocal ok, refused
        reader, writer = await asyncio.open_connection(host, port)
        for i in counter:
            body = json.dumps(
                {
                    "messaging_product": "whatsapp",
                    "to": f"+4915{i:09d}",
                    "type": "template",
                    "biz_opaque_callback_data": f"wb1:{i}:1",
                    "template": {
                        "name": "order_ready",
                        "language": {"code": "en_US"},
                        "components": [
                            {
                                "type": "body",
                                "parameters": [
                                    {"type": "text", "text": "Ann"},
                                    {"type": "text", "text": f"B-{i}"},
                                ],
                            }
                        ],
                    },
                }
            ).encode()
            writer.write(
                b"POST /v27.0/1234567890/messages HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            if head.startswith(b"HTTP/1.1 200"):
                ok += 1
            else:
                refused += 1
        writer.close()

    t = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return ok, refused, time.perf_counter() - t


async def main_async(messages: int, connections: int) -> dict[str, object]:
    """One measurement: a fresh simulator process, ``messages`` sends over ``connections`` connections."""
    hook = Hook()
    server = await asyncio.start_server(hook.handle, "127.0.0.1", 0)
    hook_port = server.sockets[0].getsockname()[1]
    config = {
        "read_rate": 0.3,
        "keep_webhook_bodies": False,
        "webhook_batch_ms": 50,
        "webhook_batch_max": 500,
    }
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "wabulk.cloud.simulator",
            "--port",
            "0",
            "--token",
            "bench",
            "--mps",
            "1000000",
            "--webhook-url",
            f"http://127.0.0.1:{hook_port}/hook",
            "--config",
            json.dumps(config),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
        url = line.split(" at ")[1].split()[0]
        host, port = url.removeprefix("http://").split(":")
        cpu0 = cpu_seconds(proc.pid)
        ok, refused, secs = await load(host, int(port), messages, connections, "bench")
        cpu_send = cpu_seconds(proc.pid) - cpu0
        t = time.perf_counter()
        expected = ok * 2  # at least sent + delivered per accepted message
        while hook.statuses < expected and time.perf_counter() - t < 60:
            await asyncio.sleep(0.05)
        drain = time.perf_counter() - t
        rss = rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        server.close()
    return {
        "messages": messages,
        "connections": connections,
        "accepted": ok,
        "refused": refused,
        "seconds": round(secs, 2),
        "requests/s": round(ok / secs),
        "requests per sim CPU-s": round(ok / cpu_send) if cpu_send else 0,
        "statuses": hook.statuses,
        "POSTs": hook.posts,
        "statuses/POST": round(hook.statuses / max(hook.posts, 1), 1),
        "drain s": round(drain, 2),
        "sim RSS MiB": round(rss, 1),
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--messages", type=int, default=None, help="sends per measurement (20,000; quick 300)")
    p.add_argument("--connections", default=None, help="comma-separated kept-alive connection counts (1,16)")
    args = p.parse_args()
    counts = [int(c) for c in str(args.connections or ("1,4" if args.quick else "1,16")).split(",")]
    args.messages = args.messages or (300 if args.quick else 20000)
    rows = [asyncio.run(main_async(args.messages, c)) for c in counts]
    notes = [
        "target: several thousand requests/s (so the simulator never bounds wabulk's 1,000 messages/s)",
        f"load: {os.getloadavg()[0]:.1f} (1-min) when finished; the per-CPU-second figure is the robust one",
    ]
    finish("Graph API simulator throughput", rows, args, notes)


if __name__ == "__main__":
    main()
