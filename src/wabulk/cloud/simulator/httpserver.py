"""A lean HTTP/1.1 server on asyncio protocols: keep-alive, Content-Length and chunked request bodies.

Why not the stdlib threading server or uvicorn: the Graph simulator must answer several thousand requests a
second on kept-alive connections on a 2-core machine shared with wabulk itself, and it needs to do things a
framework hides: close a connection without answering (a response cut after the message was accepted),
stop listening so that connects are refused, and answer late without blocking the other connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, unquote

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 120 * 1024 * 1024  # documents may be 100 MB


@dataclass
class Request:
    """One parsed request. ``headers`` keys are lower-case."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    """A complete response."""

    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=UTF-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False  # close the connection after this response


@dataclass
class Cut:
    """Close the connection without answering; ``reset`` sends an RST instead of a FIN."""

    reset: bool = False


Result = Response | Cut
Handler = Callable[[Request], "Result | Awaitable[Result]"]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def encode_response(resp: Response, keep_alive: bool) -> bytes:
    """The bytes of ``resp`` on the wire."""
    lines = [
        f"HTTP/1.1 {resp.status} {_reason(resp.status)}",
        f"Content-Type: {resp.content_type}",
        f"Content-Length: {len(resp.body)}",
    ]
    lines.extend(f"{k}: {v}" for k, v in resp.headers)
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + resp.body


class _BadRequest(Exception):
    pass


def _parse(buf: bytearray) -> tuple[Request, bool, int] | None:
    """Parse one request from the front of ``buf``: (request, keep_alive, bytes used), None if incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEADER_BYTES:
            raise _BadRequest("headers too large")
        return None
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    try:
        method, target, version = head[0].split(" ", 2)
    except ValueError as exc:
        raise _BadRequest("bad request line") from exc
    headers: dict[str, str] = {}
    for line in head[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest("bad header line")
        headers[name.strip().lower()] = value.strip()
    pos = end + 4
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            try:
                size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            except ValueError as exc:
                raise _BadRequest("bad chunk size") from exc
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", eol)
                if trailer_end < 0:
                    return None
                pos = trailer_end + 4
                break
            if eol + 2 + size + 2 > len(buf):
                return None
            body += buf[eol + 2 : eol + 2 + size]
            if len(body) > MAX_BODY_BYTES:
                raise _BadRequest("body too large")
            pos = eol + 2 + size + 2
        data = bytes(body)
    else:
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError as exc:
            raise _BadRequest("bad content-length") from exc
        if length > MAX_BODY_BYTES:
            raise _BadRequest("body too large")
        if len(buf) < pos + length:
            return None
        data = bytes(buf[pos : pos + length])
        pos += length
    path, _, qs = target.partition("?")
    conn = headers.get("connection", "").lower()
    keep_alive = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
    req = Request(method.upper(), unquote(path), parse_qs(qs, keep_blank_values=True), headers, data)
    return req, keep_alive, pos


class _Connection(asyncio.Protocol):
    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.buf = bytearray()
        self.busy = False  # a response is being produced asynchronously; later requests wait for it
        self.transport: asyncio.Transport | None = None
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._process()

    def eof_received(self) -> bool:
        # A client that half-closes after its request still gets the answer; closed once all are answered.
        self.eof = True
        if not self.busy:
            self._process()
        return True

    @property
    def idle(self) -> bool:
        return not self.busy and not self.buf

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _process(self) -> None:
        while self.transport is not None and not self.busy:
            try:
                parsed = _parse(self.buf)
            except _BadRequest as exc:
                self._write(Response(400, str(exc).encode(), "text/plain"), keep_alive=False)
                return
            if parsed is None:
                if self.eof:
                    self.close()
                return
            req, keep_alive, used = parsed
            del self.buf[:used]
            try:
                result = self.server.handler(req)
            except Exception as exc:  # a bug in a handler must not kill the server
                self.server.errors.append(repr(exc))
                result = Response(500, b'{"error":{"message":"simulator error","code":1}}')
            if isinstance(result, (Response, Cut)):
                if not self._finish(result, keep_alive):
                    return
            else:
                self.busy = True
                asyncio.ensure_future(self._later(result, keep_alive))
                return

    async def _later(self, pending: Awaitable[Result], keep_alive: bool) -> None:
        try:
            result = await pending
        except Exception as exc:
            self.server.errors.append(repr(exc))
            result = Response(500, b'{"error":{"message":"simulator error","code":1}}')
        self.busy = False
        if self._finish(result, keep_alive):
            self._process()

    def _finish(self, result: Result, keep_alive: bool) -> bool:
        """Send ``result``; False once the connection is closed."""
        if isinstance(result, Cut):
            if self.transport is not None:
                if result.reset:
                    self.transport.abort()
                else:
                    self.transport.close()
            return False
        return self._write(result, keep_alive)

    def _write(self, resp: Response, keep_alive: bool) -> bool:
        if self.transport is None:
            return False
        # While refusing connections, a connection that was busy must not stay open for the next request.
        keep_alive = keep_alive and not resp.close and self.server.listening
        self.transport.write(encode_response(resp, keep_alive))
        if not keep_alive:
            self.transport.close()
            return False
        return True


class HTTPServer:
    """Serves ``handler`` on ``host:port`` inside a running asyncio loop.

    ``handler`` returns a :class:`Response`, a :class:`Cut`, or an awaitable of either (a late answer that
    does not block other connections).
    """

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.connections: set[_Connection] = set()
        self.errors: list[str] = []
        self._server: asyncio.base_events.Server | None = None

    async def listen(self) -> None:
        """Start accepting connections (on the same port as before after :meth:`refuse`)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def refuse(self) -> None:
        """Stop listening and close idle kept-alive connections: new requests get 'connection refused'."""
        if self._server is not None:
            # Not wait_closed(): since Python 3.12 it also waits for every open connection to end.
            self._server.close()
            self._server = None
        for conn in list(self.connections):
            if conn.idle:
                conn.close()

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self.connections):
            conn.close()
