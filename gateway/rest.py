"""The unary REST routes, derived from the contract's `google.api.http` annotations.

The mapping from URL to RPC lives in one place, the `.proto`: each annotated method of
MeetingService becomes a route whose path variables fill request fields, whose body (when the
annotation names one) fills the named field, and whose query parameters fill the remaining
fields. A body that fills a `bytes` field is that field's raw bytes (a recording), within
the field's `max_bytes` rule; any other body is JSON. Only the streaming routes (upload,
events, live) are written by hand.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from google.api import annotations_pb2, field_behavior_pb2
from google.protobuf import field_mask_pb2, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from contract_errors.meeting import invalid_field
from gateway import state
from gateway.auth import grpc_metadata
from gateway.jsonpb import json_body, merge_json, read_body, read_json_body
from gen.meeting.v1 import meeting_service_pb2
from mesh_common.validation import rules_of

SERVICE = meeting_service_pb2.DESCRIPTOR.services_by_name["MeetingService"]
_VARIABLE = re.compile(r"\{([\w.]+)\}")
_SUCCESS_STATUS = {"post": 201, "delete": 204}


@dataclass(frozen=True)
class RestRoute:
    """One annotated RPC as an HTTP route.

    Attributes:
        method: The RPC's descriptor.
        http_method: "GET", "POST", "PATCH", "DELETE"...
        template: The annotation's path ("/v1/meetings/{meeting.id}").
        path: The aiohttp path ("/v1/meetings/{meeting_id}").
        variables: aiohttp variable name -> request field path ("meeting_id" -> "meeting.id").
        body: The request field filled from the body, "*" for the whole request, "" for none.
        success_status: The HTTP status of a successful answer.
    """

    method: MethodDescriptor
    http_method: str
    template: str
    path: str
    variables: dict[str, str]
    body: str
    success_status: int

    @property
    def name(self) -> str:
        """The route's name in the aiohttp router: the RPC's name."""
        return self.method.name

    def query_fields(self) -> list[FieldDescriptor]:
        """The request fields that come from the query string."""
        taken = {path.split(".")[0] for path in self.variables.values()}
        if self.body:
            taken.add(self.body)
        if self.body == "*":
            return []
        return [f for f in self.method.input_type.fields if f.name not in taken]

    @property
    def raw_body(self) -> FieldDescriptor | None:
        """The `bytes` field the body fills as it is, when the body is one."""
        if self.body in ("", "*"):
            return None
        field = self.method.input_type.fields_by_name[self.body]
        return field if field.type == FieldDescriptor.TYPE_BYTES else None

    @functools.cached_property
    def query_parameters(self) -> dict[str, FieldDescriptor]:
        """The query fields by the names a client may use: JSON name or proto name."""
        fields = {f.json_name: f for f in self.query_fields()}
        fields.update({f.name: f for f in self.query_fields()})
        return fields


def rest_routes() -> list[RestRoute]:
    """Reads the HTTP routes from the contract.

    Returns:
        One route per annotated MeetingService method, in contract order.
    """
    routes = []
    for method in SERVICE.methods:
        options = method.GetOptions()
        if not options.HasExtension(annotations_pb2.http):
            continue
        rule = options.Extensions[annotations_pb2.http]
        verb = rule.WhichOneof("pattern")
        if verb is None or verb == "custom":
            continue
        template: str = getattr(rule, verb)
        variables = {v.replace(".", "_"): v for v in _VARIABLE.findall(template)}
        path = _VARIABLE.sub(lambda m: "{" + m.group(1).replace(".", "_") + "}", template)
        routes.append(
            RestRoute(
                method=method,
                http_method=verb.upper(),
                template=template,
                path=path,
                variables=variables,
                body=rule.body,
                success_status=_SUCCESS_STATUS.get(verb, 200),
            )
        )
    return routes


def _message_class(descriptor: Descriptor) -> type[Message]:
    # Requests may be declared in any file the service's file imports.
    return message_factory.GetMessageClass(descriptor)


def _set_path_field(message: Message, path: str, value: str) -> None:
    *parents, leaf = path.split(".")
    target: Any = message
    for part in parents:
        target = getattr(target, part)
    setattr(target, leaf, value)


def _normalise_mask(value: str) -> str:
    # A FieldMask's JSON form is lowerCamelCase; people also write the proto names.
    def camel(path: str) -> str:
        head, *rest = path.strip().split("_")
        return head + "".join(part[:1].upper() + part[1:] for part in rest)

    return ",".join(camel(p) for p in value.split(",") if p.strip())


def _query_json(route: RestRoute, request: web.Request) -> dict[str, Any]:
    fields = route.query_parameters
    values: dict[str, Any] = {}
    for key in request.query:
        field = fields.get(key)
        if field is None:
            allowed = ", ".join(sorted({f.json_name for f in route.query_fields()})) or "none"
            raise invalid_field(key, f"unknown query parameter {key!r} (allowed: {allowed})")
        items = request.query.getall(key)
        if field.is_repeated:
            values[field.json_name] = items
            continue
        if len(items) > 1:
            raise invalid_field(key, f"query parameter {key!r} given more than once")
        value: Any = items[0]
        if field.message_type is not None and field.message_type.full_name == (
            field_mask_pb2.FieldMask.DESCRIPTOR.full_name
        ):
            value = _normalise_mask(value)
        elif field.type == FieldDescriptor.TYPE_BOOL:
            value = {"true": True, "false": False}.get(value.lower(), value)
        values[field.json_name] = value
    return values


async def build_request(route: RestRoute, request: web.Request) -> Message:
    """Builds the RPC request from the path, body and query of an HTTP request.

    Args:
        route: The route being served.
        request: The HTTP request.

    Returns:
        The gRPC request message.

    Raises:
        MeetingError: INVALID_FIELD for a malformed body, unknown field or parameter, or a
            wrong type.
    """
    message = _message_class(route.method.input_type)()
    body_keys: list[str] = []
    raw = route.raw_body
    if raw is not None:
        rules = rules_of(raw)
        limit = rules.max_bytes if rules.HasField("max_bytes") else None
        setattr(message, raw.name, await read_body(request, limit))
    elif route.body:
        value = await read_json_body(request)
        if route.body == "*":
            merge_json(value, message, "body")
        else:
            merge_json(value, getattr(message, route.body), "body")
            body_keys = list(value)
    if request.query:
        merge_json(_query_json(route, request), message, "query")
    for variable, path in route.variables.items():
        _set_path_field(message, path, request.match_info[variable])
    _default_update_mask(message, body_keys, route)
    return message


def _output_only(field: FieldDescriptor) -> bool:
    behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    return field_behavior_pb2.OUTPUT_ONLY in behaviors


def _default_update_mask(message: Message, body_keys: list[str], route: RestRoute) -> None:
    # With no update_mask, the fields present in the body are the ones to change (AIP-134);
    # an empty one (`?updateMask=`) names no field, so it means the same.
    if "update_mask" not in message.DESCRIPTOR.fields_by_name or not route.body:
        return
    if message.update_mask.paths:  # type: ignore[attr-defined]
        return
    body_type = route.method.input_type.fields_by_name[route.body].message_type
    assert body_type is not None
    # Output-only fields are the server's: a client that sends back what it read (owner,
    # status...) changes only what it may change (AIP-203).
    writable = [f for f in body_type.fields if not _output_only(f)]
    by_json = {f.json_name: f.name for f in writable}
    by_json.update({f.name: f.name for f in writable})
    bound = {path.split(".", 1)[1] for path in route.variables.values() if "." in path}
    paths = [by_json[k] for k in body_keys if k in by_json and by_json[k] not in bound]
    message.update_mask.paths.extend(paths)  # type: ignore[attr-defined]


def make_handler(route: RestRoute) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Returns the aiohttp handler that serves one route by calling its RPC.

    Args:
        route: The route.

    Returns:
        The handler.
    """

    async def handler(request: web.Request) -> web.StreamResponse:
        message = await build_request(route, request)
        rpc = getattr(state.stub(request), route.method.name)
        response: Message = await rpc(
            message,
            metadata=grpc_metadata(request),
            timeout=state.settings(request).unary_timeout_s,
        )
        if route.success_status == 204:
            return web.Response(status=204)
        return json_body(response, route.success_status)

    handler.__name__ = f"rest_{route.method.name}"
    handler.__doc__ = route.method.name
    return handler


Wrapper = Callable[
    [Callable[[web.Request], Awaitable[web.StreamResponse]]],
    Callable[[web.Request], Awaitable[web.StreamResponse]],
]


def add_rest_routes(
    app: web.Application, wrappers: Mapping[str, Wrapper] | None = None
) -> list[RestRoute]:
    """Adds every annotated RPC as a route.

    Args:
        app: The application.
        wrappers: RPC name -> what wraps its handler, for a route that serves more than
            its RPC (the transcript route also serves exports).

    Returns:
        The routes added.
    """
    routes = rest_routes()
    for route in routes:
        handler = make_handler(route)
        wrap = (wrappers or {}).get(route.name)
        if wrap is not None:
            handler = wrap(handler)
        app.router.add_route(route.http_method, route.path, handler, name=route.name)
    return routes
