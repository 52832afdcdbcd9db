-- A counter that every deletion or change of an integration bumps in the same transaction, so a
-- server that caches token lookups (src/scim/auth.rs) can tell that its cache may be stale.
CREATE TABLE integration_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL
);
INSERT INTO integration_epoch (id, epoch) VALUES (1, 0);

CREATE TRIGGER integrations_epoch_on_delete AFTER DELETE ON integrations
BEGIN
    UPDATE integration_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER integrations_epoch_on_update AFTER UPDATE ON integrations
BEGIN
    UPDATE integration_epoch SET epoch = epoch + 1 WHERE id = 1;
END;
