//! Where the current request of a shared SQLite write transaction stands with its savepoint
//! ([`super::GroupCommit`]).
//!
//! Every request of a shared transaction works inside a savepoint of its own, so that its
//! failure undoes its own writes only. The savepoint is opened with the request's first
//! statement — by a statement of its own ([`Savepoint::enter`]), or as the head of a combined
//! write (`combined.rs`), which makes the whole request one round trip to the single writer. A
//! request that succeeds leaves its savepoint open (releasing it would cost a round trip of its
//! own); the next request's first statement releases it on the way, and the batch's commit
//! releases the last one.
//!
//! Consecutive requests use two names in turn (`essentry_write_a`, `essentry_write_b`), so that
//! at any time at most two savepoints are open — the previous request's, kept, and the current
//! one's — and they never share a name. That is what makes a request that was dropped at any
//! point (its client disconnected), or that failed, safe to clean up without knowing how far its
//! statements got: `ROLLBACK TO` its own name undoes exactly its writes, or finds no savepoint
//! of that name (it was never opened) and does nothing; releasing the previous request's
//! savepoint keeps that request's writes, whether or not it was still open. Never can a
//! `ROLLBACK TO` reach back into the writes of an earlier request of the batch, which were
//! promised to their clients.

use super::{StoreError, db_err};

/// One of the two savepoint names that consecutive requests take in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    A,
    B,
}

impl Name {
    fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }
}

/// The state of the current request's savepoint (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Savepoint {
    /// The transaction is not shared: statements run in it directly.
    Direct,
    /// A request that has not run a statement yet; `kept` names the previous request's
    /// savepoint, still open, which its first statement releases.
    Idle { kept: Option<Name> },
    /// The request's savepoint `name` is open, or may be (the state is set before the statement
    /// that opens it is sent, so a request dropped while it runs is still cleaned up); `kept`
    /// may still be open as well.
    Open { name: Name, kept: Option<Name> },
}

/// What opens a request's savepoint: the statements to put before its first one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// Nothing: the transaction is not shared, or the savepoint is open already.
    None,
    /// `SAVEPOINT essentry_write_a`.
    OpenA,
    /// Release `b`, then open `a`.
    ReleaseBOpenA,
    /// Release `a`, then open `b`.
    ReleaseAOpenB,
}

impl Opening {
    /// The statements, each ending with `"; "`.
    pub const fn sql(self) -> &'static str {
        match self {
            Self::None => "",
            Self::OpenA => "SAVEPOINT essentry_write_a; ",
            Self::ReleaseBOpenA => {
                "RELEASE SAVEPOINT essentry_write_b; SAVEPOINT essentry_write_a; "
            }
            Self::ReleaseAOpenB => {
                "RELEASE SAVEPOINT essentry_write_a; SAVEPOINT essentry_write_b; "
            }
        }
    }

    /// An index for tables of statements built per opening.
    pub const fn index(self) -> usize {
        match self {
            Self::None => 0,
            Self::OpenA => 1,
            Self::ReleaseBOpenA => 2,
            Self::ReleaseAOpenB => 3,
        }
    }
}

/// How a request of a shared transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestEnd {
    /// It succeeded: its writes stay.
    Kept,
    /// It failed: its writes are undone.
    Failed,
    /// It was dropped midway (its client went away): whatever it did is undone.
    Dropped,
}

type SqliteTx = sqlx::Transaction<'static, sqlx::Sqlite>;

/// Whether `e` says that the savepoint named does not exist.
fn no_such_savepoint(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.message().starts_with("no such savepoint"))
}

/// Runs `sql`; a savepoint it names that does not exist is not an error (see the module docs).
async fn tolerant(t: &mut SqliteTx, sql: &'static str) -> Result<(), StoreError> {
    match sqlx::raw_sql(sql).execute(&mut **t).await {
        Ok(_) => Ok(()),
        Err(e) if no_such_savepoint(&e) => Ok(()),
        Err(e) => Err(db_err(e)),
    }
}

impl Savepoint {
    /// Before a statement of the request: what must open its savepoint first (see
    /// [`Opening`]); the state is then [`Savepoint::Open`].
    pub(super) fn opening(&mut self) -> Opening {
        match *self {
            Self::Direct | Self::Open { .. } => Opening::None,
            Self::Idle { kept } => {
                let name = kept.map_or(Name::A, Name::other);
                *self = Self::Open { name, kept };
                match kept {
                    None => Opening::OpenA,
                    Some(Name::B) => Opening::ReleaseBOpenA,
                    Some(Name::A) => Opening::ReleaseAOpenB,
                }
            }
        }
    }

    /// Before a statement of the request: opens its savepoint if it has none yet.
    pub(super) async fn enter(&mut self, t: &mut SqliteTx) -> Result<(), StoreError> {
        let opening = self.opening();
        if opening == Opening::None {
            return Ok(());
        }
        sqlx::raw_sql(opening.sql())
            .execute(&mut **t)
            .await
            .map(|_| ())
            .map_err(db_err)
    }

    /// Starts a request of a shared transaction.
    pub(super) fn begin_request(&mut self) {
        if let Self::Direct = self {
            *self = Self::Idle { kept: None };
        }
    }

    /// Ends the current request (see [`RequestEnd`]). An error means the transaction can no
    /// longer be trusted to hold exactly the other requests' work: the caller abandons it.
    pub(super) async fn end_request(
        &mut self,
        t: &mut SqliteTx,
        end: RequestEnd,
    ) -> Result<(), StoreError> {
        match (*self, end) {
            (Self::Direct | Self::Idle { .. }, _) => Ok(()),
            // Every statement of the request ran: the previous savepoint is released and this
            // one stays open until the next request (or the commit) releases it.
            (Self::Open { name, .. }, RequestEnd::Kept) => {
                *self = Self::Idle { kept: Some(name) };
                Ok(())
            }
            (Self::Open { name, kept }, RequestEnd::Failed | RequestEnd::Dropped) => {
                *self = Self::Idle { kept: None };
                tolerant(
                    t,
                    match name {
                        Name::A => {
                            "ROLLBACK TO SAVEPOINT essentry_write_a; \
                             RELEASE SAVEPOINT essentry_write_a"
                        }
                        Name::B => {
                            "ROLLBACK TO SAVEPOINT essentry_write_b; \
                             RELEASE SAVEPOINT essentry_write_b"
                        }
                    },
                )
                .await?;
                match kept {
                    None => Ok(()),
                    Some(Name::A) => tolerant(t, "RELEASE SAVEPOINT essentry_write_a").await,
                    Some(Name::B) => tolerant(t, "RELEASE SAVEPOINT essentry_write_b").await,
                }
            }
        }
    }
}
