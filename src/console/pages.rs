//! The overview, the integrations (list, create, detail, Privacy Mode reveal, disconnect) and
//! the audit trail. Secrets never reach a page unless revealed on purpose: a SCIM integration's
//! Endpoint URL and Token are masked until the operator posts the reveal form (audit-logged);
//! a Graph integration's client secret is write-only.

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::render::v;
use super::{ConsoleError, Viewer, audit, render};
use crate::domain::DeletionThreshold;
use crate::entra::cloud::Cloud;
use crate::http::AppState;
use crate::integrations::{self, GraphSettings};
use crate::secrets::{Secret, SecretKey};
use crate::store::IntegrationRow;
use crate::sync::cycle::SyncEnv;
use crate::sync::mapping::{Mapping, UserNameSource};
use crate::sync::schedule::{IntegrationStatus, Runner, Schedule};

pub(crate) fn secret_key(state: &AppState) -> Result<&SecretKey, ConsoleError> {
    state.secret_key.as_ref().ok_or(ConsoleError::Unavailable)
}

pub(crate) fn sync_env(state: &AppState) -> SyncEnv {
    SyncEnv {
        store: state.store.clone(),
        clock: state.clock.clone(),
        settings: state.settings.sync.clone(),
    }
}

/// The viewer's integration named `name` (another account's is "not found").
pub(crate) async fn find(
    state: &AppState,
    viewer: &Viewer,
    name: &str,
) -> Result<IntegrationRow, ConsoleError> {
    Ok(integrations::find(&state.store, &viewer.account, &viewer.account_name, name).await?)
}

/// The schedule state of the viewer's Graph integrations.
async fn statuses(
    state: &AppState,
    viewer: &Viewer,
) -> Result<Vec<IntegrationStatus>, ConsoleError> {
    let Some(key) = state.secret_key.clone() else {
        return Ok(Vec::new());
    };
    let runner = Runner::new(sync_env(state), key);
    Ok(runner
        .status()
        .await?
        .into_iter()
        .filter(|s| s.account == viewer.account_name)
        .collect())
}

/// An integration as a list shows it: never its token.
#[derive(Serialize)]
struct Listed {
    name: String,
    kind: String,
    created_at: chrono::DateTime<chrono::Utc>,
    status: Option<IntegrationStatus>,
}

async fn listed(state: &AppState, viewer: &Viewer) -> Result<Vec<Listed>, ConsoleError> {
    let mut statuses = statuses(state, viewer).await?;
    let rows = state.store.list_integrations(Some(&viewer.account)).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let status = statuses
                .iter()
                .position(|s| s.name == r.name)
                .map(|i| statuses.swap_remove(i));
            Listed {
                name: r.name,
                kind: r.kind.as_str().to_owned(),
                created_at: r.created_at,
                status,
            }
        })
        .collect())
}

/// `GET /admin/`.
pub async fn overview(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Html<String>, ConsoleError> {
    let integrations = listed(&state, &viewer).await?;
    let outbox = state.store.outbox_counts(&viewer.account).await?;
    let running = state.console.runs.running(&viewer.account);
    let held = state.store.list_staged(&viewer.account, None).await?.len();
    render::page(
        &viewer,
        "overview",
        "overview.html",
        context! {
            integrations => v(&integrations),
            outbox_pending => outbox.get("pending").copied().unwrap_or(0),
            outbox_sent => outbox.get("sent").copied().unwrap_or(0),
            outbox_dead => outbox.get("dead").copied().unwrap_or(0),
            running => v(&running),
            held => held,
        },
    )
}

/// `GET /admin/integrations`.
pub async fn integrations(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Html<String>, ConsoleError> {
    integrations_page(&state, &viewer, None).await
}

async fn integrations_page(
    state: &AppState,
    viewer: &Viewer,
    error: Option<String>,
) -> Result<Html<String>, ConsoleError> {
    let integrations = listed(state, viewer).await?;
    render::page(
        viewer,
        "integrations",
        "integrations.html",
        context! { integrations => v(&integrations), error => error },
    )
}

/// The create form (SCIM or Graph). The client secret is write-only: it is sealed and never
/// shown again, not even masked beyond its hint.
#[derive(Deserialize)]
pub struct CreateForm {
    kind: String,
    name: String,
    #[serde(default)]
    tenant_id: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    service_principal_id: String,
    #[serde(default)]
    cloud: String,
    #[serde(default)]
    user_name_from: String,
    #[serde(default)]
    transitive: Option<String>,
    #[serde(default)]
    schedule: String,
    #[serde(default)]
    max_deletes: String,
    #[serde(default)]
    max_delete_percent: String,
    #[serde(default)]
    graph_url: String,
    #[serde(default)]
    authority_url: String,
}

fn optional(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

fn graph_settings(form: &CreateForm) -> Result<GraphSettings, ConsoleError> {
    let bad = |m: String| ConsoleError::BadRequest(m);
    let user_name_source = match form.user_name_from.trim() {
        "" | "upn" => UserNameSource::UserPrincipalName,
        "mail" => UserNameSource::Mail,
        other => return Err(bad(format!("userName source {other:?}: use upn or mail"))),
    };
    let schedule = optional(&form.schedule);
    if let Some(s) = &schedule {
        Schedule::parse(s).map_err(|e| bad(e.to_string()))?;
    }
    let defaults = DeletionThreshold::default();
    let max_count = match optional(&form.max_deletes) {
        None => defaults.max_count,
        Some(n) => match n.parse::<usize>() {
            Ok(0) => None,
            Ok(n) => Some(n),
            Err(_) => return Err(bad(format!("maximum deletions {n:?} is not a number"))),
        },
    };
    let max_percent = match optional(&form.max_delete_percent) {
        None => defaults.max_percent,
        Some(p) => match p.parse::<f64>() {
            Ok(p) if p.is_finite() && p <= 0.0 => None,
            Ok(p) if p.is_finite() => Some(p),
            _ => {
                return Err(bad(format!(
                    "maximum deletion percent {p:?} is not a number"
                )));
            }
        },
    };
    Ok(GraphSettings {
        tenant_id: form.tenant_id.trim().to_owned(),
        client_id: form.client_id.trim().to_owned(),
        service_principal_id: form.service_principal_id.trim().to_owned(),
        cloud: match optional(&form.cloud) {
            None => Cloud::Global,
            Some(c) => Cloud::parse(&c).ok_or_else(|| {
                bad(format!(
                    "unknown cloud {c:?}: use global, usgov, usgov-dod or china"
                ))
            })?,
        },
        graph_url: optional(&form.graph_url),
        authority_url: optional(&form.authority_url),
        transitive: form.transitive.is_some(),
        mapping: Mapping { user_name_source },
        threshold: DeletionThreshold {
            max_count,
            max_percent,
        },
        schedule,
        full_reconcile: None,
    })
}

/// `POST /admin/integrations`: creates a SCIM or Graph integration and shows its page (a SCIM
/// integration's Endpoint URL and Token behind Privacy Mode).
pub async fn create_integration(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Form(form): Form<CreateForm>,
) -> Result<Response, ConsoleError> {
    let key = secret_key(&state)?;
    let now = state.clock.now();
    let created = match form.kind.as_str() {
        "scim" => integrations::create_scim(
            &state.store,
            key,
            &viewer.account,
            &viewer.account_name,
            &form.name,
            &state.scim_base,
            now,
        )
        .await
        .map(|_| ()),
        "graph" => {
            let settings = match graph_settings(&form) {
                Ok(s) => s,
                Err(e) => {
                    return Ok(integrations_page(&state, &viewer, Some(e.to_string()))
                        .await?
                        .into_response());
                }
            };
            integrations::create_graph(
                &state.store,
                key,
                &viewer.account,
                &viewer.account_name,
                &form.name,
                &settings,
                &Secret::new(form.client_secret.clone()),
                now,
            )
            .await
            .map(|_| ())
        }
        other => {
            return Err(ConsoleError::BadRequest(format!(
                "unknown integration kind {other:?}"
            )));
        }
    };
    if let Err(e) = created {
        return match e {
            integrations::IntegrationError::Store(_)
            | integrations::IntegrationError::Secret { .. } => Err(e.into()),
            other => Ok((
                axum::http::StatusCode::BAD_REQUEST,
                integrations_page(&state, &viewer, Some(other.to_string())).await?,
            )
                .into_response()),
        };
    }
    let name = form.name.trim().to_owned();
    audit(
        &state,
        Some(&viewer.account),
        &viewer.token_name,
        "integration_created",
        Some(&name),
        Some(&form.kind),
        &viewer.client,
    )
    .await?;
    Ok(Redirect::to(&integration_path(&name)).into_response())
}

/// `/admin/integrations/{name}`, the name percent-encoded.
pub(crate) fn integration_path(name: &str) -> String {
    let encoded: String = form_urlencoded_path(name);
    format!("/admin/integrations/{encoded}")
}

fn form_urlencoded_path(segment: &str) -> String {
    let mut out = String::new();
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /admin/integrations/{name}`.
pub async fn integration(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(name): Path<String>,
) -> Result<Html<String>, ConsoleError> {
    integration_page(&state, &viewer, &name, None).await
}

/// The revealed Endpoint URL and Token of a SCIM integration.
#[derive(Serialize)]
struct Revealed {
    endpoint_url: String,
    token: String,
}

async fn integration_page(
    state: &AppState,
    viewer: &Viewer,
    name: &str,
    revealed: Option<Revealed>,
) -> Result<Html<String>, ConsoleError> {
    let row = find(state, viewer, name).await?;
    let settings: Option<GraphSettings> = (row.kind.as_str() == "graph")
        .then(|| serde_json::from_value(row.settings.clone()).ok())
        .flatten();
    let cycles = if row.kind.as_str() == "graph" {
        state
            .store
            .recent_cycles(&viewer.account, Some(&row.id), 25)
            .await?
    } else {
        Vec::new()
    };
    let status = statuses(state, viewer)
        .await?
        .into_iter()
        .find(|s| s.name == row.name);
    let runs = state
        .console
        .runs
        .of_integration(&viewer.account, &row.name);
    render::page(
        viewer,
        "integrations",
        "integration.html",
        context! {
            path => integration_path(&row.name),
            name => row.name,
            kind => row.kind.as_str(),
            created_at => v(&row.created_at),
            token_hint => row.token_hint,
            revealed => v(&revealed),
            settings => v(&settings),
            cycles => v(&cycles),
            status => v(&status),
            runs => v(&runs),
        },
    )
}

/// `POST /admin/integrations/{name}/reveal`: Privacy Mode off for this page view; audit-logged.
pub async fn reveal(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(name): Path<String>,
) -> Result<Html<String>, ConsoleError> {
    let row = find(&state, &viewer, &name).await?;
    if row.kind.as_str() != "scim" {
        return Err(ConsoleError::BadRequest(
            "only a SCIM integration has a token to reveal; a Graph client secret is write-only"
                .to_owned(),
        ));
    }
    let key = secret_key(&state)?;
    let sealed = row
        .secret_sealed
        .as_deref()
        .ok_or_else(|| ConsoleError::NotFound("this integration has no stored token".to_owned()))?;
    let token = key.open(sealed, row.id.as_str()).map_err(|source| {
        integrations::IntegrationError::Secret {
            name: row.name.clone(),
            source,
        }
    })?;
    audit(
        &state,
        Some(&viewer.account),
        &viewer.token_name,
        "token_revealed",
        Some(&row.name),
        None,
        &viewer.client,
    )
    .await?;
    let revealed = Revealed {
        endpoint_url: state.scim_base.clone(),
        token: token.expose().to_owned(),
    };
    integration_page(&state, &viewer, &name, Some(revealed)).await
}

#[derive(Deserialize)]
pub struct DisconnectForm {
    #[serde(default)]
    confirm: String,
}

/// `POST /admin/integrations/{name}/disconnect` with `confirm=yes`: deletes the integration (a
/// SCIM token stops working at once).
pub async fn disconnect(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(name): Path<String>,
    Form(form): Form<DisconnectForm>,
) -> Result<Response, ConsoleError> {
    if form.confirm != "yes" {
        return Err(ConsoleError::BadRequest(
            "tick the confirmation box to disconnect the integration".to_owned(),
        ));
    }
    let row = find(&state, &viewer, &name).await?;
    integrations::delete(
        &state.store,
        &viewer.account,
        &viewer.account_name,
        &row.name,
    )
    .await?;
    audit(
        &state,
        Some(&viewer.account),
        &viewer.token_name,
        "integration_disconnected",
        Some(&row.name),
        Some(row.kind.as_str()),
        &viewer.client,
    )
    .await?;
    Ok(Redirect::to("/admin/integrations").into_response())
}

#[derive(Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
}

/// Entries per audit page.
const AUDIT_PAGE: i64 = 50;

/// `GET /admin/audit`.
pub async fn audit_trail(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<AuditQuery>,
) -> Result<Html<String>, ConsoleError> {
    let mut rows = state
        .store
        .list_audit(
            &viewer.account,
            // Sign-in attempts that matched no token belong to the deployment: they are shown
            // in the default account's trail only, never to another company's operators.
            viewer.account_name == state.settings.directory.default_account,
            q.before,
            AUDIT_PAGE + 1,
        )
        .await?;
    let next = (rows.len() as i64 > AUDIT_PAGE).then(|| {
        rows.truncate(AUDIT_PAGE as usize);
        rows.last().map(|r| r.seq)
    });
    render::page(
        &viewer,
        "audit",
        "audit.html",
        context! { entries => v(&rows), next => next.flatten() },
    )
}
