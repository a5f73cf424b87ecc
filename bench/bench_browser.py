"""Per-message mechanics on the simulator (realistic default timings, --pace off), for the deep-link and the
in-page way of opening a chat, side by side in the same run: seconds from claim to confirmed tick (median,
p95) and messages per minute; and worker memory over N messages (RSS
(PSS) of the Python process and of the browser processes at start and end). Real Chromium + chromedriver."""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from _common import Row, finish, ok, parser, pss_mib, tree_rss_mib  # noqa: E402

# The simulator's own defaults are the "realistic" timings (boot 2 s, lookup 0.8 s, tick 0.3-1.5 s).
# Memory runs use fast timings so that 1,000 messages fit in a bench run; memory does not depend on them.
FAST = {"boot_ms": 150, "lookup_ms": 300, "sent_ms": [100, 250], "delivered_ms": 300}


def _have_browser() -> bool:
    return bool(os.environ.get("WABULK_CHROMEDRIVER")) or shutil.which("chromedriver") is not None


class Sampler(threading.Thread):
    """Samples PSS of this process and of its child process tree (chromedriver, Chromium) every 0.5 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float, float, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self._halt.wait(0.5):
            # PSS, not RSS: Chromium's processes share most of their pages; RSS would count them ten times.
            total, n = tree_rss_mib(me, pss_mib)
            py = pss_mib(me)
            self.samples.append((time.time(), py, total - py, n - 1))

    def stop(self) -> None:
        self._halt.set()
        self.join()


class Run:
    """What one drain of the queue measured."""

    def __init__(
        self, per: list[float], floor: list[float], rate: float, sampler: Sampler, span: tuple[float, float]
    ) -> None:
        self.per = per  # claim -> confirmed tick, seconds, per message
        self.floor = floor  # the simulator's own latency for the same messages (lookup + its tick delay)
        self.rate = rate  # messages per minute, first claim to last sent
        self.sampler = sampler
        self.span = span  # (first claim, last sent), unix seconds


def run(n: int, timings: dict[str, object], home: Path, open_chat: str = "auto") -> Run:
    """Link a profile on a fresh simulator, enqueue ``n`` messages and drain them with run_worker (pace off),
    opening chats by ``open_chat`` ("deeplink" | "inpage" | "auto")."""
    from wabulk.models import NewJob, NewMessage
    from wabulk.queue import Queue
    from wabulk.settings import Settings
    from wabulk.web.sender import WhatsAppSender
    from wabulk.web.simulator.server import Simulator
    from wabulk.worker import build_config, run_worker

    sim = Simulator(port=0, log_path=home / "sim.jsonl", **timings)
    url = sim.start()
    try:
        settings = Settings.from_env().with_(
            web_url=url, home=home, db=home / "wabulk.db", headless=True, open_chat=open_chat
        )
        # Link once (the QR "scan"), then the worker reuses the linked profile as a user's would.
        linker = WhatsAppSender(settings, session="bench")
        linker.start()

        def on_qr(_: str) -> None:
            sim.scan()

        if not linker.wait_for_login(on_qr, timeout=60):
            raise RuntimeError("could not link the browser profile on the simulator")
        linker.close()
        q = Queue(settings.db)
        q.enqueue(
            NewJob(name="bench", template="x"),
            [NewMessage(phone=f"+1201555{i:04d}", body=f"Benchmark message {i}: hello 👋") for i in range(n)],
        )
        q.close()
        sampler = Sampler()
        sampler.start()
        from rich.console import Console

        with open(os.devnull, "w") as quiet:  # the live view's lines are not the benchmark's output
            code = run_worker(
                settings,
                build_config(session="bench", pace="off", until_done=True),
                console=Console(file=quiet),
            )
        sampler.stop()
        if code != 0:
            raise RuntimeError(f"run_worker exited {code}")
        q = Queue(settings.db)
        claims = dict(
            q.conn.execute("SELECT message_id, max(at) FROM events WHERE kind = 'claim' GROUP BY 1")
        )
        sent = dict(
            q.conn.execute("SELECT message_id, at FROM events WHERE kind = 'status' AND to_status = 'sent'")
        )
        q.close()
        if len(sent) != n or len(sim.messages()) != n:
            raise RuntimeError(
                f"expected {n} messages, simulator got {len(sim.messages())}, {len(sent)} marked sent"
            )
        per = [sent[m] - claims[m] for m in sent]
        # The part no client can shorten: the number lookup (plus the app boot for a deep link, which
        # reloads the page) and the delay the simulator drew for each message's single tick.
        cfg = sim.config
        fixed = cfg["lookup_ms"] / 1000 + (cfg["boot_ms"] / 1000 if open_chat == "deeplink" else 0.0)
        floor = [fixed + sim.state.sent_delay[rec["id"]] for rec in sim.messages()]
        first, last = min(claims.values()), max(sent.values())
        rate = n / (last - first) * 60 if last > first else float("nan")
        return Run(per, floor, rate, sampler, (first, last))
    finally:
        sim.stop()


def p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--messages", type=int, default=None, help="messages for the mechanics run (default 30)")
    p.add_argument(
        "--memory-messages", type=int, default=None, help="messages for the memory run (default 1,000)"
    )
    args = p.parse_args()
    n = args.messages or (3 if args.quick else 30)
    mem_n = args.memory_messages or (5 if args.quick else 1000)
    rows: list[Row] = []
    notes: list[str] = []
    if not _have_browser():
        finish("Browser: per-message mechanics and memory", rows, args, ["skipped: no chromedriver"])
        return 0
    with tempfile.TemporaryDirectory(prefix="wabulk-bench-") as d:
        os.environ["WABULK_HOME"] = str(Path(d) / "home")
        os.environ["WABULK_DB"] = str(Path(d) / "home" / "wabulk.db")
        medians: dict[str, float] = {}
        for method, label in (("deeplink", "deep link"), ("inpage", "in-page (New chat)")):
            r = run(n, {}, Path(d) / f"mech-{method}", open_chat=method)
            med = medians[method] = statistics.median(r.per)
            rows.append(
                {
                    "what": f"{label}, simulator default timings, {n} messages",
                    "median s": f"{med:.2f}",
                    "p95 s": f"{p95(r.per):.2f}",
                    "msg/min": f"{r.rate:.1f}",
                    "simulator floor s": f"{statistics.median(r.floor):.2f}",
                    "wabulk overhead s": f"{med - statistics.median(r.floor):.2f}",
                    "target": "median <= 1.5 s",
                    "met": ok(med, 1.5, higher_is_better=False),
                }
            )
        notes.append(
            f"in-page vs deep link in this run: median {medians['inpage'] / medians['deeplink']:.2f}x "
            "(WABULK_OPEN_CHAT=deeplink / inpage; the default, auto, uses in-page on a loaded page)"
        )
        notes.append(
            "claim -> confirmed tick from the events table (claim event to the 'sent' status event); "
            "messages/min from the first claim to the last sent, pace off"
        )
        notes.append(
            "the simulator's default timings per message: app boot 2 s (the deep link reloads the app; "
            "in-page does not), number lookup 0.8 s, tick after 0.3-1.5 s: about 3.1-4.3 s of simulated "
            "latency for the deep link, 1.1-2.3 s in-page. 'simulator floor' is the median of that latency "
            "for the messages of the run (lookup + boot + the tick delay the simulator drew for each); "
            "'wabulk overhead' is the median minus it: what wabulk adds"
        )
        mem = run(mem_n, FAST, Path(d) / "mem")
        per2, rate2, sampler, (first, last) = mem.per, mem.rate, mem.sampler, mem.span
        during = [s for s in sampler.samples if first <= s[0] <= last]
        if len(during) >= 10:
            # The worker starts a fresh browser every 100 chats (its default), so the browser's memory is a
            # saw-tooth: compare the peaks of the two halves after a warm-up tenth (Chromium's first pages
            # fill caches that are not growth). A leak that outlives the restarts raises the second peak.
            k0, mid = len(during) // 10, (len(during) + len(during) // 10) // 2
            a, b = during[k0:mid], during[mid:]
            for label, col in (
                ("Python process", 1),
                (f"browser, {max(s[3] for s in during)} processes at most", 2),
            ):
                first_v = during[0][col]
                peak_a, peak_b = max(s[col] for s in a), max(s[col] for s in b)
                growth = peak_b / peak_a - 1
                rows.append(
                    {
                        "what": f"memory over {mem_n} messages: {label} "
                        "(first -> peak 10-55 % -> peak 55-100 %)",
                        "median s": f"{first_v:.0f} -> {peak_a:.0f} -> {peak_b:.0f} MiB",
                        "p95 s": f"{growth * 100:+.0f} %",
                        "msg/min": "",
                        "target": "<= +10 % (second half's peak)",
                        "met": ok(growth, 0.10, higher_is_better=False),
                    }
                )
            notes.append(
                f"memory run: fast simulator timings ({statistics.median(per2):.2f} s median per message, "
                f"{rate2:.0f} msg/min); {len(during)} samples, 0.5 s apart; memory is PSS from "
                "/proc/PID/smaps_rollup (shared pages split between processes); the Python figure includes "
                "the in-process simulator (which keeps every message it received); chats opened with the "
                "default (auto); the worker's default --restart-browser-every 100 applies"
            )
        else:
            notes.append("memory run too short to sample (use more --memory-messages)")
    finish("Browser: per-message mechanics and memory", rows, args, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
