"""Hostile JSON against the gateway's decoder: whatever the bytes, the only failure is the
400 INVALID_FIELD error, never another exception (which the gateway would answer 500)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract_errors.meeting import MeetingError
from gateway.jsonpb import decode_json, merge_json, non_negative_int
from gen.meeting.v1 import meeting_service_pb2

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(st.characters(codec=None)),  # lone surrogates included
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["title", "expectedSpeakers", "x", "\x00"]), children)
    ),
    max_leaves=20,
)


@st.composite
def _deep(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(1, 5000))
    opener = draw(st.sampled_from([b"[", b'{"title":', b'{"a":[']))
    closed = draw(st.booleans())
    inner = draw(st.sampled_from([b"1", b'"x"', b"", b"{}"]))
    closer = {b"[": b"]", b'{"title":': b"}", b'{"a":[': b"]}"}[opener]
    return opener * depth + inner + (closer * depth if closed else b"")


@st.composite
def _huge_number(draw: st.DrawFn) -> bytes:
    digits = b"9" * draw(st.integers(1, 6000))
    shape = draw(st.sampled_from([b"%s", b"-%s", b"0.%s", b"%se5", b"1e%s", b'{"pageSize":%s}']))
    return shape.replace(b"%s", digits)


@st.composite
def _documents(draw: st.DrawFn) -> bytes:
    text = json.dumps(draw(_json_values))  # NaN and Infinity too, as Python writes them
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "utf-32", "latin-1"]))
    return text.encode(encoding, errors="surrogatepass")


_hostile = (
    st.binary(max_size=512)
    | _deep()
    | _huge_number()
    | _documents()
    | st.binary(max_size=64).map(lambda junk: b'{"title": "' + junk + b'"}')  # bad UTF-8
)


def _assert_only_400(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except MeetingError as error:
        assert error.view().http_status == 400
        assert error.view().details[0]["reason"] == "INVALID_FIELD"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_hostile)
def test_the_decoder_and_the_merge_only_ever_refuse_with_400(raw: bytes) -> None:
    def decode_and_merge(raw: bytes) -> None:
        value = decode_json(raw)
        merge_json(value, meeting_service_pb2.CreateMeetingRequest(), "body")
        merge_json(value, meeting_service_pb2.ListMeetingsRequest(), "query")

    _assert_only_400(decode_and_merge, raw)


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(codec=None), max_size=32) | st.just("9" * 5001))
def test_integer_parameters_only_ever_refuse_with_400(text: str) -> None:
    _assert_only_400(non_negative_int, text, "offset")
