"""The live view (Rich, on a terminal) and the plain one-line-per-event mode (cron, pipes)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from wabulk.live import LiveView, format_duration, render_qr
from wabulk.models import Job, JobSummary
from wabulk.pacing import PROFILES
from wabulk.worker import WorkerEvent

NOW = 1_780_000_000.0


def summary(
    job_id: int = 1, name: str = "spring promo", sent: int = 40, failed: int = 2, pending: int = 58
) -> JobSummary:
    job = Job(
        id=job_id,
        name=name,
        template="Hi {name}",
        attachment=None,
        status="running",
        status_reason=None,
        max_attempts=3,
        sessions=(),
        settings={},
        source=None,
        created_at=NOW,
        started_at=NOW,
        finished_at=None,
        not_before=None,
    )
    counts = {"pending": pending, "sending": 0, "sent": sent, "failed": failed, "skipped": 0, "cancelled": 0}
    return JobSummary(job=job, counts=counts)


def feed(view: LiveView) -> None:
    view.handle(
        WorkerEvent(
            "progress",
            NOW,
            "",
            state="sending",
            summaries=(summary(),),
            stats={
                "session": "shop",
                "sent_today": 12,
                "cap_today": 40,
                "day_ends_at": NOW + 3600,
                "send_seconds": 3.0,
                "quiet_hours": "21:00-08:00",
            },
        )
    )
    for i, t in enumerate((NOW - 30, NOW - 20, NOW - 10)):
        view.handle(WorkerEvent("sent", t, f"sent to +1415•••000{i}", job_id=1, phone=f"+1415•••000{i}"))
    view.handle(
        WorkerEvent(
            "claimed",
            NOW,
            "sending to +1415•••0123 (job 1, attempt 1)",
            job_id=1,
            message_id=7,
            phone="+1415•••0123",
            state="sending",
        )
    )


def test_live_frame_shows_jobs_masked_recipient_and_events() -> None:
    console = Console(record=True, width=120, force_terminal=True, file=io.StringIO())
    view = LiveView(console, profile=PROFILES["balanced"], live=True, clock=lambda: NOW)
    feed(view)
    console.print(view.render())
    text = console.export_text()
    assert "spring promo" in text
    assert "+1415•••0123" in text and "+14155550123" not in text
    assert "12/40" in text  # today's count against the cap
    row = next(line for line in text.splitlines() if "spring promo" in line)
    assert all(n in row.split() for n in ("100", "40", "2", "58"))  # total, sent, failed, pending
    assert "6.0" in row  # rate: 3 sends 10 s apart = 6/min
    # ETA: 28 more fit today's cap, the other 30 go out after midnight (an hour away), paced.
    assert "1h" in row.split()[-1]
    assert text.count("sent to +1415") == 3


def test_countdown_to_next_send_between_messages() -> None:
    console = Console(record=True, width=100, file=io.StringIO())
    view = LiveView(console, profile=PROFILES["safe"], live=True, clock=lambda: NOW)
    view.handle(
        WorkerEvent("sent", NOW, "sent to +1415•••0123", job_id=1, state="pacing", next_send_at=NOW + 95)
    )
    console.print(view.render())
    assert "next send in 1m35s" in console.export_text()


def test_tiny_terminal_does_not_crash() -> None:
    for width, height in ((1, 1), (10, 3), (20, 5)):
        console = Console(record=True, width=width, height=height, force_terminal=True, file=io.StringIO())
        view = LiveView(console, profile=PROFILES["fast"], live=True, clock=lambda: NOW)
        feed(view)
        view.handle(WorkerEvent("qr", NOW, "scan this QR code", payload="2@abc,def"))
        console.print(view.render())
        with view:  # the Live display itself, at that size
            view.handle(WorkerEvent("retry", NOW, "x" * 500, job_id=1))


def test_plain_mode_prints_one_line_per_event_and_skips_progress() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    view = LiveView(console, profile=PROFILES["balanced"], clock=lambda: NOW)
    assert view.use_live is False  # not a terminal
    with view:
        feed(view)
        view.handle(WorkerEvent("failed", NOW, "+1415•••0124 failed: not on WhatsApp", job_id=1))
    lines = out.getvalue().splitlines()
    assert len(lines) == 5  # 3 sent + claimed + failed; the progress event prints nothing
    assert lines[-1].endswith("failed job=1 +1415•••0124 failed: not on WhatsApp")
    assert "\x1b[" not in out.getvalue()  # no colour codes in a log file


def test_plain_mode_prints_the_qr() -> None:
    out = io.StringIO()
    view = LiveView(Console(file=out, force_terminal=False, width=200), clock=lambda: NOW)
    view.handle(
        WorkerEvent("qr", NOW, "scan this QR code with WhatsApp > Linked devices", payload="2@payload,xyz")
    )
    assert render_qr("2@payload,xyz") in out.getvalue()


def test_qr_shows_in_the_live_view_until_logged_in() -> None:
    console = Console(record=True, width=120, file=io.StringIO())
    view = LiveView(console, live=True, clock=lambda: NOW)
    view.handle(WorkerEvent("qr", NOW, "scan", payload="2@payload,xyz"))
    console.print(view.render())
    assert "Scan this QR code" in console.export_text()
    view.handle(WorkerEvent("logged_in", NOW, "logged in again"))
    console.print(view.render())
    assert "Scan this QR code" not in console.export_text()


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 59, 95, 3700, 90000, None)] == [
        "0s",
        "59s",
        "1m35s",
        "1h01m",
        "1d01h",
        "?",
    ]


def test_worker_events_mask_the_number_in_flight(tmp_path: Path) -> None:
    from wabulk.fakes import FakeTransport
    from wabulk.models import NewJob, NewMessage
    from wabulk.queue import Queue
    from wabulk.worker import Worker, WorkerConfig

    q = Queue(tmp_path / "q.db")
    q.enqueue(NewJob(name="promo", template="Hi"), [NewMessage(phone="+14155550123", body="Hi")])
    console = Console(record=True, width=120, file=io.StringIO())
    view = LiveView(console, profile=PROFILES["off"], live=True)
    frames: list[str] = []

    def snapshot(phone: str) -> None:
        console.print(view.render())
        frames.append(console.export_text())

    fake = FakeTransport(on_send=snapshot)
    worker = Worker(
        q, fake, WorkerConfig(session="main", until_done=True, pace=PROFILES["off"]), on_event=view.handle
    )
    assert worker.run() == 0
    q.close()
    assert frames and "sending to +1415•••0123" in frames[0]
    assert "+14155550123" not in frames[0]
