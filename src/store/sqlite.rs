//! The SQLite backend: the embedded default. One pool of readers and a single writer connection
//! (so writers queue in-process instead of failing with SQLITE_BUSY), WAL journal, foreign keys
//! on, and a case-sensitive `LIKE` so that filters on case-exact attributes stay exact.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub type Db = sqlx::Sqlite;

/// Appended to reads that lock a row inside a write transaction.
const ROW_LOCK: &str = "";

// The queries, written once for both backends (see `backend.rs`): each file is deliberately a
// module of both backends, compiled once per `Db`.
#[allow(clippy::duplicate_mod)]
#[path = "backend.rs"]
mod backend;
#[allow(clippy::duplicate_mod)]
#[path = "backend_console.rs"]
mod backend_console;
#[allow(clippy::duplicate_mod)]
#[path = "backend_deletions.rs"]
mod backend_deletions;
#[allow(clippy::duplicate_mod)]
#[path = "backend_events.rs"]
mod backend_events;
#[allow(clippy::duplicate_mod)]
#[path = "backend_metrics.rs"]
mod backend_metrics;
#[allow(clippy::duplicate_mod)]
#[path = "backend_outbox.rs"]
mod backend_outbox;
#[allow(clippy::duplicate_mod)]
#[path = "backend_tokens.rs"]
mod backend_tokens;

pub use backend::*;
pub use backend_console::*;
pub use backend_deletions::*;
pub use backend_events::*;
pub use backend_metrics::*;
pub use backend_outbox::*;
pub use backend_tokens::*;

/// The read-only connections. Not a `sqlx::Pool`: the pool pings a connection on every acquire
/// and on every release, each a round trip to the connection's worker thread, which made up half
/// of a lookup's database time. A file on local disk cannot go stale, and a query dropped midway
/// resets its statement (ending its read snapshot), so a connection is handed out as it is.
pub(crate) struct Readers {
    conns: Vec<tokio::sync::Mutex<Option<sqlx::SqliteConnection>>>,
    /// One permit per connection: a holder of a permit always finds a free connection.
    permits: tokio::sync::Semaphore,
    next: std::sync::atomic::AtomicUsize,
}

/// A reader, held until dropped (the connection is unlocked before its permit is returned).
pub(crate) struct Reader<'a> {
    conn: tokio::sync::MappedMutexGuard<'a, sqlx::SqliteConnection>,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl std::ops::Deref for Reader<'_> {
    type Target = sqlx::SqliteConnection;

    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

impl Readers {
    async fn open(options: &SqliteConnectOptions, count: u32) -> Result<Self, StoreError> {
        use sqlx::ConnectOptions;
        let mut conns = Vec::new();
        for _ in 0..count.max(1) {
            let conn = options.connect().await.map_err(db_err)?;
            conns.push(tokio::sync::Mutex::new(Some(conn)));
        }
        Ok(Self {
            permits: tokio::sync::Semaphore::new(conns.len()),
            conns,
            next: Default::default(),
        })
    }

    /// A free reader, waiting for one when all are taken.
    pub(crate) async fn acquire(&self) -> Result<Reader<'_>, sqlx::Error> {
        use std::sync::atomic::Ordering;
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let guard = (0..n)
            .find_map(|i| self.conns[(start + i) % n].try_lock().ok())
            .ok_or(sqlx::Error::PoolTimedOut)?;
        let conn = tokio::sync::MutexGuard::try_map(guard, Option::as_mut)
            .map_err(|_| sqlx::Error::PoolClosed)?;
        Ok(Reader {
            conn,
            _permit: permit,
        })
    }

    async fn close(&self) {
        use sqlx::Connection;
        self.permits.close();
        for slot in &self.conns {
            if let Some(conn) = slot.lock().await.take() {
                let _ = conn.close().await;
            }
        }
    }
}

#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) read: std::sync::Arc<Readers>,
    pub(crate) write: sqlx::SqlitePool,
    /// The database file (locks live beside it).
    pub(crate) path: std::path::PathBuf,
    /// Bumped by every integration deletion made through this process (`auth_epoch.rs`).
    pub(crate) local_epoch: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl SqliteStore {
    /// Opens (creating it and its folder on first run) the database file `path`, and migrates it.
    pub async fn open(path: &Path, readers: u32) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(Box::new(e)))?;
        }
        let base = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(15))
            .foreign_keys(true)
            .pragma("case_sensitive_like", "ON")
            .pragma("cache_size", "-4000")
            // Statement and savepoint journals in memory: group commit runs each request in a
            // savepoint, whose journal otherwise spills to a temporary file (a fifth of a
            // create's time went to those writes).
            .pragma("temp_store", "MEMORY");
        // No ping before handing the writer out (a local file cannot go stale); the pool still
        // pings it on release, which flushes a transaction a dropped request left behind.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(base.clone())
            .await
            .map_err(db_err)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&write)
            .await
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        let read = std::sync::Arc::new(Readers::open(&base.read_only(true), readers).await?);
        Ok(Self {
            read,
            write,
            path: path.to_path_buf(),
            local_epoch: Default::default(),
        })
    }

    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
        self.write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}
