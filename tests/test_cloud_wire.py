"""The send path's HTTP/1.1 client (``cloud/wire.py``) over real sockets: which failures leave nothing
written (safe to POST again) and which make the outcome unknown; stale kept-alive connections detected
before a request is written; then the same against the bundled Graph simulator's faults."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from cloud_helpers import PHONE_ID, TOKEN, graph_simulator, read_request, wait_until
from wabulk.cloud import errors as ge
from wabulk.cloud.client import read_send_answer
from wabulk.cloud.wire import Wire

OK_BODY = json.dumps(
    {"contacts": [{"input": "+4915", "wa_id": "4915"}], "messages": [{"id": "wamid.A"}]}
).encode()


def ok(body: bytes = OK_BODY, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


class Server:
    """A TCP server on a thread; ``handler(conn, served)`` owns each connection. Records every request
    (per connection) it read."""

    def __init__(self, handler: Callable[[socket.socket, Server], None]) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[tuple[int, bytes]] = []  # (connection number, request)
        self.closed = threading.Event()
        self.may_close = threading.Event()

    def read(self, conn: socket.socket, number: int) -> bytes | None:
        request = read_request(conn)
        if b"\r\n\r\n" not in request:
            return None  # the client closed before a whole head
        self.requests.append((number, request))
        return request.partition(b"\r\n\r\n")[0]


@contextmanager
def serve(handler: Callable[[socket.socket, Server], None]) -> Iterator[tuple[str, Server]]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.1)
    stop = threading.Event()
    server = Server(handler)

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            server.connections += 1
            threading.Thread(target=handler, args=(conn, server), daemon=True).start()

    t = threading.Thread(target=accept_loop, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}", server
    finally:
        stop.set()
        t.join(2)
        srv.close()


def post_all(
    url: str, n: int, between: Callable[[], None] = lambda: None, **kw: Any
) -> tuple[list[Any], Wire]:
    """POST ``n`` times in a row on one Wire; each result is (status, body) or the TransportError."""
    wire = Wire(url, "SECRET-TOKEN", connections=kw.pop("connections", 2), **kw)
    results: list[Any] = []

    async def go() -> None:
        for i in range(n):
            if i:
                between()
            try:
                results.append(await wire.post(f"/v27.0/{PHONE_ID}/messages", b'{"to":"+4915"}'))
            except ge.TransportError as exc:
                results.append(exc)
        wire.close()

    asyncio.run(go())
    return results, wire


def keep_alive(times: int, then: Callable[[socket.socket], None] = lambda c: None) -> Callable[..., None]:
    """Answer ``times`` requests on a connection, then (once ``may_close``) ``then(conn)`` and close it."""

    def handler(conn: socket.socket, server: Server) -> None:
        number = server.connections
        with conn:
            for _ in range(times):
                if server.read(conn, number) is None:
                    return
                conn.sendall(ok())
            server.may_close.wait(5)
            then(conn)
        server.closed.set()

    return handler


def test_answers_come_back_on_one_kept_alive_connection_with_the_token_in_the_header_only() -> None:
    with serve(keep_alive(10)) as (url, server):
        results, wire = post_all(url, 3)
        server.may_close.set()
    assert [r[0] for r in results] == [200, 200, 200]
    assert read_send_answer(*results[0]).wamid == "wamid.A"
    assert server.connections == 1
    first = server.requests[0][1]
    assert first.startswith(f"POST /v27.0/{PHONE_ID}/messages HTTP/1.1\r\n".encode())
    assert b"Authorization: Bearer SECRET-TOKEN" in first and first.endswith(b'{"to":"+4915"}')
    assert "SECRET" not in repr(wire)


def test_a_refused_connection_was_not_written() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    results, _ = post_all(f"http://127.0.0.1:{port}", 1)
    assert isinstance(results[0], ge.TransportError) and results[0].written is False


def test_a_connection_cut_after_the_request_was_written_is_an_unknown_outcome() -> None:
    def cut(conn: socket.socket, server: Server) -> None:
        with conn:
            server.read(conn, 1)

    with serve(cut) as (url, server):
        results, _ = post_all(url, 1)
    assert len(server.requests) == 1
    assert isinstance(results[0], ge.TransportError) and results[0].written is True
    assert "unknown" in str(results[0])


def test_a_read_timeout_is_an_unknown_outcome_and_the_connection_is_not_reused() -> None:
    release = threading.Event()

    def slow_then_ok(conn: socket.socket, server: Server) -> None:
        number = server.connections
        with conn:
            server.read(conn, number)
            if number == 1:
                release.wait(5)  # never answers in time
                return
            conn.sendall(ok())

    with serve(slow_then_ok) as (url, server):
        results, _ = post_all(url, 2, read_timeout=0.3)
        release.set()
    assert isinstance(results[0], ge.TransportError) and results[0].written is True
    assert results[1][0] == 200 and server.connections == 2


@pytest.mark.parametrize("how", ["fin", "rst", "unsolicited answer"])
def test_a_kept_alive_connection_the_server_closed_is_replaced_before_the_request_is_written(
    how: str,
) -> None:
    def close(conn: socket.socket) -> None:
        if how == "rst":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif how == "unsolicited answer":
            conn.sendall(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    with serve(keep_alive(1, close)) as (url, server):
        # Once the first answer was read, the server closes; the second POST starts after that.
        results, wire = post_all(url, 2, between=lambda: (server.may_close.set(), server.closed.wait(5)))
    assert [r[0] if isinstance(r, tuple) else r for r in results] == [200, 200]
    assert server.connections == 2 and wire.reconnects == 1
    # The second request went only to the new connection: nothing was written on the stale one.
    assert [number for number, _ in server.requests] == [1, 2]


def test_a_connection_idle_longer_than_the_keepalive_expiry_is_not_reused() -> None:
    with serve(keep_alive(10)) as (url, server):
        results, wire = post_all(url, 2, keepalive_expiry=0.0)
        server.may_close.set()
    assert [r[0] for r in results] == [200, 200]
    assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"mes\r\n'
        + b"%x\r\n" % (len(OK_BODY) - 5)
        + OK_BODY[5:]
        + b"\r\n0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n" + ok(),
        b"HTTP/1.0 200 OK\r\n\r\n" + OK_BODY,  # framed by the end of the connection
    ],
    ids=["chunked", "interim 100", "until close"],
)
def test_answers_framed_every_way_http_allows_are_read_whole(answer: bytes) -> None:
    def handler(conn: socket.socket, server: Server) -> None:
        with conn:
            server.read(conn, server.connections)
            conn.sendall(answer)

    with serve(handler) as (url, _):
        results, _ = post_all(url, 1)
    status, body = results[0]
    assert status == 200 and read_send_answer(status, body).wamid == "wamid.A"


# --- against the bundled Graph simulator (real HTTP, its faults) ---------------------------------------


def sim_posts(sim: Any, plan: list[Callable[[Wire], None]]) -> tuple[list[Any], Wire]:
    """One POST per step of ``plan`` (each step runs first) to the simulator, on one Wire."""
    wire = Wire(sim.url, TOKEN, connections=1)
    results: list[Any] = []

    async def go() -> None:
        for i, step in enumerate(plan):
            step(wire)
            body = json.dumps(
                {"messaging_product": "whatsapp", "to": f"+4915100000{i:02d}", "type": "text",
                 "text": {"body": "hi"}}
            ).encode()  # fmt: skip
            try:
                results.append(read_send_answer(*await wire.post(f"/v23.0/{PHONE_ID}/messages", body)))
            except ge.CloudError as exc:
                results.append(exc)
        wire.close()

    asyncio.run(go())
    return results, wire


def test_simulator_cut_before_and_cut_after_are_unknown_outcomes_and_a_refused_connect_is_not() -> None:
    with graph_simulator(None, all_windows_open=True) as sim:
        plan: list[Callable[[Wire], None]] = [
            lambda w: None,
            lambda w: sim.add_fault("cut_before", count=1),
            lambda w: sim.add_fault("cut_after", count=1),
            lambda w: sim.refuse_connections(),
            lambda w: sim.accept_connections(),
        ]
        results, _ = sim_posts(sim, plan)
        accepted = sim.accepted()
    ok0, before, after, refused, back = results
    assert ok0.wamid.startswith("wamid.") and back.wamid.startswith("wamid.")
    assert isinstance(before, ge.TransportError) and before.written is True
    assert isinstance(after, ge.TransportError) and after.written is True
    assert isinstance(refused, ge.TransportError) and refused.written is False
    # cut_before accepted nothing, cut_after accepted its message: only the webhook can tell them apart.
    assert sorted(m["to"][-2:] for m in accepted) == ["00", "02", "04"]


def test_simulator_closing_idle_connections_costs_a_reconnect_not_an_unknown_outcome() -> None:
    with graph_simulator(None, all_windows_open=True) as sim:
        # refuse_connections closes the idle kept-alive connection; accept_connections listens again.
        def close_idle(wire: Wire) -> None:
            sim.refuse_connections()
            sim.accept_connections()
            # The server's close reaches this end asynchronously; the POST starts once it has.
            wait_until(lambda: all(conn.stale() for conn in wire._idle), what="the server's close")

        results, wire = sim_posts(sim, [lambda w: None, close_idle, lambda w: None])
        assert len(sim.accepted()) == 3
    assert all(not isinstance(r, Exception) for r in results), results
    assert wire.reconnects == 1
