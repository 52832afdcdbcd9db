//! Admin API tokens: creating one (shown once; only its SHA-256 is stored), listing them (name,
//! created, last used, expiry, account scope — never the token, its hash or any part of it),
//! revoking one (its row is deleted, so the next request with it fails), and checking a
//! presented token: unknown, revoked and expired tokens are refused alike. A token may be
//! limited to one account; the admin API then acts on that account only. The last use is
//! recorded at most once per [`TOUCH_INTERVAL_SECS`], so a busy token does not turn every read
//! into a write.

use chrono::{DateTime, TimeDelta, Utc};

use crate::domain::{AccountId, StoreError};
use crate::secrets::{self, ADMIN_TOKEN_PREFIX, Secret, SecretError};
use crate::store::{AdminTokenInfo, AdminTokenRow, Store};

/// The last use of a token is written again only when the recorded one is older than this.
pub const TOUCH_INTERVAL_SECS: i64 = 60;

/// Longest admin token name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    #[error(
        "an admin token name must be 1 to {MAX_NAME_CHARS} characters without control characters"
    )]
    BadName,
    #[error("an admin token named {0:?} exists")]
    Exists(String),
    #[error("no admin token named {0:?}")]
    NotFound(String),
    #[error("the expiry must be in the future")]
    BadExpiry,
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a presented token was refused. All of these answer 401 alike; the reason is for the log.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("unknown or revoked admin token")]
    Unknown,
    #[error("admin token {name:?} expired at {at}")]
    Expired { name: String, at: DateTime<Utc> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who is calling the admin API: the token's name and, for a scoped token, its account.
#[derive(Debug, Clone)]
pub struct AdminCaller {
    pub name: String,
    /// `Some((id, name))`: the token may only act on this account.
    pub account: Option<(AccountId, String)>,
}

fn validate_name(name: &str) -> Result<&str, AdminTokenError> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(AdminTokenError::BadName);
    }
    Ok(name)
}

/// Creates a token named `name`, valid until `expires_at` (if given) and limited to `account`
/// (if given). The token is returned once; only its hash is kept.
pub async fn create(
    store: &Store,
    name: &str,
    expires_at: Option<DateTime<Utc>>,
    account: Option<&AccountId>,
    now: DateTime<Utc>,
) -> Result<(AdminTokenRow, Secret), AdminTokenError> {
    let name = validate_name(name)?;
    if expires_at.is_some_and(|at| at <= now) {
        return Err(AdminTokenError::BadExpiry);
    }
    let token = secrets::generate_admin_token()?;
    let row = AdminTokenRow {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        token_hash: secrets::token_hash(token.expose()),
        token_hint: format!("{ADMIN_TOKEN_PREFIX}…"),
        created_at: now,
        expires_at,
        account_id: account.cloned(),
        account_name: None,
        last_used_at: None,
    };
    let mut tx = store.begin().await?;
    match tx.insert_admin_token(&row).await {
        Err(StoreError::Conflict(_)) => return Err(AdminTokenError::Exists(row.name)),
        other => other?,
    }
    tx.commit().await?;
    Ok((row, token))
}

/// Every token, oldest first, without any secret material.
pub async fn list(store: &Store) -> Result<Vec<AdminTokenInfo>, AdminTokenError> {
    Ok(store.list_admin_tokens().await?)
}

/// Revokes the token named `name`: the next request that presents it is refused.
pub async fn revoke(store: &Store, name: &str) -> Result<(), AdminTokenError> {
    if store.revoke_admin_token(name.trim()).await? {
        Ok(())
    } else {
        Err(AdminTokenError::NotFound(name.trim().to_owned()))
    }
}

/// Checks a presented token (compared by its SHA-256, in constant time) and records its use.
pub async fn authenticate(
    store: &Store,
    presented: &str,
    now: DateTime<Utc>,
) -> Result<AdminCaller, AuthError> {
    let hash = secrets::token_hash(presented);
    let row = match store.admin_token_by_hash(&hash).await? {
        Some(row) if secrets::verify_token(presented, &row.token_hash) => row,
        _ => return Err(AuthError::Unknown),
    };
    if let Some(at) = row.expires_at
        && at <= now
    {
        return Err(AuthError::Expired { name: row.name, at });
    }
    let stale_before = now - TimeDelta::seconds(TOUCH_INTERVAL_SECS);
    if row.last_used_at.is_none_or(|t| t < stale_before) {
        // Bookkeeping only: a busy database must not turn a valid request away.
        if let Err(e) = store.touch_admin_token(&row.id, now, stale_before).await {
            tracing::warn!(token = %row.name, error = %e, "could not record the admin token's last use");
        }
    }
    let account = match (row.account_id, row.account_name) {
        (Some(id), Some(name)) => Some((id, name)),
        // The account was deleted with its tokens (ON DELETE CASCADE); a row without its
        // account name cannot be read here, but refuse rather than widen the scope.
        (Some(_), None) => return Err(AuthError::Unknown),
        (None, _) => None,
    };
    Ok(AdminCaller {
        name: row.name,
        account,
    })
}

/// Parses an `--expires-in` duration such as `30d`, `12h` or `90m` (humantime syntax).
pub fn parse_expires_in(text: &str) -> Result<TimeDelta, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration such as 30d, 12h or 90m: {e}"))?;
    let delta = TimeDelta::from_std(d).map_err(|_| format!("{text:?} is too long"))?;
    if delta <= TimeDelta::zero() {
        return Err("the duration must be positive".to_owned());
    }
    Ok(delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_durations_parse() {
        assert_eq!(parse_expires_in("30d"), Ok(TimeDelta::days(30)));
        assert_eq!(parse_expires_in(" 12h "), Ok(TimeDelta::hours(12)));
        assert_eq!(parse_expires_in("1h 30m"), Ok(TimeDelta::minutes(90)));
        assert!(parse_expires_in("0s").is_err());
        assert!(parse_expires_in("soon").is_err());
        assert!(parse_expires_in("").is_err());
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(validate_name(" ops ").ok(), Some("ops"));
        assert!(validate_name("").is_err());
        assert!(validate_name("a\u{0}b").is_err());
        assert!(validate_name(&"x".repeat(MAX_NAME_CHARS + 1)).is_err());
    }
}
