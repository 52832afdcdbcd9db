//! `/Groups` handlers. Members live in their own table: a PATCH adds or removes rows and never
//! loads or re-serialises the member list, so groups of 100k members stay cheap to change.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::domain::{GroupId, GroupRecord, StoreError};
use crate::http::AppState;
use crate::store::Tx;
use crate::store::sql_filter::{self, Target};

use super::error::ScimError;
use super::filter::parse_filter;
use super::patch::{self, GROUP_SCHEMA, MemberChange};
use super::request::{Caller, ListRequest, QueryParams, ScimBody, if_match};
use super::resource::{self, GROUP_URN, Projection};
use super::scim_response;

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
    let filter = match &req.filter {
        Some(f) => Some(
            sql_filter::translate(&parse_filter(f)?, Target::Group, 2)
                .map_err(|e| ScimError::bad_request("invalidFilter", e.0))?,
        ),
        None => None,
    };
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
    let projection = Projection::new(params.get("attributes"), params.get("excludedAttributes"));
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
    let mut tx = state.store.begin().await?;
    check_members(&mut tx, &caller, &parsed.members).await?;
    tx.insert_group(&group)
        .await
        .map_err(|e| name_taken(e, &group.display_name))?;
    tx.add_members(&group.id, &parsed.members).await?;
    tx.commit().await?;
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
/// `meta.version` and `lastModified` move).
async fn write(
    tx: &mut Tx,
    current: &GroupRecord,
    resource: serde_json::Map<String, Value>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<GroupRecord, ScimError> {
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
    if !written {
        return Err(ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            "the group changed during the request; retry",
        ));
    }
    Ok(updated)
}

async fn load_for_write(
    tx: &mut Tx,
    caller: &Caller,
    id: &GroupId,
    headers: &HeaderMap,
) -> Result<GroupRecord, ScimError> {
    let expected = if_match(headers)?;
    let current = tx
        .group_by_id(&caller.account, id)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no group with id {id}")))?;
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

pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let id = group_id(&id)?;
    let parsed = resource::group_from_body(&body)?;
    let mut tx = state.store.begin().await?;
    let current = load_for_write(&mut tx, &caller, &id, &headers).await?;
    let mut resource = parsed.resource;
    resource.insert("displayName".to_owned(), json!(parsed.display_name));
    let updated = write(&mut tx, &current, resource, state.clock.now()).await?;
    apply_member_changes(
        &mut tx,
        &caller,
        &id,
        vec![MemberChange::ReplaceAll(parsed.members)],
    )
    .await?;
    tx.commit().await?;
    let body = render(&state, &updated, &Projection::default()).await?;
    Ok(scim_response(
        StatusCode::OK,
        &body,
        Some(updated.version),
        None,
    ))
}

pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: QueryParams,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let id = group_id(&id)?;
    let ops = patch::parse_patch_request(&body)?;
    let (ops, member_changes) = patch::split_member_ops(ops)?;
    let mut tx = state.store.begin().await?;
    let current = load_for_write(&mut tx, &caller, &id, &headers).await?;
    let mut resource = current.resource.clone();
    resource.insert("displayName".to_owned(), json!(current.display_name));
    patch::apply(&mut resource, &ops, &GROUP_SCHEMA)?;
    let members_changed = member_changes.len();
    apply_member_changes(&mut tx, &caller, &id, member_changes).await?;
    let updated = write(&mut tx, &current, resource, state.clock.now()).await?;
    tx.commit().await?;
    tracing::info!(group_id = %id, member_changes = members_changed, "group patched");
    // RFC 7644 §3.5.2: 204 unless the client asked for attributes back.
    if params.get("attributes").is_some() || params.get("excludedAttributes").is_some() {
        let projection =
            Projection::new(params.get("attributes"), params.get("excludedAttributes"));
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
    let mut tx = state.store.begin().await?;
    load_for_write(&mut tx, &caller, &id, &headers).await?;
    tx.delete_group(&caller.account, &id).await?;
    tx.commit().await?;
    tracing::info!(group_id = %id, "group deleted");
    Ok(super::no_content())
}
