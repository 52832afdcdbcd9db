//! Application state and the HTTP server: the SCIM endpoint under `/scim/v2`, the admin API
//! under `/admin/v1`, `/healthz` and `/readyz`. Shutdown is injected as a future so callers (the CLI, tests) decide when it ends.

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
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
        }))
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the database answers.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.account_by_name("").await {
        Ok(_) => (StatusCode::OK, "ready\n".to_owned()),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "database unreachable\n".to_owned(),
            )
        }
    }
}

pub fn app(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .nest("/scim/v2", crate::scim::router(state.clone()));
    if state.settings.admin.enabled {
        router = router.nest("/admin/v1", crate::admin::router(state.clone()));
    }
    router.layer(TraceLayer::new_for_http()).with_state(state)
}

/// Serves until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
