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
#[path = "backend_delta.rs"]
mod backend_delta;
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
pub use backend_delta::*;
pub use backend_events::*;
pub use backend_metrics::*;
pub use backend_outbox::*;
pub use backend_tokens::*;

/// The read-only connections. Not a `sqlx::Pool`: the pool pings a connection on every acquire
/// and on every release, each a round trip to the connection's worker thread, which made up half
/// of a lookup's database time. A file on local disk cannot go stale, and a query dropped midway
/// resets its statement (ending its read snapshot), so a connection is handed out as it is.
///
/// The free connections are a list, taken from and given back to under a lock, never searched
/// for: a hand-out that scanned per-connection locks for a free one after taking a permit could
/// miss the connection freed behind its scan (while it scanned, one reader gave back connection
/// 1 and another took connection 2) and failed a request with "pool timed out" although a
/// connection was free (the two HTTP 500s of the lookup benchmark).
pub(crate) struct Readers {
    /// The connections not handed out.
    free: std::sync::Mutex<Vec<sqlx::SqliteConnection>>,
    /// One permit per connection in `free`: a connection is put back before its permit is
    /// returned, so a holder of a permit always finds one there.
    permits: tokio::sync::Semaphore,
    count: u32,
}

/// A reader, held until dropped (the connection goes back to the free list before its permit
/// is returned, also when the request holding it is cancelled midway).
pub(crate) struct Reader<'a> {
    /// `Some` until dropped.
    conn: Option<sqlx::SqliteConnection>,
    readers: &'a Readers,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.readers.free_list().push(conn);
        }
        // `_permit` is returned after this.
    }
}

impl std::ops::Deref for Reader<'_> {
    type Target = sqlx::SqliteConnection;

    fn deref(&self) -> &Self::Target {
        self.conn
            .as_ref()
            .expect("a reader holds its connection until dropped")
    }
}

impl std::ops::DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.conn
            .as_mut()
            .expect("a reader holds its connection until dropped")
    }
}

impl Readers {
    async fn open(options: &SqliteConnectOptions, count: u32) -> Result<Self, StoreError> {
        use sqlx::ConnectOptions;
        let mut conns = Vec::new();
        for _ in 0..count.max(1) {
            conns.push(options.connect().await.map_err(db_err)?);
        }
        Ok(Self {
            permits: tokio::sync::Semaphore::new(conns.len()),
            count: count.max(1),
            free: std::sync::Mutex::new(conns),
        })
    }

    /// The free list (a panic elsewhere while it was locked cannot leave it half-changed: it is
    /// only ever pushed to and popped from).
    fn free_list(&self) -> std::sync::MutexGuard<'_, Vec<sqlx::SqliteConnection>> {
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A free reader, waiting for one when all are taken.
    pub(crate) async fn acquire(&self) -> Result<Reader<'_>, sqlx::Error> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        // Nothing awaits from here on: a cancelled acquire gives its permit back and takes no
        // connection.
        let conn = self.free_list().pop().ok_or(sqlx::Error::PoolClosed)?;
        Ok(Reader {
            conn: Some(conn),
            readers: self,
            _permit: permit,
        })
    }

    /// Waits for the readers handed out to come back, then closes every connection; acquiring
    /// fails from then on.
    async fn close(&self) {
        use sqlx::Connection;
        // Every permit: the connections handed out are back, and no one else gets one.
        let all = self.permits.acquire_many(self.count).await;
        self.permits.close();
        drop(all);
        let conns = std::mem::take(&mut *self.free_list());
        for conn in conns {
            let _ = conn.close().await;
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
    /// The file through which other processes' deletions are seen (`auth_epoch.rs`).
    pub(crate) signal: std::sync::Arc<super::auth_epoch::Signal>,
    /// Copies the write-ahead log back into the database after commits (`wal.rs`).
    pub(crate) checkpoints: std::sync::Arc<super::wal::Checkpointer>,
    /// Indexed point reads on the caller's thread (`point_read.rs`).
    pub(crate) point: std::sync::Arc<super::point_read::PointReaders>,
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
            // 1 MB for each of sqlx's readers and 4 MB for the writer (below). The bundled
            // SQLite pools every connection's page cache in one group (it is built with
            // SQLITE_ENABLE_MEMORY_MANAGEMENT): what the process holds follows the sum of the
            // sizes, and a busy connection may take pages an idle one left. The hot reads run
            // on the point connections (`point_read.rs`), which get the larger share.
            .pragma("cache_size", "-1000")
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
            .connect_with(base.clone().pragma("cache_size", "-4000").pragma(
                "wal_autocheckpoint",
                super::wal::WRITER_AUTOCHECKPOINT.to_string(),
            ))
            .await
            .map_err(db_err)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&write)
            .await
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        let checkpoints = std::sync::Arc::new(super::wal::Checkpointer::start(&base).await?);
        let read = std::sync::Arc::new(Readers::open(&base.read_only(true), readers).await?);
        // One point connection per thread that can run async tasks at once: a point read
        // never waits for a connection, so more would sit idle.
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let point = std::sync::Arc::new(super::point_read::PointReaders::open(
            path,
            threads.clamp(2, 8),
        )?);
        let signal =
            super::auth_epoch::Signal::open(path).map_err(|e| StoreError::Database(Box::new(e)))?;
        Ok(Self {
            read,
            write,
            path: path.to_path_buf(),
            local_epoch: Default::default(),
            signal: std::sync::Arc::new(signal),
            checkpoints,
            point,
        })
    }

    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
        self.write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)
    }

    pub async fn close(&self) {
        self.checkpoints.close().await;
        self.read.close().await;
        self.write.close().await;
    }
}
