//! What a SCIM request carries besides its path: the authenticated caller, a size-limited JSON
//! body of the right media type, list parameters, and `If-Match`. Each is an axum extractor so
//! that a bad one becomes a SCIM error before any handler runs. No string of a body or a query
//! parameter may contain a NUL character (`400 invalidValue`, on every backend).

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::domain::{AccountId, IntegrationId};
use crate::http::AppState;

use super::error::ScimError;

/// The integration whose token authenticated the request (inserted by the auth middleware).
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: AccountId,
    pub integration_id: IntegrationId,
    pub integration_name: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ScimError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ScimError::unauthorized("missing bearer token"))
    }
}

/// A JSON request body: `application/scim+json` or `application/json`, at most
/// `server.max_body_bytes` (413 beyond), syntactically valid JSON (400 invalidSyntax otherwise).
pub struct ScimBody(pub Value);

fn media_type_ok(headers: &HeaderMap) -> Result<(), ScimError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        // Some clients omit it; the body must still be JSON.
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence == "application/scim+json" || essence == "application/json" {
        Ok(())
    } else {
        Err(ScimError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            format!("request bodies must be application/scim+json, not {essence:?}"),
        ))
    }
}

impl FromRequest<AppState> for ScimBody {
    type Rejection = ScimError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, ScimError> {
        let limit = state.settings.server.max_body_bytes;
        media_type_ok(req.headers())?;
        let too_large = || {
            ScimError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                format!("request body exceeds the limit of {limit} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let limited = http_body_util::Limited::new(req.into_body(), limit);
        let bytes = match limited.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
            Err(e) => {
                return Err(ScimError::invalid_syntax(format!(
                    "could not read the request body: {e}"
                )));
            }
        };
        if bytes.is_empty() {
            return Err(ScimError::invalid_syntax(
                "the request body is empty; a JSON object was expected",
            ));
        }
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ScimError::invalid_syntax(format!("the request body is not valid JSON: {e}"))
        })?;
        refuse_nul(&body)?;
        Ok(ScimBody(body))
    }
}

/// The path (`name.givenName`, `Operations[0].value`) of the first string or key in `value`
/// that contains a NUL character (U+0000), if any. No attribute may hold one: PostgreSQL text
/// cannot store it, and no name or id needs it.
fn nul_path(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(String::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_path(v).map(|p| format!("[{i}]{}", dotted(&p)))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                return Some(k.replace('\0', "\\0"));
            }
            nul_path(v).map(|p| format!("{k}{}", dotted(&p)))
        }),
        _ => None,
    }
}

fn dotted(rest: &str) -> String {
    if rest.is_empty() || rest.starts_with('[') {
        rest.to_owned()
    } else {
        format!(".{rest}")
    }
}

/// Refuses a body with a NUL character anywhere (`400 invalidValue`).
fn refuse_nul(body: &Value) -> Result<(), ScimError> {
    match nul_path(body) {
        None => Ok(()),
        Some(path) => {
            let at: String = path.chars().take(100).collect();
            Err(ScimError::invalid_value(format!(
                "{} contains a NUL character (U+0000), which no attribute may hold",
                if at.is_empty() {
                    "the body"
                } else {
                    at.as_str()
                }
            )))
        }
    }
}

/// The query string, decoded (`+` is a space) into name/value pairs; names match
/// case-insensitively.
pub struct QueryParams(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ScimError> {
        let raw = parts.uri.query().unwrap_or("");
        let pairs = serde_urlencoded::from_str::<Vec<(String, String)>>(raw)
            .map_err(|e| ScimError::invalid_syntax(format!("malformed query string: {e}")))?;
        if let Some((name, _)) = pairs
            .iter()
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            let name: String = name.chars().filter(|c| *c != '\0').take(40).collect();
            return Err(ScimError::invalid_value(format!(
                "query parameter {name:?} contains a NUL character (U+0000)"
            )));
        }
        Ok(QueryParams(pairs))
    }
}

impl QueryParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Paging of a list request (RFC 7644 §3.4.2.4): 1-based `startIndex`, `count` capped by the
/// configured page size.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub start_index: i64,
    pub count: i64,
}

impl Paging {
    pub fn from_params(q: &QueryParams, max: i64) -> Result<Self, ScimError> {
        let int = |name: &str| -> Result<Option<i64>, ScimError> {
            q.get(name)
                .map(|v| {
                    v.trim().parse::<i64>().map_err(|_| {
                        ScimError::invalid_value(format!("{name} must be an integer, got {v:?}"))
                    })
                })
                .transpose()
        };
        let start_index = int("startIndex")?.unwrap_or(1).max(1);
        let count = int("count")?.unwrap_or(100).clamp(0, max.max(1));
        Ok(Self { start_index, count })
    }
}

/// The version an `If-Match` header demands, if any.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ScimError> {
    super::resource::parse_if_match(headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()))
}

/// A list or search request (RFC 7644 §3.4.2 query parameters, or a §3.4.3 SearchRequest body).
#[derive(Debug, Clone)]
pub struct ListRequest {
    pub filter: Option<String>,
    pub paging: Paging,
    pub projection: super::resource::Projection,
}

pub const SEARCH_REQUEST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

impl ListRequest {
    pub fn from_query(q: &QueryParams, max: i64) -> Result<Self, ScimError> {
        Ok(Self {
            filter: q
                .get("filter")
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_owned),
            paging: Paging::from_params(q, max)?,
            projection: super::resource::Projection::new(
                q.get("attributes"),
                q.get("excludedAttributes"),
            )?,
        })
    }

    /// Reads a SearchRequest body (`POST .search`).
    pub fn from_search(body: &Value, max: i64) -> Result<Self, ScimError> {
        let obj = body
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax("a SearchRequest must be a JSON object"))?;
        let get = |name: &str| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        if let Some(schemas) = get("schemas")
            && !schemas
                .as_array()
                .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(SEARCH_REQUEST_URN)))
        {
            return Err(ScimError::invalid_syntax(format!(
                "\"schemas\" must include {SEARCH_REQUEST_URN}"
            )));
        }
        let list = |name: &str| -> Result<Option<String>, ScimError> {
            match get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .map(|v| Some(v.join(",")))
                    .ok_or_else(|| {
                        ScimError::invalid_value(format!("{name} must be an array of strings"))
                    }),
                Some(_) => Err(ScimError::invalid_value(format!(
                    "{name} must be an array of strings"
                ))),
            }
        };
        let int = |name: &str| -> Result<Option<i64>, ScimError> {
            match get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| ScimError::invalid_value(format!("{name} must be an integer"))),
            }
        };
        let filter = match get("filter") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.trim().to_owned()),
            Some(_) => {
                return Err(ScimError::bad_request(
                    "invalidFilter",
                    "filter must be a string",
                ));
            }
        };
        Ok(Self {
            filter,
            paging: Paging {
                start_index: int("startIndex")?.unwrap_or(1).max(1),
                count: int("count")?.unwrap_or(100).clamp(0, max.max(1)),
            },
            projection: super::resource::Projection::new(
                list("attributes")?.as_deref(),
                list("excludedAttributes")?.as_deref(),
            )?,
        })
    }
}
