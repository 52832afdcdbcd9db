//! Several `serve` processes behave like one: two replicas on one PostgreSQL database run each
//! scheduled cycle once, not twice; when the replica running a cycle is killed (SIGKILL) the other
//! one takes the integration over on its next run, and the dead one's cycle is recorded as
//! interrupted. On SQLite a second `serve` on the same file is refused with a clear message.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use essentry_sync::entra::simulator::{SAMPLE_CLIENT_SECRET, Simulator, sample_tenant};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::proc_support::{command, create_graph_args, free_port, poll, signal};
use crate::support::postgres_url;

const SECRET_VAR: &str = "ESSY_REPLICAS_TEST_SECRET";
const INTEGRATION: &str = "EntraPull";

/// A fresh database on the test PostgreSQL server, dropped by [`Database::drop_now`].
struct Database {
    url: String,
    name: String,
}

impl Database {
    async fn create() -> Self {
        let admin = postgres_url();
        let name = format!("essy_replicas_{}", uuid::Uuid::new_v4().simple());
        let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }

    async fn drop_now(self) {
        let mut c = sqlx::PgConnection::connect(&postgres_url()).await.unwrap();
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut c)
        .await;
    }
}

/// The binary with the shared database and secrets key of the deployment.
fn replica_command(dir: &Path, db: &str, key: &str) -> tokio::process::Command {
    let mut c = command(dir);
    c.env("DATABASE_URL", db)
        .env("ESSENTRY_SECRETS__KEY", key)
        .env(SECRET_VAR, SAMPLE_CLIENT_SECRET)
        .env("ESSENTRY_SYNC__FIRST_RUN_DELAY_SECS", "1")
        .env("ESSENTRY_SYNC__TICK_SECS", "1")
        .env("ESSENTRY_SERVER__SHUTDOWN_GRACE_SECS", "5");
    c
}

async fn ok_json(mut c: tokio::process::Command, args: &[&str]) -> Value {
    let out = c.args(args).output().await.unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn cycles(db: &str) -> Vec<(String, String)> {
    let mut c = sqlx::PgConnection::connect(db).await.unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT trigger, outcome FROM sync_cycles ORDER BY seq")
            .fetch_all(&mut c)
            .await
            .unwrap();
    c.close().await.unwrap();
    rows
}

fn start_serve(dir: &Path, db: &str, key: &str, port: u16, log: &str) -> tokio::process::Child {
    replica_command(dir, db, key)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join(format!("{log}.out"))).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{log}.err"))).unwrap())
        .spawn()
        .unwrap()
}

async fn healthy(port: u16) {
    let http = reqwest::Client::new();
    poll("serve to answer /healthz", Duration::from_secs(30), || {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
}

inventory::submit! { crate::support::PgVariant }

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_run_a_cycle_once_and_take_over_from_a_killed_leader() {
    if !crate::support::postgres_or_skip().await {
        return;
    }
    let sim = Simulator::start(sample_tenant()).await.unwrap();
    // Slow Graph answers keep a cycle running for a few seconds.
    sim.with_faults(|f| f.delay_ms = 300);
    let db = Database::create().await;
    let dir = tempfile::tempdir().unwrap();
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let args = create_graph_args(&sim, INTEGRATION, SECRET_VAR);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok_json(replica_command(dir.path(), &db.url, &key), &args).await;
    let token = ok_json(
        replica_command(dir.path(), &db.url, &key),
        &["admin-token", "create", "--name", "ops", "--json"],
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let (pa, pb) = (free_port(), free_port());
    let mut a = start_serve(dir.path(), &db.url, &key, pa, "a");
    let mut b = start_serve(dir.path(), &db.url, &key, pb, "b");
    healthy(pa).await;
    healthy(pb).await;

    // Both replicas find the integration due at start; one runs it.
    poll("the first scheduled cycle", Duration::from_secs(60), || {
        let url = db.url.clone();
        async move {
            let c = cycles(&url).await;
            c.iter().any(|(_, o)| o == "success").then_some(())
        }
    })
    .await;
    // Several more ticks on both replicas: nothing runs twice.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        cycles(&db.url).await,
        vec![("scheduled".to_owned(), "success".to_owned())],
        "exactly one cycle ran"
    );

    // A runs a cycle; it is killed in the middle of it.
    sim.with_faults(|f| f.delay_ms = 1_500);
    let http = reqwest::Client::new();
    let leader = {
        let http = http.clone();
        let token = token.clone();
        tokio::spawn(async move {
            http.post(format!(
                "http://127.0.0.1:{pa}/admin/v1/integrations/{INTEGRATION}/sync"
            ))
            .bearer_auth(token)
            .json(&json!({}))
            .send()
            .await
        })
    };
    poll("A's cycle to be running", Duration::from_secs(20), || {
        let url = db.url.clone();
        async move {
            let c = cycles(&url).await;
            c.iter().any(|(_, o)| o == "running").then_some(())
        }
    })
    .await;
    signal(&a, "KILL");
    let _ = a.wait().await;
    assert!(
        leader.await.unwrap().is_err(),
        "the killed replica never answered"
    );

    // B takes over: its next run gets the lock the dead session held.
    sim.with_faults(|f| f.delay_ms = 0);
    let report: Value = poll("B to run the cycle", Duration::from_secs(30), || {
        let http = http.clone();
        let token = token.clone();
        async move {
            let r = http
                .post(format!(
                    "http://127.0.0.1:{pb}/admin/v1/integrations/{INTEGRATION}/sync"
                ))
                .bearer_auth(token)
                .json(&json!({}))
                .send()
                .await
                .ok()?;
            let v: Value = r.json().await.ok()?;
            (v["outcome"] == "success").then_some(v)
        }
    })
    .await;
    assert_eq!(report["trigger"], "manual");
    let outcomes: Vec<String> = cycles(&db.url).await.into_iter().map(|(_, o)| o).collect();
    assert_eq!(
        outcomes,
        vec!["success", "interrupted", "success"],
        "A's cycle is recorded as interrupted, B's succeeded"
    );

    signal(&b, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), b.wait())
        .await
        .expect("B stops within the grace period")
        .unwrap();
    assert!(status.success(), "{status:?}");
    sim.shutdown().await;
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_a_second_serve_on_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut first = command(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    healthy(port).await;
    let second = command(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .await
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another essentry-sync serve is already running"),
        "{err}"
    );
    assert!(err.contains("PostgreSQL"), "{err}");
    // The first one is unharmed.
    healthy(port).await;
    signal(&first, "TERM");
    let status = first.wait().await.unwrap();
    assert!(status.success(), "{status:?}");
    // Once it is gone, a new serve starts.
    let port = free_port();
    let mut again = command(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    healthy(port).await;
    signal(&again, "TERM");
    assert!(again.wait().await.unwrap().success());
}
