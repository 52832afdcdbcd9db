//! Delta state of the Graph pull sync, shared by both backends (a module of each backend, like
//! `backend.rs`): each integration's delta links and the scope they continue from
//! (`graph_delta_state`), who is in scope and through what (`graph_scope`), and the lookups an
//! incremental cycle plans from (stored users by object id and by userName).

use super::backend::*;

use crate::store::delta::{DeltaState, ScopeMember};

/// Rows per multi-row `VALUES` of `graph_scope` (6 parameters each).
const SCOPE_ROWS: usize = 400;

pub async fn delta_state(
    c: &mut Conn,
    integration: &IntegrationId,
) -> Result<Option<DeltaState>, StoreError> {
    let row = sqlx::query(
        "SELECT users_link, groups_links, assignments, fingerprint, full_at, updated_at \
         FROM graph_delta_state WHERE integration_id = $1",
    )
    .bind(integration.as_str())
    .fetch_optional(&mut *c)
    .await
    .map_err(db_err)?;
    let Some(r) = row else { return Ok(None) };
    let groups: String = r.try_get("groups_links").map_err(db_err)?;
    let assignments: String = r.try_get("assignments").map_err(db_err)?;
    Ok(Some(DeltaState {
        users_link: r.try_get("users_link").map_err(db_err)?,
        groups_links: serde_json::from_str(&groups)
            .map_err(|_| corrupt("graph_delta_state.groups_links"))?,
        assignments: serde_json::from_str(&assignments)
            .map_err(|_| corrupt("graph_delta_state.assignments"))?,
        fingerprint: r.try_get("fingerprint").map_err(db_err)?,
        full_at: r.try_get("full_at").map_err(db_err)?,
        updated_at: r.try_get("updated_at").map_err(db_err)?,
    }))
}

pub async fn put_delta_state(
    c: &mut Conn,
    integration: &IntegrationId,
    state: &DeltaState,
) -> Result<(), StoreError> {
    let groups = serde_json::to_string(&state.groups_links)
        .map_err(|e| StoreError::Database(Box::new(e)))?;
    let assignments =
        serde_json::to_string(&state.assignments).map_err(|e| StoreError::Database(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO graph_delta_state (integration_id, users_link, groups_links, assignments, \
         fingerprint, full_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (integration_id) DO UPDATE SET users_link = excluded.users_link, \
         groups_links = excluded.groups_links, assignments = excluded.assignments, \
         fingerprint = excluded.fingerprint, full_at = excluded.full_at, \
         updated_at = excluded.updated_at",
    )
    .bind(integration.as_str())
    .bind(state.users_link.as_str())
    .bind(groups)
    .bind(assignments)
    .bind(state.fingerprint.as_str())
    .bind(state.full_at)
    .bind(state.updated_at)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Forgets the integration's delta state and scope (its next cycle reads everything).
pub async fn clear_delta_state(
    c: &mut Conn,
    integration: &IntegrationId,
) -> Result<(), StoreError> {
    for sql in [
        "DELETE FROM graph_delta_state WHERE integration_id = $1",
        "DELETE FROM graph_scope WHERE integration_id = $1",
    ] {
        sqlx::query(sql)
            .bind(integration.as_str())
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

fn member_from_row(r: &DbRow) -> Result<ScopeMember, StoreError> {
    let groups: String = r.try_get("groups").map_err(db_err)?;
    Ok(ScopeMember {
        object_id: r.try_get("object_id").map_err(db_err)?,
        direct: r.try_get("direct").map_err(db_err)?,
        groups: groups.split_whitespace().map(str::to_owned).collect(),
        removed: r.try_get("removed").map_err(db_err)?,
        pending: r.try_get("pending").map_err(db_err)?,
    })
}

const MEMBER_COLS: &str = "object_id, direct, groups, removed, pending";

/// The scope rows of `ids` (lowercase object ids); ids without a row are simply not returned.
pub async fn scope_members(
    c: &mut Conn,
    integration: &IntegrationId,
    ids: &[String],
) -> Result<Vec<ScopeMember>, StoreError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT {MEMBER_COLS} FROM graph_scope WHERE integration_id = $1 AND object_id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(integration.as_str());
        for id in chunk {
            q = q.bind(id.as_str());
        }
        for r in q.fetch_all(&mut *c).await.map_err(db_err)? {
            out.push(member_from_row(&r)?);
        }
    }
    Ok(out)
}

/// The scope rows that name `group` among their groups, or that are pending (skipped by the last
/// plan) when `group` is empty.
pub async fn scope_members_where(
    c: &mut Conn,
    integration: &IntegrationId,
    group: Option<&str>,
) -> Result<Vec<ScopeMember>, StoreError> {
    let rows = match group {
        Some(g) => sqlx::query(AssertSqlSafe(format!(
            "SELECT {MEMBER_COLS} FROM graph_scope WHERE integration_id = $1 \
             AND (' ' || groups || ' ') LIKE $2"
        )))
        .bind(integration.as_str())
        .bind(format!("% {} %", g.replace(['%', '_'], "")))
        .fetch_all(&mut *c)
        .await
        .map_err(db_err)?,
        None => sqlx::query(AssertSqlSafe(format!(
            "SELECT {MEMBER_COLS} FROM graph_scope WHERE integration_id = $1 AND pending = $2"
        )))
        .bind(integration.as_str())
        .bind(true)
        .fetch_all(&mut *c)
        .await
        .map_err(db_err)?,
    };
    rows.iter().map(member_from_row).collect()
}

/// Makes the integration's scope rows exactly `members` (a full read's, one per object id),
/// writing only the rows that differ: a steady full reconcile writes none. The stored rows are
/// streamed and compared one by one against `members`, found by binary search when `members` is
/// sorted by object id (as a full read's are), so that 100,000 rows are never held twice. The
/// result does not depend on the order: a row not found is deleted and its member rewritten.
/// Returns the rows written and deleted.
pub async fn replace_scope_members(
    c: &mut Conn,
    integration: &IntegrationId,
    members: &[ScopeMember],
) -> Result<(usize, usize), StoreError> {
    use futures::TryStreamExt;
    let mut same = vec![false; members.len()];
    let mut gone: Vec<String> = Vec::new();
    {
        let sql = format!("SELECT {MEMBER_COLS} FROM graph_scope WHERE integration_id = $1");
        let mut rows = sqlx::query(AssertSqlSafe(sql))
            .bind(integration.as_str())
            .fetch(&mut *c);
        while let Some(r) = rows.try_next().await.map_err(db_err)? {
            let object_id: &str = r.try_get("object_id").map_err(db_err)?;
            let Ok(i) = members.binary_search_by(|m| m.object_id.as_str().cmp(object_id)) else {
                gone.push(object_id.to_owned());
                continue;
            };
            let m = &members[i];
            let groups: &str = r.try_get("groups").map_err(db_err)?;
            same[i] = m.direct == r.try_get::<bool, _>("direct").map_err(db_err)?
                && m.removed == r.try_get::<bool, _>("removed").map_err(db_err)?
                && m.pending == r.try_get::<bool, _>("pending").map_err(db_err)?
                && groups
                    .split_whitespace()
                    .eq(m.groups.iter().map(String::as_str));
        }
    }
    let changed: Vec<&ScopeMember> = members
        .iter()
        .zip(&same)
        .filter(|(_, same)| !**same)
        .map(|(m, _)| m)
        .collect();
    delete_scope_members(c, integration, &gone).await?;
    put_scope_members(c, integration, &changed).await?;
    Ok((changed.len(), gone.len()))
}

/// How many users the scope holds (not removed, assigned directly or through a group).
pub async fn scope_size(c: &mut Conn, integration: &IntegrationId) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM graph_scope WHERE integration_id = $1 AND removed = $2 \
         AND (direct = $3 OR groups <> '')",
    )
    .bind(integration.as_str())
    .bind(false)
    .bind(true)
    .fetch_one(&mut *c)
    .await
    .map_err(db_err)?;
    row.try_get("n").map_err(db_err)
}

/// Writes `members` (replacing rows of the same object id).
pub async fn put_scope_members(
    c: &mut Conn,
    integration: &IntegrationId,
    members: &[&ScopeMember],
) -> Result<(), StoreError> {
    for chunk in members.chunks(SCOPE_ROWS) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let b = 2 + i * 5;
                format!(
                    "($1, ${}, ${}, ${}, ${}, ${})",
                    b,
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO graph_scope (integration_id, object_id, direct, groups, removed, pending) \
             VALUES {} ON CONFLICT (integration_id, object_id) DO UPDATE SET \
             direct = excluded.direct, groups = excluded.groups, removed = excluded.removed, \
             pending = excluded.pending",
            values.join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(integration.as_str());
        for m in chunk {
            q = q
                .bind(m.object_id.as_str())
                .bind(m.direct)
                .bind(m.groups.join(" "))
                .bind(m.removed)
                .bind(m.pending);
        }
        q.execute(&mut *c).await.map_err(db_err)?;
    }
    Ok(())
}

/// Deletes the scope rows of `ids`.
pub async fn delete_scope_members(
    c: &mut Conn,
    integration: &IntegrationId,
    ids: &[String],
) -> Result<(), StoreError> {
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM graph_scope WHERE integration_id = $1 AND object_id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(integration.as_str());
        for id in chunk {
            q = q.bind(id.as_str());
        }
        q.execute(&mut *c).await.map_err(db_err)?;
    }
    Ok(())
}

/// Deletes every scope row of the integration (a full read rewrites them).
pub async fn clear_scope(c: &mut Conn, integration: &IntegrationId) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM graph_scope WHERE integration_id = $1")
        .bind(integration.as_str())
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(())
}

const LIGHT_COLS: &str = "u.id, u.account_id, u.user_name, u.given_name, u.family_name, \
    u.display_name, u.external_id, u.active, u.entra_object_id, u.source, u.version, \
    u.created_at, u.updated_at, u.managed_by";

/// Stored users (typed columns, `resource` empty) whose `column` is one of `values`: the Entra
/// object id, or the folded userName key.
async fn users_light_where(
    c: &mut Conn,
    account: &AccountId,
    column: &'static str,
    values: &[String],
) -> Result<Vec<UserRecord>, StoreError> {
    let mut out = Vec::new();
    for chunk in values.chunks(CHUNK) {
        let sql = format!(
            "SELECT {LIGHT_COLS} FROM users u WHERE u.account_id = $1 AND u.{column} IN ({})",
            placeholders(2, chunk.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(account.as_str());
        for v in chunk {
            q = q.bind(v.as_str());
        }
        for r in q.fetch_all(&mut *c).await.map_err(db_err)? {
            out.push(user_with_resource(&r, Map::new())?);
        }
    }
    Ok(out)
}

pub async fn users_light_by_object_ids(
    c: &mut Conn,
    account: &AccountId,
    ids: &[String],
) -> Result<Vec<UserRecord>, StoreError> {
    users_light_where(c, account, "entra_object_id", ids).await
}

pub async fn users_light_by_name_keys(
    c: &mut Conn,
    account: &AccountId,
    keys: &[String],
) -> Result<Vec<UserRecord>, StoreError> {
    users_light_where(c, account, "user_name_lower", keys).await
}

/// How many users of `account` `integration` manages.
pub async fn count_managed(
    c: &mut Conn,
    account: &AccountId,
    integration: &IntegrationId,
) -> Result<i64, StoreError> {
    let row =
        sqlx::query("SELECT COUNT(*) AS n FROM users WHERE account_id = $1 AND managed_by = $2")
            .bind(account.as_str())
            .bind(integration.as_str())
            .fetch_one(&mut *c)
            .await
            .map_err(db_err)?;
    row.try_get("n").map_err(db_err)
}
