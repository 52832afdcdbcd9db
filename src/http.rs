//! Application state and the HTTP server: the SCIM endpoint under `/scim/v2`, the admin API
//! under `/admin/v1`, the operator console under `/admin/`, `/healthz`, `/readyz` and `/metrics`. Shutdown is injected as a future so callers (the CLI, tests) decide when it ends.
//!
//! Every request runs in a `request` tracing span carrying its request id (the client's
//! `x-request-id` when it is a sane token, else a new UUID; echoed in the response), the method
//! and the path — never headers or the query string, so no token reaches a log line.
//!
//! The listener ([`serve`]) bounds what a client can hold: a header-read timeout, a request
//! timeout (408) and a connection limit (`[server]` settings); a handler that panics is
//! answered with a SCIM 500 error ([`catch_panic_layer`]) instead of a dropped connection.

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::{Layer, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::config::Settings;
use crate::domain::Clock;
use crate::secrets::SecretKey;
use crate::store::Store;

pub struct Inner {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    /// The SCIM base URL as clients see it (`meta.location`, `Location`).
    pub scim_base: String,
    /// Opens Graph integrations' client secrets (the admin API needs it).
    pub secret_key: Option<SecretKey>,
    /// This server's request metrics and the registry `/metrics` serves.
    pub metrics: crate::metrics::HttpMetrics,
    /// The operator console's in-memory state (sign-in limiter, started cycles).
    pub console: crate::console::ConsoleState,
    /// Background tasks that are not running (`/readyz` reports them).
    pub readiness: crate::supervise::Readiness,
    /// The SCIM writes' shared transactions (group commit, [`crate::store::GroupCommit`]).
    pub writes: Arc<crate::store::GroupCommit>,
    /// The SCIM endpoint's cache of token lookups ([`crate::scim::auth`]).
    pub auth_cache: crate::scim::auth::AuthCache,
}

/// Shared, cheaply cloned state of the server.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(store: Store, clock: Arc<dyn Clock>, settings: Settings) -> Self {
        Self::with_key(store, clock, settings, None)
    }

    pub fn with_key(
        store: Store,
        clock: Arc<dyn Clock>,
        settings: Settings,
        secret_key: Option<SecretKey>,
    ) -> Self {
        let scim_base = settings.scim_base_url();
        let writes = crate::store::GroupCommit::new(store.clone(), settings.scim.group_commit_max);
        Self(Arc::new(Inner {
            writes,
            auth_cache: Default::default(),
            store,
            clock,
            settings,
            scim_base,
            secret_key,
            metrics: crate::metrics::HttpMetrics::new(),
            console: crate::console::ConsoleState::default(),
            readiness: crate::supervise::Readiness::default(),
        }))
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when every supervised background task runs (see [`crate::supervise`]), the database
/// answers and its schema is current: every migration this build
/// embeds is recorded in `_sqlx_migrations` as applied, with its checksum. Otherwise 503 with a
/// short reason (the details of a database error go to the log, not to this unauthenticated
/// answer).
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let stopped = state.readiness.problems();
    if !stopped.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", stopped.join("; ")),
        );
    }
    match state.store.migration_problems().await {
        Ok(problems) if problems.is_empty() => (StatusCode::OK, "ready\n".to_owned()),
        Ok(problems) => {
            tracing::warn!(problems = %problems.join("; "), "readiness check failed: the database schema is not current");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {}\n", problems.join("; ")),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: database unreachable\n".to_owned(),
            )
        }
    }
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A client's request id is kept when it is one short token (at most 128 characters of
/// `A-Z a-z 0-9 - _ . :`); anything else is dropped so that a new one is generated.
fn sane_request_id(value: &[u8]) -> bool {
    (1..=128).contains(&value.len())
        && value
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}

/// New request ids: random UUIDs (version 4) drawn from the thread's fast generator. A request
/// id only correlates log lines, so it needs no cryptographic randomness; tower-http's
/// `MakeRequestUuid` asked the kernel for it, one `getrandom` system call per request.
#[derive(Debug, Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))
            .ok()
            .map(RequestId::new)
    }
}

fn drop_insane_request_id(mut req: Request) -> Request {
    let mut values = req.headers().get_all(&X_REQUEST_ID).iter();
    let keep =
        matches!((values.next(), values.next()), (Some(v), None) if sane_request_id(v.as_bytes()));
    if !keep {
        req.headers_mut().remove(&X_REQUEST_ID);
    }
    req
}

/// The span of one request: its id, method and path (no headers, no query string).
fn request_span(req: &Request) -> tracing::Span {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
    )
}

/// The answer to a request whose handler panicked: a SCIM 500 error (the handler's transaction,
/// if one was open, was dropped and rolled back). The panic is logged, cut to 300 characters.
fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    let cut: String = message.chars().take(300).collect();
    tracing::error!(panic = %cut, "a request handler panicked; answered 500");
    crate::scim::error::ScimError::internal().into_response()
}

/// Catches a panic in any handler and answers it with [`panic_response`] instead of dropping
/// the connection.
pub fn catch_panic_layer()
-> CatchPanicLayer<fn(Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response> {
    CatchPanicLayer::custom(panic_response as fn(_) -> _)
}

pub fn app(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::endpoint))
        .nest("/scim/v2", crate::scim::router(state.clone()));
    if state.settings.admin.enabled {
        router = router
            .nest("/admin/v1", crate::admin::router(state.clone()))
            .merge(crate::console::router(state.clone()));
    }
    let request_limit = ListenerLimits::of(&state.settings.server).request_timeout;
    router
        .layer(
            ServiceBuilder::new()
                .map_request(drop_insane_request_id)
                .layer(SetRequestIdLayer::new(
                    X_REQUEST_ID.clone(),
                    RandomRequestId,
                ))
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
                .layer(middleware::from_fn_with_state(
                    request_limit,
                    request_timeout,
                ))
                .layer(catch_panic_layer()),
        )
        .with_state(state)
}

/// Rewrites a SCIM path to its canonical spelling before routing (see
/// [`crate::scim::canonical_path`]); the query string is kept.
fn canonical_scim_path<B>(mut req: axum::http::Request<B>) -> axum::http::Request<B> {
    let Some(path) = crate::scim::canonical_path(req.uri().path()) else {
        return req;
    };
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = path_and_query.parse::<axum::http::uri::PathAndQuery>() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// The listener's limits (`[server]` settings).
#[derive(Debug, Clone, Copy)]
struct ListenerLimits {
    header_read_timeout: Duration,
    request_timeout: Duration,
    max_connections: usize,
}

impl ListenerLimits {
    fn of(settings: &crate::config::ServerSettings) -> Self {
        Self {
            header_read_timeout: Duration::from_secs(settings.header_read_timeout_secs.max(1)),
            request_timeout: Duration::from_secs(settings.request_timeout_secs.max(1)),
            max_connections: settings.max_connections.max(1),
        }
    }
}

/// Cuts off a request that takes longer than `server.request_timeout_secs` (a body that never
/// finishes arriving, or a handler that hangs) with a SCIM 408. Dropping the handler drops its
/// open transaction, which rolls back.
async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                timeout_secs = limit.as_secs(),
                "request cut off after server.request_timeout_secs"
            );
            crate::scim::error::ScimError::new(
                StatusCode::REQUEST_TIMEOUT,
                None,
                format!(
                    "the request did not complete within {} s (server.request_timeout_secs) and was cut off",
                    limit.as_secs()
                ),
            )
            .into_response()
        }
    }
}

/// Serves until `shutdown` completes, then finishes in-flight requests.
///
/// HTTP/1 through hyper, with the limits of `[server]`: a connection that has not sent a
/// complete request head within `header_read_timeout_secs` (also an idle keep-alive connection)
/// is closed; at most `max_connections` are served at once (further ones wait in the listen
/// backlog); each request is cut off after `request_timeout_secs` (in [`app`]).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = ListenerLimits::of(&state.settings.server);
    // Paths are made canonical before routing, which a layer inside the router could not do.
    let service = tower::util::MapRequestLayer::new(canonical_scim_path::<hyper::body::Incoming>)
        .layer(app(state));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => (stream, peer),
                Err(e) => {
                    // Out of file descriptors and the like: wait, then accept again.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // The peer's address for handlers that need it (the console's sign-in rate limit).
        let per_connection = TowerToHyperService::new(
            axum::Extension(axum::extract::ConnectInfo(peer)).layer(service.clone()),
        );
        let connection = http.serve_connection(TokioIo::new(stream), per_connection);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_a_scim_500() {
        let app: Router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    let s = "é";
                    // A byte index inside a character: the panic the layer must catch.
                    let i = s.len() - 1;
                    s.get(..i)
                        .map(str::to_owned)
                        .unwrap_or_else(|| panic!("boom at {i}"))
                }),
            )
            .layer(catch_panic_layer());
        let request = axum::http::Request::get("/boom")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers()[axum::http::header::CONTENT_TYPE],
            crate::scim::error::SCIM_CONTENT_TYPE
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["schemas"][0], crate::scim::error::ERROR_URN);
        assert_eq!(json["status"], "500");
    }
}
