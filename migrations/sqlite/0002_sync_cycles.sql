-- Pull-sync cycles (one row per cycle: its trigger, outcome, counts and Graph traffic) and the
-- admin API's tokens (SHA-256 only; a token is shown once when created).

CREATE TABLE sync_cycles (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    account_id       TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    integration_id   TEXT NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    trigger          TEXT NOT NULL,
    dry_run          INTEGER NOT NULL DEFAULT 0,
    outcome          TEXT NOT NULL,
    counts           TEXT NOT NULL DEFAULT '{}',
    graph_requests   INTEGER NOT NULL DEFAULT 0,
    throttled        INTEGER NOT NULL DEFAULT 0,
    error_code       TEXT,
    error_message    TEXT,
    started_at       TEXT NOT NULL,
    finished_at      TEXT,
    duration_ms      INTEGER
);
CREATE INDEX sync_cycles_integration ON sync_cycles (integration_id, seq);
CREATE INDEX sync_cycles_started ON sync_cycles (started_at);

CREATE TABLE admin_tokens (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL UNIQUE,
    token_hash   BLOB NOT NULL UNIQUE,
    token_hint   TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
