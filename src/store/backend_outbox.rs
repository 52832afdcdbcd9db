//! Queries shared by both backends, third part (see `backend.rs` for how it is compiled twice):
//! delivery of the outbox — claiming due messages under a lease, recording what became of them,
//! `outbox retry`, and the account time zone the messages are rendered in. Its imports
//! and helpers come from `backend.rs` (`use super::backend::*`).
//!
//! A claim is one UPDATE over the rows picked by a sub-select of due rows. On PostgreSQL the
//! sub-select ends in `FOR UPDATE SKIP LOCKED`, so two replicas claiming at once take disjoint
//! rows; SQLite has one writer, whose `BEGIN IMMEDIATE` transactions serialise claims anyway. The
//! claim moves `next_attempt_at` to the end of its lease: a worker that dies before recording the
//! result leaves the row to be claimed again when the lease runs out (at-least-once).

use super::backend::*;
use super::backend_events::outbox_row;

/// `FOR UPDATE SKIP LOCKED` on PostgreSQL, nothing on SQLite.
const CLAIM_LOCK: &str = if ROW_LOCK.is_empty() {
    ""
} else {
    " FOR UPDATE SKIP LOCKED"
};

const INTERRUPTED: &str =
    "no attempts left: the last delivery attempt was interrupted before its result was recorded";

pub async fn claim_outbox(
    c: &mut Conn,
    req: &crate::store::ClaimRequest<'_>,
    token: &str,
) -> Result<crate::store::OutboxClaim, StoreError> {
    // In SET, every column reference reads the row as it was before the update.
    let rows = sqlx::query(AssertSqlSafe(format!(
        "UPDATE outbox SET \
           status = CASE WHEN attempts >= $3 THEN 'dead' ELSE status END, \
           last_error = CASE WHEN attempts >= $3 AND claim_token IS NOT NULL THEN $6 \
                        ELSE last_error END, \
           attempts = CASE WHEN attempts >= $3 THEN attempts ELSE attempts + 1 END, \
           next_attempt_at = CASE WHEN attempts >= $3 THEN $1 ELSE $2 END, \
           claim_token = CASE WHEN attempts >= $3 THEN NULL ELSE $4 END, \
           claimed_at = $1, \
           message_id = COALESCE(message_id, '<outbox.' || id || '@' || $5 || '>') \
         WHERE seq IN (SELECT seq FROM outbox WHERE status = 'pending' AND next_attempt_at <= $1 \
                       ORDER BY next_attempt_at, seq LIMIT $7{CLAIM_LOCK}) \
         RETURNING seq, id, account_id, kind, recipient_email, recipient_name, subject, \
           body_text, payload, status, attempts, message_id"
    )))
    .bind(req.now)
    .bind(req.lease_until)
    .bind(req.max_attempts)
    .bind(token)
    .bind(req.message_id_domain)
    .bind(INTERRUPTED)
    .bind(req.limit)
    .fetch_all(&mut *c)
    .await
    .map_err(db_err)?;
    let mut claimed: Vec<(i64, crate::store::ClaimedMessage)> = Vec::new();
    let mut exhausted = Vec::new();
    for r in &rows {
        let id: String = r.try_get("id").map_err(db_err)?;
        let status: String = r.try_get("status").map_err(db_err)?;
        if status == "dead" {
            exhausted.push(id);
            continue;
        }
        let payload: String = r.try_get("payload").map_err(db_err)?;
        let message_id: Option<String> = r.try_get("message_id").map_err(db_err)?;
        claimed.push((
            r.try_get("seq").map_err(db_err)?,
            crate::store::ClaimedMessage {
                id,
                account_id: AccountId::from_trusted(r.try_get("account_id").map_err(db_err)?),
                kind: r.try_get("kind").map_err(db_err)?,
                recipient_email: r.try_get("recipient_email").map_err(db_err)?,
                recipient_name: r.try_get("recipient_name").map_err(db_err)?,
                subject: r.try_get("subject").map_err(db_err)?,
                body_text: r.try_get("body_text").map_err(db_err)?,
                payload: serde_json::from_str(&payload)
                    .map_err(|_| corrupt("outbox payload is not JSON"))?,
                attempts: r.try_get("attempts").map_err(db_err)?,
                message_id: message_id
                    .ok_or_else(|| corrupt("claimed outbox row without Message-ID"))?,
                time_zone: String::new(),
            },
        ));
    }
    // RETURNING does not promise an order: deliver oldest first.
    claimed.sort_by_key(|(seq, _)| *seq);
    Ok(crate::store::OutboxClaim {
        token: token.to_owned(),
        messages: claimed.into_iter().map(|(_, m)| m).collect(),
        exhausted,
    })
}

pub async fn account_time_zone(
    c: &mut Conn,
    account: &AccountId,
) -> Result<Option<String>, StoreError> {
    sqlx::query_scalar("SELECT time_zone FROM accounts WHERE id = $1")
        .bind(account.as_str())
        .fetch_optional(&mut *c)
        .await
        .map_err(db_err)
}

pub async fn set_account_time_zone(
    c: &mut Conn,
    account: &AccountId,
    time_zone: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE accounts SET time_zone = $2 WHERE id = $1")
        .bind(account.as_str())
        .bind(time_zone)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected() > 0)
}

/// Sent is the truth whoever holds the claim now: a row whose lease ran out while its send was
/// still going (and was parked or re-claimed meanwhile) is recorded as sent all the same.
pub async fn mark_outbox_sent(
    c: &mut Conn,
    id: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE outbox SET status = 'sent', sent_at = $2, next_attempt_at = $2, claim_token = NULL \
         WHERE id = $1 AND status IN ('pending', 'dead')",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected() > 0)
}

/// A failure only counts while the claim is still this worker's.
pub async fn mark_outbox_failed(
    c: &mut Conn,
    id: &str,
    token: &str,
    dead: bool,
    error: &str,
    next_attempt_at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE outbox SET status = $3, last_error = $4, next_attempt_at = $5, claim_token = NULL \
         WHERE id = $1 AND claim_token = $2 AND status = 'pending'",
    )
    .bind(id)
    .bind(token)
    .bind(if dead { "dead" } else { "pending" })
    .bind(error)
    .bind(next_attempt_at)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected() > 0)
}

pub async fn release_outbox_claim(
    c: &mut Conn,
    token: &str,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE outbox SET next_attempt_at = $2, attempts = attempts - 1, claim_token = NULL \
         WHERE claim_token = $1 AND status = 'pending'",
    )
    .bind(token)
    .bind(now)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected())
}

pub async fn retry_outbox(
    c: &mut Conn,
    account: &AccountId,
    id: &str,
    now: DateTime<Utc>,
) -> Result<crate::store::RetryOutcome, StoreError> {
    use crate::store::RetryOutcome;
    let done = sqlx::query(
        "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $3, \
         claim_token = NULL \
         WHERE id = $1 AND account_id = $2 AND (status = 'dead' OR (status = 'pending' \
           AND (claim_token IS NULL OR next_attempt_at <= $3)))",
    )
    .bind(id)
    .bind(account.as_str())
    .bind(now)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    if done.rows_affected() > 0 {
        return Ok(RetryOutcome::Requeued);
    }
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM outbox WHERE id = $1 AND account_id = $2")
            .bind(id)
            .bind(account.as_str())
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?;
    Ok(match status.as_deref() {
        None => RetryOutcome::NotFound,
        Some("sent") => RetryOutcome::AlreadySent,
        Some(_) => RetryOutcome::InFlight,
    })
}

pub async fn list_outbox_entries(
    c: &mut Conn,
    account: &AccountId,
    status: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<crate::store::OutboxEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, kind, idempotency_key, recipient_email, recipient_name, subject, body_text, \
         appointment_id, status, attempts, created_at, sent_at, last_error, next_attempt_at, \
         message_id, claim_token \
         FROM outbox WHERE account_id = $1 AND ($2 IS NULL OR status = $2) ORDER BY seq",
    )
    .bind(account.as_str())
    .bind(status)
    .fetch_all(&mut *c)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            let claim: Option<String> = r.try_get("claim_token").map_err(db_err)?;
            let status: String = r.try_get("status").map_err(db_err)?;
            let next_attempt_at: DateTime<Utc> = r.try_get("next_attempt_at").map_err(db_err)?;
            Ok(crate::store::OutboxEntry {
                in_flight: claim.is_some() && status == "pending" && next_attempt_at > now,
                next_attempt_at,
                message_id: r.try_get("message_id").map_err(db_err)?,
                row: outbox_row(r, status)?,
            })
        })
        .collect()
}

pub async fn outbox_counts(
    c: &mut Conn,
    account: &AccountId,
) -> Result<Vec<(String, i64)>, StoreError> {
    sqlx::query_as(
        "SELECT status, COUNT(*) FROM outbox WHERE account_id = $1 GROUP BY status ORDER BY status",
    )
    .bind(account.as_str())
    .fetch_all(&mut *c)
    .await
    .map_err(db_err)
}
