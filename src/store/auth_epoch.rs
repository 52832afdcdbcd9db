//! The integrations' epoch: a value that changes whenever an integration is deleted or changed,
//! so that a cache of token lookups (`scim::auth`) can tell at once that it may be stale.
//!
//! It has two parts. The local part counts the deletions made through this process (every
//! clone of a [`Store`] shares it). The shared part sees the other processes:
//! - PostgreSQL: the `integration_epoch` row (migration 0009), which a trigger bumps in the
//!   transaction that deletes or changes an integration; read on every request, one indexed
//!   single-row query, so a deletion committed by any replica is seen by every replica at once.
//! - SQLite: one process serves a database file, but the CLI may delete an integration from
//!   another process. The deleting process writes a new random nonce to `<db>.auth-epoch`
//!   (written to a temporary file and renamed, so a reader never sees half of it) after its
//!   commit; the server reads that small file per request instead of making a database round
//!   trip. (A deleting process killed between its commit and that write is covered by the
//!   cache's maximum age, see `scim::auth`.)

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::{Store, db_err};
use crate::domain::StoreError;

/// Where the integrations stood when it was read; equal values mean no integration was deleted
/// or changed in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthEpoch {
    local: u64,
    shared: u128,
}

/// The SQLite signal file beside the database.
fn signal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".auth-epoch");
    PathBuf::from(name)
}

/// The nonce in the signal file; 0 when there is none yet.
fn read_signal(path: &Path) -> Result<u128, std::io::Error> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes
            .get(..16)
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map_or(0, u128::from_le_bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Writes a new nonce to the signal file: to a temporary file first, then renamed over it.
fn write_signal(path: &Path) -> Result<(), std::io::Error> {
    let nonce = uuid::Uuid::new_v4().as_u128().max(1);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}", uuid::Uuid::new_v4().simple()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, nonce.to_le_bytes())?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

impl Store {
    /// The integrations' epoch now (see the module docs).
    pub async fn auth_epoch(&self) -> Result<AuthEpoch, StoreError> {
        match self {
            Store::Sqlite(s) => Ok(AuthEpoch {
                local: s.local_epoch.load(Ordering::Acquire),
                shared: read_signal(&signal_path(&s.path))
                    .map_err(|e| StoreError::Database(Box::new(e)))?,
            }),
            Store::Postgres(s) => {
                let local = s.local_epoch.load(Ordering::Acquire);
                let mut conn = s.pool.acquire().await.map_err(db_err)?;
                let epoch: i64 =
                    sqlx::query_scalar("SELECT epoch FROM integration_epoch WHERE id = 1")
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(db_err)?;
                Ok(AuthEpoch {
                    local,
                    shared: u128::from(epoch.unsigned_abs()),
                })
            }
        }
    }

    /// Records that an integration was deleted or changed (after its commit): caches of token
    /// lookups in this process and, on SQLite, in the serving process see a new epoch.
    pub fn integrations_changed(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => {
                s.local_epoch.fetch_add(1, Ordering::AcqRel);
                write_signal(&signal_path(&s.path)).map_err(|e| StoreError::Database(Box::new(e)))
            }
            Store::Postgres(s) => {
                // The trigger of migration 0009 already bumped the shared epoch in the commit.
                s.local_epoch.fetch_add(1, Ordering::AcqRel);
                Ok(())
            }
        }
    }
}
