//! Application state and the HTTP server: the SCIM endpoint under `/scim/v2`, the admin API
//! under `/admin/v1`, the operator console under `/admin/`, `/healthz`, `/readyz` and `/metrics`. Shutdown is injected as a future so callers (the CLI, tests) decide when it ends.
//!
//! Every request runs in a `request` tracing span carrying its request id (the client's
//! `x-request-id` when it is a sane token, else a new UUID; echoed in the response), the method
//! and the path — never headers or the query string, so no token reaches a log line.

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
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
        Self(Arc::new(Inner {
            store,
            clock,
            settings,
            scim_base,
            secret_key,
            metrics: crate::metrics::HttpMetrics::new(),
            console: crate::console::ConsoleState::default(),
        }))
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the database answers and its schema is current: every migration this build
/// embeds is recorded in `_sqlx_migrations` as applied, with its checksum. Otherwise 503 with a
/// short reason (the details of a database error go to the log, not to this unauthenticated
/// answer).
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
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
    router
        .layer(
            ServiceBuilder::new()
                .map_request(drop_insane_request_id)
                .layer(SetRequestIdLayer::new(
                    X_REQUEST_ID.clone(),
                    MakeRequestUuid,
                ))
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone())),
        )
        .with_state(state)
}

/// Rewrites a SCIM path to its canonical spelling before routing (see
/// [`crate::scim::canonical_path`]); the query string is kept.
fn canonical_scim_path(mut req: Request) -> Request {
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

/// Serves until `shutdown` completes, then finishes in-flight requests. Paths are made
/// canonical before routing, which a layer inside the router could not do.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::ServiceExt;
    use tower::Layer;
    let service = tower::util::MapRequestLayer::new(canonical_scim_path).layer(app(state));
    axum::serve(
        listener,
        ServiceExt::<Request>::into_make_service_with_connect_info::<std::net::SocketAddr>(service),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
