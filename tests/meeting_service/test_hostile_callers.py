"""A caller with a signed but unusable identity is UNAUTHENTICATED, never INTERNAL."""

from __future__ import annotations

import grpc
import pytest

from gen.meeting.v1 import meeting_service_pb2, meeting_service_pb2_grpc
from tests.support.meeting import make_token


async def test_a_signed_token_whose_subject_holds_a_nul_is_unauthenticated(
    meeting_stub: meeting_service_pb2_grpc.MeetingServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await meeting_stub.ListMeetings(
            meeting_service_pb2.ListMeetingsRequest(),
            metadata=(("authorization", f"Bearer {make_token('ali\x00ce')}"),),
        )
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
