//! The deletion review in the admin API (the same operations as `essentry-sync deletions`):
//!
//! - `GET /admin/v1/deletions?integration=NAME&account=A` → the staged deletions;
//! - `POST /admin/v1/integrations/{name}/deletions/approve` `{"all": true}` or
//!   `{"users": ["ann@contoso.com"]}` → what was deleted and what was not (with the reason);
//! - `POST /admin/v1/integrations/{name}/deletions/reject` `{"user": "ann@contoso.com"}` → the
//!   user is kept and no longer managed by the integration.

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{AdminError, env, resolve_account};
use crate::admin_tokens::AdminCaller;
use crate::http::AppState;
use crate::integrations;
use crate::store::IntegrationRow;
use crate::sync::deletions::{self, Selection};

/// The Graph integration `name` of the account the request acts on (a token scoped to an
/// account never reaches another: see [`resolve_account`]).
async fn graph_row(
    state: &AppState,
    caller: &AdminCaller,
    account: Option<&str>,
    name: &str,
) -> Result<IntegrationRow, AdminError> {
    let (account, account_name) = resolve_account(state, caller, account, name).await?;
    let row = integrations::find(&state.store, &account, &account_name, name).await?;
    if row.kind != crate::domain::IntegrationKind::Graph {
        return Err(AdminError::BadRequest(format!(
            "integration {name:?} is a {} integration; only Graph integrations stage deletions",
            row.kind
        )));
    }
    Ok(row)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(super) struct ListQuery {
    integration: Option<String>,
    account: Option<String>,
}

pub(super) async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Query(q): Query<ListQuery>,
) -> Result<Response, AdminError> {
    let what = q.integration.as_deref().unwrap_or("(any)");
    let (account, _) = resolve_account(&state, &caller, q.account.as_deref(), what).await?;
    let integration = match &q.integration {
        Some(name) => Some(
            graph_row(&state, &caller, q.account.as_deref(), name)
                .await?
                .id,
        ),
        None => None,
    };
    let rows = state
        .store
        .list_staged(&account, integration.as_ref())
        .await?;
    Ok(Json(rows).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(super) struct ApproveBody {
    all: bool,
    users: Vec<String>,
    account: Option<String>,
}

pub(super) async fn approve(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Path(name): Path<String>,
    Json(body): Json<ApproveBody>,
) -> Result<Response, AdminError> {
    let selection = match (body.all, body.users.is_empty()) {
        (true, true) => Selection::All,
        (false, false) => Selection::Users(body.users),
        _ => {
            return Err(AdminError::BadRequest(
                "give either \"all\": true or \"users\": [...]".to_owned(),
            ));
        }
    };
    let row = graph_row(&state, &caller, body.account.as_deref(), &name).await?;
    let report = deletions::approve(&env(&state), &row, &selection).await?;
    Ok(Json(report).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RejectBody {
    user: String,
    #[serde(default)]
    account: Option<String>,
}

pub(super) async fn reject(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Path(name): Path<String>,
    Json(body): Json<RejectBody>,
) -> Result<Response, AdminError> {
    let row = graph_row(&state, &caller, body.account.as_deref(), &name).await?;
    let report = deletions::reject(&env(&state), &row, &body.user).await?;
    Ok(Json(report).into_response())
}
