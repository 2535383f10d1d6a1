"""`gpu.v1.CapabilitiesService` of the proxy: what the fleet can do, as the union of its nodes.

Each call asks every node whose breaker lets calls through, at once; a node that does not
answer within the probe timeout is left out (its breaker is the forwarder's business).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import grpc

from contract_errors.gpu import GpuError
from gen.gpu.v1 import gpu_pb2, gpu_pb2_grpc
from gpu_proxy.node import Node
from mesh_common.errors import abort
from mesh_common.logging import logger

Context = grpc.aio.ServicerContext[Any, Any]


def merge(answers: Sequence[gpu_pb2.GetCapabilitiesResponse]) -> gpu_pb2.GetCapabilitiesResponse:
    """The union of nodes' capabilities: what at least one node can do."""
    merged = gpu_pb2.GetCapabilitiesResponse()
    for field in (
        "recognition_engines",
        "languages",
        "diarization_engines",
        "summarization_engines",
    ):
        values = sorted({value for answer in answers for value in getattr(answer, field)})
        getattr(merged, field).extend(values)
    for flag in ("language_detection", "translation", "vocabulary"):
        setattr(merged, flag, any(getattr(answer, flag) for answer in answers))
    return merged


class CapabilitiesServicer(gpu_pb2_grpc.CapabilitiesServiceServicer):
    """Answers for the fleet.

    Args:
        nodes: The proxy's nodes.
        timeout_s: How long one node may take to answer.
    """

    def __init__(self, nodes: Sequence[Node], timeout_s: float) -> None:
        self._nodes = nodes
        self._timeout_s = timeout_s

    async def GetCapabilities(
        self, request: gpu_pb2.GetCapabilitiesRequest, context: Context
    ) -> gpu_pb2.GetCapabilitiesResponse:
        """Asks the usable nodes and merges their answers (see gpu.proto)."""
        usable = [node for node in self._nodes if node.breaker.usable]
        answers = await asyncio.gather(*(self._ask(node, request) for node in usable))
        found = [answer for answer in answers if answer is not None]
        if not found:
            await abort(
                context,
                GpuError(
                    gpu_pb2.ERROR_REASON_BACKEND_UNAVAILABLE,
                    "no GPU node told its capabilities",
                    {"cause": "no_node_answered"},
                ),
            )
        return merge(found)

    async def _ask(
        self, node: Node, request: gpu_pb2.GetCapabilitiesRequest
    ) -> gpu_pb2.GetCapabilitiesResponse | None:
        stub = gpu_pb2_grpc.CapabilitiesServiceStub(node.pool.channel())
        try:
            answer: gpu_pb2.GetCapabilitiesResponse = await stub.GetCapabilities(
                request, timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as error:
            logger.bind(node=node.pool.target, code=error.code().name).warning(
                "a gpu node did not tell its capabilities"
            )
            return None
        return answer
