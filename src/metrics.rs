//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! Built on the `prometheus` crate rather than the `metrics` facade with
//! `metrics-exporter-prometheus`: its registries are explicit values, so each server instance
//! ([`HttpMetrics`], one per [`AppState`]) keeps its own request counters while the process-wide
//! counters (sync cycles, Graph, tokens, directory changes) live in one static set that every
//! server's registry also exposes. Nothing has to be installed globally before use (the CLI
//! commands and the tests record into the same statics without setting anything up), recording
//! is a lock-free atomic add on a pre-resolved handle, and the text encoder is the reference
//! implementation of the exposition format.
//!
//! What is exported:
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `essentry_scim_requests_total` | counter | `route` (the route template, e.g. `/scim/v2/Users/{id}`, never a raw id; `unmatched` for unknown paths), `method`, `status` |
//! | `essentry_scim_request_duration_seconds` | histogram | `route`, `method` |
//! | `essentry_sync_cycles_total` | counter | `integration`, `trigger` (`scheduled`, `manual`, `on_demand`), `outcome` (`success`, `held`, `failed`, `busy`) |
//! | `essentry_sync_cycles_by_mode_total` | counter | `integration`, `mode` (`full`, `incremental`), `reason` (why a full read: `first`, `requested`, `schedule`, `settings`, `delta_rejected`, `transitive`, `conflicts`; `none` for incremental): cycles that read Graph |
//! | `essentry_sync_cycle_duration_seconds` | histogram | `integration` (cycles only, not on-demand runs) |
//! | `essentry_users_changed_total` | counter | `source` (`scim`, `graph`, `cli`), `action` (`created`, `updated`, `deleted`) |
//! | `essentry_graph_requests_total` | counter | HTTP requests sent to Microsoft Graph, retries included |
//! | `essentry_graph_throttled_total` | counter | of which Graph answered 429 |
//! | `essentry_token_requests_total` | counter | `outcome` (`success`, `error`): requests to the Entra token endpoint |
//! | `essentry_token_refreshes_total` | counter | tokens requested again because Graph rejected the cached one (401) |
//! | `essentry_outbox_depth` | gauge | messages waiting for delivery (`pending`) |
//! | `essentry_outbox_oldest_pending_age_seconds` | gauge | age of the oldest pending message (0 when none) |
//! | `essentry_outbox_dead` | gauge | messages parked as `dead` |
//!
//! Dry runs (cycles and on-demand runs) are not counted as cycles, and the directory changes they
//! roll back are not counted either: the domain records nothing here; the edges that run its
//! operations (the SCIM handlers, sync cycles and on-demand runs) count the changes with
//! [`users_changed`] once their transaction has committed, from the outcomes they hold. The outbox gauges are
//! read from the database at scrape time; when that read fails they are left out of the answer.
//!
//! `/metrics` needs no credentials, like `/healthz`: it carries counts, durations, route
//! templates and integration names — no user data, ids, tokens or secrets — but it tells how busy
//! the directory is, so expose it on an internal interface only (firewall it like an admin port).

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::domain::Source;
use crate::http::AppState;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A user change, as counted by `essentry_users_changed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAction {
    Created,
    Updated,
    /// Deleted, deactivated or unassigned: each deletes the account.
    Deleted,
}

impl UserAction {
    const ALL: [Self; 3] = [Self::Created, Self::Updated, Self::Deleted];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
        }
    }
}

const SOURCES: [Source; 3] = [Source::Scim, Source::Graph, Source::Cli];

fn source_index(source: Source) -> usize {
    match source {
        Source::Scim => 0,
        Source::Graph => 1,
        Source::Cli => 2,
    }
}

/// The process-wide metrics.
struct Process {
    sync_cycles: IntCounterVec,
    sync_cycles_by_mode: IntCounterVec,
    sync_cycle_duration: HistogramVec,
    users_changed: IntCounterVec,
    /// `users_changed` resolved for every source × action (no label lookup when recording).
    users_changed_by: [[IntCounter; 3]; 3],
    graph_requests: IntCounter,
    graph_throttled: IntCounter,
    token_requests_ok: IntCounter,
    token_requests_err: IntCounter,
    token_requests: IntCounterVec,
    token_refreshes: IntCounter,
}

/// Names and help texts are constants: building a collector from them cannot fail.
fn must<T>(r: prometheus::Result<T>) -> T {
    r.expect("metric definitions are valid")
}

fn counter(name: &str, help: &str) -> IntCounter {
    must(IntCounter::new(name, help))
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    must(IntCounterVec::new(Opts::new(name, help), labels))
}

fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    must(HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    ))
}

static PROCESS: LazyLock<Process> = LazyLock::new(|| {
    let users_changed = counter_vec(
        "essentry_users_changed_total",
        "Users created, updated or deleted in the directory (committed changes), by source.",
        &["source", "action"],
    );
    let users_changed_by = SOURCES.map(|s| {
        UserAction::ALL.map(|a| users_changed.with_label_values(&[s.as_str(), a.as_str()]))
    });
    let token_requests = counter_vec(
        "essentry_token_requests_total",
        "Access-token requests sent to the Microsoft Entra token endpoint.",
        &["outcome"],
    );
    Process {
        sync_cycles: counter_vec(
            "essentry_sync_cycles_total",
            "Graph pull-sync cycles and on-demand runs that ended (dry runs excluded).",
            &["integration", "trigger", "outcome"],
        ),
        sync_cycles_by_mode: counter_vec(
            "essentry_sync_cycles_by_mode_total",
            "Graph pull-sync cycles that read Graph (dry runs excluded), by how they read it.",
            &["integration", "mode", "reason"],
        ),
        sync_cycle_duration: histogram_vec(
            "essentry_sync_cycle_duration_seconds",
            "Duration of Graph pull-sync cycles (dry runs and on-demand runs excluded).",
            &["integration"],
            &[
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
            ],
        ),
        users_changed_by,
        users_changed,
        graph_requests: counter(
            "essentry_graph_requests_total",
            "HTTP requests sent to Microsoft Graph, retries included.",
        ),
        graph_throttled: counter(
            "essentry_graph_throttled_total",
            "Microsoft Graph requests answered 429 (throttled).",
        ),
        token_requests_ok: token_requests.with_label_values(&["success"]),
        token_requests_err: token_requests.with_label_values(&["error"]),
        token_requests,
        token_refreshes: counter(
            "essentry_token_refreshes_total",
            "Access tokens requested again because Microsoft Graph rejected the cached one (401).",
        ),
    }
});

impl Process {
    fn register(&self, registry: &Registry) {
        let collectors: [Box<dyn prometheus::core::Collector>; 8] = [
            Box::new(self.sync_cycles.clone()),
            Box::new(self.sync_cycles_by_mode.clone()),
            Box::new(self.sync_cycle_duration.clone()),
            Box::new(self.users_changed.clone()),
            Box::new(self.graph_requests.clone()),
            Box::new(self.graph_throttled.clone()),
            Box::new(self.token_requests.clone()),
            Box::new(self.token_refreshes.clone()),
        ];
        for c in collectors {
            must(registry.register(c));
        }
    }
}

/// The metrics of one HTTP server, and the registry `/metrics` gathers (which also holds the
/// process-wide metrics).
#[derive(Clone)]
pub struct HttpMetrics {
    registry: Registry,
    scim_requests: IntCounterVec,
    scim_duration: HistogramVec,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetrics").finish_non_exhaustive()
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let scim_requests = counter_vec(
            "essentry_scim_requests_total",
            "SCIM requests answered, by route template, method and status.",
            &["route", "method", "status"],
        );
        let scim_duration = histogram_vec(
            "essentry_scim_request_duration_seconds",
            "Time to answer a SCIM request, by route template and method.",
            &["route", "method"],
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        );
        must(registry.register(Box::new(scim_requests.clone())));
        must(registry.register(Box::new(scim_duration.clone())));
        PROCESS.register(&registry);
        Self {
            registry,
            scim_requests,
            scim_duration,
        }
    }

    /// Records one answered SCIM request.
    pub fn scim_request(&self, route: &str, method: &str, status: StatusCode, elapsed: Duration) {
        self.scim_requests
            .with_label_values(&[route, method, status.as_str()])
            .inc();
        self.scim_duration
            .with_label_values(&[route, method])
            .observe(elapsed.as_secs_f64());
    }

    /// Everything in the text exposition format, plus the outbox gauges when given.
    pub fn render(&self, outbox: Option<&OutboxGauges>) -> String {
        let mut families = self.registry.gather();
        if let Some(o) = outbox {
            families.extend(o.families());
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The outbox, as read at scrape time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutboxGauges {
    pub pending: i64,
    pub oldest_pending_age_seconds: f64,
    pub dead: i64,
}

impl OutboxGauges {
    /// From the counts and the oldest pending message's creation time, at `now`.
    pub fn at(
        pending: i64,
        oldest_pending: Option<DateTime<Utc>>,
        dead: i64,
        now: DateTime<Utc>,
    ) -> Self {
        let age = oldest_pending
            .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        Self {
            pending,
            oldest_pending_age_seconds: age,
            dead,
        }
    }

    fn families(&self) -> Vec<prometheus::proto::MetricFamily> {
        let registry = Registry::new();
        let depth = must(IntGauge::new(
            "essentry_outbox_depth",
            "Outbox messages waiting for delivery (status pending).",
        ));
        let age = must(Gauge::new(
            "essentry_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending outbox message, in seconds (0 when none is pending).",
        ));
        let dead = must(IntGauge::new(
            "essentry_outbox_dead",
            "Outbox messages parked as dead (their attempts are used up).",
        ));
        depth.set(self.pending);
        age.set(self.oldest_pending_age_seconds);
        dead.set(self.dead);
        must(registry.register(Box::new(depth)));
        must(registry.register(Box::new(age)));
        must(registry.register(Box::new(dead)));
        registry.gather()
    }
}

/// `GET /metrics`.
pub async fn endpoint(State(state): State<AppState>) -> Response {
    let outbox = match state.store.outbox_gauges().await {
        Ok((pending, oldest, dead)) => {
            Some(OutboxGauges::at(pending, oldest, dead, state.clock.now()))
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the outbox for /metrics failed; its gauges are left out");
            None
        }
    };
    let body = state.metrics.render(outbox.as_ref());
    let mut response = Response::new(axum::body::Body::from(body));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}

/// Middleware of the SCIM router: counts and times every answer by route template (axum's
/// [`MatchedPath`], so `/Users/{id}` and never a user id), method and status.
pub async fn track_scim(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let method = req.method().clone();
    let response = next.run(req).await;
    state.metrics.scim_request(
        route.as_deref().unwrap_or("unmatched"),
        method_label(&method),
        response.status(),
        started.elapsed(),
    );
    response
}

/// Standard methods by name; anything else is `other` (a client cannot mint label values).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

// ---- the facade the rest of the crate records through ----

/// `count` committed directory changes of one kind. Call it after the transaction that made them
/// committed (a rolled-back or dry-run change is never counted).
pub fn users_changed(source: Source, action: UserAction, count: usize) {
    if count == 0 {
        return;
    }
    let a = UserAction::ALL
        .iter()
        .position(|x| *x == action)
        .unwrap_or(0);
    PROCESS.users_changed_by[source_index(source)][a]
        .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
}

/// A sync cycle or on-demand run ended. `duration` is observed in the cycle histogram when given
/// (cycles give it, on-demand runs do not).
pub fn sync_cycle(integration: &str, trigger: &str, outcome: &str, duration: Option<Duration>) {
    PROCESS
        .sync_cycles
        .with_label_values(&[integration, trigger, outcome])
        .inc();
    if let Some(d) = duration {
        PROCESS
            .sync_cycle_duration
            .with_label_values(&[integration])
            .observe(d.as_secs_f64());
    }
}

/// A cycle that read Graph, by how: `full` (with the reason) or `incremental`.
pub fn sync_cycle_mode(integration: &str, mode: &str, reason: Option<&str>) {
    PROCESS
        .sync_cycles_by_mode
        .with_label_values(&[integration, mode, reason.unwrap_or("none")])
        .inc();
}

/// One HTTP request sent to Microsoft Graph (a retry is another).
pub fn graph_request() {
    PROCESS.graph_requests.inc();
}

/// Microsoft Graph answered 429.
pub fn graph_throttled() {
    PROCESS.graph_throttled.inc();
}

/// One request to the token endpoint, and whether it produced a token.
pub fn token_request(ok: bool) {
    if ok {
        PROCESS.token_requests_ok.inc();
    } else {
        PROCESS.token_requests_err.inc();
    }
}

/// A token requested again because Graph rejected the cached one.
pub fn token_refresh() {
    PROCESS.token_refreshes.inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_changes_are_counted_by_kind() {
        let before = PROCESS.users_changed_by[2][0].get();
        users_changed(Source::Cli, UserAction::Created, 0);
        assert_eq!(PROCESS.users_changed_by[2][0].get(), before);
        users_changed(Source::Cli, UserAction::Created, 3);
        assert!(PROCESS.users_changed_by[2][0].get() >= before + 3);
    }

    #[test]
    fn render_holds_every_family_and_the_outbox() {
        let m = HttpMetrics::new();
        m.scim_request(
            "/scim/v2/Users/{id}",
            "GET",
            StatusCode::OK,
            Duration::from_millis(3),
        );
        let now = Utc::now();
        let text = m.render(Some(&OutboxGauges::at(
            2,
            Some(now - chrono::TimeDelta::seconds(90)),
            1,
            now,
        )));
        assert!(text.contains(
            "essentry_scim_requests_total{method=\"GET\",route=\"/scim/v2/Users/{id}\",status=\"200\"} 1"
        ));
        assert!(text.contains("essentry_outbox_depth 2"));
        assert!(text.contains("essentry_outbox_oldest_pending_age_seconds 90"));
        assert!(text.contains("essentry_outbox_dead 1"));
        assert!(text.contains("# TYPE essentry_graph_requests_total counter"));
        assert!(text.contains("essentry_users_changed_total{action=\"created\",source=\"scim\"}"));
    }
}
