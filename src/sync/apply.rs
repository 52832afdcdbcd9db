//! The executor of a sync cycle: applies a [`Plan`] through the directory operations — the same
//! functions SCIM push uses, so the side effects are the same (deleted account, cancelled
//! upcoming appointments, guest emails in the outbox) — in ONE transaction. A failure anywhere
//! rolls the whole cycle back: the directory is left as it was or fully applied, never half
//! deprovisioned. Staged deletions and skipped users are recorded in the provisioning log.

use std::collections::HashSet;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::directory::DeprovisionReport;
use crate::domain::directory::{self, OpContext, UpdateOutcome};
use crate::domain::{DirectoryError, DirectoryTx, LogAction, LogStatus};
use crate::store::{Store, Tx, skip_key};

use super::mapping::overlay;
use super::plan::Plan;

/// What one applied plan did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub deprovisioned: usize,
    pub staged: usize,
    pub skipped: usize,
    pub appointments_cancelled: usize,
    pub emails_queued: usize,
    /// Skip and staged-delete rows not written again: an earlier cycle logged them.
    pub already_logged: usize,
    pub duration_ms: u64,
    /// What each deprovisioning cancelled and whom it emails.
    pub cancellations: Vec<Cancellation>,
}

impl ApplyReport {
    /// Counts the applied changes in `essentry_users_changed_total`; call it once the apply's
    /// transaction committed (never for a dry run).
    pub fn count_committed(&self, source: crate::domain::Source) {
        use crate::metrics::{UserAction, users_changed};
        users_changed(source, UserAction::Created, self.created);
        users_changed(source, UserAction::Updated, self.updated);
        users_changed(source, UserAction::Deleted, self.deprovisioned);
    }

    /// Whether the apply rewrote enough of the directory for the database's planner statistics
    /// to be out of date: at least [`STATISTICS_MIN_WRITES`] users created, updated or
    /// deprovisioned, and at least a tenth of the `users_in_scope` of the integration (a
    /// tenant's first sync, a mass rename). The scope, not the users the cycle compared: an
    /// incremental cycle compares only the users Graph reported changed. The cycle then
    /// refreshes the statistics ([`Store::refresh_planner_statistics`]).
    pub fn rewrote_much(&self, users_in_scope: usize) -> bool {
        let written = self.created + self.updated + self.deprovisioned;
        written >= STATISTICS_MIN_WRITES && written.saturating_mul(10) >= users_in_scope
    }
}

/// The fewest user writes of one apply after which [`ApplyReport::rewrote_much`] can hold: below
/// it a table's statistics cannot be far off, whatever its size.
pub const STATISTICS_MIN_WRITES: usize = 1_000;

/// One appointment a deprovisioning cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cancellation {
    pub host: String,
    pub appointment_id: String,
    pub title: String,
    pub starts_at: DateTime<Utc>,
    /// The guests emailed a cancellation.
    pub guests: Vec<String>,
}

/// How [`apply`] ends its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Commit,
    /// Run every operation, report what it did, then roll back (`sync --dry-run`).
    DryRun,
}

fn record(report: &mut ApplyReport, done: &DeprovisionReport) {
    report.deprovisioned += 1;
    report.appointments_cancelled += done.cancelled.len();
    report.emails_queued += done.queued.len();
    for a in &done.cancelled {
        report.cancellations.push(Cancellation {
            host: done.user.attrs.user_name.to_string(),
            appointment_id: a.id.to_string(),
            title: a.title.clone(),
            starts_at: a.starts_at,
            guests: done
                .queued
                .iter()
                .filter(|m| m.appointment_id.as_ref() == Some(&a.id))
                .map(|m| m.recipient_email.clone())
                .collect(),
        });
    }
}

/// Applies `plan` for the account, integration and cycle in `ctx` (its `source` should be
/// `Source::Graph`). Deprovisions run first, so that a userName freed by one can be taken by a
/// rename or a create in the same cycle. Skip and staged-delete rows whose
/// [`skip_key`] is in `known` were logged by an earlier cycle and are not written again.
pub async fn apply(
    store: &Store,
    ctx: &OpContext,
    plan: &Plan,
    mode: Mode,
    known: &HashSet<String>,
) -> Result<ApplyReport, DirectoryError> {
    let started = Instant::now();
    let mut tx = store.begin().await?;
    let mut report = apply_in(&mut tx, ctx, plan, known).await?;
    match mode {
        Mode::Commit => tx.commit().await?,
        Mode::DryRun => tx.rollback().await?,
    }
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(report)
}

/// [`apply`] inside the caller's transaction, which the caller commits (with whatever else
/// must change with the plan) or rolls back.
pub async fn apply_in(
    tx: &mut Tx,
    ctx: &OpContext,
    plan: &Plan,
    known: &HashSet<String>,
) -> Result<ApplyReport, DirectoryError> {
    let mut report = ApplyReport {
        unchanged: plan.unchanged,
        staged: plan.staged.len(),
        skipped: plan.skips.len(),
        ..ApplyReport::default()
    };
    for d in &plan.deprovisions {
        let done = directory::deprovision_user(tx, ctx, &d.user_id, d.reason).await?;
        record(&mut report, &done);
    }
    for u in &plan.updates {
        // The planner may have worked from stored users read without their resource (the
        // sync's light read); lay the mapped attributes over the resource as stored now, so
        // attributes pushed over SCIM (emails, extensions) are kept.
        // The user read here is the one updated: one read per update, not a second one inside
        // the update (each is a round trip to the database).
        let started = Instant::now();
        let stored = tx
            .user_by_id(&ctx.account, &u.user_id)
            .await?
            .ok_or_else(|| DirectoryError::UserNotFound(u.user_id.to_string()))?;
        if stored.version != u.expected_version {
            return Err(DirectoryError::VersionMismatch {
                expected: u.expected_version,
                actual: stored.version,
            });
        }
        let mut desired = u.desired.clone();
        desired.resource = overlay(&stored.attrs.resource, &desired);
        match directory::update_read_user(tx, ctx, stored, desired, started).await? {
            UpdateOutcome::Updated { .. } => report.updated += 1,
            UpdateOutcome::Unchanged(_) => report.unchanged += 1,
            UpdateOutcome::Deprovisioned(done) => record(&mut report, &done),
        }
    }
    for c in &plan.creates {
        let mut desired = c.desired.clone();
        desired.resource = overlay(&desired.resource, &desired);
        directory::create_user(tx, ctx, desired).await?;
        report.created += 1;
    }
    for s in &plan.staged {
        let object = s
            .object_id
            .as_ref()
            .map(|o| o.to_string())
            .unwrap_or_default();
        if known.contains(&skip_key(
            "staged_delete",
            &object,
            "DeletionThresholdExceeded",
        )) {
            report.already_logged += 1;
            continue;
        }
        let mut entry = ctx.log_entry(LogAction::StagedDelete, LogStatus::Skipped);
        entry.user_id = Some(s.user_id.clone());
        entry.user_name = Some(s.user_name.clone());
        entry.source_object_id = s.object_id.as_ref().map(|o| o.to_string());
        entry.error_code = Some("DeletionThresholdExceeded".to_owned());
        entry.error_message = plan.threshold_hit.clone();
        tx.write_log(&entry).await?;
    }
    for s in &plan.skips {
        if known.contains(&skip_key("skip", &s.object_id.to_string(), s.reason.code())) {
            report.already_logged += 1;
            continue;
        }
        let mut entry = ctx.log_entry(LogAction::Skip, LogStatus::Skipped);
        entry.user_name = s.user_name.clone();
        entry.source_object_id = Some(s.object_id.to_string());
        entry.error_code = Some(s.reason.code().to_owned());
        entry.error_message = Some(s.reason.to_string());
        tx.write_log(&entry).await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(created: usize, updated: usize, deprovisioned: usize, in_scope: usize) -> bool {
        ApplyReport {
            created,
            updated,
            deprovisioned,
            ..ApplyReport::default()
        }
        .rewrote_much(in_scope)
    }

    #[test]
    fn much_is_a_thousand_writes_and_a_tenth_of_the_scope() {
        // A tenant's first sync.
        assert!(applied(100_000, 0, 0, 100_000));
        assert!(applied(STATISTICS_MIN_WRITES, 0, 0, STATISTICS_MIN_WRITES));
        assert!(!applied(
            STATISTICS_MIN_WRITES - 1,
            0,
            0,
            STATISTICS_MIN_WRITES - 1
        ));
        // 1 % renamed and 0.5 % deprovisioned of 100,000 (an incremental cycle, which compared
        // only those): not enough.
        assert!(!applied(0, 1_000, 450, 99_550));
        // A tenth of the scope, however it was written.
        assert!(applied(2_000, 5_000, 3_000, 100_000));
        assert!(!applied(2_000, 5_000, 2_999, 100_000));
        assert!(!applied(0, 0, 0, 100_000));
    }
}
