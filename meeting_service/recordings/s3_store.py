"""Recordings in S3-compatible object storage, one object per recording.

A recording is received as a multipart upload whose parts are written as the bytes
arrive: a writer holds at most one part (`part_bytes`, at least the 5 MiB S3 asks of
every part but the last) before it stores it, so memory stays flat whatever the size.
Each stored part is counted in PostgreSQL (`uploads.stored_size`, its ETag in
`uploads.part_etags`, the upload's id in `uploads.object_upload_id`) only after S3 has
it, so the size a client is told is what S3 durably holds; bytes held in memory when an
upload stream drops are sent again by the resumed stream. A part that S3 stored but PostgreSQL
never counted is replaced when the resumed stream stores the same part number. An
upload stream's writer (`counts_behind`) commits a part's count while the stream fills
the next part (`RecordingWriter.durable` waits for it): S3 still gets one part at a time,
and the commit is off its path. Each part carries its CRC32, summed as its bytes arrive,
which S3 checks.

A recording smaller than one part is stored with one PUT at completion. A writer asked
to rewrite the recording's first bytes (`keeps_start`: the live recording's WAV header,
whose length is known at the end) keeps a copy of the first part, in memory and as the
piece `<key>.head` beside the upload, and stores it again with the new header before
completing: one part's memory more, no copy of the object. A live stream sends nothing
twice, so its bytes below one part must outlive its process: its writer (`sends_once`)
stages every append in PostgreSQL, as `audio_chunks` rows counted in
`uploads.staged_size`, until the part that holds them is stored and counted (which
deletes the rows in the same statement), and the writer of the resumed stream reads them
back first. Its full parts are stored by `keep_held`, which leaves a part staged while
S3 cannot take it and tries again later, so the stream goes on through an outage of the
store. (An older version staged the bytes only when the stream stopped, as one piece,
`<key>.tail-<stored size>`; such a piece is still read back.) Pieces go with the
completion and with the meeting.

Multipart uploads nobody has written to for `abandoned_after_s` are aborted by `sweep`,
and their recordings start again from offset 0. Reads are ranged GETs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import socket
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError
from botocore.handlers import add_expect_header

from contract_errors.meeting import not_found, written_by_another_stream
from meeting_service.recordings.repository import UploadRow, UploadsRepository
from meeting_service.recordings.store import RecordingWriter
from mesh_common.logging import logger

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager

    from aiohappyeyeballs import AddrInfoType
    from types_aiobotocore_s3 import S3Client

# What the object storage raises when a request cannot be done: unreachable (after the
# client's own retries), refusing, failing. Callers report the storage as unavailable
# (the bytes already counted are kept); the details go to the log.
S3_ERRORS: tuple[type[Exception], ...] = (BotoCoreError, ClientError)
MIN_PART_BYTES = 5 * 1024 * 1024  # S3's floor for every part but the last
# Parts' worth of bytes a live stream holds (in memory, staged in PostgreSQL) while the
# object storage does not take its part; then it takes no more audio.
HELD_PARTS = 4
PART_RETRY_S = 10.0  # between a live stream's tries to store a part the store refused
SPAN_BYTES = 1024 * 1024  # one ranged GET
HEAD = ".head"  # key suffix of a live recording's first part, kept to rewrite its header


def tail_piece(stored_size: int) -> str:
    """The key suffix of the bytes an older version staged in S3, up to `stored_size`."""
    return f".tail-{stored_size}"


@dataclass(frozen=True)
class S3Options:
    """Where and how recordings are stored.

    Attributes:
        bucket: The bucket (it must exist).
        endpoint: The server's URL; "" for AWS's endpoint of `region`.
        region: The region requests are signed for.
        path_style: Address the bucket in the path (most S3-compatible servers)
            rather than in the host name.
        prefix: Start of every object key.
        part_bytes: Size of the parts of a multipart upload (the last may be smaller).
        abandoned_after_s: Age after which an upload nobody writes to is aborted.
        timeout_s: Longest wait to connect, for each read of an answer and for sent
            bytes to be acknowledged (botocore's defaults are 60 s, and nothing bounds
            a send).
        access_key_id: Credentials; None uses the standard AWS chain (`AWS_*`
            variables, the shared credentials file, an instance or pod role).
        secret_access_key: Its secret.
    """

    bucket: str
    endpoint: str = ""
    region: str = "us-east-1"
    path_style: bool = False
    prefix: str = "recordings/"
    part_bytes: int = 8 * 1024 * 1024
    abandoned_after_s: float = 24 * 3600.0
    timeout_s: float = 15.0
    access_key_id: str | None = None
    secret_access_key: str | None = None


class S3Store:
    """Keeps recordings as objects `<prefix><meeting id>` in one bucket."""

    def __init__(self, pool: asyncpg.Pool, uploads: UploadsRepository, options: S3Options) -> None:
        self.pool = pool
        self.uploads = uploads
        self.options = options
        self._client: S3Client | None = None
        self._context: AbstractAsyncContextManager[S3Client] | None = None
        self._opening = asyncio.Lock()

    async def client(self) -> S3Client:
        """The S3 client, created on first use."""
        async with self._opening:
            if self._client is None:
                options = self.options
                self._context = get_session().create_client(
                    "s3",
                    endpoint_url=options.endpoint or None,
                    region_name=options.region,
                    aws_access_key_id=options.access_key_id,
                    aws_secret_access_key=options.secret_access_key,
                    config=AioConfig(
                        s3={"addressing_style": "path" if options.path_style else "auto"},
                        retries={"mode": "standard", "total_max_attempts": 3},
                        connect_timeout=options.timeout_s,
                        read_timeout=options.timeout_s,
                        connector_args={"socket_factory": _stalls_after(options.timeout_s)},
                    ),
                )
                client = await self._context.__aenter__()
                # Bodies go at once rather than after a "100 Continue": aiohttp times
                # nothing while it waits for one, so a server that never answered would
                # hold the call for good. The read timeout covers the answer, and
                # `_stalls_after` a send that stops moving.
                client.meta.events.unregister("before-call.s3", add_expect_header)
                self._client = client
            return self._client

    def key(self, meeting_id: uuid.UUID, piece: str = "") -> str:
        """The object key of a meeting's recording; with `piece`, of a piece kept beside it.

        `HEAD` is the copy of a live recording's first part; `tail_piece` names the bytes
        an older version staged below one part (`uploads.staged_size`).
        """
        return f"{self.options.prefix}{meeting_id}{piece}"

    async def delete_pieces(self, meeting_id: uuid.UUID) -> None:
        """Deletes the pieces kept beside a meeting's recording."""
        client = await self.client()
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=self.options.bucket, Prefix=self.key(meeting_id, ".")
        )
        async for page in pages:
            for piece in page.get("Contents", []):
                if "Key" in piece:
                    await client.delete_object(Bucket=self.options.bucket, Key=piece["Key"])

    def writer(  # noqa: D102
        self,
        upload: UploadRow,
        *,
        keeps_start: bool = False,
        counts_behind: bool = False,
        sends_once: bool = False,
    ) -> RecordingWriter:
        return _S3Writer(
            self,
            upload,
            keeps_start=keeps_start,
            counts_behind=counts_behind,
            sends_once=sends_once,
        )

    async def read_at(self, meeting_id: uuid.UUID, offset: int) -> tuple[int, bytes] | None:  # noqa: D102
        client = await self.client()
        try:
            response = await client.get_object(
                Bucket=self.options.bucket,
                Key=self.key(meeting_id),
                Range=f"bytes={offset}-{offset + SPAN_BYTES - 1}",
            )
        except ClientError as error:
            if _code(error) in {"InvalidRange", "NoSuchKey", "404", "416"}:
                return None
            raise
        async with response["Body"] as body:
            data = await body.read()
        return (offset, data) if data else None

    async def delete(self, meeting_id: uuid.UUID) -> None:
        """Deletes the recording's object and aborts its multipart uploads."""
        client = await self.client()
        key = self.key(meeting_id)
        await client.delete_object(Bucket=self.options.bucket, Key=key)
        await self.delete_pieces(meeting_id)
        listing = await client.list_multipart_uploads(Bucket=self.options.bucket, Prefix=key)
        for upload in listing.get("Uploads", []):
            if upload.get("Key") == key and "UploadId" in upload:
                await self.abort(key, upload["UploadId"])

    async def sweep(self) -> int:
        """Aborts the multipart uploads nobody has written to for `abandoned_after_s`.

        An upload counts as written to when its recording's row last changed (each
        stored part changes it); one no recording holds counts from its start.
        """
        client = await self.client()
        limit = self.options.abandoned_after_s
        aborted = 0
        pages = client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.options.bucket, Prefix=self.options.prefix
        )
        async for page in pages:
            for upload in page.get("Uploads", []):
                key, upload_id = upload.get("Key"), upload.get("UploadId")
                started = upload.get("Initiated")
                if key is None or upload_id is None or started is None:
                    continue
                if time.time() - started.timestamp() < limit:
                    continue
                idle = await self.uploads.object_upload_idle_s(self.pool, upload_id)
                if idle is not None and idle < limit:
                    continue
                await self.abort(key, upload_id)
                await self.uploads.forget_object_upload(self.pool, upload_id)
                logger.bind(key=key, upload_id=upload_id).info("abandoned upload aborted")
                aborted += 1
        return aborted

    async def close(self) -> None:  # noqa: D102
        if self._context is not None:
            await self._context.__aexit__(None, None, None)
            self._context = self._client = None

    async def abort(self, key: str, upload_id: str) -> None:
        """Aborts a multipart upload (one already gone is fine)."""
        client = await self.client()
        try:
            await client.abort_multipart_upload(
                Bucket=self.options.bucket, Key=key, UploadId=upload_id
            )
        except ClientError as error:
            if _code(error) not in {"NoSuchUpload", "404"}:
                raise


def _stalls_after(timeout_s: float) -> Callable[[AddrInfoType], socket.socket]:
    """A socket factory whose connections fail once sent bytes go unacknowledged this long.

    The read timeout only covers waiting for an answer: a part being sent to a server
    that stopped reading (its network gone) would otherwise wait on a full send buffer
    for as long as the kernel keeps retrying, minutes (`TCP_USER_TIMEOUT`, Linux).
    """

    def create(address: AddrInfoType) -> socket.socket:
        family, kind, protocol, _, _ = address
        sock = socket.socket(family, kind, protocol)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(timeout_s * 1000))
        return sock

    return create


def _crc32_header(crc: int) -> str:
    """A CRC32 as S3's checksum headers carry it: its 4 bytes, big-endian, in base64."""
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class _S3Writer:
    """One stream's writer: buffers up to a part, stores it, counts it in PostgreSQL."""

    def __init__(
        self,
        store: S3Store,
        upload: UploadRow,
        *,
        keeps_start: bool,
        counts_behind: bool,
        sends_once: bool,
    ) -> None:
        self._store = store
        self._mid = upload.meeting_id
        self._key = store.key(upload.meeting_id)
        self._stored = upload.stored_size  # counted in PostgreSQL
        # In parts S3 has, counted or being counted.
        self._sent = upload.stored_size - upload.staged_size
        # Counted as staged by an earlier stream (`keep_held`): read back into the part
        # first.
        self._staged = upload.staged_size
        self._upload_id = upload.object_upload_id
        self._etags = list(upload.part_etags)
        # The last stored part's count (with `counts_behind`, committed while the next
        # part is gathered and sent).
        self._counting: asyncio.Task[int | None] | None = None
        # The part being filled: the first `_filled` bytes of one buffer that every part
        # of the stream reuses (see `_part`).
        self._buffer = io.BytesIO()
        self._filled = 0
        # Its CRC32, summed as the bytes arrive, for the part's checksum header: S3
        # checks it, and botocore, finding it given, does not read the part again to
        # compute it. None once the buffer holds bytes no append brought (a header).
        self._crc: int | None = 0
        self._keeps_start = keeps_start
        self._counts_behind = counts_behind
        self._sends_once = sends_once
        # When `keep_held` may try again to store a part the store refused.
        self._part_retry_at = 0.0
        self._first_part = b""

    async def append(self, data: bytes) -> int | None:
        if self._stored_whole():
            # Completed by a stream that stopped before its end was recorded.
            raise written_by_another_stream(self._stored)
        await self._read_back_staged()
        part_bytes = self._store.options.part_bytes
        held_too_long = self._filled + len(data) > HELD_PARTS * part_bytes
        # The store refused the waiting part for a long time: no more bytes are taken
        # until it takes that part (this raises why it does not).
        if self._sends_once and held_too_long and not await self._store_part():
            return None
        crc_before = self._crc
        self._buffer.seek(self._filled)  # a failed send may have left it anywhere
        self._buffer.write(data)
        self._filled += len(data)
        if crc_before is not None:
            self._crc = zlib.crc32(data, crc_before)
        try:
            if self._sends_once:
                return await self._stage()  # the part is stored by `keep_held`
            if self._filled < part_bytes:
                return self._stored
            if not await self._store_part():
                return None
            return self._stored
        except BaseException:
            # Not taken: a caller that hands the same bytes again (a live recording
            # flushes what it still holds) must not find them twice.
            self._filled -= len(data)
            self._crc = crc_before
            raise

    async def complete(self, header: bytes = b"") -> int:
        options = self._store.options
        client = await self._store.client()
        if await self.durable() is None:
            await self._lost()
        if self._stored_whole():
            # By an earlier stream, whose header was written for this length: it stopped
            # before the recording's completion was recorded.
            if self._filled:
                raise RuntimeError("the recording is stored whole: it takes no more bytes")
            await self._drop_pieces()
            return self._stored
        await self._read_back_staged()
        if header and not self._etags:
            self._buffer.seek(0)
            self._buffer.write(header)
            self._filled = max(self._filled, len(header))
            self._crc = None
        if self._upload_id is None and not self._etags:
            # Smaller than one part: one PUT.
            if self._filled:
                await client.put_object(Bucket=options.bucket, Key=self._key, Body=self._part())
                stored = await self._store.uploads.add_part(
                    self._store.pool, self._mid, 0, self._filled, "", last=True
                )
                if stored is None:
                    await self._lost()
                    raise AssertionError("unreachable")
                self._stored = stored
                self._filled = 0
                await self._drop_pieces()
            return self._stored
        upload_id = self._upload_id
        assert upload_id is not None  # the other cases returned above
        try:
            if header and self._etags:
                await self._restore_first_part(upload_id, header)
            if self._filled and (
                not await self._store_part(last=True) or await self.durable() is None
            ):
                await self._lost()
            parts = [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(self._etags, 1)]
            await client.complete_multipart_upload(
                Bucket=options.bucket,
                Key=self._key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
            )
        except ClientError as error:
            # Completed by an earlier stream that was interrupted before recording it.
            if _code(error) != "NoSuchUpload" or await self._object_size() != self._stored:
                raise
        await self._store.uploads.close_object_upload(self._store.pool, self._mid)
        self._upload_id = None
        await self._drop_pieces()
        return self._stored

    async def keep_held(self) -> int | None:
        """Makes every byte received durable; with `sends_once`, stores a full part too.

        S3 takes a part below 5 MiB only as the last one, so the bytes of the part being
        filled wait in PostgreSQL (`_stage`). With `sends_once`, a full part is stored
        here, and while the object storage cannot take it (down, refusing) it stays
        staged and is tried again by a call `PART_RETRY_S` later, up to `HELD_PARTS`
        parts: a live stream goes on through an outage of the store.
        """
        await self._read_back_staged()
        if await self.durable() is None or await self._stage() is None:
            return None
        full = self._filled >= self._store.options.part_bytes
        if self._sends_once and full and time.monotonic() >= self._part_retry_at:
            try:
                if not await self._store_part():
                    return None
            except S3_ERRORS as error:
                # Each try holds up the stream that calls this (a live session's audio):
                # not again for a while.
                self._part_retry_at = time.monotonic() + PART_RETRY_S
                logger.bind(
                    meeting_id=str(self._mid), held=self._filled, error=repr(error)
                ).warning("object storage unavailable: the audio waits staged in PostgreSQL")
        return self._stored

    async def _stage(self) -> int | None:
        """Stages the bytes of the part being filled not staged yet, in PostgreSQL.

        They wait in `audio_chunks` rows, counted as staged, for the part that holds them
        (`add_part` deletes the rows) or for the writer of the resumed stream
        (`_read_back_staged`). One commit, of the new bytes only; it does not wait for
        the disk (the next durable commit, such as a transcript's, makes it durable:
        PostgreSQL's log is ordered).

        Returns:
            The stored size, or None when another stream moved the upload on, or the
            meeting was deleted.
        """
        unstaged = self._stored - self._sent
        if self._filled <= unstaged:
            return self._stored
        store = self._store
        with self._buffer.getbuffer() as view:
            # A copy: the buffer could not grow while a view of it is alive.
            fresh = bytes(view[unstaged : self._filled])
        async with store.pool.acquire() as conn, conn.transaction():
            stored = await store.uploads.append_chunk(
                conn, self._mid, self._stored, fresh, wait_for_disk=False, staged=True
            )
        if stored is None:
            await self._delete_if_gone()
            return None
        self._stored = stored
        return stored

    async def durable(self) -> int | None:
        """Waits for the last stored part's count.

        Raises:
            Exception: What a count made behind (`counts_behind`) raised, again on every
                later call: the writer is done, and a new stream resumes from what
                PostgreSQL holds.
        """
        if self._counting is None:
            return self._stored
        # Shielded: a caller cancelled while waiting leaves the count to land for the next.
        return await asyncio.shield(self._counting)

    async def end(self) -> int | None:
        self._buffer = io.BytesIO()
        self._filled = 0
        self._crc = 0
        return await self.durable()

    def _stored_whole(self) -> bool:
        """`UploadRow.stored_whole`, on this writer's state."""
        return self._upload_id is None and bool(self._etags)

    async def _read_back_staged(self) -> None:
        """Puts the bytes an earlier stream staged (`keep_held`) first in the part."""
        if not self._staged:
            return
        store = self._store
        data = await store.uploads.read_staged(store.pool, self._mid, self._sent)
        if not data:
            # Staged by an older version, as a piece: moved to rows, where the next
            # stream looks.
            piece = tail_piece(self._stored)
            data = await self._get(piece) or b""
            if len(data) == self._staged:
                await store.uploads.write_rows(store.pool, self._mid, self._sent, data)
        if len(data) != self._staged:
            raise RuntimeError(
                f"{len(data)} of the {self._staged} staged bytes of {self._key} were found"
            )
        self._buffer = io.BytesIO(data)
        self._buffer.seek(0, io.SEEK_END)
        self._filled = len(data)
        self._crc = zlib.crc32(data)
        self._staged = 0

    async def _get(self, suffix: str) -> bytes | None:
        """The whole object of a piece kept beside the recording; None when it is gone."""
        store = self._store
        client = await store.client()
        try:
            response = await client.get_object(
                Bucket=store.options.bucket, Key=store.key(self._mid, suffix)
            )
        except ClientError as error:
            if _code(error) in {"NoSuchKey", "404"}:
                return None
            raise
        async with response["Body"] as body:
            return await body.read()

    async def _delete_if_gone(self) -> None:
        """Deletes what this writer stored when its meeting was deleted meanwhile."""
        if await self._store.uploads.get(self._store.pool, self._mid) is None:
            await self._store.delete(self._mid)

    async def _drop_pieces(self) -> None:
        """Deletes the pieces a live recording kept beside it, now that it is complete.

        A failure leaves them for the meeting's deletion: the recording is complete.
        """
        if self._keeps_start:
            with contextlib.suppress(ClientError, BotoCoreError):
                await self._store.delete_pieces(self._mid)

    def _part(self) -> io.BytesIO:
        """The part received so far, as a request body, rewound.

        One buffer serves every part of the stream: its memory is allocated and faulted
        in once, botocore signs and checksums it a slice at a time and rewinds it, and
        aiohttp sends it a slice at a time (aiobotocore keeps aiohttp from closing it).
        A fresh part-sized buffer per part (a `bytes` join, a copy of a `bytearray`)
        costs more in page faults than the copies it saves: meeting_service took 8.3-8.8 s
        of CPU per GiB uploaded that way, 4.5-5.1 s this way (bench `upload_s3`).
        """
        self._buffer.truncate(self._filled)  # what a longer earlier part left past it
        self._buffer.seek(0)
        return self._buffer

    async def _store_part(self, *, last: bool = False) -> bool:
        """Puts the part received so far into S3 and starts counting it.

        With `counts_behind` the count (one PostgreSQL commit) runs while the stream
        fills the next part, and is awaited before that part's own count, so counts land
        in order and S3 still gets one part at a time, as from any client putting parts
        back to back. Without it the count is awaited here.

        Returns:
            False when the upload was moved on (another stream, or the meeting deleted):
            nothing more can be stored.
        """
        store = self._store
        client = await store.client()
        if self._upload_id is None:
            created = await client.create_multipart_upload(
                Bucket=store.options.bucket, Key=self._key
            )
            upload_id = created["UploadId"]
            if not await store.uploads.open_object_upload(store.pool, self._mid, upload_id):
                await store.abort(self._key, upload_id)
                return False
            self._upload_id = upload_id
        data = self._part()
        number = len(self._etags) + 1
        crc = zlib.crc32(data.getvalue()) if self._crc is None else self._crc
        try:
            response = await client.upload_part(
                Bucket=store.options.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=data,
                ChecksumCRC32=_crc32_header(crc),
            )
        except ClientError as error:
            if _code(error) == "NoSuchUpload":
                # Aborted: the meeting was deleted, or the upload abandoned. The size
                # told next includes the previous part, if it was counted.
                with contextlib.suppress(Exception):
                    await self.durable()
                return False
            raise
        if await self.durable() is None:
            return False
        if number == 1 and self._keeps_start:
            # Kept in S3 too, before the part is counted: the writer of a resumed stream
            # rewrites the header from there.
            self._first_part = data.getvalue()
            await client.put_object(
                Bucket=store.options.bucket, Key=store.key(self._mid, HEAD), Body=self._first_part
            )
        etag, offset, size = response["ETag"], self._sent, self._filled
        counting = asyncio.create_task(self._count(offset, size, etag, last=last))
        # Counted now, a failed count changes nothing here: the caller's bytes are handed
        # in again and stored under the same part number.
        if not self._counts_behind and await counting is None:
            if self._keeps_start:
                await self._delete_if_gone()  # the HEAD piece may have outlived the deletion
            return False
        self._counting = counting
        self._etags.append(etag)
        self._sent += size
        self._filled = 0  # the buffer is kept for the next part
        self._crc = 0
        return True

    async def _count(self, offset: int, size: int, etag: str, *, last: bool) -> int | None:
        stored = await self._store.uploads.add_part(
            self._store.pool, self._mid, offset, size, etag, last=last
        )
        if stored is not None:
            self._stored = stored
        return stored

    async def _lost(self) -> None:
        """Raises why a part could not be counted; a deleted meeting's bytes are deleted."""
        current = await self._store.uploads.get(self._store.pool, self._mid)
        if current is None:
            await self._store.delete(self._mid)
            raise not_found(self._mid)
        raise written_by_another_stream(current.stored_size)

    async def _restore_first_part(self, upload_id: str, header: bytes) -> None:
        store = self._store
        client = await store.client()
        first = self._first_part or await self._get(HEAD)
        if not first:
            # Gone with the upload's completion (NoSuchUpload, which the caller expects),
            # or lost.
            await client.list_parts(Bucket=store.options.bucket, Key=self._key, UploadId=upload_id)
            raise RuntimeError(f"the first part of {self._key} is neither held nor in {HEAD}")
        data = header + first[len(header) :]
        response = await client.upload_part(
            Bucket=store.options.bucket,
            Key=self._key,
            UploadId=upload_id,
            PartNumber=1,
            Body=io.BytesIO(data),
        )
        await store.uploads.replace_part(store.pool, self._mid, 1, response["ETag"])
        self._etags[0] = response["ETag"]
        self._first_part = b""

    async def _object_size(self) -> int:
        client = await self._store.client()
        head = await client.head_object(Bucket=self._store.options.bucket, Key=self._key)
        return head["ContentLength"]
