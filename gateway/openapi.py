"""The OpenAPI 3.1 description of the gateway, built from the contract and the route table.

Schemas come from the protobuf descriptors with the JSON mapping the gateway uses
(lowerCamelCase names, enums by name, 64-bit integers as strings), so the document cannot
drift from the messages; each field's limits come from its `(mesh.v1.rules)` options, the
rules meeting_service checks (mesh_common.validation). Every message, field, enum value and
RPC is described by its comment in the contract (`gen/*/comments.py`, written at generation
time); the streaming protocols (SSE and the live WebSocket) by `gateway/protocols.py`. The
route list comes from the same derivation the router uses, and a test compares the
document's operations with the routes the app serves.
"""

from __future__ import annotations

import re
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from gateway import protocols
from gateway.console_routes import console_operations
from gateway.events import ERROR_EVENT, EVENT_NAMES, USER_EVENT_NAMES
from gateway.exports import FORMAT_PARAM, FORMATS, MEDIA_TYPES
from gateway.jsonpb import INT32_MAX, INT64_MAX
from gateway.live import ENCODINGS
from gateway.openai_api import GRANULARITIES, RESPONSE_FORMATS
from gateway.rest import SERVICE, RestRoute, rest_routes
from gateway.upload import ACCEPTED_TYPES
from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, user_events_pb2
from gen.meeting.v1.comments import COMMENTS
from mesh_common.scopes import grantable_scopes, method_scope
from mesh_common.validation import rules_of

_SCHEMA_REF = "#/components/schemas/"
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "description": 'An RFC 3339 time in UTC, e.g. "2026-01-31T09:30:00.123Z".',
    },
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


def comment(full_name: str) -> str:
    """Returns the contract's comment on a declaration ("" when it has none).

    Args:
        full_name: The declaration's full name ("meeting.v1.Meeting.title").

    Returns:
        The comment's text.
    """
    # Lines of one paragraph are joined; blank lines separate paragraphs.
    return re.sub(r"(?<!\n)\n(?!\n)", " ", COMMENTS.get(full_name, ""))


def _describe(schema: dict[str, Any], *parts: str) -> dict[str, Any]:
    """Puts `parts` before the schema's own description, as paragraphs."""
    text = "\n\n".join(p for p in (*parts, schema.get("description", "")) if p)
    if text:
        schema["description"] = text
    return schema


def _enum_description(enum: EnumDescriptor) -> str:
    values = "\n".join(
        f"- `{v.name}`: {comment(f'{enum.file.package}.{v.name}')}" for v in enum.values
    )
    return f"{comment(enum.full_name)}\n\n{values}".strip()


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
        schema = {"type": "object", "properties": properties, "additionalProperties": False}
        required = [f.json_name for f in descriptor.fields if _required(f)]
        if required:
            schema["required"] = required
        oneofs = [
            f"`{oneof.name}`: {comment(oneof.full_name)} At most one of "
            + ", ".join(f"`{f.json_name}`" for f in oneof.fields)
            + " is set."
            for oneof in descriptor.oneofs
            if not oneof.name.startswith("_")  # proto3 `optional` fields' synthetic oneofs
        ]
        return _describe(schema, comment(descriptor.full_name), *oneofs)

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            # A map is a JSON object (proto3 JSON), not a list of its generated entries.
            value = self._single(entry.fields_by_name["value"])
            schema: dict[str, Any] = {"type": "object", "additionalProperties": value}
            return _describe(schema, comment(field.full_name))
        schema = self._single(field)
        schema.update(_rules_schema(field))  # the rules hold for each item of a list
        if field.full_name == "meeting.v1.ApiKey.scopes":
            # The scopes a key can hold are those some method needs: no list of its own.
            schema["enum"] = sorted(grantable_scopes(SERVICE))
        if field.is_repeated:
            # The rules are each item's, but for their number.
            schema = {"type": "array", "items": schema}
            rules = rules_of(field)
            if rules.required:
                schema["minItems"] = 1
            if rules.HasField("max_items"):
                schema["maxItems"] = rules.max_items
        if field.full_name == "meeting.v1.UpdateMeetingRequest.update_mask":
            schema.update(_UPDATE_MASK_SCHEMA)
        behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
        if field_behavior_pb2.OUTPUT_ONLY in behaviors:
            # Set by the server; ignored when a client sends it.
            schema["readOnly"] = True
        return _describe(schema, comment(field.full_name))

    def _single(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None:
            return self.ref(field.message_type)
        if field.enum_type is not None:
            return {
                "type": "string",
                "enum": [v.name for v in field.enum_type.values],
                "description": _enum_description(field.enum_type),
            }
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


def _required(field: FieldDescriptor) -> bool:
    """Whether a message's JSON must hold the field.

    So it must when its rules require the text, or when it is a message the contract marks
    REQUIRED (a message has no empty value to stand for "not set").
    """
    if rules_of(field).required:
        return True
    behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    return field.message_type is not None and field_behavior_pb2.REQUIRED in behaviors


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
        "description": "Every error answer of the gateway.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "description": "The error: its HTTP status, gRPC code, message and details.",
                "required": ["code", "status", "message", "details"],
                "properties": {
                    "code": {"type": "integer", "description": "The HTTP status."},
                    "status": {"type": "string", "description": "The gRPC status code name."},
                    "message": {
                        "type": "string",
                        "description": "What went wrong, for people; clients switch on the "
                        "reason in `details`, never on this text.",
                    },
                    "details": {
                        "type": "array",
                        "description": "google.rpc.ErrorInfo (reason, domain, metadata), "
                        "and RetryInfo when the call may be retried later.",
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
    field = _REQUESTS[request].fields_by_name["meeting_id"]
    return {
        "name": "meeting_id",
        "in": "path",
        "required": True,
        "schema": _string_schema(field),
        "description": comment(field.full_name) or "Id of the meeting.",
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


def _method_text(name: str, *more: str) -> dict[str, str]:
    """The summary (first sentence) and description of an RPC, from its comment."""
    text = comment(SERVICE.methods_by_name[name].full_name)
    first = text.split(". ")[0].rstrip(".")
    description = "\n\n".join([text, *more, f"(MeetingService.{name})"])
    return {"summary": first, "description": description}


def _rest_operation(route: RestRoute, schemas: _Schemas) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {
            "name": var,
            "in": "path",
            "required": True,
            "schema": _string_schema(_field_at(route.method.input_type, path)),
            "description": comment(_field_at(route.method.input_type, path).full_name),
        }
        for var, path in route.variables.items()
    ]
    for field in route.query_fields():
        parameters.append(
            {
                "name": field.json_name,
                "in": "query",
                "required": rules_of(field).required,
                "schema": schemas.field(field),
                "description": comment(field.full_name),
            }
        )
    operation: dict[str, Any] = {
        "operationId": route.name,
        **_method_text(route.name),
        "security": _security(route.name),
        "parameters": parameters,
        "responses": {},
    }
    raw = route.raw_body
    if raw is not None:
        rules = rules_of(raw)
        binary: dict[str, Any] = {"type": "string", "format": "binary"}
        if rules.HasField("max_bytes"):
            binary["maxLength"] = rules.max_bytes
        operation["requestBody"] = {
            "required": rules.required,
            "description": comment(raw.full_name),
            "content": {
                "application/octet-stream": {"schema": binary},
                "audio/*": {"schema": binary},
            },
        }
    elif route.body:
        body_type = (
            route.method.input_type
            if route.body == "*"
            else route.method.input_type.fields_by_name[route.body].message_type
        )
        assert body_type is not None
        body_schema = schemas.ref(body_type)
        # A body with fields it must hold cannot be left out.
        required = any(_required(field) for field in body_type.fields)
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
    if raw is not None:
        errors.append("413")
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
        "description": "An error of the OpenAI-compatible routes, in OpenAI's shape.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "description": "The error.",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string", "description": "What went wrong."},
                    "type": {
                        "type": "string",
                        "description": 'OpenAI\'s error type ("invalid_request_error"...).',
                    },
                    "param": {
                        "type": ["string", "null"],
                        "description": "The form field at fault, when one is.",
                    },
                    "code": {
                        "type": ["string", "null"],
                        "description": 'The error\'s reason in lowercase ("not_audio"); '
                        '"invalid_api_key" for a missing or bad token.',
                    },
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
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The recording, streamed into a new meeting.",
                        },
                        "model": {
                            "type": "string",
                            "description": "Any id of /v1/models; each runs the mesh's own "
                            "recognizer.",
                        },
                        "language": {
                            "type": "string",
                            "description": "The spoken language (BCP-47), as the meeting's "
                            "`language`.",
                        },
                        "prompt": {
                            "type": "string",
                            "description": "Accepted for compatibility; not used.",
                        },
                        "response_format": {
                            "type": "string",
                            "enum": list(RESPONSE_FORMATS),
                            "description": "How the transcript is answered.",
                        },
                        "timestamp_granularities[]": {
                            "type": "array",
                            "items": {"type": "string", "enum": list(GRANULARITIES)},
                            "description": "With verbose_json: segment and/or word timings.",
                        },
                        "temperature": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": 1,
                            "description": "Accepted for compatibility (0 to 1); not used.",
                        },
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
    offset_header = {
        "Upload-Offset": {
            "schema": offset_schema,
            "description": "Bytes of the recording stored: the offset to resume from.",
        }
    }
    binary = {"schema": {"type": "string", "format": "binary"}}
    recording = {media_type: binary for media_type in ACCEPTED_TYPES}
    types = (
        "The body is the recording, declared as `audio/*`, `video/*` (a container with an "
        "audio track, e.g. `video/mp4` or `video/webm`) or `application/octet-stream`; "
        "meeting_service probes it and refuses one with no decodable audio (400 NOT_AUDIO), "
        "leaving the meeting awaiting audio with `failureReason` saying why. Any other type "
        "is 415."
    )
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
            **_method_text("UploadAudio", types),
            "security": _security("GetUploadStatus", "UploadAudio"),
            "parameters": [upload_id],
            "requestBody": {"required": True, "content": recording},
            "responses": {"200": upload_ok, **upload_errors},
        },
        "head": {
            "operationId": "GetUploadStatus",
            **_method_text(
                "GetUploadStatus",
                "Answered tus-style in headers: `Upload-Offset`, `Upload-Length` and "
                "`Upload-Complete`.",
            ),
            "security": _security("GetUploadStatus"),
            "parameters": [_id_parameter("GetUploadStatusRequest")],
            "responses": {
                "200": {
                    "description": "Upload-Offset is the offset to resume from.",
                    "headers": {
                        **offset_header,
                        "Upload-Length": {
                            "schema": {"type": "integer"},
                            "description": "The declared size of the whole recording.",
                        },
                        "Upload-Complete": {
                            "schema": {"type": "string", "enum": ["true", "false"]},
                            "description": "Whether the recording is complete.",
                        },
                    },
                },
                **{code: {"description": _ERROR_STATUSES[code]} for code in _COMMON_ERRORS},
            },
        },
        "patch": {
            "operationId": "ResumeUpload",
            "summary": "Continue an upload from Upload-Offset",
            "description": "Sends the rest of a recording after a dropped upload: "
            "`Upload-Offset` must be the stored size (HEAD tells it), else 409 and nothing is "
            "written. " + types + " (MeetingService.UploadAudio)",
            "security": _security("GetUploadStatus", "UploadAudio"),
            "parameters": [
                upload_id,
                {
                    "name": "Upload-Offset",
                    "in": "header",
                    "required": True,
                    "schema": offset_schema,
                    "description": comment(offset.full_name),
                },
            ],
            "requestBody": {
                "required": True,
                "content": {"application/offset+octet-stream": binary, **recording},
            },
            "responses": {"200": upload_ok, **upload_errors},
        },
    }


def _resume_parameters(sequence: FieldDescriptor) -> list[dict[str, Any]]:
    described = comment(sequence.full_name)
    return [
        {"name": "after", "in": "query", "schema": _SEQUENCE_SCHEMA, "description": described},
        {
            "name": "Last-Event-ID",
            "in": "header",
            "schema": _SEQUENCE_SCHEMA,
            "description": f"{described} Sent by a reconnecting EventSource; wins over `after`.",
        },
    ]


def _event_stream(names: list[str], data: dict[str, Any]) -> dict[str, Any]:
    """The answer of an SSE route: its schema is one event's (OpenAPI 3.2's reading)."""
    event = {
        "type": "object",
        "description": "One Server-Sent Event, as an EventSource hands it over.",
        "properties": {
            "id": {
                "type": "string",
                "pattern": "^[0-9]+$",
                "description": "The event's sequence: what Last-Event-ID resumes after. "
                f"Absent on `{ERROR_EVENT}`.",
            },
            "event": {
                "type": "string",
                "enum": [*names, ERROR_EVENT],
                "description": "The event's name (EventSource: addEventListener(name, ...)).",
            },
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": data,
                "description": "The event as JSON; the error body on `" + ERROR_EVENT + "`.",
            },
            "retry": {
                "type": "integer",
                "description": "Milliseconds an EventSource waits before reconnecting.",
            },
        },
    }
    return {
        "description": "The event stream (see the operation's description).",
        "content": {"text/event-stream": {"schema": event}},
    }


def _events_operation(schemas: _Schemas) -> dict[str, Any]:
    request = _REQUESTS["StreamTranscriptRequest"]
    return {
        "get": {
            "operationId": "StreamEvents",
            **_method_text("StreamTranscript", protocols.MEETING_EVENTS, protocols.SSE),
            "security": _security("GetMeeting", "StreamTranscript", query_token=True),
            "parameters": [
                _id_parameter("StreamTranscriptRequest"),
                *_resume_parameters(request.fields_by_name["after_sequence"]),
            ],
            "responses": {
                "200": _event_stream(
                    list(EVENT_NAMES.values()),
                    schemas.ref(meeting_pb2.TranscriptEvent.DESCRIPTOR),
                ),
                "204": {
                    "description": "The meeting has ended and the client has its final "
                    "event: nothing more will come (EventSource stops reconnecting)."
                },
                **_errors(*_COMMON_ERRORS),
            },
        }
    }


def _user_events_operation(schemas: _Schemas) -> dict[str, Any]:
    request = user_events_pb2.StreamUserEventsRequest.DESCRIPTOR
    return {
        "get": {
            "operationId": "StreamUserEvents",
            **_method_text("StreamUserEvents", protocols.USER_EVENTS, protocols.SSE),
            "security": _security("StreamUserEvents", query_token=True),
            "parameters": _resume_parameters(request.fields_by_name["after_sequence"]),
            "responses": {
                "200": _event_stream(
                    list(USER_EVENT_NAMES.values()),
                    schemas.ref(user_events_pb2.UserEvent.DESCRIPTOR),
                ),
                **_errors("400", "401", "503"),
            },
        }
    }


def _live_operation(schemas: _Schemas) -> dict[str, Any]:
    config = _REQUESTS["LiveAudioConfig"]
    return {
        "get": {
            "operationId": "LiveTranscribe",
            **_method_text("LiveTranscribe", protocols.LIVE),
            # {}: the token may also come in the first frame, after the upgrade.
            "security": [*_security("GetMeeting", "LiveTranscribe", query_token=True), {}],
            "parameters": [
                _id_parameter("LiveAudioConfig"),
                {
                    "name": "encoding",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(ENCODINGS)},
                    "description": comment(config.fields_by_name["encoding"].full_name),
                },
                {
                    "name": "sample_rate",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 0, "maximum": INT32_MAX},
                    "description": comment(config.fields_by_name["sample_rate_hertz"].full_name),
                },
                {
                    "name": "channels",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        **_rules_schema(config.fields_by_name["channels"]),
                    },
                    "description": comment(config.fields_by_name["channels"].full_name),
                },
                {
                    "name": "resume",
                    "in": "query",
                    "schema": {"type": "boolean"},
                    "description": comment(config.fields_by_name["resume"].full_name),
                },
                {
                    "name": "language",
                    "in": "query",
                    # The service checks it by the rules of Meeting.language.
                    "schema": _string_schema(
                        meeting_pb2.Meeting.DESCRIPTOR.fields_by_name["language"]
                    ),
                    "description": comment(config.fields_by_name["language"].full_name),
                },
            ],
            "responses": {
                "101": {
                    "description": "Switching to the WebSocket protocol; every outcome, "
                    "failures included, is then told by frames and the close code. The "
                    "HTTP error answers are for requests that are not an upgrade (400 once "
                    "the parameters and the meeting are good).",
                    "x-message-data": schemas.ref(meeting_pb2.TranscriptEvent.DESCRIPTOR),
                },
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


def _page(operation_id: str, summary: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "security": [],
            "responses": {
                "200": {
                    "description": summary,
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
            },
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
    paths["/v1/meetings/{meeting_id}/events"] = _events_operation(schemas)
    paths["/v1/meetings/{meeting_id}/live"] = _live_operation(schemas)
    paths["/v1/events"] = _user_events_operation(schemas)
    paths.update(_openai_operations())
    paths["/healthz"] = _plain("Healthz", "The process is up.", ("200",))
    paths["/readyz"] = _plain("Readyz", "meeting_service is reachable and SERVING.", ("200", "503"))
    paths["/openapi.json"] = _plain("OpenApi", "This document.", ("200",))
    paths["/docs"] = _page("Docs", "This document as a readable page.")
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
    paths.update(console_operations())
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
