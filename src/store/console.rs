//! The operator console's records and reads: server-side sessions, the audit trail, and the
//! keyset-paged lists of users, provisioning log and outbox (queries in `backend_console.rs`).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Store, Tx, db_err, postgres, sqlite};
use crate::domain::{AccountId, Appointment, StoreError, UserId};
use crate::store::LogRow;

/// A console session. Only the SHA-256 of the cookie's value is stored.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id_hash: Vec<u8>,
    /// The admin token that signed in (its id and name).
    pub token_id: String,
    pub token_name: String,
    /// The account the session sees (the token's own for a scoped token, else the default).
    pub account_id: Option<AccountId>,
    pub account_name: Option<String>,
    /// The session's CSRF token, carried by every state-changing form.
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// The absolute expiry (never later than the admin token's own).
    pub expires_at: DateTime<Utc>,
}

/// An audit entry to write.
#[derive(Debug, Clone)]
pub struct NewAudit<'a> {
    pub account_id: Option<&'a AccountId>,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub detail: Option<&'a str>,
    pub client: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// An audit entry as stored.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub seq: i64,
    pub account_id: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<String>,
    pub client: Option<String>,
    pub at: DateTime<Utc>,
}

/// A user as the console lists them.
#[derive(Debug, Clone, Serialize)]
pub struct UserPageRow {
    pub id: String,
    pub user_name: String,
    /// The paging key.
    pub user_name_lower: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub active: bool,
    pub source: String,
    pub entra_object_id: Option<String>,
    /// The name of the integration that manages the user (None: made by hand, or kept by an
    /// operator who rejected its deletion).
    pub owner: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The provisioning-log filters of the console's page and exports.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub integration_id: Option<String>,
    /// A userName (as logged; it has an `@`) or a source object id.
    pub user: Option<String>,
    pub user_id: Option<String>,
    pub action: Option<String>,
    pub status: Option<String>,
    pub cycle_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

/// A provisioning-log row with its paging key.
#[derive(Debug, Clone, Serialize)]
pub struct LogPageRow {
    #[serde(skip)]
    pub seq: i64,
    #[serde(flatten)]
    pub row: LogRow,
}

/// An outbox message as the console lists it (no body).
#[derive(Debug, Clone, Serialize)]
pub struct OutboxPageRow {
    pub seq: i64,
    pub id: String,
    pub recipient_email: String,
    pub recipient_name: String,
    pub subject: String,
    pub status: String,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
}

impl Store {
    pub async fn session_by_hash(&self, hash: &[u8]) -> Result<Option<SessionRow>, StoreError> {
        read!(self, |c, m| m::session_by_hash(c, hash).await)
    }

    pub async fn insert_session(&self, session: &SessionRow) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.insert_session(session).await?;
        tx.commit().await
    }

    /// Records activity on a session (its idle expiry starts again).
    pub async fn touch_session(&self, hash: &[u8], now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.touch_session(hash, now).await?;
        tx.commit().await
    }

    /// Ends a session (and purges every session past its absolute expiry).
    pub async fn delete_session(
        &self,
        hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = tx.delete_session(hash, now).await?;
        tx.commit().await?;
        Ok(done)
    }

    pub async fn insert_audit(&self, entry: &NewAudit<'_>) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.insert_audit(entry).await?;
        tx.commit().await
    }

    /// The account's audit entries; `unattributed` adds those of no account (failed sign-ins),
    /// which belong to the deployment rather than to one company.
    pub async fn list_audit(
        &self,
        account: &AccountId,
        unattributed: bool,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        read!(self, |c, m| m::list_audit(
            c,
            account,
            unattributed,
            before,
            limit
        )
        .await)
    }

    pub async fn page_users(
        &self,
        account: &AccountId,
        search: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<UserPageRow>, StoreError> {
        read!(self, |c, m| m::page_users(c, account, search, after, limit)
            .await)
    }

    pub async fn page_log(
        &self,
        account: &AccountId,
        filter: &LogFilter,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<LogPageRow>, StoreError> {
        read!(self, |c, m| m::page_log(c, account, filter, before, limit)
            .await)
    }

    pub async fn page_outbox(
        &self,
        account: &AccountId,
        status: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<OutboxPageRow>, StoreError> {
        read!(self, |c, m| m::page_outbox(
            c, account, status, before, limit
        )
        .await)
    }

    /// The upcoming scheduled appointments `user` hosts.
    pub async fn upcoming_for_host(
        &self,
        account: &AccountId,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Appointment>, StoreError> {
        read!(self, |c, m| m::upcoming_for_host(c, account, user, now)
            .await)
    }
}

impl Tx {
    pub async fn insert_session(&mut self, s: &SessionRow) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::insert_session(c, s).await)
    }

    pub async fn touch_session(
        &mut self,
        hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::touch_session(c, hash, now).await)
    }

    pub async fn delete_session(
        &mut self,
        hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        in_tx!(self, |c, m| m::delete_session(c, hash, now).await)
    }

    pub async fn insert_audit(&mut self, a: &NewAudit<'_>) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::insert_audit(c, a).await)
    }
}
