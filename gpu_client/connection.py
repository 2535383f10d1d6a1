"""The channel to gpu_proxy that a whole process shares, opened on first use."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc

from gpu_client.channel import GpuStubs, connect
from mesh_common.grpc_tracing import ChannelWrapper, untraced
from mesh_common.keepalive import connects
from mesh_common.tls import KeyPair


class GpuNotConfigured(Exception):
    """The client certificate (or the CA) for gpu_proxy is missing; the message says which."""


class GpuUnreachable(Exception):
    """gpu_proxy did not finish connecting within the connect timeout; the message says where."""


class GpuConnection:
    """The channel to gpu_proxy, shared by every call of the process.

    Args:
        target: gpu_proxy's "host:port".
        identity: This service's client certificate and key.
        ca: The CA gpu_proxy's certificate must chain to.
        tls_name: Name to check in gpu_proxy's certificate; None checks the target's host.
        keepalive: The channel's keepalive options (`mesh_common.keepalive`).
        connect_timeout: How long `connected_stubs` waits for a connection.
        trace_channel: Wraps the channel in the service's tracing.
    """

    def __init__(
        self,
        target: str,
        identity: KeyPair,
        ca: Path,
        tls_name: str | None = None,
        keepalive: Sequence[tuple[str, int]] = (),
        trace_channel: ChannelWrapper = untraced,
        connect_timeout: float = 5.0,
    ) -> None:
        self.target = target
        self._identity = identity
        self._ca = ca
        self._tls_name = tls_name
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self._trace_channel = trace_channel
        self._channel: grpc.aio.Channel | None = None
        self._stubs: GpuStubs | None = None

    def problem(self) -> str | None:
        """Says what keeps the channel from opening (a missing file), or None."""
        for what, path in (
            ("client certificate", self._identity.cert),
            ("client key", self._identity.key),
            ("CA certificate", self._ca),
        ):
            if not path.is_file():
                return f"the {what} for gpu_proxy is missing at {path}"
        return None

    def stubs(self) -> GpuStubs:
        """Returns the stubs, opening the channel on first use.

        Raises:
            GpuNotConfigured: A certificate file is missing.
        """
        if self._stubs is None:
            problem = self.problem()
            if problem is not None:
                raise GpuNotConfigured(problem)
            self._channel = self._trace_channel(
                connect(
                    self.target,
                    self._identity,
                    self._ca,
                    tls_name=self._tls_name,
                    keepalive=self._keepalive,
                )
            )
            self._stubs = GpuStubs.of(self._channel)
        return self._stubs

    async def connected_stubs(self) -> GpuStubs:
        """Returns the stubs once the channel has a connection (or failed to make one).

        Raises:
            GpuNotConfigured: A certificate file is missing.
            GpuUnreachable: Still connecting after the connect timeout: a call would
                wait for it until its deadline.
        """
        stubs = self.stubs()
        assert self._channel is not None
        if not await connects(self._channel, self._connect_timeout):
            raise GpuUnreachable(
                f"gpu_proxy at {self.target} did not connect within {self._connect_timeout:g} s"
            )
        return stubs

    async def close(self) -> None:
        """Closes the channel (calls in flight are cancelled)."""
        if self._channel is not None:
            await self._channel.close()
        self._channel = None
        self._stubs = None
