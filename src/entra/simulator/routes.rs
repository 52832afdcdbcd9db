//! The HTTP face of the simulator: the Entra token endpoint
//! (`POST /{tenant}/oauth2/v2.0/token`, client-credentials grant, AADSTS errors), and the Graph
//! entry point under `/v1.0` that checks the bearer token and admin consent, counts the request,
//! injects gateway faults, and hands the request (or each `$batch` sub-request) to
//! [`super::graph`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use chrono::Utc;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::Shared;
use super::faults::GatewayFault;
use super::graph::{self, Endpoint};
use super::odata::{GraphError, Reply, RequestCtx};

/// Graph's JSON content type.
const GRAPH_JSON: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";
/// Most sub-requests one `$batch` may carry.
pub(super) const MAX_BATCH: usize = 20;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/v1.0", any(graph_entry))
        .route("/v1.0/{*rest}", any(graph_entry))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"error": {"code": "NotFound", "message": "No such endpoint on the Graph simulator."}})),
            )
        })
        .with_state(shared)
}

// ---------------------------------------------------------------------------------------------
// Token endpoint

/// An error in the shape Entra's token endpoint uses.
fn aad_error(
    shared: &Shared,
    headers: &HeaderMap,
    status: StatusCode,
    error: &str,
    code: u32,
    description: &str,
) -> Response {
    let now = Utc::now();
    let timestamp = now.format("%Y-%m-%d %H:%M:%SZ").to_string();
    let trace_id = Uuid::new_v4().to_string();
    let correlation_id = headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    let body = json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {description}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}"
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": format!("{}/error?code={code}", shared.base_url),
    });
    (
        status,
        [(
            CACHE_CONTROL,
            HeaderValue::from_static("no-store, no-cache"),
        )],
        axum::Json(body),
    )
        .into_response()
}

/// Hosts whose `/.default` scope names Microsoft Graph (global and national clouds).
const GRAPH_HOSTS: &[&str] = &[
    "https://graph.microsoft.com",
    "https://graph.microsoft.us",
    "https://dod-graph.microsoft.us",
    "https://microsoftgraph.chinacloudapi.cn",
    "00000003-0000-0000-c000-000000000000",
];

async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant_segment): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    {
        let mut stats = shared.stats();
        stats.token_requests += 1;
        stats.count_route("POST /{tenant}/oauth2/v2.0/token");
    }
    let err = |status, error: &str, code, description: &str| {
        aad_error(&shared, &headers, status, error, code, description)
    };
    if shared.faults().take_token_outage() {
        return err(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
        );
    }
    let (tenant_ok, client_id, secret, expired) = {
        let t = shared.tenant();
        (
            tenant_segment.eq_ignore_ascii_case(&t.tenant_id)
                || tenant_segment.eq_ignore_ascii_case(&t.domain),
            t.client_id.clone(),
            t.client_secret.clone(),
            t.client_secret_expired,
        )
    };
    if !tenant_ok {
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant_segment}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        );
    }
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let missing = |name: &str| -> Response {
        err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            &format!("The request body must contain the following parameter: '{name}'."),
        )
    };
    let Some(grant_type) = field("grant_type") else {
        return missing("grant_type");
    };
    if grant_type != "client_credentials" {
        return err(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{grant_type}'."),
        );
    }
    let basic = basic_credentials(&headers);
    let sent_client = field("client_id").or(basic.as_ref().map(|(id, _)| id.as_str()));
    let Some(sent_client) = sent_client else {
        return missing("client_id");
    };
    if !sent_client.eq_ignore_ascii_case(&client_id) {
        return err(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{sent_client}' was not found in the directory '{tenant_segment}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        );
    }
    let Some(scope) = field("scope") else {
        return missing("scope");
    };
    if let Some(bad) = scope.split(' ').find(|s| !s.ends_with("/.default")) {
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {bad} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    }
    if let Some(resource) = scope
        .split(' ')
        .filter_map(|s| s.strip_suffix("/.default"))
        .find(|r| !GRAPH_HOSTS.iter().any(|h| h.eq_ignore_ascii_case(r)))
    {
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            &format!(
                "The resource principal named {resource} was not found in the tenant named {tenant_segment}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
            ),
        );
    }
    let sent_secret = field("client_secret").or(basic.as_ref().map(|(_, secret)| secret.as_str()));
    let Some(sent_secret) = sent_secret.filter(|s| !s.is_empty()) else {
        return err(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    };
    if sent_secret != secret {
        return err(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        );
    }
    if expired {
        return err(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000222,
            &format!(
                "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app or consider using certificate credentials for added security."
            ),
        );
    }
    let lifetime = shared.faults().token_lifetime_secs;
    let access_token = shared.issue_token(lifetime);
    (
        StatusCode::OK,
        [(
            CACHE_CONTROL,
            HeaderValue::from_static("no-store, no-cache"),
        )],
        axum::Json(json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        })),
    )
        .into_response()
}

/// Client id and secret from `Authorization: Basic` (client_secret_basic), which Entra accepts
/// as an alternative to the form fields. Both parts are form-URL-encoded before base64.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| -> Option<String> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={s}")).ok()?;
        pairs.into_iter().next().map(|(_, v)| v)
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// Standard base64 with optional padding; `None` on any other character.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Graph

async fn graph_entry(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = RequestCtx::from_headers(&headers);
    let path = uri.path().strip_prefix("/v1.0").unwrap_or_default();
    let query = uri.query().unwrap_or_default();
    let segs = match graph::segments(path) {
        Ok(s) => s,
        Err(e) => return to_response(e.into_reply(&ctx), &ctx),
    };
    {
        let mut stats = shared.stats();
        stats.graph_requests += 1;
        stats.count_route(&graph::route_name(&method, &segs));
    }
    let delay = shared.faults().delay_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let reply = handle(&shared, &ctx, &method, &segs, query, &body, &headers);
    to_response(reply, &ctx)
}

fn handle(
    shared: &Shared,
    ctx: &RequestCtx,
    method: &Method,
    segs: &[String],
    query: &str,
    body: &[u8],
    headers: &HeaderMap,
) -> Reply {
    if let Err(e) = shared.authorize(headers) {
        shared.stats().unauthorized += 1;
        return e.into_reply(ctx);
    }
    if !shared.tenant().admin_consent {
        return GraphError::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
        .into_reply(ctx);
    }
    if graph::classify(segs) == Some(Endpoint::Batch) && method == Method::POST {
        return batch(shared, ctx, body);
    }
    gated(shared, ctx, method, segs, query, body)
}

/// One request past the gateway: an injected fault if one is due, else the real answer.
fn gated(
    shared: &Shared,
    ctx: &RequestCtx,
    method: &Method,
    segs: &[String],
    query: &str,
    body: &[u8],
) -> Reply {
    let fault = shared.faults().take_gateway_fault();
    match fault {
        Some(GatewayFault::Throttle { retry_after }) => {
            shared.stats().throttled += 1;
            let mut e = GraphError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Too many requests from Identifier: simulated under category: throttle.aad.ags. Please try again later.",
            );
            if !retry_after.is_empty() {
                e = e.with_header("Retry-After", retry_after);
            }
            e.into_reply(ctx)
        }
        Some(GatewayFault::ServerError {
            status,
            retry_after,
        }) => {
            shared.stats().server_errors += 1;
            let e = match status {
                503 => {
                    let e = GraphError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "serviceNotAvailable",
                        "The service is temporarily unavailable. Please retry later.",
                    );
                    if retry_after.is_empty() {
                        e
                    } else {
                        e.with_header("Retry-After", retry_after)
                    }
                }
                504 => GraphError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "UnknownError",
                    "The gateway did not receive a timely response from the upstream service.",
                ),
                _ => GraphError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "generalException",
                    "An unexpected error occurred.",
                ),
            };
            e.into_reply(ctx)
        }
        None => graph::dispatch(shared, ctx, method, segs, query, body),
    }
}

fn batch_error(ctx: &RequestCtx, message: impl Into<String>) -> Reply {
    GraphError::new(StatusCode::BAD_REQUEST, "BadRequest", message).into_reply(ctx)
}

/// `POST /$batch`: up to 20 sub-requests, each answered by the same handlers (and faults).
fn batch(shared: &Shared, ctx: &RequestCtx, body: &[u8]) -> Reply {
    let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
        return batch_error(ctx, "Invalid batch payload format.");
    };
    let Some(requests) = parsed.get("requests").and_then(Value::as_array) else {
        return batch_error(ctx, "Invalid batch payload format: 'requests' is required.");
    };
    if requests.len() > MAX_BATCH {
        return batch_error(
            ctx,
            format!(
                "Number of batch operations ({}) exceeds the limit of {MAX_BATCH}.",
                requests.len()
            ),
        );
    }
    let mut ids: Vec<String> = Vec::with_capacity(requests.len());
    for r in requests {
        let id = match r.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return batch_error(ctx, "Each batch request must have an 'id'."),
        };
        if ids.iter().any(|i| i.eq_ignore_ascii_case(&id)) {
            return batch_error(ctx, format!("Batch request ids must be unique: '{id}'."));
        }
        if r.get("method").and_then(Value::as_str).is_none()
            || r.get("url").and_then(Value::as_str).is_none()
        {
            return batch_error(
                ctx,
                format!("Batch request '{id}' must have a 'method' and a 'url'."),
            );
        }
        ids.push(id);
    }
    let mut responses: Vec<Value> = requests
        .iter()
        .zip(ids)
        .map(|(r, id)| {
            let prefer = r.get("headers").and_then(Value::as_object).and_then(|h| {
                h.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("prefer"))
                    .and_then(|(_, v)| v.as_str())
            });
            sub_request(shared, &ctx.sub(prefer), r, id)
        })
        .collect();
    if shared.faults().reorder_batch {
        responses.reverse();
    }
    Reply::ok(json!({ "responses": responses }))
}

fn sub_request(shared: &Shared, ctx: &RequestCtx, r: &Value, id: String) -> Value {
    let method_text = r.get("method").and_then(Value::as_str).unwrap_or_default();
    let url = r.get("url").and_then(Value::as_str).unwrap_or_default();
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let reply = if url.contains("://") {
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Invalid request URI: batch requests must use URLs relative to the version root.",
        )
        .into_reply(ctx)
    } else {
        match (
            Method::from_bytes(method_text.to_ascii_uppercase().as_bytes()),
            graph::segments(path),
        ) {
            (Ok(method), Ok(segs)) => {
                {
                    let mut stats = shared.stats();
                    stats.batch_subrequests += 1;
                    stats.count_route(&graph::route_name(&method, &segs));
                }
                let body = match r.get("body") {
                    Some(b) => serde_json::to_vec(b).unwrap_or_default(),
                    None => Vec::new(),
                };
                gated(shared, ctx, &method, &segs, query, &body)
            }
            (Err(_), _) => GraphError::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("Invalid HTTP method '{method_text}'."),
            )
            .into_reply(ctx),
            (_, Err(e)) => e.into_reply(ctx),
        }
    };
    let mut headers = Map::new();
    headers.insert(
        "Content-Type".to_owned(),
        Value::String("application/json".to_owned()),
    );
    for (name, value) in reply.headers {
        headers.insert(name.to_owned(), Value::String(value));
    }
    json!({
        "id": id,
        "status": reply.status.as_u16(),
        "headers": headers,
        "body": reply.body,
    })
}

/// A reply as HTTP, with Graph's correlation headers.
fn to_response(reply: Reply, ctx: &RequestCtx) -> Response {
    let body = serde_json::to_vec(&reply.body).unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(GRAPH_JSON));
    for (name, value) in [
        ("request-id", &ctx.request_id),
        ("client-request-id", &ctx.client_request_id),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
    for (name, value) in &reply.headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            let name = if name.eq_ignore_ascii_case("retry-after") {
                RETRY_AFTER
            } else {
                match axum::http::HeaderName::from_bytes(name.as_bytes()) {
                    Ok(n) => n,
                    Err(_) => continue,
                }
            };
            headers.insert(name, v);
        }
    }
    if reply.status == StatusCode::UNAUTHORIZED {
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
            ),
        );
    }
    response
}

/// What a bearer token check found.
pub(super) fn check_token(
    tokens: &std::collections::HashMap<String, Instant>,
    headers: &HeaderMap,
) -> Result<(), GraphError> {
    let invalid = |message: &str| {
        GraphError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
    };
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim();
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => "",
    };
    if token.is_empty() {
        return Err(invalid("Access token is empty."));
    }
    match tokens.get(token) {
        None => Err(invalid(
            "CompactToken parsing failed with error code: 80049217",
        )),
        Some(expiry) if Instant::now() >= *expiry => {
            Err(invalid("Access token has expired or is not yet valid."))
        }
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn basic_credentials_are_decoded() {
        let mut headers = HeaderMap::new();
        // base64("my%20app:s%2Fecret") — form-encoded parts, as RFC 6749 asks.
        headers.insert(
            axum::http::header::AUTHORIZATION,
            HeaderValue::from_static("Basic bXklMjBhcHA6cyUyRmVjcmV0"),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("my app".to_owned(), "s/ecret".to_owned()))
        );
        assert_eq!(base64_decode("aGk="), Some(b"hi".to_vec()));
        assert_eq!(base64_decode("a*"), None);
    }
}
