//! Storage with sqlx, for both backends: SQLite (embedded default, a file under `data/`) and
//! PostgreSQL (`DATABASE_URL=postgres://...`, for several replicas).
//!
//! Design: the SQL lives once, in `backend.rs` (accounts, integrations, users, groups),
//! `backend_events.rs` (appointments, outbox, provisioning log, cycles), `backend_outbox.rs`
//! (delivery claims), `backend_deletions.rs` (ownership, staged deletions), `backend_delta.rs` (the Graph sync's delta
//! state, in `delta.rs`), `backend_metrics.rs`
//! (gauges, migration check), `backend_tokens.rs` (admin tokens) and `backend_console.rs` (the
//! console's sessions, audit trail and paged lists). `sqlite.rs` and
//! `postgres.rs` each name their `Db` and load these files as their own modules (`#[path]`), so
//! rustfmt and clippy see them as ordinary modules and every query is compiled against each
//! database's own driver and native types — no `Any` driver, which cannot decode timestamps or booleans
//! portably, and no `query!` macros, which would need a live database or committed offline data
//! at build time. [`Store`] and [`Tx`] pick the backend at run time and forward to it. The records
//! live in `rows.rs`; `lock.rs` holds the cross-process locks (cycles, one `serve` per SQLite);
//! `point_read.rs` runs SQLite's indexed point reads on the caller's thread;
//! `group_commit.rs` lets concurrent writes share one transaction (a savepoint each, kept in
//! `savepoint.rs`); `combined.rs` sends a user's create or update with its log and email rows as
//! one query (SQLite: one multi-statement query; PostgreSQL: one statement of data-modifying
//! CTEs); `wal.rs` checkpoints SQLite's write-ahead log in the
//! background, off the writer's commit path; and `auth_epoch.rs` tells token caches that an
//! integration was deleted.

use chrono::{DateTime, Utc};

use crate::domain::query::Filter;
use crate::domain::{
    AccountId, Appointment, AppointmentId, DirectoryTx, EntraObjectId, GroupId, GroupRecord,
    IntegrationId, LogEntry, Manager, OutboxMessage, StoreError, UserId, UserName, UserRecord,
};

// The statements that the combined writes (`combined.rs`) string together with others, written
// once as literals (so `concat!` can join them) and bound by `bind_user_insert`,
// `bind_user_update` (`backend.rs`) and `bind_log` (`backend_events.rs`).

/// A user row's insert unless its userName is taken in the account: `$1`–`$19`.
macro_rules! user_insert_sql {
    () => {
        "INSERT INTO users (id, account_id, user_name, user_name_lower, given_name, family_name, \
         display_name, external_id, active, entra_object_id, source, resource, version, \
         created_at, updated_at, given_name_lower, family_name_lower, display_name_lower, \
         managed_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
         $19) ON CONFLICT (account_id, user_name_lower) DO NOTHING"
    };
}

/// A user row's update if it is still at the expected version (`$14`): `$1`–`$18`.
macro_rules! user_update_sql {
    () => {
        "UPDATE users SET user_name = $3, user_name_lower = $4, given_name = $5, \
         family_name = $6, display_name = $7, external_id = $8, active = $9, \
         entra_object_id = $10, resource = $11, version = $12, updated_at = $13, \
         given_name_lower = $15, family_name_lower = $16, display_name_lower = $17, \
         managed_by = $18 \
         WHERE account_id = $1 AND id = $2 AND version = $14"
    };
}

/// The columns of a provisioning-log row, in `bind_log`'s order (15 parameters).
macro_rules! log_columns_sql {
    () => {
        "INSERT INTO provisioning_log (id, account_id, integration_id, cycle_id, source, action, \
         status, user_id, user_name, source_object_id, modified, error_code, error_message, \
         duration_ms, at) "
    };
}

mod auth_epoch;
mod combined;
mod group_commit;
pub mod lock;
mod point_read;
mod postgres;
mod rows;
mod savepoint;
pub mod sql_filter;
mod sqlite;
mod wal;

use sql_filter::{Target, Where, total_from_page};

pub use auth_epoch::AuthEpoch;
pub use group_commit::GroupCommit;
pub use rows::*;
pub use savepoint::{RequestEnd, Savepoint};

/// Maps a driver error: uniqueness violations become [`StoreError::Conflict`]; everything else is
/// a database error (never "not found").
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    if let Some(d) = e.as_database_error()
        && d.is_unique_violation()
    {
        return StoreError::Conflict(d.constraint().unwrap_or("row").to_owned());
    }
    StoreError::Database(Box::new(e))
}

/// Why a filtered list could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The filter names an attribute or operator the store cannot query.
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The SQL of a filter; `$1` is always the account, so its parameters start at `$2`.
fn translated(filter: Option<&Filter>, target: Target) -> Result<Option<Where>, ListError> {
    filter
        .map(|f| sql_filter::translate(f, target, 2))
        .transpose()
        .map_err(|e| ListError::Unsupported(e.0))
}

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Database(format!("stored data is corrupt: {what}").into())
}

/// Where the directory lives.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://path/to/file.db` (or a plain path), or `postgres://...`.
    pub url: String,
    pub max_connections: u32,
    /// PostgreSQL only: a schema to create and use (tests isolate themselves with it).
    pub pg_schema: Option<String>,
}

#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// An open write transaction. Dropped without [`Tx::commit`], it rolls back. On SQLite it also
/// knows where the current request of a shared transaction stands with its savepoint
/// ([`GroupCommit`], [`Savepoint`]).
pub enum Tx {
    Sqlite(
        sqlx::Transaction<'static, sqlx::Sqlite>,
        Savepoint,
        std::sync::Arc<wal::Checkpointer>,
    ),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Runs `$body` with `$c` bound to a read connection of whichever backend `$store` is and `$m`
/// naming that backend's query module.
macro_rules! read {
    ($store:expr, |$c:ident, $m:ident| $body:expr) => {
        match $store {
            Store::Sqlite(s) => {
                let mut conn = s.read.acquire().await.map_err(db_err)?;
                let $c = &mut *conn;
                use sqlite as $m;
                $body
            }
            Store::Postgres(s) => {
                let mut conn = s.pool.acquire().await.map_err(db_err)?;
                let $c = &mut *conn;
                use postgres as $m;
                $body
            }
        }
    };
}

/// Runs `$body` with `$c` bound to the transaction's connection. In a shared SQLite transaction
/// the request's savepoint is opened first, if it is not yet ([`Savepoint::enter`]).
macro_rules! in_tx {
    ($tx:expr, |$c:ident, $m:ident| $body:expr) => {
        match $tx {
            Tx::Sqlite(t, sp, _) => match sp.enter(t).await {
                Err(e) => Err(e.into()),
                Ok(()) => {
                    let $c = &mut **t;
                    use sqlite as $m;
                    $body
                }
            },
            Tx::Postgres(t) => {
                let $c = &mut **t;
                use postgres as $m;
                $body
            }
        }
    };
}

mod console;
pub mod delta;
pub use console::{
    AuditRow, LogFilter, LogPageRow, NewAudit, OutboxPageRow, SessionRow, UserPageRow,
};

impl Store {
    pub async fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
        let url = config.url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pg =
                postgres::PgStore::open(url, config.max_connections, config.pg_schema.as_deref())
                    .await?;
            return Ok(Self::Postgres(pg));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() || path == ":memory:" {
            return Err(StoreError::Database(
                "SQLite needs a file (the writer and the readers share it), e.g. sqlite://data/essentry.db".into(),
            ));
        }
        let lite =
            sqlite::SqliteStore::open(std::path::Path::new(path), config.max_connections).await?;
        Ok(Self::Sqlite(lite))
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
        }
    }

    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Self::Sqlite(s) => {
                Tx::Sqlite(s.begin().await?, Savepoint::Direct, s.checkpoints.clone())
            }
            Self::Postgres(s) => Tx::Postgres(s.begin().await?),
        })
    }

    /// The account named `name`, created on first use.
    pub async fn ensure_account(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<AccountId, StoreError> {
        let mut tx = self.begin().await?;
        let id = in_tx!(&mut tx, |c, m| m::ensure_account(c, name, now).await)?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn account_by_name(&self, name: &str) -> Result<Option<AccountId>, StoreError> {
        read!(self, |c, m| m::account_by_name(c, name).await)
    }

    pub async fn list_integrations(
        &self,
        account: Option<&AccountId>,
    ) -> Result<Vec<IntegrationRow>, StoreError> {
        read!(self, |c, m| m::list_integrations(c, account).await)
    }

    pub async fn integration_by_token_hash(
        &self,
        hash: &[u8],
    ) -> Result<Option<IntegrationRow>, StoreError> {
        read!(self, |c, m| m::integration_by_token_hash(c, hash).await)
    }

    pub async fn user_by_id(
        &self,
        account: &AccountId,
        id: &UserId,
    ) -> Result<Option<UserRecord>, StoreError> {
        if let Self::Sqlite(s) = self
            && let Some(found) = s.point.user_by_id(account, id)
        {
            return found;
        }
        // Boxed, so that the future of this hot call stays small on the point path above
        // (it is copied whole whenever a caller's future is boxed; see `list_users_where`).
        Box::pin(async move { read!(self, |c, m| m::user_by_id(c, account, id, false).await) })
            .await
    }

    pub async fn user_by_name(
        &self,
        account: &AccountId,
        name: &UserName,
    ) -> Result<Option<UserRecord>, StoreError> {
        if let Self::Sqlite(s) = self
            && let Some(found) = s.point.user_by_name(account, name)
        {
            return found;
        }
        Box::pin(async move { read!(self, |c, m| m::user_by_name(c, account, name).await) }).await
    }

    /// Every user of the account with its typed attributes only (`resource` empty), for the
    /// pull sync's planner; see `backend::list_users_light`.
    pub async fn list_users_light(
        &self,
        account: &AccountId,
    ) -> Result<Vec<UserRecord>, StoreError> {
        read!(self, |c, m| m::list_users_light(c, account).await)
    }

    /// A page of the account's users matching `filter` (all when `None`) and, when asked, the
    /// total count of matches. The store translates the filter into SQL itself; a filter on an
    /// attribute it cannot query is [`ListError::Unsupported`], never an unfiltered list.
    pub async fn list_users(
        &self,
        account: &AccountId,
        filter: Option<&Filter>,
        offset: i64,
        limit: i64,
        with_total: bool,
    ) -> Result<(Vec<UserRecord>, Option<i64>), ListError> {
        let filter = translated(filter, Target::User)?;
        Ok(self
            .list_users_where(account, filter.as_ref(), offset, limit, with_total)
            .await?)
    }

    /// Users that remember the Entra object id `oid` (at most `limit`).
    pub async fn users_by_entra_object_id(
        &self,
        account: &AccountId,
        oid: &EntraObjectId,
        limit: i64,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let filter = sql_filter::entra_object_id_eq(oid.as_str());
        Ok(self
            .list_users_where(account, Some(&filter), 0, limit, false)
            .await?
            .0)
    }

    async fn list_users_where(
        &self,
        account: &AccountId,
        filter: Option<&Where>,
        offset: i64,
        limit: i64,
        with_total: bool,
    ) -> Result<(Vec<UserRecord>, Option<i64>), StoreError> {
        if let (Self::Sqlite(s), Some(w)) = (self, filter)
            && let Some(found) = s.point.users_where(account, w, offset, limit, with_total)
        {
            return found;
        }
        // The database round trips are boxed: their futures (a pool's acquire above all) are
        // kilobytes, and without the box every future awaiting this one carried them, copied
        // whole each time axum or a middleware boxes a request's future — a measurable share
        // of a SCIM lookup that the point path above had already answered.
        Box::pin(async move {
            read!(self, |c, m| {
                let rows = m::list_users(c, account, filter, offset, limit).await?;
                let total = total_from_page(with_total, offset, limit, rows.len())
                    .total(m::count_users(c, account, filter))
                    .await?;
                Ok((rows, total))
            })
        })
        .await
    }

    pub async fn group_by_id(
        &self,
        account: &AccountId,
        id: &GroupId,
    ) -> Result<Option<GroupRecord>, StoreError> {
        read!(self, |c, m| m::group_by_id(c, account, id, false).await)
    }

    /// A page of the account's groups matching `filter`, like [`Store::list_users`].
    pub async fn list_groups(
        &self,
        account: &AccountId,
        filter: Option<&Filter>,
        offset: i64,
        limit: i64,
        with_total: bool,
    ) -> Result<(Vec<GroupRecord>, Option<i64>), ListError> {
        let filter = translated(filter, Target::Group)?;
        let filter = filter.as_ref();
        // Boxed like `list_users_where`'s round trips.
        Ok(Box::pin(async move {
            read!(self, |c, m| {
                let rows = m::list_groups(c, account, filter, offset, limit).await?;
                let total = total_from_page(with_total, offset, limit, rows.len())
                    .total(m::count_groups(c, account, filter))
                    .await?;
                Ok::<_, StoreError>((rows, total))
            })
        })
        .await?)
    }

    /// `(user id, userName)` of every member of `group`.
    /// A group's members in insertion order: each user's id and `display` (the user's
    /// displayName, else their userName).
    pub async fn members_of(&self, group: &GroupId) -> Result<Vec<(String, String)>, StoreError> {
        read!(self, |c, m| m::members_of(c, group).await)
    }

    pub async fn member_count(&self, group: &GroupId) -> Result<i64, StoreError> {
        read!(self, |c, m| m::member_count(c, group).await)
    }

    pub async fn list_appointments(
        &self,
        account: &AccountId,
    ) -> Result<Vec<Appointment>, StoreError> {
        read!(self, |c, m| m::list_appointments(c, account).await)
    }

    pub async fn list_outbox(&self, account: &AccountId) -> Result<Vec<OutboxRow>, StoreError> {
        read!(self, |c, m| m::list_outbox(c, account).await)
    }

    pub async fn list_log(
        &self,
        account: &AccountId,
        query: &LogQuery,
    ) -> Result<Vec<LogRow>, StoreError> {
        read!(self, |c, m| m::list_log(c, account, query).await)
    }

    pub async fn recent_cycles(
        &self,
        account: &AccountId,
        integration: Option<&IntegrationId>,
        limit: i64,
    ) -> Result<Vec<CycleRow>, StoreError> {
        read!(self, |c, m| m::recent_cycles(
            c,
            account,
            integration,
            limit
        )
        .await)
    }

    pub async fn logged_skip_keys(
        &self,
        integration: &IntegrationId,
        since: DateTime<Utc>,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        read!(self, |c, m| Ok(m::logged_skip_keys(c, integration, since)
            .await?
            .into_iter()
            .collect()))
    }

    pub async fn admin_token_by_hash(
        &self,
        hash: &[u8],
    ) -> Result<Option<AdminTokenRow>, StoreError> {
        read!(self, |c, m| m::admin_token_by_hash(c, hash).await)
    }

    /// Every admin token (never the token or its hash), oldest first.
    pub async fn list_admin_tokens(&self) -> Result<Vec<AdminTokenInfo>, StoreError> {
        read!(self, |c, m| m::list_admin_tokens(c).await)
    }

    /// Revokes (deletes) the admin token `name`; `false` when there is none.
    pub async fn revoke_admin_token(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = in_tx!(&mut tx, |c, m| m::delete_admin_token(c, name).await)?;
        tx.commit().await?;
        Ok(done)
    }

    /// Records that the admin token `id` was used at `now`, unless a use at or after
    /// `stale_before` is already recorded.
    pub async fn touch_admin_token(
        &self,
        id: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        in_tx!(&mut tx, |c, m| m::touch_admin_token(
            c,
            id,
            now,
            stale_before
        )
        .await)?;
        tx.commit().await
    }

    /// For `/metrics` (`backend_metrics.rs`): pending outbox messages, when the oldest of them
    /// was queued, and dead ones.
    pub async fn outbox_gauges(&self) -> Result<(i64, Option<DateTime<Utc>>, i64), StoreError> {
        read!(self, |c, m| m::outbox_gauges(c).await)
    }

    /// For `/readyz` (`backend_metrics.rs`): why the schema is not the one this build embeds
    /// (missing, failed or altered migrations); empty when it is current.
    pub async fn migration_problems(&self) -> Result<Vec<String>, StoreError> {
        read!(self, |c, m| m::migration_problems(c).await)
    }

    /// After a write that changed a large part of the directory (a first sync of a tenant), brings
    /// the database's planner statistics up to date for the tables a sync writes, so that the
    /// cycles right after it do not plan their reads from the statistics of the tables as they
    /// were before (empty). PostgreSQL only (`ANALYZE` of the users, their emails, the provisioning
    /// log and the Graph scope rows, waiting at most 5 s for a table that autovacuum is analyzing
    /// already); SQLite plans these lookups from its indexes alone, and the answer there is
    /// `false`, nothing done.
    pub async fn refresh_planner_statistics(&self) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(_) => Ok(false),
            Self::Postgres(s) => s.analyze_sync_tables().await.map(|()| true),
        }
    }

    /// Runs a raw statement (tests use it to install failure triggers). Not for request data.
    pub async fn execute_raw(&self, sql: &'static str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        match &mut tx {
            Tx::Sqlite(t, _, _) => sqlx::raw_sql(sql).execute(&mut **t).await.map(|_| ()),
            Tx::Postgres(t) => sqlx::raw_sql(sql).execute(&mut **t).await.map(|_| ()),
        }
        .map_err(db_err)?;
        tx.commit().await
    }
}

impl Tx {
    /// Starts a request of a shared transaction ([`GroupCommit`]): its savepoint opens with its
    /// first statement (see [`Savepoint`]).
    pub fn begin_request(&mut self) {
        if let Self::Sqlite(_, sp, _) = self {
            sp.begin_request();
        }
    }

    /// Ends the current request of a shared transaction, keeping or undoing its writes (see
    /// [`RequestEnd`]). An error means the shared transaction must be abandoned.
    pub async fn end_request(&mut self, end: RequestEnd) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(t, sp, _) => sp.end_request(t, end).await,
            Self::Postgres(_) => Ok(()),
        }
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(t, _, checkpoints) => {
                t.commit().await.map_err(db_err)?;
                checkpoints.committed();
                Ok(())
            }
            Self::Postgres(t) => t.commit().await.map_err(db_err),
        }
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(t, _, _) => t.rollback().await.map_err(db_err),
            Self::Postgres(t) => t.rollback().await.map_err(db_err),
        }
    }

    pub async fn start_cycle(
        &mut self,
        account: &AccountId,
        cycle: &CycleRow,
    ) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::start_cycle(c, account, cycle).await)
    }

    pub async fn finish_cycle(&mut self, cycle: &CycleRow) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::finish_cycle(c, cycle).await)
    }

    pub async fn purge_before(&mut self, cutoff: DateTime<Utc>) -> Result<(u64, u64), StoreError> {
        in_tx!(self, |c, m| m::purge_before(c, cutoff).await)
    }

    pub async fn insert_admin_token(&mut self, token: &AdminTokenRow) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::insert_admin_token(c, token).await)
    }

    pub async fn insert_integration(&mut self, row: &IntegrationRow) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::insert_integration(c, row).await)
    }

    pub async fn delete_integration(
        &mut self,
        account: &AccountId,
        name: &str,
    ) -> Result<bool, StoreError> {
        in_tx!(self, |c, m| m::delete_integration(c, account, name).await)
    }

    pub async fn insert_appointment(&mut self, a: &Appointment) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::insert_appointment(c, a).await)
    }

    pub async fn insert_group(&mut self, g: &GroupRecord) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::insert_group(c, g).await)
    }

    pub async fn group_by_id(
        &mut self,
        account: &AccountId,
        id: &GroupId,
    ) -> Result<Option<GroupRecord>, StoreError> {
        in_tx!(self, |c, m| m::group_by_id(c, account, id, true).await)
    }

    pub async fn update_group(
        &mut self,
        g: &GroupRecord,
        expected_version: i64,
    ) -> Result<bool, StoreError> {
        in_tx!(self, |c, m| m::update_group(c, g, expected_version).await)
    }

    pub async fn delete_group(
        &mut self,
        account: &AccountId,
        id: &GroupId,
    ) -> Result<bool, StoreError> {
        in_tx!(self, |c, m| m::delete_group(c, account, id).await)
    }

    pub async fn missing_users(
        &mut self,
        account: &AccountId,
        ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        in_tx!(self, |c, m| m::missing_users(c, account, ids).await)
    }

    pub async fn add_members(&mut self, group: &GroupId, ids: &[String]) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::add_members(c, group, ids).await)
    }

    pub async fn remove_members(
        &mut self,
        group: &GroupId,
        ids: &[String],
    ) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::remove_members(c, group, ids).await)
    }

    pub async fn clear_members(&mut self, group: &GroupId) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::clear_members(c, group).await)
    }
}

impl DirectoryTx for Tx {
    async fn user_by_id(
        &mut self,
        account: &AccountId,
        id: &UserId,
    ) -> Result<Option<UserRecord>, StoreError> {
        in_tx!(self, |c, m| m::user_by_id(c, account, id, true).await)
    }

    async fn user_by_name(
        &mut self,
        account: &AccountId,
        name: &UserName,
    ) -> Result<Option<UserRecord>, StoreError> {
        in_tx!(self, |c, m| m::user_by_name(c, account, name).await)
    }

    async fn insert_user_logged(
        &mut self,
        user: &UserRecord,
        entry: &LogEntry,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(t, sp, _) => combined::insert_user_logged(t, sp, user, entry).await,
            Self::Postgres(t) => combined::pg_insert_user_logged(t, user, entry).await,
        }
    }

    async fn update_user_logged(
        &mut self,
        user: &UserRecord,
        expected_version: i64,
        emails_changed: bool,
        entry: &LogEntry,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(t, sp, _) => {
                combined::update_user_logged(t, sp, user, expected_version, emails_changed, entry)
                    .await
            }
            Self::Postgres(t) => {
                combined::pg_update_user_logged(t, user, expected_version, emails_changed, entry)
                    .await
            }
        }
    }

    async fn delete_user(&mut self, account: &AccountId, id: &UserId) -> Result<bool, StoreError> {
        in_tx!(self, |c, m| m::delete_user(c, account, id).await)
    }

    async fn upcoming_hosted(
        &mut self,
        account: &AccountId,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Appointment>, StoreError> {
        in_tx!(self, |c, m| m::upcoming_hosted(c, account, user, now).await)
    }

    async fn cancel_appointment(
        &mut self,
        id: &AppointmentId,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::cancel_appointment(c, id, now, reason).await)
    }

    async fn enqueue(&mut self, messages: &[OutboxMessage]) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::enqueue(c, messages).await)
    }

    async fn write_log(&mut self, entry: &LogEntry) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::write_log(c, entry).await)
    }

    async fn integration_of(&mut self, id: &IntegrationId) -> Result<Option<Manager>, StoreError> {
        in_tx!(self, |c, m| m::integration_of(c, id).await)
    }
}

// Ownership and deletion review: the queries are in `backend_deletions.rs`.
mod deletions;

// Outbox delivery: the queries are in `backend_outbox.rs`, the worker is `crate::notify`.
impl Store {
    /// Claims up to `limit` due messages in one transaction (PostgreSQL: `FOR UPDATE SKIP
    /// LOCKED`, so concurrent workers never claim the same row).
    pub async fn claim_outbox(&self, req: &ClaimRequest<'_>) -> Result<OutboxClaim, StoreError> {
        let token = uuid::Uuid::new_v4().to_string();
        let mut tx = self.begin().await?;
        let claim = in_tx!(&mut tx, |c, m| {
            let mut claim = m::claim_outbox(c, req, &token).await?;
            let mut zones: std::collections::HashMap<String, String> = Default::default();
            for msg in &mut claim.messages {
                let key = msg.account_id.as_str().to_owned();
                if !zones.contains_key(&key) {
                    let zone = m::account_time_zone(c, &msg.account_id).await?;
                    zones.insert(key.clone(), zone.unwrap_or_else(|| "UTC".to_owned()));
                }
                msg.time_zone = zones[&key].clone();
            }
            Ok::<_, StoreError>(claim)
        })?;
        tx.commit().await?;
        Ok(claim)
    }

    /// Records a delivered message (`false`: it was already recorded, or is gone).
    pub async fn outbox_sent(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = in_tx!(&mut tx, |c, m| m::mark_outbox_sent(c, id, now).await)?;
        tx.commit().await?;
        Ok(done)
    }

    /// Records a failed attempt of the claim `token`: back to `pending` until `next_attempt_at`,
    /// or `dead`. `false`: the claim was no longer this worker's.
    pub async fn outbox_failed(
        &self,
        id: &str,
        token: &str,
        dead: bool,
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = in_tx!(&mut tx, |c, m| m::mark_outbox_failed(
            c,
            id,
            token,
            dead,
            error,
            next_attempt_at
        )
        .await)?;
        tx.commit().await?;
        Ok(done)
    }

    /// Hands the claim's unsent rows back, due at `now`, their attempt not counted.
    pub async fn release_outbox(&self, token: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let n = in_tx!(&mut tx, |c, m| m::release_outbox_claim(c, token, now).await)?;
        tx.commit().await?;
        Ok(n)
    }

    /// Puts a dead or waiting message back to `pending`, due `now`, with fresh attempts.
    pub async fn retry_outbox(
        &self,
        account: &AccountId,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<RetryOutcome, StoreError> {
        let mut tx = self.begin().await?;
        let outcome = in_tx!(&mut tx, |c, m| m::retry_outbox(c, account, id, now).await)?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// The account's outbox with delivery state, in creation order; only `dead` rows when asked.
    pub async fn list_outbox_entries(
        &self,
        account: &AccountId,
        dead_only: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let status = dead_only.then_some("dead");
        read!(self, |c, m| m::list_outbox_entries(c, account, status, now)
            .await)
    }

    /// How many of the account's messages are in each status.
    pub async fn outbox_counts(
        &self,
        account: &AccountId,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        read!(self, |c, m| Ok(m::outbox_counts(c, account)
            .await?
            .into_iter()
            .collect()))
    }

    /// Sets the IANA time zone the account's emails show times in (`false`: no such account).
    pub async fn set_account_time_zone(
        &self,
        account: &AccountId,
        time_zone: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = in_tx!(&mut tx, |c, m| m::set_account_time_zone(
            c, account, time_zone
        )
        .await)?;
        tx.commit().await?;
        Ok(done)
    }
}
