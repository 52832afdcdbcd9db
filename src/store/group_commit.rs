//! Group commit: on SQLite, write requests that arrive together share one transaction, and so
//! one commit (one WAL write), while each still gets its own result. On PostgreSQL (and with a
//! batch size of 1) every request keeps a transaction of its own, see [`GroupCommit::run`].
//!
//! A request takes the batch lock, opens the shared transaction if none is open, and runs its
//! work inside a savepoint of its own (`savepoint.rs`: opened with its first statement — the
//! head of its combined write, when it makes one, so that the whole request is one round trip
//! to the writer — and released by the next request's). Its work failing (a uniqueness
//! conflict, a stale version, any error) rolls back to that savepoint only: what the other
//! requests of the batch wrote stays, and only this request sees the error. Afterwards, when more requests are queued
//! for the lock and the batch is not full, it leaves the transaction open for them and waits
//! for the commit; otherwise it commits the batch and hands every waiting request the outcome.
//! A request's success is returned only after the commit that made it durable succeeded; a
//! failed commit fails every request of the batch (nothing of it was kept).
//!
//! Everything a request writes — the row, its provisioning-log row, its outbox rows — goes into
//! its savepoint, so it is committed together or not at all, exactly as with a transaction of
//! its own.
//!
//! Cancellation (a client that disconnects drops its request's future): a request dropped while
//! its work runs leaves its savepoint open; the next holder of the lock (or a flush task spawned
//! by the drop when nobody is queued) ends that request first, rolling its savepoint back, so
//! none of its writes is kept. The commit itself runs in a task of its own, so a
//! dropped committer cannot leave its batch undecided.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Mutex, MutexGuard, oneshot};

use super::{RequestEnd, Store, Tx};
use crate::domain::StoreError;

/// The outcome of a batch's commit, as told to the requests waiting for it.
type Outcome = Result<(), String>;

struct Batch {
    /// The shared transaction, when a batch is open.
    tx: Option<Tx>,
    /// Requests whose work is in `tx` and that wait for its commit.
    waiting: Vec<oneshot::Sender<Outcome>>,
}

/// Shares write transactions between concurrent requests (see the module docs).
pub struct GroupCommit {
    store: Store,
    max_batch: usize,
    batch: Mutex<Batch>,
    /// Requests waiting for the batch lock.
    queued: AtomicUsize,
}

/// Counts a request as queued for the lock until it holds it; dropped before that (the request
/// was cancelled), it makes sure an open batch is still decided.
struct Queued<'a> {
    gc: &'a Arc<GroupCommit>,
    holds: bool,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if !self.holds {
            self.gc.queued.fetch_sub(1, Ordering::AcqRel);
            self.gc.flush_later();
        }
    }
}

/// Held while a request works under the lock; dropped before [`Working::done`] (the request was
/// cancelled), it makes sure the open batch is still decided.
struct Working<'a> {
    gc: &'a Arc<GroupCommit>,
    done: bool,
}

impl Working<'_> {
    fn done(mut self) {
        self.done = true;
    }
}

impl Drop for Working<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.gc.flush_later();
        }
    }
}

fn shared_error(what: &str, e: &StoreError) -> String {
    format!("{what}: {e}")
}

impl GroupCommit {
    /// Batches of at most `max_batch` requests (1: every request commits on its own).
    pub fn new(store: Store, max_batch: usize) -> Arc<Self> {
        Arc::new(Self {
            store,
            max_batch: max_batch.max(1),
            batch: Mutex::new(Batch {
                tx: None,
                waiting: Vec::new(),
            }),
            queued: AtomicUsize::new(0),
        })
    }

    /// Runs `operate` in the shared transaction, in a savepoint of its own (PostgreSQL: in a
    /// transaction of its own), and returns its result once the transaction holding it
    /// committed. An error of `operate` rolls back its own writes only.
    pub async fn run<T, E>(
        self: &Arc<Self>,
        operate: impl AsyncFnOnce(&mut Tx) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        if !self.shares() {
            let mut tx = self.store.begin().await?;
            let out = operate(&mut tx).await?;
            tx.commit().await?;
            return Ok(out);
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        let mut queued = Queued {
            gc: self,
            holds: false,
        };
        let mut batch = self.batch.lock().await;
        queued.holds = true;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        drop(queued);
        let working = Working {
            gc: self,
            done: false,
        };
        let out = self.work(&mut batch, operate).await;
        let result = match out {
            Err(e) => {
                // Nothing of this request is in the batch; the others' work may be.
                self.decide(batch, None).await;
                Err(e)
            }
            Ok(value) => {
                let (tell, told) = oneshot::channel();
                self.decide(batch, Some(tell)).await;
                match told.await {
                    Ok(Ok(())) => Ok(value),
                    Ok(Err(e)) => Err(StoreError::Database(e.into()).into()),
                    Err(_) => Err(StoreError::Database(
                        "the shared write transaction was abandoned before its commit".into(),
                    )
                    .into()),
                }
            }
        };
        working.done();
        result
    }

    /// Whether writes share transactions: on SQLite, whose single writer runs one transaction
    /// at a time anyway. PostgreSQL runs concurrent transactions in parallel (and groups their
    /// WAL flushes itself); funnelling them through one transaction there made writes several
    /// times slower in the benchmark, so each keeps its own transaction.
    fn shares(&self) -> bool {
        self.max_batch > 1 && matches!(self.store, Store::Sqlite(_))
    }

    /// Opens the batch if needed and runs `operate` in its own savepoint.
    async fn work<T, E>(
        &self,
        batch: &mut MutexGuard<'_, Batch>,
        operate: impl AsyncFnOnce(&mut Tx) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        Self::undo_dropped(batch).await;
        if batch.tx.is_none() {
            batch.tx = Some(self.store.begin().await?);
        }
        let Some(tx) = batch.tx.as_mut() else {
            return Err(StoreError::Database("no open write transaction".into()).into());
        };
        tx.begin_request();
        let out = operate(tx).await;
        let end = if out.is_ok() {
            RequestEnd::Kept
        } else {
            RequestEnd::Failed
        };
        if let Err(e) = tx.end_request(end).await {
            Self::abandon(batch, &e);
            return Err(e.into());
        }
        out
    }

    /// Ends the request that held the lock before, in case it was dropped while it worked
    /// (after a request that ended normally this does nothing); if even that fails, the whole
    /// batch is abandoned.
    async fn undo_dropped(batch: &mut MutexGuard<'_, Batch>) {
        let Some(tx) = batch.tx.as_mut() else {
            return;
        };
        if let Err(e) = tx.end_request(RequestEnd::Dropped).await {
            Self::abandon(batch, &e);
        }
    }

    /// Drops the open transaction (rolling it back) and fails every request waiting for it.
    fn abandon(batch: &mut MutexGuard<'_, Batch>, e: &StoreError) {
        tracing::warn!(error = %e, waiting = batch.waiting.len(), "abandoning a shared write transaction");
        batch.tx = None;
        let message = shared_error("the shared write transaction failed", e);
        for w in batch.waiting.drain(..) {
            let _ = w.send(Err(message.clone()));
        }
    }

    /// After a request's work: leaves the batch open for the requests queued behind it, or
    /// commits it. `tell` receives the commit's outcome (`None`: the request has nothing in the
    /// batch).
    async fn decide(
        &self,
        mut batch: MutexGuard<'_, Batch>,
        tell: Option<oneshot::Sender<Outcome>>,
    ) {
        let pending = batch.waiting.len() + usize::from(tell.is_some());
        if let Some(t) = tell {
            batch.waiting.push(t);
        }
        if batch.tx.is_none() {
            return;
        }
        if self.queued.load(Ordering::Acquire) > 0 && pending < self.max_batch {
            return;
        }
        Self::commit(&mut batch).await;
    }

    /// Commits the open batch in a task of its own (a dropped caller cannot interrupt it) and
    /// tells every waiting request the outcome; an empty batch is simply closed.
    async fn commit(batch: &mut MutexGuard<'_, Batch>) {
        let Some(tx) = batch.tx.take() else {
            return;
        };
        let waiting = std::mem::take(&mut batch.waiting);
        let committed = tokio::spawn(async move {
            let outcome = tx
                .commit()
                .await
                .map_err(|e| shared_error("the shared commit failed", &e));
            for w in waiting {
                let _ = w.send(outcome.clone());
            }
        });
        // The lock stays held until the commit is done, so the next batch starts after it.
        if let Err(e) = committed.await {
            tracing::error!(error = %e, "the shared commit task failed");
        }
    }

    /// A request was dropped: unless another request will decide the open batch, a task takes
    /// the lock, rolls back what the dropped request left, and commits the batch.
    fn flush_later(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let gc = self.clone();
        runtime.spawn(async move {
            let mut batch = gc.batch.lock().await;
            Self::undo_dropped(&mut batch).await;
            if gc.queued.load(Ordering::Acquire) == 0 {
                Self::commit(&mut batch).await;
            }
        });
    }
}
