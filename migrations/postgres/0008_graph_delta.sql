-- Incremental cycles with Microsoft Graph delta queries.
--
-- graph_delta_state: one row per Graph integration whose last full read took delta links: the
-- `@odata.deltaLink` of users/delta, the deltaLinks of groups/delta (a JSON array of
-- {"groups": [ids, at most 50], "link": "..."}, one per chunk of assigned groups), the
-- assignments the state was taken with (JSON {"direct": [ids], "groups": [[id, name]]}), the
-- fingerprint of the settings that force a full read when they change (userName source,
-- transitive, mapping) and when the last full reconcile ran. Rewritten only in the transaction
-- of a cycle's apply: a failed cycle leaves the old links.
--
-- graph_scope: who is in the integration's scope, and through what (`direct`, and `groups`: the
-- assigned groups the user is a member of, space-separated object ids); `removed`: users/delta
-- reported the account deleted; `pending`: the last plan skipped the user, so the next
-- incremental cycle plans it again.
--
-- sync_cycles.mode: `full` or `incremental`; full_reason: why a full read happened.

CREATE TABLE graph_delta_state (
    integration_id   TEXT PRIMARY KEY NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    users_link       TEXT NOT NULL,
    groups_links     TEXT NOT NULL,
    assignments      TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    full_at          TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);

CREATE TABLE graph_scope (
    integration_id   TEXT NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    object_id        TEXT NOT NULL,
    direct           BOOLEAN NOT NULL DEFAULT FALSE,
    groups           TEXT NOT NULL DEFAULT '',
    removed          BOOLEAN NOT NULL DEFAULT FALSE,
    pending          BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (integration_id, object_id)
);

ALTER TABLE sync_cycles ADD COLUMN mode TEXT;
ALTER TABLE sync_cycles ADD COLUMN full_reason TEXT;
