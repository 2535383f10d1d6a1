"""The OpenAPI 3.1 description of the gateway, built from the contract and the route table.

Schemas come from the protobuf descriptors with the JSON mapping the gateway uses
(lowerCamelCase names, enums by name, 64-bit integers as strings), so the document cannot
drift from the messages; each field's limits come from its `(mesh.v1.rules)` options, the
rules meeting_service checks (mesh_common.validation). The route list comes from the same
derivation the router uses, and a test compares the document's operations with the routes
the app serves.
"""

from __future__ import annotations

from typing import Any

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from gateway.exports import FORMAT_PARAM, FORMATS, MEDIA_TYPES
from gateway.jsonpb import INT32_MAX, INT64_MAX
from gateway.openai_api import GRANULARITIES, RESPONSE_FORMATS
from gateway.rest import RestRoute, rest_routes
from gen.meeting.v1 import meeting_pb2, meeting_service_pb2
from mesh_common.scopes import method_scope
from mesh_common.validation import rules_of

_SCHEMA_REF = "#/components/schemas/"
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
        "description": 'A duration in seconds with an "s" suffix, e.g. "1.5s".',
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Comma-separated lowerCamelCase field names.",
    },
}
_INT64_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}
_INT32_TYPES = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_SFIXED32,
}
_MASKABLE = "(title|language|expectedSpeakers|expected_speakers)"
_UPDATE_MASK_SCHEMA = {
    "pattern": f"^({_MASKABLE}(,{_MASKABLE})*)?$",
    "description": "Fields to change (comma-separated): title, language, "
    "expectedSpeakers. Empty: the fields present in the body.",
}
# Text is stored in PostgreSQL, which holds no NUL character; the gateway refuses them.
_TEXT_SCHEMA = {"type": "string", "pattern": "^[^\\u0000]*$"}
_REQUESTS = meeting_service_pb2.DESCRIPTOR.message_types_by_name
_SEQUENCE_SCHEMA = {"type": "integer", "minimum": 0, "maximum": INT64_MAX}
_ERROR_STATUSES: dict[str, str] = {
    "400": "Invalid request: a field, parameter or body is malformed (details name it), "
    "or the meeting is in the wrong state.",
    "401": "Missing or invalid bearer token or API key (see WWW-Authenticate).",
    "403": "The API key lacks the scope the operation needs (its security requirement).",
    "404": "No such meeting (or API key) for this caller.",
    "409": "Conflict: an upload offset that is not the stored size, or a repeated create.",
    "413": "The recording is larger than the limit.",
    "415": "The body's Content-Type is not audio.",
    "429": "Too much work queued, or a quota of the caller reached; retry after "
    "Retry-After seconds.",
    "503": "A backend is unavailable; retry after Retry-After seconds.",
    "504": "A backend did not answer in time.",
}


class _Schemas:
    """Collects component schemas for messages as they are referenced."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, descriptor: Descriptor) -> dict[str, Any]:
        if descriptor.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[descriptor.full_name])
        name = descriptor.full_name.removeprefix("meeting.v1.")
        if name not in self.components:
            self.components[name] = {}  # placeholder first: messages may be recursive
            self.components[name] = self._message(descriptor)
        return {"$ref": _SCHEMA_REF + name}

    def _message(self, descriptor: Descriptor) -> dict[str, Any]:
        properties = {f.json_name: self.field(f) for f in descriptor.fields}
        return {"type": "object", "properties": properties, "additionalProperties": False}

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        schema = self._single(field)
        if field.is_repeated:
            schema = {"type": "array", "items": schema}
        schema.update(_rules_schema(field))
        if field.full_name == "meeting.v1.UpdateMeetingRequest.update_mask":
            schema.update(_UPDATE_MASK_SCHEMA)
        behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
        if field_behavior_pb2.OUTPUT_ONLY in behaviors:
            # Set by the server; ignored when a client sends it.
            schema["readOnly"] = True
        return schema

    def _single(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None:
            return self.ref(field.message_type)
        if field.enum_type is not None:
            return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        if field.type in _INT64_TYPES:
            return {"type": "string", "pattern": r"^-?[0-9]+$", "description": "64-bit integer"}
        if field.type in _INT32_TYPES:
            return {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
        if field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
            return {"type": "number"}
        if field.type == FieldDescriptor.TYPE_BOOL:
            return {"type": "boolean"}
        if field.type == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        return dict(_TEXT_SCHEMA)


def _rules_schema(field: FieldDescriptor) -> dict[str, Any]:
    """The JSON Schema keywords that state a field's `(mesh.v1.rules)`."""
    rules = rules_of(field)
    schema: dict[str, Any] = {}
    if rules.required:
        schema["minLength"] = 1
    if rules.HasField("max_len"):
        schema["maxLength"] = rules.max_len
    if rules.uuid:
        schema["format"] = "uuid"
    if rules.pattern:
        # The rules leave the empty string unchecked unless the field is required.
        optional = "" if rules.required else "?"
        schema["pattern"] = f"^(?:{rules.pattern}){optional}$"
        if rules.pattern_description:
            schema["description"] = f"Must be {rules.pattern_description}" + (
                "." if rules.required else ", or empty."
            )
    if rules.HasField("min"):
        schema["minimum"] = rules.min
    if rules.HasField("max"):
        schema["maximum"] = rules.max
    return schema


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "status", "message", "details"],
                "properties": {
                    "code": {"type": "integer", "description": "The HTTP status."},
                    "status": {"type": "string", "description": "The gRPC status code name."},
                    "message": {"type": "string"},
                    "details": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "description": "google.rpc.ErrorInfo: reason, domain, metadata.",
                        },
                    },
                },
            }
        },
    }


def _errors(*statuses: str) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status in statuses:
        answer: dict[str, Any] = {
            "description": _ERROR_STATUSES[status],
            "content": {"application/json": {"schema": {"$ref": _SCHEMA_REF + "Error"}}},
        }
        if status in ("429", "503"):
            answer["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
        if status == "401":
            answer["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        answers[status] = answer
    return answers


def _id_parameter(request: str) -> dict[str, Any]:
    """The `meeting_id` path parameter of a route that fills `request`'s meeting_id."""
    return {
        "name": "meeting_id",
        "in": "path",
        "required": True,
        "schema": _string_schema(_REQUESTS[request].fields_by_name["meeting_id"]),
        "description": "Id of the meeting.",
    }


def _string_schema(field: FieldDescriptor) -> dict[str, Any]:
    return {"type": "string", **_rules_schema(field)}


def _field_at(message: Descriptor, path: str) -> FieldDescriptor:
    """The field a dotted request path ("meeting.id") names."""
    *parents, leaf = path.split(".")
    for part in parents:
        inner = message.fields_by_name[part].message_type
        assert inner is not None, path
        message = inner
    return message.fields_by_name[leaf]


_COMMON_ERRORS = ("400", "401", "403", "404", "429", "503", "504")


def _security(*rpcs: str, query_token: bool = False) -> list[dict[str, list[str]]]:
    """Returns an operation's credentials, naming the scopes an API key needs.

    Args:
        rpcs: The MeetingService methods the route calls; their `(mesh.v1.scope)`
            options are the scopes.
        query_token: Whether `?access_token=` is accepted too.
    """
    methods = meeting_service_pb2.DESCRIPTOR.services_by_name["MeetingService"].methods_by_name
    scopes = sorted({method_scope(methods[rpc]) for rpc in rpcs})
    schemes = ("bearer", "accessToken") if query_token else ("bearer",)
    return [{scheme: scopes} for scheme in schemes]


def _rest_operation(route: RestRoute, schemas: _Schemas) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {
            "name": var,
            "in": "path",
            "required": True,
            "schema": _string_schema(_field_at(route.method.input_type, path)),
        }
        for var, path in route.variables.items()
    ]
    for field in route.query_fields():
        parameters.append({"name": field.json_name, "in": "query", "schema": schemas.field(field)})
    operation: dict[str, Any] = {
        "operationId": route.name,
        "summary": f"MeetingService.{route.name}",
        "security": _security(route.name),
        "parameters": parameters,
        "responses": {},
    }
    if route.body:
        body_type = (
            route.method.input_type
            if route.body == "*"
            else route.method.input_type.fields_by_name[route.body].message_type
        )
        assert body_type is not None
        body_schema = schemas.ref(body_type)
        required = False
        if "update_mask" in route.method.input_type.fields_by_name:
            # Without a mask, the body's fields are the ones to change: an empty body with
            # no mask changes nothing and is refused.
            body_schema["minProperties"] = 1
            required = True
        operation["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": body_schema}},
        }
    success = str(route.success_status)
    if success == "204":
        operation["responses"][success] = {"description": "Done."}
    else:
        operation["responses"][success] = {
            "description": "Success.",
            "content": {"application/json": {"schema": schemas.ref(route.method.output_type)}},
        }
    if route.name == "GetTranscript":
        _add_exports(operation)
    errors = [*_COMMON_ERRORS, "409"] if route.http_method == "POST" else list(_COMMON_ERRORS)
    operation["responses"].update(_errors(*errors))
    return operation


def _add_exports(operation: dict[str, Any]) -> None:
    """Documents the exports the transcript route also serves (gateway/exports.py)."""
    operation["summary"] += " or, by `format` or `Accept`, MeetingService.ExportTranscript"
    operation["parameters"].append(
        {
            "name": FORMAT_PARAM,
            "in": "query",
            "schema": {"type": "string", "enum": sorted(FORMATS)},
            "description": "Answer with the transcript as a file (Content-Disposition names "
            "it); without it, an Accept of " + ", ".join(sorted(MEDIA_TYPES)) + " does the same.",
        }
    )
    content = operation["responses"]["200"]["content"]
    transcript = content["application/json"]["schema"]
    export = {"type": "object", "description": "The JSON export (format=json)."}
    content["application/json"] = {"schema": {"anyOf": [transcript, export]}}
    for media in sorted(MEDIA_TYPES):
        content[media] = {"schema": {"type": "string"}}
    operation["responses"]["200"]["headers"] = {
        "Content-Disposition": {"schema": {"type": "string"}}
    }


def _openai_error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    }


def _openai_errors(*statuses: str) -> dict[str, Any]:
    descriptions = {
        **_ERROR_STATUSES,
        "400": "Invalid request (a field, or a file that is not audio), or translation.",
        "500": "The transcription failed; the message says why.",
    }
    return {
        status: {
            "description": descriptions[status],
            "content": {"application/json": {"schema": {"$ref": _SCHEMA_REF + "OpenAIError"}}},
        }
        for status in statuses
    }


def _openai_form() -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "model": {"type": "string"},
                        "language": {"type": "string"},
                        "prompt": {"type": "string"},
                        "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS)},
                        "timestamp_granularities[]": {
                            "type": "array",
                            "items": {"type": "string", "enum": list(GRANULARITIES)},
                        },
                        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                }
            }
        },
    }


def _openai_operations() -> dict[str, dict[str, Any]]:
    text = {"schema": {"type": "string"}}
    return {
        "/v1/audio/transcriptions": {
            "post": {
                "operationId": "CreateTranscription",
                "summary": "OpenAI-compatible: transcribe a file as a new meeting of the caller "
                "and answer when it is done.",
                "requestBody": _openai_form(),
                "responses": {
                    "200": {
                        "description": "The transcript in response_format.",
                        "content": {
                            "application/json": {"schema": {"type": "object"}},
                            "text/plain": text,
                            "application/x-subrip": text,
                            "text/vtt": text,
                        },
                    },
                    **_openai_errors("400", "401", "413", "429", "500", "503", "504"),
                },
            }
        },
        "/v1/audio/translations": {
            "post": {
                "operationId": "CreateTranslation",
                "summary": "OpenAI-compatible: refused with 400, the recognizer does not "
                "translate.",
                "requestBody": _openai_form(),
                "responses": _openai_errors("400", "401"),
            }
        },
        "/v1/models": {
            "get": {
                "operationId": "ListModels",
                "summary": "OpenAI-compatible: the model ids a transcription may name.",
                "responses": {
                    "200": {
                        "description": "OpenAI's model list.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_openai_errors("401"),
                },
            }
        },
    }


def _audio_operations(schemas: _Schemas) -> dict[str, Any]:
    # Upload-Offset is the stream's UploadMetadata.offset.
    offset = _REQUESTS["UploadMetadata"].fields_by_name["offset"]
    offset_schema = {"type": "integer", "maximum": INT64_MAX, **_rules_schema(offset)}
    offset_header = {"Upload-Offset": {"schema": offset_schema}}
    binary = {"schema": {"type": "string", "format": "binary"}}
    upload_ok = {
        "description": "Stored; the response tells how much and whether it is complete.",
        "headers": offset_header,
        "content": {
            "application/json": {
                "schema": schemas.ref(meeting_service_pb2.UploadAudioResponse.DESCRIPTOR)
            }
        },
    }
    upload_errors = _errors(*_COMMON_ERRORS, "409", "413", "415")
    upload_id = _id_parameter("UploadMetadata")
    return {
        "put": {
            "operationId": "UploadAudio",
            "summary": "Upload a whole recording (streamed to MeetingService.UploadAudio).",
            "security": _security("GetUploadStatus", "UploadAudio"),
            "parameters": [upload_id],
            "requestBody": {"required": True, "content": {"audio/*": binary}},
            "responses": {"200": upload_ok, **upload_errors},
        },
        "head": {
            "operationId": "GetUploadStatus",
            "summary": "How many bytes are stored (tus-style Upload-Offset).",
            "security": _security("GetUploadStatus"),
            "parameters": [_id_parameter("GetUploadStatusRequest")],
            "responses": {
                "200": {
                    "description": "Upload-Offset is the offset to resume from.",
                    "headers": {
                        **offset_header,
                        "Upload-Length": {"schema": {"type": "integer"}},
                        "Upload-Complete": {"schema": {"type": "string"}},
                    },
                },
                **{code: {"description": _ERROR_STATUSES[code]} for code in _COMMON_ERRORS},
            },
        },
        "patch": {
            "operationId": "ResumeUpload",
            "summary": "Continue an upload from Upload-Offset.",
            "security": _security("GetUploadStatus", "UploadAudio"),
            "parameters": [
                upload_id,
                {
                    "name": "Upload-Offset",
                    "in": "header",
                    "required": True,
                    "schema": offset_schema,
                },
            ],
            "requestBody": {
                "required": True,
                "content": {"application/offset+octet-stream": binary, "audio/*": binary},
            },
            "responses": {"200": upload_ok, **upload_errors},
        },
    }


def _events_operation() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "StreamEvents",
            "summary": "The meeting's events as Server-Sent Events (MeetingService."
            "StreamTranscript). id: is the sequence, event: segment|status|summary|deleted|"
            "error, data: the TranscriptEvent JSON (an error event carries the error body).",
            "security": _security("GetMeeting", "StreamTranscript", query_token=True),
            "parameters": [
                _id_parameter("StreamTranscriptRequest"),
                {"name": "after", "in": "query", "schema": _SEQUENCE_SCHEMA},
                {"name": "Last-Event-ID", "in": "header", "schema": _SEQUENCE_SCHEMA},
            ],
            "responses": {
                "200": {
                    "description": "The event stream.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **_errors(*_COMMON_ERRORS),
            },
        }
    }


def _live_operation() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "LiveTranscribe",
            "summary": "WebSocket: binary 16-bit mono PCM frames in, TranscriptEvent JSON out "
            "(MeetingService.LiveTranscribe). Failures close with 4000 + the HTTP status.",
            "security": _security("GetMeeting", "LiveTranscribe", query_token=True),
            "parameters": [
                _id_parameter("LiveAudioConfig"),
                {
                    "name": "sample_rate",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 0, "maximum": INT32_MAX},
                },
                {
                    "name": "language",
                    "in": "query",
                    # The service checks it by the rules of Meeting.language.
                    "schema": _string_schema(
                        meeting_pb2.Meeting.DESCRIPTOR.fields_by_name["language"]
                    ),
                },
            ],
            "responses": {
                "101": {"description": "Switching to the WebSocket protocol."},
                **_errors(*_COMMON_ERRORS),
            },
        }
    }


def _plain(operation_id: str, summary: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    responses: dict[str, Any] = {
        status: {
            "description": summary if status == "200" else "Not ready.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
        for status in statuses
    }
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "security": [],
            "responses": responses,
        }
    }


def build_openapi(server_url: str | None = None) -> dict[str, Any]:
    """Builds the OpenAPI 3.1 document.

    Args:
        server_url: The base URL to advertise, when known.

    Returns:
        The document as a JSON-ready dict.
    """
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in rest_routes():
        template = route.path
        paths.setdefault(template, {})[route.http_method.lower()] = _rest_operation(route, schemas)
    paths["/v1/meetings/{meeting_id}/audio"] = _audio_operations(schemas)
    paths["/v1/meetings/{meeting_id}/events"] = _events_operation()
    paths["/v1/meetings/{meeting_id}/live"] = _live_operation()
    schemas.ref(meeting_service_pb2.StreamTranscriptResponse.DESCRIPTOR)
    paths.update(_openai_operations())
    paths["/healthz"] = _plain("Healthz", "The process is up.", ("200",))
    paths["/readyz"] = _plain("Readyz", "meeting_service is reachable and SERVING.", ("200", "503"))
    paths["/openapi.json"] = _plain("OpenApi", "This document.", ("200",))
    paths["/metrics"] = {
        "get": {
            "operationId": "Metrics",
            "summary": "Prometheus metrics of this gateway.",
            "security": [],
            "responses": {
                "200": {
                    "description": "Prometheus text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    }
    components = dict(schemas.components)
    components["Error"] = _error_schema()
    components["OpenAIError"] = _openai_error_schema()
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "meeting-mesh gateway",
            "version": "1.0.0",
            "description": "REST, SSE and WebSocket over meeting.v1.MeetingService. JSON uses "
            "the protobuf JSON mapping with lowerCamelCase names (snake_case accepted on "
            "input); unknown fields are rejected with 400. As in that mapping, input may "
            "also carry null for a field's default and numbers for 64-bit integers; "
            "read-only fields sent in a request are ignored.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A user's JWT (every scope), or an API key (mm_live_...) "
                    "holding the scopes an operation lists.",
                },
                "accessToken": {"type": "apiKey", "in": "query", "name": "access_token"},
            },
        },
        "security": [{"bearer": []}],
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document
