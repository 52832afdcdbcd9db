//! SCIM load benchmark against the real `essentry-sync serve` process, on SQLite and PostgreSQL.
//!
//! Run it (release build) with:
//!
//! ```text
//! cargo bench --bench scim_load -- [--backend sqlite|postgres|both] [--users 100000] \
//!     [--seconds 10] [--concurrency 32]
//! ```
//!
//! Defaults: `--backend both --users 100000 --seconds 10 --concurrency 32`. PostgreSQL is reached
//! at `postgres://postgres@127.0.0.1:5432/postgres` (override with `ESSENTRY_BENCH_POSTGRES_URL`);
//! the benchmark creates a fresh database `bench_<random>` there and drops it at the end.
//!
//! For each backend it:
//! 1. seeds the store in-process through the library (not over HTTP): the `default` account,
//!    `--users` users created with `domain::directory::create_user` in transactions of 1,000, one
//!    group holding all of them, and a SCIM integration whose token the clients use;
//! 2. closes the store and starts `essentry-sync serve` as a child process on a free loopback
//!    port (default settings, `warn` logging), waiting for `/healthz`;
//! 3. runs four scenarios, each with a 1 s unmeasured warm-up and then `--seconds` of
//!    `--concurrency` HTTP/1.1 keep-alive clients looping as fast as the server answers:
//!    - `filter`: `GET /Users?filter=userName eq "<random seeded user>"` (exactly one result
//!      expected; anything else counts as an error),
//!    - `create`: `POST /Users` of new users with unique emails,
//!    - `patch user`: `PATCH /Users/{id}` replacing `name.givenName` of random seeded users (each
//!      client owns a disjoint slice of users, so clients never race on one user's version),
//!    - `patch group`: `PATCH /Groups/{id}` adding one member — a user from `create`, not yet a
//!      member — to the group of `--users` members (if `create` did not leave enough such
//!      users for the whole run, more are created with `POST /Users` after the warm-up,
//!      unmeasured); the member count is checked through the library at the end;
//! 4. records for each scenario successful requests/s, p50/p99 latency of every request
//!    (errors included), the error count (transport errors and any non-2xx), and the server's
//!    `VmRSS` after the scenario and peak `VmHWM` from `/proc/<pid>/status`.
//!
//! It prints a markdown table and checks the SQLite floors (meant for a 2-core machine running
//! the load generator too): filter ≥ 5,000/s, creates ≥ 1,000/s, user and group patches
//! ≥ 1,000/s, p99 < 50 ms for each, server peak RSS < 150 MB. The exit code is 1 when a SQLite
//! floor is missed, 2 when a backend could not be benchmarked, 0 otherwise. PostgreSQL figures
//! are reported without floors.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use chrono::Utc;
use essentry_sync::domain::directory::{OpContext, create_user};
use essentry_sync::domain::{GroupId, GroupRecord, Source};
use essentry_sync::integrations;
use essentry_sync::scim::resource::{GROUP_URN, USER_URN, group_from_body, user_from_body};
use essentry_sync::secrets::SecretKey;
use essentry_sync::store::{Store, StoreConfig};
use serde_json::{Value, json};

const PATCH_OP_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const SCIM_JSON: &str = "application/scim+json";
const SEED_BATCH: usize = 1_000;
const WARM_UP: Duration = Duration::from_secs(1);
const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

// Floors for SQLite.
const FLOOR_FILTER_RPS: f64 = 5_000.0;
const FLOOR_CREATE_RPS: f64 = 1_000.0;
const FLOOR_PATCH_RPS: f64 = 1_000.0;
const FLOOR_P99_MS: f64 = 50.0;
const FLOOR_RSS_MB: f64 = 150.0;

// ---------------------------------------------------------------------------------------------
// Command line

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }
}

#[derive(Debug, Clone)]
struct Options {
    backends: Vec<Backend>,
    users: usize,
    seconds: u64,
    concurrency: usize,
}

const USAGE: &str = "usage: cargo bench --bench scim_load -- [--backend sqlite|postgres|both] \
                     [--users 100000] [--seconds 10] [--concurrency 32]";

fn parse_args() -> Result<Options> {
    let mut opts = Options {
        backends: vec![Backend::Sqlite, Backend::Postgres],
        users: 100_000,
        seconds: 10,
        concurrency: 32,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        // `cargo bench` passes `--bench` to every bench binary.
        if arg == "--bench" {
            continue;
        }
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| anyhow!("{key} needs a value\n{USAGE}"))
        };
        match key.as_str() {
            "--backend" => {
                opts.backends = match value()?.as_str() {
                    "sqlite" => vec![Backend::Sqlite],
                    "postgres" => vec![Backend::Postgres],
                    "both" => vec![Backend::Sqlite, Backend::Postgres],
                    other => bail!("unknown backend {other:?}\n{USAGE}"),
                }
            }
            "--users" => opts.users = value()?.parse().context("--users")?,
            "--seconds" => opts.seconds = value()?.parse().context("--seconds")?,
            "--concurrency" => opts.concurrency = value()?.parse().context("--concurrency")?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    ensure!(opts.concurrency >= 1, "--concurrency must be at least 1");
    ensure!(opts.seconds >= 1, "--seconds must be at least 1");
    ensure!(
        opts.users >= opts.concurrency,
        "--users must be at least --concurrency"
    );
    Ok(opts)
}

// ---------------------------------------------------------------------------------------------
// Results

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Filter,
    Create,
    PatchUser,
    PatchGroup,
}

impl Scenario {
    const ALL: [Scenario; 4] = [
        Self::Filter,
        Self::Create,
        Self::PatchUser,
        Self::PatchGroup,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Filter => "a. GET /Users?filter=userName eq",
            Self::Create => "b. POST /Users",
            Self::PatchUser => "c. PATCH /Users/{id} name.givenName",
            Self::PatchGroup => "d. PATCH /Groups/{id} add member",
        }
    }

    fn floor_rps(self) -> f64 {
        match self {
            Self::Filter => FLOOR_FILTER_RPS,
            Self::Create => FLOOR_CREATE_RPS,
            Self::PatchUser | Self::PatchGroup => FLOOR_PATCH_RPS,
        }
    }
}

/// One measured phase of one scenario.
#[derive(Debug, Clone)]
struct Measured {
    scenario: Scenario,
    ok: u64,
    errors: u64,
    elapsed: Duration,
    p50_ms: f64,
    p99_ms: f64,
    rss_mb: f64,
    hwm_mb: f64,
    /// A few distinct error descriptions, for the report.
    error_samples: Vec<String>,
    /// Set when the scenario ran out of work before the time was up.
    note: Option<String>,
}

impl Measured {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

struct BackendReport {
    backend: Backend,
    seed_time: Duration,
    rows: Vec<Measured>,
    member_check: String,
}

// ---------------------------------------------------------------------------------------------
// Seeding through the library

fn user_name(i: usize) -> String {
    format!("user{i:06}@bench.example.com")
}

struct Seeded {
    token: String,
    user_ids: Vec<String>,
    group_id: String,
}

async fn seed(url: &str, dir: &Path, users: usize, parallel: usize) -> Result<Seeded> {
    let store = Arc::new(
        Store::connect(&StoreConfig {
            url: url.to_owned(),
            max_connections: parallel as u32 + 1,
            pg_schema: None,
        })
        .await
        .context("opening the store for seeding")?,
    );
    let result = seed_into(&store, dir, users, parallel).await;
    store.close().await;
    result
}

async fn seed_into(
    store: &Arc<Store>,
    dir: &Path,
    users: usize,
    parallel: usize,
) -> Result<Seeded> {
    let now = Utc::now();
    let account = store.ensure_account("default", now).await?;
    let key = SecretKey::load_or_create(&dir.join("secret.key"))?;
    let (_, token) = integrations::create_scim(
        store,
        &key,
        &account,
        "default",
        "EntraID",
        "http://127.0.0.1/scim/v2",
        now,
    )
    .await?;
    let ctx = OpContext {
        account: account.clone(),
        source: Source::Scim,
        integration_id: None,
        cycle_id: None,
        now,
    };

    // Batches of SEED_BATCH users, each in its own transaction; `parallel` tasks take turns.
    let batches: Vec<(usize, usize)> = (0..users)
        .step_by(SEED_BATCH)
        .map(|start| (start, (start + SEED_BATCH).min(users)))
        .collect();
    let next = Arc::new(AtomicUsize::new(0));
    let batches = Arc::new(batches);
    let mut tasks = Vec::new();
    for _ in 0..parallel.max(1) {
        let (store, ctx, next, batches) =
            (store.clone(), ctx.clone(), next.clone(), batches.clone());
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<(usize, Vec<String>)> = Vec::new();
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(start, end)) = batches.get(b) else {
                    break;
                };
                let mut tx = store.begin().await?;
                let mut ids = Vec::with_capacity(end - start);
                for i in start..end {
                    let name = user_name(i);
                    let body = json!({
                        "schemas": [USER_URN],
                        "userName": name,
                        "externalId": format!("ext-{i:06}"),
                        "displayName": format!("User {i:06}"),
                        "active": true,
                        "name": {"givenName": format!("Given{i:06}"), "familyName": "Bench"},
                        "emails": [{"value": name, "type": "work", "primary": true}],
                    });
                    let desired = user_from_body(&body)
                        .map_err(|e| anyhow!("seed user {i} is not a valid SCIM user: {e:?}"))?;
                    let user = create_user(&mut tx, &ctx, desired).await?;
                    ids.push(user.id.as_str().to_owned());
                }
                tx.commit().await?;
                out.push((start, ids));
            }
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut parts = Vec::new();
    for t in tasks {
        parts.extend(t.await.context("seeding task panicked")??);
    }
    parts.sort_by_key(|(start, _)| *start);
    let user_ids: Vec<String> = parts.into_iter().flat_map(|(_, ids)| ids).collect();
    ensure!(
        user_ids.len() == users,
        "seeded {} users, not {users}",
        user_ids.len()
    );

    let g = group_from_body(&json!({
        "schemas": [GROUP_URN],
        "displayName": "All employees",
        "externalId": "all-employees",
    }))
    .map_err(|e| anyhow!("seed group is not a valid SCIM group: {e:?}"))?;
    let group = GroupRecord {
        id: GroupId::generate(),
        account_id: account.clone(),
        display_name: g.display_name,
        external_id: g.external_id,
        resource: g.resource,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let mut tx = store.begin().await?;
    tx.insert_group(&group).await?;
    tx.add_members(&group.id, &user_ids).await?;
    tx.commit().await?;
    let members = store.member_count(&group.id).await?;
    ensure!(
        members == users as i64,
        "the seeded group has {members} members, not {users}"
    );
    Ok(Seeded {
        token: token.expose().to_owned(),
        user_ids,
        group_id: group.id.as_str().to_owned(),
    })
}

// ---------------------------------------------------------------------------------------------
// The server process

/// The running `essentry-sync serve`; killed when dropped (also while unwinding).
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(l.local_addr()?.port())
}

async fn start_server(dir: &Path, database_url: &str) -> Result<Server> {
    let port = free_port()?;
    let public = format!("http://127.0.0.1:{port}");
    let log = dir.join("server.log");
    let child = Command::new(env!("CARGO_BIN_EXE_essentry-sync"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .env("DATABASE_URL", database_url)
        .env("ESSENTRY_SECRETS__KEY_FILE", dir.join("secret.key"))
        .env("ESSENTRY_SERVER__PUBLIC_URL", &public)
        .env("ESSENTRY_LOG__FILTER", "warn")
        .env_remove("RUST_LOG")
        .env_remove("ESSENTRY_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).context("creating server.log")?)
        .spawn()
        .context("starting essentry-sync serve")?;
    let mut server = Server {
        child,
        base: format!("{public}/scim/v2"),
        log,
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!(
                "the server exited ({status}) before answering:\n{}",
                server.log_tail()
            );
        }
        if let Ok(r) = client.get(format!("{public}/healthz")).send().await
            && r.status().is_success()
        {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!(
                "the server did not answer /healthz within 60 s:\n{}",
                server.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `(VmRSS, VmHWM)` of `pid`, in MB.
fn memory_mb(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| anyhow!("no {name} in /proc/{pid}/status"))?;
        let kb: f64 = line
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| anyhow!("malformed {name} line: {line:?}"))?
            .parse()
            .with_context(|| format!("malformed {name} line: {line:?}"))?;
        Ok(kb / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

// ---------------------------------------------------------------------------------------------
// Load generation

/// SplitMix64: a small, fast, good-enough generator for picking users.
struct Rng(u64);

impl Rng {
    fn new(salt: u64) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self(nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// What every client shares.
struct Shared {
    client: reqwest::Client,
    base: String,
    auth: String,
    user_ids: Vec<String>,
    group_id: String,
    concurrency: usize,
    run_tag: String,
    seq: AtomicU64,
    /// Users created by the `create` scenario, not yet group members.
    created: Mutex<Vec<String>>,
    /// Members successfully added by the `patch group` scenario (warm-up included).
    members_added: AtomicU64,
}

enum Outcome {
    Ok,
    Error(String),
    /// No work left (the `patch group` scenario ran out of non-member users).
    Exhausted,
}

fn snippet(text: &str) -> String {
    let t: String = text.chars().take(200).collect();
    t.replace('\n', " ")
}

async fn one_request(sh: &Shared, scenario: Scenario, worker: usize, rng: &mut Rng) -> Outcome {
    let result = match scenario {
        Scenario::Filter => filter_once(sh, rng).await,
        Scenario::Create => create_once(sh).await,
        Scenario::PatchUser => patch_user_once(sh, worker, rng).await,
        Scenario::PatchGroup => {
            let next = sh
                .created
                .lock()
                .expect("created-users list poisoned")
                .pop();
            match next {
                None => return Outcome::Exhausted,
                Some(id) => patch_group_once(sh, &id).await,
            }
        }
    };
    match result {
        Ok(()) => Outcome::Ok,
        Err(e) => Outcome::Error(e),
    }
}

/// Sends, and returns the status with the body text (or a transport error).
async fn send(req: reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, String), String> {
    let resp = req.send().await.map_err(|e| format!("transport: {e}"))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("reading body: {e}"))?;
    Ok((status, text))
}

fn expect_status(
    status: reqwest::StatusCode,
    text: &str,
    ok: impl Fn(reqwest::StatusCode) -> bool,
) -> Result<(), String> {
    if ok(status) {
        Ok(())
    } else {
        Err(format!("HTTP {}: {}", status.as_u16(), snippet(text)))
    }
}

async fn filter_once(sh: &Shared, rng: &mut Rng) -> Result<(), String> {
    let name = user_name(rng.below(sh.user_ids.len()));
    let query = serde_urlencoded::to_string([("filter", format!("userName eq \"{name}\""))])
        .map_err(|e| format!("encoding the filter: {e}"))?;
    let req = sh
        .client
        .get(format!("{}/Users?{query}", sh.base))
        .header("authorization", &sh.auth);
    let (status, text) = send(req).await?;
    expect_status(status, &text, |s| s.is_success())?;
    let body: Value =
        serde_json::from_str(&text).map_err(|e| format!("200 with a non-JSON body: {e}"))?;
    let total = body["totalResults"].as_i64();
    let found = body["Resources"].as_array().map(|r| {
        r.iter()
            .filter_map(|u| u["userName"].as_str())
            .collect::<Vec<_>>()
    });
    match (total, found) {
        (Some(1), Some(names)) if names == [name.as_str()] => Ok(()),
        _ => Err(format!(
            "filter for {name} did not return exactly that user: {}",
            snippet(&text)
        )),
    }
}

async fn create_once(sh: &Shared) -> Result<(), String> {
    let n = sh.seq.fetch_add(1, Ordering::Relaxed);
    let email = format!("new-{}-{n}@bench.example.com", sh.run_tag);
    let body = json!({
        "schemas": [USER_URN],
        "userName": email,
        "externalId": format!("new-{}-{n}", sh.run_tag),
        "displayName": format!("New User {n}"),
        "active": true,
        "name": {"givenName": format!("New{n}"), "familyName": "Bench"},
        "emails": [{"value": email, "type": "work", "primary": true}],
    });
    let req = sh
        .client
        .post(format!("{}/Users", sh.base))
        .header("authorization", &sh.auth)
        .header("content-type", SCIM_JSON)
        .body(body.to_string());
    let (status, text) = send(req).await?;
    expect_status(status, &text, |s| s == reqwest::StatusCode::CREATED)?;
    let created: Value =
        serde_json::from_str(&text).map_err(|e| format!("201 with a non-JSON body: {e}"))?;
    let id = created["id"]
        .as_str()
        .ok_or_else(|| format!("201 without an id: {}", snippet(&text)))?;
    sh.created
        .lock()
        .expect("created-users list poisoned")
        .push(id.to_owned());
    Ok(())
}

async fn patch_user_once(sh: &Shared, worker: usize, rng: &mut Rng) -> Result<(), String> {
    // Worker w patches only users w, w + c, w + 2c, ... so no two clients race on one user.
    let slice = sh.user_ids.len() / sh.concurrency;
    let id = &sh.user_ids[rng.below(slice) * sh.concurrency + worker];
    let n = sh.seq.fetch_add(1, Ordering::Relaxed);
    let body = json!({
        "schemas": [PATCH_OP_URN],
        "Operations": [{"op": "replace", "path": "name.givenName", "value": format!("Patched{n}")}],
    });
    let req = sh
        .client
        .patch(format!("{}/Users/{id}", sh.base))
        .header("authorization", &sh.auth)
        .header("content-type", SCIM_JSON)
        .body(body.to_string());
    let (status, text) = send(req).await?;
    expect_status(status, &text, |s| s.is_success())
}

async fn patch_group_once(sh: &Shared, member: &str) -> Result<(), String> {
    let body = json!({
        "schemas": [PATCH_OP_URN],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": member}]}],
    });
    let req = sh
        .client
        .patch(format!("{}/Groups/{}", sh.base, sh.group_id))
        .header("authorization", &sh.auth)
        .header("content-type", SCIM_JSON)
        .body(body.to_string());
    let (status, text) = send(req).await?;
    expect_status(status, &text, |s| s.is_success())?;
    sh.members_added.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

struct PhaseResult {
    ok: u64,
    errors: u64,
    latencies_us: Vec<u64>,
    elapsed: Duration,
    error_samples: Vec<String>,
    exhausted: bool,
}

/// `concurrency` clients loop over `scenario` until `duration` has passed.
async fn run_phase(sh: &Arc<Shared>, scenario: Scenario, duration: Duration) -> PhaseResult {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(sh.concurrency);
    for worker in 0..sh.concurrency {
        let sh = sh.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(worker as u64 + 1);
            let mut latencies = Vec::with_capacity(16_384);
            let (mut ok, mut errors, mut samples, mut exhausted) = (0u64, 0u64, Vec::new(), false);
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let outcome = one_request(&sh, scenario, worker, &mut rng).await;
                let us = t0.elapsed().as_micros() as u64;
                match outcome {
                    Outcome::Ok => ok += 1,
                    Outcome::Error(e) => {
                        errors += 1;
                        if samples.len() < 3 {
                            samples.push(e);
                        }
                    }
                    Outcome::Exhausted => {
                        exhausted = true;
                        break;
                    }
                }
                latencies.push(us);
            }
            (ok, errors, latencies, samples, exhausted, Instant::now())
        }));
    }
    let mut r = PhaseResult {
        ok: 0,
        errors: 0,
        latencies_us: Vec::new(),
        elapsed: Duration::ZERO,
        error_samples: Vec::new(),
        exhausted: false,
    };
    let mut last_end = started;
    for t in tasks {
        match t.await {
            Ok((ok, errors, lat, samples, exhausted, ended)) => {
                r.ok += ok;
                r.errors += errors;
                r.latencies_us.extend(lat);
                for s in samples {
                    if r.error_samples.len() < 5 && !r.error_samples.contains(&s) {
                        r.error_samples.push(s);
                    }
                }
                r.exhausted |= exhausted;
                last_end = last_end.max(ended);
            }
            Err(e) => {
                r.errors += 1;
                r.error_samples.push(format!("client task failed: {e}"));
            }
        }
    }
    r.elapsed = last_end - started;
    r
}

/// Nearest-rank percentile of sorted microseconds, in ms.
fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    sorted_us[rank.clamp(1, sorted_us.len()) - 1] as f64 / 1000.0
}

async fn measure(
    sh: &Arc<Shared>,
    server: &Server,
    scenario: Scenario,
    seconds: u64,
) -> Result<Measured> {
    eprintln!(
        "  {}: warm-up {} s, then {seconds} s ...",
        scenario.label(),
        WARM_UP.as_secs()
    );
    let warm = run_phase(sh, scenario, WARM_UP).await;
    if warm.errors > 0 {
        eprintln!(
            "    warm-up errors: {} (e.g. {:?})",
            warm.errors,
            warm.error_samples.first()
        );
    }
    let mut notes = Vec::new();
    if scenario == Scenario::PatchGroup
        && let Some(n) = top_up_candidates(sh, &warm, seconds).await
    {
        notes.push(n);
    }
    let mut r = run_phase(sh, scenario, Duration::from_secs(seconds)).await;
    let (rss_mb, hwm_mb) = memory_mb(server.pid())?;
    r.latencies_us.sort_unstable();
    if r.exhausted {
        notes.push(format!(
            "ran out of non-member users after {:.1} s (the rate is over that time)",
            r.elapsed.as_secs_f64()
        ));
    }
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    let m = Measured {
        scenario,
        ok: r.ok,
        errors: r.errors,
        elapsed: r.elapsed,
        p50_ms: percentile_ms(&r.latencies_us, 50.0),
        p99_ms: percentile_ms(&r.latencies_us, 99.0),
        rss_mb,
        hwm_mb,
        error_samples: r.error_samples,
        note,
    };
    eprintln!(
        "    {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors, RSS {:.1} MB (peak {:.1} MB)",
        m.rps(),
        m.p50_ms,
        m.p99_ms,
        m.errors,
        m.rss_mb,
        m.hwm_mb
    );
    Ok(m)
}

/// The `patch group` scenario consumes one user from `create` per request. When the warm-up
/// rate says that `create` did not leave enough of them for the measured `seconds` (group patches
/// are cheaper than creates), more are created with `POST /Users` first, unmeasured.
async fn top_up_candidates(sh: &Arc<Shared>, warm: &PhaseResult, seconds: u64) -> Option<String> {
    let rate = warm.ok as f64 / warm.elapsed.as_secs_f64().max(1e-9);
    let need = (rate * seconds as f64 * 1.5) as usize + sh.concurrency;
    let have = || {
        sh.created
            .lock()
            .expect("created-users list poisoned")
            .len()
    };
    let before = have();
    if before >= need {
        return None;
    }
    eprintln!("    topping up non-member users: {before} left, about {need} needed ...");
    let mut errors = 0;
    while have() < need {
        let r = run_phase(sh, Scenario::Create, Duration::from_millis(500)).await;
        errors += r.errors;
        if r.ok == 0 {
            break;
        }
    }
    Some(format!(
        "{} more non-member users were created with POST /Users (unmeasured, {errors} errors) \
         after the warm-up, so that the run would not run out",
        have() - before
    ))
}

// ---------------------------------------------------------------------------------------------
// One backend, end to end

async fn run_backend(
    backend: Backend,
    opts: &Options,
    database_url: &str,
    dir: &Path,
) -> Result<BackendReport> {
    eprintln!("{}: seeding {} users ...", backend.name(), opts.users);
    let started = Instant::now();
    let parallel = match backend {
        Backend::Sqlite => 1, // one writer connection: more tasks would only queue
        Backend::Postgres => 4,
    };
    let seeded = seed(database_url, dir, opts.users, parallel).await?;
    let seed_time = started.elapsed();
    eprintln!("  seeded in {:.1} s", seed_time.as_secs_f64());

    let mut server = start_server(dir, database_url).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.concurrency)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let sh = Arc::new(Shared {
        client,
        base: server.base.clone(),
        auth: format!("Bearer {}", seeded.token),
        user_ids: seeded.user_ids,
        group_id: seeded.group_id.clone(),
        concurrency: opts.concurrency,
        run_tag: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
        seq: AtomicU64::new(0),
        created: Mutex::new(Vec::new()),
        members_added: AtomicU64::new(0),
    });
    let mut rows = Vec::new();
    for scenario in Scenario::ALL {
        rows.push(measure(&sh, &server, scenario, opts.seconds).await?);
    }
    if let Some(status) = server.child.try_wait()? {
        bail!(
            "the server died during the run ({status}):\n{}",
            server.log_tail()
        );
    }
    drop(server);

    // The group must hold the seeded users plus every member the clients added.
    let store = Store::connect(&StoreConfig {
        url: database_url.to_owned(),
        max_connections: 1,
        pg_schema: None,
    })
    .await
    .context("reopening the store to check the group")?;
    let group = GroupId::from_trusted(seeded.group_id.clone());
    let count = store.member_count(&group).await;
    store.close().await;
    let count = count?;
    let expected = opts.users as i64 + sh.members_added.load(Ordering::Relaxed) as i64;
    ensure!(
        count == expected,
        "the group has {count} members after the run, expected {expected} ({} seeded + {} added)",
        opts.users,
        expected - opts.users as i64
    );
    Ok(BackendReport {
        backend,
        seed_time,
        rows,
        member_check: format!(
            "group member count {count} = {} seeded + {} added: OK",
            opts.users,
            expected - opts.users as i64
        ),
    })
}

/// A temporary SQLite file, or a fresh PostgreSQL database that is dropped afterwards.
async fn run_one(backend: Backend, opts: Options) -> Result<BackendReport> {
    let dir = tempfile::Builder::new()
        .prefix("essentry-bench-")
        .tempdir()
        .context("creating a temp dir")?;
    let path = dir.path().to_owned();
    match backend {
        Backend::Sqlite => {
            let url = format!("sqlite://{}", path.join("data/essentry.db").display());
            spawn_guarded(backend, opts, url, path).await
        }
        Backend::Postgres => {
            let admin = std::env::var("ESSENTRY_BENCH_POSTGRES_URL")
                .unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
            let db = format!("bench_{}", uuid::Uuid::new_v4().simple());
            pg_exec(&admin, &format!("CREATE DATABASE \"{db}\""))
                .await
                .with_context(|| {
                    format!("creating database {db} (is PostgreSQL at {admin} reachable?)")
                })?;
            let url = with_database(&admin, &db);
            let result = spawn_guarded(backend, opts, url, path).await;
            if let Err(e) = pg_exec(
                &admin,
                &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
            )
            .await
            {
                eprintln!("warning: could not drop database {db}: {e:#}");
            }
            result
        }
    }
}

/// Runs the backend in its own task so that a panic (or Ctrl-C) still reaches the cleanup.
async fn spawn_guarded(
    backend: Backend,
    opts: Options,
    url: String,
    dir: PathBuf,
) -> Result<BackendReport> {
    let task = tokio::spawn(async move { run_backend(backend, &opts, &url, &dir).await });
    let abort = task.abort_handle();
    tokio::select! {
        joined = task => joined.map_err(|e| anyhow!("the {} run panicked: {e}", backend.name()))?,
        _ = tokio::signal::ctrl_c() => {
            abort.abort();
            // Let the aborted task drop its server guard before the database goes.
            tokio::time::sleep(Duration::from_millis(200)).await;
            Err(anyhow!("interrupted"))
        }
    }
}

async fn pg_exec(url: &str, sql: &str) -> Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// `url` with its database name replaced by `db` (query string kept).
fn with_database(url: &str, db: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, format!("?{q}")),
        None => (url, String::new()),
    };
    let after_scheme = head.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = head[after_scheme..]
        .find('/')
        .map(|i| after_scheme + i)
        .unwrap_or(head.len());
    format!("{}/{db}{query}", &head[..host_end])
}

// ---------------------------------------------------------------------------------------------
// Report

fn table(reports: &[BackendReport], opts: &Options) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n### essentry-sync SCIM load: {} users, {} clients, {} s per scenario (after 1 s warm-up)\n",
        opts.users, opts.concurrency, opts.seconds
    );
    let _ = writeln!(
        s,
        "| Backend | Scenario | OK requests | Req/s | p50 ms | p99 ms | Errors | Server RSS MB | Peak RSS (HWM) MB |"
    );
    let _ = writeln!(s, "|---|---|--:|--:|--:|--:|--:|--:|--:|");
    for r in reports {
        let _ = writeln!(
            s,
            "| {} | seeding ({} users + group + integration, in-process) | {} | {:.0} users/s | | | | | |",
            r.backend.name(),
            opts.users,
            opts.users,
            opts.users as f64 / r.seed_time.as_secs_f64().max(1e-9),
        );
        for m in &r.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {} | {:.1} | {:.1} |",
                r.backend.name(),
                m.scenario.label(),
                m.ok,
                m.rps(),
                m.p50_ms,
                m.p99_ms,
                m.errors,
                m.rss_mb,
                m.hwm_mb
            );
        }
    }
    s.push('\n');
    for r in reports {
        let _ = writeln!(
            s,
            "- {}: seeding took {:.1} s; {}",
            r.backend.name(),
            r.seed_time.as_secs_f64(),
            r.member_check
        );
        for m in &r.rows {
            if let Some(note) = &m.note {
                let _ = writeln!(
                    s,
                    "- {} {}: note: {note}",
                    r.backend.name(),
                    m.scenario.label()
                );
            }
            for e in &m.error_samples {
                let _ = writeln!(
                    s,
                    "- {} {}: error: {e}",
                    r.backend.name(),
                    m.scenario.label()
                );
            }
        }
    }
    s
}

/// The SQLite floor checks, as `(description, passed)`.
fn floor_checks(report: &BackendReport) -> Vec<(String, bool)> {
    let mut checks = Vec::new();
    for m in &report.rows {
        checks.push((
            format!(
                "{}: {:.0} req/s >= {:.0}",
                m.scenario.label(),
                m.rps(),
                m.scenario.floor_rps()
            ),
            m.rps() >= m.scenario.floor_rps(),
        ));
        checks.push((
            format!(
                "{}: p99 {:.2} ms < {FLOOR_P99_MS:.0} ms",
                m.scenario.label(),
                m.p99_ms
            ),
            m.p99_ms < FLOOR_P99_MS,
        ));
    }
    let peak = report.rows.iter().map(|m| m.hwm_mb).fold(0.0, f64::max);
    checks.push((
        format!("server peak RSS {peak:.1} MB < {FLOOR_RSS_MB:.0} MB"),
        peak < FLOOR_RSS_MB,
    ));
    checks
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut reports = Vec::new();
    let mut failed_backends = Vec::new();
    for &backend in &opts.backends {
        match run_one(backend, opts.clone()).await {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("error: {} benchmark failed: {e:#}", backend.name());
                failed_backends.push(backend.name());
            }
        }
    }
    println!("{}", table(&reports, &opts));

    let mut missed = Vec::new();
    for r in reports.iter().filter(|r| r.backend == Backend::Sqlite) {
        println!("SQLite floors (2-core machine, load generator on the same machine):\n");
        for (what, passed) in floor_checks(r) {
            println!("- {} {what}", if passed { "PASS" } else { "FAIL" });
            if !passed {
                missed.push(what);
            }
        }
        println!();
    }
    for r in &reports {
        let errors: u64 = r.rows.iter().map(|m| m.errors).sum();
        if errors > 0 {
            println!(
                "WARNING: {} answered {errors} request(s) with an error (see above)",
                r.backend.name()
            );
        }
    }
    if !failed_backends.is_empty() {
        eprintln!("could not benchmark: {}", failed_backends.join(", "));
        return ExitCode::from(2);
    }
    if !missed.is_empty() {
        eprintln!("SQLite floors missed:\n  {}", missed.join("\n  "));
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
