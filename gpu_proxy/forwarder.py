"""Forwarding one call to a node, and to another one when the first fails early enough.

One loop serves every call shape (unary, client streaming, bidirectional): lease a node
from the balancer, open the call on one of its channels with what is left of the caller's
deadline, relay responses (reading each next one while the previous one goes to the
caller). An attempt whose channel does not connect within the connect timeout, and a failure
before the first response, are retried on another node
(the request stream replayed from `ReplayBuffer`) after a jittered backoff; a failure after
it goes back to the caller, who resumes at a higher level (the pipeline retries the job).
Every outcome is reported to the node's circuit breaker.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from contract_errors.gpu import GpuError
from gen.gpu.v1 import gpu_pb2
from gpu_proxy.balancer import Balancer
from gpu_proxy.node import Node
from gpu_proxy.replay import ReplayBuffer
from gpu_proxy.retry import NODE_FAILURES
from mesh_common.keepalive import connects
from mesh_common.lanes import BATCH, Lane
from mesh_common.logging import logger
from mesh_common.retry import RETRYABLE_CODES, backoff_delay, effective_code
from mesh_common.streams import read_ahead

# Opens a call on a channel: (channel, requests of this attempt or None, timeout) -> the
# call, and its responses as a stream.
OpenCall = Callable[
    [grpc.aio.Channel, AsyncIterator[Any] | None, float | None],
    tuple[grpc.aio.Call, AsyncIterator[Any]],
]

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass
class NodeStatusError(Exception):
    """A node ended the call with a status that goes back to the caller unchanged.

    Attributes:
        code: The node's status code.
        details: Its message.
        status_details: The serialized `google.rpc.Status` trailer (ErrorInfo, RetryInfo),
            when the node sent one.
    """

    code: grpc.StatusCode
    details: str
    status_details: bytes | None

    def __post_init__(self) -> None:
        super().__init__(self.details)

    @classmethod
    def from_rpc_error(cls, error: grpc.aio.AioRpcError) -> NodeStatusError:
        """Captures a node's failed call."""
        trailer = None
        for key, value in error.trailing_metadata() or ():
            if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
                trailer = value
        return cls(error.code(), error.details() or error.code().name, trailer)

    async def abort(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Ends the caller's call with this status.

        Args:
            context: The caller's servicer context.

        Raises:
            grpc.aio.AbortError: Always.
        """
        trailing = ((_STATUS_DETAILS_KEY, self.status_details),) if self.status_details else ()
        await context.abort(self.code, self.details, trailing_metadata=trailing)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the proxy tries a call.

    Attributes:
        max_attempts: Attempts in all, across nodes.
        backoff_initial: Backoff ceiling after the first failure, in seconds.
        backoff_max: Largest backoff ceiling.
        connect_timeout: How long an attempt waits for its channel to connect; a node
            still connecting then is tried no longer (a failure of the node, counted by
            its breaker) and the call moves on, rather than spend the caller's deadline.
    """

    max_attempts: int
    backoff_initial: float
    backoff_max: float
    connect_timeout: float = 5.0


class _NeverConnected(Exception):
    """The attempt's channel did not connect within the connect timeout."""


class Forwarder:
    """Runs calls against the nodes the balancer hands out.

    Args:
        balancer: Chooses nodes and bounds the load on each.
        policy: Attempts and backoff.
        rng: Randomness for the jitter (seeded in tests that want it).
    """

    def __init__(
        self, balancer: Balancer, policy: RetryPolicy, rng: random.Random | None = None
    ) -> None:
        self._balancer = balancer
        self._policy = policy
        self._rng = rng or random.Random()

    async def forward(
        self,
        open_call: OpenCall,
        requests: ReplayBuffer[Any] | None,
        time_left: float | None,
        method: str,
        on_accepted: Callable[[], Awaitable[None]] | None = None,
        lane: Lane = BATCH,
    ) -> AsyncGenerator[Any]:
        """Relays one call's responses, trying other nodes while nothing was received.

        Args:
            open_call: Starts the call on a channel.
            requests: The caller's request stream, replayable; None for unary calls.
            time_left: Seconds left of the caller's deadline; None when it has none.
            method: The method's name, for logs.
            on_accepted: Called once, when a node first accepts the call (sends its
                initial metadata); streaming calls pass it on to their caller.
            lane: The capacity the call draws on (`mesh_common.lanes`).

        Yields:
            The node's responses.

        Raises:
            MeshError: BACKEND_UNAVAILABLE when the node failed and the call cannot be tried
                again; OVERLOADED or BACKEND_UNAVAILABLE from the balancer.
            NodeStatusError: The node answered with a status that is the caller's to see.
        """
        loop = asyncio.get_running_loop()
        deadline = None if time_left is None else loop.time() + time_left
        tried: list[str] = []
        attempt = 0
        while True:
            attempt += 1
            async with self._balancer.lease(avoid=tried, lane=lane) as node:
                tried.append(node.target)
                remaining = None if deadline is None else max(deadline - loop.time(), 0.001)
                stream = requests.attempt() if requests is not None else None
                received = False
                try:
                    channel = node.pool.channel()
                    connect_timeout = self._policy.connect_timeout
                    # Only a whole connect timeout is the node's failure; a shorter wait
                    # is cut by the caller's deadline, which the call itself keeps.
                    if (remaining is None or remaining > connect_timeout) and not (
                        await connects(channel, connect_timeout)
                    ):
                        raise _NeverConnected
                    call, responses = open_call(channel, stream, remaining)
                    if on_accepted is not None:
                        await call.initial_metadata()
                        if not call.done():
                            await on_accepted()
                            on_accepted = None
                    # The next response is read while the caller is sent this one; one
                    # ahead at most, so flow control still reaches the node.
                    async for response in read_ahead(responses):
                        if not received:
                            received = True
                            if requests is not None:
                                requests.commit()
                            node.breaker.record_success()
                        yield response
                except _NeverConnected:
                    self._report(node, grpc.StatusCode.UNAVAILABLE)
                    log = logger.bind(node=node.target, method=method)
                    if attempt >= self._policy.max_attempts:
                        log.warning("gpu node did not connect")
                        raise GpuError(
                            gpu_pb2.ERROR_REASON_BACKEND_UNAVAILABLE,
                            "GPU node did not connect on every attempt",
                            {"node": node.target, "cause": "node_failed"},
                            retry_after=1.0,
                        ) from None
                    log.info("gpu node did not connect; retrying elsewhere")
                except (grpc.aio.AioRpcError, asyncio.CancelledError) as error:
                    task = asyncio.current_task()
                    if isinstance(error, asyncio.CancelledError) and (
                        task is None or task.cancelling()
                    ):
                        node.breaker.record_call_abandoned()  # our caller left
                        raise
                    # A call cancelled under us had its channel closed: its node vanished.
                    code = (
                        effective_code(error)
                        if isinstance(error, grpc.aio.AioRpcError)
                        else grpc.StatusCode.UNAVAILABLE
                    )
                    self._report(node, code)
                    retry = (
                        not received
                        and code in RETRYABLE_CODES
                        and (requests is None or requests.replayable)
                        and attempt < self._policy.max_attempts
                    )
                    log = logger.bind(node=node.target, method=method, code=code.name)
                    if not retry:
                        log.warning("gpu call failed: {}", _details(error))
                        raise _failure(error, node, received, requests) from None
                    log.info("gpu call failed before any response; retrying elsewhere")
                except BaseException:
                    node.breaker.record_call_abandoned()
                    raise
                else:
                    if not received:
                        node.breaker.record_success()
                    return
            delay = backoff_delay(
                attempt,
                initial=self._policy.backoff_initial,
                maximum=self._policy.backoff_max,
                rng=self._rng,
            )
            if deadline is not None and loop.time() + delay >= deadline:
                raise GpuError(
                    gpu_pb2.ERROR_REASON_BACKEND_UNAVAILABLE,
                    "GPU node failed and the call's deadline leaves no time to retry",
                    {"node": node.target, "cause": "node_failed"},
                )
            await asyncio.sleep(delay)

    @staticmethod
    def _report(node: Node, code: grpc.StatusCode) -> None:
        if code in NODE_FAILURES:
            node.breaker.record_failure()
        elif code is grpc.StatusCode.DEADLINE_EXCEEDED:
            node.breaker.record_call_abandoned()  # the caller's deadline, not the node's fault
        else:
            node.breaker.record_success()  # it answered; the answer is the caller's business


def _details(error: grpc.aio.AioRpcError | asyncio.CancelledError) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return error.details() or error.code().name
    return "the node stopped answering"


def _failure(
    error: grpc.aio.AioRpcError | asyncio.CancelledError,
    node: Node,
    received: bool,
    requests: ReplayBuffer[Any] | None,
) -> Exception:
    if isinstance(error, grpc.aio.AioRpcError) and effective_code(error) not in NODE_FAILURES:
        return NodeStatusError.from_rpc_error(error)
    if received:
        why = "after it had sent responses; retry the whole call"
    elif requests is not None and not requests.replayable:
        why = "after more audio than the proxy keeps for replay; retry the whole call"
    else:
        why = "on every attempt"
    return GpuError(
        gpu_pb2.ERROR_REASON_BACKEND_UNAVAILABLE,
        f"GPU node failed {why}",
        {"node": node.target, "cause": "node_failed"},
        retry_after=1.0,
    )
