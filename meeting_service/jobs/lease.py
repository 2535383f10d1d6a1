"""A worker's lease on a job, which is also the fence on every write the job makes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from meeting_service.jobs.repository import JobsRepository


@dataclass(frozen=True)
class Lease:
    """A worker's hold on a job; calling it checks the hold inside a writing transaction.

    It is a `TranscriptWriter` fence as it is: frozen, so equal leases compare equal and a
    group commit holding several segments of one job checks it once.

    Attributes:
        job_id: The job.
        worker: The worker that must hold it.
    """

    job_id: uuid.UUID
    worker: str

    async def __call__(self, conn: asyncpg.Connection) -> None:
        """Passes only while `worker` holds the job (see `JobsRepository.check_lease`).

        Raises:
            JobLost: The job was taken over or deleted.
        """
        await JobsRepository().check_lease(conn, self.job_id, self.worker)
