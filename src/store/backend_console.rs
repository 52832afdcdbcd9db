//! Queries shared by both backends, the operator console's (`crate::console`): sessions, the
//! audit trail and the paged lists (see `backend.rs` for how it is compiled twice). Every list is
//! keyset-paged on an indexed column (`seq`, `user_name_lower`) and reads one page plus one row,
//! so a page costs the same on a table of any size.

use super::backend::*;
use super::backend_events::{log_row, upcoming_hosted};
use crate::store::console::{
    AuditRow, LogFilter, LogPageRow, NewAudit, OutboxPageRow, SessionRow, UserPageRow,
};

pub async fn insert_session(c: &mut Conn, s: &SessionRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO console_sessions (id_hash, token_id, token_name, account_id, account_name, \
         csrf, created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(s.id_hash.as_slice())
    .bind(s.token_id.as_str())
    .bind(s.token_name.as_str())
    .bind(s.account_id.as_ref().map(|a| a.as_str()))
    .bind(s.account_name.as_deref())
    .bind(s.csrf.as_str())
    .bind(s.created_at)
    .bind(s.last_seen_at)
    .bind(s.expires_at)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub async fn session_by_hash(c: &mut Conn, hash: &[u8]) -> Result<Option<SessionRow>, StoreError> {
    let row = sqlx::query(
        "SELECT id_hash, token_id, token_name, account_id, account_name, csrf, created_at, \
         last_seen_at, expires_at FROM console_sessions WHERE id_hash = $1",
    )
    .bind(hash)
    .fetch_optional(&mut *c)
    .await
    .map_err(db_err)?;
    row.map(|r| {
        let account: Option<String> = r.try_get("account_id").map_err(db_err)?;
        Ok(SessionRow {
            id_hash: r.try_get("id_hash").map_err(db_err)?,
            token_id: r.try_get("token_id").map_err(db_err)?,
            token_name: r.try_get("token_name").map_err(db_err)?,
            account_id: account.map(AccountId::from_trusted),
            account_name: r.try_get("account_name").map_err(db_err)?,
            csrf: r.try_get("csrf").map_err(db_err)?,
            created_at: r.try_get("created_at").map_err(db_err)?,
            last_seen_at: r.try_get("last_seen_at").map_err(db_err)?,
            expires_at: r.try_get("expires_at").map_err(db_err)?,
        })
    })
    .transpose()
}

pub async fn touch_session(
    c: &mut Conn,
    hash: &[u8],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE console_sessions SET last_seen_at = $2 WHERE id_hash = $1")
        .bind(hash)
        .bind(now)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Deletes one session, and every session whose absolute expiry has passed.
pub async fn delete_session(
    c: &mut Conn,
    hash: &[u8],
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
        .bind(hash)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1")
        .bind(now)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected() > 0)
}

pub async fn insert_audit(c: &mut Conn, a: &NewAudit<'_>) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO console_audit (account_id, actor, action, target, detail, client, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(a.account_id.map(|x| x.as_str()))
    .bind(a.actor)
    .bind(a.action)
    .bind(a.target)
    .bind(a.detail)
    .bind(a.client)
    .bind(a.at)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The account's audit entries, newest first, before `before` (a `seq`); with
/// `unattributed`, also those of no account (sign-in attempts that matched no token).
pub async fn list_audit(
    c: &mut Conn,
    account: &AccountId,
    unattributed: bool,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, account_id, actor, action, target, detail, client, at FROM console_audit \
         WHERE (account_id = $1 OR ($4 AND account_id IS NULL)) AND seq < $2 \
         ORDER BY seq DESC LIMIT $3",
    )
    .bind(account.as_str())
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .bind(unattributed)
    .fetch_all(&mut *c)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(AuditRow {
                seq: r.try_get("seq").map_err(db_err)?,
                account_id: r.try_get("account_id").map_err(db_err)?,
                actor: r.try_get("actor").map_err(db_err)?,
                action: r.try_get("action").map_err(db_err)?,
                target: r.try_get("target").map_err(db_err)?,
                detail: r.try_get("detail").map_err(db_err)?,
                client: r.try_get("client").map_err(db_err)?,
                at: r.try_get("at").map_err(db_err)?,
            })
        })
        .collect()
}

/// Escapes `LIKE` wildcards (the queries say `ESCAPE '\'`).
fn like_prefix(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    for ch in text.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('%');
    out
}

/// Candidate rows a search may collect from the name indexes before it scans in userName order
/// instead (a prefix that common matches a page's worth of users early in that order).
const SEARCH_CANDIDATES: i64 = 2_000;

/// A page of the account's users in userName order after `after` (a folded userName); with
/// `search`, those whose userName, given name or family name starts with it (case-folded).
///
/// A search first counts, through the three indexes (capped), the users each prefix range
/// holds. When they are few, the page is read from exactly those rows (fast for a rare or
/// missing name); when a range is dense, the page is read in userName order with the prefix as a
/// filter, which finds a page's worth of matches after a short scan.
pub async fn page_users(
    c: &mut Conn,
    account: &AccountId,
    search: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<UserPageRow>, StoreError> {
    const COLS: &str = "u.id, u.user_name, u.user_name_lower, u.given_name, u.family_name, \
        u.display_name, u.active, u.source, u.entra_object_id, u.created_at, u.updated_at, \
        (SELECT i.name FROM integrations i WHERE i.id = u.managed_by) AS owner";
    let folded = search.map(str::to_lowercase);
    let rows = match folded.as_deref() {
        None => sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLS} FROM users u WHERE u.account_id = $1 AND u.user_name_lower > $2 \
                 ORDER BY u.user_name_lower LIMIT $3"
        )))
        .bind(account.as_str())
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&mut *c)
        .await
        .map_err(db_err)?,
        Some(prefix) => {
            let pattern = like_prefix(prefix);
            let upper = format!("{prefix}\u{10FFFF}");
            let range = |col: &str| {
                format!(
                    "SELECT seq FROM users WHERE account_id = $1 AND {col} >= $2 AND {col} < $3 \
                     AND {col} LIKE $4 ESCAPE '\\'"
                )
            };
            let counted: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT (SELECT COUNT(*) FROM ({} LIMIT $5) a) + (SELECT COUNT(*) FROM ({} LIMIT $5) b) \
                 + (SELECT COUNT(*) FROM ({} LIMIT $5) c)",
                range("user_name_lower"),
                range("given_name_lower"),
                range("family_name_lower")
            )))
            .bind(account.as_str())
            .bind(prefix)
            .bind(upper.as_str())
            .bind(pattern.as_str())
            .bind(SEARCH_CANDIDATES + 1)
            .fetch_one(&mut *c)
            .await
            .map_err(db_err)?;
            if counted <= SEARCH_CANDIDATES {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {COLS} FROM users u WHERE u.seq IN ({} UNION {} UNION {}) \
                     AND u.user_name_lower > $5 ORDER BY u.user_name_lower LIMIT $6",
                    range("user_name_lower"),
                    range("given_name_lower"),
                    range("family_name_lower")
                )))
                .bind(account.as_str())
                .bind(prefix)
                .bind(upper.as_str())
                .bind(pattern.as_str())
                .bind(after.unwrap_or(""))
                .bind(limit)
                .fetch_all(&mut *c)
                .await
                .map_err(db_err)?
            } else {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {COLS} FROM users u WHERE u.account_id = $1 AND u.user_name_lower > $2 \
                     AND (u.user_name_lower LIKE $3 ESCAPE '\\' \
                          OR u.given_name_lower LIKE $3 ESCAPE '\\' \
                          OR u.family_name_lower LIKE $3 ESCAPE '\\') \
                     ORDER BY u.user_name_lower LIMIT $4"
                )))
                .bind(account.as_str())
                .bind(after.unwrap_or(""))
                .bind(pattern.as_str())
                .bind(limit)
                .fetch_all(&mut *c)
                .await
                .map_err(db_err)?
            }
        }
    };
    rows.iter()
        .map(|r| {
            Ok(UserPageRow {
                id: r.try_get("id").map_err(db_err)?,
                user_name: r.try_get("user_name").map_err(db_err)?,
                user_name_lower: r.try_get("user_name_lower").map_err(db_err)?,
                given_name: r.try_get("given_name").map_err(db_err)?,
                family_name: r.try_get("family_name").map_err(db_err)?,
                display_name: r.try_get("display_name").map_err(db_err)?,
                active: r.try_get("active").map_err(db_err)?,
                source: r.try_get("source").map_err(db_err)?,
                entra_object_id: r.try_get("entra_object_id").map_err(db_err)?,
                owner: r.try_get("owner").map_err(db_err)?,
                created_at: r.try_get("created_at").map_err(db_err)?,
                updated_at: r.try_get("updated_at").map_err(db_err)?,
            })
        })
        .collect()
}

/// A page of the account's provisioning log, newest first, before `before` (a `seq`).
pub async fn page_log(
    c: &mut Conn,
    account: &AccountId,
    f: &LogFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<LogPageRow>, StoreError> {
    let mut sql = String::from(
        "SELECT l.seq, l.at, i.name AS integration, l.cycle_id, l.source, l.action, l.status, \
         l.user_id, l.user_name, l.source_object_id, l.modified, l.error_code, l.error_message, \
         l.duration_ms FROM provisioning_log l LEFT JOIN integrations i ON i.id = l.integration_id \
         WHERE l.account_id = $1 AND l.seq < $2",
    );
    let mut texts: Vec<&str> = Vec::new();
    let mut n = 3;
    for (clause, val) in [
        ("l.integration_id = $", f.integration_id.as_deref()),
        ("l.user_id = $", f.user_id.as_deref()),
        ("l.action = $", f.action.as_deref()),
        ("l.status = $", f.status.as_deref()),
        ("l.cycle_id = $", f.cycle_id.as_deref()),
    ] {
        if let Some(v) = val {
            sql.push_str(&format!(" AND {clause}{n}"));
            texts.push(v);
            n += 1;
        }
    }
    // A userName has an `@`, an object id has none: one indexed column either way.
    if let Some(user) = f.user.as_deref() {
        let column = if user.contains('@') {
            "l.user_name"
        } else {
            "l.source_object_id"
        };
        sql.push_str(&format!(" AND {column} = ${n}"));
        texts.push(user);
        n += 1;
    }
    if f.since.is_some() {
        sql.push_str(&format!(" AND l.at >= ${n}"));
        n += 1;
    }
    sql.push_str(&format!(" ORDER BY l.seq DESC LIMIT ${n}"));
    let mut q = sqlx::query(AssertSqlSafe(sql))
        .bind(account.as_str())
        .bind(before.unwrap_or(i64::MAX));
    for t in texts {
        q = q.bind(t);
    }
    if let Some(since) = f.since {
        q = q.bind(since);
    }
    let rows = q.bind(limit).fetch_all(&mut *c).await.map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(LogPageRow {
                seq: r.try_get("seq").map_err(db_err)?,
                row: log_row(r)?,
            })
        })
        .collect()
}

/// A page of the account's outbox, newest first, before `before` (a `seq`); one status or all.
pub async fn page_outbox(
    c: &mut Conn,
    account: &AccountId,
    status: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<OutboxPageRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, id, recipient_email, recipient_name, subject, status, attempts, \
         created_at, sent_at, last_error, next_attempt_at FROM outbox \
         WHERE account_id = $1 AND ($2 IS NULL OR status = $2) AND seq < $3 \
         ORDER BY seq DESC LIMIT $4",
    )
    .bind(account.as_str())
    .bind(status)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(&mut *c)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(OutboxPageRow {
                seq: r.try_get("seq").map_err(db_err)?,
                id: r.try_get("id").map_err(db_err)?,
                recipient_email: r.try_get("recipient_email").map_err(db_err)?,
                recipient_name: r.try_get("recipient_name").map_err(db_err)?,
                subject: r.try_get("subject").map_err(db_err)?,
                status: r.try_get("status").map_err(db_err)?,
                attempts: r.try_get("attempts").map_err(db_err)?,
                created_at: r.try_get("created_at").map_err(db_err)?,
                sent_at: r.try_get("sent_at").map_err(db_err)?,
                last_error: r.try_get("last_error").map_err(db_err)?,
                next_attempt_at: r.try_get("next_attempt_at").map_err(db_err)?,
            })
        })
        .collect()
}

/// The account's upcoming scheduled appointments hosted by `user` (with their guests).
pub async fn upcoming_for_host(
    c: &mut Conn,
    account: &AccountId,
    user: &UserId,
    now: DateTime<Utc>,
) -> Result<Vec<Appointment>, StoreError> {
    upcoming_hosted(c, account, user, now).await
}
