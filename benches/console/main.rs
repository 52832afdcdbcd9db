//! Console benchmark: how fast the operator console's list pages render on a large directory.
//!
//! Run it (release build) with:
//!
//! ```text
//! cargo bench --bench console -- [--users 100000] [--log-rows 1000000] [--requests 200]
//! ```
//!
//! It seeds a fresh SQLite store (the embedded default) with bulk SQL — `--users` users,
//! `--log-rows` provisioning-log rows spread over them, 20,000 outbox messages and 5,000 audit
//! entries — starts the real server on loopback, signs in with an admin token, warms every page
//! up, then requests each list page `--requests` times, one after another, and reports p50,
//! p99 and max of the whole request (routing, session check, queries, template, transfer).
//! PASS when every page's p99 is under 50 ms; exit code 1 otherwise.

#[path = "../common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use essentry_sync::config::Settings;
use essentry_sync::domain::{Clock, SystemClock};
use essentry_sync::http::AppState;
use essentry_sync::integrations;
use essentry_sync::secrets::{self, SecretKey};
use essentry_sync::store::{Store, StoreConfig};

/// The p99 every list page must stay under.
const BUDGET: Duration = Duration::from_millis(50);

struct Args {
    users: u64,
    log_rows: u64,
    requests: usize,
}

fn args() -> Result<Args> {
    let mut a = Args {
        users: 100_000,
        log_rows: 1_000_000,
        requests: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().context("a flag needs a value");
        match flag.as_str() {
            "--users" => a.users = value()?.parse()?,
            "--log-rows" => a.log_rows = value()?.parse()?,
            "--requests" => a.requests = value()?.parse()?,
            "--bench" => {}
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

/// Bulk seeding in SQL (a recursive counter), far faster than the directory operations.
/// The statements take their sizes from a one-row `bench_sizes` table.
const SEED: &[&str] = &[
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
     WHERE i < (SELECT users FROM bench_sizes)) \
     INSERT INTO users (id, account_id, user_name, user_name_lower, given_name, family_name, \
     given_name_lower, family_name_lower, active, entra_object_id, source, resource, version, \
     created_at, updated_at) \
     SELECT printf('00000000-0000-4000-8000-%012d', i), (SELECT id FROM accounts WHERE name = 'default'), \
     printf('user%06d@example.com', i), printf('user%06d@example.com', i), 'Given' || i, \
     'Family' || i, 'given' || i, 'family' || i, 1, printf('11111111-0000-4000-8000-%012d', i), \
     'graph', '{}', 1, '2026-11-28T12:00:00+00:00', '2026-11-28T12:00:00+00:00' FROM n",
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
     WHERE i < (SELECT log_rows FROM bench_sizes)) \
     INSERT INTO provisioning_log (id, account_id, integration_id, cycle_id, source, action, \
     status, user_id, user_name, source_object_id, modified, duration_ms, at) \
     SELECT 'log-' || i, (SELECT id FROM accounts WHERE name = 'default'), \
     (SELECT id FROM integrations WHERE name = 'EntraPull'), 'cycle-' || (i / 5000), 'graph', \
     CASE i % 10 WHEN 0 THEN 'delete' WHEN 1 THEN 'skip' WHEN 2 THEN 'create' ELSE 'update' END, \
     CASE i % 50 WHEN 0 THEN 'failure' ELSE 'success' END, \
     printf('00000000-0000-4000-8000-%012d', 1 + i % (SELECT users FROM bench_sizes)), \
     printf('user%06d@example.com', 1 + i % (SELECT users FROM bench_sizes)), \
     printf('11111111-0000-4000-8000-%012d', 1 + i % (SELECT users FROM bench_sizes)), \
     '[{\"attribute\":\"name.givenName\",\"old\":\"A\",\"new\":\"B\"}]', 3, \
     strftime('%Y-%m-%dT%H:%M:%S+00:00', '2026-10-30', '+' || (i * 2) || ' seconds') FROM n",
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
     INSERT INTO outbox (id, account_id, kind, idempotency_key, recipient_email, recipient_name, \
     subject, body_text, payload, status, attempts, next_attempt_at, last_error, created_at) \
     SELECT 'msg-' || i, (SELECT id FROM accounts WHERE name = 'default'), \
     'appointment_cancelled', 'key-' || i, 'guest' || i || '@guest.example', 'Guest ' || i, \
     'Cancelled: meeting ' || i, 'body', '{}', \
     CASE i % 20 WHEN 0 THEN 'dead' WHEN 1 THEN 'pending' ELSE 'sent' END, \
     CASE i % 20 WHEN 0 THEN 8 ELSE 1 END, '2026-11-28T12:00:00+00:00', \
     CASE i % 20 WHEN 0 THEN '550 mailbox unavailable' END, '2026-11-28T12:00:00+00:00' FROM n",
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
     INSERT INTO console_audit (account_id, actor, action, target, client, at) \
     SELECT (SELECT id FROM accounts WHERE name = 'default'), 'ops', 'run_now', 'EntraPull', \
     '127.0.0.1', '2026-11-28T12:00:00+00:00' FROM n",
    "ANALYZE",
];

struct Stats {
    page: String,
    p50: Duration,
    p99: Duration,
    max: Duration,
    bytes: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run() -> Result<bool> {
    let a = args()?;
    let dir = tempfile::tempdir()?;
    let store = Store::connect(&StoreConfig {
        url: format!("sqlite://{}", dir.path().join("bench.db").display()),
        max_connections: 4,
        pg_schema: None,
    })
    .await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let account = store.ensure_account("default", clock.now()).await?;
    let key = SecretKey::load_or_create(&dir.path().join("secret.key"))?;
    let graph = integrations::GraphSettings::new(
        "contoso.onmicrosoft.com",
        "6731de76-14a6-49ae-97bc-6eba6914391e",
        "00000000-0000-0000-0000-0000000000aa",
    );
    integrations::create_graph(
        &store,
        &key,
        &account,
        "default",
        "EntraPull",
        &graph,
        &secrets::Secret::new("not-a-real-secret".to_owned()),
        clock.now(),
    )
    .await?;
    let seeding = Instant::now();
    let sizes: &'static str = Box::leak(
        format!(
            "CREATE TABLE bench_sizes AS SELECT {} AS users, {} AS log_rows",
            a.users, a.log_rows
        )
        .into_boxed_str(),
    );
    store.execute_raw(sizes).await?;
    for sql in SEED {
        store.execute_raw(sql).await?;
    }
    println!(
        "Seeded {} users, {} provisioning-log rows, 20,000 outbox messages and 5,000 audit \
         entries in {:.1} s (SQLite, bulk SQL).",
        a.users,
        a.log_rows,
        seeding.elapsed().as_secs_f64()
    );
    let (_, token) =
        essentry_sync::admin_tokens::create(&store, "bench", None, None, clock.now()).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut settings = Settings::default();
    settings.server.public_url = Some(format!("http://{addr}"));
    let state = AppState::with_key(store.clone(), clock, settings, Some(key));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(essentry_sync::http::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let origin = format!("http://{addr}");
    let signed_in = client
        .post(format!("{origin}/admin/login"))
        .form(&[("token", token.expose())])
        .send()
        .await?;
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("no session cookie")?
        .to_owned();
    let pages = [
        "/admin/".to_owned(),
        "/admin/integrations".to_owned(),
        "/admin/users".to_owned(),
        format!("/admin/users?after=user{:06}%40example.com", a.users / 2),
        "/admin/users?q=user0001".to_owned(),
        "/admin/users?q=given77".to_owned(),
        "/admin/users?q=nobody".to_owned(),
        "/admin/users?q=user".to_owned(),
        "/admin/logs".to_owned(),
        format!("/admin/logs?before={}", a.log_rows / 2),
        "/admin/logs?action=delete".to_owned(),
        "/admin/logs?status=failure".to_owned(),
        "/admin/logs?integration=EntraPull&action=create".to_owned(),
        "/admin/logs?user=user000123%40example.com".to_owned(),
        "/admin/logs?cycle=cycle-17".to_owned(),
        "/admin/logs?since=2026-11-20".to_owned(),
        "/admin/outbox".to_owned(),
        "/admin/outbox?status=dead".to_owned(),
        "/admin/audit".to_owned(),
        "/admin/users/00000000-0000-4000-8000-000000000123".to_owned(),
    ];
    let mut all = Vec::new();
    for page in &pages {
        let url = format!("{origin}{page}");
        let mut times = Vec::with_capacity(a.requests);
        let mut bytes = 0;
        for i in 0..(a.requests + 10) {
            let started = Instant::now();
            let resp = client.get(&url).header("cookie", &cookie).send().await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            let took = started.elapsed();
            if !status.is_success() {
                bail!("{page}: {status}");
            }
            if i >= 10 {
                times.push(took);
                bytes = body.len();
            }
        }
        times.sort();
        all.push(Stats {
            page: page.clone(),
            p50: percentile(&times, 0.50),
            p99: percentile(&times, 0.99),
            max: times.last().copied().unwrap_or_default(),
            bytes,
        });
    }
    let _ = stop.send(());
    let _ = server.await;
    store.close().await;

    println!("\n| page | p50 (ms) | p99 (ms) | max (ms) | HTML (KB) |\n|---|---:|---:|---:|---:|");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut ok = true;
    for s in &all {
        ok &= s.p99 < BUDGET;
        println!(
            "| `{}` | {:.1} | {:.1} | {:.1} | {:.0} |",
            s.page,
            ms(s.p50),
            ms(s.p99),
            ms(s.max),
            s.bytes as f64 / 1024.0
        );
    }
    println!(
        "\n{}: every list page's p99 {} {} ms ({} users, {} log rows, SQLite, warm, {} requests \
         per page).",
        if ok { "PASS" } else { "FAIL" },
        if ok { "<" } else { "is not always <" },
        BUDGET.as_millis(),
        a.users,
        a.log_rows,
        a.requests
    );
    Ok(ok)
}

fn main() -> ExitCode {
    common::init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
