//! On-demand provisioning of one user, the operator's tool: evaluates one Entra user now, whatever
//! the schedule, through the steps Entra's own "Provision on demand" shows — connection, import
//! from Graph, scope (assigned directly or through which group), match, action — and applies the
//! result through the same planner and executor as a cycle, restricted to that user. It is
//! recorded as a cycle with trigger `on_demand`, so its provisioning-log rows carry a cycle id.

use std::collections::HashSet;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tracing::Instrument;

use super::apply::{self, Mode};
use super::cycle::{LISTED_CHANGES, PlannedChange, describe};
use super::cycle::{SyncEnv, reader};
use super::mapping::{describe_assignments, user_name_of};
use super::plan::{self, Policy};
use crate::domain::directory::OpContext;
use crate::domain::entra::{EntraUser, Snapshot};
use crate::domain::{
    AttributeChange, CycleStatus, DeletionThreshold, EntraObjectId, Source, StoreError, Trigger,
    UserId, UserName, UserRecord,
};
use crate::entra::graph::{ReadError, ReadStats};
use crate::integrations::GraphIntegration;
use crate::store::CycleRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Success,
    Skipped,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub status: StepStatus,
    pub detail: String,
}

/// The answer of an on-demand run.
#[derive(Debug, Clone, Serialize)]
pub struct OnDemandReport {
    pub cycle_id: String,
    pub integration: String,
    pub user: String,
    pub dry_run: bool,
    pub steps: Vec<Step>,
    /// `create`, `update`, `delete`, `skip` or `none` (already in step / nothing to do).
    pub action: String,
    pub user_name: Option<String>,
    pub modified: Vec<AttributeChange>,
    /// Every change the run made (or, dry, would make), deletions first: besides the user asked
    /// for, e.g. the rename of another essentry user that frees its userName.
    pub changes: Vec<PlannedChange>,
    pub appointments_cancelled: usize,
    pub emails_queued: usize,
    pub error: Option<String>,
    /// The step that failed, with the reader's error code when Graph or Entra refused.
    pub error_code: Option<String>,
    pub graph: ReadStats,
    pub duration_ms: u64,
    pub started_at: DateTime<Utc>,
}

impl OnDemandReport {
    fn step(&mut self, step: &'static str, status: StepStatus, detail: impl Into<String>) {
        self.steps.push(Step {
            step,
            status,
            detail: detail.into(),
        });
    }

    fn failed(&mut self, step: &'static str, error: impl Into<String>) {
        let error = error.into();
        if self.error_code.is_none() {
            self.error_code = Some(step.to_owned());
        }
        self.step(step, StepStatus::Failed, error.clone());
        self.error = Some(error);
    }

    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// Stored users that are the Entra user `oid` or hold `user_name`, added to `out` once each.
async fn stored_candidates(
    env: &SyncEnv,
    integ: &GraphIntegration,
    oid: Option<&EntraObjectId>,
    user_name: Option<&UserName>,
    out: &mut Vec<UserRecord>,
) -> Result<(), StoreError> {
    let account = &integ.row.account_id;
    if let Some(oid) = oid {
        let found = env.store.users_by_entra_object_id(account, oid, 10).await?;
        for u in found {
            if !out.iter().any(|o| o.id == u.id) {
                out.push(u);
            }
        }
    }
    if let Some(name) = user_name
        && let Some(u) = env.store.user_by_name(account, name).await?
        && !out.iter().any(|o| o.id == u.id)
    {
        out.push(u);
    }
    Ok(())
}

/// At most this many extra Entra users are read to settle the candidates of one on-demand run.
const MAX_CANDIDATE_READS: usize = 20;

/// Everything the action could touch: the stored users that are the Entra user asked for or hold
/// its userName, then — for every Entra account one of them is linked to — that account re-read
/// from Graph, and the stored users holding *its* userName, until nothing new turns up. Returns
/// the Entra users read (in scope or not) and the stored candidates; `Err` when a read failed.
async fn candidates(
    env: &SyncEnv,
    integ: &GraphIntegration,
    reader: &crate::entra::graph::GraphReader,
    asked: Option<&EntraUser>,
    key: &str,
) -> Result<Result<(Vec<EntraUser>, Vec<UserRecord>), ReadError>, StoreError> {
    let mapping = &integ.settings.mapping;
    let mut read: Vec<EntraUser> = asked.into_iter().cloned().collect();
    let mut tried: HashSet<EntraObjectId> = read.iter().map(|u| u.object_id.clone()).collect();
    let mut stored: Vec<UserRecord> = Vec::new();
    let oid = asked
        .map(|u| u.object_id.clone())
        .or_else(|| EntraObjectId::parse(key).ok());
    let name = asked
        .and_then(|u| user_name_of(u, mapping).ok())
        .or_else(|| UserName::parse(key).ok());
    stored_candidates(env, integ, oid.as_ref(), name.as_ref(), &mut stored).await?;
    if let Some(o) = oid {
        tried.insert(o);
    }
    let mut reads = 0;
    loop {
        let next = stored
            .iter()
            .filter_map(|u| u.attrs.entra_object_id.clone())
            .find(|o| !tried.contains(o));
        let Some(o) = next else { break };
        tried.insert(o.clone());
        reads += 1;
        if reads > MAX_CANDIDATE_READS {
            return Ok(Err(ReadError::BadPage {
                what: "the users this action could touch".to_owned(),
                page: 1,
                reason: format!("more than {MAX_CANDIDATE_READS} linked accounts to re-read"),
            }));
        }
        match reader.read_user(o.as_str()).await {
            Ok(r) => {
                let n = user_name_of(&r.user, mapping).ok();
                stored_candidates(env, integ, Some(&r.user.object_id), n.as_ref(), &mut stored)
                    .await?;
                read.push(r.user);
            }
            Err(ReadError::NotFound(_)) => {}
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok((read, stored)))
}

/// Provisions one user (by object id or userPrincipalName) now.
pub async fn provision_user(
    env: &SyncEnv,
    integ: &GraphIntegration,
    key: &str,
    dry_run: bool,
) -> Result<OnDemandReport, StoreError> {
    let cycle_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!(
        "provision_on_demand",
        integration = %integ.row.name,
        integration_id = %integ.row.id,
        cycle_id = %cycle_id,
        user = %key,
    );
    async move {
        let now = env.clock.now();
        let started = Instant::now();
        let mut report = OnDemandReport {
            cycle_id: cycle_id.clone(),
            integration: integ.row.name.clone(),
            user: key.to_owned(),
            dry_run,
            steps: Vec::new(),
            action: "none".to_owned(),
            user_name: None,
            modified: Vec::new(),
            changes: Vec::new(),
            appointments_cancelled: 0,
            emails_queued: 0,
            error: None,
            error_code: None,
            graph: ReadStats::default(),
            duration_ms: 0,
            started_at: now,
        };
        // One cycle of an integration at a time, on-demand runs included (a dry run writes
        // nothing and needs no lock).
        let lock = if dry_run {
            None
        } else {
            match env.store.try_lock_cycle(&integ.row.id).await? {
                Some(lock) => Some(lock),
                None => {
                    report.error_code = Some("busy".to_owned());
                    report.failed(
                        "connection",
                        format!(
                            "a cycle of {} is running (on this or another replica); try again \
                             when it has finished",
                            integ.row.name
                        ),
                    );
                    return Ok(report);
                }
            }
        };
        let result = async {
            let mut row = CycleRow::running(
                &cycle_id,
                &integ.row.id,
                &integ.row.name,
                Trigger::OnDemand,
                dry_run,
                now,
            );
            if !dry_run {
                let mut tx = env.store.begin().await?;
                tx.start_cycle(&integ.row.account_id, &row).await?;
                tx.commit().await?;
            }
            steps(env, integ, key, now, &mut report).await?;
            report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            tracing::info!(
                action = %report.action,
                ok = report.succeeded(),
                duration_ms = report.duration_ms,
                "on-demand provisioning finished"
            );
            if !dry_run {
                row.outcome = if report.succeeded() {
                    CycleStatus::Success
                } else {
                    CycleStatus::Failed
                };
                crate::metrics::sync_cycle(
                    &integ.row.name,
                    Trigger::OnDemand.as_str(),
                    row.outcome.as_str(),
                    None,
                );
                row.counts = json!({ "action": report.action, "user": report.user_name });
                row.graph_requests = i64::try_from(report.graph.requests).unwrap_or(i64::MAX);
                row.throttled = i64::try_from(report.graph.throttled).unwrap_or(i64::MAX);
                row.error_code = report.error_code.clone();
                row.error_message = report.error.clone();
                row.finished_at = Some(env.clock.now());
                row.duration_ms = Some(i64::try_from(report.duration_ms).unwrap_or(i64::MAX));
                let mut tx = env.store.begin().await?;
                tx.finish_cycle(&row).await?;
                tx.commit().await?;
            }
            Ok::<_, StoreError>(())
        }
        .await;
        if let Some(lock) = lock {
            lock.release().await;
        }
        result?;
        Ok(report)
    }
    .instrument(span)
    .await
}

async fn steps(
    env: &SyncEnv,
    integ: &GraphIntegration,
    key: &str,
    now: DateTime<Utc>,
    report: &mut OnDemandReport,
) -> Result<(), StoreError> {
    // 1. Connection.
    let reader = match reader(env, integ) {
        Ok(r) => r,
        Err(e) => {
            report.error_code = Some(e.code());
            report.failed("connection", e.to_string());
            return Ok(());
        }
    };
    if let Err(e) = reader.check_connection().await {
        report.graph = reader.stats();
        report.failed("connection", e.to_string());
        return Ok(());
    }
    report.step(
        "connection",
        StepStatus::Success,
        "access token obtained from Microsoft Entra",
    );

    // 2. Import.
    let read = reader.read_user(key).await;
    report.graph = reader.stats();
    let (entra, in_scope_detail) = match read {
        Ok(r) => {
            report.step(
                "import",
                StepStatus::Success,
                format!(
                    "{} ({}), accountEnabled {}",
                    r.user.user_principal_name.as_deref().unwrap_or("-"),
                    r.user.object_id,
                    r.user
                        .account_enabled
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "not returned".to_owned())
                ),
            );
            let detail = describe_assignments(&r.user.assigned_via);
            (Some(r.user), detail)
        }
        Err(ReadError::NotFound(msg)) => {
            report.step("import", StepStatus::Skipped, msg);
            (None, "not in the tenant".to_owned())
        }
        Err(e) => {
            report.error_code = Some(e.code());
            report.failed("import", e.to_string());
            return Ok(());
        }
    };

    // 3. Scope.
    let in_scope = entra.as_ref().is_some_and(|u| !u.assigned_via.is_empty());
    report.step(
        "scope",
        if in_scope {
            StepStatus::Success
        } else {
            StepStatus::Skipped
        },
        if in_scope {
            format!("in scope: {in_scope_detail}")
        } else {
            format!("out of scope: {in_scope_detail}")
        },
    );

    // 4. Match: every candidate the action could touch, each (re-)read from Graph.
    let (read, current) = match candidates(env, integ, &reader, entra.as_ref(), key).await? {
        Ok(c) => c,
        Err(e) => {
            report.graph = reader.stats();
            report.error_code = Some(e.code());
            report.failed("match", e.to_string());
            return Ok(());
        }
    };
    report.graph = reader.stats();
    let oid = entra
        .as_ref()
        .map(|u| u.object_id.clone())
        .or_else(|| EntraObjectId::parse(key).ok());
    let mapped = entra
        .as_ref()
        .and_then(|u| user_name_of(u, &integ.settings.mapping).ok())
        .or_else(|| UserName::parse(key).ok());
    let by_oid = current
        .iter()
        .find(|u| oid.is_some() && u.attrs.entra_object_id == oid);
    let matched = by_oid.or_else(|| {
        current.iter().find(|u| {
            mapped
                .as_ref()
                .is_some_and(|n| u.attrs.user_name.key() == n.key())
        })
    });
    let others = current.len() - usize::from(matched.is_some());
    report.step(
        "match",
        if matched.is_some() {
            StepStatus::Success
        } else {
            StepStatus::Skipped
        },
        format!(
            "{}{}",
            match matched {
                Some(u) if by_oid.is_some() =>
                    format!("{} (by Entra object id)", u.attrs.user_name),
                Some(u) => format!("{} (by userName)", u.attrs.user_name),
                None => "no essentry user matches".to_owned(),
            },
            if others > 0 {
                format!(
                    "; {others} other essentry user(s) the action could touch, re-read from Graph"
                )
            } else {
                String::new()
            }
        ),
    );

    // 5. Action: plan over the candidates as a full cycle would. Only the user asked for may be
    // deprovisioned, and only when it is really out of scope (the planner never deprovisions a
    // candidate whose object id is in the snapshot).
    let snapshot = Snapshot::complete(
        read.into_iter()
            .filter(|u| !u.assigned_via.is_empty())
            .collect(),
    );
    let mut policy = Policy::new(
        integ.row.id.clone(),
        integ.row.name.clone(),
        integ.settings.mapping.clone(),
        // The operator named this one user: no threshold applies to its deletion.
        DeletionThreshold {
            max_count: None,
            max_percent: None,
        },
    );
    policy.managers = super::deletions::managers(&env.store, &integ.row).await?;
    policy.kept = env
        .store
        .rejected_users(&integ.row.id)
        .await?
        .into_iter()
        .collect();
    let asked: HashSet<UserId> = match (&entra, by_oid, matched) {
        (_, Some(u), _) => [u.id.clone()].into(),
        // Not in the tenant: the stored user holding the userName asked for (its own account,
        // re-read above, decides whether it is really out of scope).
        (None, None, Some(u)) => [u.id.clone()].into(),
        _ => HashSet::new(),
    };
    policy.deletable = Some(asked);
    let plan = plan::plan(&snapshot, &current, &policy);
    report.changes = describe(&plan, LISTED_CHANGES);
    // The action reported is the one of the user asked for: a deletion (only that user may be
    // deleted), else its update or create; else the first other change (e.g. a rename).
    let asked_update = plan
        .updates
        .iter()
        .find(|u| oid.as_ref() == Some(&u.object_id));
    let asked_create = plan
        .creates
        .iter()
        .find(|c| oid.as_ref() == Some(&c.object_id));
    let (action, name, modified) = if let Some(d) = plan.deprovisions.first() {
        ("delete", d.user_name.clone(), Vec::new())
    } else if let Some(u) = asked_update {
        ("update", u.desired.user_name.to_string(), u.changes.clone())
    } else if let Some(c) = asked_create.or_else(|| plan.creates.first()) {
        (
            "create",
            c.desired.user_name.to_string(),
            crate::domain::directory::diff_attributes(None, &c.desired),
        )
    } else if let Some(u) = plan.updates.first() {
        ("update", u.desired.user_name.to_string(), u.changes.clone())
    } else if let Some(s) = plan.skips.first() {
        report.action = "skip".to_owned();
        report.user_name = s.user_name.clone();
        report.step("action", StepStatus::Skipped, s.reason.to_string());
        // Skips are logged so the operator finds them in `logs` too.
        return log_and_apply(env, integ, report, &plan, now)
            .await
            .map(|_| ());
    } else {
        report.step(
            "action",
            StepStatus::Skipped,
            if in_scope {
                "no change: essentry already holds what Entra has"
            } else {
                "no change: the user is out of scope and has no essentry account it manages"
            },
        );
        return Ok(());
    };
    report.action = action.to_owned();
    report.user_name = Some(name.clone());
    report.modified = modified;
    match log_and_apply(env, integ, report, &plan, now).await? {
        Ok(()) => {
            let others = report.changes.len().saturating_sub(1);
            let detail = match action {
                "delete" => format!(
                    "deleted {name}: {} upcoming appointment(s) cancelled, {} guest email(s) queued",
                    report.appointments_cancelled, report.emails_queued
                ),
                _ => format!(
                    "{action}d {name}: {} attribute(s) modified",
                    report.modified.len()
                ),
            };
            let detail = if others > 0 {
                format!("{detail}; {others} more change(s) listed under `changes`")
            } else {
                detail
            };
            let detail = if report.dry_run {
                format!("dry run, rolled back: {detail}")
            } else {
                detail
            };
            report.step("action", StepStatus::Success, detail);
        }
        Err(message) => report.failed("action", message),
    }
    Ok(())
}

/// Applies the one-user plan; `Ok(Err(message))` when the directory refused it.
async fn log_and_apply(
    env: &SyncEnv,
    integ: &GraphIntegration,
    report: &mut OnDemandReport,
    plan: &plan::Plan,
    now: DateTime<Utc>,
) -> Result<Result<(), String>, StoreError> {
    let ctx = OpContext {
        account: integ.row.account_id.clone(),
        source: Source::Graph,
        integration_id: Some(integ.row.id.clone()),
        cycle_id: Some(report.cycle_id.clone()),
        now,
    };
    let mode = if report.dry_run {
        Mode::DryRun
    } else {
        Mode::Commit
    };
    let applied = apply::apply(&env.store, &ctx, plan, mode, &HashSet::new()).await;
    if let (Ok(applied), Mode::Commit) = (&applied, mode) {
        applied.count_committed(Source::Graph);
    }
    match applied {
        Ok(applied) => {
            report.appointments_cancelled = applied.appointments_cancelled;
            report.emails_queued = applied.emails_queued;
            Ok(Ok(()))
        }
        Err(crate::domain::DirectoryError::Store(StoreError::Database(e))) => {
            Err(StoreError::Database(e))
        }
        Err(e) => Ok(Err(e.to_string())),
    }
}
