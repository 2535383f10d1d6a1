-- Names given to a meeting's speaker labels (RenameSpeaker, voice profiles).

CREATE TABLE speaker_names (
    meeting_id  uuid NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    label       text NOT NULL,
    name        text NOT NULL CHECK (name <> ''),
    PRIMARY KEY (meeting_id, label)
);
