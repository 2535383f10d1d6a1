"""What every grpc.aio server of the mesh has: health, reflection, auth, graceful stop."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gen.mesh.v1 import errors_pb2
from mesh_common.auth import (
    METADATA_KEY,
    ApiKeyVerifier,
    Principal,
    TokenVerifier,
    bearer_credential,
    is_api_key,
    unauthenticated,
)
from mesh_common.errors import MeshError

_PUBLIC_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

# The health status a liveness probe asks for: SERVING for as long as the process's event
# loop answers. The servers' own statuses follow their database or their nodes, which a
# restart would not bring back, so they are for readiness only.
LIVENESS_SERVICE = "liveness"

_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")


def current_principal() -> Principal:
    """Returns the verified caller of the RPC being served.

    Raises:
        LookupError: Outside an RPC that passed `AuthInterceptor`.
    """
    return _principal.get()


async def add_health_and_reflection(
    server: grpc.aio.Server, service_names: Iterable[str]
) -> health.aio.HealthServicer:
    """Adds `grpc.health.v1.Health` and reflection for the given services.

    The named services are unknown until the caller sets them (`set_serving`); the
    `LIVENESS_SERVICE` status is SERVING from the start and never changes.

    Args:
        server: The server, not yet started.
        service_names: Full names of the services the server hosts.

    Returns:
        The health servicer, to report status changes on.
    """
    names = list(service_names)
    servicer = health.aio.HealthServicer()
    await servicer.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    return servicer


async def set_serving(
    servicer: health.aio.HealthServicer, service_names: Iterable[str], serving: bool
) -> None:
    """Sets the overall and per-service health status.

    Args:
        servicer: The health servicer.
        service_names: The services to update (the overall "" status is updated too).
        serving: SERVING when True, NOT_SERVING otherwise.
    """
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ["", *service_names]:
        await servicer.set(name, status)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks the caller's credential and scope on every call but health and reflection.

    The credential is `authorization: Bearer <JWT or API key>` metadata; the scope is the
    method's (`mesh_common.scopes`). The verified caller is available to the handler
    through `current_principal()`. The check wraps the handler itself (rather than running
    beside it) so the context variable is set in the task that runs the handler.

    Args:
        verifier: The verifier of this deployment's tokens.
        scopes: gRPC method path -> the scope it needs; an API key may call no method
            missing here.
        api_keys: Where API keys are checked; without it, API keys are refused.
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        scopes: Mapping[str, str] | None = None,
        api_keys: ApiKeyVerifier | None = None,
    ) -> None:
        self._verifier = verifier
        self._scopes = dict(scopes or {})
        self._api_keys = api_keys

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Wraps the method handler with the credential and scope checks."""
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(_PUBLIC_PREFIXES):
            return handler
        scope = self._scopes.get(method)

        def around(
            context: grpc.aio.ServicerContext[Any, Any],
        ) -> AbstractAsyncContextManager[None]:
            return self._authenticated(context, scope)

        return wrap_rpc_handler(handler, around)

    @asynccontextmanager
    async def _authenticated(
        self, context: grpc.aio.ServicerContext[Any, Any], scope: str | None
    ) -> AsyncIterator[None]:
        value = None
        for key, item in context.invocation_metadata() or ():
            if key == METADATA_KEY:
                value = item if isinstance(item, str) else item.decode()
        try:
            principal = await self._authenticate(value)
            if not principal.allows(scope):
                raise MeshError(
                    errors_pb2.ERROR_REASON_PERMISSION_DENIED,
                    f"the API key lacks the scope {scope!r} this call needs"
                    if scope
                    else "this call is open to user tokens only",
                    {"scope": scope or ""},
                )
        except MeshError as error:
            await context.abort_with_status(error.to_status())
            raise  # pragma: no cover - abort_with_status raises
        _principal.set(principal)
        yield

    async def _authenticate(self, authorization: str | None) -> Principal:
        credential = bearer_credential(authorization)
        if not is_api_key(credential):
            return await self._verifier.verify(credential)
        if self._api_keys is None:
            raise unauthenticated("API keys are not accepted by this service")
        return await self._api_keys.verify_api_key(credential)


Around = Callable[[grpc.aio.ServicerContext[Any, Any]], AbstractAsyncContextManager[None]]


def wrap_rpc_handler(
    handler: grpc.RpcMethodHandler[Any, Any], around: Around
) -> grpc.RpcMethodHandler[Any, Any]:
    """Returns a handler that runs the original inside `around(context)`.

    The wrapper runs in the task that serves the call, so context variables set when
    entering `around` are visible to the handler, and code after its `yield` sees how the
    call ended (for streams: after the last message).

    Args:
        handler: The method handler to wrap, of any of the four shapes.
        around: An async context manager factory entered for each call.

    Returns:
        A handler of the same shape.
    """
    h: Any = handler
    if h.unary_unary or h.stream_unary:
        inner = h.unary_unary or h.stream_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with around(context):
                return await inner(request, context)

        factory = (
            grpc.unary_unary_rpc_method_handler
            if h.unary_unary
            else grpc.stream_unary_rpc_method_handler
        )
        return factory(
            unary,
            request_deserializer=h.request_deserializer,
            response_serializer=h.response_serializer,
        )
    inner_stream = h.unary_stream or h.stream_stream
    streaming: Callable[..., Any]
    if inspect.isasyncgenfunction(inner_stream):

        async def streaming(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async with around(context):
                async for item in inner_stream(request, context):
                    yield item

    else:  # a coroutine that sends with `context.write()` (health's Watch)

        async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with around(context):
                return await inner_stream(request, context)

    factory = (
        grpc.unary_stream_rpc_method_handler
        if h.unary_stream
        else grpc.stream_stream_rpc_method_handler
    )
    return factory(
        streaming,
        request_deserializer=h.request_deserializer,
        response_serializer=h.response_serializer,
    )


async def wait_for_shutdown_signal() -> None:
    """Returns when the process gets SIGINT or SIGTERM (the handlers stay installed)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def check_health(channel: grpc.aio.Channel, service: str = "", deadline: float = 5.0) -> int:
    """Asks a server's `grpc.health.v1.Health/Check` for a service's status.

    (typeshed's `HealthStub` declares no methods, so the call is made through a typed
    multicallable here, once, instead of a cast at every caller.)

    Args:
        channel: A channel to the server.
        service: The service's full name; "" for the server as a whole.
        deadline: Deadline of the call, in seconds.

    Returns:
        The serving status.

    Raises:
        grpc.aio.AioRpcError: The server is unreachable or does not know the service.
    """
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    response: health_pb2.HealthCheckResponse = await check(
        health_pb2.HealthCheckRequest(service=service), timeout=deadline
    )
    return int(response.status)
