//! The operator console under `/admin/`: server-rendered HTML pages (minijinja templates compiled
//! into the binary), every asset embedded and served with a strict Content-Security-Policy, no
//! JavaScript needed to read or to submit a form (a little embedded JS updates a running
//! cycle's progress in place).
//!
//! - [`session`]: sign-in with an admin token, server-side sessions (a database table, so
//!   replicas share them), idle and absolute expiry, CSRF tokens checked on every POST, the
//!   per-client sign-in rate limit, sign-out.
//! - [`render`]: the templates, the embedded assets and the security headers.
//! - [`pages`]: overview, integrations (create, Privacy Mode reveal, disconnect), audit trail.
//! - [`runs`]: Run now, Dry run, live progress of a running cycle, provision on demand.
//! - [`lists`]: users, a user's page, the provisioning log (and its CSV/JSON export), the outbox.
//! - [`deletions`]: deletions awaiting review (approve or reject, per user or all).
//!
//! Every page is scoped to the signed-in session's account ([`Viewer::account`]); every action
//! that changes something or shows a secret is written to the audit trail (`console_audit`)
//! and logged under the `audit` tracing target.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};

use crate::domain::{AccountId, StoreError};
use crate::http::AppState;
use crate::integrations::IntegrationError;
use crate::store::NewAudit;

pub mod deletions;
pub mod lists;
pub mod pages;
pub mod render;
pub mod runs;
pub mod session;

pub use session::Viewer;

/// What the console keeps in memory: the sign-in rate limiter and the cycles it started.
#[derive(Default)]
pub struct ConsoleState {
    /// Failed sign-ins per client: the start of the window and the failures in it.
    pub(crate) sign_in_failures: Mutex<HashMap<String, (DateTime<Utc>, u32)>>,
    /// Cycles started from the console, with their live progress.
    pub(crate) runs: runs::Registry,
}

/// A console failure, shown as a page.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("this server has no secrets key, so integrations cannot be opened")]
    Unavailable,
    #[error(transparent)]
    Integration(#[from] IntegrationError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rendering the page failed: {0}")]
    Template(#[from] minijinja::Error),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::NotFound(_) | Self::Integration(IntegrationError::NotFound { .. }) => {
                StatusCode::NOT_FOUND
            }
            Self::BadRequest(_)
            | Self::Integration(
                IntegrationError::BadName
                | IntegrationError::Exists { .. }
                | IntegrationError::Invalid(_)
                | IntegrationError::NotGraph { .. },
            ) => StatusCode::BAD_REQUEST,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => {
                tracing::error!(error = %self, "console request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            "Something went wrong on the server; the details are in its log.".to_owned()
        } else {
            self.to_string()
        };
        render::error_page(status, &message)
    }
}

/// Writes an audit entry (the `console_audit` table) and logs it under the `audit` target.
pub(crate) async fn audit(
    state: &AppState,
    account: Option<&AccountId>,
    actor: &str,
    action: &str,
    target: Option<&str>,
    detail: Option<&str>,
    client: &str,
) -> Result<(), StoreError> {
    tracing::info!(
        target: "audit",
        actor,
        action,
        target = target.unwrap_or(""),
        detail = detail.unwrap_or(""),
        client,
        "console action"
    );
    state
        .store
        .insert_audit(&NewAudit {
            account_id: account,
            actor,
            action,
            target,
            detail,
            client: Some(client),
            at: state.clock.now(),
        })
        .await
}

/// The console's routes, all under `/admin/` (the admin API keeps `/admin/v1`).
pub fn router(state: AppState) -> Router<AppState> {
    let signed_in = Router::new()
        .route("/admin/", get(pages::overview))
        .route("/admin/logout", post(session::logout))
        .route(
            "/admin/integrations",
            get(pages::integrations).post(pages::create_integration),
        )
        .route("/admin/integrations/{name}", get(pages::integration))
        .route("/admin/integrations/{name}/reveal", post(pages::reveal))
        .route(
            "/admin/integrations/{name}/disconnect",
            post(pages::disconnect),
        )
        .route("/admin/integrations/{name}/run", post(runs::start))
        .route(
            "/admin/integrations/{name}/provision",
            post(runs::provision),
        )
        .route("/admin/runs/{id}", get(runs::show))
        .route("/admin/runs/{id}/progress", get(runs::progress))
        .route("/admin/users", get(lists::users))
        .route("/admin/users/{id}", get(lists::user))
        .route("/admin/logs", get(lists::logs))
        .route("/admin/logs/export", get(lists::export))
        .route("/admin/outbox", get(lists::outbox))
        .route("/admin/outbox/{id}/retry", post(lists::retry))
        .route("/admin/audit", get(pages::audit_trail))
        .route("/admin/deletions", get(deletions::list))
        .route("/admin/deletions/{name}/approve", post(deletions::approve))
        .route("/admin/deletions/{name}/reject", post(deletions::reject))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            session::require_session,
        ));
    Router::new()
        .route("/admin", get(|| async { Redirect::to("/admin/") }))
        .route(
            "/admin/login",
            get(session::login_form).post(session::login),
        )
        .route("/admin/assets/{file}", get(render::asset))
        .merge(signed_in)
        .layer(middleware::map_response(render::security_headers))
}
