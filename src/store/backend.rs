//! Queries shared by both backends. This file is a module of both `sqlite.rs` and `postgres.rs`
//! (`#[path]`), each of which defines `type Db`, so every function below is compiled — and type-checked
//! — once per database with that database's native types (TIMESTAMPTZ/BOOLEAN on PostgreSQL,
//! RFC 3339 text/0-1 integers on SQLite). The SQL is written once: both accept `$n` parameters,
//! `ON CONFLICT`, `RETURNING` and `LIKE ... ESCAPE`.

#[allow(unused_imports)]
pub(super) use super::{Db, ROW_LOCK};
pub(super) use chrono::{DateTime, Utc};
pub(super) use serde_json::{Map, Value};
pub(super) use sqlx::{AssertSqlSafe, Database, Row};

pub(super) use crate::domain::{
    AccountId, Appointment, AppointmentId, AppointmentStatus, CycleStatus, DirectoryUser,
    EntraObjectId, GroupId, GroupRecord, Guest, IntegrationId, IntegrationKind, LogEntry,
    OutboxMessage, Source, StoreError, Trigger, UserId, UserName, UserRecord, fold_key,
};
pub(super) use crate::store::sql_filter::{Param, Where};
pub(super) use crate::store::{
    AdminTokenInfo, AdminTokenRow, CycleRow, IntegrationRow, LogQuery, LogRow, OutboxRow, corrupt,
    db_err, skip_key,
};

pub type Conn = <Db as Database>::Connection;
pub(super) type DbRow = <Db as Database>::Row;

/// How many ids one `IN (...)` list or multi-row `VALUES` carries.
pub(super) const CHUNK: usize = 500;

pub(in crate::store) const USER_COLS: &str = "u.id, u.account_id, u.user_name, u.given_name, u.family_name, \
    u.display_name, u.external_id, u.active, u.entra_object_id, u.source, u.resource, \
    u.version, u.created_at, u.updated_at, u.managed_by";

pub(super) const GROUP_COLS: &str = "g.id, g.account_id, g.display_name, g.external_id, g.resource, \
    g.version, g.created_at, g.updated_at";

pub(super) fn bind_params<'q>(
    mut q: sqlx::query::Query<'q, Db, <Db as Database>::Arguments>,
    params: &'q [Param],
) -> sqlx::query::Query<'q, Db, <Db as Database>::Arguments> {
    for p in params {
        q = match p {
            Param::Text(s) => q.bind(s.as_str()),
            Param::Bool(b) => q.bind(*b),
            Param::Time(t) => q.bind(*t),
        };
    }
    q
}

pub(in crate::store) fn parse_resource(text: &str) -> Result<Map<String, Value>, StoreError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(corrupt("resource is not a JSON object")),
    }
}

pub(super) fn user_from_row(row: &DbRow) -> Result<UserRecord, StoreError> {
    let resource: String = row.try_get("resource").map_err(db_err)?;
    user_with_resource(row, parse_resource(&resource)?)
}

/// A user row's typed columns, with `resource` given by the caller.
pub(super) fn user_with_resource(
    row: &DbRow,
    resource: Map<String, Value>,
) -> Result<UserRecord, StoreError> {
    let user_name: String = row.try_get("user_name").map_err(db_err)?;
    let entra: Option<String> = row.try_get("entra_object_id").map_err(db_err)?;
    let source: String = row.try_get("source").map_err(db_err)?;
    Ok(UserRecord {
        id: UserId::from_trusted(row.try_get("id").map_err(db_err)?),
        account_id: AccountId::from_trusted(row.try_get("account_id").map_err(db_err)?),
        attrs: DirectoryUser {
            user_name: UserName::parse(&user_name).map_err(|_| corrupt("stored userName"))?,
            given_name: row.try_get("given_name").map_err(db_err)?,
            family_name: row.try_get("family_name").map_err(db_err)?,
            display_name: row.try_get("display_name").map_err(db_err)?,
            external_id: row.try_get("external_id").map_err(db_err)?,
            active: row.try_get("active").map_err(db_err)?,
            entra_object_id: entra.map(EntraObjectId::from_trusted),
            resource,
        },
        source: Source::parse(&source).ok_or_else(|| corrupt("user source"))?,
        managed_by: row
            .try_get::<Option<String>, _>("managed_by")
            .map_err(db_err)?
            .map(IntegrationId::from_trusted),
        version: row.try_get("version").map_err(db_err)?,
        created_at: row.try_get("created_at").map_err(db_err)?,
        updated_at: row.try_get("updated_at").map_err(db_err)?,
    })
}

pub(super) fn group_from_row(row: &DbRow) -> Result<GroupRecord, StoreError> {
    let resource: String = row.try_get("resource").map_err(db_err)?;
    Ok(GroupRecord {
        id: GroupId::from_trusted(row.try_get("id").map_err(db_err)?),
        account_id: AccountId::from_trusted(row.try_get("account_id").map_err(db_err)?),
        display_name: row.try_get("display_name").map_err(db_err)?,
        external_id: row.try_get("external_id").map_err(db_err)?,
        resource: parse_resource(&resource)?,
        version: row.try_get("version").map_err(db_err)?,
        created_at: row.try_get("created_at").map_err(db_err)?,
        updated_at: row.try_get("updated_at").map_err(db_err)?,
    })
}

/// Unicode NFC and case folding ([`fold_key`]) for the `*_lower` columns that case-insensitive
/// filters compare.
pub(in crate::store) fn folded(v: &Option<String>) -> Option<String> {
    v.as_deref().map(fold_key)
}

pub(super) fn resource_text(m: &Map<String, Value>) -> String {
    // A map serializes exactly as the object holding it, without copying it into one first.
    serde_json::to_string(m).unwrap_or_else(|_| Value::Object(m.clone()).to_string())
}

// ---------------------------------------------------------------------------------------------
// Accounts

pub async fn account_by_name(c: &mut Conn, name: &str) -> Result<Option<AccountId>, StoreError> {
    let id: Option<String> = sqlx::query_scalar("SELECT id FROM accounts WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(id.map(AccountId::from_trusted))
}

pub async fn ensure_account(
    c: &mut Conn,
    name: &str,
    now: DateTime<Utc>,
) -> Result<AccountId, StoreError> {
    if let Some(id) = account_by_name(c, name).await? {
        return Ok(id);
    }
    sqlx::query(
        "INSERT INTO accounts (id, name, time_zone, created_at) VALUES ($1, $2, 'UTC', $3) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(AccountId::generate().as_str())
    .bind(name)
    .bind(now)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    account_by_name(c, name)
        .await?
        .ok_or_else(|| corrupt("account vanished after insert"))
}

// ---------------------------------------------------------------------------------------------
// Integrations

pub(super) fn integration_from_row(row: &DbRow) -> Result<IntegrationRow, StoreError> {
    let settings: String = row.try_get("settings").map_err(db_err)?;
    Ok(IntegrationRow {
        id: IntegrationId::from_trusted(row.try_get("id").map_err(db_err)?),
        account_id: AccountId::from_trusted(row.try_get("account_id").map_err(db_err)?),
        account_name: row.try_get("account_name").map_err(db_err)?,
        name: row.try_get("name").map_err(db_err)?,
        kind: {
            let kind: String = row.try_get("kind").map_err(db_err)?;
            IntegrationKind::parse(&kind).ok_or_else(|| corrupt("integration kind"))?
        },
        token_hash: row.try_get("token_hash").map_err(db_err)?,
        token_hint: row.try_get("token_hint").map_err(db_err)?,
        secret_sealed: row.try_get("secret_sealed").map_err(db_err)?,
        settings: serde_json::from_str(&settings).map_err(|_| corrupt("integration settings"))?,
        created_at: row.try_get("created_at").map_err(db_err)?,
    })
}

pub(super) const INTEGRATION_SELECT: &str = "SELECT i.id, i.account_id, a.name AS account_name, i.name, \
    i.kind, i.token_hash, i.token_hint, i.secret_sealed, i.settings, i.created_at \
    FROM integrations i JOIN accounts a ON a.id = i.account_id";

pub async fn insert_integration(c: &mut Conn, row: &IntegrationRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO integrations (id, account_id, name, kind, token_hash, token_hint, \
         secret_sealed, settings, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(row.id.as_str())
    .bind(row.account_id.as_str())
    .bind(row.name.as_str())
    .bind(row.kind.as_str())
    .bind(row.token_hash.as_deref())
    .bind(row.token_hint.as_deref())
    .bind(row.secret_sealed.as_deref())
    .bind(row.settings.to_string())
    .bind(row.created_at)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub async fn list_integrations(
    c: &mut Conn,
    account: Option<&AccountId>,
) -> Result<Vec<IntegrationRow>, StoreError> {
    let rows = match account {
        Some(a) => {
            sqlx::query(AssertSqlSafe(format!(
                "{INTEGRATION_SELECT} WHERE i.account_id = $1 ORDER BY a.name, i.name"
            )))
            .bind(a.as_str())
            .fetch_all(&mut *c)
            .await
        }
        None => {
            sqlx::query(AssertSqlSafe(format!(
                "{INTEGRATION_SELECT} ORDER BY a.name, i.name"
            )))
            .fetch_all(&mut *c)
            .await
        }
    }
    .map_err(db_err)?;
    rows.iter().map(integration_from_row).collect()
}

pub async fn delete_integration(
    c: &mut Conn,
    account: &AccountId,
    name: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM integrations WHERE account_id = $1 AND name = $2")
        .bind(account.as_str())
        .bind(name)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected() > 0)
}

pub async fn integration_by_token_hash(
    c: &mut Conn,
    hash: &[u8],
) -> Result<Option<IntegrationRow>, StoreError> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "{INTEGRATION_SELECT} WHERE i.token_hash = $1"
    )))
    .bind(hash)
    .fetch_optional(&mut *c)
    .await
    .map_err(db_err)?;
    row.as_ref().map(integration_from_row).transpose()
}

// ---------------------------------------------------------------------------------------------
// Users

/// `lock`: inside a write transaction, lock the row until commit (PostgreSQL `FOR UPDATE`;
/// SQLite's single writer already serialises writes), so a concurrent writer waits and then
/// reads the committed version instead of losing an optimistic race.
pub async fn user_by_id(
    c: &mut Conn,
    account: &AccountId,
    id: &UserId,
    lock: bool,
) -> Result<Option<UserRecord>, StoreError> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {USER_COLS} FROM users u WHERE u.account_id = $1 AND u.id = $2{}",
        if lock { ROW_LOCK } else { "" }
    )))
    .bind(account.as_str())
    .bind(id.as_str())
    .fetch_optional(&mut *c)
    .await
    .map_err(db_err)?;
    row.as_ref().map(user_from_row).transpose()
}

pub async fn user_by_name(
    c: &mut Conn,
    account: &AccountId,
    name: &UserName,
) -> Result<Option<UserRecord>, StoreError> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {USER_COLS} FROM users u WHERE u.account_id = $1 AND u.user_name_lower = $2"
    )))
    .bind(account.as_str())
    .bind(name.key())
    .fetch_optional(&mut *c)
    .await
    .map_err(db_err)?;
    row.as_ref().map(user_from_row).transpose()
}

// User rows are written by the combined writes of `combined.rs`, with their log and email
// rows, through the binders below.

/// A query of this backend with its arguments, for the binders below.
pub(in crate::store) type Query<'q> = sqlx::query::Query<'q, Db, <Db as Database>::Arguments>;

/// Binds `user_insert_sql!`'s parameters `$1`–`$19`.
pub(in crate::store) fn bind_user_insert<'q>(q: Query<'q>, user: &'q UserRecord) -> Query<'q> {
    let a = &user.attrs;
    q.bind(user.id.as_str())
        .bind(user.account_id.as_str())
        .bind(a.user_name.as_str())
        .bind(a.user_name.key())
        .bind(a.given_name.as_deref())
        .bind(a.family_name.as_deref())
        .bind(a.display_name.as_deref())
        .bind(a.external_id.as_deref())
        .bind(a.active)
        .bind(a.entra_object_id.as_ref().map(|o| o.as_str()))
        .bind(user.source.as_str())
        .bind(resource_text(&a.resource))
        .bind(user.version)
        .bind(user.created_at)
        .bind(user.updated_at)
        .bind(folded(&a.given_name))
        .bind(folded(&a.family_name))
        .bind(folded(&a.display_name))
        .bind(user.managed_by.as_ref().map(|i| i.as_str()))
}

/// Binds `user_update_sql!`'s parameters `$1`–`$18`.
pub(in crate::store) fn bind_user_update<'q>(
    q: Query<'q>,
    user: &'q UserRecord,
    expected_version: i64,
) -> Query<'q> {
    let a = &user.attrs;
    q.bind(user.account_id.as_str())
        .bind(user.id.as_str())
        .bind(a.user_name.as_str())
        .bind(a.user_name.key())
        .bind(a.given_name.as_deref())
        .bind(a.family_name.as_deref())
        .bind(a.display_name.as_deref())
        .bind(a.external_id.as_deref())
        .bind(a.active)
        .bind(a.entra_object_id.as_ref().map(|o| o.as_str()))
        .bind(resource_text(&a.resource))
        .bind(user.version)
        .bind(user.updated_at)
        .bind(expected_version)
        .bind(folded(&a.given_name))
        .bind(folded(&a.family_name))
        .bind(folded(&a.display_name))
        .bind(user.managed_by.as_ref().map(|i| i.as_str()))
}

pub async fn delete_user(
    c: &mut Conn,
    account: &AccountId,
    id: &UserId,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM users WHERE account_id = $1 AND id = $2")
        .bind(account.as_str())
        .bind(id.as_str())
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected() > 0)
}

pub(super) fn where_sql(w: Option<&Where>) -> String {
    w.map(|w| format!(" AND {}", w.sql)).unwrap_or_default()
}

/// The query of one page of `SELECT {cols} FROM {from}` rows of the account `$1` in creation
/// order (`alias.seq`), with `filter` parameters numbered from `$2` (also run by the point
/// readers of `point_read.rs`).
pub(in crate::store) fn page_sql(
    (cols, from, alias): (&str, &str, &str),
    filter: Option<&Where>,
    offset: i64,
    limit: i64,
) -> String {
    format!(
        "SELECT {cols} FROM {from} WHERE {alias}.account_id = $1{} ORDER BY {alias}.seq LIMIT {} OFFSET {}",
        where_sql(filter),
        limit.max(0),
        offset.max(0)
    )
}

/// The query counting the rows of `from` of the account `$1` that match `filter`.
pub(in crate::store) fn count_sql((from, alias): (&str, &str), filter: Option<&Where>) -> String {
    format!(
        "SELECT COUNT(*) AS n FROM {from} WHERE {alias}.account_id = $1{}",
        where_sql(filter)
    )
}

/// One page of `SELECT {cols} FROM {from}` rows of `account` in creation order (`alias.seq`),
/// with `filter` parameters numbered from `$2`.
async fn fetch_page(
    c: &mut Conn,
    (cols, from, alias): (&str, &str, &str),
    account: &AccountId,
    filter: Option<&Where>,
    offset: i64,
    limit: i64,
) -> Result<Vec<DbRow>, StoreError> {
    let sql = page_sql((cols, from, alias), filter, offset, limit);
    let q = sqlx::query(AssertSqlSafe(sql)).bind(account.as_str());
    let q = bind_params(q, filter.map(|w| w.params.as_slice()).unwrap_or(&[]));
    q.fetch_all(&mut *c).await.map_err(db_err)
}

/// How many rows of `from` (aliased `alias`) of `account` match `filter`.
async fn count_matching(
    c: &mut Conn,
    (from, alias): (&str, &str),
    account: &AccountId,
    filter: Option<&Where>,
) -> Result<i64, StoreError> {
    let sql = count_sql((from, alias), filter);
    let q = sqlx::query(AssertSqlSafe(sql)).bind(account.as_str());
    let q = bind_params(q, filter.map(|w| w.params.as_slice()).unwrap_or(&[]));
    let row = q.fetch_one(&mut *c).await.map_err(db_err)?;
    row.try_get("n").map_err(db_err)
}

/// One page of users in creation order.
pub async fn list_users(
    c: &mut Conn,
    account: &AccountId,
    filter: Option<&Where>,
    offset: i64,
    limit: i64,
) -> Result<Vec<UserRecord>, StoreError> {
    let rows = fetch_page(
        c,
        (USER_COLS, "users u", "u"),
        account,
        filter,
        offset,
        limit,
    )
    .await?;
    rows.iter().map(user_from_row).collect()
}

/// Every user of `account` for the pull sync's planner: the typed columns only (`resource` is
/// left empty and never read or parsed), decoded row by row as they stream in so the raw rows of
/// a large directory are never all held at once.
pub async fn list_users_light(
    c: &mut Conn,
    account: &AccountId,
) -> Result<Vec<UserRecord>, StoreError> {
    use futures::TryStreamExt;
    // Sized up front: grown by doubling, the vector of 100,000 users would be copied at
    // 65,536 and briefly held twice. The count is only a hint (a SCIM create may land between).
    let expected = count_users(&mut *c, account, None).await?;
    let mut out = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    let mut rows = sqlx::query(
        "SELECT u.id, u.account_id, u.user_name, u.given_name, u.family_name, u.display_name, \
         u.external_id, u.active, u.entra_object_id, u.source, u.version, u.created_at, \
         u.updated_at, u.managed_by FROM users u WHERE u.account_id = $1 ORDER BY u.seq",
    )
    .bind(account.as_str())
    .fetch(&mut *c);
    while let Some(row) = rows.try_next().await.map_err(db_err)? {
        out.push(user_with_resource(&row, Map::new())?);
    }
    Ok(out)
}

pub async fn count_users(
    c: &mut Conn,
    account: &AccountId,
    filter: Option<&Where>,
) -> Result<i64, StoreError> {
    count_matching(c, ("users u", "u"), account, filter).await
}

// ---------------------------------------------------------------------------------------------
// Groups

pub async fn insert_group(c: &mut Conn, g: &GroupRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO groups (id, account_id, display_name, display_name_lower, external_id, \
         resource, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(g.id.as_str())
    .bind(g.account_id.as_str())
    .bind(g.display_name.as_str())
    .bind(fold_key(&g.display_name))
    .bind(g.external_id.as_deref())
    .bind(resource_text(&g.resource))
    .bind(g.version)
    .bind(g.created_at)
    .bind(g.updated_at)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub async fn group_by_id(
    c: &mut Conn,
    account: &AccountId,
    id: &GroupId,
    lock: bool,
) -> Result<Option<GroupRecord>, StoreError> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {GROUP_COLS} FROM groups g WHERE g.account_id = $1 AND g.id = $2{}",
        if lock { ROW_LOCK } else { "" }
    )))
    .bind(account.as_str())
    .bind(id.as_str())
    .fetch_optional(&mut *c)
    .await
    .map_err(db_err)?;
    row.as_ref().map(group_from_row).transpose()
}

/// Writes `g` (carrying its new version) if the stored version is still `expected_version`.
pub async fn update_group(
    c: &mut Conn,
    g: &GroupRecord,
    expected_version: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE groups SET display_name = $3, display_name_lower = $4, external_id = $5, \
         resource = $6, version = $7, updated_at = $8 \
         WHERE account_id = $1 AND id = $2 AND version = $9",
    )
    .bind(g.account_id.as_str())
    .bind(g.id.as_str())
    .bind(g.display_name.as_str())
    .bind(fold_key(&g.display_name))
    .bind(g.external_id.as_deref())
    .bind(resource_text(&g.resource))
    .bind(g.version)
    .bind(g.updated_at)
    .bind(expected_version)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected() > 0)
}

pub async fn delete_group(
    c: &mut Conn,
    account: &AccountId,
    id: &GroupId,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM groups WHERE account_id = $1 AND id = $2")
        .bind(account.as_str())
        .bind(id.as_str())
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected() > 0)
}

pub async fn list_groups(
    c: &mut Conn,
    account: &AccountId,
    filter: Option<&Where>,
    offset: i64,
    limit: i64,
) -> Result<Vec<GroupRecord>, StoreError> {
    let rows = fetch_page(
        c,
        (GROUP_COLS, "groups g", "g"),
        account,
        filter,
        offset,
        limit,
    )
    .await?;
    rows.iter().map(group_from_row).collect()
}

pub async fn count_groups(
    c: &mut Conn,
    account: &AccountId,
    filter: Option<&Where>,
) -> Result<i64, StoreError> {
    count_matching(c, ("groups g", "g"), account, filter).await
}

pub(super) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The ids among `ids` that are not users of `account`.
pub async fn missing_users(
    c: &mut Conn,
    account: &AccountId,
    ids: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut missing = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT id FROM users WHERE account_id = $1 AND id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut q = sqlx::query_scalar::<Db, String>(AssertSqlSafe(sql)).bind(account.as_str());
        for id in chunk {
            q = q.bind(id.as_str());
        }
        let found: std::collections::HashSet<String> = q
            .fetch_all(&mut *c)
            .await
            .map_err(db_err)?
            .into_iter()
            .collect();
        missing.extend(chunk.iter().filter(|id| !found.contains(*id)).cloned());
    }
    Ok(missing)
}

/// Adds members (already known to exist); ones already present are skipped.
pub async fn add_members(c: &mut Conn, group: &GroupId, ids: &[String]) -> Result<(), StoreError> {
    for chunk in ids.chunks(CHUNK) {
        let values = (0..chunk.len())
            .map(|i| format!("($1, ${})", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO group_members (group_id, user_id) VALUES {values} ON CONFLICT DO NOTHING"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(group.as_str());
        for id in chunk {
            q = q.bind(id.as_str());
        }
        q.execute(&mut *c).await.map_err(db_err)?;
    }
    Ok(())
}

pub async fn remove_members(
    c: &mut Conn,
    group: &GroupId,
    ids: &[String],
) -> Result<(), StoreError> {
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM group_members WHERE group_id = $1 AND user_id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(group.as_str());
        for id in chunk {
            q = q.bind(id.as_str());
        }
        q.execute(&mut *c).await.map_err(db_err)?;
    }
    Ok(())
}

pub async fn clear_members(c: &mut Conn, group: &GroupId) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM group_members WHERE group_id = $1")
        .bind(group.as_str())
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Member user ids with their userName, in a stable order.
pub async fn members_of(
    c: &mut Conn,
    group: &GroupId,
) -> Result<Vec<(String, String)>, StoreError> {
    let rows = sqlx::query(
        "SELECT m.user_id, COALESCE(NULLIF(u.display_name, ''), u.user_name) AS display \
         FROM group_members m JOIN users u ON u.id = m.user_id \
         WHERE m.group_id = $1 ORDER BY u.seq",
    )
    .bind(group.as_str())
    .fetch_all(&mut *c)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("user_id").map_err(db_err)?,
                r.try_get("display").map_err(db_err)?,
            ))
        })
        .collect()
}

pub async fn member_count(c: &mut Conn, group: &GroupId) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT COUNT(*) FROM group_members WHERE group_id = $1")
        .bind(group.as_str())
        .fetch_one(&mut *c)
        .await
        .map_err(db_err)
}
