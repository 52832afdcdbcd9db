//! The paged lists: users (search by userName or name), a user's page (their provisioning log
//! entries and upcoming appointments), the provisioning log (filters, CSV and JSON export with
//! the same filters) and the outbox (pending, sent, dead; retry a dead message).
//!
//! Every list is keyset-paged (`after` / `before` in the query string) and reads one page plus
//! one row, never a whole table; an export streams the filtered log in batches.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDate, Utc};
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::render::v;
use super::{ConsoleError, Viewer, audit, render};
use crate::domain::{AccountId, UserId};
use crate::http::AppState;
use crate::store::{LogFilter, LogPageRow, RetryOutcome};

/// Rows per page of every list.
pub const PAGE: i64 = 50;
/// Rows per batch of an export.
const EXPORT_BATCH: i64 = 1_000;

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[derive(Deserialize, Default)]
pub struct UsersQuery {
    q: Option<String>,
    after: Option<String>,
}

/// `GET /admin/users`.
pub async fn users(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(query): Query<UsersQuery>,
) -> Result<Html<String>, ConsoleError> {
    let search = non_empty(&query.q);
    let after = non_empty(&query.after);
    let mut rows = state
        .store
        .page_users(
            &viewer.account,
            search.as_deref(),
            after.as_deref(),
            PAGE + 1,
        )
        .await?;
    let next = if rows.len() as i64 > PAGE {
        rows.truncate(PAGE as usize);
        rows.last().map(|r| r.user_name_lower.clone())
    } else {
        None
    };
    render::page(
        &viewer,
        "users",
        "users.html",
        context! { users => v(&rows), q => search, next => next, paged => after.is_some() },
    )
}

/// `GET /admin/users/{id}`.
pub async fn user(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> Result<Html<String>, ConsoleError> {
    let id = UserId::parse(&id).map_err(|_| ConsoleError::NotFound("no such user".to_owned()))?;
    let user = state
        .store
        .user_by_id(&viewer.account, &id)
        .await?
        .ok_or_else(|| ConsoleError::NotFound("no such user".to_owned()))?;
    let filter = LogFilter {
        user_id: Some(id.as_str().to_owned()),
        ..LogFilter::default()
    };
    let log = state
        .store
        .page_log(&viewer.account, &filter, None, PAGE)
        .await?;
    let appointments = state
        .store
        .upcoming_for_host(&viewer.account, &id, state.clock.now())
        .await?;
    render::page(
        &viewer,
        "users",
        "user.html",
        context! {
            user => context! {
                id => user.id.as_str(),
                user_name => user.attrs.user_name.as_str(),
                given_name => user.attrs.given_name,
                family_name => user.attrs.family_name,
                display_name => user.attrs.display_name,
                external_id => user.attrs.external_id,
                active => user.attrs.active,
                entra_object_id => user.attrs.entra_object_id.as_ref().map(|o| o.to_string()),
                source => user.source.as_str(),
                created_at => v(&user.created_at),
                updated_at => v(&user.updated_at),
            },
            log => v(&log),
            appointments => v(&appointments),
        },
    )
}

/// The log filters as the query string carries them.
#[derive(Deserialize, Default, Serialize, Clone)]
pub struct LogQuery {
    integration: Option<String>,
    user: Option<String>,
    action: Option<String>,
    status: Option<String>,
    cycle: Option<String>,
    /// `YYYY-MM-DD` (UTC midnight) or RFC 3339.
    since: Option<String>,
    before: Option<i64>,
    format: Option<String>,
}

fn parse_since(text: &str) -> Result<DateTime<Utc>, ConsoleError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            ConsoleError::BadRequest(format!(
                "since {text:?}: use a date (2026-11-28) or an RFC 3339 time"
            ))
        })
}

/// The store filter of a query; an unknown integration name matches nothing.
async fn filter_of(
    state: &AppState,
    account: &AccountId,
    q: &LogQuery,
) -> Result<LogFilter, ConsoleError> {
    let integration_id = match non_empty(&q.integration) {
        None => None,
        Some(name) => Some(
            state
                .store
                .list_integrations(Some(account))
                .await?
                .into_iter()
                .find(|r| r.name == name)
                .map(|r| r.id.as_str().to_owned())
                .unwrap_or_else(|| "-".to_owned()),
        ),
    };
    Ok(LogFilter {
        integration_id,
        user: non_empty(&q.user),
        user_id: None,
        action: non_empty(&q.action),
        status: non_empty(&q.status),
        cycle_id: non_empty(&q.cycle),
        since: non_empty(&q.since).map(|s| parse_since(&s)).transpose()?,
    })
}

/// The query string of the filters (for paging and export links), without `before`/`format`.
fn filter_query(q: &LogQuery) -> String {
    let pairs: Vec<(&str, String)> = [
        ("integration", &q.integration),
        ("user", &q.user),
        ("action", &q.action),
        ("status", &q.status),
        ("cycle", &q.cycle),
        ("since", &q.since),
    ]
    .into_iter()
    .filter_map(|(k, v)| non_empty(v).map(|v| (k, v)))
    .collect();
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// `GET /admin/logs`.
pub async fn logs(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<LogQuery>,
) -> Result<Html<String>, ConsoleError> {
    let filter = filter_of(&state, &viewer.account, &q).await?;
    let mut rows = state
        .store
        .page_log(&viewer.account, &filter, q.before, PAGE + 1)
        .await?;
    let next = if rows.len() as i64 > PAGE {
        rows.truncate(PAGE as usize);
        rows.last().map(|r| r.seq)
    } else {
        None
    };
    let integrations: Vec<String> = state
        .store
        .list_integrations(Some(&viewer.account))
        .await?
        .into_iter()
        .map(|r| r.name)
        .collect();
    render::page(
        &viewer,
        "logs",
        "logs.html",
        context! {
            rows => v(&rows),
            next => next,
            filters => v(&q),
            query => filter_query(&q),
            integrations => integrations,
            paged => q.before.is_some(),
        },
    )
}

/// One exported log row (the CSV columns).
#[derive(Serialize)]
struct CsvRow<'a> {
    at: String,
    integration: &'a str,
    cycle_id: &'a str,
    source: &'a str,
    action: &'a str,
    status: &'a str,
    user_name: &'a str,
    user_id: &'a str,
    source_object_id: &'a str,
    modified: String,
    error_code: &'a str,
    error_message: &'a str,
    duration_ms: Option<i64>,
}

fn csv_bytes(rows: &[LogPageRow], header: bool) -> Result<Vec<u8>, ConsoleError> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(header)
        .from_writer(Vec::new());
    for r in rows {
        let l = &r.row;
        w.serialize(CsvRow {
            at: l.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            integration: l.integration.as_deref().unwrap_or(""),
            cycle_id: l.cycle_id.as_deref().unwrap_or(""),
            source: &l.source,
            action: &l.action,
            status: &l.status,
            user_name: l.user_name.as_deref().unwrap_or(""),
            user_id: l.user_id.as_deref().unwrap_or(""),
            source_object_id: l.source_object_id.as_deref().unwrap_or(""),
            modified: l.modified.to_string(),
            error_code: l.error_code.as_deref().unwrap_or(""),
            error_message: l.error_message.as_deref().unwrap_or(""),
            duration_ms: l.duration_ms,
        })
        .map_err(|e| ConsoleError::BadRequest(format!("CSV: {e}")))?;
    }
    w.into_inner()
        .map_err(|e| ConsoleError::BadRequest(format!("CSV: {e}")))
}

/// The next batch of an export as bytes: CSV rows, or JSON array elements.
async fn export_batch(
    state: &AppState,
    account: &AccountId,
    filter: &LogFilter,
    before: Option<i64>,
    json: bool,
    first: bool,
) -> Result<(Vec<u8>, Option<i64>), ConsoleError> {
    let rows = state
        .store
        .page_log(account, filter, before, EXPORT_BATCH)
        .await?;
    let next = (rows.len() as i64 == EXPORT_BATCH)
        .then(|| rows.last().map(|r| r.seq))
        .flatten();
    let bytes = if json {
        let mut out = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            if !(first && i == 0) {
                out.push(b',');
            }
            out.extend(serde_json::to_vec(r).map_err(|e| ConsoleError::BadRequest(e.to_string()))?);
            out.push(b'\n');
        }
        out
    } else {
        csv_bytes(&rows, first)?
    };
    Ok((bytes, next))
}

/// `GET /admin/logs/export?format=csv|json&…filters`: the whole filtered log, streamed in
/// batches (newest first).
pub async fn export(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ConsoleError> {
    let json = match q.format.as_deref().unwrap_or("csv") {
        "csv" => false,
        "json" => true,
        other => {
            return Err(ConsoleError::BadRequest(format!(
                "format {other:?}: use csv or json"
            )));
        }
    };
    let filter = filter_of(&state, &viewer.account, &q).await?;
    audit(
        &state,
        Some(&viewer.account),
        &viewer.token_name,
        "log_exported",
        None,
        Some(&filter_query(&q)),
        &viewer.client,
    )
    .await?;
    let account = viewer.account.clone();
    // States: Some(cursor) while batches remain; `first` says whether the header/bracket is due.
    let start = (Some(None::<i64>), true, false);
    let stream = futures::stream::unfold(start, move |(cursor, first, closed)| {
        let state = state.clone();
        let account = account.clone();
        let filter = filter.clone();
        async move {
            match cursor {
                Some(before) => {
                    match export_batch(&state, &account, &filter, before, json, first).await {
                        Ok((mut bytes, next)) => {
                            if json && first {
                                bytes.insert(0, b'[');
                            }
                            Some((
                                Ok::<_, std::io::Error>(bytes),
                                (next.map(Some), false, false),
                            ))
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "log export failed mid-stream");
                            Some((
                                Err(std::io::Error::other(e.to_string())),
                                (None, false, true),
                            ))
                        }
                    }
                }
                None if json && !closed => Some((Ok(b"]\n".to_vec()), (None, false, true))),
                None => None,
            }
        }
    });
    let (kind, file) = if json {
        ("application/json", "provisioning-log.json")
    } else {
        ("text/csv; charset=utf-8", "provisioning-log.csv")
    };
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, kind.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Deserialize, Default)]
pub struct OutboxQuery {
    status: Option<String>,
    before: Option<i64>,
}

/// `GET /admin/outbox`.
pub async fn outbox(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<OutboxQuery>,
) -> Result<Html<String>, ConsoleError> {
    let status = non_empty(&q.status).filter(|s| ["pending", "sent", "dead"].contains(&s.as_str()));
    let mut rows = state
        .store
        .page_outbox(&viewer.account, status.as_deref(), q.before, PAGE + 1)
        .await?;
    let next = if rows.len() as i64 > PAGE {
        rows.truncate(PAGE as usize);
        rows.last().map(|r| r.seq)
    } else {
        None
    };
    let counts = state.store.outbox_counts(&viewer.account).await?;
    render::page(
        &viewer,
        "outbox",
        "outbox.html",
        context! {
            rows => v(&rows),
            next => next,
            status => status,
            counts => v(&counts),
            paged => q.before.is_some(),
        },
    )
}

/// `POST /admin/outbox/{id}/retry`: a dead (or waiting) message back to pending, due now.
pub async fn retry(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let outcome = state
        .store
        .retry_outbox(&viewer.account, &id, state.clock.now())
        .await?;
    match outcome {
        RetryOutcome::Requeued => {
            audit(
                &state,
                Some(&viewer.account),
                &viewer.token_name,
                "outbox_retried",
                Some(&id),
                None,
                &viewer.client,
            )
            .await?;
            Ok(Redirect::to("/admin/outbox?status=pending").into_response())
        }
        RetryOutcome::NotFound => Err(ConsoleError::NotFound("no such message".to_owned())),
        RetryOutcome::AlreadySent => Err(ConsoleError::BadRequest(
            "this message was already sent".to_owned(),
        )),
        RetryOutcome::InFlight => Err(ConsoleError::BadRequest(
            "this message is being sent right now".to_owned(),
        )),
    }
}
