//! Health and metrics, on both backends: `/metrics` after SCIM requests, Graph sync cycles (the
//! simulator over loopback) and deprovisionings that fill the outbox; `/readyz` on a migrated
//! database and on one whose `_sqlx_migrations` lacks a row; request ids; and log lines that
//! carry the request id and never a token.
//!
//! The process-wide counters (directory changes, Graph and token requests) are shared with the
//! tests running beside these, so they are checked to have grown by at least this test's own
//! share; everything labelled by this test's integration, and every per-server counter, is
//! checked exactly.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::TimeDelta;
use essentry_sync::config::SyncSettings;
use essentry_sync::domain::Clock;
use essentry_sync::entra::simulator::{SAMPLE_CLIENT_SECRET, Simulator, sample_tenant};
use essentry_sync::integrations::{self, GraphIntegration};
use essentry_sync::secrets::{Secret, SecretKey};
use essentry_sync::sync::cycle::{CycleOptions, Outcome, SyncEnv, Trigger, run_cycle};
use essentry_sync::sync::on_demand::provision_user;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Backend, TestApp};

const ADELE: &str = "adele.vance@contoso.com";

/// The root of the server (`TestApp::base` is the SCIM base).
fn root(app: &TestApp) -> String {
    app.base.trim_end_matches("/scim/v2").to_owned()
}

/// Labels of one sample line, `k="v",...` (escapes undone).
fn parse_labels(mut rest: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut end = after.len();
        let mut chars = after.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_owned(), value);
        rest = &after[end..];
    }
    out
}

/// The value of the sample `name` whose labels are exactly `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find_map(|(series, value)| {
            let (n, l) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            (n == name && parse_labels(l) == want).then(|| value.parse::<f64>().expect("number"))
        })
}

/// `sample`, 0 when absent.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or(0.0)
}

async fn scrape(app: &TestApp) -> String {
    let resp = app
        .client
        .get(format!("{}/metrics", root(app)))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    resp.text().await.expect("metrics body")
}

/// A Graph integration of the app's account, with a name no other test uses, pointed at `sim`.
async fn graph_integration(app: &TestApp, sim: &Simulator) -> (GraphIntegration, SyncEnv) {
    let name = format!(
        "metrics-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let settings = crate::support::sample_graph_settings(sim);
    let key = SecretKey::from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").expect("key");
    integrations::create_graph(
        app.store(),
        &key,
        &app.account,
        "default",
        &name,
        &settings,
        &Secret::new(SAMPLE_CLIENT_SECRET.to_owned()),
        app.clock.now(),
    )
    .await
    .expect("create the Graph integration");
    let row = integrations::find(app.store(), &app.account, "default", &name)
        .await
        .expect("find the Graph integration");
    let integ = GraphIntegration::open(row, &key).expect("open the Graph integration");
    let clock: Arc<dyn Clock> = app.clock.clone();
    let env = SyncEnv {
        store: app.store().clone(),
        clock,
        settings: SyncSettings {
            retry_budget_wait_secs: 5,
            request_timeout_secs: 10,
            ..SyncSettings::default()
        },
    };
    (integ, env)
}

async fn cycle(env: &SyncEnv, integ: &GraphIntegration, dry_run: bool) -> Outcome {
    run_cycle(
        env,
        integ,
        CycleOptions {
            trigger: Trigger::Manual,
            dry_run,
            allow_deletes: false,
            full: false,
        },
    )
    .await
    .expect("the cycle is recorded")
    .outcome
}

backend_test! {
    async fn metrics_count_scim_requests_sync_cycles_and_the_outbox(backend) {
        let app = TestApp::spawn(backend).await;
        let before = scrape(&app).await;
        let changed = |text: &str, source: &str, action: &str| {
            value(
                text,
                "essentry_users_changed_total",
                &[("source", source), ("action", action)],
            )
        };

        // SCIM: two creates, a read, a miss, a patch, a delete, an unauthenticated list and an
        // unknown endpoint.
        let alice = app.create_user("alice@example.com", "Alice", "Smith").await;
        let bob = app.create_user("bob@example.com", "Bob", "Jones").await;
        app.add_appointment(
            "bob@example.com",
            "Planning",
            24,
            &[("Carol", "carol@example.org"), ("Dan", "dan@example.org")],
        )
        .await;
        assert_eq!(
            app.get(&format!("/Users/{alice}")).await.status,
            StatusCode::OK
        );
        let missing = uuid::Uuid::new_v4().to_string();
        assert_eq!(
            app.get(&format!("/Users/{missing}")).await.status,
            StatusCode::NOT_FOUND
        );
        let patched = app
            .patch(
                &format!("/Users/{alice}"),
                &json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "name.givenName", "value": "Alicia"}],
                }),
            )
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
        assert_eq!(
            app.delete(&format!("/Users/{bob}")).await.status,
            StatusCode::NO_CONTENT
        );
        let anonymous = app
            .client
            .get(format!("{}/Users", app.base))
            .send()
            .await
            .expect("GET /Users");
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.get("/Nothing/here").await.status, StatusCode::NOT_FOUND);

        let text = scrape(&app).await;
        let requests = |route: &str, method: &str, status: &str| {
            value(
                &text,
                "essentry_scim_requests_total",
                &[("route", route), ("method", method), ("status", status)],
            )
        };
        assert_eq!(
            requests("/scim/v2/Users", "POST", "201"),
            2.0,
            "{backend:?}\n{text}"
        );
        assert_eq!(requests("/scim/v2/Users/{id}", "GET", "200"), 1.0, "{text}");
        assert_eq!(requests("/scim/v2/Users/{id}", "GET", "404"), 1.0, "{text}");
        assert_eq!(
            requests("/scim/v2/Users/{id}", "PATCH", "200"),
            1.0,
            "{text}"
        );
        assert_eq!(
            requests("/scim/v2/Users/{id}", "DELETE", "204"),
            1.0,
            "{text}"
        );
        assert_eq!(requests("/scim/v2/Users", "GET", "401"), 1.0, "{text}");
        assert_eq!(requests("unmatched", "GET", "404"), 1.0, "{text}");
        assert_eq!(
            value(
                &text,
                "essentry_scim_request_duration_seconds_count",
                &[("route", "/scim/v2/Users"), ("method", "POST")],
            ),
            2.0,
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                "essentry_scim_request_duration_seconds_count",
                &[("route", "/scim/v2/Users/{id}"), ("method", "GET")],
            ),
            2.0,
            "{text}"
        );
        for id in [&alice, &bob, &missing] {
            assert!(!text.contains(id.as_str()), "a raw id in the metrics: {id}");
        }
        assert!(changed(&text, "scim", "created") - changed(&before, "scim", "created") >= 2.0);
        assert!(changed(&text, "scim", "updated") - changed(&before, "scim", "updated") >= 1.0);
        assert!(changed(&text, "scim", "deleted") - changed(&before, "scim", "deleted") >= 1.0);

        // The outbox: Bob's deletion queued one cancellation per guest.
        app.clock.advance(TimeDelta::seconds(90));
        let text = scrape(&app).await;
        assert_eq!(
            sample(&text, "essentry_outbox_depth", &[]),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "essentry_outbox_oldest_pending_age_seconds", &[]),
            Some(90.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "essentry_outbox_dead", &[]),
            Some(0.0),
            "{text}"
        );
        app.store()
            .execute_raw(
                "UPDATE outbox SET status = 'dead' WHERE seq = (SELECT MIN(seq) FROM outbox)",
            )
            .await
            .expect("park one message");
        let text = scrape(&app).await;
        assert_eq!(
            sample(&text, "essentry_outbox_depth", &[]),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "essentry_outbox_dead", &[]),
            Some(1.0),
            "{text}"
        );

        // Graph: a throttled cycle, a cycle whose token Graph rejects, an on-demand run and a
        // dry run (not counted as a cycle).
        let sim = Simulator::start(sample_tenant())
            .await
            .expect("the Graph simulator starts");
        let (integ, env) = graph_integration(&app, &sim).await;
        let name = integ.row.name.clone();
        let before = scrape(&app).await;
        sim.with_faults(|f| {
            f.throttle_next = 2;
            f.retry_after = "0.01".to_owned();
        });
        assert_eq!(cycle(&env, &integ, false).await, Outcome::Success);
        sim.with_faults(|f| f.expire_tokens = true);
        assert_eq!(cycle(&env, &integ, false).await, Outcome::Success);
        let on_demand = provision_user(&env, &integ, ADELE, false)
            .await
            .expect("the on-demand run is recorded");
        assert!(on_demand.succeeded(), "{:?}", on_demand.error);
        assert_eq!(cycle(&env, &integ, true).await, Outcome::Success);
        let stats = sim.stats();
        let text = scrape(&app).await;
        let cycles = |trigger: &str, outcome: &str| {
            value(
                &text,
                "essentry_sync_cycles_total",
                &[
                    ("integration", name.as_str()),
                    ("trigger", trigger),
                    ("outcome", outcome),
                ],
            )
        };
        assert_eq!(cycles("manual", "success"), 2.0, "{backend:?}\n{text}");
        assert_eq!(cycles("on_demand", "success"), 1.0, "{text}");
        assert_eq!(cycles("manual", "failed"), 0.0, "{text}");
        assert_eq!(
            value(
                &text,
                "essentry_sync_cycle_duration_seconds_count",
                &[("integration", name.as_str())],
            ),
            2.0,
            "{text}"
        );
        let grew = |metric: &str, labels: &[(&str, &str)]| {
            value(&text, metric, labels) - value(&before, metric, labels)
        };
        // The simulator counts a `$batch` once, and so do we.
        assert!(grew("essentry_graph_requests_total", &[]) >= stats.graph_requests as f64);
        assert!(stats.graph_requests > 0);
        assert!(grew("essentry_graph_throttled_total", &[]) >= 2.0);
        assert!(
            grew("essentry_token_requests_total", &[("outcome", "success")])
                >= stats.tokens_issued as f64
        );
        assert!(grew("essentry_token_refreshes_total", &[]) >= 1.0);
        // The first cycle created the 12 users in scope (the dry run's changes are not counted,
        // but other tests may add to this counter meanwhile).
        assert!(
            grew(
                "essentry_users_changed_total",
                &[("source", "graph"), ("action", "created")]
            ) >= 12.0
        );
        sim.shutdown().await;
        app.finish().await;
    }
}

backend_test! {
    async fn readyz_needs_every_migration_applied(backend) {
        let app = TestApp::spawn(backend).await;
        let readyz = || async {
            let r = app
                .client
                .get(format!("{}/readyz", root(&app)))
                .send()
                .await
                .expect("GET /readyz");
            (r.status(), r.text().await.expect("body"))
        };
        assert_eq!(readyz().await, (StatusCode::OK, "ready\n".to_owned()));

        // A migration that failed.
        app.store()
            .execute_raw("UPDATE _sqlx_migrations SET success = FALSE WHERE version = 1")
            .await
            .expect("mark migration 1 failed");
        let (status, body) = readyz().await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{backend:?}: {body}"
        );
        assert!(body.contains("migration 1 (directory) failed"), "{body}");

        // A migration that is missing.
        app.store()
            .execute_raw("UPDATE _sqlx_migrations SET success = TRUE WHERE version = 1")
            .await
            .expect("repair migration 1");
        assert_eq!(readyz().await.0, StatusCode::OK);
        app.store()
            .execute_raw("DELETE FROM _sqlx_migrations WHERE version = 2")
            .await
            .expect("forget migration 2");
        let (status, body) = readyz().await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{backend:?}: {body}"
        );
        assert!(body.starts_with("not ready: migration 2 ("), "{body}");
        assert!(body.contains("is not applied"), "{body}");
        app.finish().await;
    }
}

async fn request_id(app: &TestApp, path: &str, sent: Option<&str>) -> String {
    let mut req = app.client.get(format!("{}{path}", root(app)));
    if let Some(id) = sent {
        req = req.header("x-request-id", id);
    }
    let resp = req.send().await.expect("request");
    resp.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("x-request-id in the response")
        .to_owned()
}

/// Collects what the JSON log formatter writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

/// Request ids are honoured when sane, generated otherwise and echoed; the JSON log lines of a
/// request carry its id, and no log line (at TRACE, every crate) holds a token or the
/// Authorization header. A current-thread runtime keeps the server, the client and the Graph
/// simulator on this thread, under the capturing subscriber.
#[tokio::test(flavor = "current_thread")]
async fn request_ids_are_echoed_and_logs_carry_no_token() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = TestApp::spawn(Backend::Sqlite).await;
    // Other tests run at the same time with no subscriber: a callsite they register while this
    // thread's subscriber is being installed can be cached as uninteresting. Recompute every
    // callsite's interest now that ours is in place.
    tracing::callsite::rebuild_interest_cache();
    assert_eq!(
        request_id(&app, "/healthz", Some("client-42.a:b_c")).await,
        "client-42.a:b_c"
    );
    for insane in ["has space", "quote\"d", "x".repeat(129).as_str()] {
        let id = request_id(&app, "/healthz", Some(insane)).await;
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{insane:?} → {id}");
    }
    let generated = request_id(&app, "/readyz", None).await;
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    assert_ne!(generated, request_id(&app, "/readyz", None).await);

    // A SCIM request with its id, and a Graph cycle with a refreshed token.
    let created = app
        .request_with(
            reqwest::Method::POST,
            "/Users",
            Some(&json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "logged@example.com",
                "active": true,
                "name": {"givenName": "Log", "familyName": "Ged"},
            })),
            |r| r.header("x-request-id", "scim-create-1"),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.header("x-request-id"), Some("scim-create-1"));
    let sim = Simulator::start(sample_tenant())
        .await
        .expect("the Graph simulator starts");
    let (integ, env) = graph_integration(&app, &sim).await;
    sim.with_faults(|f| f.expire_tokens = true);
    assert_eq!(cycle(&env, &integ, false).await, Outcome::Success);
    sim.shutdown().await;

    let text = logs.text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| {
            l["fields"]["message"] == "user created"
                && l["spans"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["request_id"] == "scim-create-1"))
        }),
        "no \"user created\" line in the request's span:\n{text}"
    );
    let lower = text.to_ascii_lowercase();
    for secret in [
        app.token.as_str(),
        SAMPLE_CLIENT_SECRET,
        // Every access token the simulator issues starts so.
        "eyJ0eXAiOiJKV1QiLCJzaW0iOnRydWV9",
    ] {
        assert!(!text.contains(secret), "a secret in the logs: {secret}");
    }
    assert!(
        !lower.contains("authorization"),
        "an Authorization header in the logs"
    );
    assert!(!lower.contains("bearer "), "a bearer token in the logs");
    app.finish().await;
}
