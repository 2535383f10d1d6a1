"""What the GPU fleet can do, asked of gpu_proxy and kept for a while."""

from __future__ import annotations

import time

import grpc

from gen.gpu.v1 import gpu_pb2
from gpu_client.connection import GpuConnection, GpuNotConfigured
from mesh_common.logging import logger


class FleetCapabilities:
    """The fleet's capabilities (`gpu.v1.CapabilitiesService`), read at most once per `ttl_s`.

    An answer is kept for `ttl_s`; a failure for `retry_s`, so a fleet that is down does
    not slow every caller by a timeout.

    Args:
        gpu: The connection to gpu_proxy.
        ttl_s: How long an answer is used.
        retry_s: How long after a failure the fleet is not asked again.
        timeout_s: Deadline of one call.
    """

    def __init__(
        self, gpu: GpuConnection, ttl_s: float = 30.0, retry_s: float = 5.0, timeout_s: float = 3.0
    ) -> None:
        self._gpu = gpu
        self._ttl_s = ttl_s
        self._retry_s = retry_s
        self._timeout_s = timeout_s
        self._answer: gpu_pb2.GetCapabilitiesResponse | None = None
        self._until = 0.0

    async def get(self) -> gpu_pb2.GetCapabilitiesResponse | None:
        """Returns the fleet's capabilities, or None when they cannot be known now.

        None means: no client certificate for gpu_proxy is configured, or gpu_proxy
        (or every node behind it) did not answer.
        """
        now = time.monotonic()
        if now < self._until:
            return self._answer
        try:
            stubs = self._gpu.stubs()
            answer: gpu_pb2.GetCapabilitiesResponse | None
            answer = await stubs.capabilities.GetCapabilities(
                gpu_pb2.GetCapabilitiesRequest(), timeout=self._timeout_s
            )
        except GpuNotConfigured:
            answer = None
        except grpc.aio.AioRpcError as error:
            logger.bind(code=error.code().name).warning("the GPU fleet's capabilities are unknown")
            answer = None
        self._answer = answer
        self._until = time.monotonic() + (self._retry_s if answer is None else self._ttl_s)
        return answer
