-- A counter that every deletion or change of an integration bumps in the same transaction, so a
-- server that caches token lookups (src/scim/auth.rs) can tell that its cache may be stale: each
-- replica compares it on every request, so a deleted integration's token is refused at once by
-- every replica.
CREATE TABLE integration_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL
);
INSERT INTO integration_epoch (id, epoch) VALUES (1, 0);

CREATE FUNCTION bump_integration_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE integration_epoch SET epoch = epoch + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER integrations_epoch AFTER DELETE OR UPDATE ON integrations
    FOR EACH STATEMENT EXECUTE FUNCTION bump_integration_epoch();
