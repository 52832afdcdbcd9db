//! Incremental cycles: what a cycle plans from, read in full or from Graph's delta links.
//!
//! - **Which.** [`full_reason`] (pure) says why a cycle must read the whole scope: the
//!   integration is `transitive` (nested groups are not tracked by delta: such integrations
//!   always read in full), a full read was asked for (`sync --full`, the admin API, the
//!   console), there is no delta state yet, the settings that shape the read changed (their
//!   [`fingerprint`]), or the full-reconcile schedule is due. A delta link Graph rejects
//!   (`ReadError::DeltaRejected`) turns the cycle into a full read with fresh links; so does an
//!   incremental plan whose userName conflicts reach too far ([`FullReason::Conflicts`]).
//! - **Full read.** The links are taken first (`$deltatoken=latest`), then the assignments, one
//!   `groups/delta` link per [`GROUPS_PER_QUERY`] assigned groups, then the scope as always. The
//!   scope rows ([`ScopeMember`]) are built from the read once the plan is made
//!   ([`StateWrite::complete`]); the save writes only those that differ from the stored ones.
//! - **Incremental read.** The assignments are read again (Graph has no reliable delta for app
//!   role assignments), then `users/delta` and each `groups/delta` link; groups newly assigned
//!   get their members read and a link of their own. The users whose scope or attributes
//!   changed — plus the users staged for deletion and the ones the last plan skipped for a
//!   reason another user's change can lift — are looked up with `getByIds` and planned against
//!   the stored users they match by object id or userName (and, in turn, the in-scope users
//!   those hold), through the same planner, with the threshold's base counted over the whole
//!   scope ([`Policy::totals`](super::plan::Policy::totals)).
//! - **Safety.** Nothing is written here: the new state ([`StateWrite`]) is saved by the cycle
//!   in the transaction of its apply, so a failed cycle keeps the old links and resumes from
//!   them.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::cycle::{ReadSummary, SyncEnv, stored_users};
use super::mapping::SkipReason;
use super::plan::Plan;
use super::schedule::Schedule;
use crate::domain::entra::{Assignment, EntraUser, Snapshot};
use crate::domain::{EntraObjectId, IntegrationId, StoreError, UserRecord};
use crate::entra::delta::{Assigned, GROUPS_PER_QUERY};
use crate::entra::graph::{GraphReader, ReadError, ScopeRead};
use crate::integrations::{GraphIntegration, GraphSettings};
use crate::store::Tx;
use crate::store::delta::{AssignedScope, DeltaState, GroupsLink, ScopeMember};

/// Rounds of looking up the in-scope users that hold a userName an incremental plan touches;
/// past this the cycle reads everything instead.
const NEIGHBOUR_ROUNDS: usize = 4;

/// How a cycle read the scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadMode {
    Full,
    Incremental,
}

impl ReadMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Incremental => "incremental",
        }
    }
}

/// Why a cycle read the whole scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FullReason {
    /// No delta state yet (first cycle, or after the state was cleared).
    First,
    /// `sync --full`, the admin API or the console asked for it.
    Requested,
    /// The full-reconcile schedule is due.
    Schedule,
    /// userName source, transitive, mapping or the tenant changed since the links were taken.
    Settings,
    /// Graph rejected a delta link (410, `syncStateNotFound`, `resyncRequired`).
    DeltaRejected,
    /// Nested groups: this integration always reads in full.
    Transitive,
    /// The changes' userName conflicts reached too far for an incremental plan.
    Conflicts,
}

impl FullReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::First => "first",
            Self::Requested => "requested",
            Self::Schedule => "schedule",
            Self::Settings => "settings",
            Self::DeltaRejected => "delta_rejected",
            Self::Transitive => "transitive",
            Self::Conflicts => "conflicts",
        }
    }
}

/// The fingerprint of the settings that decide what a read returns: a change forces a full read.
pub fn fingerprint(s: &GraphSettings) -> String {
    let value = serde_json::json!({
        "tenant": s.tenant_id.to_ascii_lowercase(),
        "service_principal": s.service_principal_id.to_ascii_lowercase(),
        "cloud": s.cloud,
        "graph_url": s.graph_url,
        "transitive": s.transitive,
        "mapping": s.mapping,
    });
    let digest = Sha256::digest(value.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The full-reconcile schedule of an integration (its own, else the `sync.full_reconcile`
/// setting; an unusable one falls back to every 24 hours, and says so).
pub fn full_schedule(env: &SyncEnv, s: &GraphSettings) -> (Schedule, Option<String>) {
    let text = s
        .full_reconcile
        .clone()
        .unwrap_or_else(|| env.settings.full_reconcile.clone());
    match Schedule::parse(&text) {
        Ok(sched) => (sched, None),
        Err(e) => (
            Schedule::Every(std::time::Duration::from_secs(24 * 3600)),
            Some(format!("full_reconcile: {e}; every 24h is used")),
        ),
    }
}

/// Pure: why this cycle must read the whole scope (`None`: it follows its delta links).
pub fn full_reason(
    state: Option<&DeltaState>,
    fingerprint: &str,
    transitive: bool,
    requested: bool,
    now: DateTime<Utc>,
    schedule: &Schedule,
) -> Option<FullReason> {
    if transitive {
        return Some(FullReason::Transitive);
    }
    if requested {
        return Some(FullReason::Requested);
    }
    let Some(state) = state else {
        return Some(FullReason::First);
    };
    if state.fingerprint != fingerprint {
        return Some(FullReason::Settings);
    }
    if schedule.next_after(state.full_at) <= now {
        return Some(FullReason::Schedule);
    }
    None
}

/// When the next full reconcile is due (`None` for transitive integrations, which always read
/// in full; the first cycle when there is no state).
pub fn next_full_reconcile(
    state: Option<&DeltaState>,
    transitive: bool,
    schedule: &Schedule,
) -> Option<DateTime<Utc>> {
    if transitive {
        return None;
    }
    state.map(|s| schedule.next_after(s.full_at))
}

/// What the cycle saves, in its apply's transaction, once it succeeded.
#[derive(Debug, Clone)]
pub enum StateWrite {
    /// A dry run saves nothing.
    Nothing,
    /// No delta state (transitive integrations).
    Clear,
    /// A full read: new links and every scope row, sorted by object id (which lets the save
    /// compare them with the stored ones row by row). The rows are `None` until
    /// [`complete`](Self::complete) builds them from the snapshot; saving without them fails.
    Full {
        state: DeltaState,
        members: Option<Vec<ScopeMember>>,
    },
    /// An incremental read: advanced links and the changed scope rows.
    Patch {
        state: DeltaState,
        put: Vec<ScopeMember>,
        delete: Vec<String>,
    },
}

/// Skips another user's change can lift: the next incremental cycle plans the user again.
fn lifts_later(reason: &SkipReason) -> bool {
    matches!(
        reason,
        SkipReason::DuplicateUserName { .. }
            | SkipReason::UserNameTaken { .. }
            | SkipReason::DeletionHeld { .. }
            | SkipReason::ManagedElsewhere { .. }
            | SkipReason::KeptByOperator { .. }
    )
}

impl StateWrite {
    /// Completes the state once the cycle planned: builds a full read's scope rows from its
    /// snapshot, and marks the scope rows of the users `plan` skipped for a reason that may lift.
    /// A full read's rows are built here, after the plan and once the stored users are dropped,
    /// not with the read: the cycle's peak memory is then the plan's (snapshot, stored users and
    /// the planner's working set), not the plan's plus one row per user in scope.
    pub fn complete(&mut self, snapshot: &Snapshot, plan: &Plan) {
        if let Self::Full { members, .. } = self
            && members.is_none()
        {
            let mut rows: Vec<ScopeMember> = snapshot.users().iter().map(member_of).collect();
            rows.sort_unstable_by(|a, b| a.object_id.cmp(&b.object_id));
            *members = Some(rows);
        }
        // A user deprovisioned for being disabled is still in scope: the next cycle plans it
        // again (and logs it as a skip once), as a full read would.
        let pending: HashSet<&str> = plan
            .skips
            .iter()
            .filter(|s| lifts_later(&s.reason))
            .map(|s| s.object_id.as_str())
            .chain(
                plan.deprovisions
                    .iter()
                    .filter(|d| d.reason == crate::domain::DeprovisionReason::Deactivated)
                    .filter_map(|d| d.object_id.as_ref().map(EntraObjectId::as_str)),
            )
            .collect();
        let rows = match self {
            Self::Full { members, .. } => match members {
                Some(rows) => rows,
                None => return,
            },
            Self::Patch { put, .. } => put,
            Self::Nothing | Self::Clear => return,
        };
        for m in rows.iter_mut() {
            m.pending = pending.contains(m.object_id.as_str());
        }
    }

    /// Saves the state in the cycle's transaction.
    pub async fn save(&self, tx: &mut Tx, integration: &IntegrationId) -> Result<(), StoreError> {
        match self {
            Self::Nothing => Ok(()),
            Self::Clear => tx.clear_delta_state(integration).await,
            Self::Full { state, members } => {
                let Some(members) = members else {
                    // Saving the links without the rows they continue from would make the next
                    // incremental cycles plan from an empty scope.
                    return Err(StoreError::Database(
                        "a full read's scope rows were not built before saving its delta state"
                            .into(),
                    ));
                };
                // Only the rows that differ: a steady full reconcile rewrites none.
                tx.replace_scope_members(integration, members).await?;
                tx.put_delta_state(integration, state).await
            }
            Self::Patch { state, put, delete } => {
                tx.delete_scope_members(integration, delete).await?;
                let put: Vec<&ScopeMember> = put.iter().collect();
                tx.put_scope_members(integration, &put).await?;
                tx.put_delta_state(integration, state).await
            }
        }
    }
}

/// What a cycle plans from.
pub struct Prepared {
    pub mode: ReadMode,
    pub full_reason: Option<FullReason>,
    /// The whole scope (full read), or the changed part of it (incremental).
    pub snapshot: Snapshot,
    /// Every stored user (full read), or those the changed part matches (incremental).
    pub current: Vec<UserRecord>,
    pub summary: ReadSummary,
    /// The threshold's base for an incremental plan.
    pub totals: Option<(usize, usize)>,
    /// Accounts known deleted in Entra (incremental); `None`: the cycle asks Graph.
    pub deleted: Option<HashSet<EntraObjectId>>,
    pub write: StateWrite,
    pub notes: Vec<String>,
}

/// Why preparing failed.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PrepareError {
    pub fn code(&self) -> String {
        match self {
            Self::Read(e) => e.code(),
            Self::Store(_) => "database".to_owned(),
        }
    }
}

/// An incremental read that must become a full one.
enum Fallback {
    Full(FullReason, String),
    Failed(PrepareError),
}

impl<E: Into<PrepareError>> From<E> for Fallback {
    fn from(e: E) -> Self {
        match e.into() {
            PrepareError::Read(ReadError::DeltaRejected { what, code }) => Self::Full(
                FullReason::DeltaRejected,
                format!("Graph rejected the delta link of {what} ({code}); read in full"),
            ),
            other => Self::Failed(other),
        }
    }
}

/// Reads what the cycle plans from: in full or incrementally (see the module documentation).
/// `read` wraps the full scope read (progress reporting).
pub async fn prepare<F, Fut>(
    env: &SyncEnv,
    integ: &GraphIntegration,
    requested_full: bool,
    dry_run: bool,
    now: DateTime<Utc>,
    reader: &GraphReader,
    read: F,
) -> Result<Prepared, PrepareError>
where
    F: FnOnce(Assigned) -> Fut,
    Fut: std::future::Future<Output = Result<ScopeRead, ReadError>>,
{
    let fp = fingerprint(&integ.settings);
    let (schedule, schedule_note) = full_schedule(env, &integ.settings);
    let state = env.store.delta_state(&integ.row.id).await?;
    let reason = full_reason(
        state.as_ref(),
        &fp,
        integ.settings.transitive,
        requested_full,
        now,
        &schedule,
    );
    let mut notes: Vec<String> = schedule_note.into_iter().collect();
    let reason = match (reason, state) {
        (Some(r), _) => r,
        (None, None) => FullReason::First,
        (None, Some(state)) => match incremental::incremental(env, integ, reader, state, now).await
        {
            Ok(mut p) => {
                if dry_run {
                    p.write = StateWrite::Nothing;
                }
                p.notes.extend(notes);
                return Ok(p);
            }
            Err(Fallback::Failed(e)) => return Err(e),
            Err(Fallback::Full(reason, note)) => {
                tracing::info!(reason = reason.as_str(), "{note}");
                notes.push(note);
                reason
            }
        },
    };
    let mut p = full(env, integ, reader, reason, fp, now, read).await?;
    if dry_run {
        p.write = StateWrite::Nothing;
    }
    p.notes.extend(notes);
    Ok(p)
}

async fn full<F, Fut>(
    env: &SyncEnv,
    integ: &GraphIntegration,
    reader: &GraphReader,
    reason: FullReason,
    fingerprint: String,
    now: DateTime<Utc>,
    read: F,
) -> Result<Prepared, PrepareError>
where
    F: FnOnce(Assigned) -> Fut,
    Fut: std::future::Future<Output = Result<ScopeRead, ReadError>>,
{
    let transitive = integ.settings.transitive;
    // The links first: a change after this point is in the next round (and perhaps also in
    // this read; applying it twice is harmless).
    let users_link = if transitive {
        None
    } else {
        Some(reader.latest_users_link().await?)
    };
    let assigned = reader.read_assignments().await?;
    let mut groups_links = Vec::new();
    if !transitive {
        let mut ids: Vec<String> = assigned.groups.iter().map(|(g, _)| g.clone()).collect();
        ids.sort();
        for chunk in ids.chunks(GROUPS_PER_QUERY) {
            groups_links.push(GroupsLink {
                groups: chunk.to_vec(),
                link: reader.latest_groups_link(chunk).await?,
            });
        }
    }
    let scope_assignments = AssignedScope {
        direct: assigned.direct.clone(),
        groups: assigned.groups.clone(),
    };
    let read = read(assigned).await?;
    // What reading left behind (response bodies, their parsed pages) is garbage now: its pages
    // go back before the stored users are loaded beside the snapshot.
    crate::memory::release_freed();
    let current = stored_users(&env.store, &integ.row.account_id).await?;
    let summary = ReadSummary {
        assignments: read.assignments,
        direct_users: read.direct_users,
        groups: read.groups,
        users_in_scope: read.snapshot.len(),
        stored_users: current.len(),
    };
    let write = match users_link {
        None => StateWrite::Clear,
        Some(users_link) => StateWrite::Full {
            members: None,
            state: DeltaState {
                users_link,
                groups_links,
                assignments: scope_assignments,
                fingerprint,
                full_at: now,
                updated_at: now,
            },
        },
    };
    Ok(Prepared {
        mode: ReadMode::Full,
        full_reason: Some(reason),
        snapshot: read.snapshot,
        current,
        summary,
        totals: None,
        deleted: None,
        write,
        notes: Vec::new(),
    })
}

/// The scope row of a user read in full.
fn member_of(u: &EntraUser) -> ScopeMember {
    let mut groups: Vec<String> = u
        .assigned_via
        .iter()
        .filter_map(|a| match a {
            Assignment::Group { group_id, .. } => Some(group_id.as_str().to_owned()),
            Assignment::Direct => None,
        })
        .collect();
    groups.sort();
    groups.dedup();
    ScopeMember {
        object_id: u.object_id.as_str().to_owned(),
        direct: u.assigned_via.contains(&Assignment::Direct),
        groups,
        removed: false,
        pending: false,
    }
}

/// A user's assignments from its scope row.
fn assignments_of(m: &ScopeMember, names: &HashMap<String, Option<String>>) -> Vec<Assignment> {
    let mut out = Vec::new();
    if m.direct {
        out.push(Assignment::Direct);
    }
    for g in &m.groups {
        if let Ok(group_id) = EntraObjectId::parse(g) {
            out.push(Assignment::Group {
                group_id,
                group_name: names.get(g).cloned().flatten(),
            });
        }
    }
    out
}

mod incremental;
#[cfg(test)]
mod tests;
