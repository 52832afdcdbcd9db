//! Queries shared by both backends, admin tokens (see `backend.rs` for how it is compiled twice):
//! creating, finding by hash, listing and revoking them, and recording their last use.
//! Imports and helpers come from `backend.rs` (`use super::backend::*`).

use super::backend::*;

const ADMIN_TOKEN_COLS: &str = "t.id, t.name, t.token_hash, t.token_hint, t.created_at, \
    t.expires_at, t.account_id, a.name AS account_name, t.last_used_at";

pub async fn insert_admin_token(c: &mut Conn, t: &AdminTokenRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO admin_tokens (id, name, token_hash, token_hint, created_at, expires_at, \
         account_id, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(t.id.as_str())
    .bind(t.name.as_str())
    .bind(t.token_hash.as_slice())
    .bind(t.token_hint.as_str())
    .bind(t.created_at)
    .bind(t.expires_at)
    .bind(t.account_id.as_ref().map(AccountId::as_str))
    .bind(t.last_used_at)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}

fn admin_token_from_row(r: &DbRow) -> Result<AdminTokenRow, StoreError> {
    Ok(AdminTokenRow {
        id: r.try_get("id").map_err(db_err)?,
        name: r.try_get("name").map_err(db_err)?,
        token_hash: r.try_get("token_hash").map_err(db_err)?,
        token_hint: r.try_get("token_hint").map_err(db_err)?,
        created_at: r.try_get("created_at").map_err(db_err)?,
        expires_at: r.try_get("expires_at").map_err(db_err)?,
        account_id: r
            .try_get::<Option<String>, _>("account_id")
            .map_err(db_err)?
            .map(AccountId::from_trusted),
        account_name: r.try_get("account_name").map_err(db_err)?,
        last_used_at: r.try_get("last_used_at").map_err(db_err)?,
    })
}

pub async fn admin_token_by_hash(
    c: &mut Conn,
    hash: &[u8],
) -> Result<Option<AdminTokenRow>, StoreError> {
    let sql = format!(
        "SELECT {ADMIN_TOKEN_COLS} FROM admin_tokens t \
         LEFT JOIN accounts a ON a.id = t.account_id WHERE t.token_hash = $1"
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(hash)
        .fetch_optional(&mut *c)
        .await
        .map_err(db_err)?;
    row.as_ref().map(admin_token_from_row).transpose()
}

/// Every admin token with the name of the account it is scoped to, oldest first.
pub async fn list_admin_tokens(c: &mut Conn) -> Result<Vec<AdminTokenInfo>, StoreError> {
    let rows = sqlx::query(
        "SELECT t.name, t.created_at, t.last_used_at, t.expires_at, a.name AS account \
         FROM admin_tokens t LEFT JOIN accounts a ON a.id = t.account_id \
         ORDER BY t.created_at, t.name",
    )
    .fetch_all(&mut *c)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(AdminTokenInfo {
                name: r.try_get("name").map_err(db_err)?,
                created_at: r.try_get("created_at").map_err(db_err)?,
                last_used_at: r.try_get("last_used_at").map_err(db_err)?,
                expires_at: r.try_get("expires_at").map_err(db_err)?,
                account: r.try_get("account").map_err(db_err)?,
            })
        })
        .collect()
}

/// Deletes the token named `name`; `false` when there is none.
pub async fn delete_admin_token(c: &mut Conn, name: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM admin_tokens WHERE name = $1")
        .bind(name)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected() > 0)
}

/// Records a use at `now` unless one at or after `stale_before` is already recorded (so a busy
/// token writes at most once per interval, and concurrent requests write once between them).
pub async fn touch_admin_token(
    c: &mut Conn,
    id: &str,
    now: DateTime<Utc>,
    stale_before: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE admin_tokens SET last_used_at = $2 \
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
    )
    .bind(id)
    .bind(now)
    .bind(stale_before)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}
