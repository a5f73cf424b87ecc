"""``wabulk demo``: the whole flow on the bundled simulator, in a throwaway data dir.

Starts the simulator, links a fresh browser profile by "scanning" the QR it shows (the terminal shows the
QR as a real user would see it), enqueues the sample contacts that ship with the package (a few bad
numbers, one not on WhatsApp), runs the worker headless with the live view and fast pacing, and leaves the
export and the database behind for a look.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .settings import Settings, ensure_private_dir

DEMO_SESSION = "demo"
DEMO_TEMPLATE = "Hi {name}! {Your order|The parcel you ordered} is ready in {city}. Reply STOP to opt out."
# The sample contact the simulator treats as "not on WhatsApp" (see data/sample_contacts.csv).
NOT_ON_WHATSAPP = "12125550199"
# Simulator timings: realistic in shape, quick enough for a demo.
SIM_TIMINGS: dict[str, Any] = {
    "boot_ms": 1200,
    "lookup_ms": 600,
    "sent_ms": [300, 900],
    "delivered_ms": 1500,
    "read_ms": 6000,
    "qr_rotate_ms": 20000,
}
SCAN_AFTER_S = 3.0  # how long the demo leaves the QR on screen before "the phone" scans it


@dataclass(frozen=True)
class DemoResult:
    exit_code: int
    settings: Settings
    job_id: int
    export_path: Path
    simulator_log: Path


def sample_contacts() -> Path:
    """The sample contact list shipped in the package."""
    return Path(str(resources.files("wabulk") / "data" / "sample_contacts.csv"))


def run_demo(
    settings: Settings, *, port: int = 0, headed: bool = False, console: Any = None, pace: str = "fast"
) -> DemoResult:
    """Run enqueue → login → worker → export against a fresh simulator under ``<home>/demo``."""
    from rich.console import Console

    from .export import export_job
    from .importer import enqueue_file
    from .qrcodes import render_terminal
    from .queue import Queue
    from .session import record_link
    from .web.login import login
    from .web.simulator.server import Simulator
    from .worker import build_config, run_worker

    out: Console = console or Console()
    home = settings.home / "demo"
    if home.exists():
        shutil.rmtree(home)  # each demo starts from nothing: no old jobs, a profile that needs the QR
    ensure_private_dir(home)
    sim = Simulator(
        port=port,
        log_path=home / "simulator-messages.jsonl",
        invalid_numbers=[NOT_ON_WHATSAPP],
        **SIM_TIMINGS,
    )
    url = sim.start()
    demo_settings = settings.with_(db=home / "demo.db", home=home, web_url=url, headless=not headed)
    try:
        out.rule("wabulk demo")
        out.print(f"Simulated WhatsApp Web at {url} (data in {home})")

        out.print("\n[bold]1. Queue the sample contacts[/bold]")
        queue = Queue(demo_settings.db)
        try:
            result = enqueue_file(queue, sample_contacts(), message=DEMO_TEMPLATE, name="demo", country="GB")
        finally:
            queue.close()
        assert result.job_id is not None
        out.print(
            f"   job {result.job_id}: {result.enqueued} queued, {result.invalid} invalid, "
            f"{result.duplicates} duplicate(s)"
        )
        for r in result.rejects:
            out.print(f"   rejected row {r.row}: {r.value!r} - {r.reason}", markup=False)

        out.print("\n[bold]2. Link the account[/bold] (the demo scans the QR for you)")
        shown = threading.Event()

        def on_qr(payload: str) -> None:
            if not shown.is_set():
                out.print(render_terminal(payload), markup=False, highlight=False)
                shown.set()
                threading.Timer(SCAN_AFTER_S, sim.scan).start()

        linked = login(demo_settings, DEMO_SESSION, on_qr=on_qr, timeout=120)
        if not linked.already_logged_in:
            record_link(demo_settings, DEMO_SESSION)
        out.print("   already linked" if linked.already_logged_in else "   linked")

        out.print(f"\n[bold]3. Send[/bold] (pace: {pace}; Ctrl-C stops cleanly)")
        config = build_config(session=DEMO_SESSION, until_done=True, pace=pace)
        code = run_worker(demo_settings, config, console=out)

        export_path = home / "demo-report.csv"
        queue = Queue(demo_settings.db)
        try:
            with open(export_path, "w", encoding="utf-8", newline="") as fh:
                export_job(queue, result.job_id, fh)
        finally:
            queue.close()
        return DemoResult(code, demo_settings, result.job_id, export_path, sim.log_path)
    finally:
        sim.stop()
