"""HTTP/2 keepalive between the mesh's services: how a silent peer is found.

A peer whose machine or network vanished sends no FIN and no RST, and behind a proxy or
load balancer the TCP connection itself stays up; only a PING that gets no answer finds
it. Every client channel pings every `keepalive_s` (even with no call in flight, so a
dead connection is found before the next call needs it) and drops the connection when
an answer takes longer than `keepalive_timeout_s`: a peer that went silent is noticed
within `keepalive_s + keepalive_timeout_s`. Every server accepts such pings down to
`keepalive_min_s` apart (gRPC's default refuses pings more often than every five
minutes and closes the connection, with its calls, as "too many pings"), and pings its
clients the same way, so the streams of a client that vanished are ended, not kept.
gRPC core sends pings at most once a second, so `keepalive_s` below 1 acts as 1.
The values are the `grpc_keepalive_*` settings (`mesh_common.settings.CommonSettings`).
"""

from __future__ import annotations

import asyncio

import grpc

from mesh_common.settings import CommonSettings

# Pings a server tolerates too soon (below its minimum) before it closes the connection.
_MAX_PING_STRIKES = 2


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _pings(settings: CommonSettings) -> list[tuple[str, int]]:
    return [
        ("grpc.keepalive_time_ms", _ms(settings.grpc_keepalive_s)),
        ("grpc.keepalive_timeout_ms", _ms(settings.grpc_keepalive_timeout_s)),
        # gRPC core waits for a ping's answer this long, whatever the keepalive timeout
        # (60 s by default).
        ("grpc.http2.ping_timeout_ms", _ms(settings.grpc_keepalive_timeout_s)),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def channel_options(settings: CommonSettings) -> list[tuple[str, int]]:
    """The options of a client channel that pings its server.

    A ping unanswered for `grpc_keepalive_timeout_s` drops the connection: its calls
    fail UNAVAILABLE and the channel connects again.

    Args:
        settings: The caller's settings.

    Returns:
        gRPC channel options.
    """
    return [
        *_pings(settings),
        # Without this the client stops pinging after two pings with no data sent: an
        # idle event stream would go unwatched.
        ("grpc.http2.max_pings_without_data", 0),
    ]


def server_options(settings: CommonSettings) -> list[tuple[str, int]]:
    """The options of a server that accepts its clients' pings and pings them.

    Args:
        settings: The server's settings; `grpc_keepalive_min_s` must not exceed its
            clients' `grpc_keepalive_s`.

    Returns:
        gRPC server options.
    """
    return [
        *_pings(settings),
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(settings.grpc_keepalive_min_s)),
        ("grpc.http2.max_ping_strikes", _MAX_PING_STRIKES),
    ]


_CONNECTING = (grpc.ChannelConnectivity.IDLE, grpc.ChannelConnectivity.CONNECTING)


async def connects(channel: grpc.aio.Channel, within: float) -> bool:
    """Waits until the channel has a connection, or its attempt to make one failed.

    A call on a channel that is still connecting waits for the connection until its own
    deadline, so a peer that accepts TCP but never finishes the handshake (silent behind a
    proxy or a load balancer) would cost a call its whole deadline; asked first, the
    caller can try elsewhere, or say that the peer is unreachable, within `within`.

    Args:
        channel: The channel (connected here if idle).
        within: Seconds to wait.

    Returns:
        False when it is still connecting after `within` seconds; True when it is
        connected, or failed to connect (a call then fails at once with UNAVAILABLE).
    """
    state = channel.get_state(try_to_connect=True)
    if state not in _CONNECTING:
        return True
    try:
        async with asyncio.timeout(within):
            while state in _CONNECTING:
                await channel.wait_for_state_change(state)
                state = channel.get_state(try_to_connect=True)
    except TimeoutError:
        return False
    return True
