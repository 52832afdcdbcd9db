//! The report: the markdown table of every backend's results with its notes and error samples,
//! and the SQLite floors (meant for a 2-core machine running the load generator too).

use std::fmt::Write as _;
use std::time::Duration;

use crate::load::{Measured, Scenario};
use crate::{Backend, Options};

// Floors for SQLite.
const FLOOR_FILTER_RPS: f64 = 5_000.0;
const FLOOR_CREATE_RPS: f64 = 1_000.0;
const FLOOR_PATCH_RPS: f64 = 1_000.0;
const FLOOR_P99_MS: f64 = 50.0;
const FLOOR_RSS_MB: f64 = 150.0;

/// The SQLite floor for the successful requests/s of `scenario`.
fn floor_rps(scenario: Scenario) -> f64 {
    match scenario {
        Scenario::Filter => FLOOR_FILTER_RPS,
        Scenario::Create => FLOOR_CREATE_RPS,
        Scenario::PatchUser | Scenario::PatchGroup => FLOOR_PATCH_RPS,
    }
}

/// Everything measured on one backend.
pub struct BackendReport {
    pub backend: Backend,
    pub seed_time: Duration,
    pub rows: Vec<Measured>,
    pub member_check: String,
}

/// The markdown table, then one line per backend and per note or error sample.
pub fn table(reports: &[BackendReport], opts: &Options) -> String {
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
            let notes = m.note.iter().map(|n| ("note", n));
            let errors = m.error_samples.iter().map(|e| ("error", e));
            for (kind, text) in notes.chain(errors) {
                let _ = writeln!(
                    s,
                    "- {} {}: {kind}: {text}",
                    r.backend.name(),
                    m.scenario.label()
                );
            }
        }
    }
    s
}

/// The SQLite floor checks, as `(description, passed)`.
pub fn floor_checks(report: &BackendReport) -> Vec<(String, bool)> {
    let mut checks = Vec::new();
    for m in &report.rows {
        let floor = floor_rps(m.scenario);
        checks.push((
            format!("{}: {:.0} req/s >= {floor:.0}", m.scenario.label(), m.rps()),
            m.rps() >= floor,
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
