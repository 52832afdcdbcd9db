-- Admin tokens get an optional expiry, an optional account scope (a scoped token acts on that
-- account only) and the time of their last use (written at most once a minute). Revoking a
-- token deletes its row. Graph client secrets keep no hint: nothing of a secret is stored in
-- clear, not even its last characters.

ALTER TABLE admin_tokens ADD COLUMN expires_at TIMESTAMPTZ;
ALTER TABLE admin_tokens ADD COLUMN account_id TEXT REFERENCES accounts(id) ON DELETE CASCADE;
ALTER TABLE admin_tokens ADD COLUMN last_used_at TIMESTAMPTZ;
UPDATE admin_tokens SET token_hint = 'essy_admin_…';
UPDATE integrations SET token_hint = NULL WHERE kind = 'graph';
