//! One pull-sync cycle end to end: read what changed in the application's scope from Graph —
//! the whole scope, or only the changes since the last cycle through Graph's delta links (see
//! [`delta`](super::delta); complete or not at all) — load the stored users it touches,
//! [`plan`](super::plan::plan), [`apply`](super::apply::apply) in one transaction (or in a
//! rolled-back one for a dry run) together with the advanced delta state, and record the cycle's
//! summary row (with how it read). A failed read ends the cycle before anything is planned:
//! nothing is deprovisioned from a partial read, and the delta links stay where they were. Every
//! step runs inside a `tracing` span carrying the integration and cycle ids.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use serde_json::json;
use tracing::Instrument;

use super::apply::{self, ApplyReport, Mode};

mod describe;
use super::deletions;
use super::delta::{self as delta_read, FullReason, Prepared, ReadMode};
use super::plan::{self, Plan, Policy};
use crate::config::SyncSettings;
use crate::domain::directory::OpContext;
use crate::domain::{AttributeChange, Clock, CycleStatus, Source, StoreError, UserRecord};
use crate::entra::auth::TokenSource;
use crate::entra::graph::{GraphReader, ReadError, ReadStats, ReaderConfig};
use crate::entra::retry::RetryBudget;
use crate::integrations::GraphIntegration;
use crate::store::{CycleRow, Store};
use crate::sync::progress;
pub use describe::{count, describe};

/// What a cycle needs from the process.
#[derive(Clone)]
pub struct SyncEnv {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub settings: SyncSettings,
}

pub use crate::domain::Trigger;

#[derive(Debug, Clone, Copy)]
pub struct CycleOptions {
    pub trigger: Trigger,
    pub dry_run: bool,
    /// Approve every currently staged deletion that this cycle's read still finds due (not the
    /// ones this cycle finds for the first time, which the threshold may stage for review).
    pub allow_deletes: bool,
    /// Read the whole scope even when the delta links could be followed (`sync --full`).
    pub full: bool,
}

/// How a cycle ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Applied (or, for a dry run, planned) completely.
    Success,
    /// Applied, but the deletion threshold held the deprovisionings.
    Held,
    /// Nothing was changed: the read, the plan or the apply failed.
    Failed,
    /// Not run: another process (replica) is running a cycle of this integration.
    Busy,
}

impl Outcome {
    /// The state the cycle's row records. A busy cycle never ran and records no row of its own;
    /// should one be recorded, it changed nothing, which is what `failed` says.
    pub fn recorded(self) -> CycleStatus {
        match self {
            Self::Success => CycleStatus::Success,
            Self::Held => CycleStatus::Held,
            Self::Failed | Self::Busy => CycleStatus::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Held => "held",
            Self::Failed => "failed",
            Self::Busy => "busy",
        }
    }
}

/// What the read found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReadSummary {
    pub assignments: usize,
    pub direct_users: usize,
    pub groups: usize,
    pub users_in_scope: usize,
    pub stored_users: usize,
}

/// One planned change, for people.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedChange {
    pub action: &'static str,
    pub user_name: String,
    pub object_id: Option<String>,
    pub detail: Option<String>,
    pub changes: Vec<AttributeChange>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CycleError {
    pub code: String,
    pub message: String,
}

/// How many planned changes a report lists one by one; the rest are counted in
/// [`CycleReport::planned`] and each has its provisioning-log row.
pub const LISTED_CHANGES: usize = 200;

/// The plan's size by action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PlannedCounts {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub staged_delete: usize,
    pub skip: usize,
}

/// The result of one cycle.
#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    pub cycle_id: String,
    pub integration: String,
    pub trigger: Trigger,
    pub dry_run: bool,
    pub outcome: Outcome,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub read: Option<ReadSummary>,
    /// The plan's creates, updates, deprovisions, staged deletions and skips, by count.
    pub planned: PlannedCounts,
    /// The first [`LISTED_CHANGES`] of them, one by one (deletions first).
    pub changes: Vec<PlannedChange>,
    /// How many more there are than `changes` lists (see `essentry-sync logs --cycle ID`).
    pub changes_not_listed: usize,
    pub threshold_hit: Option<String>,
    pub notes: Vec<String>,
    pub applied: Option<ApplyReport>,
    pub graph: ReadStats,
    pub error: Option<CycleError>,
    /// How the scope was read (`None` when the cycle failed before reading).
    pub mode: Option<ReadMode>,
    /// Why the whole scope was read.
    pub full_reason: Option<FullReason>,
}

impl CycleReport {
    fn new(cycle_id: String, integration: &str, opts: &CycleOptions, now: DateTime<Utc>) -> Self {
        Self {
            cycle_id,
            integration: integration.to_owned(),
            trigger: opts.trigger,
            dry_run: opts.dry_run,
            outcome: Outcome::Failed,
            started_at: now,
            duration_ms: 0,
            read: None,
            planned: PlannedCounts::default(),
            changes: Vec::new(),
            changes_not_listed: 0,
            threshold_hit: None,
            notes: Vec::new(),
            applied: None,
            graph: ReadStats::default(),
            error: None,
            mode: None,
            full_reason: None,
        }
    }

    fn fail(&mut self, code: impl Into<String>, message: impl Into<String>) {
        self.outcome = Outcome::Failed;
        self.error = Some(CycleError {
            code: code.into(),
            message: message.into(),
        });
    }

    /// Counts by action and status, for the summary row.
    fn counts(&self) -> serde_json::Value {
        json!({
            "planned": self.planned,
            "applied": self.applied,
            "read": self.read,
            "retries": self.graph.retries,
            "token_requests": self.graph.token_requests,
        })
    }
}

/// Builds the Graph reader of an integration for one cycle (its own retry budget).
pub fn reader(env: &SyncEnv, integ: &GraphIntegration) -> Result<GraphReader, ReadError> {
    let endpoints = integ
        .settings
        .endpoints()
        .map_err(|e| ReadError::BadUrl(e.to_string()))?;
    let tokens = TokenSource::new(
        &endpoints,
        &integ.settings.client_id,
        &integ.client_secret,
        env.clock.clone(),
    )?;
    let mut config = ReaderConfig::new(
        endpoints,
        &integ.settings.service_principal_id,
        integ.settings.graph_url.is_some(),
    );
    config.transitive = integ.settings.transitive;
    config.max_pages = env.settings.max_pages.max(1);
    config.max_users = usize::try_from(env.settings.max_users.max(1)).unwrap_or(usize::MAX);
    config.concurrency = env.settings.concurrency.max(1);
    config.timeout = Duration::from_secs(env.settings.request_timeout_secs.max(1));
    let budget = RetryBudget::new(
        env.settings.retry_budget_retries,
        Duration::from_secs(env.settings.retry_budget_wait_secs),
    );
    GraphReader::new(config, Arc::new(tokens), budget)
}

/// Every stored user of the account, in one statement (one consistent snapshot; paging with
/// OFFSET could skip or repeat a user that SCIM creates meanwhile), with the typed attributes
/// only: the planner compares those, and the executor lays the mapped attributes over each
/// updated user's resource as stored at apply time. A change that lands between this read and
/// the apply makes the apply fail its version check and roll back; the next cycle plans again.
pub async fn stored_users(
    store: &Store,
    account: &crate::domain::AccountId,
) -> Result<Vec<UserRecord>, StoreError> {
    store.list_users_light(account).await
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs one cycle of `integ` and records it (a dry run records nothing). A failure of the cycle
/// is a report with [`Outcome::Failed`]; `Err` means the cycle could not even be recorded.
pub async fn run_cycle(
    env: &SyncEnv,
    integ: &GraphIntegration,
    opts: CycleOptions,
) -> Result<CycleReport, StoreError> {
    let cycle_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!(
        "sync_cycle",
        integration = %integ.row.name,
        integration_id = %integ.row.id,
        cycle_id = %cycle_id,
        trigger = opts.trigger.as_str(),
        dry_run = opts.dry_run,
    );
    let started = Instant::now();
    let result = async move {
        let now = env.clock.now();
        // One cycle per integration at a time, across replicas. A dry run writes nothing and
        // needs no lock.
        let lock = if opts.dry_run {
            None
        } else {
            match env.store.try_lock_cycle(&integ.row.id).await? {
                Some(lock) => Some(lock),
                None => {
                    tracing::info!(
                        "another process is running a cycle of this integration; not starting one"
                    );
                    let mut report = CycleReport::new(cycle_id, &integ.row.name, &opts, now);
                    report.outcome = Outcome::Busy;
                    report.error = Some(CycleError {
                        code: "busy".to_owned(),
                        message: format!(
                            "a cycle of {} is already running (on this or another replica)",
                            integ.row.name
                        ),
                    });
                    return Ok(report);
                }
            }
        };
        let result = recorded_cycle(env, integ, opts, cycle_id, now).await;
        if let Some(lock) = lock {
            lock.release().await;
        }
        result
    }
    .instrument(span)
    .await;
    count_cycle(integ, &opts, &result, started);
    result
}

/// Counts the cycle in `/metrics` (`essentry_sync_cycles_total`, and its duration unless it
/// did not run). Dry runs are not counted.
fn count_cycle(
    integ: &GraphIntegration,
    opts: &CycleOptions,
    result: &Result<CycleReport, StoreError>,
    started: Instant,
) {
    if opts.dry_run {
        return;
    }
    if let Ok(CycleReport {
        mode: Some(mode),
        full_reason,
        ..
    }) = result
    {
        crate::metrics::sync_cycle_mode(
            &integ.row.name,
            mode.as_str(),
            full_reason.map(|r| r.as_str()),
        );
    }
    let (outcome, duration) = match result {
        Ok(r) if r.outcome == Outcome::Busy => (r.outcome, None),
        Ok(r) => (r.outcome, Some(Duration::from_millis(r.duration_ms))),
        Err(_) => (Outcome::Failed, Some(started.elapsed())),
    };
    crate::metrics::sync_cycle(
        &integ.row.name,
        opts.trigger.as_str(),
        outcome.as_str(),
        duration,
    );
}

async fn recorded_cycle(
    env: &SyncEnv,
    integ: &GraphIntegration,
    opts: CycleOptions,
    cycle_id: String,
    now: DateTime<Utc>,
) -> Result<CycleReport, StoreError> {
    {
        let mut row = CycleRow::running(
            &cycle_id,
            &integ.row.id,
            &integ.row.name,
            opts.trigger,
            opts.dry_run,
            now,
        );
        if !opts.dry_run {
            let mut tx = env.store.begin().await?;
            tx.start_cycle(&integ.row.account_id, &row).await?;
            tx.commit().await?;
        }
        tracing::info!("sync cycle started");
        let started = Instant::now();
        let mut report = CycleReport::new(cycle_id, &integ.row.name, &opts, now);
        let prompt = crate::memory::PromptRelease::hold();
        cycle_body(env, integ, opts, now, &mut report).await;
        crate::memory::release_freed();
        drop(prompt);
        report.duration_ms = millis(started.elapsed());
        match &report.error {
            None => tracing::info!(
                outcome = report.outcome.as_str(),
                duration_ms = report.duration_ms,
                graph_requests = report.graph.requests,
                throttled = report.graph.throttled,
                "sync cycle finished"
            ),
            Some(e) => tracing::warn!(
                code = %e.code,
                error = %e.message,
                duration_ms = report.duration_ms,
                "sync cycle failed; nothing was changed"
            ),
        }
        if !opts.dry_run {
            row.outcome = report.outcome.recorded();
            row.counts = report.counts();
            row.graph_requests = i64::try_from(report.graph.requests).unwrap_or(i64::MAX);
            row.throttled = i64::try_from(report.graph.throttled).unwrap_or(i64::MAX);
            row.error_code = report.error.as_ref().map(|e| e.code.clone());
            row.error_message = report.error.as_ref().map(|e| e.message.clone());
            row.finished_at = Some(env.clock.now());
            row.duration_ms = Some(i64::try_from(report.duration_ms).unwrap_or(i64::MAX));
            row.mode = report.mode.map(|m| m.as_str().to_owned());
            row.full_reason = report.full_reason.map(|r| r.as_str().to_owned());
            let mut tx = env.store.begin().await?;
            tx.finish_cycle(&row).await?;
            let cutoff =
                env.clock.now() - TimeDelta::days(i64::from(env.settings.log_retention_days));
            let (logs, cycles) = tx.purge_before(cutoff).await?;
            tx.commit().await?;
            if logs + cycles > 0 {
                tracing::info!(logs, cycles, "provisioning log rows past retention deleted");
            }
        }
        Ok(report)
    }
}

/// Reads the scope; when someone watches the cycle's progress, the Graph requests sent so far
/// are reported while the read runs.
async fn read_observed(
    reader: &GraphReader,
    assigned: crate::entra::delta::Assigned,
) -> Result<crate::entra::graph::ScopeRead, ReadError> {
    let read = reader.read_scope_of(&assigned);
    if !progress::observed() {
        return read.await;
    }
    tokio::pin!(read);
    loop {
        tokio::select! {
            result = &mut read => return result,
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                let requests = reader.stats().requests;
                progress::report(|p| p.graph_requests = requests);
            }
        }
    }
}

/// What the planner is told: the integration, who manages which users, the users an operator
/// kept, and — with `allow_deletes` — the staged deletions approved. A real cycle first records
/// its complete read (see [`deletions::confirm_read`]).
async fn cycle_policy(
    env: &SyncEnv,
    integ: &GraphIntegration,
    opts: CycleOptions,
    now: DateTime<Utc>,
    cycle_id: &str,
    snapshot: &crate::domain::entra::Snapshot,
    users_in_scope: usize,
) -> Result<Policy, StoreError> {
    let mut policy = Policy::new(
        integ.row.id.clone(),
        integ.row.name.clone(),
        integ.settings.mapping.clone(),
        integ.settings.threshold.clone(),
    );
    policy.managers = deletions::managers(&env.store, &integ.row).await?;
    policy.kept = env
        .store
        .rejected_users(&integ.row.id)
        .await?
        .into_iter()
        .collect();
    let due = if opts.dry_run {
        let rows = env
            .store
            .list_staged(&integ.row.account_id, Some(&integ.row.id))
            .await?;
        deletions::still_due(rows, snapshot)
    } else {
        deletions::confirm_read(
            &env.store,
            &integ.row,
            cycle_id,
            now,
            snapshot,
            users_in_scope,
        )
        .await?
    };
    if opts.allow_deletes {
        policy.approved = due
            .into_iter()
            .filter(|r| !r.expired(now))
            .map(|r| r.user_id)
            .collect();
    }
    Ok(policy)
}

/// The object ids of the users this integration manages that left the scope because their
/// Entra account no longer exists (so the deletion review can say "deleted in Entra" rather than
/// "unassigned"). A lookup that fails only loses that distinction, noted in the report.
async fn deleted_in_entra(
    reader: &GraphReader,
    integ: &GraphIntegration,
    snapshot: &crate::domain::entra::Snapshot,
    current: &[UserRecord],
    report: &mut CycleReport,
) -> HashSet<crate::domain::EntraObjectId> {
    let in_scope: HashSet<&str> = snapshot
        .users()
        .iter()
        .map(|u| u.object_id.as_str())
        .collect();
    let gone: Vec<&crate::domain::EntraObjectId> = current
        .iter()
        .filter(|u| u.managed_by.as_ref() == Some(&integ.row.id))
        .filter_map(|u| u.attrs.entra_object_id.as_ref())
        .filter(|o| !in_scope.contains(o.as_str()))
        .collect();
    if gone.is_empty() {
        return HashSet::new();
    }
    let ids: Vec<String> = gone.iter().map(|o| o.as_str().to_owned()).collect();
    match reader.existing_users(&ids).await {
        Ok(found) => gone
            .into_iter()
            .filter(|o| !found.contains(o.as_str()))
            .cloned()
            .collect(),
        Err(e) => {
            report.notes.push(format!(
                "could not tell unassigned users from deleted ones ({e}); all are reported as unassigned"
            ));
            HashSet::new()
        }
    }
}

/// Refreshes the database's planner statistics after an apply that rewrote much of the directory
/// ([`ApplyReport::rewrote_much`]): on PostgreSQL, the next cycles' reads of 100,000 freshly
/// written rows otherwise run on plans made for empty tables until autovacuum analyzes them. A
/// failure leaves the cycle's outcome as it is (the changes are committed; autovacuum will
/// analyze the tables later) and is logged.
async fn refresh_statistics(env: &SyncEnv) {
    let started = Instant::now();
    match env.store.refresh_planner_statistics().await {
        Ok(true) => tracing::info!(
            duration_ms = millis(started.elapsed()),
            "planner statistics refreshed after a large apply"
        ),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!("refreshing the planner statistics after a large apply failed: {e}")
        }
    }
}

/// Records the cycle's staged deletions for review (see [`deletions::restage`]).
async fn restage(
    env: &SyncEnv,
    integ: &GraphIntegration,
    now: DateTime<Utc>,
    plan: &Plan,
    report: &mut CycleReport,
) {
    if let Err(e) = deletions::restage(
        &env.store,
        &integ.row,
        &report.cycle_id,
        now,
        env.settings.staged_deletion_expiry_days,
        &plan.staged,
    )
    .await
    {
        report.fail(
            "database",
            format!("recording the staged deletions failed: {e}"),
        );
    }
}

async fn cycle_body(
    env: &SyncEnv,
    integ: &GraphIntegration,
    opts: CycleOptions,
    now: DateTime<Utc>,
    report: &mut CycleReport,
) {
    let reader = match reader(env, integ) {
        Ok(r) => r,
        Err(e) => return report.fail(e.code(), e.to_string()),
    };
    progress::report(|p| p.phase = "reading".to_owned());
    let prepared = delta_read::prepare(
        env,
        integ,
        opts.full,
        opts.dry_run,
        now,
        &reader,
        |assigned| read_observed(&reader, assigned),
    )
    .await;
    report.graph = reader.stats();
    let Prepared {
        mode,
        full_reason,
        snapshot,
        current,
        summary,
        totals,
        deleted,
        mut write,
        notes,
    } = match prepared {
        Ok(p) => p,
        Err(e) => {
            return report.fail(
                e.code(),
                format!("reading Graph failed, nothing was changed: {e}"),
            );
        }
    };
    report.mode = Some(mode);
    report.full_reason = full_reason;
    report.notes.extend(notes);
    let account = &integ.row.account_id;
    let users_in_scope = summary.users_in_scope;
    report.read = Some(summary);
    let policy = match cycle_policy(
        env,
        integ,
        opts,
        now,
        &report.cycle_id,
        &snapshot,
        users_in_scope,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => return report.fail("database", e.to_string()),
    };
    let mut policy = policy;
    policy.totals = totals;
    policy.deleted_in_entra = match deleted {
        Some(d) => d,
        None => deleted_in_entra(&reader, integ, &snapshot, &current, report).await,
    };
    report.graph = reader.stats();
    progress::report(|p| {
        p.phase = "planning".to_owned();
        p.users_read = snapshot.len() as u64;
        p.graph_requests = report.graph.requests;
    });
    let plan = plan::plan(&snapshot, &current, &policy);
    drop(current);
    write.complete(&snapshot, &plan);
    drop(snapshot);
    // The read, the stored users and the planner's working set are gone: hand their pages back
    // before the apply (which allocates on other threads, where these pages would sit unused).
    crate::memory::release_freed();
    report.planned = count(&plan);
    report.changes = describe(&plan, LISTED_CHANGES);
    let total = plan.creates.len()
        + plan.updates.len()
        + plan.deprovisions.len()
        + plan.staged.len()
        + plan.skips.len();
    report.changes_not_listed = total - report.changes.len();
    progress::report(|p| {
        p.phase = "applying".to_owned();
        p.changes_planned = total as u64;
    });
    report.threshold_hit = plan.threshold_hit.clone();
    report.notes.extend(plan.notes.iter().cloned());
    if let Some(hit) = &plan.threshold_hit {
        tracing::warn!(staged = plan.staged.len(), "{hit}");
    }
    let since = now - TimeDelta::days(i64::from(env.settings.log_retention_days));
    let known: HashSet<String> = match env.store.logged_skip_keys(&integ.row.id, since).await {
        Ok(k) => k,
        Err(e) => return report.fail("database", e.to_string()),
    };
    let new_log_rows = plan
        .skips
        .iter()
        .filter(|s| {
            !known.contains(&crate::store::skip_key(
                "skip",
                &s.object_id.to_string(),
                s.reason.code(),
            ))
        })
        .count()
        + plan
            .staged
            .iter()
            .filter(|s| {
                let object = s
                    .object_id
                    .as_ref()
                    .map(|o| o.to_string())
                    .unwrap_or_default();
                !known.contains(&crate::store::skip_key(
                    "staged_delete",
                    &object,
                    "DeletionThresholdExceeded",
                ))
            })
            .count();
    let outcome = if plan.threshold_hit.is_some() {
        Outcome::Held
    } else {
        Outcome::Success
    };
    if plan.is_noop() && new_log_rows == 0 {
        report.applied = Some(ApplyReport {
            unchanged: plan.unchanged,
            staged: plan.staged.len(),
            skipped: plan.skips.len(),
            already_logged: plan.skips.len() + plan.staged.len(),
            ..ApplyReport::default()
        });
        report.outcome = outcome;
        if !opts.dry_run {
            if let Err(e) = save_state(env, integ, &write).await {
                return report.fail("database", format!("recording the delta state failed: {e}"));
            }
            restage(env, integ, now, &plan, report).await;
        }
        return;
    }
    let ctx = OpContext {
        account: account.clone(),
        source: Source::Graph,
        integration_id: Some(integ.row.id.clone()),
        cycle_id: Some(report.cycle_id.clone()),
        now,
    };
    let mode = if opts.dry_run {
        Mode::DryRun
    } else {
        Mode::Commit
    };
    let applied = match mode {
        Mode::DryRun => apply::apply(&env.store, &ctx, &plan, mode, &known).await,
        Mode::Commit => apply_and_save(env, integ, &ctx, &plan, &known, &write).await,
    };
    if let (Ok(applied), Mode::Commit) = (&applied, mode) {
        applied.count_committed(Source::Graph);
    }
    match applied {
        Ok(applied) => {
            progress::report(|p| {
                p.changes_applied =
                    (applied.created + applied.updated + applied.deprovisioned) as u64;
            });
            if mode == Mode::Commit && applied.rewrote_much(users_in_scope) {
                refresh_statistics(env).await;
            }
            report.applied = Some(applied);
            report.outcome = outcome;
            if mode == Mode::Commit {
                restage(env, integ, now, &plan, report).await;
            }
        }
        Err(e) => report.fail(
            "apply_failed",
            format!("applying the plan failed and was rolled back: {e}"),
        ),
    }
}

/// Saves the delta state of a cycle that planned nothing to write.
async fn save_state(
    env: &SyncEnv,
    integ: &GraphIntegration,
    write: &delta_read::StateWrite,
) -> Result<(), StoreError> {
    let mut tx = env.store.begin().await?;
    write.save(&mut tx, &integ.row.id).await?;
    tx.commit().await
}

/// Applies the plan and saves the delta state in one transaction: the links advance only with
/// the changes they led to.
async fn apply_and_save(
    env: &SyncEnv,
    integ: &GraphIntegration,
    ctx: &OpContext,
    plan: &Plan,
    known: &HashSet<String>,
    write: &delta_read::StateWrite,
) -> Result<ApplyReport, crate::domain::DirectoryError> {
    let started = Instant::now();
    let mut tx = env.store.begin().await?;
    let mut applied = apply::apply_in(&mut tx, ctx, plan, known).await?;
    write.save(&mut tx, &integ.row.id).await?;
    tx.commit().await?;
    applied.duration_ms = millis(started.elapsed());
    Ok(applied)
}
