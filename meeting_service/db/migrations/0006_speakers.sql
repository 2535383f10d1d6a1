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
