"""`ingest`: transcript segments stored and announced per second, vs. raw COPY.

Segments are written one per transaction with meeting_service's `TranscriptWriter` (how the
pipeline stores each segment as the engine yields it), while a StreamTranscript subscriber
on meeting_service counts them arriving: the rate is segments over the time until the last
one was announced. The reference COPYs the same rows (the `events` and `segments` rows of
every segment) into the same tables with asyncpg's binary COPY in one transaction.
"""

from __future__ import annotations

import asyncio
import time

import grpc

from bench.context import BenchContext
from bench.model import Check, Result, ratio
from bench.transcript_writer import meeting_uuid, segment, transcript_writer
from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, meeting_service_pb2_grpc


async def _create(
    stub: meeting_service_pb2_grpc.MeetingServiceStub, metadata: tuple[tuple[str, str], ...]
) -> str:
    response = await stub.CreateMeeting(
        meeting_service_pb2.CreateMeetingRequest(meeting=meeting_pb2.Meeting(title="ingest")),
        metadata=metadata,
        timeout=10,
    )
    return str(response.meeting.id)


async def ingest(context: BenchContext) -> Result:
    """Segments through TranscriptWriter + announcement vs. COPY of the same rows."""
    count = 300 if context.quick else 2000
    metadata = (("authorization", context.authorization()),)
    segments = [segment(i) for i in range(count)]
    dsn = await context.new_database()
    async with (
        context.service("meeting", database_url=dsn) as meeting,
        grpc.aio.insecure_channel(meeting.address) as channel,
        transcript_writer(dsn) as (writer, pool),
    ):
        stub = meeting_service_pb2_grpc.MeetingServiceStub(channel)
        meeting_id = await _create(stub, metadata)
        mid = meeting_uuid(meeting_id)
        base = int(await pool.fetchval("SELECT last_sequence FROM meetings WHERE id = $1", mid))
        call = stub.StreamTranscript(
            meeting_service_pb2.StreamTranscriptRequest(meeting_id=meeting_id, after_sequence=base),
            metadata=metadata,
        )
        # The subscription is live once the first event (written before timing) arrives.
        await writer.append_segment(mid, segments[0])
        first = await asyncio.wait_for(call.read(), 30)
        assert isinstance(first, meeting_service_pb2.StreamTranscriptResponse)
        if not first.event.HasField("segment") or first.event.segment.index != 0:
            raise RuntimeError(f"unexpected first event: {first}")
        started = time.perf_counter()

        async def announced() -> int:
            received = 0
            while isinstance(
                response := await call.read(), meeting_service_pb2.StreamTranscriptResponse
            ):
                received += 1
                if response.event.segment.index == count - 1:
                    break
            return received

        counting = asyncio.create_task(announced())
        for item in segments[1:]:
            await writer.append_segment(mid, item)
        stored = time.perf_counter() - started
        received = await asyncio.wait_for(counting, 120)
        elapsed = time.perf_counter() - started
        call.cancel()

        reference_id = meeting_uuid(await _create(stub, metadata))
        reference_base = int(
            await pool.fetchval("SELECT last_sequence FROM meetings WHERE id = $1", reference_id)
        )
        events, rows = [], []
        for sequence, item in enumerate(segments, start=reference_base + 1):
            stored_segment = meeting_pb2.Segment()
            stored_segment.CopyFrom(item)
            stored_segment.segment_id = f"{reference_id}:{item.index}"
            stored_segment.sequence = sequence
            payload = stored_segment.SerializeToString()
            events.append((reference_id, sequence, "segment", payload))
            rows.append((reference_id, item.index, sequence, payload))
        copy_started = time.perf_counter()
        async with pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(
                "events", records=events, columns=["meeting_id", "sequence", "kind", "payload"]
            )
            await conn.copy_records_to_table(
                "segments",
                records=rows,
                columns=["meeting_id", "segment_index", "sequence", "payload"],
            )
        copy_s = time.perf_counter() - copy_started
    written = count - 1
    rate = round(written / elapsed, 1)
    reference = round(count / copy_s, 1)
    share = ratio(rate, reference)
    return Result(
        name="ingest",
        value=rate,
        unit="segments/s",
        reference=reference,
        ratio=share,
        goal=">= 0.5x COPY",
        met=(share or 0) >= 0.5 and received == written,
        checks=[Check("rate vs COPY", f"{share}", ">= 0.5", (share or 0) >= 0.5)],
        details={
            "segments": written,
            "announced": received,
            "store_only_rate": round(written / stored, 1),
            "announce_lag_ms": round((elapsed - stored) * 1000, 1),
            "copy_rows": 2 * count,
            "writes": "one segment per transaction (TranscriptWriter.append_segment)",
            "postgres": "embedded, durable (fsync on)",
        },
        limits=(
            "round trips and commits: each segment costs one transaction of four statements "
            "(sequence UPDATE, segment upsert, event INSERT, pg_notify) and one durable "
            "commit, where COPY streams every row in one statement and one commit."
        ),
    )
