//! Point reads on SQLite, run on the caller's thread.
//!
//! sqlx runs every SQLite connection on a worker thread of its own: a query is a message to that
//! thread and its rows a message back. For a look-up that SQLite answers from an index in a few
//! microseconds, those two thread hand-offs (and the row copies between them) cost more than
//! the query: in the SCIM lookup benchmark a third of the server's CPU went to the worker
//! threads, mostly waking and switching, not to SQL. The reads here run the same SQL through
//! `rusqlite` on a small set of read-only connections, each behind a mutex that is only ever
//! tried, never waited for, and only for queries that cannot scan:
//! - a user by id or by userName (unique indexes);
//! - a page of users under a filter that translates to one indexed string equality
//!   ([`Where::point`]), with its count.
//!
//! Anything else — and these too when every point connection is in use, or when SQLite reports
//! the database busy — answers `None`, and the caller runs the query on sqlx's readers as before.
//! A point read therefore never waits for a lock, and occupies its async worker thread for about
//! as long as the hand-offs it saves. The connections are read-only, in the same WAL database,
//! so they see every committed write, as sqlx's readers do.

use std::path::Path;
use std::sync::{LazyLock, Mutex, TryLockError};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, Row, Statement};

use super::corrupt;
use super::sql_filter::{Counted, Param, Where, total_from_page};
use super::sqlite::{USER_COLS, count_sql, page_sql, parse_resource};
use crate::domain::{
    AccountId, DirectoryUser, EntraObjectId, IntegrationId, Source, StoreError, UserId, UserName,
    UserRecord,
};

/// Each point connection's page cache. The bundled SQLite pools all connections' caches in one
/// group, so the memory held follows the sum of every connection's size (`sqlite.rs` gives
/// sqlx's readers 1 MB each): with 6 MB here and sqlx's eight readers at 4 MB the server passed
/// its 100 MB floor at 100,000 users, with 2 MB here lookups were a seventh slower.
const CACHE_KIB: i64 = 8_000;

static BY_ID: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {USER_COLS} FROM users u WHERE u.account_id = $1 AND u.id = $2")
});
static BY_NAME: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {USER_COLS} FROM users u WHERE u.account_id = $1 AND u.user_name_lower = $2")
});

/// A page of users and, when asked, the count of all that match.
type UserPage = (Vec<UserRecord>, Option<i64>);

/// The point connections (see the module docs).
pub(crate) struct PointReaders {
    conns: Vec<Mutex<Connection>>,
}

/// An error of a point read that the caller should answer by running the query elsewhere.
enum Failure {
    /// SQLite said the database is busy or locked (a checkpoint restarting the log, say): the
    /// query goes to sqlx's readers, which wait for it on their own threads.
    Busy,
    Store(StoreError),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Self::Busy
            }
            _ => Self::Store(StoreError::Database(Box::new(e))),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl PointReaders {
    /// Opens `count` read-only connections to the database file `path` (which exists: the
    /// writer created and migrated it).
    pub(crate) fn open(path: &Path, count: usize) -> Result<Self, StoreError> {
        let conns = (0..count.max(1))
            .map(|_| {
                let c = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                // As sqlx's readers (`sqlite.rs`), less the busy wait: a busy database sends
                // the query to them instead of blocking this thread.
                c.execute_batch(&format!(
                    "PRAGMA case_sensitive_like = ON; PRAGMA cache_size = -{CACHE_KIB}; \
                     PRAGMA temp_store = MEMORY;"
                ))?;
                c.busy_timeout(std::time::Duration::ZERO)?;
                c.set_prepared_statement_cache_capacity(32);
                Ok(Mutex::new(c))
            })
            .collect::<Result<Vec<_>, rusqlite::Error>>()
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        Ok(Self { conns })
    }

    /// Runs `read` on a free connection: `None` when none is free or the database is busy.
    fn with<R>(
        &self,
        read: impl FnOnce(&Connection) -> Result<R, Failure>,
    ) -> Option<Result<R, StoreError>> {
        for m in &self.conns {
            let conn = match m.try_lock() {
                Ok(c) => c,
                // A panic while it was held cannot have left it half-changed: every read resets
                // its statement when the statement is dropped.
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => continue,
            };
            return match read(&conn) {
                Ok(r) => Some(Ok(r)),
                Err(Failure::Busy) => None,
                Err(Failure::Store(e)) => Some(Err(e)),
            };
        }
        None
    }

    /// The user `id` of `account`.
    pub(crate) fn user_by_id(
        &self,
        account: &AccountId,
        id: &UserId,
    ) -> Option<Result<Option<UserRecord>, StoreError>> {
        self.with(|c| one_user(c, &BY_ID, account, id.as_str()))
    }

    /// The user of `account` whose userName is `name` (compared by its folded key).
    pub(crate) fn user_by_name(
        &self,
        account: &AccountId,
        name: &UserName,
    ) -> Option<Result<Option<UserRecord>, StoreError>> {
        self.with(|c| one_user(c, &BY_NAME, account, name.key()))
    }

    /// A page of `account`'s users matching `filter` and, when asked, their count — when the
    /// filter is a point look-up ([`Where::point`]) with text parameters only; `None` otherwise.
    pub(crate) fn users_where(
        &self,
        account: &AccountId,
        filter: &Where,
        offset: i64,
        limit: i64,
        with_total: bool,
    ) -> Option<Result<UserPage, StoreError>> {
        let texts_only = filter.params.iter().all(|p| matches!(p, Param::Text(_)));
        if !filter.point || !texts_only {
            return None;
        }
        self.with(|c| {
            let sql = page_sql((USER_COLS, "users u", "u"), Some(filter), offset, limit);
            let mut stmt = c.prepare_cached(&sql)?;
            bind(&mut stmt, account, filter)?;
            let mut rows = stmt.raw_query();
            let mut users = Vec::new();
            while let Some(row) = rows.next()? {
                users.push(user_from(row)?);
            }
            let total = match total_from_page(with_total, offset, limit, users.len()) {
                Counted::Known(total) => Some(total),
                Counted::NotAsked => None,
                Counted::Count => {
                    let mut stmt = c.prepare_cached(&count_sql(("users u", "u"), Some(filter)))?;
                    bind(&mut stmt, account, filter)?;
                    let mut rows = stmt.raw_query();
                    match rows.next()? {
                        Some(row) => Some(row.get::<_, i64>(0)?),
                        None => return Err(corrupt("COUNT(*) returned no row").into()),
                    }
                }
            };
            Ok((users, total))
        })
    }
}

/// Binds `$1` (the account) and the filter's `$2`… by name: SQLite numbers `$n` parameters in
/// the order they first appear, not by `n`.
fn bind(stmt: &mut Statement<'_>, account: &AccountId, filter: &Where) -> Result<(), Failure> {
    bind_named(stmt, 1, account.as_str())?;
    for (i, p) in filter.params.iter().enumerate() {
        let Param::Text(t) = p else {
            return Err(corrupt("a point read bound a parameter that is not text").into());
        };
        bind_named(stmt, i + 2, t)?;
    }
    Ok(())
}

fn bind_named(stmt: &mut Statement<'_>, n: usize, value: &str) -> Result<(), Failure> {
    // A point filter binds `$1` and `$2` (no allocation for those names).
    const NAMES: [&str; 4] = ["$0", "$1", "$2", "$3"];
    let index = match NAMES.get(n) {
        Some(name) => stmt.parameter_index(name)?,
        None => stmt.parameter_index(&format!("${n}"))?,
    };
    match index {
        Some(index) => Ok(stmt.raw_bind_parameter(index, value)?),
        // A parameter the text does not use (none of ours).
        None => Ok(()),
    }
}

fn one_user(
    c: &Connection,
    sql: &str,
    account: &AccountId,
    key: &str,
) -> Result<Option<UserRecord>, Failure> {
    let mut stmt = c.prepare_cached(sql)?;
    bind_named(&mut stmt, 1, account.as_str())?;
    bind_named(&mut stmt, 2, key)?;
    let mut rows = stmt.raw_query();
    match rows.next()? {
        Some(row) => Ok(Some(user_from(row)?)),
        None => Ok(None),
    }
}

/// The position of each column in [`USER_COLS`] (checked by a test): columns are read by
/// position, since a look-up by name compares every column's name.
mod col {
    #[cfg(test)]
    pub const NAMES: [&str; 15] = [
        "id",
        "account_id",
        "user_name",
        "given_name",
        "family_name",
        "display_name",
        "external_id",
        "active",
        "entra_object_id",
        "source",
        "resource",
        "version",
        "created_at",
        "updated_at",
        "managed_by",
    ];
    pub const ID: usize = 0;
    pub const ACCOUNT_ID: usize = 1;
    pub const USER_NAME: usize = 2;
    pub const GIVEN_NAME: usize = 3;
    pub const FAMILY_NAME: usize = 4;
    pub const DISPLAY_NAME: usize = 5;
    pub const EXTERNAL_ID: usize = 6;
    pub const ACTIVE: usize = 7;
    pub const ENTRA_OBJECT_ID: usize = 8;
    pub const SOURCE: usize = 9;
    pub const RESOURCE: usize = 10;
    pub const VERSION: usize = 11;
    pub const CREATED_AT: usize = 12;
    pub const UPDATED_AT: usize = 13;
    pub const MANAGED_BY: usize = 14;
}

/// A timestamp as sqlx writes it (RFC 3339), or any other form rusqlite reads.
fn time(row: &Row<'_>, i: usize) -> Result<DateTime<Utc>, Failure> {
    if let rusqlite::types::ValueRef::Text(t) = row.get_ref(i)?
        && let Some(at) = std::str::from_utf8(t)
            .ok()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    {
        return Ok(at.with_timezone(&Utc));
    }
    Ok(row.get(i)?)
}

/// A user row of [`USER_COLS`], decoded as `backend::user_from_row` decodes sqlx's.
fn user_from(row: &Row<'_>) -> Result<UserRecord, Failure> {
    let user_name: String = row.get(col::USER_NAME)?;
    let resource: String = row.get(col::RESOURCE)?;
    let source: String = row.get(col::SOURCE)?;
    Ok(UserRecord {
        id: UserId::from_trusted(row.get(col::ID)?),
        account_id: AccountId::from_trusted(row.get(col::ACCOUNT_ID)?),
        attrs: DirectoryUser {
            user_name: UserName::parse(&user_name).map_err(|_| corrupt("stored userName"))?,
            given_name: row.get(col::GIVEN_NAME)?,
            family_name: row.get(col::FAMILY_NAME)?,
            display_name: row.get(col::DISPLAY_NAME)?,
            external_id: row.get(col::EXTERNAL_ID)?,
            active: row.get(col::ACTIVE)?,
            entra_object_id: row
                .get::<_, Option<String>>(col::ENTRA_OBJECT_ID)?
                .map(EntraObjectId::from_trusted),
            resource: parse_resource(&resource)?,
        },
        source: Source::parse(&source).ok_or_else(|| corrupt("user source"))?,
        managed_by: row
            .get::<_, Option<String>>(col::MANAGED_BY)?
            .map(IntegrationId::from_trusted),
        version: row.get(col::VERSION)?,
        created_at: time(row, col::CREATED_AT)?,
        updated_at: time(row, col::UPDATED_AT)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readers_on_a_file() -> (tempfile::TempDir, PointReaders) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("p.db");
        let w = Connection::open(&path).expect("open");
        w.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (7);",
        )
        .expect("schema");
        let readers = PointReaders::open(&path, 2).expect("point readers");
        (dir, readers)
    }

    fn seven(c: &Connection) -> Result<i64, Failure> {
        Ok(c.query_row("SELECT x FROM t", [], |r| r.get(0))?)
    }

    #[test]
    fn user_columns_are_read_at_their_positions() {
        let names: Vec<&str> = USER_COLS
            .split(',')
            .map(|c| c.trim().trim_start_matches("u."))
            .collect();
        assert_eq!(names, col::NAMES);
        for (i, name) in [
            (col::ID, "id"),
            (col::ACCOUNT_ID, "account_id"),
            (col::USER_NAME, "user_name"),
            (col::GIVEN_NAME, "given_name"),
            (col::FAMILY_NAME, "family_name"),
            (col::DISPLAY_NAME, "display_name"),
            (col::EXTERNAL_ID, "external_id"),
            (col::ACTIVE, "active"),
            (col::ENTRA_OBJECT_ID, "entra_object_id"),
            (col::SOURCE, "source"),
            (col::RESOURCE, "resource"),
            (col::VERSION, "version"),
            (col::CREATED_AT, "created_at"),
            (col::UPDATED_AT, "updated_at"),
            (col::MANAGED_BY, "managed_by"),
        ] {
            assert_eq!(col::NAMES[i], name);
        }
    }

    #[test]
    fn a_read_never_waits_for_a_connection_in_use() {
        let (_dir, readers) = readers_on_a_file();
        assert_eq!(readers.with(seven).map(Result::ok), Some(Some(7)));
        let first = readers.conns[0].lock().expect("first");
        assert_eq!(
            readers.with(seven).map(Result::ok),
            Some(Some(7)),
            "the other connection serves"
        );
        let second = readers.conns[1].lock().expect("second");
        assert!(
            readers.with(seven).is_none(),
            "all in use: the caller reads elsewhere"
        );
        drop((first, second));
        assert_eq!(readers.with(seven).map(Result::ok), Some(Some(7)));
    }

    #[test]
    fn a_busy_database_sends_the_read_elsewhere_and_other_errors_are_errors() {
        let (_dir, readers) = readers_on_a_file();
        let busy = readers.with(|_| -> Result<(), Failure> {
            Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                None,
            )
            .into())
        });
        assert!(busy.is_none());
        let broken = readers.with(|c| -> Result<i64, Failure> {
            Ok(c.query_row("SELECT nope FROM t", [], |r| r.get(0))?)
        });
        assert!(
            matches!(broken, Some(Err(StoreError::Database(_)))),
            "{broken:?}"
        );
        // Read-only: a write is refused, not performed.
        let write = readers
            .with(|c| -> Result<usize, Failure> { Ok(c.execute("INSERT INTO t VALUES (8)", [])?) });
        assert!(matches!(write, Some(Err(_))), "{write:?}");
        assert_eq!(readers.with(seven).map(Result::ok), Some(Some(7)));
    }
}
