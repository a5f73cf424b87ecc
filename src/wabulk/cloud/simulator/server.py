"""``GraphSimulator``: the simulated Graph API served from a background thread; its ``/_sim/`` control API."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .app import GraphApp
from .httpserver import HTTPServer, Request, Response
from .webhooks import WebhookSender

DEFAULT_PORT = 8766
DEFAULT_TOKEN = "sim-token"
DEFAULT_APP_SECRET = "sim-app-secret"


class GraphSimulator:
    """A local stand-in for Meta's Graph API (WhatsApp Cloud API). ``start()`` serves it from a thread.

    Example::

        sim = GraphSimulator(token="t", app_secret="s", webhook_url="http://127.0.0.1:8787/webhooks/whatsapp")
        sim.start()                           # sim.url == "http://127.0.0.1:PORT" (WABULK_GRAPH_URL)
        sim.add_fault("cut_after", count=1)   # the next send is accepted, then the connection is closed
        ...
        sim.accepted("+4915112345678")        # what was accepted for that recipient (duplicates count)
        sim.wait_webhooks(5)                  # every status POSTed and acknowledged
        sim.stop()
    """

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        app_secret: str = DEFAULT_APP_SECRET,
        webhook_url: str | None = None,
        phone_numbers: Iterable[str] | dict[str, dict[str, Any]] | None = None,
        seed: int | None = 0,
        templates: list[dict[str, Any]] | dict[str, list[dict[str, Any]]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        **config: Any,
    ) -> None:
        self.app = GraphApp(
            token=token,
            app_secret=app_secret,
            phone_numbers=phone_numbers,
            templates=templates,
            seed=seed,
            config=config,
        )
        self.sender = WebhookSender(self.app, app_secret, webhook_url)
        self.host = host
        self.port = port
        self.url = ""
        self._http = HTTPServer(self._handle, host, port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._relisten: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Start serving in a background thread; return the base URL (what ``WABULK_GRAPH_URL`` points at)."""
        if self._thread is not None:
            return self.url
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main(ready, failure)), name="wabulk-graph-simulator", daemon=True
        )
        self._thread.start()
        ready.wait(timeout=10)
        if failure:
            self._thread.join(timeout=5)
            self._thread = None
            raise failure[0]
        return self.url

    async def _main(self, ready: threading.Event, failure: list[BaseException]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        try:
            await self._http.listen()
        except OSError as exc:
            failure.append(exc)
            ready.set()
            return
        self.port = self._http.port
        self.url = f"http://{self.host}:{self.port}"
        self.app.base_url = self.url
        delivery = asyncio.ensure_future(self.sender.run(self._stop_event))
        ready.set()
        await self._stop_event.wait()
        await self._http.close()
        await delivery

    def stop(self) -> None:
        """Stop serving (pending webhooks are dropped) and free the port."""
        if self._thread is None:
            return
        loop, stop_event = self._loop, self._stop_event
        if loop is not None and stop_event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop_event.set)
            except RuntimeError:
                pass  # the loop already ended
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> GraphSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Run a coroutine factory in the server's loop and wait for its result."""
        if self._loop is None:
            raise RuntimeError("the simulator is not running")
        return asyncio.run_coroutine_threadsafe(fn(), self._loop).result(timeout)

    # ------------------------------------------------------------------------------ scenarios and faults

    def configure(self, **config: Any) -> dict[str, Any]:
        """Change config keys (README: 'Config'); returns the whole config. ValueError on a bad key/value."""
        return self.app.configure(config)

    @property
    def config(self) -> dict[str, Any]:
        """A copy of the current config."""
        return self.app.state()["config"]  # type: ignore[no-any-return]

    def add_fault(self, kind: str, **spec: Any) -> int:
        """Script a fault (README: 'Faults'), e.g. ``add_fault("error", code=131000, count=2)``; its id."""
        return self.app.add_fault(kind, **spec)

    def clear_faults(self) -> None:
        """Remove every scripted fault."""
        self.app.clear_faults()

    def set_token(self, token: str) -> None:
        """Accept only ``token`` from now on (the old one gets 190)."""
        self.app.set_token(token)

    def expire_token(self) -> None:
        """The token expires: 190 (subcode 463) on every request until :meth:`set_token`."""
        self.app.expire_token()

    def set_phone(self, phone_id: str, **facts: Any) -> dict[str, Any]:
        """Change (or add) a number: ``quality_rating``, ``throughput`` ("STANDARD"/"HIGH"), ``mps``,
        ``status``, ``whatsapp_business_manager_messaging_limit``, ``waba_id`` …; returns its facts."""
        return self.app.set_phone(phone_id, **facts)

    def set_waba_owner(self, waba_id: str, business_id: str) -> None:
        """The business portfolio owning a WABA (``GET /{waba}?fields=owner_business_info``)."""
        self.app.set_waba_owner(waba_id, business_id)

    def set_templates(self, templates: list[dict[str, Any]], waba_id: str | None = None) -> None:
        """Replace the template catalogue (of one WABA, default all); entries as ``templates.template()``."""
        self.app.set_templates(templates, waba_id)

    def set_template_status(self, name: str, status: str, language: str | None = None) -> int:
        """APPROVED / PAUSED (132015) / DISABLED (132016) / PENDING or REJECTED (132001)."""
        return self.app.set_template_status(name, status, language)

    def open_window(self, phone: str, hours: float = 24.0) -> None:
        """Open the customer service window with ``phone`` (text messages then reach them)."""
        self.app.open_window(phone, hours)

    def inbound(self, from_: str, text: str, name: str = "Customer") -> str:
        """A customer message: webhook (with ``contacts`` and ``messages``) + an open window. Its wamid."""
        return self.app.inbound(from_, text, name)

    def account_webhook(self, field: str, value: dict[str, Any], waba_id: str | None = None) -> None:
        """A webhook of another field (``account_update`` …). Template status changes and messaging-limit
        or throughput changes of :meth:`set_template_status` / :meth:`set_phone` send theirs already."""
        self.app.account_webhook(field, value, waba_id)

    def value_error(self, code: int = 130429, details: str = "") -> None:
        """A value-level ``errors`` webhook (no wamid)."""
        self.app.value_error(code, details)

    def release_held(self, outcome: str = "release") -> int:
        """Decide the messages held for quality assessment (``held_ms`` null): ``release`` or ``fail``."""
        return self.app.release_held(outcome)

    def refuse_connections(self, seconds: float | None = None) -> None:
        """Stop listening (connects are refused, idle kept-alive connections closed) for ``seconds``, or
        until :meth:`accept_connections`."""
        self._call(lambda: self._refuse(seconds))

    def accept_connections(self) -> None:
        """Listen again after :meth:`refuse_connections`."""
        self._call(self._accept_again)

    async def _refuse(self, seconds: float | None) -> None:
        if self._relisten is not None:
            self._relisten.cancel()
            self._relisten = None
        await self._http.refuse()
        if seconds is not None:
            loop = asyncio.get_running_loop()
            self._relisten = loop.call_later(seconds, lambda: asyncio.ensure_future(self._accept_again()))

    async def _accept_again(self) -> None:
        if self._relisten is not None:
            self._relisten.cancel()
            self._relisten = None
        if not self._http.listening:
            await self._http.listen()

    def set_webhook_url(self, url: str | None, verify_token: str | None = None) -> bool:
        """Where status webhooks go. With ``verify_token``, Meta's handshake runs first and a URL that fails
        it is not subscribed (False). Statuses due meanwhile wait (Meta keeps them up to 7 days)."""
        if url is not None and verify_token is not None:
            result = self.verify_webhook(url, verify_token)
            if not result["verified"]:
                return False
        self.sender.url = url
        return True

    def verify_webhook(self, url: str, verify_token: str) -> dict[str, Any]:
        """Meta's verification GET against ``url``: ``{verified, status_code, body}``."""
        return self._call(lambda: self.sender.handshake(url, verify_token))  # type: ignore[no-any-return]

    def reset(self) -> None:
        """Default config, catalogue and number facts; no records, faults, webhooks or retries."""
        self.app.reset()
        self.sender.forget()

    # ----------------------------------------------------------------------------------------- inspection

    def accepted(self, to: str | None = None) -> list[dict[str, Any]]:
        """Messages accepted, all or for one recipient (any format: ``+49 151 …``): ``{wamid, to, wa_id,
        phone_number_id, type, payload, biz_opaque_callback_data, at, version, message_status, outcome}``."""
        return self.app.accepted(to)

    def wait_accepted(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` messages were accepted; return them all (maybe fewer on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            recs = self.accepted()
            if len(recs) >= count or time.monotonic() >= deadline:
                return recs
            time.sleep(0.02)

    def uploads(self) -> list[dict[str, Any]]:
        """Media uploads accepted."""
        return self.app.uploads()

    def sent_webhooks(self) -> list[dict[str, Any]]:
        """Every webhook POST attempt, oldest first: ``{id, at, url, attempt, statuses, status_code, error,
        signature, body (parsed JSON, None if keep_webhook_bodies is off), raw (bytes)}``."""
        with self.app.lock:
            records = [dict(r) for r in self.app.webhooks]
        for r in records:
            r["raw"] = r["body"]
            r["body"] = json.loads(r["body"]) if r["body"] is not None else None
        return records

    def webhook_statuses(self, acknowledged: bool = True) -> list[dict[str, Any]]:
        """The statuses of the POSTs (only those answered 200 unless ``acknowledged`` is False), in the
        order they were sent, duplicates included."""
        out: list[dict[str, Any]] = []
        for post in self.sent_webhooks():
            if post["body"] is None or (acknowledged and post["status_code"] != 200):
                continue
            for entry in post["body"]["entry"]:
                for change in entry["changes"]:
                    out.extend(change["value"].get("statuses", []))
        return out

    def wait_webhooks(self, timeout: float = 10.0) -> bool:
        """Wait until every webhook due so far was delivered (acknowledged with 200); False on timeout."""
        deadline = time.monotonic() + timeout
        while not self.sender.idle():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def state(self) -> dict[str, Any]:
        """``GET /_sim/state``: config, numbers, faults, counts, webhook URL."""
        out = self.app.state()
        out["webhook_url"] = self.sender.url
        out["listening"] = self._http.listening
        out["webhooks_idle"] = self.sender.idle()
        return out

    # --------------------------------------------------------------------------------------- HTTP control

    def _handle(self, req: Request) -> Any:
        if req.path.startswith("/_sim/"):
            try:
                return self._control(req)
            except (ValueError, KeyError, TypeError) as exc:
                return _reply(400, {"error": str(exc)})
        return self.app.handle(req)

    def _control(self, req: Request) -> Any:
        """The ``/_sim/…`` control API (JSON), the same operations as the methods."""
        path, method = req.path[len("/_sim/") :].strip("/"), req.method
        body: dict[str, Any] = {}
        if req.body:
            parsed = json.loads(req.body)
            if not isinstance(parsed, dict):
                raise ValueError("the body must be a JSON object")
            body = parsed
        if path == "state" and method == "GET":
            return _reply(200, self.state())
        if path == "config" and method == "POST":
            return _reply(200, self.configure(**body))
        if path == "accepted" and method == "GET":
            return _reply(200, self.accepted(req.arg("to")))
        if path == "uploads" and method == "GET":
            return _reply(200, self.uploads())
        if path == "webhooks" and method == "GET":
            posts = self.sent_webhooks()
            for p in posts:
                p.pop("raw", None)
            return _reply(200, posts)
        if path == "faults":
            if method == "POST":
                spec = dict(body)
                return _reply(200, {"id": self.add_fault(spec.pop("kind", ""), **spec)})
            if method == "DELETE":
                self.clear_faults()
                return _reply(200, {"faults": []})
            if method == "GET":
                return _reply(200, self.state()["faults"])
        if path == "templates":
            if method == "POST":
                self.set_templates(body["templates"], body.get("waba_id"))
                return _reply(200, {"ok": True})
            if method == "GET":
                with self.app.lock:
                    return _reply(200, {w: v["templates"] for w, v in self.app.wabas.items()})
        if path == "template_status" and method == "POST":
            n = self.set_template_status(body["name"], body["status"], body.get("language"))
            return _reply(200, {"changed": n})
        if path == "token" and method == "POST":
            if body.get("expire"):
                self.expire_token()
            else:
                self.set_token(str(body["token"]))
            return _reply(200, {"ok": True})
        if path == "phone" and method == "POST":
            facts = dict(body)
            return _reply(200, self.set_phone(str(facts.pop("id")), **facts))
        if path == "window" and method == "POST":
            self.open_window(str(body["phone"]), float(body.get("hours", 24.0)))
            return _reply(200, {"ok": True})
        if path == "inbound" and method == "POST":
            return _reply(200, {"wamid": self.inbound(str(body["from"]), str(body.get("text", "")))})
        if path == "account_webhook" and method == "POST":
            self.account_webhook(str(body["field"]), dict(body["value"]), body.get("waba_id"))
            return _reply(200, {"ok": True})
        if path == "value_error" and method == "POST":
            self.value_error(int(body.get("code", 130429)), str(body.get("details", "")))
            return _reply(200, {"ok": True})
        if path == "release" and method == "POST":
            return _reply(200, {"released": self.release_held(str(body.get("outcome", "release")))})
        if path == "reset" and method == "POST":
            self.reset()
            return _reply(200, {"ok": True})
        if path == "refuse" and method == "POST":
            return self._refuse_reply(body.get("seconds"))
        if path == "webhook" and method == "POST":
            return self._webhook_reply(body.get("url"), body.get("verify_token"))
        if path == "verify" and method == "POST":
            return self._verify_reply(str(body["url"]), str(body["verify_token"]))
        if path == "idle" and method == "GET":
            return self._idle_reply(float(req.arg("timeout") or 10))
        return _reply(404, {"error": f"no control endpoint {method} /_sim/{path}"})

    async def _refuse_reply(self, seconds: Any) -> Response:
        if seconds is None:
            raise ValueError("seconds is required over HTTP (nothing could switch listening back on)")
        await self._refuse(float(seconds))
        return _reply(200, {"refusing_for_s": float(seconds)}, close=True)

    async def _webhook_reply(self, url: str | None, verify_token: str | None) -> Response:
        if url is not None and verify_token is not None:
            result = await self.sender.handshake(url, verify_token)
            if not result["verified"]:
                return _reply(200, {"subscribed": False, **result})
        self.sender.url = url
        return _reply(200, {"subscribed": True, "url": url})

    async def _verify_reply(self, url: str, verify_token: str) -> Response:
        return _reply(200, await self.sender.handshake(url, verify_token))

    async def _idle_reply(self, timeout: float) -> Response:
        deadline = time.monotonic() + timeout
        while not self.sender.idle() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return _reply(200, {"idle": self.sender.idle()})


def _reply(status: int, body: Any, close: bool = False) -> Response:
    return Response(status, json.dumps(body, default=_jsonable).encode(), close=close)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


CONTROL_HELP = """\
Point wabulk at it:  WABULK_GRAPH_URL={url}
  (with WABULK_CLOUD_TOKEN and WABULK_CLOUD_APP_SECRET set to the simulator's token and app secret)
Phone number ids: {phones}   WABA ids: {wabas}
Control API (JSON; README in wabulk/cloud/simulator):
  POST {url}/_sim/webhook   {{"url": "http://127.0.0.1:8787/webhooks/whatsapp", "verify_token": optional}}
  POST {url}/_sim/faults    {{"kind": "error", "code": 131000, "count": 2}}   DELETE {url}/_sim/faults
  POST {url}/_sim/config    {{"not_on_whatsapp": ["4915112345678"], "read_rate": 1.0, ...}}
  POST {url}/_sim/refuse    {{"seconds": 5}}     POST {url}/_sim/inbound {{"from": "...", "text": "hi"}}
  GET  {url}/_sim/state | /_sim/accepted?to=PHONE | /_sim/webhooks | /_sim/idle?timeout=10
"""


def main(argv: list[str] | None = None) -> int:
    """Run the Graph API simulator in the foreground: ``python -m wabulk.cloud.simulator [--port N] …``."""
    import argparse
    import os

    parser = argparse.ArgumentParser(
        prog="python -m wabulk.cloud.simulator", description="Local stand-in for Meta's WhatsApp Cloud API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 = any free port")
    parser.add_argument(
        "--token", default=None, help="accepted token (default: $WABULK_CLOUD_TOKEN or sim-token)"
    )
    parser.add_argument(
        "--app-secret",
        default=None,
        help="webhook signing secret (default: $WABULK_CLOUD_APP_SECRET or sim-app-secret)",
    )
    parser.add_argument("--webhook-url", default=None, help="where status webhooks are POSTed")
    parser.add_argument(
        "--verify-token", default=None, help="run Meta's handshake against --webhook-url first"
    )
    parser.add_argument(
        "--phone-number-id",
        action="append",
        default=None,
        help="a phone number id (repeatable; default 1234567890)",
    )
    parser.add_argument("--waba-id", default=None, help="the WABA id of the numbers (default 4455667788)")
    parser.add_argument("--mps", type=int, default=None, help="throughput limit per number (default 80)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=None, help="JSON object of config keys (see the README)")
    parser.add_argument(
        "--templates", type=Path, default=None, help="JSON file: the template catalogue (a list)"
    )
    args = parser.parse_args(argv)
    token = args.token or os.environ.get("WABULK_CLOUD_TOKEN") or DEFAULT_TOKEN
    secret = args.app_secret or os.environ.get("WABULK_CLOUD_APP_SECRET") or DEFAULT_APP_SECRET
    facts: dict[str, Any] = {}
    if args.waba_id:
        facts["waba_id"] = args.waba_id
    if args.mps:
        facts["mps"] = args.mps
    phones = {pid: dict(facts) for pid in (args.phone_number_id or ["1234567890"])}
    try:
        config = json.loads(args.config) if args.config else {}
        templates = json.loads(args.templates.read_text()) if args.templates else None
        sim = GraphSimulator(
            token=token,
            app_secret=secret,
            phone_numbers=phones,
            seed=args.seed,
            templates=templates,
            host=args.host,
            port=args.port,
            **config,
        )
        sim.start()
    except (ValueError, OSError) as exc:
        print(f"Error: {exc}", flush=True)
        return 2
    if args.webhook_url and not sim.set_webhook_url(args.webhook_url, args.verify_token):
        print(f"Error: {args.webhook_url} failed the verification handshake", flush=True)
        sim.stop()
        return 1
    print(f"Graph API simulator running at {sim.url}  (Ctrl-C to stop)", flush=True)
    state = sim.state()
    print(
        CONTROL_HELP.format(
            url=sim.url, phones=", ".join(state["phone_numbers"]), wabas=", ".join(state["waba_ids"])
        ),
        flush=True,
    )
    if token == DEFAULT_TOKEN:
        print(
            f"Token: {DEFAULT_TOKEN}   App secret: "
            f"{secret if secret == DEFAULT_APP_SECRET else '(from the environment)'}",
            flush=True,
        )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0
