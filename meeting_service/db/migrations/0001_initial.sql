-- Meetings, their recordings, their event log and transcript, and processing jobs.

CREATE TABLE meetings (
    id                 uuid PRIMARY KEY,
    owner              text NOT NULL,
    request_id         text,
    title              text NOT NULL DEFAULT '',
    language           text NOT NULL DEFAULT '',
    expected_speakers  integer NOT NULL DEFAULT 0,
    status             smallint NOT NULL,
    failure_reason     text NOT NULL DEFAULT '',
    duration_us        bigint,
    content_type       text NOT NULL DEFAULT '',
    -- The sequence of the newest event; events take `last_sequence + 1` inside their
    -- transaction, so the row lock orders writers and sequences commit in order.
    last_sequence      bigint NOT NULL DEFAULT 0,
    summary            bytea,
    create_time        timestamptz NOT NULL DEFAULT clock_timestamp(),
    update_time        timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE UNIQUE INDEX meetings_owner_request_id ON meetings (owner, request_id)
    WHERE request_id IS NOT NULL;
CREATE INDEX meetings_owner_newest ON meetings (owner, create_time DESC, id DESC);

CREATE TABLE uploads (
    meeting_id    uuid PRIMARY KEY REFERENCES meetings (id) ON DELETE CASCADE,
    content_type  text NOT NULL,
    total_size    bigint,
    stored_size   bigint NOT NULL DEFAULT 0,
    sha256        text NOT NULL DEFAULT '',
    -- Set when the last byte arrived: no more chunks are accepted while the recording is
    -- verified and probed.
    sealed        boolean NOT NULL DEFAULT false,
    complete      boolean NOT NULL DEFAULT false,
    update_time   timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE audio_chunks (
    meeting_id   uuid NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    byte_offset  bigint NOT NULL,
    data         bytea NOT NULL,
    PRIMARY KEY (meeting_id, byte_offset)
);
-- Audio is already compressed (or is noise to pglz): store it out of line, uncompressed.
ALTER TABLE audio_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE events (
    meeting_id   uuid NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    sequence     bigint NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('segment', 'status_change', 'summary')),
    payload      bytea NOT NULL,
    create_time  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (meeting_id, sequence)
);

CREATE TABLE segments (
    meeting_id    uuid NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    segment_index integer NOT NULL CHECK (segment_index >= 0),
    sequence      bigint NOT NULL,
    payload       bytea NOT NULL,
    PRIMARY KEY (meeting_id, segment_index)
);

CREATE TABLE jobs (
    id                uuid PRIMARY KEY,
    meeting_id        uuid NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    status            text NOT NULL
                      CHECK (status IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    lease_owner       text,
    lease_expires_at  timestamptz,
    last_error        text NOT NULL DEFAULT '',
    trace_context     text NOT NULL DEFAULT '',
    create_time       timestamptz NOT NULL DEFAULT clock_timestamp(),
    update_time       timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX jobs_claimable ON jobs (next_attempt_at) WHERE status = 'QUEUED';
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE status = 'RUNNING';
CREATE INDEX jobs_meeting ON jobs (meeting_id);
