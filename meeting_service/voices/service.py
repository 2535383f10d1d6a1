"""Voice profiles: a caller's named voices, from meetings' speakers or recordings of a voice.

Every call is scoped to its owner: another owner's profile reads as missing, and a sample
can only come from one of the caller's own meetings. The vectors stay in the database:
nothing here returns them.
"""

from __future__ import annotations

import uuid

import asyncpg

from contract_errors.meeting import MeetingError, not_found, speaker_not_found
from gen.meeting.v1 import meeting_pb2, voice_audio_pb2, voices_pb2
from meeting_service import validation
from meeting_service.meetings.messages import timestamp
from meeting_service.meetings.repository import MeetingsRepository
from meeting_service.voices.recorded import RecordedVoices
from meeting_service.voices.repository import ProfileRow, Voice, VoicesRepository

_NAME = voices_pb2.CreateVoiceProfileRequest
_AUDIO = voice_audio_pb2.AddVoiceAudioRequest


def profile_message(row: ProfileRow) -> voices_pb2.VoiceProfile:
    """The `VoiceProfile` message of a stored profile."""
    return voices_pb2.VoiceProfile(
        id=str(row.id),
        name=row.name,
        sample_count=row.sample_count,
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
    )


def profile_not_found(profile_id: object) -> MeetingError:
    """The profile is missing or not the caller's (the two are never told apart)."""
    return MeetingError(
        meeting_pb2.ERROR_REASON_VOICE_PROFILE_NOT_FOUND,
        f"voice profile {profile_id} not found",
        {"voice_profile_id": str(profile_id)},
    )


class VoicesService:
    """Voice profiles, every call scoped to its owner."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        meetings: MeetingsRepository,
        voices: VoicesRepository,
        recorded: RecordedVoices,
    ) -> None:
        self._pool = pool
        self._meetings = meetings
        self._voices = voices
        self._recorded = recorded

    async def create(
        self, owner: str, name: str, sample: voices_pb2.VoiceSample
    ) -> voices_pb2.VoiceProfile:
        """Creates a profile from a speaker of one of the caller's meetings.

        Raises:
            MeetingError: INVALID_FIELD; MEETING_NOT_FOUND for the sample's meeting;
                SPEAKER_NOT_FOUND when it has no voice of that speaker.
        """
        name = _name(name)
        async with self._pool.acquire() as conn, conn.transaction():
            meeting_id, voice = await self._sample(conn, owner, sample)
            profile_id = await self._voices.create_profile(conn, owner, name)
            await self._voices.add_sample(conn, profile_id, meeting_id, voice)
            row = await self._voices.profile(conn, profile_id, owner)
        assert row is not None
        return profile_message(row)

    async def add_sample(
        self, owner: str, profile_id: str, sample: voices_pb2.VoiceSample
    ) -> voices_pb2.VoiceProfile:
        """Adds another sample of the voice to a caller's profile.

        Raises:
            MeetingError: INVALID_FIELD; VOICE_PROFILE_NOT_FOUND; MEETING_NOT_FOUND;
                SPEAKER_NOT_FOUND.
        """
        pid = _profile_id(profile_id)
        async with self._pool.acquire() as conn, conn.transaction():
            await self._require(conn, owner, pid)
            meeting_id, voice = await self._sample(conn, owner, sample)
            await self._voices.add_sample(conn, pid, meeting_id, voice)
            row = await self._require(conn, owner, pid)
        return profile_message(row)

    async def create_from_audio(
        self, owner: str, name: str, audio: bytes
    ) -> voices_pb2.VoiceProfile:
        """Creates a profile from a recording of the voice alone.

        Raises:
            MeetingError: INVALID_FIELD (also for a recording too long or with too little
                speech); NOT_AUDIO; BACKEND_UNAVAILABLE.
        """
        name = _name(name)
        voice = await self._recorded.hear(_audio(audio))
        async with self._pool.acquire() as conn, conn.transaction():
            profile_id = await self._voices.create_profile(conn, owner, name)
            await self._voices.add_recorded_sample(conn, profile_id, voice)
            row = await self._require(conn, owner, profile_id)
        return profile_message(row)

    async def add_audio(self, owner: str, profile_id: str, audio: bytes) -> voices_pb2.VoiceProfile:
        """Adds a recording of the voice alone to a caller's profile.

        Raises:
            MeetingError: INVALID_FIELD; VOICE_PROFILE_NOT_FOUND; NOT_AUDIO;
                BACKEND_UNAVAILABLE.
        """
        pid = _profile_id(profile_id)
        _audio(audio)
        # Refused before the GPU hears anything; checked again where the sample is added,
        # in case the profile was deleted meanwhile.
        async with self._pool.acquire() as conn:
            await self._require(conn, owner, pid)
        voice = await self._recorded.hear(audio)
        async with self._pool.acquire() as conn, conn.transaction():
            await self._require(conn, owner, pid)
            await self._voices.add_recorded_sample(conn, pid, voice)
            row = await self._require(conn, owner, pid)
        return profile_message(row)

    async def list(self, owner: str) -> list[voices_pb2.VoiceProfile]:
        """Lists the caller's profiles, by name."""
        return [profile_message(row) for row in await self._voices.profiles(self._pool, owner)]

    async def rename(self, owner: str, profile_id: str, name: str) -> voices_pb2.VoiceProfile:
        """Renames a caller's profile.

        Raises:
            MeetingError: INVALID_FIELD; VOICE_PROFILE_NOT_FOUND.
        """
        pid = _profile_id(profile_id)
        name = _name(name)
        async with self._pool.acquire() as conn, conn.transaction():
            await self._require(conn, owner, pid)
            await self._voices.rename(conn, pid, name)
            row = await self._require(conn, owner, pid)
        return profile_message(row)

    async def delete(self, owner: str, profile_id: str) -> None:
        """Deletes a caller's profile with every sample of the voice.

        Raises:
            MeetingError: INVALID_FIELD; VOICE_PROFILE_NOT_FOUND.
        """
        pid = _profile_id(profile_id)
        async with self._pool.acquire() as conn, conn.transaction():
            await self._require(conn, owner, pid)
            await self._voices.delete(conn, pid)

    async def _require(
        self, conn: asyncpg.Connection, owner: str, profile_id: uuid.UUID
    ) -> ProfileRow:
        row = await self._voices.profile(conn, profile_id, owner)
        if row is None:
            raise profile_not_found(profile_id)
        return row

    async def _sample(
        self, conn: asyncpg.Connection, owner: str, sample: voices_pb2.VoiceSample
    ) -> tuple[uuid.UUID, Voice]:
        meeting_id = validation.meeting_id(sample.meeting_id, "sample.meeting_id")
        validation.check(sample, "speaker", "sample.speaker")
        if await self._meetings.get(conn, meeting_id, owner=owner) is None:
            raise not_found(meeting_id)
        voices = {v.label: v for v in await self._voices.meeting_voices(conn, meeting_id)}
        voice = voices.get(sample.speaker)
        if voice is None:
            raise speaker_not_found(
                sample.speaker,
                list(voices),
                f"meeting {meeting_id} has no voice of {sample.speaker!r}; speakers with a "
                f"voice there: {', '.join(voices) or 'none (it was not diarized yet)'}",
            )
        return meeting_id, voice


def _name(name: str) -> str:
    request = _NAME(name=name.strip())
    validation.check(request, "name", "name")
    return request.name


def _audio(audio: bytes) -> bytes:
    validation.check(_AUDIO(audio=audio), "audio", "audio")
    return audio


def _profile_id(value: str) -> uuid.UUID:
    request = voices_pb2.DeleteVoiceProfileRequest(voice_profile_id=value)
    validation.check(request, "voice_profile_id", "voice_profile_id")
    return uuid.UUID(value)
