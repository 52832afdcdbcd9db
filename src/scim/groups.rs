//! `/Groups` handlers. Members live in their own table: a PATCH adds or removes rows and never
//! loads or re-serialises the member list, so groups of 100k members stay cheap to change.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::domain::{GroupId, GroupRecord, StoreError};
use crate::http::AppState;
use crate::store::Tx;

use super::error::ScimError;
use super::filter::parse_filter;
use super::patch::{self, GROUP_SCHEMA, MemberChange};
use super::request::{Caller, ListRequest, QueryParams, ScimBody, if_match};
use super::resource::{self, GROUP_URN, Projection};
use super::scim_response;
use super::write::{Limits, transact};

/// The cost limits of SCIM writes.
fn limits(state: &AppState) -> Limits {
    Limits::from_settings(&state.settings.scim)
}

fn group_id(raw: &str) -> Result<GroupId, ScimError> {
    GroupId::parse(raw).map_err(|_| ScimError::not_found(format!("no group with id {raw}")))
}

fn name_taken(e: StoreError, name: &str) -> ScimError {
    match e {
        StoreError::Conflict(_) => {
            ScimError::uniqueness(format!("a group with displayName {name:?} already exists"))
        }
        other => other.into(),
    }
}

/// Refuses member ids that are not users of the account (nothing is changed).
async fn check_members(tx: &mut Tx, caller: &Caller, ids: &[String]) -> Result<(), ScimError> {
    let missing = tx.missing_users(&caller.account, ids).await?;
    if missing.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = missing.iter().take(10).map(String::as_str).collect();
    Err(ScimError::invalid_value(format!(
        "{} member value(s) are not users of this directory: {}{}",
        missing.len(),
        shown.join(", "),
        if missing.len() > shown.len() {
            ", ..."
        } else {
            ""
        }
    )))
}

async fn apply_member_changes(
    tx: &mut Tx,
    caller: &Caller,
    group: &GroupId,
    changes: Vec<MemberChange>,
) -> Result<(), ScimError> {
    for change in changes {
        match change {
            MemberChange::Add(ids) => {
                check_members(tx, caller, &ids).await?;
                tx.add_members(group, &ids).await?;
            }
            MemberChange::Remove(ids) => tx.remove_members(group, &ids).await?,
            MemberChange::RemoveAll => tx.clear_members(group).await?,
            MemberChange::ReplaceAll(ids) => {
                check_members(tx, caller, &ids).await?;
                tx.clear_members(group).await?;
                tx.add_members(group, &ids).await?;
            }
        }
    }
    Ok(())
}

async fn render(
    state: &AppState,
    group: &GroupRecord,
    projection: &Projection,
) -> Result<Value, ScimError> {
    let members = if projection.returns("members", GROUP_URN) {
        Some(state.store.members_of(&group.id).await?)
    } else {
        None
    };
    Ok(projection.apply(
        resource::group_json(group, members.as_deref(), &state.scim_base),
        GROUP_URN,
    ))
}

/// Matching groups as SCIM JSON (projected), and the total number of matches.
pub async fn query(
    state: &AppState,
    caller: &Caller,
    req: &ListRequest,
) -> Result<(Vec<Value>, i64), ScimError> {
    let filter = req.filter.as_deref().map(parse_filter).transpose()?;
    let (groups, total) = state
        .store
        .list_groups(
            &caller.account,
            filter.as_ref(),
            req.paging.start_index - 1,
            req.paging.count,
            true,
        )
        .await?;
    let mut resources = Vec::with_capacity(groups.len());
    for g in &groups {
        resources.push(render(state, g, &req.projection).await?);
    }
    Ok((resources, total.unwrap_or(0)))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: QueryParams,
) -> Result<Response, ScimError> {
    let id = group_id(&id)?;
    let group = state
        .store
        .group_by_id(&caller.account, &id)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no group with id {id}")))?;
    let projection = Projection::new(params.get("attributes"), params.get("excludedAttributes"))?;
    let body = render(&state, &group, &projection).await?;
    Ok(scim_response(
        StatusCode::OK,
        &body,
        Some(group.version),
        None,
    ))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let parsed = resource::group_from_body(&body)?;
    limits(&state).check_resource(&parsed.resource)?;
    let now = state.clock.now();
    let group = GroupRecord {
        id: GroupId::generate(),
        account_id: caller.account.clone(),
        display_name: parsed.display_name,
        external_id: parsed.external_id,
        resource: parsed.resource,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    transact(&state, async |tx: &mut Tx| {
        check_members(tx, &caller, &parsed.members).await?;
        tx.insert_group(&group)
            .await
            .map_err(|e| name_taken(e, &group.display_name))?;
        tx.add_members(&group.id, &parsed.members).await?;
        Ok::<_, ScimError>(())
    })
    .await?;
    tracing::info!(group_id = %group.id, members = parsed.members.len(), "group created");
    let body = render(&state, &group, &Projection::default()).await?;
    let location = format!("{}/Groups/{}", state.scim_base, group.id);
    Ok(scim_response(
        StatusCode::CREATED,
        &body,
        Some(group.version),
        Some(location),
    ))
}

/// Writes the group's new attributes with the next version (also when only members changed, so
/// `meta.version` and `lastModified` move), if the group is still at `current`'s version;
/// `None` when another write came first.
async fn write(
    tx: &mut Tx,
    current: &GroupRecord,
    resource: serde_json::Map<String, Value>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<GroupRecord>, ScimError> {
    let parsed = resource::group_from_resource(resource)?;
    let updated = GroupRecord {
        display_name: parsed.display_name,
        external_id: parsed.external_id,
        resource: parsed.resource,
        version: current.version + 1,
        updated_at: now,
        ..current.clone()
    };
    let written = tx
        .update_group(&updated, current.version)
        .await
        .map_err(|e| name_taken(e, &updated.display_name))?;
    Ok(written.then_some(updated))
}

fn changed_meanwhile() -> ScimError {
    ScimError::new(
        StatusCode::PRECONDITION_FAILED,
        None,
        "the group changed during the request; retry",
    )
}

/// The group, if it exists and is at the version `If-Match` names (412 otherwise).
fn check_version(
    group: Option<GroupRecord>,
    id: &GroupId,
    expected: Option<i64>,
) -> Result<GroupRecord, ScimError> {
    let current = group.ok_or_else(|| ScimError::not_found(format!("no group with id {id}")))?;
    if let Some(expected) = expected.filter(|v| *v != current.version) {
        return Err(ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            format!(
                "the group has changed: version {} is current, the request expected {expected}",
                current.version
            ),
        ));
    }
    Ok(current)
}

async fn load_for_write(
    tx: &mut Tx,
    caller: &Caller,
    id: &GroupId,
    headers: &HeaderMap,
) -> Result<GroupRecord, ScimError> {
    let expected = if_match(headers)?;
    check_version(tx.group_by_id(&caller.account, id).await?, id, expected)
}

pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let id = group_id(&id)?;
    let parsed = resource::group_from_body(&body)?;
    limits(&state).check_resource(&parsed.resource)?;
    let now = state.clock.now();
    let updated = transact(&state, async |tx: &mut Tx| {
        let current = load_for_write(tx, &caller, &id, &headers).await?;
        let mut resource = parsed.resource;
        resource.insert("displayName".to_owned(), json!(parsed.display_name));
        let updated = write(tx, &current, resource, now)
            .await?
            .ok_or_else(changed_meanwhile)?;
        let replace_all = vec![MemberChange::ReplaceAll(parsed.members)];
        apply_member_changes(tx, &caller, &id, replace_all).await?;
        Ok::<_, ScimError>(updated)
    })
    .await?;
    let body = render(&state, &updated, &Projection::default()).await?;
    Ok(scim_response(
        StatusCode::OK,
        &body,
        Some(updated.version),
        None,
    ))
}

/// Applies the attribute operations to the stored group outside any transaction, then writes
/// them and the member changes in one transaction if the group is still at the version they
/// were applied to (see [`super::write`]). Everything the request can be refused for —
/// including its `attributes`/`excludedAttributes` — is checked before anything is written.
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: QueryParams,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let id = group_id(&id)?;
    let expected = if_match(&headers)?;
    let wants_body =
        params.get("attributes").is_some() || params.get("excludedAttributes").is_some();
    let projection = Projection::new(params.get("attributes"), params.get("excludedAttributes"))?;
    let ops = patch::parse_patch_request(&body)?;
    let limits = limits(&state);
    limits.check_operations(&ops)?;
    let (ops, member_changes) = patch::split_member_ops(ops)?;
    let members_changed = member_changes.len();
    let stored = state.store.group_by_id(&caller.account, &id).await?;
    let current = check_version(stored, &id, expected)?;
    let patched = |current: &GroupRecord| {
        let mut resource = current.resource.clone();
        resource.insert("displayName".to_owned(), json!(current.display_name));
        limits.apply_patch(&mut resource, &ops, &GROUP_SCHEMA)?;
        Ok::<_, ScimError>(resource)
    };
    let resource = patched(&current)?;
    let now = state.clock.now();
    let changes = member_changes.clone();
    let written = transact(&state, async |tx: &mut Tx| {
        let Some(updated) = write(tx, &current, resource, now).await? else {
            return Ok(None);
        };
        apply_member_changes(tx, &caller, &id, changes).await?;
        Ok::<_, ScimError>(Some(updated))
    })
    .await?;
    let updated = match written {
        Some(updated) => updated,
        // Another write came first, and the client set no precondition: apply the PATCH to
        // the current version under the row lock.
        None if expected.is_none() => {
            tracing::debug!("group changed during the PATCH; applying it under the lock");
            transact(&state, async |tx: &mut Tx| {
                let locked = check_version(tx.group_by_id(&caller.account, &id).await?, &id, None)?;
                let resource = patched(&locked)?;
                let updated = write(tx, &locked, resource, now)
                    .await?
                    .ok_or_else(changed_meanwhile)?;
                apply_member_changes(tx, &caller, &id, member_changes).await?;
                Ok::<_, ScimError>(updated)
            })
            .await?
        }
        None => return Err(changed_meanwhile()),
    };
    tracing::info!(group_id = %id, member_changes = members_changed, "group patched");
    // RFC 7644 §3.5.2: 204 unless the client asked for attributes back.
    if wants_body {
        let body = render(&state, &updated, &projection).await?;
        return Ok(scim_response(
            StatusCode::OK,
            &body,
            Some(updated.version),
            None,
        ));
    }
    Ok(super::no_content())
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let id = group_id(&id)?;
    transact(&state, async |tx: &mut Tx| {
        load_for_write(tx, &caller, &id, &headers).await?;
        tx.delete_group(&caller.account, &id).await?;
        Ok::<_, ScimError>(())
    })
    .await?;
    tracing::info!(group_id = %id, "group deleted");
    Ok(super::no_content())
}
