"""``wabulk demo --cloud``: the whole Cloud API flow on the bundled Graph API simulator, in a throwaway data
dir, over real HTTP both ways.

Starts wabulk's webhook receiver (the same handler ``wabulk serve`` mounts at ``/webhooks/whatsapp``) and the
simulator, which signs its status webhooks with the app secret and posts them there; records the session
through ``login --cloud``'s own code (:func:`wabulk.cloud.account.login_cloud`), syncs the account's
templates, enqueues the sample contacts as a template job (checked against the catalogue), sends them with
the live table, and leaves the export and the database behind.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wabulk.settings import Settings, ensure_private_dir

DEMO_SESSION = "biz"
DEMO_PHONE_ID = "1234567890"
# The simulator's own credentials: a demo never uses (nor shows) a real token.
DEMO_TOKEN = "demo-token"
DEMO_APP_SECRET = "demo-app-secret"
DEMO_VERIFY_TOKEN = "demo-verify-token"
DEMO_TEMPLATE = "pickup_ready"
DEMO_BODY = "Hi {{1}}, your order is ready for pickup in {{2}}."
DEMO_PARAMS = ("{name}", "{city}")
# The sample contact the simulator treats as "not on WhatsApp" (a 131026 failed status after acceptance).
NOT_ON_WHATSAPP = "12125550199"
RATE = 20.0  # messages per second: slow enough to watch the table move
SETTLE_SECONDS = 5.0  # an unknown outcome waits this long for its webhook (a real run: minutes)
WEBHOOKS_SETTLE = 10.0  # after the run, how long the demo waits for the last status webhooks


@dataclass(frozen=True)
class CloudDemoResult:
    exit_code: int
    line: str
    settings: Settings
    job_id: int
    export_path: Path


@contextmanager
def webhook_server(db: Path, *, app_secret: str | None, verify_token: str | None) -> Iterator[str]:
    """wabulk's webhook endpoint (the ASGI handler ``serve`` mounts) on a free loopback port; yields its
    URL. The demo and the Cloud tests use it (``app_secret=None``: signatures are not checked)."""
    import uvicorn

    from .webhooks import PATH, WebhookReceiver, asgi_app

    receiver = WebhookReceiver(db, app_secret=app_secret, verify_token=verify_token)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(
        uvicorn.Config(asgi_app(receiver), log_level="warning", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}{PATH}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


def run_cloud_demo(
    settings: Settings,
    *,
    console: Any = None,
    on_progress: Callable[[Any], None] | None = None,
    rate: float = RATE,
) -> CloudDemoResult:
    """Run login → templates sync → enqueue → run → export against a fresh Graph API simulator under
    ``<home>/demo-cloud``."""
    from rich.console import Console

    from wabulk.demo import sample_contacts
    from wabulk.export import export_job
    from wabulk.importer import TemplateJob, enqueue_file
    from wabulk.queue import Queue
    from wabulk.settings import graph_version

    from .account import login_cloud
    from .limits import describe, shared_by
    from .runner import CloudRunConfig, run_cloud
    from .simulator import GraphSimulator
    from .simulator.templates import DEFAULT_TEMPLATES, template
    from .templates import load_catalogue, sync_waba

    out: Console = console or Console()
    home = settings.home / "demo-cloud"
    if home.exists():
        shutil.rmtree(home)  # each demo starts from nothing
    ensure_private_dir(home)
    demo_settings = settings.with_(db=home / "demo.db", home=home)
    db = demo_settings.db
    Queue(db).close()  # the schema, before the receiver's first webhook
    catalogue = [*DEFAULT_TEMPLATES, template(DEMO_TEMPLATE, DEMO_BODY)]
    with webhook_server(db, app_secret=DEMO_APP_SECRET, verify_token=DEMO_VERIFY_TOKEN) as hook_url:
        sim = GraphSimulator(
            token=DEMO_TOKEN,
            app_secret=DEMO_APP_SECRET,
            webhook_url=hook_url,
            phone_numbers=[DEMO_PHONE_ID],
            templates=catalogue,
            seed=7,
            not_on_whatsapp=[NOT_ON_WHATSAPP],
            sent_ms=200,
            delivered_ms=900,
            read_ms=2500,
        )
        url = sim.start()
        try:
            out.rule("wabulk demo --cloud")
            out.print(f"Simulated Graph API at {url}; webhooks to {hook_url} (data in {home})")

            out.print("\n[bold]1. Record the Cloud API number[/bold] (wabulk login --cloud)")
            # The real login path (the token and the number checked, the session recorded), not a copy.
            login = login_cloud(db, DEMO_SESSION, DEMO_PHONE_ID, token=DEMO_TOKEN, base_url=url)
            out.print(
                f"   {login.verified_name} ({login.display_phone_number}): {describe(login.limit())}; "
                f"{shared_by(login.settings(), [DEMO_SESSION])}",
                markup=False,
            )

            out.print("\n[bold]2. Sync the approved templates[/bold] (wabulk templates sync)")
            with Queue(db) as q:
                synced = sync_waba(
                    q, DEMO_SESSION, None, token=DEMO_TOKEN, base_url=url, version=graph_version()
                )
                out.print(
                    f"   {len(synced.templates)} template(s) of account {synced.waba_id}, "
                    f"{synced.approved} approved",
                    markup=False,
                )

                out.print(f"\n[bold]3. Queue the sample contacts[/bold] as template {DEMO_TEMPLATE!r}")
                job = TemplateJob(DEMO_TEMPLATE, "en_US", DEMO_PARAMS)
                result = enqueue_file(
                    q,
                    sample_contacts(),
                    template=job,
                    catalogue=load_catalogue(q, [DEMO_SESSION]),
                    name="demo-cloud",
                    country="GB",
                    sessions=(DEMO_SESSION,),
                )
            assert result.job_id is not None
            out.print(
                f"   job {result.job_id}: {result.enqueued} queued, {result.invalid} invalid, "
                f"{result.duplicates} duplicate(s)",
                markup=False,
            )
            for r in result.rejects:
                out.print(f"   rejected row {r.row}: {r.value!r} - {r.reason}", markup=False)

            out.print(f"\n[bold]4. Send[/bold] (up to {rate:g} msg/s; Ctrl-C stops cleanly)")
            config = CloudRunConfig(
                session=DEMO_SESSION,
                phone_number_id=DEMO_PHONE_ID,
                rate=rate,
                settle_seconds=SETTLE_SECONDS,
                until_done=True,
                job_ids=(result.job_id,),
                provider_settings=login.settings(),  # the messaging limit, as `wabulk run` has it
            )
            run = run_cloud(db, config, token=DEMO_TOKEN, base_url=url, on_progress=on_progress)
            out.print(f"   {run.line}", markup=False)
            _wait_for_webhooks(sim)
        finally:
            sim.stop()

    export_path = home / "demo-report.csv"
    with Queue(db) as q, open(export_path, "w", encoding="utf-8", newline="") as fh:
        export_job(q, result.job_id, fh)
    return CloudDemoResult(run.code, run.line, demo_settings, result.job_id, export_path)


def _wait_for_webhooks(sim: Any) -> None:
    """Let the simulator post the statuses still due (delivered and read come after the run's last POST),
    so the status table shows them; bounded, the demo never hangs on it."""
    deadline = time.monotonic() + WEBHOOKS_SETTLE
    while time.monotonic() < deadline:
        state = sim.app.state()
        if not state["pending_webhook_items"]:
            return
        time.sleep(0.1)
