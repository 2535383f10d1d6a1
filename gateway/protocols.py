"""The streaming protocols in words: what a client author reads in the OpenAPI document.

The texts are built from the constants the handlers use (event names, close codes, waits),
so the description cannot name an event or a code the gateway does not send.
"""

from __future__ import annotations

from gateway.events import ERROR_EVENT, EVENT_NAMES, USER_EVENT_NAMES
from gateway.live import AUTH_FRAME_WAIT_S
from gen.meeting.v1 import meeting_pb2
from mesh_common.errors import error_table


def _names(names: dict[str, str]) -> str:
    return ", ".join(f"`{name}`" for name in names.values())


def _close_code(reason: int) -> int:
    return error_table(meeting_pb2.ErrorReason)[reason].close_code


def _reason_name(reason: int) -> str:
    return meeting_pb2.ErrorReason.Name(reason).removeprefix("ERROR_REASON_")  # type: ignore[arg-type]


_CLOSE_CODES = "\n".join(
    f"- {_close_code(reason)} `{_reason_name(reason)}`: {why}"
    for reason, why in (
        (meeting_pb2.ERROR_REASON_UNAUTHENTICATED, "missing or bad token"),
        (meeting_pb2.ERROR_REASON_MEETING_NOT_FOUND, "unknown meeting, or another user's"),
        (meeting_pb2.ERROR_REASON_INVALID_FIELD, "a bad query parameter"),
        (meeting_pb2.ERROR_REASON_UNSUPPORTED_AUDIO, "an audio format the service refuses"),
        (meeting_pb2.ERROR_REASON_WRONG_STATE, "the meeting does not await audio"),
        (meeting_pb2.ERROR_REASON_BACKEND_UNAVAILABLE, "a backend is unavailable; retry"),
    )
)


SSE = f"""\
**Server-Sent Events.** The answer is `text/event-stream`. It starts with a `retry:` hint; \
each event is `id: <sequence>`, `event: <name>`, `data: <one JSON object>` and a blank line. \
Lines starting with `:` are heartbeats, sent whenever the stream has been idle for the \
gateway's heartbeat interval (15 s at most), so proxies keep the connection open.

**Resume.** After a dropped connection, an `EventSource` reconnects by itself and sends \
`Last-Event-ID` (the last `id:` it saw); other clients send the same header or `?after=`. \
The stream continues exactly after that event: no gap, no duplicate.

**Errors.** A failure before the stream opens is a JSON error answer (4xx/5xx). A failure \
in the middle is an event named `{ERROR_EVENT}` whose data is the error body, with no `id:` \
(the resume point stays), after which the stream ends; the name is not `error`, which \
`EventSource` uses for its own connection errors.

**Browsers.** `EventSource` cannot send `Authorization`: pass `?access_token=<JWT>` (the \
token never reaches a log line)."""

MEETING_EVENTS = f"""\
Events: {_names(EVENT_NAMES)}; `data` is a `TranscriptEvent` and `id` its `sequence` in the \
meeting's log.

**Segments are sent more than once.** A segment is sent when it is recognized, again when \
a partial becomes final, and again when speakers are assigned (diarization) or a retried \
job redoes it. Every version carries the same `segment.segmentId`: upsert by it, never \
append.

**Lifetime.** The stream ends after the meeting's final `status` event (`statusChange.status` \
MEETING_STATUS_COMPLETED or MEETING_STATUS_FAILED) or after its `deleted` event. A request \
whose resume point is at or after the final event of an ended meeting is answered \
**204 No Content**, which makes an `EventSource` stop for good (`readyState` CLOSED, no \
reconnect)."""

USER_EVENTS = f"""\
One connection follows every meeting of the caller, so a page listing meetings needs no \
stream per meeting. Events: {_names(USER_EVENT_NAMES)}; `data` is a `UserEvent`. A `meeting` \
event carries the meeting just after it was created or changed (status, title, language, \
expected speakers, failure reason, recording); a `deleted` event names a deleted meeting. \
`id` is the event's `sequence` in the caller's own feed (numbered per user from 1), so \
`Last-Event-ID` resumes across all meetings at once; the earlier events of a meeting \
deleted since are left out, its `deleted` event stands for them. Segments are not on this \
stream: follow one meeting's `/events` for its transcript.

**Lifetime.** The stream stays open (with heartbeats) until the client leaves or the \
gateway stops; it never answers 204."""

LIVE = f"""\
**WebSocket.** The upgrade is always accepted; every refusal is a close code with a reason \
that a page can read (a refused upgrade would only show close code 1006).

**Authentication.** `Authorization: Bearer <JWT>`, or `?access_token=<JWT>`, or (for a \
browser, whose WebSocket cannot send headers) the first text frame \
`{{"type": "auth", "token": "<JWT>"}}`, sent within {AUTH_FRAME_WAIT_S:g} s of the upgrade.

**Frames in.** Binary frames of raw 16-bit little-endian mono PCM at `sample_rate` (16 kHz \
unless it says otherwise; the service decides what it accepts). The text frame \
`{{"type": "end"}}` says the audio is over; the service then sends its last events and \
closes with 1000. Any other text frame closes with 1003.

**Frames out.** Text frames, each a `TranscriptEvent` JSON with `"event"` added, its name \
as on the SSE stream ({_names(EVENT_NAMES)}). Partial segments (`final: false`) are replaced \
by later versions with the same `segmentId`: upsert by it.

**Close codes.** 1000 normal end; 1001 the gateway is stopping; 1003 a frame the protocol \
does not allow; otherwise the close code of the error's reason in the error table, after a \
last text frame holding the JSON error body. The close reason is `<gRPC code>: <message>`, \
cut to the 123 bytes a close frame holds. The codes a session most often ends with:

{_CLOSE_CODES}

**Lifetime.** The session ends when the client sends `{{"type": "end"}}` (or closes), when \
the service ends it, or when the gateway stops; the meeting then goes on to be processed \
like an upload."""
