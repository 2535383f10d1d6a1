"""SQL for voices: each meeting's speaker voices, and the voice profiles with their samples."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class Voice:
    """What one speaker sounds like: an embedding of an encoder's space, from some speech.

    Attributes:
        label: The speaker's label in its meeting.
        encoder: The embedding space ("resemblyzer").
        embedding: The unit-length embedding.
        speech_seconds: Seconds of speech it was computed from.
    """

    label: str
    encoder: str
    embedding: list[float]
    speech_seconds: float


@dataclass(frozen=True)
class ProfileRow:
    """A stored voice profile (without its vectors)."""

    id: uuid.UUID
    owner: str
    name: str
    sample_count: int
    create_time: dt.datetime
    update_time: dt.datetime


@dataclass(frozen=True)
class ProfileVoice:
    """One sample of a profile, for matching."""

    profile_id: uuid.UUID
    name: str
    embedding: list[float]
    speech_seconds: float


_PROFILE = """
    SELECT p.id, p.owner, p.name, p.create_time, p.update_time,
           (SELECT count(*) FROM voice_samples s WHERE s.profile_id = p.id)::int AS sample_count
    FROM voice_profiles p
"""


class VoicesRepository:
    """Reads and writes `meeting_voices`, `voice_profiles` and `voice_samples`."""

    async def put_meeting_voices(
        self, conn: asyncpg.Connection, meeting_id: uuid.UUID, voices: Sequence[Voice]
    ) -> None:
        """Replaces the voices of a meeting's speakers."""
        await conn.execute("DELETE FROM meeting_voices WHERE meeting_id = $1", meeting_id)
        await conn.executemany(
            "INSERT INTO meeting_voices (meeting_id, label, encoder, embedding, speech_seconds)"
            " VALUES ($1, $2, $3, $4, $5)",
            [(meeting_id, v.label, v.encoder, v.embedding, v.speech_seconds) for v in voices],
        )

    async def meeting_voices(
        self, conn: asyncpg.Connection | asyncpg.Pool, meeting_id: uuid.UUID
    ) -> list[Voice]:
        """Reads the voices of a meeting's speakers, by label."""
        records = await conn.fetch(
            "SELECT label, encoder, embedding, speech_seconds FROM meeting_voices"
            " WHERE meeting_id = $1 ORDER BY label",
            meeting_id,
        )
        return [Voice(**dict(r.items())) for r in records]

    async def create_profile(self, conn: asyncpg.Connection, owner: str, name: str) -> uuid.UUID:
        """Creates an empty profile; returns its id."""
        profile_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO voice_profiles (id, owner, name) VALUES ($1, $2, $3)",
            profile_id,
            owner,
            name,
        )
        return profile_id

    async def add_sample(
        self,
        conn: asyncpg.Connection,
        profile_id: uuid.UUID,
        meeting_id: uuid.UUID,
        voice: Voice,
    ) -> None:
        """Adds a meeting speaker's voice to a profile (again: replaces that sample)."""
        await conn.execute(
            """
            INSERT INTO voice_samples
                (profile_id, meeting_id, label, encoder, embedding, speech_seconds)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (profile_id, meeting_id, label) WHERE meeting_id IS NOT NULL DO UPDATE
            SET encoder = EXCLUDED.encoder, embedding = EXCLUDED.embedding,
                speech_seconds = EXCLUDED.speech_seconds, create_time = clock_timestamp()
            """,
            profile_id,
            meeting_id,
            voice.label,
            voice.encoder,
            voice.embedding,
            voice.speech_seconds,
        )
        await conn.execute(
            "UPDATE voice_profiles SET update_time = clock_timestamp() WHERE id = $1", profile_id
        )

    async def add_recorded_sample(
        self, conn: asyncpg.Connection, profile_id: uuid.UUID, voice: Voice
    ) -> None:
        """Adds the voice of a recording of it alone (from no meeting) to a profile."""
        await conn.execute(
            "INSERT INTO voice_samples (profile_id, encoder, embedding, speech_seconds)"
            " VALUES ($1, $2, $3, $4)",
            profile_id,
            voice.encoder,
            voice.embedding,
            voice.speech_seconds,
        )
        await conn.execute(
            "UPDATE voice_profiles SET update_time = clock_timestamp() WHERE id = $1", profile_id
        )

    async def profile(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        profile_id: uuid.UUID,
        owner: str,
    ) -> ProfileRow | None:
        """Reads an owner's profile; another owner's reads as missing."""
        record = await conn.fetchrow(
            f"{_PROFILE} WHERE p.id = $1 AND p.owner = $2", profile_id, owner
        )
        return None if record is None else ProfileRow(**dict(record.items()))

    async def profiles(
        self, conn: asyncpg.Connection | asyncpg.Pool, owner: str
    ) -> list[ProfileRow]:
        """Reads an owner's profiles, by name."""
        records = await conn.fetch(f"{_PROFILE} WHERE p.owner = $1 ORDER BY p.name, p.id", owner)
        return [ProfileRow(**dict(r.items())) for r in records]

    async def rename(self, conn: asyncpg.Connection, profile_id: uuid.UUID, name: str) -> None:
        """Renames a profile."""
        await conn.execute(
            "UPDATE voice_profiles SET name = $2, update_time = clock_timestamp() WHERE id = $1",
            profile_id,
            name,
        )

    async def delete(self, conn: asyncpg.Connection, profile_id: uuid.UUID) -> None:
        """Deletes a profile; its samples (every vector) cascade."""
        await conn.execute("DELETE FROM voice_profiles WHERE id = $1", profile_id)

    async def samples(
        self, conn: asyncpg.Connection | asyncpg.Pool, owner: str, encoder: str
    ) -> list[ProfileVoice]:
        """Reads every sample of an owner's profiles in one embedding space."""
        records = await conn.fetch(
            """
            SELECT p.id AS profile_id, p.name, s.embedding, s.speech_seconds
            FROM voice_profiles p JOIN voice_samples s ON s.profile_id = p.id
            WHERE p.owner = $1 AND s.encoder = $2
            ORDER BY p.id
            """,
            owner,
            encoder,
        )
        return [ProfileVoice(**dict(r.items())) for r in records]
