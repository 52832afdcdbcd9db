//! Ownership and deletion review, shared by both backends (a module of each backend, like
//! `backend.rs`): which integration a user's manager is, the staged deletions of held cycles, the last
//! complete read of each integration's scope, and the users an operator kept (rejected deletions).

use super::backend::*;

use crate::domain::{Manager, StagedDeletion, StagedReason};

pub async fn integration_of(
    c: &mut Conn,
    id: &IntegrationId,
) -> Result<Option<Manager>, StoreError> {
    let row = sqlx::query("SELECT name, kind FROM integrations WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(&mut *c)
        .await
        .map_err(db_err)?;
    row.map(|r| {
        let kind: String = r.try_get("kind").map_err(db_err)?;
        Ok(Manager {
            name: r.try_get("name").map_err(db_err)?,
            graph: kind == "graph",
        })
    })
    .transpose()
}

const STAGED_SELECT: &str = "SELECT s.id, s.account_id, s.integration_id, i.name AS integration, \
    s.user_id, s.user_name, s.object_id, s.reason, s.appointments, s.guests, s.staged_at, \
    s.expires_at, s.checked_cycle_id FROM staged_deletions s \
    JOIN integrations i ON i.id = s.integration_id";

fn staged_from_row(row: &DbRow) -> Result<StagedDeletion, StoreError> {
    let object: Option<String> = row.try_get("object_id").map_err(db_err)?;
    let reason: String = row.try_get("reason").map_err(db_err)?;
    Ok(StagedDeletion {
        id: row.try_get("id").map_err(db_err)?,
        account_id: AccountId::from_trusted(row.try_get("account_id").map_err(db_err)?),
        integration_id: IntegrationId::from_trusted(row.try_get("integration_id").map_err(db_err)?),
        integration: row.try_get("integration").map_err(db_err)?,
        user_id: UserId::from_trusted(row.try_get("user_id").map_err(db_err)?),
        user_name: row.try_get("user_name").map_err(db_err)?,
        object_id: object.map(EntraObjectId::from_trusted),
        reason: StagedReason::parse(&reason),
        appointments: row.try_get("appointments").map_err(db_err)?,
        guests: row.try_get("guests").map_err(db_err)?,
        staged_at: row.try_get("staged_at").map_err(db_err)?,
        expires_at: row.try_get("expires_at").map_err(db_err)?,
        checked_cycle_id: row.try_get("checked_cycle_id").map_err(db_err)?,
    })
}

/// The staged deletions of `account` (of one integration when given), by integration and
/// userName.
pub async fn list_staged(
    c: &mut Conn,
    account: &AccountId,
    integration: Option<&IntegrationId>,
) -> Result<Vec<StagedDeletion>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "{STAGED_SELECT} WHERE s.account_id = $1 AND ($2 = '' OR s.integration_id = $2) \
         ORDER BY i.name, lower(s.user_name), s.user_id"
    )))
    .bind(account.as_str())
    .bind(integration.map(|i| i.as_str()).unwrap_or(""))
    .fetch_all(&mut *c)
    .await
    .map_err(db_err)?;
    rows.iter().map(staged_from_row).collect()
}

/// Writes `row` (replacing the row of the same integration and user).
pub async fn put_staged(c: &mut Conn, row: &StagedDeletion) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO staged_deletions (id, account_id, integration_id, user_id, user_name, \
         object_id, reason, appointments, guests, staged_at, expires_at, checked_cycle_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (integration_id, user_id) DO UPDATE SET id = excluded.id, \
         user_name = excluded.user_name, object_id = excluded.object_id, \
         reason = excluded.reason, appointments = excluded.appointments, \
         guests = excluded.guests, staged_at = excluded.staged_at, \
         expires_at = excluded.expires_at, checked_cycle_id = excluded.checked_cycle_id",
    )
    .bind(row.id.as_str())
    .bind(row.account_id.as_str())
    .bind(row.integration_id.as_str())
    .bind(row.user_id.as_str())
    .bind(row.user_name.as_str())
    .bind(row.object_id.as_ref().map(|o| o.as_str()))
    .bind(row.reason.as_str())
    .bind(row.appointments)
    .bind(row.guests)
    .bind(row.staged_at)
    .bind(row.expires_at)
    .bind(row.checked_cycle_id.as_str())
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub async fn delete_staged(c: &mut Conn, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM staged_deletions WHERE id = $1")
        .bind(id)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected() > 0)
}

/// Marks staged rows as checked by `cycle_id` (a complete read found them still due).
pub async fn mark_staged_checked(
    c: &mut Conn,
    ids: &[String],
    cycle_id: &str,
) -> Result<(), StoreError> {
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "UPDATE staged_deletions SET checked_cycle_id = $1 WHERE id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(cycle_id);
        for id in chunk {
            q = q.bind(id.as_str());
        }
        q.execute(&mut *c).await.map_err(db_err)?;
    }
    Ok(())
}

/// Records the last complete read of `integration`'s scope.
pub async fn record_scope_read(
    c: &mut Conn,
    integration: &IntegrationId,
    cycle_id: &str,
    at: DateTime<Utc>,
    users_in_scope: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO scope_reads (integration_id, cycle_id, read_at, users_in_scope) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (integration_id) DO UPDATE SET \
         cycle_id = excluded.cycle_id, read_at = excluded.read_at, \
         users_in_scope = excluded.users_in_scope",
    )
    .bind(integration.as_str())
    .bind(cycle_id)
    .bind(at)
    .bind(users_in_scope)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The cycle of `integration`'s last complete read, and when it was.
pub async fn last_scope_read(
    c: &mut Conn,
    integration: &IntegrationId,
) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
    let row = sqlx::query("SELECT cycle_id, read_at FROM scope_reads WHERE integration_id = $1")
        .bind(integration.as_str())
        .fetch_optional(&mut *c)
        .await
        .map_err(db_err)?;
    row.map(|r| {
        Ok((
            r.try_get("cycle_id").map_err(db_err)?,
            r.try_get("read_at").map_err(db_err)?,
        ))
    })
    .transpose()
}

/// An operator kept `user`: it is no longer managed by `integration`, which leaves it alone.
pub async fn reject_deletion(
    c: &mut Conn,
    integration: &IntegrationId,
    user: &UserId,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET managed_by = NULL WHERE id = $1 AND managed_by = $2")
        .bind(user.as_str())
        .bind(integration.as_str())
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    sqlx::query(
        "INSERT INTO deletion_rejections (integration_id, user_id, rejected_at) \
         VALUES ($1, $2, $3) ON CONFLICT (integration_id, user_id) DO NOTHING",
    )
    .bind(integration.as_str())
    .bind(user.as_str())
    .bind(at)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    sqlx::query("DELETE FROM staged_deletions WHERE integration_id = $1 AND user_id = $2")
        .bind(integration.as_str())
        .bind(user.as_str())
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// The users an operator kept from `integration` (their deletion rejected).
pub async fn rejected_users(
    c: &mut Conn,
    integration: &IntegrationId,
) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar("SELECT user_id FROM deletion_rejections WHERE integration_id = $1")
        .bind(integration.as_str())
        .fetch_all(&mut *c)
        .await
        .map_err(db_err)
}

/// Upcoming scheduled appointments `user` hosts after `now`, and their guests.
pub async fn upcoming_counts(
    c: &mut Conn,
    user: &UserId,
    now: DateTime<Utc>,
) -> Result<(i64, i64), StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(DISTINCT a.id) AS appointments, COUNT(g.appointment_id) AS guests \
         FROM appointments a LEFT JOIN appointment_guests g ON g.appointment_id = a.id \
         WHERE a.host_user_id = $1 AND a.status = 'scheduled' AND a.starts_at > $2",
    )
    .bind(user.as_str())
    .bind(now)
    .fetch_one(&mut *c)
    .await
    .map_err(db_err)?;
    Ok((
        row.try_get("appointments").map_err(db_err)?,
        row.try_get("guests").map_err(db_err)?,
    ))
}
