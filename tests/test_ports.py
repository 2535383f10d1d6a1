"""Ports chosen for servers that a child process binds later (mesh_common.ports)."""

from __future__ import annotations

import socket
from pathlib import Path

from mesh_common.ports import free_port, free_ports


def _ephemeral_low() -> int:
    path = Path("/proc/sys/net/ipv4/ip_local_port_range")
    return int(path.read_text().split()[0]) if path.exists() else 49152


def test_a_chosen_port_is_bindable_and_never_one_the_kernel_hands_out() -> None:
    # Ports the kernel gives to bind(0) and to outgoing connections could take it first.
    taken = []
    for _ in range(50):
        port = free_port()
        assert port < _ephemeral_low()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
        taken.append(port)
    assert len(set(taken)) > 40  # random, so two processes rarely pick the same one


def test_a_port_in_use_is_not_chosen() -> None:
    listeners = []
    try:
        for _ in range(200):
            sock = socket.socket()
            sock.bind(("127.0.0.1", free_port()))
            sock.listen()
            listeners.append(sock)
        in_use = {sock.getsockname()[1] for sock in listeners}
        assert len(in_use) == 200
        assert not in_use & set(free_ports(20))
    finally:
        for sock in listeners:
            sock.close()


def test_free_ports_are_distinct() -> None:
    ports = free_ports(10)
    assert len(set(ports)) == 10
