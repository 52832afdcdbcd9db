//! The provisioning operations — create, update, deactivate/delete, reactivate — and their side
//! effects. SCIM push handlers and the Graph pull sync both call these functions, inside one
//! transaction that the caller opens and commits, so a failure anywhere leaves nothing half done.
//!
//! The functions are written against [`DirectoryTx`], the handful of reads and writes they need;
//! `crate::store` implements it for SQLite and PostgreSQL. Nothing here does I/O of its own or
//! records metrics: the outcomes returned say what changed, and the callers count committed
//! changes at the edge.

use std::future::Future;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::ids::{AccountId, AppointmentId, IntegrationId, UserId, UserName};
use super::model::{
    Appointment, AttributeChange, DirectoryUser, LogAction, LogEntry, LogStatus, OutboxMessage,
    Source, UserRecord,
};
use super::notice;

/// A storage failure, as the directory operations see it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write (the constraint's subject is named).
    #[error("{0} already exists")]
    Conflict(String),
    /// Anything else the database said. Never read as "not found".
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("a user with userName {0:?} already exists")]
    UserNameTaken(String),
    #[error("no user with id {0}")]
    UserNotFound(String),
    #[error("the user has changed: version {actual} is current, the request expected {expected}")]
    VersionMismatch { expected: i64, actual: i64 },
    #[error(
        "essentry keeps no inactive accounts: deactivating a user deletes the account, so a user cannot be created with active=false"
    )]
    InactiveCreate,
    /// The user is managed by a Graph integration other than the one acting: only that
    /// integration (or an operator) may delete or deactivate it, and no other Graph integration
    /// adopts it.
    #[error(
        "the user {user_name:?} is managed by the Graph integration {integration:?}; it deletes or deactivates the user when Entra unassigns or disables it (or an operator does)"
    )]
    ManagedByGraph {
        user_name: String,
        integration: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An integration that manages users, as the ownership checks need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manager {
    pub name: String,
    /// A Graph (pull) integration; otherwise a SCIM one.
    pub graph: bool,
}

/// The reads and writes the provisioning operations need, all inside one open transaction.
pub trait DirectoryTx: Send {
    fn user_by_id(
        &mut self,
        account: &AccountId,
        id: &UserId,
    ) -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send;
    fn user_by_name(
        &mut self,
        account: &AccountId,
        name: &UserName,
    ) -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send;
    /// Inserts `user` together with its provisioning-log row `entry`: `Ok(false)`, with nothing
    /// written, when the userName is taken in the account. The store may send both (and the
    /// user's email rows) as one combined write: one round trip to SQLite's single writer.
    fn insert_user_logged(
        &mut self,
        user: &UserRecord,
        entry: &LogEntry,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Writes `user` (whose `version` is already the new one) and its provisioning-log row
    /// `entry` if the stored version is still `expected_version`; `Ok(false)`, with nothing
    /// written, otherwise. `emails_changed` false lets the store keep the email rows as they
    /// are. A combined write like [`DirectoryTx::insert_user_logged`].
    fn update_user_logged(
        &mut self,
        user: &UserRecord,
        expected_version: i64,
        emails_changed: bool,
        entry: &LogEntry,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn delete_user(
        &mut self,
        account: &AccountId,
        id: &UserId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Scheduled appointments hosted by `user` that start after `now`, with their guests.
    fn upcoming_hosted(
        &mut self,
        account: &AccountId,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<Appointment>, StoreError>> + Send;
    fn cancel_appointment(
        &mut self,
        id: &AppointmentId,
        now: DateTime<Utc>,
        reason: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Enqueues messages; one whose idempotency key is already queued is skipped.
    fn enqueue(
        &mut self,
        messages: &[OutboxMessage],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn write_log(
        &mut self,
        entry: &LogEntry,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The integration `id`, if it still exists.
    fn integration_of(
        &mut self,
        id: &IntegrationId,
    ) -> impl Future<Output = Result<Option<Manager>, StoreError>> + Send;
}

/// Who is acting, for the provisioning log.
#[derive(Debug, Clone)]
pub struct OpContext {
    pub account: AccountId,
    pub source: Source,
    pub integration_id: Option<IntegrationId>,
    pub cycle_id: Option<String>,
    pub now: DateTime<Utc>,
}

impl OpContext {
    /// A log entry for this context, to be completed by the caller.
    pub fn log_entry(&self, action: LogAction, status: LogStatus) -> LogEntry {
        LogEntry {
            // Time-ordered (v7), like the ids of `ids.rs`: the log's unique index on it grows
            // at its end.
            id: uuid::Uuid::now_v7().to_string(),
            account_id: self.account.clone(),
            integration_id: self.integration_id.clone(),
            cycle_id: self.cycle_id.clone(),
            source: self.source,
            action,
            status,
            user_id: None,
            user_name: None,
            source_object_id: None,
            modified: Vec::new(),
            error_code: None,
            error_message: None,
            duration_ms: None,
            at: self.now,
        }
    }
}

/// Why an account is being removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeprovisionReason {
    /// `active` became false (SCIM PATCH/PUT, or the user was disabled in Entra).
    Deactivated,
    /// SCIM DELETE, or the user was deleted in Entra.
    Deleted,
    /// The user is no longer assigned to the application.
    Unassigned,
}

impl DeprovisionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deactivated => "deactivated",
            Self::Deleted => "deleted",
            Self::Unassigned => "unassigned",
        }
    }
}

/// What a deprovisioning did.
#[derive(Debug, Clone)]
pub struct DeprovisionReport {
    /// The user as it was, with `active` false.
    pub user: UserRecord,
    pub cancelled: Vec<Appointment>,
    pub queued: Vec<OutboxMessage>,
    pub changes: Vec<AttributeChange>,
}

#[derive(Debug, Clone)]
pub enum UpdateOutcome {
    Updated {
        user: UserRecord,
        changes: Vec<AttributeChange>,
    },
    Unchanged(UserRecord),
    Deprovisioned(DeprovisionReport),
}

fn elapsed_ms(started: Instant) -> Option<i64> {
    i64::try_from(started.elapsed().as_millis()).ok()
}

fn opt_json(v: &Option<String>) -> Option<Value> {
    v.as_ref().map(|s| Value::String(s.clone()))
}

/// The attributes that differ between `old` and `new`, old → new, in a stable order: the typed
/// attributes first, then any other top-level resource attribute.
pub fn diff_attributes(old: Option<&DirectoryUser>, new: &DirectoryUser) -> Vec<AttributeChange> {
    let mut changes = Vec::new();
    let mut push = |attribute: &str, old: Option<Value>, new: Option<Value>| {
        if old != new {
            changes.push(AttributeChange {
                attribute: attribute.to_owned(),
                old,
                new,
            });
        }
    };
    push(
        "userName",
        old.map(|o| json!(o.user_name.as_str())),
        Some(json!(new.user_name.as_str())),
    );
    push(
        "name.givenName",
        old.and_then(|o| opt_json(&o.given_name)),
        opt_json(&new.given_name),
    );
    push(
        "name.familyName",
        old.and_then(|o| opt_json(&o.family_name)),
        opt_json(&new.family_name),
    );
    push(
        "displayName",
        old.and_then(|o| opt_json(&o.display_name)),
        opt_json(&new.display_name),
    );
    push(
        "externalId",
        old.and_then(|o| opt_json(&o.external_id)),
        opt_json(&new.external_id),
    );
    push(
        "active",
        old.map(|o| json!(o.active)),
        Some(json!(new.active)),
    );
    let typed = ["userName", "name", "displayName", "externalId", "active"];
    let mut keys: Vec<&String> = new.resource.keys().collect();
    if let Some(o) = old {
        keys.extend(o.resource.keys().filter(|k| !new.resource.contains_key(*k)));
    }
    for key in keys {
        if typed.contains(&key.as_str()) {
            continue;
        }
        let before = old.and_then(|o| o.resource.get(key)).cloned();
        push(key, before, new.resource.get(key).cloned());
    }
    // `name` sub-attributes other than the two typed ones (formatted, middleName, ...).
    let name_of = |u: Option<&DirectoryUser>| u.and_then(|u| u.resource.get("name")).cloned();
    let (old_name, new_name) = (name_of(old), name_of(Some(new)));
    if old_name != new_name {
        let subs = |v: &Option<Value>| {
            v.as_ref()
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let mut names = subs(&new_name);
        names.extend(subs(&old_name));
        names.sort();
        names.dedup();
        for sub in names {
            if sub == "givenName" || sub == "familyName" {
                continue;
            }
            let get = |v: &Option<Value>| v.as_ref().and_then(|n| n.get(&sub)).cloned();
            push(&format!("name.{sub}"), get(&old_name), get(&new_name));
        }
    }
    changes
}

/// Creates a user. A user that is not active is refused: essentry keeps no inactive accounts.
pub async fn create_user<T: DirectoryTx>(
    tx: &mut T,
    ctx: &OpContext,
    desired: DirectoryUser,
) -> Result<UserRecord, DirectoryError> {
    let started = Instant::now();
    if !desired.active {
        return Err(DirectoryError::InactiveCreate);
    }
    let record = UserRecord {
        id: UserId::generate(),
        account_id: ctx.account.clone(),
        attrs: desired,
        source: ctx.source,
        managed_by: match ctx.source {
            Source::Graph | Source::Scim => ctx.integration_id.clone(),
            Source::Cli => None,
        },
        version: 1,
        created_at: ctx.now,
        updated_at: ctx.now,
    };
    let mut entry = ctx.log_entry(LogAction::Create, LogStatus::Success);
    fill_user(&mut entry, &record);
    entry.modified = diff_attributes(None, &record.attrs);
    entry.duration_ms = elapsed_ms(started);
    // The userName's uniqueness is the insert's to check: a taken name writes nothing.
    match tx.insert_user_logged(&record, &entry).await {
        Ok(true) => Ok(record),
        Ok(false) | Err(StoreError::Conflict(_)) => Err(DirectoryError::UserNameTaken(
            record.attrs.user_name.as_str().to_owned(),
        )),
        Err(e) => Err(e.into()),
    }
}

fn fill_user(entry: &mut LogEntry, user: &UserRecord) {
    entry.user_id = Some(user.id.clone());
    entry.user_name = Some(user.attrs.user_name.as_str().to_owned());
    entry.source_object_id = user
        .attrs
        .entra_object_id
        .as_ref()
        .map(|o| o.as_str().to_owned())
        .or_else(|| user.attrs.external_id.clone());
}

/// The provisioning-log attribute that records a change of ownership (old and new manager).
pub const MANAGED_BY: &str = "managedBy";

/// The name of the Graph integration that manages `user`, when that is not the acting one. Only
/// such an integration (or an operator at the command line) may delete or deactivate the user,
/// so that SCIM push and pull sync, or two pull integrations, never fight over an irreversible
/// action.
async fn foreign_graph_manager<T: DirectoryTx>(
    tx: &mut T,
    ctx: &OpContext,
    user: &UserRecord,
) -> Result<Option<String>, StoreError> {
    let Some(owner) = &user.managed_by else {
        return Ok(None);
    };
    if ctx.source == Source::Cli || ctx.integration_id.as_ref() == Some(owner) {
        return Ok(None);
    }
    Ok(tx
        .integration_of(owner)
        .await?
        .filter(|m| m.graph)
        .map(|m| m.name))
}

/// A manager for the provisioning log: `"EntraPull (graph)"`, or null for none.
async fn manager_json<T: DirectoryTx>(
    tx: &mut T,
    id: Option<&IntegrationId>,
) -> Result<Option<Value>, StoreError> {
    let Some(id) = id else { return Ok(None) };
    Ok(Some(match tx.integration_of(id).await? {
        Some(m) => json!(format!(
            "{} ({})",
            m.name,
            if m.graph { "graph" } else { "scim" }
        )),
        None => json!(id.as_str()),
    }))
}

/// Replaces a user's attributes with `desired`. `active` false deprovisions the user (the account
/// is deleted); a change that alters nothing writes nothing. `if_match` is the version the caller
/// last saw (SCIM `If-Match`).
pub async fn update_user<T: DirectoryTx>(
    tx: &mut T,
    ctx: &OpContext,
    id: &UserId,
    desired: DirectoryUser,
    if_match: Option<i64>,
) -> Result<UpdateOutcome, DirectoryError> {
    let started = Instant::now();
    let current = tx
        .user_by_id(&ctx.account, id)
        .await?
        .ok_or_else(|| DirectoryError::UserNotFound(id.to_string()))?;
    if let Some(expected) = if_match.filter(|v| *v != current.version) {
        return Err(DirectoryError::VersionMismatch {
            expected,
            actual: current.version,
        });
    }
    update_read_user(tx, ctx, current, desired, started).await
}

/// Updates `current` — the user as read at its version, inside this transaction or before it
/// (a SCIM PATCH applies its operations outside the transaction) — to `desired`. The write
/// checks that version: a user changed since is not overwritten, and the answer is
/// [`DirectoryError::VersionMismatch`] with nothing written. `started` is when the operation
/// began, for the provisioning log's duration.
pub async fn update_read_user<T: DirectoryTx>(
    tx: &mut T,
    ctx: &OpContext,
    current: UserRecord,
    mut desired: DirectoryUser,
    started: Instant,
) -> Result<UpdateOutcome, DirectoryError> {
    let id = &current.id;
    if !desired.active {
        return deprovision_user(tx, ctx, id, DeprovisionReason::Deactivated)
            .await
            .map(UpdateOutcome::Deprovisioned);
    }
    if desired.entra_object_id.is_none() {
        desired.entra_object_id = current.attrs.entra_object_id.clone();
    }
    // A Graph integration that updates a user manages it from now on (an adoption); it may not
    // take over a user another Graph integration manages. SCIM and the CLI leave ownership alone.
    let managed_by = match (ctx.source, &ctx.integration_id) {
        (Source::Graph, Some(me)) => {
            if let Some(other) = foreign_graph_manager(tx, ctx, &current).await? {
                return Err(DirectoryError::ManagedByGraph {
                    user_name: current.attrs.user_name.as_str().to_owned(),
                    integration: other,
                });
            }
            Some(me.clone())
        }
        _ => current.managed_by.clone(),
    };
    let mut changes = diff_attributes(Some(&current.attrs), &desired);
    if changes.is_empty() && desired == current.attrs && managed_by == current.managed_by {
        return Ok(UpdateOutcome::Unchanged(current));
    }
    if managed_by != current.managed_by {
        changes.push(AttributeChange {
            attribute: MANAGED_BY.to_owned(),
            old: manager_json(tx, current.managed_by.as_ref()).await?,
            new: manager_json(tx, managed_by.as_ref()).await?,
        });
    }
    if desired.user_name != current.attrs.user_name
        && tx
            .user_by_name(&ctx.account, &desired.user_name)
            .await?
            .is_some()
    {
        return Err(DirectoryError::UserNameTaken(
            desired.user_name.as_str().to_owned(),
        ));
    }
    let updated = UserRecord {
        attrs: desired,
        managed_by,
        version: current.version + 1,
        updated_at: ctx.now,
        ..current.clone()
    };
    let mut entry = ctx.log_entry(LogAction::Update, LogStatus::Success);
    fill_user(&mut entry, &updated);
    entry.modified = changes.clone();
    entry.duration_ms = elapsed_ms(started);
    let written = tx
        .update_user_logged(
            &updated,
            current.version,
            updated.attrs.emails() != current.attrs.emails(),
            &entry,
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                DirectoryError::UserNameTaken(updated.attrs.user_name.as_str().to_owned())
            }
            other => other.into(),
        })?;
    if !written {
        return Err(DirectoryError::VersionMismatch {
            expected: current.version,
            actual: current.version + 1,
        });
    }
    Ok(UpdateOutcome::Updated {
        user: updated,
        changes,
    })
}

/// Deactivation, unassignment and deletion all end here: the account is deleted, every upcoming
/// appointment the user hosts is cancelled, and each invited guest gets one cancellation email in
/// the outbox. Past appointments are left as they were.
pub async fn deprovision_user<T: DirectoryTx>(
    tx: &mut T,
    ctx: &OpContext,
    id: &UserId,
    reason: DeprovisionReason,
) -> Result<DeprovisionReport, DirectoryError> {
    let started = Instant::now();
    let mut user = tx
        .user_by_id(&ctx.account, id)
        .await?
        .ok_or_else(|| DirectoryError::UserNotFound(id.to_string()))?;
    if let Some(integration) = foreign_graph_manager(tx, ctx, &user).await? {
        return Err(DirectoryError::ManagedByGraph {
            user_name: user.attrs.user_name.as_str().to_owned(),
            integration,
        });
    }
    let upcoming = tx.upcoming_hosted(&ctx.account, id, ctx.now).await?;
    let mut cancelled = Vec::with_capacity(upcoming.len());
    let mut queued = Vec::new();
    let why = format!("host {} ({})", reason.as_str(), user.attrs.user_name);
    for mut appointment in upcoming {
        tx.cancel_appointment(&appointment.id, ctx.now, &why)
            .await?;
        appointment.status = super::model::AppointmentStatus::Cancelled;
        appointment.cancelled_at = Some(ctx.now);
        appointment.cancel_reason = Some(why.clone());
        queued.extend(notice::cancellation_messages(&appointment, ctx.now, || {
            uuid::Uuid::now_v7().to_string()
        }));
        cancelled.push(appointment);
    }
    tx.enqueue(&queued).await?;
    if !tx.delete_user(&ctx.account, id).await? {
        return Err(DirectoryError::UserNotFound(id.to_string()));
    }
    let was_active = user.attrs.active;
    user.attrs.active = false;
    let mut changes = vec![AttributeChange {
        attribute: "active".to_owned(),
        old: Some(json!(was_active)),
        new: Some(json!(false)),
    }];
    changes.retain(|c| c.old != c.new);
    let mut entry = ctx.log_entry(LogAction::Delete, LogStatus::Success);
    fill_user(&mut entry, &user);
    entry.modified = changes.clone();
    entry.error_message = None;
    entry.duration_ms = elapsed_ms(started);
    tx.write_log(&entry).await?;
    Ok(DeprovisionReport {
        user,
        cancelled,
        queued,
        changes,
    })
}
