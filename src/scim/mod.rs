//! The SCIM 2.0 push endpoint (RFC 7643, RFC 7644) under `/scim/v2`: bearer-token auth, the
//! `/Users` and `/Groups` resources, discovery (`/ServiceProviderConfig`, `/ResourceTypes`,
//! `/Schemas`), and the filter and PATCH grammars. Handlers are thin: parse, call the directory
//! operations, render; errors map to the SCIM error schema in `error`.

pub mod auth;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod groups;
pub mod patch;
pub mod request;
pub mod resource;
pub mod schema;
pub mod user_body;
pub mod users;
pub mod write;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use crate::http::AppState;

use error::{SCIM_CONTENT_TYPE, ScimError};
use request::Caller;
use user_body::Rendered;

/// A SCIM JSON response with optional `ETag` and `Location`.
pub fn scim_response(
    status: StatusCode,
    body: &Value,
    version: Option<i64>,
    location: Option<String>,
) -> Response {
    serialized(status, body, version, location)
}

/// [`scim_response`] of any serializable body, written straight into the response's bytes.
pub(crate) fn serialized<T: serde::Serialize + ?Sized>(
    status: StatusCode,
    body: &T,
    version: Option<i64>,
    location: Option<String>,
) -> Response {
    let bytes = match serde_json::to_vec(body) {
        Ok(bytes) => bytes,
        // Only a map with keys that are not strings fails to serialize; ours have none.
        Err(e) => {
            tracing::error!(error = %e, "a SCIM response body could not be serialized");
            return ScimError::internal().into_response();
        }
    };
    let mut response = (status, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(SCIM_CONTENT_TYPE),
    );
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(&resource::etag(v)).ok()) {
        headers.insert(header::ETAG, v);
    }
    if let Some(l) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, l);
    }
    response
}

/// The body of a ListResponse, borrowing its resources (its fields in the order the former
/// `json!` map wrote them).
#[derive(serde::Serialize)]
struct ListBody<'a> {
    #[serde(rename = "Resources")]
    resources: &'a [Rendered],
    #[serde(rename = "itemsPerPage")]
    items_per_page: usize,
    schemas: [&'static str; 1],
    #[serde(rename = "startIndex")]
    start_index: i64,
    #[serde(rename = "totalResults")]
    total_results: i64,
}

/// A ListResponse (RFC 7644 §3.4.2).
pub fn list_response(resources: Vec<Rendered>, total: i64, start_index: i64) -> Response {
    let body = ListBody {
        resources: &resources,
        items_per_page: resources.len(),
        schemas: [resource::LIST_URN],
        start_index,
        total_results: total,
    };
    serialized(StatusCode::OK, &body, None, None)
}

/// Which resource endpoint a list or search addresses.
#[derive(Debug, Clone, Copy)]
enum Kind {
    User,
    Group,
}

async fn query(
    state: &AppState,
    caller: &Caller,
    kind: Kind,
    req: &request::ListRequest,
) -> Result<(Vec<Rendered>, i64), ScimError> {
    match kind {
        Kind::User => users::query(state, caller, req).await,
        // Boxed: rendering a group reads its members, and that future would make every user
        // lookup's future (copied whole when axum boxes it) kilobytes larger.
        Kind::Group => {
            let (groups, total) = Box::pin(groups::query(state, caller, req)).await?;
            Ok((groups.into_iter().map(Rendered::Json).collect(), total))
        }
    }
}

/// `GET /Users` and `GET /Groups`.
async fn list(
    state: AppState,
    caller: Caller,
    params: request::QueryParams,
    kind: Kind,
) -> Result<Response, ScimError> {
    let req = request::ListRequest::from_query(&params, state.settings.server.max_page_size)?;
    let (resources, total) = query(&state, &caller, kind, &req).await?;
    Ok(list_response(resources, total, req.paging.start_index))
}

/// `POST /Users/.search` and `POST /Groups/.search`.
async fn search(
    state: AppState,
    caller: Caller,
    body: request::ScimBody,
    kind: Kind,
) -> Result<Response, ScimError> {
    let req = request::ListRequest::from_search(&body.0, state.settings.server.max_page_size)?;
    let (resources, total) = query(&state, &caller, kind, &req).await?;
    Ok(list_response(resources, total, req.paging.start_index))
}

/// `POST /.search` at the root: users, then groups, as one result set. A filter naming an
/// attribute only one resource type has matches nothing of the other type.
async fn search_all(
    State(state): State<AppState>,
    caller: Caller,
    request::ScimBody(body): request::ScimBody,
) -> Result<Response, ScimError> {
    use request::ListRequest;
    let req = ListRequest::from_search(&body, state.settings.server.max_page_size)?;
    let everything = |r: &ListRequest| ListRequest {
        paging: request::Paging {
            start_index: 1,
            count: 0,
        },
        ..r.clone()
    };
    let user_total = match users::query(&state, &caller, &everything(&req)).await {
        Ok((_, n)) => Some(n),
        Err(e) if e.scim_type == Some("invalidFilter") && req.filter.is_some() => None,
        Err(e) => return Err(e),
    };
    let group_total = match groups::query(&state, &caller, &everything(&req)).await {
        Ok((_, n)) => Some(n),
        Err(e) if e.scim_type == Some("invalidFilter") && req.filter.is_some() => None,
        Err(e) => return Err(e),
    };
    if user_total.is_none() && group_total.is_none() {
        // Neither type understands the filter: report why, from the users' side.
        users::query(&state, &caller, &req).await?;
    }
    let (user_total, group_total) = (user_total.unwrap_or(0), group_total.unwrap_or(0));
    let offset = req.paging.start_index - 1;
    let mut resources = Vec::new();
    if offset < user_total && req.paging.count > 0 {
        resources = users::query(&state, &caller, &req).await?.0;
    }
    let remaining = req.paging.count - resources.len() as i64;
    if remaining > 0 && group_total > 0 {
        let start = (offset - user_total).max(0) + 1;
        let greq = ListRequest {
            paging: request::Paging {
                start_index: start,
                count: remaining,
            },
            ..req.clone()
        };
        let groups = groups::query(&state, &caller, &greq).await?.0;
        resources.extend(groups.into_iter().map(Rendered::Json));
    }
    Ok(list_response(
        resources,
        user_total + group_total,
        req.paging.start_index,
    ))
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

async fn unknown_endpoint(req: Request) -> ScimError {
    ScimError::not_found(format!("no SCIM endpoint at {}", req.uri().path()))
}

async fn method_not_allowed(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let response = next.run(req).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        return ScimError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            format!("{method} is not supported on this endpoint"),
        )
        .into_response();
    }
    response
}

/// The canonical spelling of a request path under `/scim/v2`, or `None` when it already is.
///
/// Clients differ in how they spell the endpoints: resource-type and discovery segments are
/// matched case-insensitively (`/users`, `/groups`, `/schemas`, `/serviceproviderconfig`,
/// `/resourcetypes`, `/users/.SEARCH`), `/serviceConfiguration` (Microsoft's reference code and
/// Postman collection) is `/ServiceProviderConfig`, and trailing slashes are dropped
/// (`/Users/?filter=…` is `/Users?filter=…`). Resource ids and schema URNs are left as sent.
pub fn canonical_path(path: &str) -> Option<String> {
    const BASE: &str = "/scim/v2/";
    let rest = path.strip_prefix(BASE)?;
    let rest = rest.trim_end_matches('/');
    let mut segments: Vec<&str> = rest.split('/').collect();
    if let Some(first) = segments.first_mut() {
        let canonical = match first.to_ascii_lowercase().as_str() {
            "users" => Some("Users"),
            "groups" => Some("Groups"),
            "schemas" => Some("Schemas"),
            "resourcetypes" => Some("ResourceTypes"),
            "serviceproviderconfig" | "serviceconfiguration" => Some("ServiceProviderConfig"),
            ".search" => Some(".search"),
            _ => None,
        };
        if let Some(c) = canonical {
            *first = c;
        }
    }
    if let ["Users" | "Groups", second] = segments.as_mut_slice()
        && second.eq_ignore_ascii_case(".search")
    {
        *second = ".search";
    }
    let joined = format!("{BASE}{}", segments.join("/"));
    let canonical = if rest.is_empty() {
        "/scim/v2".to_owned()
    } else {
        joined
    };
    (canonical != path).then_some(canonical)
}

/// The SCIM routes, to be nested under `/scim/v2`.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/.search", post(search_all))
        .route(
            "/Users",
            get(
                |State(s): State<AppState>, c: Caller, p: request::QueryParams| {
                    list(s, c, p, Kind::User)
                },
            )
            .post(users::create),
        )
        .route(
            "/Users/.search",
            post(
                |State(s): State<AppState>, c: Caller, b: request::ScimBody| {
                    search(s, c, b, Kind::User)
                },
            ),
        )
        .route(
            "/Groups/.search",
            post(
                |State(s): State<AppState>, c: Caller, b: request::ScimBody| {
                    search(s, c, b, Kind::Group)
                },
            ),
        )
        .route(
            "/Users/{id}",
            get(users::get)
                .put(users::replace)
                .patch(users::patch)
                .delete(users::delete),
        )
        .route(
            "/Groups",
            get(
                |State(s): State<AppState>, c: Caller, p: request::QueryParams| {
                    list(s, c, p, Kind::Group)
                },
            )
            .post(groups::create),
        )
        .route(
            "/Groups/{id}",
            get(groups::get)
                .put(groups::replace)
                .patch(groups::patch)
                .delete(groups::delete),
        )
        .route(
            "/ServiceProviderConfig",
            get(discovery::service_provider_config),
        )
        .route("/ResourceTypes", get(discovery::resource_types))
        .route("/ResourceTypes/{name}", get(discovery::resource_type))
        .route("/Schemas", get(discovery::schemas))
        .route("/Schemas/{urn}", get(discovery::schema))
        .fallback(unknown_endpoint)
        .layer(middleware::from_fn(method_not_allowed))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        // Outermost, so requests refused by authentication (401) are counted too.
        .layer(middleware::from_fn_with_state(
            state,
            crate::metrics::track_scim,
        ))
}

#[cfg(test)]
mod tests {
    use super::canonical_path;

    #[test]
    fn paths_are_matched_case_insensitively_and_without_trailing_slashes() {
        let cases = [
            ("/scim/v2/users", Some("/scim/v2/Users")),
            ("/scim/v2/Users/", Some("/scim/v2/Users")),
            ("/scim/v2/GROUPS/abc-DEF", Some("/scim/v2/Groups/abc-DEF")),
            ("/scim/v2/users/.SEARCH", Some("/scim/v2/Users/.search")),
            (
                "/scim/v2/serviceConfiguration",
                Some("/scim/v2/ServiceProviderConfig"),
            ),
            (
                "/scim/v2/serviceproviderconfig/",
                Some("/scim/v2/ServiceProviderConfig"),
            ),
            (
                "/scim/v2/resourcetypes/User",
                Some("/scim/v2/ResourceTypes/User"),
            ),
            (
                "/scim/v2/schemas/urn:ietf:params:scim:schemas:core:2.0:User",
                Some("/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User"),
            ),
            ("/scim/v2/", Some("/scim/v2")),
            ("/scim/v2/Users", None),
            ("/scim/v2/Users/ID-Stays-AsSent", None),
            ("/scim/v2/nothing", None),
            ("/healthz", None),
        ];
        for (path, want) in cases {
            assert_eq!(canonical_path(path).as_deref(), want, "{path}");
        }
    }
}

/// The futures of a SCIM lookup are copied whole each time axum or a middleware boxes one, so
/// the hot path keeps its database round trips (kilobytes of future each) boxed behind it.
#[cfg(test)]
mod future_sizes {
    use std::future::Future;

    use axum::extract::{Request, State};
    use axum::middleware::Next;

    use super::request::{ListRequest, QueryParams};
    use crate::domain::{AccountId, UserId};
    use crate::http::AppState;
    use crate::store::Store;

    /// The size of the future `f` returns.
    fn future_size<A, F: Future>(_: impl Fn(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn the_lookup_paths_futures_stay_small() {
        const LIMIT: usize = 1_500;
        let sizes = [
            (
                "scim::list",
                future_size(|(s, c, p): (AppState, super::Caller, QueryParams)| {
                    super::list(s, c, p, super::Kind::User)
                }),
            ),
            (
                "scim::auth::authenticate",
                future_size(|(s, r, n): (State<AppState>, Request, Next)| {
                    super::auth::authenticate(s, r, n)
                }),
            ),
            (
                "users::query",
                future_size(
                    |(s, c, r): (
                        &'static AppState,
                        &'static super::Caller,
                        &'static ListRequest,
                    )| { super::users::query(s, c, r) },
                ),
            ),
            (
                "Store::auth_epoch",
                future_size(|s: &'static Store| s.auth_epoch()),
            ),
            (
                "Store::user_by_id",
                future_size(
                    |(s, a, u): (&'static Store, &'static AccountId, &'static UserId)| {
                        s.user_by_id(a, u)
                    },
                ),
            ),
        ];
        for (name, size) in sizes {
            assert!(
                size <= LIMIT,
                "the future of {name} is {size} bytes (limit {LIMIT})"
            );
        }
    }
}
