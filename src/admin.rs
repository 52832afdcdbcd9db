//! The admin API under `/admin/v1`, for operators and their tooling. It is protected by its own
//! bearer tokens (`essentry-sync admin-token create`; only their SHA-256 is stored and compared
//! in constant time, see [`crate::admin_tokens`]), separate from the SCIM tokens. Unknown,
//! revoked and expired tokens get 401. A token scoped to one account acts on that account only:
//! a request naming another account answers 404 exactly as for an integration that does not
//! exist, and `status` lists that account's integrations only.
//!
//! - `POST /admin/v1/integrations/{name}/provision-on-demand` `{"user": "<UPN or object id>",
//!   "dryRun": false, "account": "default"}` → the on-demand report (steps, action, modified
//!   attributes or the error);
//! - `POST /admin/v1/integrations/{name}/sync` `{"dryRun": false, "allowDeletes": false}` → the
//!   cycle report (`allowDeletes` approves the currently staged deletions still due);
//! - `GET /admin/v1/status` → each Graph integration's last cycle and next run;
//! - the deletion review: `GET /admin/v1/deletions`, `POST
//!   /admin/v1/integrations/{name}/deletions/approve` and `.../deletions/reject` (see
//!   [`deletions`]).
//!
//! Handlers are thin: typed errors map to JSON `{"error": ..., "message": ...}` with a status.

use axum::Json;
use axum::Router;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tracing::Instrument;

use crate::admin_tokens::{self, AdminCaller, AuthError};
use crate::http::AppState;
use crate::integrations::{self, GraphIntegration, IntegrationError};
use crate::sync::cycle::{CycleOptions, SyncEnv, Trigger, run_cycle};
use crate::sync::deletions::ReviewError;
use crate::sync::on_demand::provision_user;
use crate::sync::schedule::Runner;

mod deletions;

/// An admin API failure.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("a valid admin token is required (Authorization: Bearer essy_admin_...)")]
    Unauthorized,
    #[error("the admin API is not configured on this server (no secrets key)")]
    Unavailable,
    #[error(transparent)]
    Integration(#[from] IntegrationError),
    #[error(transparent)]
    Store(#[from] crate::domain::StoreError),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Review(#[from] ReviewError),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Integration(IntegrationError::NotFound { .. }) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            Self::Integration(IntegrationError::NotGraph { .. }) | Self::BadRequest(_) => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            Self::Review(ReviewError::NotStaged { .. }) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Review(ReviewError::Busy(_)) => (StatusCode::CONFLICT, "busy"),
            Self::Review(ReviewError::Invalid(_)) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Integration(_)
            | Self::Store(_)
            | Self::Review(ReviewError::Directory(_) | ReviewError::Store(_)) => {
                tracing::error!(error = %self, "admin API request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let mut response = (
            status,
            Json(json!({ "error": code, "message": self.to_string() })),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"essentry-sync admin\""),
            );
        }
        response
    }
}

async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, AdminError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or(AdminError::Unauthorized)?;
    let caller = match admin_tokens::authenticate(&state.store, presented, state.clock.now()).await
    {
        Ok(caller) => caller,
        Err(AuthError::Store(e)) => return Err(AdminError::Store(e)),
        Err(refused) => {
            tracing::info!(reason = %refused, "admin API request refused");
            return Err(AdminError::Unauthorized);
        }
    };
    let span = tracing::info_span!("admin", token = %caller.name);
    request.extensions_mut().insert(caller);
    Ok(next.run(request).instrument(span).await)
}

fn env(state: &AppState) -> SyncEnv {
    SyncEnv {
        store: state.store.clone(),
        clock: state.clock.clone(),
        settings: state.settings.sync.clone(),
    }
}

/// The account a request acts on: the one it names, else the token's own (scoped tokens), else
/// the default account. A scoped token naming another account gets the same 404 as a missing
/// integration, whether that account exists or not.
async fn resolve_account(
    state: &AppState,
    caller: &AdminCaller,
    requested: Option<&str>,
    integration: &str,
) -> Result<(crate::domain::AccountId, String), AdminError> {
    if let Some((scope_id, scope_name)) = &caller.account {
        return match requested {
            None => Ok((scope_id.clone(), scope_name.clone())),
            Some(name) if name == scope_name => Ok((scope_id.clone(), scope_name.clone())),
            Some(name) => Err(AdminError::Integration(IntegrationError::NotFound {
                account: name.to_owned(),
                name: integration.to_owned(),
            })),
        };
    }
    let account_name = requested.unwrap_or(&state.settings.directory.default_account);
    if account_name.contains('\0') {
        return Err(AdminError::BadRequest(
            "`account` must not contain a NUL character".to_owned(),
        ));
    }
    let account = state
        .store
        .account_by_name(account_name)
        .await?
        .ok_or_else(|| AdminError::BadRequest(format!("no account {account_name:?}")))?;
    Ok((account, account_name.to_owned()))
}

async fn open(
    state: &AppState,
    caller: &AdminCaller,
    account: Option<&str>,
    name: &str,
) -> Result<GraphIntegration, AdminError> {
    let key = state.secret_key.as_ref().ok_or(AdminError::Unavailable)?;
    let (account, account_name) = resolve_account(state, caller, account, name).await?;
    let row = integrations::find(&state.store, &account, &account_name, name).await?;
    Ok(GraphIntegration::open(row, key)?)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OnDemandBody {
    user: String,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    account: Option<String>,
}

async fn provision_on_demand(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Path(name): Path<String>,
    Json(body): Json<OnDemandBody>,
) -> Result<Response, AdminError> {
    if body.user.trim().is_empty() {
        return Err(AdminError::BadRequest("`user` is required".to_owned()));
    }
    let integ = open(&state, &caller, body.account.as_deref(), &name).await?;
    let report = provision_user(&env(&state), &integ, &body.user, body.dry_run).await?;
    Ok(Json(report).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct SyncBody {
    dry_run: bool,
    allow_deletes: bool,
    /// Read the whole scope instead of following the delta links.
    full: bool,
    account: Option<String>,
}

async fn sync(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Path(name): Path<String>,
    Json(body): Json<SyncBody>,
) -> Result<Response, AdminError> {
    let integ = open(&state, &caller, body.account.as_deref(), &name).await?;
    let report = run_cycle(
        &env(&state),
        &integ,
        CycleOptions {
            trigger: Trigger::Manual,
            dry_run: body.dry_run,
            allow_deletes: body.allow_deletes,
            full: body.full,
        },
    )
    .await?;
    Ok(Json(report).into_response())
}

async fn status(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
) -> Result<Response, AdminError> {
    let key = state.secret_key.clone().ok_or(AdminError::Unavailable)?;
    let runner = Runner::new(env(&state), key);
    let mut all = runner.status().await?;
    if let Some((_, scope)) = &caller.account {
        all.retain(|s| &s.account == scope);
    }
    Ok(Json(all).into_response())
}

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/integrations/{name}/provision-on-demand",
            post(provision_on_demand),
        )
        .route("/integrations/{name}/sync", post(sync))
        .route("/status", get(status))
        .route("/deletions", get(deletions::list))
        .route(
            "/integrations/{name}/deletions/approve",
            post(deletions::approve),
        )
        .route(
            "/integrations/{name}/deletions/reject",
            post(deletions::reject),
        )
        .layer(middleware::from_fn_with_state(state, authorize))
}
