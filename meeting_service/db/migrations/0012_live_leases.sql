-- Live sessions that survive a dropped stream (docs/live.md): one row per meeting that went
-- LIVE, naming the session that streams into it while that session holds its lease. A
-- session renews its lease while it runs; a dropped one releases it (session_id NULL,
-- lease_until the time of release). A new session takes the meeting over once it is
-- released or its lease has expired; a LIVE meeting whose lease ended longer ago than the
-- resume grace is finalised by whichever replica sweeps first.

CREATE TABLE live_leases (
    meeting_id   uuid PRIMARY KEY REFERENCES meetings (id) ON DELETE CASCADE,
    session_id   uuid,
    lease_until  timestamptz NOT NULL,
    -- False once a session ended without recognizing all the audio it stored (its replica
    -- stopped or died): the recording is then transcribed again from the start.
    clean        boolean NOT NULL DEFAULT true
);

CREATE INDEX live_leases_lease_until ON live_leases (lease_until);
