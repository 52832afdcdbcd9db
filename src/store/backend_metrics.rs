//! Queries shared by both backends, last part (see `backend.rs` for how it is compiled twice):
//! what `/metrics` and `/readyz` read — the outbox gauges and the state of the migrations.
//! Imports and helpers come from `backend.rs` (`use super::backend::*`).

use super::backend::*;

/// `(pending, created_at of the oldest pending, dead)` over the whole outbox (every account).
/// `outbox_pending (status, next_attempt_at)` serves the counts; the pending rows are few.
pub async fn outbox_gauges(c: &mut Conn) -> Result<(i64, Option<DateTime<Utc>>, i64), StoreError> {
    let row = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM outbox WHERE status = 'pending') AS pending, \
                (SELECT MIN(created_at) FROM outbox WHERE status = 'pending') AS oldest, \
                (SELECT COUNT(*) FROM outbox WHERE status = 'dead') AS dead",
    )
    .fetch_one(&mut *c)
    .await
    .map_err(db_err)?;
    Ok((
        row.try_get("pending").map_err(db_err)?,
        row.try_get("oldest").map_err(db_err)?,
        row.try_get("dead").map_err(db_err)?,
    ))
}

/// The migrations this build embeds for this backend (the same ones `open` applies).
fn embedded_migrator() -> sqlx::migrate::Migrator {
    if <Db as Database>::NAME == "SQLite" {
        sqlx::migrate!("./migrations/sqlite")
    } else {
        sqlx::migrate!("./migrations/postgres")
    }
}

/// Why the database's schema is not the one this build expects: each embedded migration must
/// be recorded in `_sqlx_migrations` as applied successfully, with the same checksum. Empty when
/// the schema is current. Migrations the database has and this build does not know (a newer
/// replica applied them) are not a problem here.
pub async fn migration_problems(c: &mut Conn) -> Result<Vec<String>, StoreError> {
    let applied: Vec<(i64, bool, Vec<u8>)> =
        sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations")
            .fetch_all(&mut *c)
            .await
            .map_err(db_err)?;
    let applied: std::collections::HashMap<i64, (bool, Vec<u8>)> = applied
        .into_iter()
        .map(|(version, success, checksum)| (version, (success, checksum)))
        .collect();
    let migrator = embedded_migrator();
    let mut problems = Vec::new();
    for m in migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
    {
        let what = format!("migration {} ({})", m.version, m.description);
        match applied.get(&m.version) {
            None => problems.push(format!("{what} is not applied")),
            Some((false, _)) => problems.push(format!("{what} failed")),
            Some((true, checksum)) if checksum.as_slice() != &*m.checksum => {
                problems.push(format!("{what} was changed after it was applied"))
            }
            Some(_) => {}
        }
    }
    Ok(problems)
}
