-- Each user's feed of meeting changes (MeetingService.StreamUserEvents): one event per
-- meeting created, changed or deleted, numbered per owner. A trigger on `meetings` writes
-- it in the changing transaction, so no write path can leave the feed behind.

CREATE TABLE user_feeds (
    owner          text PRIMARY KEY,
    -- Events take `last_sequence + 1` inside the changing transaction: the row lock
    -- orders one owner's writers, so sequences become visible in order.
    last_sequence  bigint NOT NULL
);

-- The meeting's columns just after the change; NULL for a deletion.
CREATE TABLE user_events (
    owner                text NOT NULL,
    sequence             bigint NOT NULL,
    meeting_id           uuid NOT NULL,
    deleted              boolean NOT NULL DEFAULT false,
    title                text,
    language             text,
    expected_speakers    integer,
    status               smallint,
    failure_reason       text,
    duration_us          bigint,
    content_type         text,
    audio_size_bytes     bigint,
    meeting_create_time  timestamptz,
    meeting_update_time  timestamptz,
    create_time          timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (owner, sequence)
);

CREATE INDEX user_events_meeting ON user_events (owner, meeting_id);

CREATE FUNCTION record_user_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed meetings;
    next_sequence bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD;
    ELSE
        changed := NEW;
    END IF;
    INSERT INTO user_feeds AS f (owner, last_sequence) VALUES (changed.owner, 1)
        ON CONFLICT (owner) DO UPDATE SET last_sequence = f.last_sequence + 1
        RETURNING f.last_sequence INTO next_sequence;
    IF TG_OP = 'DELETE' THEN
        -- The deletion is all a follower needs of a deleted meeting: its earlier
        -- events go, so the feed holds one row per deleted meeting.
        DELETE FROM user_events WHERE owner = OLD.owner AND meeting_id = OLD.id;
        INSERT INTO user_events (owner, sequence, meeting_id, deleted)
            VALUES (OLD.owner, next_sequence, OLD.id, true);
    ELSE
        INSERT INTO user_events (
            owner, sequence, meeting_id, title, language, expected_speakers, status,
            failure_reason, duration_us, content_type, audio_size_bytes,
            meeting_create_time, meeting_update_time)
        VALUES (
            NEW.owner, next_sequence, NEW.id, NEW.title, NEW.language, NEW.expected_speakers,
            NEW.status, NEW.failure_reason, NEW.duration_us, NEW.content_type,
            COALESCE((SELECT stored_size FROM uploads WHERE meeting_id = NEW.id), 0),
            NEW.create_time, NEW.update_time);
    END IF;
    -- The payload of meeting_service/transcripts/notifications.py's user notifications.
    PERFORM pg_notify(
        'user_events', json_build_object('o', changed.owner, 's', next_sequence)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER meetings_user_events_created_deleted
    AFTER INSERT OR DELETE ON meetings
    FOR EACH ROW EXECUTE FUNCTION record_user_event();

-- Only what a `Meeting` shows: the event counter and the summary move without an event.
CREATE TRIGGER meetings_user_events_changed
    AFTER UPDATE ON meetings
    FOR EACH ROW
    WHEN ((OLD.title, OLD.language, OLD.expected_speakers, OLD.status, OLD.failure_reason,
           OLD.duration_us, OLD.content_type)
          IS DISTINCT FROM
          (NEW.title, NEW.language, NEW.expected_speakers, NEW.status, NEW.failure_reason,
           NEW.duration_us, NEW.content_type))
    EXECUTE FUNCTION record_user_event();
