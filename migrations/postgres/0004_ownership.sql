-- Ownership and deletion review.
--
-- users.managed_by: the integration that manages the user (a Graph integration deletes only the
-- users it manages; a SCIM request cannot delete or deactivate a user a Graph integration
-- manages); NULL for users made by hand, and after an integration is deleted.
--
-- Existing rows: a linked user (one that remembers an Entra object id; only the Graph sync sets
-- it) is managed by the Graph integration whose provisioning-log rows last created or updated it,
-- else by the account's only Graph integration; with several Graph integrations and no log row
-- left (the log is kept 30 days) it stays unmanaged, and the next cycle of the integration that
-- has its object id in scope adopts it. A SCIM-created user is managed by the SCIM integration
-- whose log row created it, when that row is still there; otherwise it stays unmanaged (the row
-- of which SCIM token created a user was never kept elsewhere), which changes nothing for SCIM.

ALTER TABLE users ADD COLUMN managed_by TEXT REFERENCES integrations(id) ON DELETE SET NULL;
CREATE INDEX users_managed_by ON users (managed_by);

UPDATE users SET managed_by = (
    SELECT l.integration_id FROM provisioning_log l
    JOIN integrations i ON i.id = l.integration_id
    WHERE l.user_id = users.id AND i.kind = 'graph' AND l.source = 'graph'
      AND l.status = 'success' AND l.action IN ('create', 'update')
    ORDER BY l.seq DESC LIMIT 1
)
WHERE entra_object_id IS NOT NULL;

UPDATE users SET managed_by = (
    SELECT i.id FROM integrations i WHERE i.account_id = users.account_id AND i.kind = 'graph'
)
WHERE managed_by IS NULL AND entra_object_id IS NOT NULL
  AND (SELECT COUNT(*) FROM integrations i
       WHERE i.account_id = users.account_id AND i.kind = 'graph') = 1;

UPDATE users SET managed_by = (
    SELECT l.integration_id FROM provisioning_log l
    JOIN integrations i ON i.id = l.integration_id
    WHERE l.user_id = users.id AND i.kind = 'scim' AND l.source = 'scim'
      AND l.status = 'success' AND l.action = 'create'
    ORDER BY l.seq DESC LIMIT 1
)
WHERE managed_by IS NULL AND source = 'scim';

-- Deletions a held cycle staged, one row per user and integration, for review. A cycle whose
-- read was complete removes the rows of users back in scope and marks the others as checked by
-- it (checked_cycle_id); approving one requires that check to be by the integration's last
-- complete read (scope_reads).
CREATE TABLE staged_deletions (
    id                TEXT PRIMARY KEY NOT NULL,
    account_id        TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    integration_id    TEXT NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    user_id           TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    user_name         TEXT NOT NULL,
    object_id         TEXT,
    reason            TEXT NOT NULL,
    appointments      BIGINT NOT NULL DEFAULT 0,
    guests            BIGINT NOT NULL DEFAULT 0,
    staged_at         TIMESTAMPTZ NOT NULL,
    expires_at        TIMESTAMPTZ NOT NULL,
    checked_cycle_id  TEXT NOT NULL,
    UNIQUE (integration_id, user_id)
);
CREATE INDEX staged_deletions_account ON staged_deletions (account_id, integration_id);

-- The last complete read of each Graph integration's scope.
CREATE TABLE scope_reads (
    integration_id    TEXT PRIMARY KEY NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    cycle_id          TEXT NOT NULL,
    read_at           TIMESTAMPTZ NOT NULL,
    users_in_scope    BIGINT NOT NULL
);

-- Users whose staged deletion an operator rejected: the integration leaves them alone.
CREATE TABLE deletion_rejections (
    integration_id    TEXT NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    user_id           TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    rejected_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (integration_id, user_id)
);
