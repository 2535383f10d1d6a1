-- Webhooks (docs/webhooks.md): the endpoints a user registers, the events written by the
-- transaction that changes a meeting's status (the outbox), one delivery per event and
-- endpoint, and every attempt at a delivery.

CREATE TABLE webhook_endpoints (
    id                    uuid PRIMARY KEY,
    owner                 text NOT NULL,
    url                   text NOT NULL,
    event_types           text[] NOT NULL,
    description           text NOT NULL DEFAULT '',
    -- The signing key: Standard Webhooks signs with the key itself, so it cannot be
    -- hashed; it is sealed with the configured key when there is one (`secret_sealed`).
    secret                bytea NOT NULL,
    secret_sealed         boolean NOT NULL,
    consecutive_failures  integer NOT NULL DEFAULT 0,
    -- Why deliveries stopped; '' while the endpoint is enabled.
    disabled_reason       text NOT NULL DEFAULT '',
    create_time           timestamptz NOT NULL DEFAULT clock_timestamp(),
    update_time           timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX webhook_endpoints_owner ON webhook_endpoints (owner, create_time DESC, id DESC);

CREATE TABLE webhook_events (
    id           uuid PRIMARY KEY,
    -- No foreign key: `meeting.deleted` outlives its meeting.
    meeting_id   uuid NOT NULL,
    type         text NOT NULL,
    -- The exact JSON bytes that are signed and sent, the same on every attempt.
    body         bytea NOT NULL,
    create_time  timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- A meeting announces each kind of event once, however often its status repeats.
    UNIQUE (meeting_id, type)
);

CREATE TABLE webhook_deliveries (
    id                uuid PRIMARY KEY,
    endpoint_id       uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id          uuid NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    status            text NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED')),
    attempts          integer NOT NULL DEFAULT 0,
    -- A claim moves this forward by the lease, so a claimed delivery is not due again
    -- until its deliverer has had time to finish.
    next_attempt_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    lease_owner       text,
    -- Retries stop once this is older than the retry window (reset by a redelivery).
    retry_since       timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_error        text NOT NULL DEFAULT '',
    create_time       timestamptz NOT NULL DEFAULT clock_timestamp(),
    update_time       timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (endpoint_id, event_id)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_endpoint_newest
    ON webhook_deliveries (endpoint_id, create_time DESC, id DESC);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);

CREATE TABLE webhook_attempts (
    delivery_id      uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    -- 0 when no HTTP answer came (refused address, connection error, timeout).
    status_code      integer NOT NULL,
    latency_ms       integer NOT NULL,
    error            text NOT NULL DEFAULT '',
    -- At most the first bytes of the answer (see docs/webhooks.md).
    response_prefix  bytea NOT NULL DEFAULT '',
    create_time      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (delivery_id, attempt)
);
