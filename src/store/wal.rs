//! Checkpoints of SQLite's write-ahead log, in the background.
//!
//! In WAL mode a commit appends the pages it changed to the log, and a checkpoint copies them
//! back into the database file, with fsyncs. SQLite's default runs that checkpoint inside the
//! commit that takes the log past 1,000 pages: on our single writer, under load, a 4 MB copy and
//! two fsyncs landed every few dozen milliseconds in the commit path of whichever batch came
//! next, and every write queued behind it waited (the SCIM create benchmark ran at about 1,900/s
//! with the writer thread idle more than half of the time). Here a thread with a connection of
//! its own runs `PASSIVE` checkpoints — which never wait for, nor block, the writer or the
//! readers — a moment ([`GATHER`]) after commits, so the log is copied back while the writes go
//! on, each page once however often it changed in that moment, and the log stays short for the
//! readers, which look every page up in it first.
//!
//! The writer keeps SQLite's automatic checkpoint, at a far higher mark
//! ([`WRITER_AUTOCHECKPOINT`]), as a backstop should this thread fall behind or fail (a failed
//! checkpoint is logged and retried after the next commit: nothing is lost by it, the pages stay
//! in the log). It is a thread rather than a task so that tests which pause Tokio's clock see no
//! timer of it; it ends when the store's last handle is dropped or closed.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;

use super::{StoreError, db_err};

/// Pages in the log (4 KiB each) after which the writer checkpoints in its own commit.
pub(crate) const WRITER_AUTOCHECKPOINT: u32 = 4_000;

/// How long the checkpointer lets commits gather after the first one before it copies them.
///
/// Short on purpose. Under a steady stream of writes the log can only start over after the
/// writer's own checkpoint (at [`WRITER_AUTOCHECKPOINT`]), which copies, inside a commit, what
/// this thread had not yet copied: the more often this thread runs, the less that is. With
/// 50 ms the SCIM user-PATCH benchmark (100,000 users) had a p99 of 44 ms at 2,650/s; 10 ms
/// gave 30 ms, 5 ms 24 ms, and 1 ms 16–17 ms at 3,000–3,500/s (docs/benchmarks.md).
pub(crate) const GATHER: Duration = Duration::from_millis(1);

#[derive(Default)]
struct State {
    /// A commit happened since the last checkpoint started.
    pending: bool,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.state());
        self.changed.notify_one();
    }

    /// Waits for a commit (`true`) or for the stop (`false`).
    fn next(&self) -> bool {
        let mut state = self.state();
        while !state.pending && !state.stop {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.pending = false;
        !state.stop
    }
}

/// The background checkpointer of one database (see the module docs). Dropping its last handle
/// stops it.
pub struct Checkpointer {
    shared: Arc<Shared>,
    /// Told when the thread has closed its connection.
    done: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

impl Checkpointer {
    /// Opens the checkpointer's connection (with `options`, a small page cache) and starts it.
    pub(crate) async fn start(options: &SqliteConnectOptions) -> Result<Self, StoreError> {
        use sqlx::ConnectOptions;
        let mut conn = options
            .clone()
            .pragma("cache_size", "-256")
            .connect()
            .await
            .map_err(db_err)?;
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        let (tell_done, done) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                // The connection's own worker thread does the work: these futures only wait
                // for its answers, and need no runtime.
                while state.next() {
                    std::thread::sleep(GATHER);
                    let done = futures::executor::block_on(
                        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut conn),
                    );
                    if let Err(e) = done {
                        tracing::warn!(error = %e, "a background WAL checkpoint failed; the pages stay in the log");
                    }
                }
                let _ = futures::executor::block_on(sqlx::Connection::close(conn));
                let _ = tell_done.send(());
            })
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        Ok(Self {
            shared,
            done: Mutex::new(Some(done)),
        })
    }

    /// A transaction committed: the log is checkpointed [`GATHER`] later (commits made before
    /// then fold into that checkpoint).
    pub(crate) fn committed(&self) {
        self.shared.set(|s| s.pending = true);
    }

    /// Stops the thread and waits until it has closed its connection.
    pub(crate) async fn close(&self) {
        self.shared.set(|s| s.stop = true);
        let done = self
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(done) = done {
            let _ = done.await;
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.set(|s| s.stop = true);
    }
}
