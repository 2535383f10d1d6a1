"""Finalising LIVE meetings whose stream dropped and was not resumed within the grace.

Any replica sweeps: the meeting's row lock orders it with a resuming call and with the
other replicas' sweeps, and the lease says whether the last session recognized all the
audio it stored (released cleanly: the job starts at diarization) or not (its replica
stopped or died: the job transcribes the recording again). See docs/live.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from gen.meeting.v1 import meeting_pb2
from meeting_service.db.database import CONNECTION_ERRORS
from meeting_service.live.session import LiveParts, finalise_released
from meeting_service.recordings.live_recording import LiveRecording
from mesh_common.logging import logger

BATCH = 16


class LiveSweeper:
    """Looks for abandoned LIVE meetings every half lease and completes their recordings.

    Args:
        parts: What live sessions use (the grace and lease times among them).
    """

    def __init__(self, parts: LiveParts) -> None:
        self._parts = parts
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Starts sweeping in the background."""
        self._task = asyncio.create_task(self._loop(), name="live-sweeper")

    async def stop(self) -> None:
        """Stops sweeping."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def sweep(self) -> int:
        """Completes the recordings of the meetings abandoned now.

        Returns:
            How many meetings this call finalised.
        """
        parts = self._parts
        done = 0
        for mid in await parts.leases.abandoned(parts.pool, parts.grace_s, BATCH):
            try:
                if await self._finalise(mid):
                    done += 1
            except CONNECTION_ERRORS:
                raise
            except Exception:
                # One meeting that cannot be finalised must not hold the others back.
                logger.bind(meeting_id=str(mid)).exception("finalising a live meeting failed")
        return done

    async def _finalise(self, mid: uuid.UUID) -> bool:
        parts = self._parts
        async with parts.pool.acquire() as conn, conn.transaction():
            row = await parts.meetings.get(conn, mid, for_update=True)
            # A call may have resumed it, or another replica finalised it, since the query.
            if row is None or row.status != meeting_pb2.MEETING_STATUS_LIVE:
                return False
            if not await parts.leases.is_abandoned(conn, mid, parts.grace_s):
                return False
            recording = LiveRecording(parts.pool, parts.uploads, parts.store, parts.completion, mid)
            await recording.resume(conn)
            event = await finalise_released(parts, conn, mid, recording)
            clean = event.status_change.status == meeting_pb2.MEETING_STATUS_DIARIZING
        parts.completion.queued()
        logger.bind(meeting_id=str(mid), clean=clean).info(
            "live meeting not resumed within the grace; job queued"
        )
        return True

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._parts.lease_s / 2)
            try:
                await self.sweep()
            except CONNECTION_ERRORS as error:
                logger.bind(error=repr(error)).warning("could not sweep live meetings")
            except Exception:
                logger.exception("sweeping live meetings failed")
