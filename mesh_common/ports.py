"""Picking a TCP port for a server that another process will bind a moment later.

A port the kernel hands out for `bind(0)` comes from the ephemeral range, the same range
it draws from for every other `bind(0)` and every outgoing connection. Between the probe
and the real bind, any of those may take it (a child's own metrics endpoint on port 0,
say, and the service meant for that port cannot start). Ports below the ephemeral range
are never handed out by the kernel, so only another process picking the same way can
collide, and a random choice makes that rare.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# IANA's dynamic range, what BSD and macOS use, where /proc is not there to ask.
_DEFAULT_EPHEMERAL = (49152, 65535)
# The lowest port tried: above the ports that well-known local services listen on.
_LOWEST = 10000
_TRIES = 64

_choice = random.SystemRandom()  # not the global generator that tests may seed


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = _RANGE_FILE.read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that is free now and that the kernel will not hand out.

    Args:
        host: The address the port will be bound on.

    Returns:
        A port outside the ephemeral range when one is free there, else whatever the
        kernel picks for `bind(0)`.
    """
    low, _ = _ephemeral_range()
    if low - 1 > _LOWEST:
        for _ in range(_TRIES):
            port = _choice.randrange(_LOWEST, low)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` different free ports on `host` (see `free_port`)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port(host)
        if port not in ports:
            ports.append(port)
    return ports
