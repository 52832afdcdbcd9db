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

#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) read: sqlx::SqlitePool,
    pub(crate) write: sqlx::SqlitePool,
    /// The database file (locks live beside it).
    pub(crate) path: std::path::PathBuf,
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
            .pragma("cache_size", "-4000");
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(base.clone())
            .await
            .map_err(db_err)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&write)
            .await
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        let read = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .connect_with(base.read_only(true))
            .await
            .map_err(db_err)?;
        Ok(Self {
            read,
            write,
            path: path.to_path_buf(),
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
