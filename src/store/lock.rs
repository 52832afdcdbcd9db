//! Locks that make several processes behave like one.
//!
//! - **One cycle per integration at a time, across processes.** On PostgreSQL a session-level
//!   advisory lock (`pg_try_advisory_lock`) on a connection held for the whole cycle: replicas
//!   that find it taken skip the run, and when the holder dies its connection closes and the
//!   lock is released, so another replica takes over on its next run. On SQLite an exclusive
//!   lock on a file beside the database (`<db>.cycle-<integration>.lock`), which the operating
//!   system releases when the process dies.
//! - **One `serve` per SQLite file.** `serve` holds an exclusive lock on `<db>.serve.lock`; a
//!   second one is refused with a clear message instead of corrupting state. PostgreSQL needs no
//!   such lock: replicas are the point.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Store, db_err};
use crate::domain::{IntegrationId, StoreError};

/// Held while a cycle runs; release it with [`CycleLock::release`]. Dropped without release (a
/// panic, a cancelled task), it still lets go: the file closes, or the PostgreSQL connection is
/// closed instead of returned to the pool.
pub enum CycleLock {
    File(File),
    Postgres {
        conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
        key: i64,
    },
}

impl CycleLock {
    pub async fn release(mut self) {
        if let CycleLock::Postgres { conn, key } = &mut self
            && let Some(mut c) = conn.take()
        {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(*key)
                .execute(&mut *c)
                .await;
            if unlocked.is_err() {
                // Closing the session releases every lock it holds.
                drop(c.detach());
            }
        }
    }
}

impl Drop for CycleLock {
    fn drop(&mut self) {
        if let CycleLock::Postgres { conn, .. } = self
            && let Some(c) = conn.take()
        {
            drop(c.detach());
        }
    }
}

/// Held by `serve` on SQLite for its whole life.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
    pub path: PathBuf,
}

/// The advisory-lock key of an integration's cycles: 64 bits of SHA-256 over a namespace and
/// the integration id, so it cannot collide with other applications' small integer keys.
pub fn advisory_key(integration: &IntegrationId) -> i64 {
    let digest = Sha256::digest(format!("essentry-sync:cycle:{}", integration.as_str()));
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

fn try_lock_file(path: &Path) -> Result<Option<File>, StoreError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| {
            StoreError::Database(format!("opening lock file {}: {e}", path.display()).into())
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(StoreError::Database(
            format!("locking {}: {e}", path.display()).into(),
        )),
    }
}

fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    db.with_file_name(name)
}

impl Store {
    /// Takes the cycle lock of `integration`, or `None` when another process (or task) holds it.
    pub async fn try_lock_cycle(
        &self,
        integration: &IntegrationId,
    ) -> Result<Option<CycleLock>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let path = sibling(&s.path, &format!(".cycle-{}.lock", integration.as_str()));
                Ok(try_lock_file(&path)?.map(CycleLock::File))
            }
            Store::Postgres(p) => {
                let key = advisory_key(integration);
                let mut conn = p.pool.acquire().await.map_err(db_err)?;
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(key)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(db_err)?;
                Ok(got.then(|| CycleLock::Postgres {
                    conn: Some(conn),
                    key,
                }))
            }
        }
    }

    /// On SQLite, the lock that keeps a second `serve` off the same file (`Err` naming the lock
    /// file when another process holds it). `None` on PostgreSQL.
    pub fn lock_serve(&self) -> Result<Option<ServeLock>, StoreError> {
        let Store::Sqlite(s) = self else {
            return Ok(None);
        };
        let path = sibling(&s.path, ".serve.lock");
        match try_lock_file(&path)? {
            Some(file) => Ok(Some(ServeLock { _file: file, path })),
            None => Err(StoreError::Database(
                format!(
                    "another essentry-sync serve is already running on {} (it holds {}); SQLite \
                     serves one process only — stop the other one, or use PostgreSQL \
                     (DATABASE_URL=postgres://...) to run several replicas",
                    s.path.display(),
                    path.display()
                )
                .into(),
            )),
        }
    }
}
