//! One backend, end to end: the tenant and simulator, the store and integration, then the three
//! measured cycles (initial, steady, 1% changed) with the store checked independently between
//! them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, Utc};
use essentry_sync::config::SyncSettings;
use essentry_sync::domain::{AccountId, SystemClock};

use crate::sim_process::SimProcess;
use essentry_sync::integrations::GraphIntegration;
use essentry_sync::store::Store;
use essentry_sync::sync::cycle::{
    CycleOptions, CycleReport, LISTED_CHANGES, Outcome, SyncEnv, Trigger, describe, reader,
    run_cycle, stored_users,
};
use essentry_sync::sync::plan::{Policy, plan};

use crate::setup::{Expected, StoreTarget, integration};
use crate::{Backend, Options, memory, reset_peak};

/// The given-name prefix of the users renamed for the "1% changed" cycle.
const RENAMED: &str = "Renamed";
/// One user in this many is renamed.
const RENAME_EVERY: usize = 100;
/// One user in this many (from [`UNGROUP_OFFSET`] on, so none of them is also renamed) is
/// removed from its groups: 0.5%.
const UNGROUP_EVERY: usize = 200;
const UNGROUP_OFFSET: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CycleKind {
    Initial,
    Steady,
    Changed,
    Reconcile,
    Rejected,
}

impl CycleKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Initial => "1. initial (all creates)",
            Self::Steady => "2. incremental, no changes",
            Self::Changed => "3. incremental, 1% renamed + 0.5% left groups",
            Self::Reconcile => "4. full reconcile (--full)",
            Self::Rejected => "5. full read after a rejected delta link",
        }
    }
}

/// One measured cycle.
#[derive(Debug, Clone)]
pub struct CycleResult {
    pub kind: CycleKind,
    pub outcome: Outcome,
    pub error: Option<String>,
    /// Around `run_cycle`, including the cycle row's start and finish.
    pub wall: Duration,
    /// The report's own `duration_ms` (read, plan and apply).
    pub report_ms: u64,
    pub apply_ms: Option<u64>,
    /// Graph requests counted by the reader (retries included).
    pub client_requests: u64,
    /// Graph requests the simulator answered.
    pub sim_requests: u64,
    pub token_requests: u64,
    pub throttled: u64,
    pub retries: u64,
    pub by_route: BTreeMap<String, u64>,
    pub users_in_scope: Option<usize>,
    pub stored_before: Option<usize>,
    pub created: usize,
    pub updated: usize,
    pub deprovisioned: usize,
    pub unchanged: usize,
    pub staged: usize,
    pub skipped: usize,
    pub planned: BTreeMap<&'static str, usize>,
    /// Changes the report lists one by one (`report.changes`), by action.
    pub listed: BTreeMap<&'static str, usize>,
    pub changes_not_listed: usize,
    pub notes: Vec<String>,
    /// `full` or `incremental`, and why a full read happened.
    pub mode: String,
    /// `VmRSS` after the cycle.
    pub rss_mb: f64,
    /// Peak RSS during the cycle (`VmHWM` reset just before it), when the kernel allows the reset.
    pub cycle_peak_mb: Option<f64>,
    /// Process peak RSS since start, after the cycle.
    pub peak_mb: f64,
}

impl CycleResult {
    pub fn planned(&self, action: &str) -> usize {
        self.planned.get(action).copied().unwrap_or(0)
    }

    /// No directory row written and none planned.
    pub fn zero_writes(&self) -> bool {
        self.created == 0
            && self.updated == 0
            && self.deprovisioned == 0
            && ["create", "update", "delete", "staged_delete"]
                .iter()
                .all(|a| self.planned(a) == 0)
            && self.listed_writes() == 0
    }

    /// Listed changes of the kinds that write (create, update, delete, staged delete).
    pub fn listed_writes(&self) -> usize {
        ["create", "update", "delete", "staged_delete"]
            .iter()
            .map(|a| self.listed.get(a).copied().unwrap_or(0))
            .sum()
    }

    fn from_report(
        kind: CycleKind,
        r: &CycleReport,
        wall: Duration,
        stats: crate::sim_process::SimStats,
        peak_was_reset: bool,
    ) -> Result<Self> {
        let mem = memory()?;
        let mut planned: BTreeMap<&'static str, usize> = BTreeMap::new();
        for (action, n) in [
            ("create", r.planned.create),
            ("update", r.planned.update),
            ("delete", r.planned.delete),
            ("staged_delete", r.planned.staged_delete),
            ("skip", r.planned.skip),
        ] {
            if n > 0 {
                planned.insert(action, n);
            }
        }
        let mut listed: BTreeMap<&'static str, usize> = BTreeMap::new();
        for c in &r.changes {
            *listed.entry(c.action).or_default() += 1;
        }
        let a = r.applied.clone().unwrap_or_default();
        Ok(Self {
            kind,
            outcome: r.outcome,
            error: r
                .error
                .as_ref()
                .map(|e| format!("{}: {}", e.code, e.message)),
            wall,
            report_ms: r.duration_ms,
            apply_ms: r.applied.as_ref().map(|a| a.duration_ms),
            client_requests: r.graph.requests,
            sim_requests: stats.graph_requests,
            token_requests: stats.token_requests,
            throttled: r.graph.throttled.max(stats.throttled),
            retries: r.graph.retries,
            by_route: stats.by_route,
            users_in_scope: r.read.as_ref().map(|s| s.users_in_scope),
            stored_before: r.read.as_ref().map(|s| s.stored_users),
            created: a.created,
            updated: a.updated,
            deprovisioned: a.deprovisioned,
            unchanged: a.unchanged,
            staged: a.staged,
            skipped: a.skipped,
            planned,
            listed,
            changes_not_listed: r.changes_not_listed,
            notes: r.notes.clone(),
            mode: match (r.mode, r.full_reason) {
                (Some(m), Some(why)) => format!("{} ({})", m.as_str(), why.as_str()),
                (Some(m), None) => m.as_str().to_owned(),
                (None, _) => "-".to_owned(),
            },
            rss_mb: mem.rss_mb,
            cycle_peak_mb: peak_was_reset.then_some(mem.hwm_mb),
            peak_mb: mem.peak_mb,
        })
    }
}

/// What the stored users look like, read a page at a time (so that checking does not raise the
/// peak memory the cycles are measured by).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub users: usize,
    pub version_sum: i64,
    pub latest_update: Option<DateTime<Utc>>,
    /// Users whose given name carries the rename prefix.
    pub renamed: usize,
}

/// The bench's own check between cycles, not part of the service: it reads every stored user
/// (with its resource) and hands the memory back as it goes and when done, as a cycle does, so that the next
/// cycle's figures do not carry it (it left 60–70 MB resident under every later cycle).
async fn fingerprint(store: &Store, account: &AccountId) -> Result<Fingerprint> {
    let prompt = essentry_sync::memory::PromptRelease::hold();
    let f = fingerprint_pages(store, account).await;
    essentry_sync::memory::release_freed();
    drop(prompt);
    f
}

async fn fingerprint_pages(store: &Store, account: &AccountId) -> Result<Fingerprint> {
    const PAGE: i64 = 10_000;
    let mut f = Fingerprint {
        users: 0,
        version_sum: 0,
        latest_update: None,
        renamed: 0,
    };
    loop {
        let (page, _) = store
            .list_users(account, None, f.users as i64, PAGE, false)
            .await
            .context("listing the stored users")?;
        let n = page.len();
        for u in page {
            f.users += 1;
            f.version_sum += u.version;
            f.latest_update = f.latest_update.max(Some(u.updated_at));
            if u.attrs
                .given_name
                .as_deref()
                .is_some_and(|g| g.starts_with(RENAMED))
            {
                f.renamed += 1;
            }
        }
        if (n as i64) < PAGE {
            return Ok(f);
        }
    }
}

/// Everything measured on one backend.
pub struct BackendRun {
    pub backend: Backend,
    pub expected: Expected,
    pub tenant_build: Duration,
    /// Process memory once the tenant is built and the simulator serves it, before any cycle.
    pub baseline_rss_mb: f64,
    pub baseline_hwm_mb: f64,
    pub cycles: Vec<CycleResult>,
    /// Stored users after the initial cycle.
    pub after_initial: Option<Fingerprint>,
    /// Stored users after the steady cycle (should equal `after_initial`).
    pub after_steady: Option<Fingerprint>,
    pub after_changed: Option<Fingerprint>,
    /// Users renamed in the simulator before the third cycle.
    pub changed: usize,
    /// Users removed from their groups in the simulator before the third cycle.
    pub ungrouped: usize,
    pub db_size_mb: Option<f64>,
    pub breakdown: Option<Breakdown>,
    /// The kept temp dir (`--keep`).
    pub kept: Option<std::path::PathBuf>,
}

/// The parts of one more steady cycle, run one by one (`--breakdown`); nothing is written.
#[derive(Debug, Clone)]
pub struct Breakdown {
    pub read: Duration,
    pub read_requests: u64,
    pub in_scope: usize,
    pub load: Duration,
    pub stored: usize,
    pub plan: Duration,
    pub describe: Duration,
    pub planned: usize,
    pub unchanged: usize,
    /// Peak RSS while the read, stored users and plan were all held.
    pub peak_mb: Option<f64>,
    /// RSS after the read, the load and the plan, each with the peak during it (when the kernel
    /// lets the peak be reset), in MB.
    pub phases: [(f64, Option<f64>); 3],
}

/// RSS now and the peak since the last reset (which this resets again).
fn phase_memory(resettable: bool) -> Result<(f64, Option<f64>)> {
    let m = memory()?;
    if resettable {
        reset_peak();
    }
    Ok((m.rss_mb, resettable.then_some(m.hwm_mb)))
}

impl BackendRun {
    pub fn cycle(&self, kind: CycleKind) -> Option<&CycleResult> {
        self.cycles.iter().find(|c| c.kind == kind)
    }
}

/// Ctrl-C or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs one backend in its own task, so that Ctrl-C or SIGTERM still drops the PostgreSQL
/// schema.
pub async fn run_backend(backend: Backend, opts: &Options) -> Result<BackendRun> {
    let dir = tempfile::Builder::new()
        .prefix("essentry-graph-bench-")
        .tempdir()
        .context("creating a temp dir")?;
    let target = Arc::new(StoreTarget::new(backend, dir.path(), &opts.pg_url));
    let task = {
        let (target, dir, users, breakdown, groups_only) = (
            target.clone(),
            dir.path().to_owned(),
            opts.users,
            opts.breakdown,
            opts.groups_only,
        );
        tokio::spawn(
            async move { run_in(backend, users, groups_only, breakdown, &dir, &target).await },
        )
    };
    let abort = task.abort_handle();
    let result = tokio::select! {
        joined = task => joined.map_err(|e| anyhow!("the {} run panicked: {e}", backend.name())).and_then(|r| r),
        _ = interrupted() => {
            abort.abort();
            tokio::time::sleep(Duration::from_millis(200)).await;
            Err(anyhow!("interrupted"))
        }
    };
    if opts.keep {
        let kept = dir.keep();
        eprintln!("  kept {}", kept.display());
        return result.map(|mut r| {
            r.kept = Some(kept);
            r
        });
    }
    target.cleanup().await;
    result
}

async fn run_in(
    backend: Backend,
    users: usize,
    groups_only: Option<usize>,
    breakdown: bool,
    dir: &Path,
    target: &StoreTarget,
) -> Result<BackendRun> {
    let name = backend.name();
    eprintln!("{name}: building a tenant of {users} users ...");
    let started = Instant::now();
    // Built here only to know what to expect; the simulator process builds its own copy. Built
    // on a thread of its own, which ends with it: the allocator then gives its memory back,
    // rather than keeping it in a runtime worker's heap under the cycles measured next.
    let expected = std::thread::spawn(move || {
        Expected::of(&crate::sim_process::bench_tenant(users, groups_only))
    })
    .join()
    .map_err(|_| anyhow!("building the expected tenant panicked"))?;
    let tenant_build = started.elapsed();
    eprintln!(
        "  built in {:.1} s: {}",
        tenant_build.as_secs_f64(),
        expected.describe()
    );
    let mut sim = SimProcess::start(users, groups_only)
        .await
        .context("starting the Graph simulator process")?;
    let store = target.open().await?;
    let result = measure(
        backend,
        &mut sim,
        &store,
        dir,
        target,
        expected,
        tenant_build,
        breakdown,
    )
    .await;
    store.close().await;
    sim.shutdown().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    backend: Backend,
    sim: &mut SimProcess,
    store: &Store,
    dir: &Path,
    target: &StoreTarget,
    expected: Expected,
    tenant_build: Duration,
    breakdown: bool,
) -> Result<BackendRun> {
    let (account, integ) = integration(store, dir, sim.graph_url(), sim.authority_url()).await?;
    let env = SyncEnv {
        store: store.clone(),
        clock: Arc::new(SystemClock),
        settings: SyncSettings::default(),
    };
    let baseline = memory()?;
    let (baseline_rss_mb, baseline_hwm_mb) = (baseline.rss_mb, baseline.peak_mb);
    eprintln!(
        "  simulator at {}, store {}; process RSS {baseline_rss_mb:.1} MB (peak {baseline_hwm_mb:.1} MB)",
        sim.graph_url(),
        target.url
    );
    let mut run = BackendRun {
        backend,
        expected,
        tenant_build,
        baseline_rss_mb,
        baseline_hwm_mb,
        cycles: Vec::new(),
        after_initial: None,
        after_steady: None,
        after_changed: None,
        changed: 0,
        ungrouped: 0,
        db_size_mb: None,
        breakdown: None,
        kept: None,
    };

    let c = one_cycle(&env, &integ, sim, CycleKind::Initial, false).await?;
    let ok = c.outcome != Outcome::Failed;
    run.cycles.push(c);
    if !ok {
        return Ok(run);
    }
    run.after_initial = Some(fingerprint(store, &account).await?);

    let c = one_cycle(&env, &integ, sim, CycleKind::Steady, false).await?;
    let ok = c.outcome != Outcome::Failed;
    run.cycles.push(c);
    if !ok {
        return Ok(run);
    }
    run.after_steady = Some(fingerprint(store, &account).await?);

    let renamed = sim.rename_every(RENAME_EVERY, RENAMED).await?;
    run.changed = renamed;
    run.ungrouped = sim.ungroup_every(UNGROUP_EVERY, UNGROUP_OFFSET).await?;
    eprintln!(
        "  renamed givenName of {} users and removed {} from their groups in the simulator",
        run.changed, run.ungrouped
    );
    let c = one_cycle(&env, &integ, sim, CycleKind::Changed, false).await?;
    let ok = c.outcome != Outcome::Failed;
    run.cycles.push(c);
    if !ok {
        return Ok(run);
    }
    run.after_changed = Some(fingerprint(store, &account).await?);
    if breakdown {
        run.breakdown = Some(time_parts(&env, &integ).await?);
    }
    let c = one_cycle(&env, &integ, sim, CycleKind::Reconcile, true).await?;
    let ok = c.outcome != Outcome::Failed;
    run.cycles.push(c);
    if !ok {
        return Ok(run);
    }
    sim.expire_delta_links().await?;
    let c = one_cycle(&env, &integ, sim, CycleKind::Rejected, false).await?;
    run.cycles.push(c);
    run.db_size_mb = target.sqlite_size_mb();
    Ok(run)
}

/// Times the parts of a steady cycle one by one, as `run_cycle` runs them (without its
/// bookkeeping and without applying anything).
async fn time_parts(env: &SyncEnv, integ: &GraphIntegration) -> Result<Breakdown> {
    eprintln!("  breakdown of a steady cycle ...");
    let peak_was_reset = reset_peak();
    let started = Instant::now();
    let graph = reader(env, integ).map_err(|e| anyhow!("building the Graph reader: {e}"))?;
    let read = graph
        .read_scope()
        .await
        .map_err(|e| anyhow!("reading Graph: {e}"))?;
    let read_time = started.elapsed();
    let after_read = phase_memory(peak_was_reset)?;
    let started = Instant::now();
    let current = stored_users(&env.store, &integ.row.account_id)
        .await
        .context("loading the stored users")?;
    let load = started.elapsed();
    let after_load = phase_memory(peak_was_reset)?;
    let policy = Policy::new(
        integ.row.id.clone(),
        integ.row.name.clone(),
        integ.settings.mapping.clone(),
        integ.settings.threshold.clone(),
    );
    let started = Instant::now();
    let planned = plan(&read.snapshot, &current, &policy);
    let plan_time = started.elapsed();
    let after_plan = phase_memory(peak_was_reset)?;
    let started = Instant::now();
    let listed = describe(&planned, LISTED_CHANGES);
    let describe_time = started.elapsed();
    drop(listed);
    let mem = memory()?;
    let b = Breakdown {
        read: read_time,
        read_requests: graph.stats().requests,
        in_scope: read.snapshot.len(),
        load,
        stored: current.len(),
        plan: plan_time,
        describe: describe_time,
        planned: planned.creates.len()
            + planned.updates.len()
            + planned.deprovisions.len()
            + planned.staged.len()
            + planned.skips.len(),
        unchanged: planned.unchanged,
        // The phases reset the peak one after another: the whole breakdown's is their maximum.
        peak_mb: peak_was_reset.then(|| {
            [after_read.1, after_load.1, after_plan.1]
                .into_iter()
                .flatten()
                .fold(mem.hwm_mb, f64::max)
        }),
        phases: [after_read, after_load, after_plan],
    };
    eprintln!(
        "    read {:.2} s, load {:.2} s, plan {:.2} s, describe {:.3} s",
        b.read.as_secs_f64(),
        b.load.as_secs_f64(),
        b.plan.as_secs_f64(),
        b.describe.as_secs_f64()
    );
    Ok(b)
}

async fn one_cycle(
    env: &SyncEnv,
    integ: &GraphIntegration,
    sim: &mut SimProcess,
    kind: CycleKind,
    full: bool,
) -> Result<CycleResult> {
    eprintln!("  cycle {} ...", kind.label());
    sim.reset_stats().await?;
    let peak_was_reset = reset_peak();
    let opts = CycleOptions {
        trigger: Trigger::Manual,
        dry_run: false,
        allow_deletes: false,
        full,
    };
    let started = Instant::now();
    let report = run_cycle(env, integ, opts)
        .await
        .context("the cycle could not be recorded")?;
    let wall = started.elapsed();
    let stats = sim.stats().await?;
    let c = CycleResult::from_report(kind, &report, wall, stats, peak_was_reset)?;
    eprintln!(
        "    {} {} in {:.2} s: {} Graph requests, created {} updated {} deprovisioned {} unchanged {}; RSS {:.1} MB, cycle peak {} MB, process peak {:.1} MB{}",
        c.outcome.as_str(),
        c.mode,
        wall.as_secs_f64(),
        c.client_requests,
        c.created,
        c.updated,
        c.deprovisioned,
        c.unchanged,
        c.rss_mb,
        c.cycle_peak_mb
            .map(|m| format!("{m:.1}"))
            .unwrap_or_else(|| "?".into()),
        c.peak_mb,
        c.error
            .as_deref()
            .map(|e| format!("\n    error: {e}"))
            .unwrap_or_default()
    );
    Ok(c)
}
