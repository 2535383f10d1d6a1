-- Per-caller quotas (docs/security.md). Upload starts are kept for the per-minute rate;
-- a caller's older rows are deleted when it starts the next upload.

CREATE TABLE upload_starts (
    owner       text NOT NULL,
    start_time  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX upload_starts_owner ON upload_starts (owner, start_time);
-- The concurrent-job and live-session quotas count a caller's meetings by status.
CREATE INDEX meetings_owner_status ON meetings (owner, status);
