-- Outbox delivery. `message_id` is the Message-ID a message is sent with, fixed at its first
-- claim so that a re-send carries the same one. `claim_token`/`claimed_at` mark the claim a
-- delivery worker holds; while a row is claimed, `next_attempt_at` is the end of the claim's
-- lease, so a worker that dies mid-send leaves the row to be claimed again once it runs out.
-- `attempts` counts delivery attempts started (a claim is one). The existing index
-- outbox_pending (status, next_attempt_at) serves the claim.

ALTER TABLE outbox ADD COLUMN message_id TEXT;
ALTER TABLE outbox ADD COLUMN claim_token TEXT;
ALTER TABLE outbox ADD COLUMN claimed_at TIMESTAMPTZ;
