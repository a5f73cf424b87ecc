"""The send path's HTTP/1.1 client: asyncio protocols on a few kept-alive connections, one request at a time
per connection, no automatic retries.

Why not httpx here: at 1,000 POSTs a second its per-request machinery (pool locks, h11 events, one thread
per request in flight) cost more CPU than the whole queue. This module does one thing — POST a small JSON
body to one origin and read the answer — on the event loop of ``wabulk run``'s Cloud loop. Login, account
facts, templates and media keep using :class:`~wabulk.cloud.client.GraphClient` (httpx).

The outcomes are those of the reference's transport table (§5, and §6 exactly-once):

- an answer: ``(status, body)``;
- nothing was written (connect refused, DNS, TLS, connect timeout): ``TransportError(written=False)``,
  safe to POST again;
- once any byte of the request was handed to the connection, no answer (read timeout, reset, cut, a
  malformed answer) is an **unknown outcome**: ``TransportError(written=True)``, never re-POSTed on its own.

A pooled connection the server already closed (its keep-alive ran out, a restart) is detected **before**
the request is written — the socket is readable while idle (EOF, a reset, or an unsolicited answer) — and
replaced by a fresh connection; so a stale connection costs a connect, never an unknown outcome. Only a
close racing the write itself (the server closing at that very moment) remains unknown. Connections idle
longer than ``keepalive_expiry`` are not reused at all, which keeps that race away from servers that
close idle connections after a few seconds.

The token goes into the Authorization header only: never into a URL, a log line or an exception text.
"""

from __future__ import annotations

import asyncio
import select
import ssl
import time
from urllib.parse import urlsplit

from .errors import TransportError

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_KEEPALIVE_EXPIRY = 5.0  # seconds idle after which a connection is closed rather than reused
MAX_ANSWER = 1 << 20  # a Graph answer to a send is a few hundred bytes; anything this large is not one


class _Cut(Exception):
    """The connection ended (or broke the protocol) before a whole answer came."""


class _Conn(asyncio.Protocol):
    """One kept-alive connection: at most one request in flight; parses the answer as it arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.idle_since = 0.0
        self._buf = bytearray()
        self._head: tuple[int, int, bool, bool] | None = None  # status, body length (-1 chunked, -2 to EOF)
        self._chunks = bytearray()

    # --- asyncio.Protocol --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self.closed = True  # an answer nobody asked for: this connection is not usable
            return
        self._buf += data
        try:
            done = self._parse()
        except _Cut as exc:
            self._fail(exc)
            return
        if done is not None:
            waiter, self.waiter = self.waiter, None
            waiter.set_result(done)

    def eof_received(self) -> bool:
        self.closed = True
        if self.waiter is not None and self._head is not None and self._head[1] == -2:
            # An answer framed by the end of the connection (no length): the end completes it.
            status = self._head[0]
            body = bytes(self._buf)
            waiter, self.waiter = self.waiter, None
            if not waiter.done():
                waiter.set_result((status, body, False))
        else:
            self._fail(_Cut("the connection was closed before the answer"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(_Cut(f"the connection was lost ({exc})" if exc else "the connection was closed"))

    # --- use -------------------------------------------------------------------------------------
    def stale(self) -> bool:
        """Whether this idle connection may not carry a request: closed, or readable while nothing was
        asked (the server's EOF or reset, or unsolicited bytes not yet delivered to the protocol)."""
        if self.closed or self.transport is None or self.transport.is_closing():
            return True
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return True
        try:
            readable, _, failed = select.select([sock.fileno()], [], [sock.fileno()], 0)
        except (OSError, ValueError):
            return True
        return bool(readable or failed)

    def start(self, request: bytes) -> asyncio.Future[tuple[int, bytes, bool]]:
        """Write one request; the future gets (status, body, keep_alive) or _Cut."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self._buf.clear()
        self._head = None
        self._chunks.clear()
        self.transport.write(request)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def _parse(self) -> tuple[int, bytes, bool] | None:
        """A whole answer from the buffer, or None while incomplete; raises _Cut on a malformed one."""
        buf = self._buf
        while self._head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    raise _Cut("the answer's header is too long")
                return None
            head = bytes(buf[:end]).decode("latin-1").split("\r\n")
            del buf[: end + 4]
            parts = head[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                raise _Cut(f"not an HTTP answer: {head[0][:60]!r}")
            status = int(parts[1])
            if 100 <= status < 200:
                continue  # an interim answer (100 Continue): the real one follows
            length = -2
            keep = parts[0] == "HTTP/1.1"
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    if not value.strip().isdigit():
                        raise _Cut("a bad Content-Length")
                    length = int(value)
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    length = -1
                elif name == "connection":
                    v = value.strip().lower()
                    keep = v != "close" if keep else v == "keep-alive"
            if status in (204, 304):
                length = 0
            if length > MAX_ANSWER:
                raise _Cut("the answer is too large")
            self._head = (status, length, keep, False)
        status, length, keep, _ = self._head
        if length >= 0:
            if len(buf) < length:
                return None
            return status, bytes(buf[:length]), keep and len(buf) == length
        if length == -2:
            if len(buf) > MAX_ANSWER:
                raise _Cut("the answer is too large")
            return None  # until the end of the connection
        # chunked
        while True:
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                return None
            size_text = bytes(buf[:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _Cut("a bad chunk size") from None
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    return None
                rest = len(buf) - (trailer_end + 4)
                return status, bytes(self._chunks), keep and rest == 0
            if len(buf) < line_end + 2 + size + 2:
                return None
            self._chunks += buf[line_end + 2 : line_end + 2 + size]
            if len(self._chunks) > MAX_ANSWER:
                raise _Cut("the answer is too large")
            del buf[: line_end + 2 + size + 2]


class Wire:
    """POSTs to one origin (``base_url``) over at most ``connections`` kept-alive connections. Use from
    one event loop; :meth:`post` may run concurrently (one request per connection at a time)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        connections: int = 32,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        keepalive_expiry: float = DEFAULT_KEEPALIVE_EXPIRY,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not token:
            raise ValueError("the wire needs a token")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._prefix = parts.path.rstrip("/")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl_context or _default_ssl()
        default_port = (parts.scheme == "https" and self._port == 443) or self._port == 80
        host = self._host if default_port else f"{self._host}:{self._port}"
        self._fixed = (
            f"Host: {host}\r\nAuthorization: Bearer {token}\r\nUser-Agent: wabulk\r\n"
            "Accept: application/json\r\nContent-Type: application/json\r\nContent-Length: "
        ).encode("latin-1")
        self.connections = max(1, connections)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive_expiry = keepalive_expiry
        # The longest a POST may take once started (a connect, then the answer): a POST is only started
        # while the claim's lease covers this much (provider.lease_covers_post).
        self.longest_post = connect_timeout + read_timeout
        self._idle: list[_Conn] = []
        self._open = 0  # connections open or opening
        self._slots: asyncio.Semaphore | None = None
        self.reconnects = 0  # stale pooled connections replaced before a write (for tests and benches)

    def __repr__(self) -> str:  # never the token
        return f"Wire({self.base_url!r})"

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST ``body`` (JSON) to ``{base}{path}``: (status, body) of the answer; TransportError with
        ``written`` False (nothing reached the server, safe to POST again) or True (outcome unknown)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.connections)
        request = b"POST %s%s HTTP/1.1\r\n%s%d\r\n\r\n%s" % (
            self._prefix.encode("latin-1"),
            path.encode("latin-1"),
            self._fixed,
            len(body),
            body,
        )
        async with self._slots:
            conn = await self._connection()
            loop = asyncio.get_running_loop()
            waiter = conn.start(request)  # from here on, the outcome of a failure is unknown
            timer = loop.call_later(self.read_timeout, _expire, waiter)
            try:
                status, data, keep = await waiter
            except _Cut as exc:
                self._drop(conn)
                raise TransportError(
                    f"no answer from {self.base_url} after the request was sent ({exc}): outcome unknown",
                    written=True,
                ) from None
            except TimeoutError:
                self._drop(conn)
                raise TransportError(
                    f"no answer from {self.base_url} within {self.read_timeout:g}s after the request was"
                    " sent: outcome unknown",
                    written=True,
                ) from None
            except BaseException:  # cancelled: the request is out, the connection is in an unknown state
                self._drop(conn)
                raise
            finally:
                timer.cancel()
            if keep and not conn.closed:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            else:
                self._drop(conn)
            return status, data

    async def _connection(self) -> _Conn:
        """A usable connection: the most recently used idle one that is not stale, else a new one."""
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since > self.keepalive_expiry or conn.stale():
                self.reconnects += 1
                self._drop(conn)
                continue
            return conn
        loop = asyncio.get_running_loop()
        self._open += 1
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(_Conn, self._host, self._port, ssl=self._ssl),
                self.connect_timeout,
            )
        except TimeoutError:
            self._open -= 1
            raise TransportError(
                f"cannot reach {self.base_url}: no connection within {self.connect_timeout:g}s",
                written=False,
            ) from None
        except (OSError, ssl.SSLError) as exc:
            self._open -= 1
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise TransportError(f"cannot reach {self.base_url}: {why}", written=False) from None
        except BaseException:
            self._open -= 1
            raise
        return conn

    def _drop(self, conn: _Conn) -> None:
        if conn in self._idle:
            self._idle.remove(conn)
        conn.close()
        self._open = max(0, self._open - 1)

    def close(self) -> None:
        """Close every idle connection (those in use close when their POST ends)."""
        while self._idle:
            self._drop(self._idle.pop())


def _expire(waiter: asyncio.Future[tuple[int, bytes, bool]]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _default_ssl() -> ssl.SSLContext:
    try:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:  # httpx brings certifi; the system's store otherwise
        return ssl.create_default_context()


__all__ = ["Wire", "DEFAULT_CONNECT_TIMEOUT", "DEFAULT_READ_TIMEOUT", "DEFAULT_KEEPALIVE_EXPIRY"]
