"""Where a process runs, as far as "is that process alive?" can be answered from here.

A pid only means something inside its PID namespace on one boot of one machine. Two containers share a
hostname and reuse each other's pids; two cloned VMs share a hostname. So a worker or an import records its
*place*: hostname, boot id and PID namespace. Only a process with the same place key can test another's
pid (``os.kill(pid, 0)``); everywhere else only a heartbeat can tell (issue 20, items 4 and 18).
"""

from __future__ import annotations

import functools
import os
import socket


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")  # e.g. "pid:[4026531836]"
    except OSError:
        return None


def place_key(
    *, pid_namespace: str | None = None, boot_id: str | None = None, hostname: str | None = None
) -> str:
    """This process's place: ``hostname/boot/pidns`` (no spaces). The keyword arguments override one part
    (tests: "another container with our hostname"). Where a part cannot be read it is "?", and then two
    places only match when every part does."""
    host = (hostname or socket.gethostname() or "?").replace(" ", "_").replace("/", "_")
    boot = (boot_id or _boot_id() or "?")[:8]
    ns = pid_namespace or _own_pid_namespace() or "?"
    return f"{host}/{boot}/{ns}"


@functools.cache
def _boot_id() -> str | None:
    return _read("/proc/sys/kernel/random/boot_id")


@functools.cache
def _own_pid_namespace() -> str | None:
    return _pid_namespace()


def display(place: str) -> str:
    """The hostname part of a place key (what ``status`` shows)."""
    return place.split("/", 1)[0]
