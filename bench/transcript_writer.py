"""Writing transcript events from the bench process, with meeting_service's own code.

The pipeline writes segments through `TranscriptWriter` inside meeting_service; the
benchmarks call the same class over their own pool to the same database, exactly as a
second replica would. Every write NOTIFYs on commit, so meeting_service's event hub (in its
own process) announces it to its subscribers as it would a pipeline write.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from google.protobuf import duration_pb2

from gen.meeting.v1 import meeting_pb2
from meeting_service.transcripts.repository import EventsRepository
from meeting_service.transcripts.writer import TranscriptWriter


@asynccontextmanager
async def transcript_writer(dsn: str) -> AsyncIterator[tuple[TranscriptWriter, asyncpg.Pool]]:
    """meeting_service's writer over a pool of this process's own.

    Yields:
        (writer, pool).
    """
    async with asyncpg.create_pool(dsn, min_size=1, max_size=4) as pool:
        yield TranscriptWriter(pool, EventsRepository()), pool


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(round(seconds * 1e9))
    return value


def segment(index: int) -> meeting_pb2.Segment:
    """A realistic final segment: a dozen words with timings, about 3 s long."""
    start = index * 3.0
    words = ["so", "the", "quarterly", "numbers", "look", "better"]
    words += ["than", "we", "planned", "for", "this", "time"]
    result = meeting_pb2.Segment(
        index=index,
        text=" ".join(words),
        speaker=f"SPEAKER_{index % 2 + 1}",
        confidence=0.91,
        final=True,
        language="en",
    )
    result.start_offset.CopyFrom(_duration(start))
    result.end_offset.CopyFrom(_duration(start + 2.9))
    for number, word in enumerate(words):
        item = result.words.add(text=word, confidence=0.9)
        item.start_offset.CopyFrom(_duration(start + number * 0.22))
        item.end_offset.CopyFrom(_duration(start + number * 0.22 + 0.2))
    return result


def meeting_uuid(meeting_id: str) -> uuid.UUID:
    """The UUID of a meeting id as the API returns it."""
    return uuid.UUID(meeting_id)
