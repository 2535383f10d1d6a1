"""SearchTranscripts over real gRPC and PostgreSQL: ranking, snippets, filters, pages,
scoping, stemming by language, and partial segments."""

from __future__ import annotations

import uuid

import asyncpg
import grpc
import pytest

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, search_pb2
from meeting_service.server import RunningMeetingService
from meeting_service.transcripts.search_repository import SearchFilters, SearchRepository
from tests.meeting_service.helpers import Stub, user
from tests.support.meeting import auth, error_reason
from tests.support.transcripts import change_status


def _segment(
    index: int, text: str, *, speaker: str = "", final: bool = True
) -> meeting_pb2.Segment:
    segment = meeting_pb2.Segment(index=index, text=text, speaker=speaker, final=final)
    segment.start_offset.FromMilliseconds(index * 2000 + 500)
    segment.end_offset.FromMilliseconds(index * 2000 + 1500)
    return segment


async def _meeting(
    stub: Stub,
    service: RunningMeetingService,
    owner: str,
    texts: list[str],
    *,
    language: str = "en",
    title: str = "meeting",
    speakers: list[str] | None = None,
) -> meeting_pb2.Meeting:
    created = await stub.CreateMeeting(
        meeting_service_pb2.CreateMeetingRequest(
            meeting=meeting_pb2.Meeting(title=title, language=language)
        ),
        metadata=auth(owner),
    )
    segments = [
        _segment(i, text, speaker=(speakers[i] if speakers else "")) for i, text in enumerate(texts)
    ]
    await service.services.processing.writer.submit(uuid.UUID(created.meeting.id), segments)
    meeting: meeting_pb2.Meeting = created.meeting
    return meeting


async def _search(
    stub: Stub, owner: str, query: str, **fields: object
) -> search_pb2.SearchTranscriptsResponse:
    request = search_pb2.SearchTranscriptsRequest(query=query, **fields)  # type: ignore[arg-type]
    response: search_pb2.SearchTranscriptsResponse = await stub.SearchTranscripts(
        request, metadata=auth(owner)
    )
    return response


def _keys(response: search_pb2.SearchTranscriptsResponse) -> list[tuple[str, int]]:
    return [(h.meeting_id, h.segment_index) for h in response.hits]


async def _all_pages(
    stub: Stub, owner: str, query: str, page_size: int
) -> list[search_pb2.SearchHit]:
    hits: list[search_pb2.SearchHit] = []
    token = ""
    while True:
        page = await _search(stub, owner, query, page_size=page_size, page_token=token)
        hits += page.hits
        token = page.next_page_token
        if not token:
            return hits


async def test_a_better_match_ranks_first_with_its_time_speaker_and_meeting(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner = user()
    loose = await _meeting(
        meeting_stub,
        meeting_service,
        owner,
        ["the budget was late again and nobody wrote the quarterly review"],
        title="loose",
    )
    close = await _meeting(
        meeting_stub,
        meeting_service,
        owner,
        ["hello everyone", "let us start the budget review now"],
        title="close",
        speakers=["SPEAKER_1", "SPEAKER_2"],
    )
    await _meeting(meeting_stub, meeting_service, owner, ["nothing relevant here"])

    response = await _search(meeting_stub, owner, "budget review")

    assert _keys(response) == [(close.id, 1), (loose.id, 0)]
    best = response.hits[0]
    assert best.score > response.hits[1].score
    assert best.meeting_title == "close"
    assert best.meeting_status == meeting_pb2.MEETING_STATUS_AWAITING_AUDIO
    assert best.meeting_create_time == close.create_time
    assert best.segment_id == f"{close.id}:1"
    assert best.speaker == "SPEAKER_2"
    assert best.start_offset.ToMilliseconds() == 2500
    assert best.end_offset.ToMilliseconds() == 3500
    assert response.next_page_token == ""


async def test_snippets_mark_the_matched_words(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner = user()
    await _meeting(
        meeting_stub,
        meeting_service,
        owner,
        ["We agreed that the Budgets for marketing are frozen until March"],
    )

    (hit,) = (await _search(meeting_stub, owner, "budget march")).hits

    assert hit.snippet == "We agreed that the Budgets for marketing are frozen until March"
    marked = [hit.snippet[span.start : span.end] for span in hit.highlights]
    assert marked == ["Budgets", "March"]


async def test_words_are_matched_by_their_english_stem(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner = user()
    english = await _meeting(
        meeting_stub, meeting_service, owner, ["the meeting is planned"], language="en-GB"
    )

    for query in ("meetings", "meeting", "plan", "planning"):
        assert _keys(await _search(meeting_stub, owner, query)) == [(english.id, 0)], query
    # English stop words are not indexed, so they find nothing on their own.
    assert _keys(await _search(meeting_stub, owner, "the")) == []


async def test_a_language_without_configuration_is_searched_word_for_word(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner = user()
    unknown = await _meeting(
        meeting_stub, meeting_service, owner, ["the meeting is planned"], language="zz"
    )

    assert _keys(await _search(meeting_stub, owner, "meeting")) == [(unknown.id, 0)]
    assert _keys(await _search(meeting_stub, owner, "meetings")) == []
    assert _keys(await _search(meeting_stub, owner, "the")) == [(unknown.id, 0)]


async def test_german_meetings_are_stemmed_in_german(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner = user()
    german = await _meeting(
        meeting_stub, meeting_service, owner, ["Wir besprechen die Haushalte"], language="de"
    )

    assert _keys(await _search(meeting_stub, owner, "Haushalt")) == [(german.id, 0)]


async def test_web_search_syntax_phrases_and_exclusions(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner = user()
    meeting = await _meeting(
        meeting_stub,
        meeting_service,
        owner,
        ["release the new version", "version of the release notes", "release party"],
    )

    assert _keys(await _search(meeting_stub, owner, '"release notes"')) == [(meeting.id, 1)]
    assert sorted(_keys(await _search(meeting_stub, owner, "release -version"))) == [
        (meeting.id, 2)
    ]


async def test_filters_by_date_status_and_speaker(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner = user()
    first = await _meeting(
        meeting_stub,
        meeting_service,
        owner,
        ["roadmap for the year", "roadmap details"],
        speakers=["SPEAKER_1", "SPEAKER_2"],
    )
    second = await _meeting(
        meeting_stub, meeting_service, owner, ["roadmap again"], speakers=["SPEAKER_1"]
    )
    await change_status(
        meeting_service.services, uuid.UUID(second.id), meeting_pb2.MEETING_STATUS_COMPLETED
    )
    since = await _search(meeting_stub, owner, "roadmap", created_after=second.create_time)
    assert {h.meeting_id for h in since.hits} == {second.id}
    before = await _search(meeting_stub, owner, "roadmap", created_before=second.create_time)
    assert {h.meeting_id for h in before.hits} == {first.id}
    completed = await _search(
        meeting_stub, owner, "roadmap", statuses=[meeting_pb2.MEETING_STATUS_COMPLETED]
    )
    assert {h.meeting_id for h in completed.hits} == {second.id}
    spoken = await _search(meeting_stub, owner, "roadmap", speaker="SPEAKER_2")
    assert _keys(spoken) == [(first.id, 1)]
    both = await _search(
        meeting_stub,
        owner,
        "roadmap",
        speaker="SPEAKER_1",
        statuses=[meeting_pb2.MEETING_STATUS_AWAITING_AUDIO],
    )
    assert _keys(both) == [(first.id, 0)]


async def test_pages_cover_every_hit_once_in_rank_order(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner = user()
    # Many equal ranks: the page boundaries fall inside runs of ties.
    for _ in range(5):
        texts = [f"status update number {i}" for i in range(4)]
        texts.append("status update status update, the status of the update")
        await _meeting(meeting_stub, meeting_service, owner, texts)

    everything = await _search(meeting_stub, owner, "status update", page_size=100)
    paged = await _all_pages(meeting_stub, owner, "status update", page_size=3)

    assert len(everything.hits) == 25
    assert [(h.meeting_id, h.segment_index) for h in paged] == _keys(everything)
    scores = [h.score for h in paged]
    assert scores == sorted(scores, reverse=True)


async def test_a_meeting_deleted_between_pages_does_not_break_paging(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner = user()
    meetings = [
        await _meeting(meeting_stub, meeting_service, owner, ["quarterly planning"] * 3)
        for _ in range(4)
    ]
    first = await _search(meeting_stub, owner, "planning", page_size=4)
    seen = _keys(first)
    unseen_meetings = {m.id for m in meetings} - {mid for mid, _ in seen}
    doomed = sorted(unseen_meetings)[0]
    await meeting_stub.DeleteMeeting(
        meeting_service_pb2.DeleteMeetingRequest(meeting_id=doomed), metadata=auth(owner)
    )

    token = first.next_page_token
    while token:
        page = await _search(meeting_stub, owner, "planning", page_size=4, page_token=token)
        seen += _keys(page)
        token = page.next_page_token

    expected = {(m.id, i) for m in meetings if m.id != doomed for i in range(3)}
    assert len(seen) == len(set(seen))
    assert set(seen) == expected


async def test_another_callers_meetings_never_appear(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner, other = user(), user()
    mine = await _meeting(meeting_stub, meeting_service, owner, ["secret merger plans"] * 3)
    await _meeting(meeting_stub, meeting_service, other, ["secret merger plans"] * 3)

    response = await _search(meeting_stub, owner, "merger", page_size=2)
    rest = await _search(
        meeting_stub, owner, "merger", page_size=2, page_token=response.next_page_token
    )
    assert {h.meeting_id for h in [*response.hits, *rest.hits]} == {mine.id}
    assert rest.next_page_token == ""

    for caller, query in ((other, "merger"), (owner, "plans")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _search(
                meeting_stub, caller, query, page_size=2, page_token=response.next_page_token
            )
        code, reason, _ = error_reason(caught.value)
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")


async def test_partial_segments_are_not_found_until_their_final_version(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner = user()
    meeting = await _meeting(meeting_stub, meeting_service, owner, [])
    mid = uuid.UUID(meeting.id)
    writer = meeting_service.services.processing.writer

    await writer.append_segment(mid, _segment(0, "wrong hypothesis kangaroo", final=False))
    assert _keys(await _search(meeting_stub, owner, "kangaroo")) == []

    await writer.append_segment(mid, _segment(0, "right words koala"))
    assert _keys(await _search(meeting_stub, owner, "kangaroo")) == []
    assert _keys(await _search(meeting_stub, owner, "koala")) == [(meeting.id, 0)]

    # Diarization sends the segment again with its speaker.
    await writer.append_segment(mid, _segment(0, "right words koala", speaker="SPEAKER_3"))
    labelled = await _search(meeting_stub, owner, "koala", speaker="SPEAKER_3")
    assert [h.speaker for h in labelled.hits] == ["SPEAKER_3"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "a" * 501}, "query"),
        ({"query": "x", "page_size": 101}, "page_size"),
        ({"query": "x", "speaker": "s\0"}, "speaker"),
    ],
)
async def test_invalid_requests_name_the_field(
    meeting_stub: Stub, fields: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await meeting_stub.SearchTranscripts(
            search_pb2.SearchTranscriptsRequest(**fields),  # type: ignore[arg-type]
            metadata=auth(user()),
        )
    code, reason, metadata = error_reason(caught.value)
    assert (code, reason, metadata["field"]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
        field,
    )


async def test_every_search_is_planned_for_its_own_words(
    meeting_stub: Stub, meeting_service: RunningMeetingService, database_url: str
) -> None:
    # After five runs of a prepared statement PostgreSQL may keep a generic plan, made
    # without the parameters' values: it cannot see the words, and a word found in a third
    # of 220,000 segments took about 1.2 s instead of 0.2 s (docs/search.md).
    owner = user()
    found = await _meeting(meeting_stub, meeting_service, owner, ["the budget review is due"])
    repository = SearchRepository()
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(8):
            hits = await repository.search(
                conn,
                owner=owner,
                query="budget review",
                filters=SearchFilters(),
                after=None,
                limit=20,
            )
            assert [(str(h.meeting_id), h.segment_index) for h in hits] == [(found.id, 0)]
        prepared = await conn.fetch(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
        )
    finally:
        await conn.close()
    plans = [(p["generic_plans"], p["custom_plans"]) for p in prepared if "ts_rank_cd(" in p[0]]
    assert plans == [(0, 8)]
