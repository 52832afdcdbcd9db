//! `/Users` handlers: thin translations between HTTP and the directory operations in
//! `crate::domain::directory`, which own every side effect.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use std::time::Instant;
use tracing::Instrument;

use crate::domain::directory::{self, DeprovisionReason, OpContext, UpdateOutcome};
use crate::domain::{
    DirectoryError, DirectoryTx, DirectoryUser, LogAction, LogStatus, Source, UserId, UserRecord,
};
use crate::http::AppState;
use crate::metrics::UserAction;
use crate::store::Tx;

use super::error::ScimError;
use super::filter::parse_filter;
use super::patch::{self, USER_SCHEMA};
use super::request::{Caller, ListRequest, QueryParams, ScimBody, if_match};
use super::resource::{self, Projection, USER_URN};
use super::user_body::{Rendered, UserBody};
use super::write::{Limits, transact};

fn context(state: &AppState, caller: &Caller) -> OpContext {
    OpContext {
        account: caller.account.clone(),
        source: Source::Scim,
        integration_id: Some(caller.integration_id.clone()),
        cycle_id: None,
        now: state.clock.now(),
    }
}

/// An id in a URL that is not a UUID names no user: 404, without a database round trip.
fn user_id(raw: &str) -> Result<UserId, ScimError> {
    UserId::parse(raw).map_err(|_| ScimError::not_found(format!("no user with id {raw}")))
}

/// The cost limits of SCIM writes.
fn limits(state: &AppState) -> Limits {
    Limits::from_settings(&state.settings.scim)
}

/// Awaits one user write and records a refused or failed one in the provisioning log (best
/// effort: the response to the client does not depend on it). A DELETE of a user that does not
/// exist is not logged: it names no user.
async fn logged<T>(
    state: &AppState,
    caller: &Caller,
    action: LogAction,
    user: Option<&str>,
    work: impl Future<Output = Result<T, ScimError>>,
) -> Result<T, ScimError> {
    let err = match work.await {
        Ok(out) => return Ok(out),
        Err(e) => e,
    };
    if err.status == StatusCode::NOT_FOUND && action == LogAction::Delete {
        return Err(err);
    }
    let ctx = context(state, caller);
    let mut entry = ctx.log_entry(action, LogStatus::Failure);
    entry.user_name = user.map(str::to_owned);
    entry.error_code = Some(err.scim_type.unwrap_or(err.status.as_str()).to_owned());
    entry.error_message = Some(err.detail.clone());
    let written = transact(state, async |tx| tx.write_log(&entry).await).await;
    if let Err(e) = written {
        tracing::warn!(error = %e, "could not write a provisioning-log row for a failed request");
    }
    Err(err)
}

/// A user's response body: written straight from the record without a projection, through
/// the JSON tree with one.
fn render(user: UserRecord, projection: &Projection, base_url: &str) -> Rendered {
    if projection.is_empty() {
        Rendered::User(Box::new(UserBody::new(user, base_url)))
    } else {
        Rendered::Json(projection.apply(resource::user_json(user, base_url), USER_URN))
    }
}

/// Matching users as SCIM JSON (projected), and the total number of matches.
pub async fn query(
    state: &AppState,
    caller: &Caller,
    req: &ListRequest,
) -> Result<(Vec<Rendered>, i64), ScimError> {
    let filter = req.filter.as_deref().map(parse_filter).transpose()?;
    let (offset, count) = (req.paging.start_index - 1, req.paging.count);
    // The store counts only when the page cannot tell the total (a lookup by userName reads one
    // row and no count).
    let (users, total) = state
        .store
        .list_users(&caller.account, filter.as_ref(), offset, count, true)
        .await?;
    let total = total.unwrap_or(0);
    let resources = users
        .into_iter()
        .map(|u| render(u, &req.projection, &state.scim_base))
        .collect();
    Ok((resources, total))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: QueryParams,
) -> Result<Response, ScimError> {
    let id = user_id(&id)?;
    let user = state
        .store
        .user_by_id(&caller.account, &id)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no user with id {id}")))?;
    let projection = Projection::new(params.get("attributes"), params.get("excludedAttributes"))?;
    let version = user.version;
    let body = render(user, &projection, &state.scim_base);
    Ok(super::serialized(
        StatusCode::OK,
        &body,
        Some(version),
        None,
    ))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let hinted = body.get("userName").and_then(Value::as_str);
    let work = async {
        let desired = resource::user_from_body(&body)?;
        limits(&state).check_resource(&desired.resource)?;
        let ctx = context(&state, &caller);
        Ok(transact(&state, async |tx| {
            directory::create_user(tx, &ctx, desired).await
        })
        .await?)
    };
    let span = tracing::info_span!("create_user");
    let user = logged(
        &state,
        &caller,
        LogAction::Create,
        hinted,
        work.instrument(span),
    )
    .await?;
    committed(UserAction::Created);
    tracing::info!(user_id = %user.id, "user created");
    let location = format!("{}/Users/{}", state.scim_base, user.id);
    let version = user.version;
    let body = UserBody::new(user, &state.scim_base);
    Ok(super::serialized(
        StatusCode::CREATED,
        &body,
        Some(version),
        Some(location),
    ))
}

/// Counts a committed change of this endpoint in `essentry_users_changed_total`.
fn committed(action: UserAction) {
    crate::metrics::users_changed(Source::Scim, action, 1);
}

/// The answer to a committed PUT or PATCH.
fn respond_update(state: &AppState, outcome: UpdateOutcome) -> Response {
    let (user, status) = match outcome {
        UpdateOutcome::Unchanged(user) => (user, "unchanged"),
        UpdateOutcome::Updated { user, .. } => {
            committed(UserAction::Updated);
            (user, "updated")
        }
        UpdateOutcome::Deprovisioned(report) => {
            committed(UserAction::Deleted);
            tracing::info!(
                user_id = %report.user.id,
                cancelled = report.cancelled.len(),
                emails_queued = report.queued.len(),
                "user deactivated: account deleted"
            );
            (report.user, "deprovisioned")
        }
    };
    tracing::debug!(user_id = %user.id, status, "user written");
    let version = user.version;
    let body = UserBody::new(user, &state.scim_base);
    super::serialized(StatusCode::OK, &body, Some(version), None)
}

pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let id = user_id(&id)?;
    let work = async {
        let expected = if_match(&headers)?;
        let desired = resource::user_from_body(&body)?;
        limits(&state).check_resource(&desired.resource)?;
        let ctx = context(&state, &caller);
        let update =
            async |tx: &mut Tx| directory::update_user(tx, &ctx, &id, desired, expected).await;
        Ok(transact(&state, update).await?)
    };
    let span = tracing::info_span!("replace_user", user_id = %id);
    let hinted = body.get("userName").and_then(Value::as_str);
    let outcome = logged(
        &state,
        &caller,
        LogAction::Update,
        hinted,
        work.instrument(span),
    )
    .await?;
    Ok(respond_update(&state, outcome))
}

/// The user `current` becomes with `ops` applied (CPU only; no transaction is open).
fn patched_user(
    current: &UserRecord,
    ops: &[patch::PatchOp],
    limits: &Limits,
) -> Result<DirectoryUser, ScimError> {
    let mut resource = current.attrs.resource.clone();
    resource.insert(
        "userName".to_owned(),
        json!(current.attrs.user_name.as_str()),
    );
    resource.insert("active".to_owned(), json!(current.attrs.active));
    limits.apply_patch(&mut resource, ops, &USER_SCHEMA)?;
    // essentry users sign in through their company's IdP: a password is never kept.
    resource.remove("password");
    resource::user_from_resource(resource)
}

/// Applies the PATCH to the stored user outside any transaction, then writes the result if the
/// user is still at the version it was applied to (see [`super::write`]).
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let id = user_id(&id)?;
    let started = Instant::now();
    let work = async {
        let expected = if_match(&headers)?;
        let ops = patch::parse_patch_request(&body)?;
        let limits = limits(&state);
        limits.check_operations(&ops)?;
        let ctx = context(&state, &caller);
        let current = state
            .store
            .user_by_id(&caller.account, &id)
            .await?
            .ok_or_else(|| ScimError::not_found(format!("no user with id {id}")))?;
        if let Some(expected) = expected.filter(|v| *v != current.version) {
            return Err(DirectoryError::VersionMismatch {
                expected,
                actual: current.version,
            }
            .into());
        }
        let desired = patched_user(&current, &ops, &limits)?;
        let version = current.version;
        // An update writes in one combined statement, checking the version read above; a
        // deactivation deletes the account and goes the long way, reading the user again.
        let update = async |tx: &mut Tx| {
            if desired.active {
                directory::update_read_user(tx, &ctx, current, desired, started).await
            } else {
                directory::update_user(tx, &ctx, &id, desired, Some(version)).await
            }
        };
        match transact(&state, update).await {
            // Another write came first, and the client set no precondition: apply the PATCH to
            // the current version under the row lock.
            Err(DirectoryError::VersionMismatch { .. }) if expected.is_none() => {
                tracing::debug!("user changed during the PATCH; applying it under the lock");
                let locked = async |tx: &mut Tx| {
                    let current = tx
                        .user_by_id(&caller.account, &id)
                        .await?
                        .ok_or_else(|| ScimError::not_found(format!("no user with id {id}")))?;
                    let desired = patched_user(&current, &ops, &limits)?;
                    let version = Some(current.version);
                    Ok(directory::update_user(tx, &ctx, &id, desired, version).await?)
                };
                transact(&state, locked).await
            }
            other => Ok(other?),
        }
    };
    let span = tracing::info_span!("patch_user", user_id = %id);
    let outcome = logged(
        &state,
        &caller,
        LogAction::Update,
        None,
        work.instrument(span),
    )
    .await?;
    Ok(respond_update(&state, outcome))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let id = user_id(&id)?;
    let work = async {
        let expected = if_match(&headers)?;
        let ctx = context(&state, &caller);
        let remove = async |tx: &mut Tx| {
            if let Some(expected) = expected {
                let current = tx
                    .user_by_id(&caller.account, &id)
                    .await?
                    .ok_or_else(|| DirectoryError::UserNotFound(id.to_string()))?;
                if current.version != expected {
                    return Err(DirectoryError::VersionMismatch {
                        expected,
                        actual: current.version,
                    });
                }
            }
            directory::deprovision_user(tx, &ctx, &id, DeprovisionReason::Deleted).await
        };
        Ok(transact(&state, remove).await?)
    };
    let span = tracing::info_span!("delete_user", user_id = %id);
    let report = logged(
        &state,
        &caller,
        LogAction::Delete,
        None,
        work.instrument(span),
    )
    .await?;
    committed(UserAction::Deleted);
    tracing::info!(
        user_id = %id,
        cancelled = report.cancelled.len(),
        emails_queued = report.queued.len(),
        "user deleted"
    );
    Ok(super::no_content())
}
