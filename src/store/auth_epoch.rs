//! The integrations' epoch: a value that changes whenever an integration is deleted or changed,
//! so that a cache of token lookups (`scim::auth`) can tell at once that it may be stale.
//!
//! It has two parts. The local part counts the deletions made through this process (every
//! clone of a [`Store`] shares it). The shared part sees the other processes:
//! - PostgreSQL: the `integration_epoch` row (migration 0009), which a trigger bumps in the
//!   transaction that deletes or changes an integration; read on every request, one indexed
//!   single-row query, so a deletion committed by any replica is seen by every replica at once.
//! - SQLite: one process serves a database file, but the CLI may delete an integration from
//!   another process. The deleting process writes a new random nonce over the 16 bytes of
//!   `<db>.auth-epoch` after its commit; the server reads them per request instead of making a
//!   database round trip, with one `pread` on a descriptor it keeps open ([`Signal`]; opening
//!   the file by name each time cost a twentieth of a lookup). The nonce is written in place,
//!   so the kept descriptor sees it at once; a reader that catches the write half done reads a
//!   value that matches neither nonce, which only makes it look the tokens up again. (A deleting
//!   process killed between its commit and that write, or a signal file replaced by hand, is
//!   covered by the cache's maximum age, see `scim::auth`, and by the descriptor being reopened
//!   every [`REOPEN`].)

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::{Store, db_err};
use crate::domain::StoreError;

/// Where the integrations stood when it was read; equal values mean no integration was deleted
/// or changed in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthEpoch {
    local: u64,
    shared: u128,
}

/// How long the signal's descriptor is used before the file is opened by name again (so a
/// signal file that was replaced, not written in place, is still seen).
pub(crate) const REOPEN: Duration = Duration::from_secs(1);

/// The SQLite signal file beside the database, kept open for reading (see the module docs).
pub(crate) struct Signal {
    path: PathBuf,
    held: RwLock<Held>,
}

struct Held {
    file: File,
    opened: Instant,
}

impl Signal {
    /// Opens the signal file of the database `db`, creating it (with a fresh nonce) when it is
    /// not there yet.
    pub(crate) fn open(db: &Path) -> Result<Self, std::io::Error> {
        let mut path = db.as_os_str().to_owned();
        path.push(".auth-epoch");
        let path = PathBuf::from(path);
        let held = RwLock::new(Held {
            file: open_or_create(&path)?,
            opened: Instant::now(),
        });
        Ok(Self { path, held })
    }

    /// The nonce in the file now; 0 when the file holds less than one.
    pub(crate) fn read(&self) -> Result<u128, std::io::Error> {
        {
            let held = self.held.read().unwrap_or_else(PoisonError::into_inner);
            if held.opened.elapsed() < REOPEN {
                return read_nonce(&held.file);
            }
        }
        let mut held = self.held.write().unwrap_or_else(PoisonError::into_inner);
        if held.opened.elapsed() >= REOPEN {
            *held = Held {
                file: open_or_create(&self.path)?,
                opened: Instant::now(),
            };
        }
        read_nonce(&held.file)
    }

    /// Writes a new nonce over the old one, in place (creating the file if it is gone).
    pub(crate) fn bump(&self) -> Result<(), std::io::Error> {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)?
            .write_all_at(&nonce(), 0)
    }
}

/// The signal file at `path` opened for reading; a missing one (first start, or deleted by
/// hand) is created with a fresh nonce, which every token cache takes for a change.
fn open_or_create(path: &Path) -> Result<File, std::io::Error> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(file) => file.write_all_at(&nonce(), 0)?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    File::open(path)
}

fn nonce() -> [u8; 16] {
    uuid::Uuid::new_v4().as_u128().max(1).to_le_bytes()
}

fn read_nonce(file: &File) -> Result<u128, std::io::Error> {
    let mut bytes = [0u8; 16];
    let mut got = 0;
    while got < bytes.len() {
        match file.read_at(&mut bytes[got..], got as u64)? {
            0 => return Ok(0),
            n => got += n,
        }
    }
    Ok(u128::from_le_bytes(bytes))
}

impl Store {
    /// The integrations' epoch now (see the module docs).
    pub async fn auth_epoch(&self) -> Result<AuthEpoch, StoreError> {
        match self {
            Store::Sqlite(s) => Ok(AuthEpoch {
                local: s.local_epoch.load(Ordering::Acquire),
                shared: s
                    .signal
                    .read()
                    .map_err(|e| StoreError::Database(Box::new(e)))?,
            }),
            // Boxed: this runs on every SCIM request, and an unboxed pool acquire would make
            // every caller's future kilobytes larger on SQLite too.
            Store::Postgres(s) => {
                Box::pin(async move {
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
                })
                .await
            }
        }
    }

    /// Records that an integration was deleted or changed (after its commit): caches of token
    /// lookups in this process and, on SQLite, in the serving process see a new epoch.
    pub fn integrations_changed(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => {
                s.local_epoch.fetch_add(1, Ordering::AcqRel);
                s.signal
                    .bump()
                    .map_err(|e| StoreError::Database(Box::new(e)))
            }
            Store::Postgres(s) => {
                // The trigger of migration 0009 already bumped the shared epoch in the commit.
                s.local_epoch.fetch_add(1, Ordering::AcqRel);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_processs_bump_is_seen_at_once_through_the_kept_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("essentry.db");
        let server = Signal::open(&db).unwrap();
        let first = server.read().unwrap();
        assert_ne!(first, 0, "a new signal file holds a nonce");
        assert_eq!(server.read().unwrap(), first);
        // The CLI opens the same file and writes over it.
        let cli = Signal::open(&db).unwrap();
        assert_eq!(
            cli.read().unwrap(),
            first,
            "opening does not change the nonce"
        );
        cli.bump().unwrap();
        let second = server.read().unwrap();
        assert_ne!(second, first);
        assert_eq!(cli.read().unwrap(), second);
    }

    #[test]
    fn a_signal_file_replaced_by_another_is_seen_within_the_reopen_interval() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("essentry.db");
        let server = Signal::open(&db).unwrap();
        let first = server.read().unwrap();
        let path = dir.path().join("essentry.db.auth-epoch");
        let tmp = dir.path().join("replacement");
        std::fs::write(&tmp, 7u128.to_le_bytes()).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        std::thread::sleep(REOPEN + Duration::from_millis(50));
        assert_eq!(server.read().unwrap(), 7);
        assert_ne!(first, 7);
        // Deleted by hand: recreated with a fresh nonce at the next reopen, never an error.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(server.read().unwrap(), 7, "the kept descriptor still reads");
        std::thread::sleep(REOPEN + Duration::from_millis(50));
        let recreated = server.read().unwrap();
        assert!(recreated != 7 && recreated != 0);
        assert!(path.exists());
    }

    #[test]
    fn a_short_signal_file_reads_as_no_nonce() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("essentry.db");
        std::fs::write(dir.path().join("essentry.db.auth-epoch"), [1u8, 2, 3]).unwrap();
        let signal = Signal::open(&db).unwrap();
        assert_eq!(signal.read().unwrap(), 0);
        signal.bump().unwrap();
        assert_ne!(signal.read().unwrap(), 0);
    }
}
