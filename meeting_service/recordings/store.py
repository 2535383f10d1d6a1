"""Where a recording's bytes are kept: one interface, a PostgreSQL and an S3 implementation.

Progress (how many bytes are durably stored, what was declared) always lives in the
`uploads` table; a store keeps the bytes. A stream writes through a `RecordingWriter`,
which tells after each write how many bytes are durable: only those are ever reported to
a client, so a dropped upload resumes after them. Once complete, a recording is read by
ranges (`read_at`, the `ReadAt` of `recording_file.RecordingFile`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Protocol

import asyncpg

from meeting_service.recordings.recording_file import ReadAt
from meeting_service.recordings.repository import UploadRow, UploadsRepository


class RecordingWriter(Protocol):
    """Stores one stream's bytes after those already stored."""

    async def append(self, data: bytes) -> int | None:
        """Adds bytes after the ones received so far.

        Returns:
            The durable stored size afterwards (it may lag the bytes received), or None
            when another stream moved the upload on, or the meeting was deleted: the
            writer is finished.
        """
        ...

    async def complete(self, header: bytes = b"") -> int:
        """Stores the bytes still held and makes the recording readable by `read_at`.

        Args:
            header: New first bytes of the recording (a file header whose length field
                is only known at the end); b"" keeps them.

        Returns:
            The recording's size.
        """
        ...

    async def durable(self) -> int | None:
        """Waits until every byte the writer stored is counted in the `uploads` row.

        Returns:
            The durable stored size, or None when another stream moved the upload on, or
            the meeting was deleted (the last bytes were not counted).
        """
        ...

    async def keep_held(self) -> int | None:
        """Makes every byte received durable without completing the recording.

        For a stream whose bytes are not sent again when it is resumed (a live session's):
        the next writer continues after them.

        Returns:
            The durable stored size, or None when another stream moved the upload on, or
            the meeting was deleted.
        """
        ...

    async def end(self) -> int | None:
        """Ends a stream that did not complete the recording; bytes not yet durable are dropped.

        Bytes already stored whose count is still being committed are waited for.

        Returns:
            The durable stored size, where the next stream continues, or None when
            another stream moved the upload on, or the meeting was deleted.
        """
        ...


class RecordingStore(Protocol):
    """Keeps the bytes of recordings."""

    def writer(
        self,
        upload: UploadRow,
        *,
        keeps_start: bool = False,
        counts_behind: bool = False,
        sends_once: bool = False,
    ) -> RecordingWriter:
        """A writer continuing `upload` at its stored size.

        Args:
            upload: The upload's progress, as its stream began.
            keeps_start: The writer will be asked to rewrite the first bytes at
                completion (`complete(header=...)`).
            counts_behind: A stored piece may be counted while the next one is gathered
                (`append` then returns before that commit; `durable` waits for it), and
                a count that fails finishes the writer. Without it, `append` counts what
                it stored before it returns, and a failed count leaves the bytes to be
                handed in again. For a stream that ends when its caller does (an upload);
                a live recording, which outlives failures, keeps it off.
            sends_once: The stream sends nothing twice (a live recording's): `append`
                makes its bytes durable before it returns, and `keep_held` stores what
                the store holds back, or leaves it durable where it is while the store
                cannot take it (with S3: staged in PostgreSQL, the part tried again by a
                later call).
        """
        ...

    async def read_at(self, meeting_id: uuid.UUID, offset: int) -> tuple[int, bytes] | None:
        """Reads a span of a complete recording from `offset` on.

        Returns:
            (the span's first byte offset, its bytes), or None past the end.
        """
        ...

    async def delete(self, meeting_id: uuid.UUID) -> None:
        """Deletes whatever the store keeps of a recording outside the `uploads` rows."""
        ...

    async def sweep(self) -> int:
        """Gives up uploads abandoned for longer than the store allows; returns how many."""
        ...

    async def close(self) -> None:
        """Releases the store's connections."""
        ...


def reader(store: RecordingStore, meeting_id: uuid.UUID) -> ReadAt:
    """`read_at` bound to one recording: the `ReadAt` that `RecordingFile` takes."""

    async def read_at(offset: int) -> tuple[int, bytes] | None:
        return await store.read_at(meeting_id, offset)

    return read_at


async def iter_spans(read_at: ReadAt) -> AsyncIterator[bytes]:
    """Reads a recording back in order, one span in memory at a time."""
    offset = 0
    while (span := await read_at(offset)) is not None:
        start, data = span
        offset = start + len(data)
        yield data


class PostgresStore:
    """Recordings in `audio_chunks` rows (`UploadsRepository`), each chunk committed on arrival."""

    def __init__(self, pool: asyncpg.Pool, uploads: UploadsRepository) -> None:
        self._pool = pool
        self._uploads = uploads

    def writer(  # noqa: D102
        self,
        upload: UploadRow,
        *,
        keeps_start: bool = False,
        counts_behind: bool = False,
        sends_once: bool = False,
    ) -> RecordingWriter:
        return _PostgresWriter(self._pool, self._uploads, upload)

    async def read_at(self, meeting_id: uuid.UUID, offset: int) -> tuple[int, bytes] | None:  # noqa: D102
        return await self._uploads.read_at(self._pool, meeting_id, offset)

    async def delete(self, meeting_id: uuid.UUID) -> None:
        """Nothing to do: the rows go with the upload's and the meeting's."""

    async def sweep(self) -> int:
        """Nothing to give up: every stored chunk is part of its upload's progress."""
        return 0

    async def close(self) -> None:
        """Nothing to release: the pool belongs to the service."""


class _PostgresWriter:
    def __init__(self, pool: asyncpg.Pool, uploads: UploadsRepository, upload: UploadRow) -> None:
        self._pool = pool
        self._uploads = uploads
        self._mid = upload.meeting_id
        self._stored = upload.stored_size

    async def append(self, data: bytes) -> int | None:
        async with self._pool.acquire() as conn, conn.transaction():
            # Not yet told to anyone: made durable by the next commit that is
            # (the upload's end, its completion or its rejection; see `uploads`).
            size = await self._uploads.append_chunk(
                conn, self._mid, self._stored, data, wait_for_disk=False
            )
        if size is not None:
            self._stored = size
        return size

    async def complete(self, header: bytes = b"") -> int:
        if header:
            await self._uploads.rewrite_start(self._pool, self._mid, header)
        return self._stored

    async def durable(self) -> int | None:
        return self._stored

    async def keep_held(self) -> int | None:
        return self._stored  # nothing is held: every append is stored

    async def end(self) -> int | None:
        return self._stored
