//! Deletions awaiting review (`/admin/deletions`): the deletions that held cycles staged, per
//! integration, with their appointment impact (upcoming appointments that would be cancelled,
//! guests who would be emailed); approve or reject one user, or approve all of an integration's.
//! The operations are the deletion review's ([`crate::sync::deletions`]), the same as the CLI's
//! and the admin API's; every decision is audit-logged.

use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::context;
use serde::Deserialize;

use super::pages::{find, sync_env};
use super::render::v;
use super::{ConsoleError, Viewer, audit, render};
use crate::http::AppState;
use crate::sync::deletions::{self, ReviewError, Selection};

/// `GET /admin/deletions`.
pub async fn list(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Html<String>, ConsoleError> {
    page(&state, &viewer, None).await
}

async fn page(
    state: &AppState,
    viewer: &Viewer,
    flash: Option<String>,
) -> Result<Html<String>, ConsoleError> {
    let staged = state.store.list_staged(&viewer.account, None).await?;
    let mut groups: Vec<(String, Vec<_>)> = Vec::new();
    for row in staged {
        match groups.iter_mut().find(|(name, _)| *name == row.integration) {
            Some((_, rows)) => rows.push(row),
            None => groups.push((row.integration.clone(), vec![row])),
        }
    }
    render::page(
        viewer,
        "deletions",
        "deletions.html",
        context! { groups => v(&groups), flash => flash, now => v(&state.clock.now()) },
    )
}

#[derive(Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    all: Option<String>,
}

fn review_failure(e: ReviewError) -> Result<String, ConsoleError> {
    match e {
        ReviewError::Store(e) => Err(e.into()),
        ReviewError::Directory(e) => Err(ConsoleError::BadRequest(e.to_string())),
        other => Ok(other.to_string()),
    }
}

/// `POST /admin/deletions/{integration}/approve` (`user=…` or `all=yes`).
pub async fn approve(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(name): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, ConsoleError> {
    let row = find(&state, &viewer, &name).await?;
    let selection = if form.all.is_some() {
        Selection::All
    } else {
        Selection::Users(vec![form.user.trim().to_owned()])
    };
    let message = match deletions::approve(&sync_env(&state), &row, &selection).await {
        Ok(report) => {
            let deleted: Vec<&str> = report
                .deleted
                .iter()
                .map(|d| d.user_name.as_str())
                .collect();
            let not_deleted: Vec<String> = report
                .not_deleted
                .iter()
                .map(|n| format!("{} ({})", n.user_name, n.reason))
                .collect();
            let detail = format!(
                "deleted: {}; not deleted: {}",
                deleted.join(", "),
                not_deleted.join(", ")
            );
            audit(
                &state,
                Some(&viewer.account),
                &viewer.token_name,
                "deletion_approved",
                Some(&row.name),
                Some(&detail),
                &viewer.client,
            )
            .await?;
            let cancelled: usize = report
                .deleted
                .iter()
                .map(|d| d.appointments_cancelled)
                .sum();
            let emailed: usize = report.deleted.iter().map(|d| d.emails_queued).sum();
            let mut message = format!(
                "Approved: {} deleted ({cancelled} appointments cancelled, {emailed} guests emailed).",
                if deleted.is_empty() {
                    "nobody".to_owned()
                } else {
                    deleted.join(", ")
                },
            );
            if !not_deleted.is_empty() {
                message.push_str(&format!(" Not deleted: {}.", not_deleted.join(", ")));
            }
            message
        }
        Err(e) => {
            let message = review_failure(e)?;
            return Ok((
                StatusCode::CONFLICT,
                page(&state, &viewer, Some(message)).await?,
            )
                .into_response());
        }
    };
    Ok(page(&state, &viewer, Some(message)).await?.into_response())
}

/// `POST /admin/deletions/{integration}/reject` (`user=…`): keep the user.
pub async fn reject(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(name): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, ConsoleError> {
    let row = find(&state, &viewer, &name).await?;
    let user = form.user.trim();
    match deletions::reject(&sync_env(&state), &row, user).await {
        Ok(report) => {
            audit(
                &state,
                Some(&viewer.account),
                &viewer.token_name,
                "deletion_rejected",
                Some(&row.name),
                Some(&report.user_name),
                &viewer.client,
            )
            .await?;
            let message = format!(
                "Rejected: {} is kept, and {} leaves them alone from now on.",
                report.user_name, report.integration
            );
            Ok(page(&state, &viewer, Some(message)).await?.into_response())
        }
        Err(e) => {
            let message = review_failure(e)?;
            Ok((
                StatusCode::CONFLICT,
                page(&state, &viewer, Some(message)).await?,
            )
                .into_response())
        }
    }
}
