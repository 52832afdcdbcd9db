-- The operator console (`/admin/`): server-side sessions (in the database so that replicas
-- share them; only the SHA-256 of the session cookie is stored; revoking the admin token, which
-- deletes its row, ends its sessions), the audit trail of what
-- operators did, and indexes for the console's paged lists (keyset paging, newest first).

CREATE TABLE console_sessions (
    id_hash        BLOB PRIMARY KEY NOT NULL,
    token_id       TEXT NOT NULL REFERENCES admin_tokens(id) ON DELETE CASCADE,
    token_name     TEXT NOT NULL,
    account_id     TEXT REFERENCES accounts(id) ON DELETE CASCADE,
    account_name   TEXT,
    csrf           TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    last_seen_at   TEXT NOT NULL,
    expires_at     TEXT NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);

CREATE TABLE console_audit (
    seq            INTEGER PRIMARY KEY,
    account_id     TEXT,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    target         TEXT,
    detail         TEXT,
    client         TEXT,
    at             TEXT NOT NULL
);
CREATE INDEX console_audit_account ON console_audit (account_id, seq);

CREATE INDEX provisioning_log_account_seq ON provisioning_log (account_id, seq);
CREATE INDEX provisioning_log_integration_seq ON provisioning_log (integration_id, seq);
CREATE INDEX provisioning_log_cycle ON provisioning_log (cycle_id);
CREATE INDEX provisioning_log_user_id ON provisioning_log (user_id, seq);
CREATE INDEX provisioning_log_object ON provisioning_log (account_id, source_object_id);
CREATE INDEX users_account_given_name ON users (account_id, given_name_lower);
CREATE INDEX users_account_family_name ON users (account_id, family_name_lower);
CREATE INDEX outbox_account_status ON outbox (account_id, status, seq);
