//! Microsoft Graph pull-sync benchmark: full `run_cycle`s against the Graph simulator on
//! loopback (in a child process, [`sim_process`]), for a generated tenant of `--users` assigned
//! users.
//!
//! Run it (release build) with:
//!
//! ```text
//! cargo bench --bench graph_sync -- [--users N] [--postgres | --backend sqlite|postgres|both] [--breakdown] [--keep]
//! ```
//!
//! Defaults: `--users 100000`, SQLite only. `--groups-only 200` builds the second tenant shape:
//! every user assigned through 200 groups, none directly. `--postgres` (the same as `--backend
//! both`) also runs the same cycles on PostgreSQL, after SQLite; `--backend postgres` runs them on
//! PostgreSQL only. PostgreSQL is reached at `postgres://postgres@127.0.0.1:5432/test` (override with
//! `ESSENTRY_BENCH_POSTGRES_URL`), in a fresh schema `bench_graph_<random>` that is dropped at
//! the end.
//!
//! For each backend it:
//! 1. builds [`large_tenant`](essentry_sync::entra::simulator::large_tenant)`(N)` (a tenth of the users assigned directly, the rest through
//!    groups of [`LARGE_GROUP_SIZE`] members) and starts the simulator with that tenant in a
//!    child process on `127.0.0.1`;
//! 2. opens a fresh store (SQLite file in a temp dir, or the PostgreSQL schema), creates the
//!    `default` account and a Graph integration pointing at the simulator ([`setup`]);
//! 3. runs five cycles ([`cycles`]), each timed wall-clock around `run_cycle`:
//!    - **initial**: a full read (the first cycle); every user in scope is created;
//!    - **incremental, no change**: the cycle follows its delta links and must write no
//!      directory row (`applied` created/updated/deprovisioned all 0, no create/update/delete in
//!      `changes`, and the stored users' count, version sum and latest `updated_at` unchanged);
//!    - **incremental, 1% renamed + 0.5% left groups**: `givenName` of every 100th user renamed
//!      and every 200th user (from the 50th, none of the renamed) removed from its groups in the
//!      simulator; exactly the renamed users must be updated and the others deprovisioned;
//!    - **full reconcile** (`--full`): must write nothing — the incremental cycles left the
//!      directory equal to a full cycle's result;
//!    - **full read after a rejected delta link** (the simulator expires every delta token: 410
//!      `syncStateNotFound`): must read in full and write nothing (no user still in scope
//!      deleted or re-created);
//! 4. counts Graph requests on both sides (the reader's own counter and the simulator's) against
//!    the minimum the read strategy needs, computed from the tenant: `appRoleAssignedTo` pages
//!    (`ceil(assignments / 999)`) + `getByIds` requests (`ceil(direct / 1000)`) + for each
//!    assigned group `ceil(members / 999)` member pages;
//! 5. reads `VmRSS` and `VmHWM` from `/proc/self/status` after each cycle. `VmHWM` is reset
//!    (`/proc/self/clear_refs`) just before each cycle, so the table shows each cycle's own peak
//!    as well as the process peak since start (the maximum across resets), which the floor
//!    checks. The simulator runs in its own process, so the figures are the sync's alone (the
//!    simulated 100,000-user tenant and its JSON pages weigh about 100 MB more); the process
//!    uses mimalloc, the allocator of the `essentry-sync` binary, set up as the binary sets it
//!    ([`memory`](essentry_sync::memory)).
//!
//! `--breakdown` then times the parts of one more steady cycle one by one (Graph read, loading
//! the stored users, plan, describe; nothing applied), with the RSS after each part and the peak
//! during it. `--keep` keeps the temp dir with the
//! SQLite file.
//!
//! It prints a markdown table and the checks ([`report`]). Floors, for SQLite on a 2-core
//! machine: initial cycle < 120 s, steady cycle < 30 s with zero writes, peak RSS <= 200 MB; on
//! every backend (issue 11): the incremental no-change cycle <= 1 s and <= 15% of a full read's
//! Graph requests, the 1% + 0.5% incremental cycle <= 2 s.
//! Correctness checks (every user created, zero writes when steady, updates = users changed)
//! apply to every backend; the timing and memory floors to SQLite only (PostgreSQL figures are
//! reported). Exit code: 1 when a check fails, 2 when a backend could not be benchmarked.
//! Set `RUST_LOG` (default `warn`) to see the sync's own logs on stderr.

#[path = "../common/mod.rs"]
mod common;
mod cycles;
mod report;
mod setup;
mod sim_process;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, anyhow, bail};

use crate::cycles::{BackendRun, run_backend};

// The same allocator as the `essentry-sync` binary, so the memory figures are the service's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use crate::report::{checks, table};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub use common::Backend;

#[derive(Debug, Clone)]
pub struct Options {
    pub users: usize,
    pub backends: Vec<Backend>,
    pub pg_url: String,
    /// Also time the parts of a steady cycle one by one (read, load, plan, describe).
    pub breakdown: bool,
    /// The second tenant shape: every user assigned through this many groups (none directly).
    pub groups_only: Option<usize>,
    /// Keep the temp dir (SQLite file, secret key) and print where it is.
    pub keep: bool,
}

const USAGE: &str = "usage: cargo bench --bench graph_sync -- [--users 100000] [--postgres] \
                     [--backend sqlite|postgres|both] [--groups-only 200] [--breakdown] [--keep]";

fn parse_args() -> Result<Options> {
    let mut opts = Options {
        users: 100_000,
        backends: vec![Backend::Sqlite],
        pg_url: std::env::var("ESSENTRY_BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_PG_URL.to_owned()),
        breakdown: false,
        groups_only: None,
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
        match key.as_str() {
            "--users" => {
                let v = inline
                    .or_else(|| args.next())
                    .ok_or_else(|| anyhow!("--users needs a value\n{USAGE}"))?;
                opts.users = v.replace('_', "").parse().context("--users")?;
            }
            "--postgres" => {
                if !opts.backends.contains(&Backend::Postgres) {
                    opts.backends.push(Backend::Postgres);
                }
            }
            "--backend" => {
                let v = inline
                    .or_else(|| args.next())
                    .ok_or_else(|| anyhow!("--backend needs a value\n{USAGE}"))?;
                opts.backends = match v.as_str() {
                    "sqlite" => vec![Backend::Sqlite],
                    "postgres" => vec![Backend::Postgres],
                    "both" => vec![Backend::Sqlite, Backend::Postgres],
                    other => bail!("unknown backend {other:?}\n{USAGE}"),
                };
            }
            "--breakdown" => opts.breakdown = true,
            "--groups-only" => {
                let v = inline
                    .or_else(|| args.next())
                    .ok_or_else(|| anyhow!("--groups-only needs a value\n{USAGE}"))?;
                opts.groups_only = Some(v.parse().context("--groups-only")?);
            }
            "--keep" => opts.keep = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if opts.users < 100 {
        bail!("--users must be at least 100 (1% of them are renamed)");
    }
    Ok(opts)
}

/// The highest `VmHWM` seen before any reset, in kB (the process peak across resets).
static PROCESS_PEAK_KB: AtomicU64 = AtomicU64::new(0);

/// Memory figures of this process, in MB.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// `VmRSS` now.
    pub rss_mb: f64,
    /// `VmHWM`: the peak since the last [`reset_peak`] (or since start).
    pub hwm_mb: f64,
    /// The process peak since start, across resets.
    pub peak_mb: f64,
}

/// Reads `VmRSS` and `VmHWM` from `/proc/self/status`.
pub fn memory() -> Result<Memory> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| anyhow!("no {name} in /proc/self/status"))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("parsing {line:?}"))
    };
    let (rss, hwm) = (field("VmRSS:")?, field("VmHWM:")?);
    let peak = PROCESS_PEAK_KB.fetch_max(hwm, Ordering::Relaxed).max(hwm);
    let mb = |kb: u64| kb as f64 / 1024.0;
    Ok(Memory {
        rss_mb: mb(rss),
        hwm_mb: mb(hwm),
        peak_mb: mb(peak),
    })
}

/// Resets `VmHWM` to the current RSS (`/proc/self/clear_refs`, Linux 4.0+) so that the next
/// reading is the peak of what ran in between; the process peak so far is kept by [`memory`].
/// False when the kernel does not allow it.
pub fn reset_peak() -> bool {
    let _ = memory();
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    // The simulator runs in a child process (see `sim_process`), started as this binary.
    let mut argv = std::env::args().skip(1);
    if argv.next().as_deref() == Some("--simulator-child") {
        let users = argv.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
        let groups_only = argv.next().and_then(|n| n.parse().ok());
        return sim_process::child_main(users, groups_only).await;
    }
    common::init_tracing();

    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    match memory() {
        Ok(m) => eprintln!(
            "process at start: RSS {:.1} MB (peak {:.1} MB)",
            m.rss_mb, m.peak_mb
        ),
        Err(e) => eprintln!("warning: cannot read memory figures: {e:#}"),
    }
    let mut runs: Vec<BackendRun> = Vec::new();
    let mut failed = Vec::new();
    for &backend in &opts.backends {
        match run_backend(backend, &opts).await {
            Ok(r) => runs.push(r),
            Err(e) => {
                eprintln!("error: {} benchmark failed: {e:#}", backend.name());
                failed.push(backend.name());
            }
        }
    }
    println!("{}", table(&runs, &opts));

    let mut missed = Vec::new();
    for run in &runs {
        println!("Checks, {}:\n", run.backend.name());
        for c in checks(run) {
            let verdict = match (c.passed, c.enforced) {
                (true, _) => "PASS",
                (false, true) => "FAIL",
                (false, false) => "MISS (reported only)",
            };
            println!("- {verdict} {}", c.what);
            if !c.passed && c.enforced {
                missed.push(format!("{}: {}", run.backend.name(), c.what));
            }
        }
        println!();
    }
    if !failed.is_empty() {
        eprintln!("could not benchmark: {}", failed.join(", "));
        return ExitCode::from(2);
    }
    if !missed.is_empty() {
        eprintln!("checks failed:\n  {}", missed.join("\n  "));
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
