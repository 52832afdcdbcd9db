//! When each Graph integration runs, and the runner inside `serve` that runs it.
//!
//! The schedule is computed from the recorded cycles, not kept in memory, so a restart (or, later,
//! another replica) picks up where the last cycle left off: an integration is due at its last
//! scheduled or manual cycle's start plus the interval (or the cron expression's next time after
//! it); one that never ran is due `first_run_delay` after `serve` starts. After
//! `quarantine_after_failures` consecutive failed cycles it is quarantined, like Entra's own
//! provisioning: the wait doubles from `quarantine_base_minutes` per further failure up to
//! `quarantine_max_hours`, and `status` shows it. A success ends the quarantine.
//!
//! `tokio-cron-scheduler` drives the runner: a repeated job every `tick_secs` (and one shortly
//! after start) asks [`Runner::tick`] which integrations are due and starts their cycles. Cycles of
//! one integration never overlap: an integration whose cycle is still running is not started
//! again. Cron expressions are evaluated with `croner`, the parser tokio-cron-scheduler uses.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cycle::{CycleOptions, SyncEnv, Trigger, run_cycle};
use crate::domain::{CycleStatus, IntegrationKind, StoreError};
use crate::integrations::{GraphIntegration, GraphSettings};
use crate::secrets::SecretKey;
use crate::store::{CycleRow, IntegrationRow};

/// How often an integration runs.
#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron(Box<croner::Cron>),
}

impl Schedule {
    /// `every 40m` / `every 90s` / `every 2h`, or a cron expression (5 fields, or 6 with seconds
    /// first).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if let Some(rest) = t.strip_prefix("every") {
            let rest = rest.trim();
            let (num, unit) = rest.split_at(
                rest.find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len()),
            );
            let n: u64 = num
                .parse()
                .map_err(|_| format!("schedule {text:?}: expected e.g. `every 40m`"))?;
            let secs = match unit.trim() {
                "s" => n,
                "m" | "" => n.saturating_mul(60),
                "h" => n.saturating_mul(3600),
                other => {
                    return Err(format!(
                        "schedule {text:?}: unknown unit {other:?} (s, m, h)"
                    ));
                }
            };
            if secs < 60 {
                return Err(format!("schedule {text:?}: at least one minute apart"));
            }
            return Ok(Self::Every(Duration::from_secs(secs)));
        }
        croner::Cron::from_str(t)
            .map(|c| Self::Cron(Box::new(c)))
            .map_err(|e| {
                format!("schedule {text:?} is neither `every <n>m` nor a cron expression: {e}")
            })
    }

    /// The next run after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Every(d) => t + TimeDelta::from_std(*d).unwrap_or(TimeDelta::MAX),
            Self::Cron(c) => c
                .find_next_occurrence(&t, false)
                .unwrap_or(t + TimeDelta::days(1)),
        }
    }
}

/// The quarantine rule.
#[derive(Debug, Clone, Copy)]
pub struct Quarantine {
    pub after_failures: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Quarantine {
    /// The wait after `failures` consecutive failures (`None`: not quarantined).
    pub fn wait(&self, failures: u32) -> Option<Duration> {
        if self.after_failures == 0 || failures < self.after_failures {
            return None;
        }
        let doublings = (failures - self.after_failures).min(20);
        Some(self.base.saturating_mul(1u32 << doublings).min(self.max))
    }
}

/// When an integration runs next, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NextRun {
    pub at: DateTime<Utc>,
    pub consecutive_failures: u32,
    /// Set while quarantined: the run is pushed back to `at` by the quarantine wait.
    pub quarantined: bool,
}

/// Pure: the next run from the integration's recorded cycles (newest first).
pub fn next_run(
    schedule: &Schedule,
    cycles: &[CycleRow],
    first_run_at: DateTime<Utc>,
    quarantine: &Quarantine,
) -> NextRun {
    let counted: Vec<&CycleRow> = cycles
        .iter()
        .filter(|c| {
            !c.dry_run && c.trigger != Trigger::OnDemand && c.outcome != CycleStatus::Running
        })
        .collect();
    let failures = counted
        .iter()
        .take_while(|c| c.outcome.is_failure())
        .count();
    let failures = u32::try_from(failures).unwrap_or(u32::MAX);
    let Some(last) = counted.first() else {
        return NextRun {
            at: first_run_at,
            consecutive_failures: 0,
            quarantined: false,
        };
    };
    let mut at = schedule.next_after(last.started_at);
    let mut quarantined = false;
    if let Some(wait) = quarantine.wait(failures) {
        let until = last.started_at + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX);
        if until > at {
            at = until;
            quarantined = true;
        }
    }
    NextRun {
        at,
        consecutive_failures: failures,
        quarantined,
    }
}

/// One Graph integration's state, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct IntegrationStatus {
    pub name: String,
    pub account: String,
    pub schedule: String,
    /// The last scheduled or manual cycle (what the schedule and the quarantine count).
    pub last_cycle: Option<CycleRow>,
    /// The last single-user on-demand run, if any.
    pub last_on_demand: Option<CycleRow>,
    pub next_run: Option<NextRun>,
    pub running: bool,
    /// Deletions staged for review (`essentry-sync deletions list`).
    pub staged_deletions: usize,
    /// How cycles read Graph: `incremental` (delta links, with a full reconcile on
    /// `full_reconcile`) or `full` (transitive integrations always read the whole scope).
    pub reads: String,
    /// The full-reconcile schedule (`every 24h` or cron).
    pub full_reconcile: String,
    /// When the next cycle reads the whole scope (`None`: every cycle does, or the first one
    /// has not run yet and will).
    pub next_full_reconcile: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// Runs the Graph integrations' cycles inside `serve`.
pub struct Runner {
    env: SyncEnv,
    key: SecretKey,
    first_run_at: DateTime<Utc>,
    running: Mutex<HashSet<String>>,
    /// When the provisioning log was last purged of rows past retention.
    last_purge: Mutex<Option<DateTime<Utc>>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Runner {
    pub fn new(env: SyncEnv, key: SecretKey) -> Arc<Self> {
        let first_run_at = env.clock.now()
            + TimeDelta::seconds(i64::try_from(env.settings.first_run_delay_secs).unwrap_or(0));
        Arc::new(Self {
            env,
            key,
            first_run_at,
            running: Mutex::new(HashSet::new()),
            last_purge: Mutex::new(None),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        })
    }

    fn quarantine(&self) -> Quarantine {
        let s = &self.env.settings;
        Quarantine {
            after_failures: s.quarantine_after_failures,
            base: Duration::from_secs(s.quarantine_base_minutes.saturating_mul(60)),
            max: Duration::from_secs(s.quarantine_max_hours.saturating_mul(3600)),
        }
    }

    fn schedule_of(&self, settings: &GraphSettings) -> Result<(String, Schedule), String> {
        let text = settings
            .schedule
            .clone()
            .unwrap_or_else(|| self.env.settings.schedule.clone());
        Schedule::parse(&text).map(|s| (text, s))
    }

    fn is_running(&self, id: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(id)
    }

    /// The state of every Graph integration (of every account).
    pub async fn status(&self) -> Result<Vec<IntegrationStatus>, StoreError> {
        let mut out = Vec::new();
        for row in self.env.store.list_integrations(None).await? {
            if row.kind != IntegrationKind::Graph {
                continue;
            }
            out.push(self.status_of(&row).await?);
        }
        Ok(out)
    }

    async fn status_of(&self, row: &IntegrationRow) -> Result<IntegrationStatus, StoreError> {
        let cycles = self
            .env
            .store
            .recent_cycles(&row.account_id, Some(&row.id), 50)
            .await?;
        let mut status = IntegrationStatus {
            name: row.name.clone(),
            account: row.account_name.clone(),
            schedule: String::new(),
            last_cycle: cycles
                .iter()
                .find(|c| !c.dry_run && c.trigger != Trigger::OnDemand)
                .cloned(),
            last_on_demand: cycles
                .iter()
                .find(|c| !c.dry_run && c.trigger == Trigger::OnDemand)
                .cloned(),
            next_run: None,
            running: self.is_running(row.id.as_str()),
            staged_deletions: self
                .env
                .store
                .list_staged(&row.account_id, Some(&row.id))
                .await?
                .len(),
            reads: String::new(),
            full_reconcile: String::new(),
            next_full_reconcile: None,
            error: None,
        };
        match serde_json::from_value::<GraphSettings>(row.settings.clone())
            .map_err(|e| e.to_string())
            .and_then(|s| self.schedule_of(&s))
        {
            Ok((text, schedule)) => {
                let settings: Option<GraphSettings> =
                    serde_json::from_value(row.settings.clone()).ok();
                if let Some(settings) = settings {
                    let (full, _) = super::delta::full_schedule(&self.env, &settings);
                    let state = self.env.store.delta_state(&row.id).await?;
                    status.reads = if settings.transitive {
                        "full (transitive: nested groups are read in full every cycle)".to_owned()
                    } else {
                        "incremental (Graph delta links)".to_owned()
                    };
                    status.full_reconcile = settings
                        .full_reconcile
                        .clone()
                        .unwrap_or_else(|| self.env.settings.full_reconcile.clone());
                    status.next_full_reconcile = super::delta::next_full_reconcile(
                        state.as_ref(),
                        settings.transitive,
                        &full,
                    );
                }
                status.schedule = text;
                status.next_run = Some(next_run(
                    &schedule,
                    &cycles,
                    self.first_run_at,
                    &self.quarantine(),
                ));
            }
            Err(e) => status.error = Some(e),
        }
        Ok(status)
    }

    /// Starts the cycle of every integration that is due and not running.
    pub async fn tick(self: &Arc<Self>) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let rows = match self.env.store.list_integrations(None).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "scheduler: listing integrations failed");
                return;
            }
        };
        let now = self.env.clock.now();
        self.purge_if_due(now).await;
        for row in rows
            .into_iter()
            .filter(|r| r.kind == IntegrationKind::Graph)
        {
            if self.is_running(row.id.as_str()) {
                continue;
            }
            let status = match self.status_of(&row).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(integration = %row.name, error = %e, "scheduler: reading cycles failed");
                    continue;
                }
            };
            if let Some(e) = &status.error {
                tracing::warn!(integration = %row.name, error = %e, "scheduler: integration skipped");
                continue;
            }
            if status.next_run.as_ref().is_none_or(|n| n.at > now) {
                continue;
            }
            self.spawn_cycle(row);
        }
    }

    /// Deletes provisioning-log rows and cycle summaries past retention, at most hourly (cycles
    /// purge too; this also covers deployments that only receive SCIM pushes).
    async fn purge_if_due(&self, now: DateTime<Utc>) {
        {
            let mut last = self
                .last_purge
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| now - t < TimeDelta::hours(1)) {
                return;
            }
            *last = Some(now);
        }
        let cutoff = now - TimeDelta::days(i64::from(self.env.settings.log_retention_days));
        let result = async {
            let mut tx = self.env.store.begin().await?;
            let purged = tx.purge_before(cutoff).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(purged)
        }
        .await;
        match result {
            Ok((logs, cycles)) if logs + cycles > 0 => {
                tracing::info!(logs, cycles, "provisioning log rows past retention deleted");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purging the provisioning log failed"),
        }
    }

    fn spawn_cycle(self: &Arc<Self>, row: IntegrationRow) {
        let id = row.id.to_string();
        if !self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone())
        {
            return;
        }
        let this = self.clone();
        self.tasks.spawn(async move {
            let name = row.name.clone();
            match GraphIntegration::open(row, &this.key) {
                Ok(integ) => {
                    let opts = CycleOptions {
                        trigger: Trigger::Scheduled,
                        dry_run: false,
                        allow_deletes: false,
                        full: false,
                    };
                    if let Err(e) = run_cycle(&this.env, &integ, opts).await {
                        tracing::error!(integration = %name, error = %e, "sync cycle could not be recorded");
                    }
                }
                Err(e) => tracing::error!(integration = %name, error = %e, "integration cannot run"),
            }
            this.running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        });
    }

    /// Starts the scheduler. Stop it with [`Runner::stop`].
    pub async fn start(self: &Arc<Self>) -> Result<JobScheduler, JobSchedulerError> {
        let sched = JobScheduler::new().await?;
        let tick = Duration::from_secs(self.env.settings.tick_secs.max(1));
        let this = self.clone();
        sched
            .add(Job::new_repeated_async(tick, move |_id, _lock| {
                let this = this.clone();
                Box::pin(async move { this.tick().await })
            })?)
            .await?;
        let first = Duration::from_secs(self.env.settings.first_run_delay_secs.max(1));
        let this = self.clone();
        sched
            .add(Job::new_one_shot_async(first, move |_id, _lock| {
                let this = this.clone();
                Box::pin(async move { this.tick().await })
            })?)
            .await?;
        sched.start().await?;
        Ok(sched)
    }

    /// Stops starting cycles, shuts the scheduler down and waits up to `grace` for running
    /// cycles (a cycle cut off rolls its transaction back).
    pub async fn stop(&self, mut sched: JobScheduler, grace: Duration) {
        self.shutdown.cancel();
        if let Err(e) = sched.shutdown().await {
            tracing::warn!(error = %e, "scheduler shutdown");
        }
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "a sync cycle was still running at shutdown; its transaction is rolled back"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cycle(outcome: &str, started: DateTime<Utc>, trigger: &str) -> CycleRow {
        CycleRow {
            id: "c".into(),
            integration_id: "i".into(),
            integration: None,
            trigger: Trigger::parse(trigger).expect("a trigger word"),
            dry_run: false,
            outcome: CycleStatus::parse(outcome).expect("an outcome word"),
            counts: json!({}),
            graph_requests: 0,
            throttled: 0,
            error_code: None,
            error_message: None,
            started_at: started,
            finished_at: None,
            duration_ms: None,
            mode: None,
            full_reason: None,
        }
    }

    fn t(h: i64, m: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-30T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + TimeDelta::hours(h)
            + TimeDelta::minutes(m)
    }

    const Q: Quarantine = Quarantine {
        after_failures: 3,
        base: Duration::from_secs(3600),
        max: Duration::from_secs(24 * 3600),
    };

    #[test]
    fn schedules_parse() {
        assert!(
            matches!(Schedule::parse("every 40m"), Ok(Schedule::Every(d)) if d.as_secs() == 2400)
        );
        assert!(
            matches!(Schedule::parse("every 2h"), Ok(Schedule::Every(d)) if d.as_secs() == 7200)
        );
        assert!(Schedule::parse("every 10s").is_err());
        assert!(Schedule::parse("every x").is_err());
        let cron = Schedule::parse("0 */40 * * * *").unwrap();
        assert_eq!(cron.next_after(t(1, 5)), t(1, 40));
        assert_eq!(cron.next_after(t(1, 40)), t(2, 0));
        assert!(Schedule::parse("not a cron").is_err());
    }

    #[test]
    fn first_run_then_interval_and_on_demand_does_not_count() {
        let every = Schedule::parse("every 40m").unwrap();
        let n = next_run(&every, &[], t(0, 1), &Q);
        assert_eq!(n.at, t(0, 1));
        let cycles = [
            cycle("success", t(3, 0), "on_demand"),
            cycle("success", t(1, 0), "scheduled"),
        ];
        let n = next_run(&every, &cycles, t(0, 1), &Q);
        assert_eq!(n.at, t(1, 40));
        assert!(!n.quarantined);
    }

    #[test]
    fn repeated_failures_back_off_for_hours() {
        let every = Schedule::parse("every 40m").unwrap();
        let two = [
            cycle("failed", t(2, 0), "scheduled"),
            cycle("failed", t(1, 0), "scheduled"),
        ];
        let n = next_run(&every, &two, t(0, 0), &Q);
        assert_eq!(
            (n.at, n.quarantined, n.consecutive_failures),
            (t(2, 40), false, 2)
        );
        let three = [
            cycle("failed", t(3, 0), "scheduled"),
            cycle("failed", t(2, 0), "scheduled"),
            cycle("interrupted", t(1, 0), "scheduled"),
        ];
        let n = next_run(&every, &three, t(0, 0), &Q);
        assert_eq!((n.at, n.quarantined), (t(4, 0), true));
        let mut five: Vec<CycleRow> = (0..5)
            .map(|i| cycle("failed", t(10 - i, 0), "manual"))
            .collect();
        let n = next_run(&every, &five, t(0, 0), &Q);
        assert_eq!(n.at, t(14, 0));
        let mut many: Vec<CycleRow> = (0..30)
            .map(|i| cycle("failed", t(40 - i, 0), "manual"))
            .collect();
        let n = next_run(&every, &many, t(0, 0), &Q);
        assert_eq!(n.at, t(64, 0), "capped at 24 h");
        five.insert(0, cycle("success", t(11, 0), "scheduled"));
        let n = next_run(&every, &five, t(0, 0), &Q);
        assert_eq!(
            (n.at, n.quarantined, n.consecutive_failures),
            (t(11, 40), false, 0)
        );
        many.clear();
    }
}
