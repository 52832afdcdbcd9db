//! The deletion review: the staged deletions of held cycles as rows an operator approves or
//! rejects one user at a time.
//!
//! - After every complete read, [`confirm_read`] records the read as the integration's last
//!   complete one, removes the staged rows of users back in scope (enabled) and marks the others
//!   as checked by it. After the apply, [`restage`] writes the cycle's staged deletions (keeping
//!   a row's `staged_at`/`expires_at` until it expires; an expired one still due is staged
//!   again) and drops the rows the cycle no longer finds due.
//! - [`approve`] applies exactly the listed rows that the last complete read confirmed, under the
//!   integration's cycle lock, each re-checked: not expired, the user still managed by the
//!   integration and still linked to the same Entra account. [`reject`] keeps the user: no
//!   deletion, ownership cleared (logged), and the integration leaves the user alone afterwards
//!   (also under the cycle lock).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use serde_json::json;

use super::cycle::SyncEnv;
use crate::domain::directory::{self, MANAGED_BY, OpContext};
use crate::domain::entra::Snapshot;
use crate::domain::{
    AttributeChange, DirectoryError, DirectoryTx, IntegrationId, LogAction, LogStatus, Manager,
    Source, StagedDeletion, StagedReason, StoreError, UserId, UserName,
};
use crate::store::{IntegrationRow, Store};

use super::plan::PlannedDeprovision;

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("{integration} has no staged deletion of {user}")]
    NotStaged { integration: String, user: String },
    #[error(
        "a cycle of {0} is running (on this or another replica); try again when it has finished"
    )]
    Busy(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which staged deletions to approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Users(Vec<String>),
}

/// One approved deletion that was applied.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub user_name: String,
    pub reason: StagedReason,
    pub appointments_cancelled: usize,
    pub emails_queued: usize,
}

/// One listed deletion that was not applied, and why.
#[derive(Debug, Clone, Serialize)]
pub struct NotApplied {
    pub user_name: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApproveReport {
    pub integration: String,
    pub deleted: Vec<Applied>,
    pub not_deleted: Vec<NotApplied>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RejectReport {
    pub integration: String,
    pub user_name: String,
    pub kept: bool,
}

/// Who manages users in the account: every integration, by id.
pub async fn managers(
    store: &Store,
    integ: &IntegrationRow,
) -> Result<HashMap<IntegrationId, Manager>, StoreError> {
    Ok(store
        .list_integrations(Some(&integ.account_id))
        .await?
        .into_iter()
        .map(|r| {
            let graph = r.kind == crate::domain::IntegrationKind::Graph;
            (
                r.id,
                Manager {
                    name: r.name,
                    graph,
                },
            )
        })
        .collect())
}

/// The Entra object ids in scope and enabled in `snapshot`: a staged deletion of one of them is
/// no longer due.
fn enabled_in_scope(snapshot: &Snapshot) -> HashSet<&str> {
    snapshot
        .users()
        .iter()
        .filter(|u| !u.is_disabled())
        .map(|u| u.object_id.as_str())
        .collect()
}

/// The staged rows of `integ` that `snapshot` (a complete read) still finds due.
pub fn still_due(rows: Vec<StagedDeletion>, snapshot: &Snapshot) -> Vec<StagedDeletion> {
    let back = enabled_in_scope(snapshot);
    rows.into_iter()
        .filter(|r| {
            r.object_id
                .as_ref()
                .is_none_or(|o| !back.contains(o.as_str()))
        })
        .collect()
}

/// Records the complete read of `cycle_id` (see the module documentation) and returns the staged
/// rows it still finds due. `snapshot` holds the whole scope, or — for an incremental cycle —
/// the changed part of it, which always includes every staged user's account; `users_in_scope`
/// counts the whole scope.
pub async fn confirm_read(
    store: &Store,
    integ: &IntegrationRow,
    cycle_id: &str,
    now: DateTime<Utc>,
    snapshot: &Snapshot,
    users_in_scope: usize,
) -> Result<Vec<StagedDeletion>, StoreError> {
    let mut tx = store.begin().await?;
    let rows = tx.list_staged(&integ.account_id, Some(&integ.id)).await?;
    let back = enabled_in_scope(snapshot);
    let mut due = Vec::with_capacity(rows.len());
    for row in rows {
        if row
            .object_id
            .as_ref()
            .is_some_and(|o| back.contains(o.as_str()))
        {
            tracing::info!(user = %row.user_name, "back in scope: staged deletion withdrawn");
            tx.delete_staged(&row.id).await?;
        } else {
            due.push(row);
        }
    }
    let ids: Vec<String> = due.iter().map(|r| r.id.clone()).collect();
    tx.mark_staged_checked(&ids, cycle_id).await?;
    tx.record_scope_read(
        &integ.id,
        cycle_id,
        now,
        i64::try_from(users_in_scope).unwrap_or(i64::MAX),
    )
    .await?;
    tx.commit().await?;
    for row in &mut due {
        row.checked_cycle_id = cycle_id.to_owned();
    }
    Ok(due)
}

/// Writes the cycle's staged deletions and drops the rows it no longer finds due.
pub async fn restage(
    store: &Store,
    integ: &IntegrationRow,
    cycle_id: &str,
    now: DateTime<Utc>,
    expiry_days: u32,
    staged: &[PlannedDeprovision],
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let existing: HashMap<UserId, StagedDeletion> = tx
        .list_staged(&integ.account_id, Some(&integ.id))
        .await?
        .into_iter()
        .map(|r| (r.user_id.clone(), r))
        .collect();
    let mut keep: HashSet<&UserId> = HashSet::new();
    for d in staged {
        keep.insert(&d.user_id);
        let (appointments, guests) = tx.upcoming_counts(&d.user_id, now).await?;
        let (staged_at, expires_at) = match existing.get(&d.user_id) {
            Some(old) if !old.expired(now) => (old.staged_at, old.expires_at),
            _ => (now, now + TimeDelta::days(i64::from(expiry_days.max(1)))),
        };
        tx.put_staged(&StagedDeletion {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: integ.account_id.clone(),
            integration_id: integ.id.clone(),
            integration: integ.name.clone(),
            user_id: d.user_id.clone(),
            user_name: d.user_name.clone(),
            object_id: d.object_id.clone(),
            reason: StagedReason::from_deprovision(d.reason),
            appointments,
            guests,
            staged_at,
            expires_at,
            checked_cycle_id: cycle_id.to_owned(),
        })
        .await?;
    }
    for (user, row) in &existing {
        if !keep.contains(user) {
            tx.delete_staged(&row.id).await?;
        }
    }
    tx.commit().await
}

fn op_context(integ: &IntegrationRow, now: DateTime<Utc>) -> OpContext {
    OpContext {
        account: integ.account_id.clone(),
        source: Source::Graph,
        integration_id: Some(integ.id.clone()),
        cycle_id: None,
        now,
    }
}

fn key_of(user: &str) -> String {
    UserName::parse(user.trim())
        .map(|u| u.key().to_owned())
        .unwrap_or_else(|_| user.trim().to_lowercase())
}

/// Applies exactly the selected staged deletions of `integ` that are still due (see the module
/// documentation), in one transaction, under the integration's cycle lock.
pub async fn approve(
    env: &SyncEnv,
    integ: &IntegrationRow,
    selection: &Selection,
) -> Result<ApproveReport, ReviewError> {
    if matches!(selection, Selection::Users(u) if u.is_empty()) {
        return Err(ReviewError::Invalid(
            "name the users to approve (--user USERNAME ...) or approve them all (--all)"
                .to_owned(),
        ));
    }
    let Some(lock) = env.store.try_lock_cycle(&integ.id).await? else {
        return Err(ReviewError::Busy(integ.name.clone()));
    };
    let result = approve_locked(env, integ, selection).await;
    lock.release().await;
    result
}

async fn approve_locked(
    env: &SyncEnv,
    integ: &IntegrationRow,
    selection: &Selection,
) -> Result<ApproveReport, ReviewError> {
    let now = env.clock.now();
    let ctx = op_context(integ, now);
    let mut report = ApproveReport {
        integration: integ.name.clone(),
        deleted: Vec::new(),
        not_deleted: Vec::new(),
    };
    let mut tx = env.store.begin().await?;
    let last = tx.last_scope_read(&integ.id).await?;
    let rows = tx.list_staged(&integ.account_id, Some(&integ.id)).await?;
    let chosen: Vec<StagedDeletion> = match selection {
        Selection::All => rows,
        Selection::Users(users) => {
            let mut by_key: HashMap<String, StagedDeletion> = rows
                .into_iter()
                .map(|r| (key_of(&r.user_name), r))
                .collect();
            let mut out = Vec::new();
            for u in users {
                match by_key.remove(&key_of(u)) {
                    Some(r) => out.push(r),
                    None => report.not_deleted.push(NotApplied {
                        user_name: u.clone(),
                        reason: "no staged deletion of this user".to_owned(),
                    }),
                }
            }
            out
        }
    };
    for row in chosen {
        match still_approvable(&mut tx, integ, &row, last.as_ref(), now).await? {
            Err(reason) => report.not_deleted.push(NotApplied {
                user_name: row.user_name.clone(),
                reason,
            }),
            Ok(()) => {
                let done = directory::deprovision_user(
                    &mut tx,
                    &ctx,
                    &row.user_id,
                    row.reason.deprovision_reason(),
                )
                .await?;
                tx.delete_staged(&row.id).await?;
                report.deleted.push(Applied {
                    user_name: row.user_name.clone(),
                    reason: row.reason,
                    appointments_cancelled: done.cancelled.len(),
                    emails_queued: done.queued.len(),
                });
            }
        }
    }
    tx.commit().await?;
    crate::metrics::users_changed(
        ctx.source,
        crate::metrics::UserAction::Deleted,
        report.deleted.len(),
    );
    Ok(report)
}

/// `Ok(Err(why))` when the staged row must not be applied now.
async fn still_approvable(
    tx: &mut crate::store::Tx,
    integ: &IntegrationRow,
    row: &StagedDeletion,
    last: Option<&(String, DateTime<Utc>)>,
    now: DateTime<Utc>,
) -> Result<Result<(), String>, StoreError> {
    if row.expired(now) {
        return Ok(Err(format!(
            "the staged deletion expired at {}; the next cycle stages it again if it is still due",
            row.expires_at.to_rfc3339()
        )));
    }
    if last.is_none_or(|(cycle, _)| *cycle != row.checked_cycle_id) {
        return Ok(Err(
            "the integration's last complete read did not confirm it; run a cycle first".to_owned(),
        ));
    }
    let Some(user) = tx.user_by_id(&integ.account_id, &row.user_id).await? else {
        return Ok(Err("the user no longer exists".to_owned()));
    };
    if user.managed_by.as_ref() != Some(&integ.id) {
        return Ok(Err(format!(
            "the user is no longer managed by {}",
            integ.name
        )));
    }
    if user.attrs.entra_object_id != row.object_id {
        return Ok(Err(
            "the user is linked to another Entra account than when it was staged".to_owned(),
        ));
    }
    Ok(Ok(()))
}

/// Keeps `user`: its staged deletion is dropped, `integ` no longer manages it (logged) and
/// leaves it alone from now on. Under the integration's cycle lock, so that a running cycle
/// never deletes a user an operator is keeping.
pub async fn reject(
    env: &SyncEnv,
    integ: &IntegrationRow,
    user: &str,
) -> Result<RejectReport, ReviewError> {
    let Some(lock) = env.store.try_lock_cycle(&integ.id).await? else {
        return Err(ReviewError::Busy(integ.name.clone()));
    };
    let result = reject_locked(env, integ, user).await;
    lock.release().await;
    result
}

async fn reject_locked(
    env: &SyncEnv,
    integ: &IntegrationRow,
    user: &str,
) -> Result<RejectReport, ReviewError> {
    let now = env.clock.now();
    let mut tx = env.store.begin().await?;
    let row = tx
        .list_staged(&integ.account_id, Some(&integ.id))
        .await?
        .into_iter()
        .find(|r| key_of(&r.user_name) == key_of(user))
        .ok_or_else(|| ReviewError::NotStaged {
            integration: integ.name.clone(),
            user: user.to_owned(),
        })?;
    tx.reject_deletion(&integ.id, &row.user_id, now).await?;
    let ctx = op_context(integ, now);
    let mut entry = ctx.log_entry(LogAction::DeletionRejected, LogStatus::Success);
    entry.user_id = Some(row.user_id.clone());
    entry.user_name = Some(row.user_name.clone());
    entry.source_object_id = row.object_id.as_ref().map(|o| o.to_string());
    entry.modified = vec![AttributeChange {
        attribute: MANAGED_BY.to_owned(),
        old: Some(json!(format!("{} (graph)", integ.name))),
        new: None,
    }];
    entry.error_message = Some(format!(
        "an operator rejected the deletion ({}): the user is kept and {} leaves it alone",
        row.reason.as_str(),
        integ.name
    ));
    tx.write_log(&entry).await?;
    tx.commit().await?;
    Ok(RejectReport {
        integration: integ.name.clone(),
        user_name: row.user_name,
        kept: true,
    })
}
