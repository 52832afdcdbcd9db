-- essentry directory: accounts, integrations, users, groups, appointments, outbox, provisioning log.
-- *_lower columns hold Unicode case folding done in Rust: SQLite's lower() folds ASCII only.
-- Timestamps are RFC 3339 text in UTC (sqlx's chrono encoding); booleans are 0/1 integers.

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    time_zone   TEXT NOT NULL DEFAULT 'UTC',
    created_at  TEXT NOT NULL
);

CREATE TABLE integrations (
    id               TEXT PRIMARY KEY NOT NULL,
    account_id       TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('scim', 'graph')),
    token_hash       BLOB UNIQUE,
    token_hint       TEXT,
    secret_sealed    TEXT,
    settings         TEXT NOT NULL DEFAULT '{}',
    created_at       TEXT NOT NULL,
    UNIQUE (account_id, name)
);

CREATE TABLE users (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    account_id       TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    user_name        TEXT NOT NULL,
    user_name_lower  TEXT NOT NULL,
    given_name       TEXT,
    family_name      TEXT,
    display_name     TEXT,
    given_name_lower TEXT,
    family_name_lower TEXT,
    display_name_lower TEXT,
    external_id      TEXT,
    active           INTEGER NOT NULL DEFAULT 1,
    entra_object_id  TEXT,
    source           TEXT NOT NULL,
    resource         TEXT NOT NULL,
    version          INTEGER NOT NULL DEFAULT 1,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (account_id, user_name_lower)
);
CREATE INDEX users_account_external_id ON users (account_id, external_id);
CREATE INDEX users_account_entra_object_id ON users (account_id, entra_object_id);

CREATE TABLE user_emails (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    type        TEXT,
    type_lower  TEXT,
    value       TEXT,
    value_lower TEXT,
    is_primary  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, position)
);
CREATE INDEX user_emails_value ON user_emails (value_lower);

CREATE TABLE groups (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    account_id       TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    display_name     TEXT NOT NULL,
    display_name_lower TEXT NOT NULL,
    external_id      TEXT,
    resource         TEXT NOT NULL,
    version          INTEGER NOT NULL DEFAULT 1,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE UNIQUE INDEX groups_account_display_name ON groups (account_id, display_name_lower);

CREATE TABLE group_members (
    group_id   TEXT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX group_members_user ON group_members (user_id);

CREATE TABLE appointments (
    id               TEXT PRIMARY KEY NOT NULL,
    account_id       TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    host_user_id     TEXT REFERENCES users(id) ON DELETE SET NULL,
    host_user_name   TEXT NOT NULL,
    host_display     TEXT NOT NULL,
    title            TEXT NOT NULL,
    starts_at        TEXT NOT NULL,
    ends_at          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('scheduled', 'cancelled')),
    cancelled_at     TEXT,
    cancel_reason    TEXT,
    created_at       TEXT NOT NULL
);
CREATE INDEX appointments_host ON appointments (host_user_id, starts_at);

CREATE TABLE appointment_guests (
    appointment_id  TEXT NOT NULL REFERENCES appointments(id) ON DELETE CASCADE,
    position        INTEGER NOT NULL,
    name            TEXT NOT NULL,
    email           TEXT NOT NULL,
    PRIMARY KEY (appointment_id, position)
);

CREATE TABLE outbox (
    seq              INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    account_id        TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind              TEXT NOT NULL,
    idempotency_key   TEXT NOT NULL UNIQUE,
    recipient_email   TEXT NOT NULL,
    recipient_name    TEXT NOT NULL,
    subject           TEXT NOT NULL,
    body_text         TEXT NOT NULL,
    appointment_id    TEXT REFERENCES appointments(id) ON DELETE SET NULL,
    payload           TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'dead')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   TEXT NOT NULL,
    last_error        TEXT,
    created_at        TEXT NOT NULL,
    sent_at           TEXT
);
CREATE INDEX outbox_pending ON outbox (status, next_attempt_at);

CREATE TABLE provisioning_log (
    seq              INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    account_id        TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    integration_id    TEXT,
    cycle_id          TEXT,
    source            TEXT NOT NULL,
    action            TEXT NOT NULL,
    status            TEXT NOT NULL,
    user_id           TEXT,
    user_name         TEXT,
    source_object_id  TEXT,
    modified          TEXT NOT NULL DEFAULT '[]',
    error_code        TEXT,
    error_message     TEXT,
    duration_ms       INTEGER,
    at                TEXT NOT NULL
);
CREATE INDEX provisioning_log_at ON provisioning_log (account_id, at);
CREATE INDEX provisioning_log_user ON provisioning_log (account_id, user_name);
