"""A running ``wabulk serve`` for the tests, and a small HTTP client (stdlib only)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_URL = re.compile(r"Dashboard: (http://[^/]+)/\?token=(\S+)")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
    json_body: Any = None,
    timeout: float = 30,
) -> Reply:
    """One HTTP request; errors are replies too."""
    h = dict(headers or {})
    if json_body is not None:
        data = json.dumps(json_body).encode()
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Reply(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, (filename, content) in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Server:
    """``wabulk serve --port 0`` in a subprocess; ``base`` and ``token`` are read from what it prints."""

    def __init__(self, db: Path, *, token: str | None = "test-token", extra: list[str] | None = None) -> None:
        args = [sys.executable, "-m", "wabulk", "--db", str(db), "serve", "--port", "0", *(extra or [])]
        if token:
            args += ["--token", token]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("WABULK_API_TOKEN", None)
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
        )
        self.output = ""
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"wabulk serve exited: {self.output}")
            self.output += line
            m = _URL.search(line)
            if m:
                self.base, self.token = m.group(1), m.group(2)
                break
        else:
            raise RuntimeError(f"wabulk serve printed no URL: {self.output}")
        # The URL is printed just before uvicorn starts answering.
        while time.monotonic() < deadline:
            try:
                if request("GET", self.base + "/api/health", timeout=2).status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("wabulk serve does not answer")

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kw: Any) -> Reply:
        return request("GET", self.base + path, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    def post(self, path: str, **kw: Any) -> Reply:
        return request("POST", self.base + path, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    def upload(
        self, path: str, fields: dict[str, str], content: bytes, filename: str = "contacts.csv"
    ) -> Reply:
        body, ctype = multipart(fields, {"file": (filename, content)})
        return self.post(path, data=body, headers={"Content-Type": ctype})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def make_driver(downloads: Path | None = None, *, width: int = 420) -> Any:
    """Headless Chromium for the dashboard (phone-wide by default: the page must work there)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("WABULK_CHROME_BINARY", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},900"):
        opts.add_argument(arg)
    if downloads is not None:
        opts.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    driver = webdriver.Chrome(
        service=Service(os.environ.get("WABULK_CHROMEDRIVER", "/usr/bin/chromedriver")), options=opts
    )
    if downloads is not None:
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
    return driver


# --- a dashboard with something to show ------------------------------------------------------------------
FIRST = ["Amelia", "Oliver", "Isla", "Noah", "Ava", "Leo", "Mia", "Arthur", "Ivy", "Oscar", "Freya", "George"]
LAST = ["Patel", "Jones", "Smith", "Khan", "Brown", "Taylor", "Wilson", "Evans", "Thomas", "Roberts"]


def contacts_csv(path: Path, n: int, *, start: int = 0) -> Path:
    """``n`` contacts (at most 500 in all) with fictional US numbers (555-0100…0199 in five area codes), a
    name and a city."""
    cities = ["Boston", "Denver", "Austin", "Portland", "Chicago"]
    areas = ["202", "212", "312", "415", "617"]
    lines = ["Name,Mobile,City"]
    for i in range(start, start + n):
        lines.append(
            f"{FIRST[i % 12]} {LAST[i % 10]},({areas[i // 100]}) 555-01{i % 100:02d},{cities[i % 5]}"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def seed_dashboard(db: Path, folder: Path, *, live_workers: bool = True) -> dict[str, int]:
    """Fill ``db`` the way a few days of use would, through the same library calls the CLI and the worker
    make: a finished job with receipts, a job stopped part-way (sent, failed, cancelled), a running one,
    a session sending and one waiting for a scan, and a few notifications. Returns the job ids."""
    from wabulk.importer import enqueue_file
    from wabulk.notify import store
    from wabulk.queue import Queue

    folder.mkdir(parents=True, exist_ok=True)
    message = "Hi {name}, your {city} store has new offers this week. Reply STOP to opt out."
    now = time.time()
    clock = [now]  # the queue's clock, moved back so that the jobs have a history
    plan = (
        ("done", "october-newsletter.csv", 40, 0, 3 * 86400),
        ("stopped", "black-friday.csv", 120, 100, 86400),
        ("running", "december-offers.csv", 80, 300, 25 * 60),
    )
    with Queue(db, clock=lambda: clock[0]) as q:
        ids = {}
        shop = ""

        def send(job: int, count: int, *, fail_every: int = 0, tick: str = "sent") -> None:
            for i in range(count):
                clock[0] += 50
                claim = q.claim(shop, "shop", lease_seconds=60, job_ids=[job])
                assert claim is not None
                if fail_every and i % fail_every == fail_every - 1:
                    q.mark_failed(claim, error="not on WhatsApp", error_class="not_on_whatsapp")
                    continue
                q.mark_send_started(claim)
                q.mark_sent(claim, tick=tick if i % 3 else "read", session="shop")

        for key, name, n, start, ago in plan:
            clock[0] = now - ago
            src = contacts_csv(folder / name, n, start=start)
            result = enqueue_file(q, src, message=message, country="US", name=name)
            assert result.job_id is not None
            ids[key] = result.job_id
            shop = q.register_worker("shop", pid=os.getpid(), host="shop-laptop")
            if key == "done":
                send(ids[key], 40, tick="delivered")
            elif key == "stopped":
                send(ids[key], 48, fail_every=16)
                q.stop_job(ids[key])
            else:
                send(ids[key], 23)
        clock[0] = now
        if live_workers:
            q.heartbeat(shop, "pacing")
            scan = q.register_worker("front-desk", pid=os.getpid() + 1, host="shop-laptop")
            q.heartbeat(scan, "waiting_for_login")
            store.save_qr(q.conn, "front-desk", "2@dashboard-screenshot,qr,payload", now=now)
        else:
            q.unregister_worker(shop)
        targets = ["url:https://hooks.example.com/services/T000/B000/XXXX"]
        store.add(
            q.conn,
            targets,
            kind="job_completed",
            key=f"job_completed:{ids['done']}",
            data={"text": f"job {ids['done']} (october-newsletter.csv) completed: 40 sent"},
            now=now - 3 * 86400 + 2100,
        )
        store.add(
            q.conn,
            targets,
            kind="messages_failed",
            key=f"messages_failed:{ids['stopped']}",
            data={"text": f"job {ids['stopped']}: 3 message(s) failed"},
            now=now - 86400 + 1800,
        )
    return ids
