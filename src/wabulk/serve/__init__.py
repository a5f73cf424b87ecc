"""``wabulk serve``: the HTTP API and web dashboard, one more client of the queue (it never sends).

Imported only by that command: FastAPI, Starlette and uvicorn cost a few hundred milliseconds to import,
which ``wabulk status --json`` and ``--help`` must not pay.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from wabulk.errors import BadInput

if TYPE_CHECKING:
    from wabulk.settings import Settings

ENV_TOKEN = "WABULK_API_TOKEN"
ENV_MAX_UPLOAD = "WABULK_SERVE_MAX_UPLOAD"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback address without an explicit token (BadInput): a generated one is printed
    to a terminal, and whoever can reach the port should not be racing the owner for it."""
    if not is_loopback(host) and not token:
        raise BadInput(
            f"refusing to listen on {host} without an explicit token: pass --token or set {ENV_TOKEN} "
            "(and put TLS in front of it, e.g. a reverse proxy)"
        )


def new_token() -> str:
    """A fresh random token (URL-safe)."""
    return secrets.token_urlsafe(24)


def run_server(
    settings: Settings,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    max_upload: int | None = None,
    notify: Sequence[str] = (),
    notify_cmd: Sequence[str] = (),
    echo: Callable[[str], None] = print,
) -> int:
    """Serve until interrupted; returns the exit code. ``port`` 0 picks a free port (printed). With
    ``notify``/``notify_cmd`` (or their environment variables) it also runs the notifier."""
    check_bind(host, token)
    import uvicorn

    from .api import DEFAULT_MAX_UPLOAD, create_app

    token = token or new_token()
    app, _ = create_app(settings, token=token, max_upload=max_upload or DEFAULT_MAX_UPLOAD)
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise BadInput(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    bound = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if family == socket.AF_INET6 else host
    echo(f"wabulk serve: database {settings.db}")
    echo(f"Dashboard: http://{shown}:{bound}/?token={token}")
    echo(
        f"API: http://{shown}:{bound}/api/status (header 'Authorization: Bearer <token>'); reference at /api"
    )
    sys.stdout.flush()
    from wabulk.notify.deliver import NotifyConfig
    from wabulk.notify.service import start_notifier

    # With --notify, serve is one more watcher: it notices a dead worker even when no other worker runs.
    notifier = start_notifier(settings.db, NotifyConfig.from_env(notify, notify_cmd))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        return 130
    finally:
        sock.close()
        if notifier is not None:
            notifier.stop()
    return 0
