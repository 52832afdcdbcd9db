//! Cycles and on-demand provisioning from the console: **Run now** and **Dry run** start a cycle
//! of a Graph integration in the background ([`run_cycle`] under a progress cell) and redirect to
//! its page, which shows the live progress (phase, Graph requests, users read, changes planned
//! and applied) — polled by the embedded script, or refreshed every two seconds without it — and
//! then the report: the plan, the appointments cancelled (or that would be) and the guests
//! emailed. **Provision on demand** evaluates one user and shows Entra's step trace inline.
//!
//! The registry of started cycles is in memory (this replica's); the cycles themselves are
//! recorded in the database like any other.

use std::sync::Mutex;

use axum::Extension;
use axum::Json;
use axum::extract::{Form, Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::pages::{find, integration_path, secret_key, sync_env};
use super::render::v;
use super::{ConsoleError, Viewer, audit, render};
use crate::domain::AccountId;
use crate::http::AppState;
use crate::integrations::GraphIntegration;
use crate::sync::cycle::{CycleOptions, CycleReport, Trigger, run_cycle};
use crate::sync::on_demand::provision_user;
use crate::sync::progress::{Progress, ProgressCell, with_progress};

/// Started cycles kept for their pages (the oldest finished ones are dropped first).
const KEPT_RUNS: usize = 50;

#[derive(Clone)]
struct RunEntry {
    id: String,
    account: AccountId,
    integration: String,
    dry_run: bool,
    started_by: String,
    started_at: DateTime<Utc>,
    cell: ProgressCell,
    report: Option<CycleReport>,
    error: Option<String>,
}

/// A started cycle as pages and the progress endpoint show it.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub id: String,
    pub integration: String,
    pub dry_run: bool,
    pub started_by: String,
    pub started_at: DateTime<Utc>,
    pub progress: Progress,
    pub finished: bool,
    pub outcome: Option<String>,
    pub error: Option<String>,
}

impl RunEntry {
    fn view(&self) -> RunView {
        let progress = self.cell.lock().map(|p| p.clone()).unwrap_or_default();
        RunView {
            id: self.id.clone(),
            integration: self.integration.clone(),
            dry_run: self.dry_run,
            started_by: self.started_by.clone(),
            started_at: self.started_at,
            finished: self.report.is_some() || self.error.is_some(),
            outcome: self.report.as_ref().map(|r| r.outcome.as_str().to_owned()),
            error: self.error.clone(),
            progress,
        }
    }
}

/// The cycles this replica's console started.
#[derive(Default)]
pub struct Registry(Mutex<Vec<RunEntry>>);

impl Registry {
    fn add(&self, entry: RunEntry) {
        if let Ok(mut runs) = self.0.lock() {
            if runs.len() >= KEPT_RUNS
                && let Some(i) = runs
                    .iter()
                    .position(|r| r.report.is_some() || r.error.is_some())
            {
                runs.remove(i);
            }
            runs.push(entry);
        }
    }

    fn finish(&self, id: &str, result: Result<CycleReport, String>) {
        if let Ok(mut runs) = self.0.lock()
            && let Some(run) = runs.iter_mut().find(|r| r.id == id)
        {
            if let Ok(mut p) = run.cell.lock() {
                p.phase = "finished".to_owned();
            }
            match result {
                Ok(report) => run.report = Some(report),
                Err(e) => run.error = Some(e),
            }
        }
    }

    fn get(&self, account: &AccountId, id: &str) -> Option<RunEntry> {
        let runs = self.0.lock().ok()?;
        runs.iter()
            .find(|r| r.id == id && &r.account == account)
            .cloned()
    }

    /// The account's cycles still running.
    pub fn running(&self, account: &AccountId) -> Vec<RunView> {
        let Ok(runs) = self.0.lock() else {
            return Vec::new();
        };
        runs.iter()
            .filter(|r| &r.account == account && r.report.is_none() && r.error.is_none())
            .map(RunEntry::view)
            .collect()
    }

    /// The integration's five most recent started cycles, newest first.
    pub fn of_integration(&self, account: &AccountId, integration: &str) -> Vec<RunView> {
        let Ok(runs) = self.0.lock() else {
            return Vec::new();
        };
        runs.iter()
            .rev()
            .filter(|r| &r.account == account && r.integration == integration)
            .take(5)
            .map(RunEntry::view)
            .collect()
    }
}

async fn open(
    state: &AppState,
    viewer: &Viewer,
    name: &str,
) -> Result<GraphIntegration, ConsoleError> {
    let row = find(state, viewer, name).await?;
    Ok(GraphIntegration::open(row, secret_key(state)?)?)
}

#[derive(Deserialize)]
pub struct StartForm {
    #[serde(default)]
    mode: String,
}

/// `POST /admin/integrations/{name}/run` (`mode=run`, `mode=dry_run` or `mode=full`, a cycle
/// that reads the whole scope): starts the cycle and
/// redirects to its page.
pub async fn start(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(name): Path<String>,
    Form(form): Form<StartForm>,
) -> Result<Response, ConsoleError> {
    let (dry_run, full) = match form.mode.as_str() {
        "run" => (false, false),
        "dry_run" => (true, false),
        "full" => (false, true),
        other => return Err(ConsoleError::BadRequest(format!("unknown mode {other:?}"))),
    };
    let integ = open(&state, &viewer, &name).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let cell = ProgressCell::default();
    if let Ok(mut p) = cell.lock() {
        p.phase = "starting".to_owned();
    }
    state.console.runs.add(RunEntry {
        id: id.clone(),
        account: viewer.account.clone(),
        integration: integ.row.name.clone(),
        dry_run,
        started_by: viewer.token_name.clone(),
        started_at: state.clock.now(),
        cell: cell.clone(),
        report: None,
        error: None,
    });
    audit(
        &state,
        Some(&viewer.account),
        &viewer.token_name,
        match (dry_run, full) {
            (true, _) => "dry_run",
            (false, true) => "run_full",
            (false, false) => "run_now",
        },
        Some(&integ.row.name),
        None,
        &viewer.client,
    )
    .await?;
    let env = sync_env(&state);
    let task_state = state.clone();
    let task_id = id.clone();
    tokio::spawn(async move {
        let opts = CycleOptions {
            trigger: Trigger::Manual,
            dry_run,
            allow_deletes: false,
            full,
        };
        let result = with_progress(cell, run_cycle(&env, &integ, opts)).await;
        task_state
            .console
            .runs
            .finish(&task_id, result.map_err(|e| e.to_string()));
    });
    Ok(Redirect::to(&format!("/admin/runs/{id}")).into_response())
}

/// `GET /admin/runs/{id}`: the live progress, then the report.
pub async fn show(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> Result<Html<String>, ConsoleError> {
    let run = state
        .console
        .runs
        .get(&viewer.account, &id)
        .ok_or_else(|| ConsoleError::NotFound("no such cycle on this server".to_owned()))?;
    let view = run.view();
    render::page(
        &viewer,
        "integrations",
        "run.html",
        context! {
            run => v(&view),
            report => v(&run.report),
            integration_path => integration_path(&run.integration),
        },
    )
}

/// `GET /admin/runs/{id}/progress`: the progress as JSON, for the embedded script.
pub async fn progress(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ConsoleError> {
    state
        .console
        .runs
        .get(&viewer.account, &id)
        .map(|r| Json(r.view()))
        .ok_or_else(|| ConsoleError::NotFound("no such cycle on this server".to_owned()))
}

#[derive(Deserialize)]
pub struct ProvisionForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    dry_run: Option<String>,
}

/// `POST /admin/integrations/{name}/provision`: one user now, the step trace inline.
pub async fn provision(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(name): Path<String>,
    Form(form): Form<ProvisionForm>,
) -> Result<Html<String>, ConsoleError> {
    let user = form.user.trim();
    if user.is_empty() {
        return Err(ConsoleError::BadRequest(
            "type a user principal name or object id".to_owned(),
        ));
    }
    let integ = open(&state, &viewer, &name).await?;
    let dry_run = form.dry_run.is_some();
    audit(
        &state,
        Some(&viewer.account),
        &viewer.token_name,
        "provision_on_demand",
        Some(&integ.row.name),
        Some(user),
        &viewer.client,
    )
    .await?;
    let report = provision_user(&sync_env(&state), &integ, user, dry_run).await?;
    render::page(
        &viewer,
        "integrations",
        "on_demand.html",
        context! {
            report => v(&report),
            succeeded => report.succeeded(),
            integration_path => integration_path(&integ.row.name),
        },
    )
}
