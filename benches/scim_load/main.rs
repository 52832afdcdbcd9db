//! SCIM load benchmark against the real `essentry-sync serve` process, on SQLite and PostgreSQL.
//!
//! Run it (release build) with:
//!
//! ```text
//! cargo bench --bench scim_load -- [--backend sqlite|postgres|both] [--users N] [--seconds S] [--concurrency C] [--keep]
//! ```
//!
//! `--keep` keeps the temporary directory (SQLite database, `server.log`) and prints its path.
//! When a scenario has errors, the server log's WARN/ERROR lines of that scenario are printed.
//!
//! Defaults: `--backend both --users 100000 --seconds 10 --concurrency 32`. PostgreSQL is reached
//! at `postgres://postgres@127.0.0.1:5432/postgres` (override with `ESSENTRY_BENCH_POSTGRES_URL`);
//! the benchmark creates a fresh database `bench_<random>` there and drops it at the end.
//!
//! For each backend it:
//! 1. seeds the store in-process through the library (not over HTTP): the `default` account,
//!    `--users` users created with `domain::directory::create_user` in transactions of 1,000, one
//!    group holding all of them, and a SCIM integration whose token the clients use ([`seed`]);
//! 2. closes the store and starts `essentry-sync serve` as a child process on a free loopback
//!    port (default settings, `warn` logging), waiting for `/healthz` ([`server`]);
//! 3. runs five scenarios, each with a 1 s unmeasured warm-up and then `--seconds` of
//!    `--concurrency` HTTP/1.1 keep-alive clients looping as fast as the server answers
//!    ([`load`], with the requests in [`requests`]):
//!    - `healthz`: `GET /healthz` (no auth, no database): the server's own limit in this run,
//!      which the lookup floor is relative to,
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
//! It prints a markdown table, the lookup/`/healthz` ratio, and checks the SQLite floors
//! ([`report`]; meant for a 2-core machine running the load generator too): filter lookups ≥ 40 %
//! of the `/healthz` rate with p99 < 10 ms, creates and user PATCH replaces ≥ 2,500/s with
//! p99 < 30 ms, group-member patches ≥ 1,000/s with p99 < 50 ms, server peak RSS < 100 MB. The exit code is 1 when a
//! SQLite floor is missed, 2 when a backend could not be benchmarked, 0 otherwise. PostgreSQL
//! figures are reported without floors.
//!
//! This file holds the command line and the orchestration of one backend, end to end.

#[path = "../common/mod.rs"]
mod common;
mod load;
mod report;
mod requests;
mod seed;
mod server;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use essentry_sync::domain::GroupId;

use crate::load::{Scenario, measure};
use crate::report::{BackendReport, floor_checks, table};
use crate::requests::Shared;
use crate::seed::{open_store, seed};
use crate::server::start_server;

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

// ---------------------------------------------------------------------------------------------
// Command line

pub use common::Backend;

#[derive(Debug, Clone)]
pub struct Options {
    backends: Vec<Backend>,
    pub users: usize,
    pub seconds: u64,
    pub concurrency: usize,
    /// Keep the temporary directory (SQLite file, server log) instead of deleting it.
    pub keep: bool,
}

const USAGE: &str = "usage: cargo bench --bench scim_load -- [--backend sqlite|postgres|both] \
                     [--users 100000] [--seconds 10] [--concurrency 32] [--keep]";

fn parse_args() -> Result<Options> {
    let mut opts = Options {
        backends: vec![Backend::Sqlite, Backend::Postgres],
        users: 100_000,
        seconds: 10,
        concurrency: 32,
        keep: false,
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
            "--keep" => opts.keep = true,
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
    let group = GroupId::from_trusted(seeded.group_id.clone());
    let sh = Arc::new(Shared::new(server.base.clone(), seeded, opts.concurrency)?);
    let mut rows = Vec::new();
    for scenario in Scenario::ALL {
        // The server's pid with each scenario's start, so a profiler can be attached to it.
        eprintln!("  {} (server pid {}) ...", scenario.label(), server.pid());
        rows.push(measure(&sh, &server, scenario, opts.seconds).await?);
    }
    if let Some(status) = server.try_wait()? {
        bail!(
            "the server died during the run ({status}):\n{}",
            server.log_tail()
        );
    }
    drop(server);

    // The group must hold the seeded users plus every member the clients added.
    let store = open_store(database_url, 1)
        .await
        .context("reopening the store to check the group")?;
    let count = store.member_count(&group).await;
    store.close().await;
    let count = count?;
    let added = sh.members_added.load(Ordering::Relaxed) as i64;
    let expected = opts.users as i64 + added;
    ensure!(
        count == expected,
        "the group has {count} members after the run, expected {expected} ({} seeded + {added} added)",
        opts.users,
    );
    Ok(BackendReport {
        backend,
        seed_time,
        rows,
        member_check: format!(
            "group member count {count} = {} seeded + {added} added: OK",
            opts.users,
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
    let keep = opts.keep;
    let result = run_in(backend, opts, &path).await;
    if keep {
        let kept = dir.keep();
        eprintln!(
            "{}: kept {} (server log: server.log)",
            backend.name(),
            kept.display()
        );
    }
    result
}

async fn run_in(backend: Backend, opts: Options, path: &Path) -> Result<BackendReport> {
    let path = path.to_owned();
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
// Main

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
