"""The simulator's server: state, durable message log, page API and control API (stdlib only).

The page (``static/app.js``) is a single-page app served for every route that does not start with
``/__sim/``. It talks to ``/__sim/api/*``; tests and other processes drive it through the control API
(``/__sim/config``, ``/__sim/scan`` …) or the :class:`Simulator` methods of the same names.

Login state is split as on the real site: the browser profile holds a device token in localStorage, the
server knows which tokens are linked. A fresh profile therefore shows the QR; a reused one does not.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import secrets
import tempfile
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

STATIC_DIR = Path(__file__).with_name("static")

ERAS = ("2023", "2025", "2026", "2026-09")
BLOCK_KINDS = ("temp_ban", "tos_block")
PAGE_ERRORS = ("database", "storage_full")
MESSAGE_KINDS = ("text", "image", "video", "document", "sticker", "audio")
# User-Agent tokens the 2026 page refuses (whatsapp-web-dom.md §5: "Browser identity: headless is refused").
REFUSED_UA_TOKENS = ("HeadlessChrome", "Electron", "WhatsApp/")
TAKEOVER_KINDS = ("window", "computer")

DEFAULT_CONFIG: dict[str, Any] = {
    "boot_ms": 2000,
    "lookup_ms": 800,
    "sent_ms": [300, 1500],
    "delivered_ms": 2000,
    "read_ms": None,
    "qr_rotate_ms": 20000,
    "qr_max_rotations": 5,
    "invalid_numbers": [],
    "never_deliver": [],
    "hold_pending": [],
    "offline": False,
    "ui_era": "2026-09",  # the live page of 2026 (whatsapp-web-dom.md §5); older eras on demand
    "max_media_bytes": 16 * 1024 * 1024,
    "max_doc_bytes": 2 * 1024 * 1024 * 1024,
    "beforeunload": False,
    "logged_in_default": False,
    "stall_boot": False,
    "blocked": None,
    "file_inputs_always": False,
    "history_scope": "device",  # "device": a chat shows what this device sent; "account": all devices
    # --- 2026-09 knobs (they work in every era unless noted) ---
    "refuse_headless": None,  # None: the era decides (true in 2026-09 only); read at page load
    "sw_caches_refusal": False,  # the refusal page registers a service worker that keeps serving it
    "bubble_ids": True,  # 2026-09: false = message rows without data-id
    "fail_sends": [],  # digits: sends to these numbers end on the message-fail icon, never logged
    "restricted": False,  # the composer is replaced by the "account restricted" block bar
    "whats_new": False,  # a "What's new" modal after boot, until Continue (per page load)
    "page_error": None,  # None | "database" | "storage_full": the app is replaced by that screen
    # A chat's history (its bubbles and the start-of-chat notice) shows this long after the chat opens, and
    # ``history_boot_ms`` (null: the same) for the first chat opened after the page loaded, as right after a
    # browser start (whatsapp-web-dom.md section 6: an empty read is not an empty chat).
    "history_ms": 0,
    "history_boot_ms": None,
}

# A page that has not polled for this long is no longer "showing" its QR.
PAGE_ALIVE_S = 3.0
PAGE_FORGET_S = 120.0


def _digits(value: Any) -> str:
    return "".join(ch for ch in str(value) if ch.isdigit())


def _validate_config(updates: dict[str, Any]) -> dict[str, Any]:
    """Check and normalise config updates; raise ValueError naming the bad key."""
    clean: dict[str, Any] = {}
    for key, value in updates.items():
        if key not in DEFAULT_CONFIG:
            raise ValueError(f"unknown config key {key!r}")
        if key == "sent_ms":
            if isinstance(value, (int, float)):
                value = [float(value), float(value)]
            elif isinstance(value, (list, tuple)) and len(value) == 2:
                lo, hi = float(value[0]), float(value[1])
                value = [min(lo, hi), max(lo, hi)]
            else:
                raise ValueError("sent_ms must be a number or [min, max]")
        elif key in (
            "boot_ms",
            "lookup_ms",
            "qr_rotate_ms",
            "max_media_bytes",
            "max_doc_bytes",
            "qr_max_rotations",
        ):
            value = float(value) if key.endswith("_ms") else int(value)
            if value < 0:
                raise ValueError(f"{key} must be >= 0")
        elif key == "history_ms":
            value = float(value)
            if value < 0:
                raise ValueError("history_ms must be >= 0")
        elif key in ("delivered_ms", "read_ms", "history_boot_ms"):
            value = None if value is None else float(value)
        elif key in ("invalid_numbers", "never_deliver", "hold_pending", "fail_sends"):
            if isinstance(value, str):
                value = [value]
            value = [_digits(v) for v in value]
        elif key in (
            "offline",
            "beforeunload",
            "logged_in_default",
            "stall_boot",
            "file_inputs_always",
            "sw_caches_refusal",
            "bubble_ids",
            "restricted",
            "whats_new",
        ):
            value = bool(value)
        elif key == "refuse_headless":
            value = None if value is None else bool(value)
        elif key == "page_error":
            if value not in (None, *PAGE_ERRORS):
                raise ValueError(f"page_error must be null or one of {', '.join(PAGE_ERRORS)}")
        elif key == "ui_era":
            value = str(value)
            if value not in ERAS:
                raise ValueError(f"ui_era must be one of {', '.join(ERAS)}")
        elif key == "blocked":
            if value not in (None, *BLOCK_KINDS):
                raise ValueError(f"blocked must be null or one of {', '.join(BLOCK_KINDS)}")
        elif key == "history_scope" and value not in ("device", "account"):
            raise ValueError("history_scope must be 'device' or 'account'")
        clean[key] = value
    return clean


def _message_kind(kind: Any, attachment: dict[str, Any] | None) -> str:
    """The log's ``kind``: what the page said it sent, else derived from the attachment's type."""
    if kind is not None:
        if kind not in MESSAGE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(MESSAGE_KINDS)}")
        return str(kind)
    if attachment is None:
        return "text"
    major = attachment["type"].split("/")[0]
    return major if major in ("image", "video", "audio") else "document"


UNSUPPORTED_TITLE = "WhatsApp works with Google Chrome 100+"
UNSUPPORTED_TEXT = "To use WhatsApp, update Chrome or use Mozilla Firefox, Safari, Microsoft Edge or Opera."


def refusal_html(via: str, register_worker: bool) -> str:
    """The unsupported-browser page: no app, no QR, no polling (app.js draws the same DOM when it refuses).

    ``via`` marks who served it (``http``, ``service-worker``) on ``<html data-sim-refusal>``, for tests;
    ``register_worker``: register the service worker that keeps serving this page (``sw_caches_refusal``).
    """
    script = (
        "<script>navigator.serviceWorker && navigator.serviceWorker.register('/__sim/sw.js', {scope: '/'})"
        ".catch(function () {});</script>"
        if register_worker
        else ""
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en" dir="ltr" data-sim-refusal="{via}">\n'
        '<head>\n<meta charset="utf-8">\n'
        '<title>WhatsApp</title>\n<link rel="stylesheet" href="/__sim/static/app.css">\n</head>\n<body>\n'
        '<div id="app"><div class="panel unsupported" data-screen="unsupported-browser">'
        f"<h1>{UNSUPPORTED_TITLE}</h1><div>{UNSUPPORTED_TEXT}</div></div></div>\n{script}</body>\n</html>\n"
    )


def _fake_b64(nbytes: int) -> str:
    return base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


class SimState:
    """Everything the simulator knows. All methods are thread-safe (one re-entrant lock)."""

    def __init__(self, log_path: Path, config: dict[str, Any]) -> None:
        self.lock = threading.RLock()
        self.log_path = log_path
        self.devices_path = log_path.with_name(log_path.name + ".devices.json")
        self.config: dict[str, Any] = dict(DEFAULT_CONFIG)
        self.config.update(_validate_config(config))
        self.messages: list[dict[str, Any]] = []
        self.by_id: dict[str, dict[str, Any]] = {}
        self.sent_delay: dict[str, float] = {}  # message id -> seconds until the first tick
        self.devices: dict[str, dict[str, Any]] = {}
        self.takeovers: dict[str, str] = {}  # device token -> "window" | "computer"
        self.pages: dict[str, dict[str, Any]] = {}  # page id -> {token, ref, refs, screen, last_poll}
        # Not in the message log (WhatsApp never accepted them / the page did not send them); memory only.
        self.failed: list[dict[str, Any]] = []  # sends to `fail_sends` numbers (end on message-fail)
        self.incoming: list[dict[str, Any]] = []  # messages "from" contacts (POST /__sim/incoming)
        self.refusals: list[dict[str, Any]] = []  # page requests refused for their User-Agent
        self._load()

    # --- persistence ------------------------------------------------------------------------------
    def _load(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.log_path.exists():
            with self.log_path.open("r", encoding="utf-8") as fh:
                for line in fh:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a torn last line from a killed process: skip it
                    if isinstance(rec, dict) and "id" in rec and rec["id"] not in self.by_id:
                        self.messages.append(rec)
                        self.by_id[rec["id"]] = rec
            # a torn last line (process killed mid-write) must not swallow the next record
            with self.log_path.open("rb+") as fh:
                if fh.seek(0, os.SEEK_END):
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        fh.write(b"\n")
        if self.devices_path.exists():
            with contextlib.suppress(OSError, json.JSONDecodeError):
                data = json.loads(self.devices_path.read_text(encoding="utf-8"))
                if isinstance(data, dict):
                    self.devices = data

    def _append_log(self, rec: dict[str, Any]) -> None:
        line = (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _save_devices(self) -> None:
        tmp = self.devices_path.with_name(self.devices_path.name + ".tmp")
        tmp.write_text(json.dumps(self.devices), encoding="utf-8")
        os.replace(tmp, self.devices_path)

    # --- config -----------------------------------------------------------------------------------
    def configure(self, updates: dict[str, Any]) -> dict[str, Any]:
        clean = _validate_config(updates)
        with self.lock:
            self.config.update(clean)
            return dict(self.config)

    def reset(self) -> None:
        """Back to defaults: config, devices, takeovers, pages and the message log (truncated)."""
        with self.lock:
            self.config = dict(DEFAULT_CONFIG)
            self.messages.clear()
            self.by_id.clear()
            self.sent_delay.clear()
            self.devices.clear()
            self.takeovers.clear()
            self.pages.clear()
            self.failed.clear()
            self.incoming.clear()
            self.refusals.clear()
            fd = os.open(self.log_path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o644)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._save_devices()

    # --- devices and QR ---------------------------------------------------------------------------
    def _link(self) -> str:
        token = secrets.token_hex(8)
        now = time.time()
        self.devices[token] = {"device": token, "linked_at": now, "last_seen": now}
        self._save_devices()
        return token

    def is_linked(self, token: str | None) -> bool:
        return bool(token) and token in self.devices

    def touch_page(self, page: str, token: str | None, screen: str | None, ref: str | None) -> dict:
        now = time.time()
        with self.lock:
            info = self.pages.setdefault(
                page,
                {
                    "page": page,
                    "token": None,
                    "ref": None,
                    "refs": [],
                    "screen": None,
                    "new_token": None,
                    "last_poll": now,
                },
            )
            info["last_poll"] = now
            if token:
                info["token"] = token
                if token in self.devices:
                    self.devices[token]["last_seen"] = now
            if screen:
                info["screen"] = screen
            if ref is not None:
                info["ref"] = ref or None
            for pid in [p for p, v in self.pages.items() if now - v["last_poll"] > PAGE_FORGET_S]:
                del self.pages[pid]
            return info

    def new_qr(self, page: str) -> str:
        ref = f"2@{secrets.token_urlsafe(24)}"
        data_ref = f"{ref},{_fake_b64(32)},{_fake_b64(32)},{_fake_b64(32)},WEB"
        with self.lock:
            info = self.touch_page(page, None, "qr", data_ref)
            info["refs"] = ([*info["refs"], data_ref])[-2:]  # the previous one still scans (race)
        return data_ref

    def scan(self, ref: str | None = None) -> int:
        """Link the browser(s) whose QR is on screen now (or the one showing ``ref``)."""
        now = time.time()
        count = 0
        with self.lock:
            for info in self.pages.values():
                if info["new_token"]:
                    continue
                if ref is not None:
                    hit = ref in info["refs"] or any(r.split(",")[0] == ref for r in info["refs"])
                else:
                    hit = (
                        info["screen"] == "qr"
                        and info["ref"] is not None
                        and now - info["last_poll"] <= PAGE_ALIVE_S
                    )
                if hit:
                    info["new_token"] = self._link()
                    info["ref"] = None
                    info["refs"] = []
                    count += 1
        return count

    def logout(self, device: str | None = None) -> int:
        with self.lock:
            targets = [device] if device is not None else list(self.devices)
            count = 0
            for token in targets:
                if self.devices.pop(token, None) is not None:
                    count += 1
                self.takeovers.pop(token, None)
            self._save_devices()
            return count

    def takeover(self, kind: str, device: str | None = None) -> int:
        if kind not in TAKEOVER_KINDS:
            raise ValueError(f"kind must be one of {', '.join(TAKEOVER_KINDS)}")
        with self.lock:
            targets = [device] if device is not None else list(self.devices)
            for token in targets:
                self.takeovers[token] = kind
            return len(targets)

    def use_here(self, token: str) -> None:
        with self.lock:
            self.takeovers.pop(token, None)

    # --- messages ---------------------------------------------------------------------------------
    def receive(self, token: str, body: dict[str, Any]) -> dict[str, Any]:
        """Record one message the page sent; idempotent on the page's message id."""
        msg_id = str(body.get("id") or secrets.token_hex(10).upper())
        with self.lock:
            if msg_id in self.by_id:
                return self.by_id[msg_id]
            for done in self.failed:
                if done["id"] == msg_id:
                    return done
            attachment = body.get("attachment")
            if attachment is not None:
                attachment = {
                    "name": str(attachment.get("name", "")),
                    "size": int(attachment.get("size", 0)),
                    "type": str(attachment.get("type", "")),
                }
            text = str(body.get("text", ""))
            kind = _message_kind(body.get("kind"), attachment)
            rec = {
                "id": msg_id,
                "device": token,
                "phone": _digits(body.get("phone", "")),
                "text": text,
                "attachment": attachment,
                "caption": text if attachment is not None else None,
                "kind": kind,
                "at": time.time(),
            }
            if rec["phone"] in self.config["fail_sends"]:
                # WhatsApp never accepts it: not logged; the bubble goes from the clock to message-fail
                rec["failed"] = True
                self.failed.append(rec)
            else:
                self._append_log(rec)
                self.messages.append(rec)
                self.by_id[msg_id] = rec
            lo, hi = self.config["sent_ms"]
            self.sent_delay[msg_id] = random.uniform(lo, hi) / 1000.0
            return rec

    def status_of(self, rec: dict[str, Any], now: float | None = None) -> str:
        """Tick state of a received message, from the time since it arrived and the current config."""
        now = time.time() if now is None else now
        cfg = self.config
        if rec["phone"] in cfg["hold_pending"]:
            return "pending"
        age = now - rec["at"]
        first = self.sent_delay.get(rec["id"], cfg["sent_ms"][1] / 1000.0)
        if age < first:
            return "pending"
        if rec.get("failed"):
            return "failed"
        if rec["phone"] in cfg["never_deliver"] or cfg["delivered_ms"] is None:
            return "sent"
        delivered_at = first + cfg["delivered_ms"] / 1000.0
        if age < delivered_at:
            return "sent"
        if cfg["read_ms"] is None or age < delivered_at + cfg["read_ms"] / 1000.0:
            return "delivered"
        return "read"

    def list_messages(self) -> list[dict[str, Any]]:
        with self.lock:
            now = time.time()
            return [{**rec, "status": self.status_of(rec, now)} for rec in self.messages]

    def chat(self, token: str, phone: str) -> list[dict[str, Any]]:
        """One chat as the page shows it, oldest first: outgoing (``dir`` "out", with ``status``), failed
        sends (status "failed" once due) and incoming messages (``dir`` "in")."""
        phone = _digits(phone)
        with self.lock:
            now = time.time()
            account = self.config["history_scope"] == "account"
            rows = [
                {**rec, "dir": "out", "status": self.status_of(rec, now)}
                for rec in [*self.messages, *self.failed]
                if rec["phone"] == phone and (account or rec["device"] == token)
            ]
            rows += [{**rec, "dir": "in"} for rec in self.incoming if rec["phone"] == phone]
            rows.sort(key=lambda r: r["at"])
            return rows

    def add_incoming(self, phone: str, text: str, name: str | None = None) -> dict[str, Any]:
        """A message from ``phone`` to this account: every linked page shows it in that chat."""
        digits = _digits(phone)
        if not digits:
            raise ValueError("phone is required")
        rec = {
            "id": "3A" + secrets.token_hex(9).upper(),
            "phone": digits,
            "text": str(text),
            "name": None if name is None else str(name),
            "kind": "text",
            "at": time.time(),
        }
        with self.lock:
            self.incoming.append(rec)
        return rec

    def refuse_headless(self) -> bool:
        """The effective ``refuse_headless``: the config's, or when it is null the era's (2026-09 only)."""
        with self.lock:
            refuse = self.config["refuse_headless"]
            return self.config["ui_era"] == "2026-09" if refuse is None else bool(refuse)

    def refuses(self, user_agent: str) -> bool:
        """Whether a page load with this User-Agent gets the unsupported-browser page (per the config)."""
        return self.refuse_headless() and any(tok in user_agent for tok in REFUSED_UA_TOKENS)

    def chats(self, token: str) -> list[dict[str, Any]]:
        """The chat list for a device: one entry per phone, most recent first."""
        with self.lock:
            account = self.config["history_scope"] == "account"
            last: dict[str, dict[str, Any]] = {}
            mine = [r for r in [*self.messages, *self.failed] if account or r["device"] == token]
            for rec in sorted([*mine, *self.incoming], key=lambda r: r["at"]):
                last[rec["phone"]] = rec
            now = time.time()
            rows = sorted(last.values(), key=lambda r: r["at"], reverse=True)
            return [
                {
                    "phone": r["phone"],
                    "text": r["text"],
                    "at": r["at"],
                    "status": self.status_of(r, now) if "device" in r else "incoming",
                }
                for r in rows
            ]

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "config": dict(self.config),
                "devices": list(self.devices.values()),
                "takeovers": dict(self.takeovers),
                "pages": [{k: v for k, v in p.items() if k != "refs"} for p in self.pages.values()],
                "message_count": len(self.messages),
                "failed": [dict(r) for r in self.failed],
                "incoming": [dict(r) for r in self.incoming],
                "refusals": [dict(r) for r in self.refusals],
                "refuse_headless": self.refuse_headless(),  # effective (the config may say null)
            }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: tests and `wabulk simulator` do not want one line per poll

    # --- helpers ----------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return {}
        data = json.loads(self.rfile.read(length).decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        return data

    # --- routing ----------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        state = self.server.state
        path = url.path
        try:
            if not path.startswith("/__sim/"):
                self._page(path)
            elif path == "/__sim/refused.html":
                self._send(
                    200, refusal_html(q.get("via", "http"), False).encode(), "text/html; charset=utf-8"
                )
            elif path == "/__sim/sw.js":
                # served from /__sim/ but controlling the whole origin, as the real page's worker does
                self._static("sw.js", {"Service-Worker-Allowed": "/"})
            elif path.startswith("/__sim/static/"):
                self._static(path[len("/__sim/static/") :])
            elif path == "/__sim/messages":
                self._json(state.list_messages())
            elif path == "/__sim/devices":
                with state.lock:
                    self._json(list(state.devices.values()))
            elif path in ("/__sim/state", "/__sim/config"):
                snap = state.snapshot()
                self._json(snap if path == "/__sim/state" else snap["config"])
            elif path == "/__sim/api/boot":
                self._api_boot(q)
            elif path == "/__sim/api/poll":
                self._api_poll(q)
            elif path == "/__sim/api/chat":
                self._json(state.chat(q.get("token", ""), q.get("phone", "")))
            elif path == "/__sim/api/lookup":
                self._api_lookup(q)
            else:
                self._error(404, f"no such endpoint: {path}")
        except (ValueError, KeyError, json.JSONDecodeError) as exc:
            self._error(400, str(exc))

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        state = self.server.state
        try:
            body = self._body()
            if path == "/__sim/config":
                self._json(state.configure(body))
            elif path == "/__sim/scan":
                self._json({"count": state.scan(body.get("ref"))})
            elif path == "/__sim/logout":
                self._json({"count": state.logout(body.get("device"))})
            elif path == "/__sim/takeover":
                self._json({"count": state.takeover(body.get("kind", "window"), body.get("device"))})
            elif path == "/__sim/incoming":
                rec = state.add_incoming(
                    str(body.get("phone", "")), str(body.get("text", "")), body.get("name")
                )
                self._json(rec)
            elif path == "/__sim/reset":
                state.reset()
                self._json({"ok": True})
            elif path == "/__sim/api/qr":
                self._json({"ref": state.new_qr(str(body.get("page", "")))})
            elif path == "/__sim/api/send":
                self._api_send(body)
            elif path == "/__sim/api/usehere":
                state.use_here(str(body.get("token", "")))
                self._json({"ok": True})
            elif path == "/__sim/api/logout":
                self._json({"count": state.logout(str(body.get("token", "")))})
            else:
                self._error(404, f"no such endpoint: {path}")
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            self._error(400, str(exc))

    # --- page API ---------------------------------------------------------------------------------
    def _page(self, path: str) -> None:
        """The app for every page route, or the unsupported-browser page for a refused User-Agent."""
        state = self.server.state
        ua = self.headers.get("User-Agent") or ""
        landing = path.rstrip("/") == "/api-landing/send"  # stands for api.whatsapp.com: not the web app
        with state.lock:
            sw = bool(state.config["sw_caches_refusal"])
        if not landing and state.refuses(ua):
            if path != "/favicon.ico":  # the browser's own side request says nothing about the page
                with state.lock:
                    state.refusals.append({"at": time.time(), "path": path, "user_agent": ua})
                    del state.refusals[:-100]
            self._send(200, refusal_html("http", sw).encode(), "text/html; charset=utf-8")
            return
        # The page checks navigator.userAgent itself too (so a UA faked only in the HTTP header or only in
        # JS is still caught); it must know whether to, before it talks to the server at all.
        flags = json.dumps({"refuse_headless": state.refuse_headless(), "sw_caches_refusal": sw})
        html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        html = html.replace(
            "<!--sim-page-flags-->", f'<script id="sim-page" type="application/json">{flags}</script>'
        )
        self._send(200, html.encode("utf-8"), "text/html; charset=utf-8")

    def _static(self, name: str, extra: dict[str, str] | None = None) -> None:
        target = (STATIC_DIR / name).resolve()
        if STATIC_DIR.resolve() not in target.parents or not target.is_file():
            self._error(404, "not found")
            return
        ctype = {
            ".html": "text/html; charset=utf-8",
            ".js": "text/javascript; charset=utf-8",
            ".css": "text/css; charset=utf-8",
        }.get(target.suffix, "application/octet-stream")
        self._send(200, target.read_bytes(), ctype, extra)

    def _api_boot(self, q: dict[str, str]) -> None:
        state = self.server.state
        token = q.get("token") or None
        with state.lock:
            issued = None
            # logged_in_default links any new browser, but not the QR page shown right after a logout
            if not state.is_linked(token) and state.config["logged_in_default"] and not q.get("post_logout"):
                token = issued = state._link()
            state.touch_page(q.get("page", ""), token, "boot", None)
            self._json({"config": dict(state.config), "linked": state.is_linked(token), "token": issued})

    def _api_poll(self, q: dict[str, str]) -> None:
        state = self.server.state
        token = q.get("token") or None
        with state.lock:
            info = state.touch_page(q.get("page", ""), token, q.get("screen"), None)
            new_token = info.pop("new_token", None)
            info["new_token"] = None
            if new_token:
                info["token"] = token = new_token
            reply: dict[str, Any] = {
                "config": dict(state.config),
                "linked": state.is_linked(token),
                "new_token": new_token,
                "takeover": state.takeovers.get(token or "") if token else None,
            }
            phone = q.get("phone")
            if phone and token:
                reply["chat"] = state.chat(token, phone)
            if q.get("chats") and token:
                reply["chats"] = state.chats(token)
            self._json(reply)

    def _api_lookup(self, q: dict[str, str]) -> None:
        state = self.server.state
        with state.lock:
            delay = state.config["lookup_ms"] / 1000.0
            invalid = _digits(q.get("phone", "")) in state.config["invalid_numbers"]
        time.sleep(delay)  # the round-trip to WhatsApp's servers (queryWidExists)
        self._json({"exists": not invalid})

    def _api_send(self, body: dict[str, Any]) -> None:
        state = self.server.state
        token = str(body.get("token", ""))
        with state.lock:
            if state.config["offline"]:
                self._error(HTTPStatus.SERVICE_UNAVAILABLE, "offline")
                return
            if state.config["blocked"]:
                self._error(HTTPStatus.FORBIDDEN, "blocked")
                return
            if state.config["restricted"]:
                # nothing can be sent; a bubble already on the clock stays there until the restriction lifts
                self._error(HTTPStatus.FORBIDDEN, "restricted")
                return
            if not state.is_linked(token):
                self._error(HTTPStatus.UNAUTHORIZED, "device not linked")
                return
            if not _digits(body.get("phone", "")):
                raise ValueError("phone is required")
            rec = state.receive(token, body)
            status = state.status_of(rec)
            # When the single tick is due, so the page can poll then (the real page has it pushed).
            due = None
            if status == "pending" and rec["phone"] not in state.config["hold_pending"]:
                due = max(0, round((rec["at"] + state.sent_delay[rec["id"]] - time.time()) * 1000))
            self._json({"id": rec["id"], "at": rec["at"], "status": status, "tick_in_ms": due})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], state: SimState) -> None:
        super().__init__(addr, _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the browser navigated away mid-request (e.g. during a lookup): nothing to report
        super().handle_error(request, client_address)


class Simulator:
    """A local stand-in for WhatsApp Web. ``start()`` serves it from a background thread.

    Example::

        sim = Simulator(boot_ms=100, lookup_ms=100)
        url = sim.start()          # "http://127.0.0.1:PORT"
        ...                        # drive Chromium at f"{url}/send?phone=15550001111&text=hi"
        sim.scan()                 # link the browser showing the QR
        assert sim.messages()[0]["text"] == "hi"
        sim.stop()
    """

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, log_path: Path | None = None, **config: Any
    ) -> None:
        self.host = host
        self.port = port
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        if log_path is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="wabulk-sim-")
            log_path = Path(self._tmpdir.name) / "messages.jsonl"
        self.log_path = Path(log_path)
        self.state = SimState(self.log_path, config)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> str:
        """Start serving in a background thread; return the base URL."""
        if self._server is None:
            self._server = _Server((self.host, self.port), self.state)
            self.port = self._server.server_address[1]
            self.url = f"http://{self.host}:{self.port}"
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="wabulk-simulator", daemon=True
            )
            self._thread.start()
        return self.url

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        if self._server is None:
            self._server = _Server((self.host, self.port), self.state)
            self.port = self._server.server_address[1]
            self.url = f"http://{self.host}:{self.port}"
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def configure(self, **config: Any) -> None:
        """Change config keys (same as POST /__sim/config). Pages pick changes up within a second."""
        self.state.configure(config)

    @property
    def config(self) -> dict[str, Any]:
        """A copy of the current config."""
        with self.state.lock:
            return dict(self.state.config)

    def scan(self, ref: str | None = None) -> int:
        """'Scan' the QR(s) on screen now (or the one whose data-ref is/starts with ``ref``)."""
        return self.state.scan(ref)

    def wait_scan(self, timeout: float = 10.0) -> int:
        """Scan as soon as a QR is on screen (e.g. while ``wabulk login`` runs in another thread or process).

        Returns how many browsers were linked; 0 if no QR showed up within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            count = self.scan()
            if count or time.monotonic() >= deadline:
                return count
            time.sleep(0.05)

    def wait_messages(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` messages were received; return them all (maybe fewer on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages()
            if len(msgs) >= count or time.monotonic() >= deadline:
                return msgs
            time.sleep(0.05)

    def logout(self, device: str | None = None) -> int:
        """Unlink one device token, or all; returns how many were linked."""
        return self.state.logout(device)

    def takeover(self, kind: str = "window", device: str | None = None) -> None:
        """Show the 'open in another window' (``window``) or 'another computer' screen."""
        self.state.takeover(kind, device)

    def messages(self) -> list[dict[str, Any]]:
        """Every message received, in order, each with its current tick ``status``."""
        return self.state.list_messages()

    def incoming(self, phone: str, text: str, name: str | None = None) -> dict[str, Any]:
        """A message from ``phone`` (shown as ``name`` or its number) arrives in that chat on every page."""
        return self.state.add_incoming(phone, text, name)

    def failed(self) -> list[dict[str, Any]]:
        """Sends to ``fail_sends`` numbers: shown on the page, never accepted by WhatsApp (not logged)."""
        return self.state.snapshot()["failed"]

    def refusals(self) -> list[dict[str, Any]]:
        """Page requests answered with the unsupported-browser page: ``{at, path, user_agent}``."""
        return self.state.snapshot()["refusals"]

    def devices(self) -> list[dict[str, Any]]:
        """Linked devices: ``{device, linked_at, last_seen}``."""
        with self.state.lock:
            return [dict(d) for d in self.state.devices.values()]

    def pages(self) -> list[dict[str, Any]]:
        """Pages that polled recently, with the screen each reports (``boot``, ``qr``, ``main`` …)."""
        return self.state.snapshot()["pages"]

    def reset(self) -> None:
        """Defaults again; forget devices and truncate the message log."""
        self.state.reset()


CONTROL_HELP = """\
Control API (JSON):
  POST {url}/__sim/config     {{"ui_era": "2025", "invalid_numbers": ["15550000000"], "offline": true, ...}}
  POST {url}/__sim/scan       {{"ref": optional data-ref}}   link the browser(s) showing a QR
  POST {url}/__sim/logout     {{"device": optional token}}    unlink one device or all
  POST {url}/__sim/takeover   {{"kind": "window"|"computer", "device": optional}}
  POST {url}/__sim/incoming   {{"phone": "14155550123", "text": "hi", "name": optional}}
  POST {url}/__sim/reset
  GET  {url}/__sim/messages | /__sim/devices | /__sim/state
Messages received are appended to {log}
"""


def main(argv: list[str] | None = None) -> int:
    """Run the simulator in the foreground: ``python -m wabulk.web.simulator [--port N] [--log PATH]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="wabulk simulator", description="Local WhatsApp Web stand-in.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--log", type=Path, default=None, help="durable JSONL log of received messages")
    parser.add_argument("--era", choices=ERAS, default="2026-09", help="page version to imitate")
    parser.add_argument("--logged-in", action="store_true", help="new browsers start logged in (no QR)")
    args = parser.parse_args(argv)
    sim = Simulator(
        host=args.host, port=args.port, log_path=args.log, ui_era=args.era, logged_in_default=args.logged_in
    )
    sim.start()
    print(f"WhatsApp Web simulator running at {sim.url}/  (Ctrl-C to stop)", flush=True)
    print(CONTROL_HELP.format(url=sim.url, log=sim.log_path), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0
