"""A webhook receiver for the Graph API simulator's tests: a real HTTP server recording Meta's POSTs."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Receiver:
    """Records webhook POSTs (raw body and headers); answers ``fail_next`` of them with 500 first.

    The verification GET answers the challenge when ``hub.verify_token`` equals ``verify_token``.
    """

    def __init__(self, verify_token: str = "vt") -> None:
        self.verify_token = verify_token
        self.posts: list[dict[str, Any]] = []
        self.gets: list[dict[str, Any]] = []
        self.fail_next = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                q = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                receiver.gets.append(q)
                ok = q.get("hub.mode") == "subscribe" and q.get("hub.verify_token") == receiver.verify_token
                body = q.get("hub.challenge", "").encode() if ok else b"forbidden"
                self.send_response(200 if ok else 403)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    failing = receiver.fail_next > 0
                    if failing:
                        receiver.fail_next -= 1
                    receiver.posts.append(
                        {
                            "raw": raw,
                            "headers": dict(self.headers.items()),
                            "answered": 500 if failing else 200,
                        }
                    )
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/whatsapp"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def clear(self) -> None:
        with self.lock:
            self.posts.clear()
            self.gets.clear()
            self.fail_next = 0

    def statuses(self, acknowledged: bool = True) -> list[dict[str, Any]]:
        """Every status of the POSTs received (answered 200 unless ``acknowledged`` is False), in order."""
        out: list[dict[str, Any]] = []
        with self.lock:
            posts = list(self.posts)
        for post in posts:
            if acknowledged and post["answered"] != 200:
                continue
            for entry in json.loads(post["raw"])["entry"]:
                for change in entry["changes"]:
                    out.extend(change["value"].get("statuses", []))
        return out
