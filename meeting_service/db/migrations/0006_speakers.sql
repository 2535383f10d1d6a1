-- Names given to a meeting's speaker labels (RenameSpeaker, voice profiles); the language a
-- recording was heard in; the words a meeting's recognizer is given.

ALTER TABLE meetings
    ADD COLUMN detected_language text NOT NULL DEFAULT '',
    ADD COLUMN vocabulary text[] NOT NULL DEFAULT '{}';

CREATE TABLE speaker_names (
    meeting_id  uuid NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    label       text NOT NULL,
    name        text NOT NULL CHECK (name <> ''),
    PRIMARY KEY (meeting_id, label)
);

-- What each diarized speaker of a meeting sounds like (the GPU node's voice embedding),
-- kept so that a caller can make a voice profile of the speaker later.
CREATE TABLE meeting_voices (
    meeting_id      uuid NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    label           text NOT NULL,
    encoder         text NOT NULL,
    embedding       real[] NOT NULL,
    speech_seconds  double precision NOT NULL,
    PRIMARY KEY (meeting_id, label)
);

-- Voice profiles: a name and samples of a known voice, private to their owner.
CREATE TABLE voice_profiles (
    id           uuid PRIMARY KEY,
    owner        text NOT NULL,
    name         text NOT NULL CHECK (name <> ''),
    create_time  timestamptz NOT NULL DEFAULT clock_timestamp(),
    update_time  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX voice_profiles_owner ON voice_profiles (owner, name);

-- The samples stay when their meeting is deleted: a profile is the owner's own record.
CREATE TABLE voice_samples (
    profile_id      uuid NOT NULL REFERENCES voice_profiles (id) ON DELETE CASCADE,
    meeting_id      uuid NOT NULL,
    label           text NOT NULL,
    encoder         text NOT NULL,
    embedding       real[] NOT NULL,
    speech_seconds  double precision NOT NULL,
    create_time     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (profile_id, meeting_id, label)
);
