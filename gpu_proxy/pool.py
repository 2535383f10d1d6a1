"""A pool of channels to one node: really separate TCP connections, made on demand.

grpc.aio channels to the same target share one connection unless each has its own
subchannel pool (`grpc.use_local_subchannel_pool`); with it, N channels are N connections,
so one slow stream or one lost connection does not stall every call to the node.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence

import grpc

from mesh_common.grpc_tracing import ChannelWrapper, untraced

# Old channels get this long to finish their calls after a certificate reload.
RETIRE_GRACE_S = 600.0


class ChannelPool:
    """Round-robin channels to one target.

    Args:
        target: The node's "host:port".
        size: Number of channels (connections).
        credentials: Returns the current client credentials; read whenever channels are
            (re)made.
        tls_name: The name to check in the node's certificate, when not the host's.
        max_message_bytes: Largest message sent or received.
        keepalive: The keepalive options (`mesh_common.keepalive.channel_options`), so
            a node that went silent is found on an idle stream too.
        trace_channel: Wraps every channel in the service's tracing.
    """

    def __init__(
        self,
        target: str,
        size: int,
        credentials: Callable[[], grpc.ChannelCredentials],
        tls_name: str | None,
        max_message_bytes: int,
        keepalive: Sequence[tuple[str, int]] = (),
        trace_channel: ChannelWrapper = untraced,
    ) -> None:
        self.target = target
        self._trace_channel = trace_channel
        self.size = size
        self._credentials = credentials
        self._options: list[tuple[str, int | str]] = [
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            *keepalive,
        ]
        if tls_name:
            self._options.append(("grpc.ssl_target_name_override", tls_name))
        self._channels: list[grpc.aio.Channel] = []
        self._turn = itertools.count()
        self._retiring: dict[asyncio.Task[None], grpc.aio.Channel] = {}

    def channel(self) -> grpc.aio.Channel:
        """Returns the next channel in turn, making the pool's channels when needed."""
        if not self._channels:
            self._channels = [self._make() for _ in range(self.size)]
        return self._channels[next(self._turn) % self.size]

    def new_channel(self) -> grpc.aio.Channel:
        """Makes a channel outside the pool (for a probe); the caller closes it."""
        return self._make()

    @property
    def open_channels(self) -> Sequence[grpc.aio.Channel]:
        """The channels made so far."""
        return tuple(self._channels)

    def retire(self, grace: float | None = RETIRE_GRACE_S) -> None:
        """Drops the current channels; new calls get new ones.

        Calls in flight on the old channels may finish within `grace` seconds.

        Args:
            grace: Seconds before the old channels' calls are cancelled; None closes now.
        """
        old, self._channels = self._channels, []
        for channel in old:
            task = asyncio.ensure_future(channel.close(grace))
            self._retiring[task] = channel
            task.add_done_callback(lambda done: self._retiring.pop(done, None))

    async def close(self) -> None:
        """Closes every channel now, cancelling calls still in flight."""
        retiring = list(self._retiring.items())
        for task, _ in retiring:
            task.cancel()
        channels = [channel for _, channel in retiring] + self._channels
        self._channels = []
        await asyncio.gather(*(c.close(None) for c in channels), return_exceptions=True)

    def _make(self) -> grpc.aio.Channel:
        return self._trace_channel(
            grpc.aio.secure_channel(self.target, self._credentials(), options=self._options)
        )
