-- API keys: credentials of server-to-server callers, acting as their owner within their
-- scopes. Only the SHA-256 of a key is stored (a key is 256 random bits, so a plain hash
-- is as good as a slow one); `prefix` is its first characters, shown to tell keys apart.

CREATE TABLE api_keys (
    id             uuid PRIMARY KEY,
    owner          text NOT NULL,
    name           text NOT NULL DEFAULT '',
    scopes         text[] NOT NULL,
    prefix         text NOT NULL,
    key_hash       bytea NOT NULL UNIQUE,
    create_time    timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_use_time  timestamptz,
    revoke_time    timestamptz
);

CREATE INDEX api_keys_owner_newest ON api_keys (owner, create_time DESC)
    WHERE revoke_time IS NULL;
