//! The Graph v1.0 resources the sync reads, as plain functions from (method, path, query, body)
//! to a [`Reply`], so that direct HTTP requests and `$batch` sub-requests share one
//! implementation: app role assignments of our service principal, `directoryObjects/getByIds`,
//! group members (direct and transitive, with or without the `microsoft.graph.user` cast), a
//! group, a user by id or UPN, and users filtered by `userPrincipalName` or `mail`; the delta
//! queries (`users/delta`, `groups/delta`) are in [`super::delta`].

use axum::http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::Shared;
use super::odata::{
    GraphError, Query, Reply, RequestCtx, broken_skiptoken, next_link, page, percent_decode,
    project, self_link,
};
use super::state::{Assignment, Object, SimGroup, SimUser, Tenant};

/// Every user property the simulator knows (what `getByIds` returns without `$select`).
pub(super) const USER_PROPS: &[&str] = &[
    "id",
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "accountEnabled",
    "mailNickname",
    "department",
];

/// The properties Graph returns for a user when there is no `$select` (note: no
/// `accountEnabled`, no `mailNickname`; those must be selected).
pub(super) const USER_DEFAULT: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
];

pub(super) const GROUP_PROPS: &[&str] = &[
    "id",
    "description",
    "displayName",
    "groupTypes",
    "mail",
    "mailEnabled",
    "mailNickname",
    "securityEnabled",
];

const ASSIGNMENT_PROPS: &[&str] = &[
    "id",
    "deletedDateTime",
    "appRoleId",
    "createdDateTime",
    "principalDisplayName",
    "principalId",
    "principalType",
    "resourceDisplayName",
    "resourceId",
];

/// Properties a `$select` may name on a mixed collection of users and groups.
fn directory_object_props() -> Vec<&'static str> {
    let mut all = USER_PROPS.to_vec();
    all.extend(GROUP_PROPS.iter().filter(|p| !USER_PROPS.contains(p)));
    all
}

/// A recognised Graph request target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint<'a> {
    Assignments(&'a str),
    GetByIds,
    Members {
        group: &'a str,
        transitive: bool,
        users_only: bool,
    },
    Group(&'a str),
    User(&'a str),
    /// `users/{id}/memberOf` or `transitiveMemberOf`, groups only (with or without the cast).
    MemberOf {
        user: &'a str,
        transitive: bool,
    },
    Users,
    /// `users/delta` (also `users/microsoft.graph.delta()`).
    UsersDelta,
    /// `groups/delta`.
    GroupsDelta,
    Batch,
}

impl Endpoint<'_> {
    /// The method it answers and its route name for statistics.
    pub fn describe(&self) -> (Method, &'static str) {
        match self {
            Self::Assignments(_) => (Method::GET, "/servicePrincipals/{id}/appRoleAssignedTo"),
            Self::GetByIds => (Method::POST, "/directoryObjects/getByIds"),
            Self::Members {
                transitive: false,
                users_only: false,
                ..
            } => (Method::GET, "/groups/{id}/members"),
            Self::Members {
                transitive: false,
                users_only: true,
                ..
            } => (Method::GET, "/groups/{id}/members/microsoft.graph.user"),
            Self::Members {
                transitive: true,
                users_only: false,
                ..
            } => (Method::GET, "/groups/{id}/transitiveMembers"),
            Self::Members {
                transitive: true,
                users_only: true,
                ..
            } => (
                Method::GET,
                "/groups/{id}/transitiveMembers/microsoft.graph.user",
            ),
            Self::Group(_) => (Method::GET, "/groups/{id}"),
            Self::User(_) => (Method::GET, "/users/{id}"),
            Self::MemberOf {
                transitive: false, ..
            } => (Method::GET, "/users/{id}/memberOf"),
            Self::MemberOf {
                transitive: true, ..
            } => (Method::GET, "/users/{id}/transitiveMemberOf"),
            Self::Users => (Method::GET, "/users"),
            Self::UsersDelta => (Method::GET, "/users/delta"),
            Self::GroupsDelta => (Method::GET, "/groups/delta"),
            Self::Batch => (Method::POST, "/$batch"),
        }
    }
}

/// Splits a path relative to `/v1.0` into decoded segments.
pub(super) fn segments(path: &str) -> Result<Vec<String>, GraphError> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_decode(s)
                .ok_or_else(|| GraphError::bad_request("The request URI is not valid."))
        })
        .collect()
}

/// Which endpoint the segments name, if any (segment names are case-insensitive, as in Graph).
pub(super) fn classify(segs: &[String]) -> Option<Endpoint<'_>> {
    let is = |i: usize, name: &str| segs.get(i).is_some_and(|s| s.eq_ignore_ascii_case(name));
    // Graph accepts a type cast with its namespace or its alias (`graph.user`, which
    // graph-rs-sdk sends).
    let cast = |i: usize, name: &str| {
        segs.get(i).is_some_and(|s| {
            let s = s.to_ascii_lowercase();
            let short = s
                .strip_prefix("microsoft.graph.")
                .or_else(|| s.strip_prefix("graph."));
            short == Some(name)
        })
    };
    let user_cast = |i: usize| cast(i, "user");
    // `delta`, `delta()`, `microsoft.graph.delta()` (what the SDKs send).
    let delta = |i: usize| {
        segs.get(i).is_some_and(|s| {
            let s = s.to_ascii_lowercase();
            let s = s.strip_suffix("()").unwrap_or(&s);
            s.strip_prefix("microsoft.graph.").unwrap_or(s) == "delta"
        })
    };
    match segs.len() {
        1 if is(0, "$batch") => Some(Endpoint::Batch),
        1 if is(0, "users") => Some(Endpoint::Users),
        2 if is(0, "users") && delta(1) => Some(Endpoint::UsersDelta),
        2 if is(0, "groups") && delta(1) => Some(Endpoint::GroupsDelta),
        2 if is(0, "users") => Some(Endpoint::User(&segs[1])),
        3 | 4 if is(0, "users") && (is(2, "memberOf") || is(2, "transitiveMemberOf")) => {
            if segs.len() == 4 && !cast(3, "group") {
                return None;
            }
            Some(Endpoint::MemberOf {
                user: &segs[1],
                transitive: is(2, "transitiveMemberOf"),
            })
        }
        2 if is(0, "groups") => Some(Endpoint::Group(&segs[1])),
        2 if is(0, "directoryObjects") && is(1, "getByIds") => Some(Endpoint::GetByIds),
        3 if is(0, "servicePrincipals") && is(2, "appRoleAssignedTo") => {
            Some(Endpoint::Assignments(&segs[1]))
        }
        3 | 4 if is(0, "groups") && (is(2, "members") || is(2, "transitiveMembers")) => {
            let users_only = segs.len() == 4;
            if users_only && !user_cast(3) {
                return None;
            }
            Some(Endpoint::Members {
                group: &segs[1],
                transitive: is(2, "transitiveMembers"),
                users_only,
            })
        }
        _ => None,
    }
}

/// The route name counted in [`super::Stats::by_route`].
pub(super) fn route_name(method: &Method, segs: &[String]) -> String {
    match classify(segs) {
        Some(e) => format!("{method} {}", e.describe().1),
        None => format!("{method} (unknown)"),
    }
}

/// Answers one Graph request (anything but `$batch`, which the caller unpacks).
pub(super) fn dispatch(
    shared: &Shared,
    ctx: &RequestCtx,
    method: &Method,
    segs: &[String],
    query: &str,
    body: &[u8],
) -> Reply {
    match answer(shared, ctx, method, segs, query, body) {
        Ok(reply) => reply,
        Err(e) => e.into_reply(ctx),
    }
}

fn answer(
    shared: &Shared,
    ctx: &RequestCtx,
    method: &Method,
    segs: &[String],
    query: &str,
    body: &[u8],
) -> Result<Reply, GraphError> {
    let Some(endpoint) = classify(segs) else {
        let last = segs.last().map(String::as_str).unwrap_or("v1.0");
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("Resource not found for the segment '{last}'."),
        ));
    };
    if endpoint.describe().0 != method {
        return Err(GraphError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
        ));
    }
    let q = Query::parse(query)?;
    match endpoint {
        Endpoint::Assignments(sp) => assignments(shared, sp, &q),
        Endpoint::GetByIds => get_by_ids(shared, &q, body),
        Endpoint::Members {
            group,
            transitive,
            users_only,
        } => members(shared, group, transitive, users_only, &q),
        Endpoint::Group(id) => group(shared, id, &q),
        Endpoint::User(id) => user(shared, id, &q),
        Endpoint::MemberOf { user, transitive } => member_of(shared, user, transitive, &q),
        Endpoint::Users => users(shared, &q),
        Endpoint::UsersDelta => super::delta::users_delta(shared, ctx, &q),
        Endpoint::GroupsDelta => super::delta::groups_delta(shared, ctx, &q),
        Endpoint::Batch => Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "A batch request cannot contain another batch request.",
        )),
    }
}

/// Builds a collection page, applying any page fault that is due.
fn finish_page(
    shared: &Shared,
    q: &Query,
    url: &str,
    context: String,
    items: Vec<Value>,
    next: Option<String>,
) -> Reply {
    let faults = shared.faults().take_page_faults();
    let mut body = Map::new();
    body.insert("@odata.context".to_owned(), Value::String(context));
    if faults.truncate {
        return Reply::ok(Value::Object(body));
    }
    let next = if faults.loop_link {
        Some(self_link(q, url))
    } else if faults.break_link {
        Some(next_link(q, url, &broken_skiptoken()))
    } else {
        next
    };
    if let Some(link) = next {
        body.insert("@odata.nextLink".to_owned(), Value::String(link));
    }
    body.insert("value".to_owned(), Value::Array(items));
    Reply::ok(Value::Object(body))
}

/// `(id,mail)` for a context URL when there is a `$select`.
pub(super) fn select_suffix(select: &Option<Vec<&str>>) -> String {
    select
        .as_ref()
        .map(|s| format!("({})", s.join(",")))
        .unwrap_or_default()
}

fn assignments(shared: &Shared, sp: &str, q: &Query) -> Result<Reply, GraphError> {
    let select = q.selected(ASSIGNMENT_PROPS, "appRoleAssignment")?;
    let graph = shared.graph_url();
    let (url, items, next) = {
        let tenant = shared.tenant();
        if !sp.eq_ignore_ascii_case(&tenant.service_principal_id) {
            return Err(GraphError::not_found(sp));
        }
        let url = format!("{graph}/servicePrincipals/{sp}/appRoleAssignedTo");
        let all = tenant.assignments();
        let page = page(q, all.len(), &url)?;
        let items: Vec<Value> = all[page.range]
            .iter()
            .map(|a| {
                let full = assignment_json(&tenant, a);
                match &select {
                    Some(s) => Value::Object(project(&full, s)),
                    None => Value::Object(full),
                }
            })
            .collect();
        (url, items, page.next_link)
    };
    let context = format!(
        "{graph}/$metadata#servicePrincipals('{sp}')/appRoleAssignedTo{}",
        select_suffix(&select)
    );
    Ok(finish_page(shared, q, &url, context, items, next))
}

fn assignment_json(tenant: &Tenant, a: &Assignment) -> Map<String, Value> {
    let created = a
        .created_date_time
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let value = json!({
        "id": a.id,
        "deletedDateTime": null,
        "appRoleId": tenant.app_role_id,
        "createdDateTime": created,
        "principalDisplayName": tenant.principal_display_name(&a.principal_id),
        "principalId": a.principal_id,
        "principalType": a.principal_type.as_str(),
        "resourceDisplayName": tenant.app_display_name,
        "resourceId": tenant.service_principal_id,
    });
    match value {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Every known property of a user, with its `@odata.type`.
pub(super) fn user_json(u: &SimUser) -> Map<String, Value> {
    let value = json!({
        "@odata.type": "#microsoft.graph.user",
        "id": u.id,
        "businessPhones": [],
        "displayName": u.display_name,
        "givenName": u.given_name,
        "jobTitle": u.job_title,
        "mail": u.mail,
        "mobilePhone": null,
        "officeLocation": null,
        "preferredLanguage": null,
        "surname": u.surname,
        "userPrincipalName": u.user_principal_name,
        "accountEnabled": u.account_enabled,
        "mailNickname": u.mail_nickname,
        "department": u.department,
    });
    match value {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

pub(super) fn group_json(g: &SimGroup) -> Map<String, Value> {
    let nickname: String = g
        .display_name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let value = json!({
        "@odata.type": "#microsoft.graph.group",
        "id": g.id,
        "description": null,
        "displayName": g.display_name,
        "groupTypes": [],
        "mail": null,
        "mailEnabled": false,
        "mailNickname": nickname,
        "securityEnabled": true,
    });
    match value {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A user as a collection or entity endpoint shows it: the selected properties, or Graph's
/// default set; `@odata.type` only when the collection can hold other types.
fn user_view(u: &SimUser, select: Option<&[&str]>, with_type: bool) -> Value {
    let mut m = project(&user_json(u), select.unwrap_or(USER_DEFAULT));
    if !with_type {
        m.remove("@odata.type");
    }
    Value::Object(m)
}

fn object_view(o: &Object<'_>, select: Option<&[&str]>) -> Value {
    match o {
        Object::User(u) => user_view(u, select, true),
        Object::Group(g) => {
            let full = group_json(g);
            Value::Object(match select {
                Some(s) => project(&full, s),
                None => full,
            })
        }
    }
}

fn get_by_ids(shared: &Shared, q: &Query, body: &[u8]) -> Result<Reply, GraphError> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|_| GraphError::bad_request("The request body is not valid JSON."))?;
    let ids: Vec<&str> = match parsed.get("ids").and_then(Value::as_array) {
        Some(ids) => ids.iter().filter_map(Value::as_str).collect(),
        None => {
            return Err(GraphError::bad_request(
                "The request body must contain the parameter 'ids'.",
            ));
        }
    };
    if ids.len() > 1000 {
        return Err(GraphError::bad_request(format!(
            "Too many identifiers in the request: {}. A maximum of 1000 identifiers may be requested at once.",
            ids.len()
        )));
    }
    let (mut users_ok, mut groups_ok) = (true, true);
    if let Some(types) = parsed.get("types").and_then(Value::as_array) {
        (users_ok, groups_ok) = (false, false);
        for t in types.iter().filter_map(Value::as_str) {
            let name = t.trim_start_matches('#').to_ascii_lowercase();
            match name.strip_prefix("microsoft.graph.").unwrap_or(&name) {
                "user" => users_ok = true,
                "group" => groups_ok = true,
                "directoryobject" => (users_ok, groups_ok) = (true, true),
                // Other directory types (devices, service principals...) hold nothing here.
                "device" | "serviceprincipal" | "application" | "orgcontact" => {}
                other => {
                    return Err(GraphError::bad_request(format!(
                        "Invalid type '{other}' specified in 'types'."
                    )));
                }
            }
        }
    }
    let known = directory_object_props();
    let select = q.selected(&known, "directoryObject")?;
    let mut seen = std::collections::HashSet::new();
    let tenant = shared.tenant();
    let value: Vec<Value> = ids
        .into_iter()
        .filter(|id| seen.insert(id.to_ascii_lowercase()))
        .filter_map(|id| tenant.object(id))
        .filter(|o| match o {
            Object::User(_) => users_ok,
            Object::Group(_) => groups_ok,
        })
        .map(|o| match (&o, &select) {
            // Without $select, getByIds returns whole objects.
            (Object::User(u), None) => Value::Object(user_json(u)),
            _ => object_view(&o, select.as_deref()),
        })
        .collect();
    drop(tenant);
    Ok(Reply::ok(json!({
        "@odata.context": format!("{}/$metadata#directoryObjects", shared.graph_url()),
        "value": value,
    })))
}

fn members(
    shared: &Shared,
    group: &str,
    transitive: bool,
    users_only: bool,
    q: &Query,
) -> Result<Reply, GraphError> {
    let known = if users_only {
        USER_PROPS.to_vec()
    } else {
        directory_object_props()
    };
    let type_name = if users_only {
        "user"
    } else {
        "directoryObject"
    };
    let select = q.selected(&known, type_name)?;
    let graph = shared.graph_url();
    let relation = if transitive {
        "transitiveMembers"
    } else {
        "members"
    };
    let cast = if users_only {
        "/microsoft.graph.user"
    } else {
        ""
    };
    let url = format!("{graph}/groups/{group}/{relation}{cast}");
    let (items, next) = {
        let tenant = shared.tenant();
        let found = if transitive {
            tenant.transitive_members(group)
        } else {
            tenant.direct_members(group)
        };
        let Some(mut objects) = found else {
            return Err(GraphError::not_found(group));
        };
        if users_only {
            objects.retain(|o| matches!(o, Object::User(_)));
        }
        let page = page(q, objects.len(), &url)?;
        let items = objects[page.range]
            .iter()
            .map(|o| match o {
                Object::User(u) if users_only => user_view(u, select.as_deref(), false),
                _ => object_view(o, select.as_deref()),
            })
            .collect();
        (items, page.next_link)
    };
    let context = if users_only {
        format!("{graph}/$metadata#users{}", select_suffix(&select))
    } else {
        format!(
            "{graph}/$metadata#directoryObjects{}",
            select_suffix(&select)
        )
    };
    Ok(finish_page(shared, q, &url, context, items, next))
}

fn group(shared: &Shared, id: &str, q: &Query) -> Result<Reply, GraphError> {
    let select = q.selected(GROUP_PROPS, "group")?;
    let tenant = shared.tenant();
    let g = tenant.group(id).ok_or_else(|| GraphError::not_found(id))?;
    let mut m = match &select {
        Some(s) => project(&group_json(g), s),
        None => group_json(g),
    };
    drop(tenant);
    m.remove("@odata.type");
    let context = format!(
        "{}/$metadata#groups{}/$entity",
        shared.graph_url(),
        select_suffix(&select)
    );
    m.insert("@odata.context".to_owned(), Value::String(context));
    Ok(Reply::ok(Value::Object(m)))
}

/// The groups a user belongs to, directly or through nesting (the sync only reads groups, so
/// the simulator lists groups only, as with the `microsoft.graph.group` cast).
fn member_of(
    shared: &Shared,
    user: &str,
    transitive: bool,
    q: &Query,
) -> Result<Reply, GraphError> {
    let select = q.selected(GROUP_PROPS, "group")?;
    let graph = shared.graph_url();
    let relation = if transitive {
        "transitiveMemberOf"
    } else {
        "memberOf"
    };
    let url = format!("{graph}/users/{user}/{relation}/microsoft.graph.group");
    let (items, next) = {
        let tenant = shared.tenant();
        let Some(u) = tenant.user(user).or_else(|| tenant.user_by_upn(user)) else {
            return Err(GraphError::not_found(user));
        };
        let groups = tenant.groups_of(&u.id, transitive);
        let page = page(q, groups.len(), &url)?;
        let items = groups[page.range]
            .iter()
            .map(|g| {
                let mut m = match &select {
                    Some(s) => project(&group_json(g), s),
                    None => group_json(g),
                };
                m.insert(
                    "@odata.type".to_owned(),
                    Value::String("#microsoft.graph.group".to_owned()),
                );
                Value::Object(m)
            })
            .collect();
        (items, page.next_link)
    };
    let context = format!("{graph}/$metadata#groups{}", select_suffix(&select));
    Ok(finish_page(shared, q, &url, context, items, next))
}

fn user(shared: &Shared, id: &str, q: &Query) -> Result<Reply, GraphError> {
    let select = q.selected(USER_PROPS, "user")?;
    let tenant = shared.tenant();
    let u = tenant
        .user(id)
        .or_else(|| tenant.user_by_upn(id))
        .ok_or_else(|| GraphError::not_found(id))?;
    let mut view = user_view(u, select.as_deref(), false);
    drop(tenant);
    let context = format!(
        "{}/$metadata#users{}/$entity",
        shared.graph_url(),
        select_suffix(&select)
    );
    if let Value::Object(m) = &mut view {
        m.insert("@odata.context".to_owned(), Value::String(context));
    }
    Ok(Reply::ok(view))
}

/// A `$filter` the users collection understands: `<property> eq '<text>'` or
/// `accountEnabled eq true|false`.
enum UserFilter {
    Text(&'static str, String),
    Enabled(bool),
}

fn parse_user_filter(filter: &str) -> Result<UserFilter, GraphError> {
    let invalid = || GraphError::unsupported_query(format!("Invalid filter clause: '{filter}'."));
    let lower = filter.to_ascii_lowercase();
    let at = lower.find(" eq ").ok_or_else(invalid)?;
    let (prop, value) = (filter[..at].trim(), filter[at + 4..].trim());
    if prop.eq_ignore_ascii_case("accountEnabled") {
        return match value {
            "true" => Ok(UserFilter::Enabled(true)),
            "false" => Ok(UserFilter::Enabled(false)),
            _ => Err(invalid()),
        };
    }
    let text_props = [
        "userPrincipalName",
        "mail",
        "mailNickname",
        "id",
        "displayName",
    ];
    let Some(prop) = text_props.iter().find(|p| p.eq_ignore_ascii_case(prop)) else {
        return Err(GraphError::unsupported_query(format!(
            "Unsupported or invalid query filter clause specified for property '{prop}' of resource 'User'."
        )));
    };
    let inner = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .ok_or_else(invalid)?;
    Ok(UserFilter::Text(prop, inner.replace("''", "'")))
}

fn user_matches(u: &SimUser, filter: &UserFilter) -> bool {
    let text = |v: Option<&str>, want: &str| v.is_some_and(|v| v.eq_ignore_ascii_case(want));
    match filter {
        UserFilter::Enabled(e) => u.account_enabled == *e,
        UserFilter::Text(prop, want) => match *prop {
            "userPrincipalName" => text(Some(&u.user_principal_name), want),
            "mail" => text(u.mail.as_deref(), want),
            "mailNickname" => text(u.mail_nickname.as_deref(), want),
            "id" => text(Some(&u.id), want),
            _ => text(u.display_name.as_deref(), want),
        },
    }
}

fn users(shared: &Shared, q: &Query) -> Result<Reply, GraphError> {
    let select = q.selected(USER_PROPS, "user")?;
    let filter = q.filter.as_deref().map(parse_user_filter).transpose()?;
    let graph = shared.graph_url();
    let url = format!("{graph}/users");
    let (items, next) = {
        let tenant = shared.tenant();
        let matching: Vec<&SimUser> = tenant
            .users()
            .filter(|u| filter.as_ref().is_none_or(|f| user_matches(u, f)))
            .collect();
        let page = page(q, matching.len(), &url)?;
        let items = matching[page.range]
            .iter()
            .map(|u| user_view(u, select.as_deref(), false))
            .collect();
        (items, page.next_link)
    };
    let context = format!("{graph}/$metadata#users{}", select_suffix(&select));
    Ok(finish_page(shared, q, &url, context, items, next))
}
