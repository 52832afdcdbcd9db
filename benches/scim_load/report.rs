//! The report: the markdown table of every backend's results with its notes and error samples,
//! the lookup/`/healthz` ratio, and the SQLite floors (meant for a 2-core machine running the
//! load generator too).

use std::fmt::Write as _;
use std::time::Duration;

use crate::load::{Measured, Scenario};
use crate::{Backend, Options};

// Floors for SQLite (issue 13).
/// Lookups: at least this share of the `/healthz` rate measured in the same run.
const FLOOR_FILTER_SHARE_OF_HEALTHZ: f64 = 0.40;
const FLOOR_FILTER_P99_MS: f64 = 10.0;
const FLOOR_WRITE_RPS: f64 = 2_500.0;
const FLOOR_WRITE_P99_MS: f64 = 30.0;
/// The group-member PATCH keeps its earlier floor.
const FLOOR_GROUP_PATCH_RPS: f64 = 1_000.0;
const FLOOR_GROUP_PATCH_P99_MS: f64 = 50.0;
const FLOOR_RSS_MB: f64 = 100.0;

/// The SQLite floor of `scenario`: `(requests/s, p99 ms)`, or `None` for `/healthz` itself.
fn floor(scenario: Scenario, healthz_rps: f64) -> Option<(f64, f64)> {
    match scenario {
        Scenario::Healthz => None,
        Scenario::Filter => Some((
            healthz_rps * FLOOR_FILTER_SHARE_OF_HEALTHZ,
            FLOOR_FILTER_P99_MS,
        )),
        Scenario::Create | Scenario::PatchUser => Some((FLOOR_WRITE_RPS, FLOOR_WRITE_P99_MS)),
        Scenario::PatchGroup => Some((FLOOR_GROUP_PATCH_RPS, FLOOR_GROUP_PATCH_P99_MS)),
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
        if let Some((healthz, share)) = healthz_ratio(r) {
            let _ = writeln!(
                s,
                "- {}: lookups / healthz = {:.1} % (/healthz {healthz:.0} req/s in the same run)",
                r.backend.name(),
                100.0 * share
            );
        }
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

/// The `/healthz` rate of the run, and the lookup rate as a share of it.
pub fn healthz_ratio(report: &BackendReport) -> Option<(f64, f64)> {
    let rate = |s: Scenario| {
        report
            .rows
            .iter()
            .find(|m| m.scenario == s)
            .map(Measured::rps)
    };
    let healthz = rate(Scenario::Healthz)?;
    Some((healthz, rate(Scenario::Filter)? / healthz.max(1e-9)))
}

/// The SQLite floor checks, as `(description, passed)`.
pub fn floor_checks(report: &BackendReport) -> Vec<(String, bool)> {
    let mut checks = Vec::new();
    let healthz = healthz_ratio(report).map_or(0.0, |(h, _)| h);
    for m in &report.rows {
        let Some((floor_rps, floor_p99)) = floor(m.scenario, healthz) else {
            continue;
        };
        let what = if m.scenario == Scenario::Filter {
            format!(
                "{}: {:.0} req/s >= {floor_rps:.0} ({:.0} % of /healthz {healthz:.0} req/s; floor 40 %)",
                m.scenario.label(),
                m.rps(),
                100.0 * m.rps() / healthz.max(1e-9),
            )
        } else {
            format!(
                "{}: {:.0} req/s >= {floor_rps:.0}",
                m.scenario.label(),
                m.rps()
            )
        };
        checks.push((what, m.rps() >= floor_rps));
        checks.push((
            format!(
                "{}: p99 {:.2} ms < {floor_p99:.0} ms",
                m.scenario.label(),
                m.p99_ms
            ),
            m.p99_ms < floor_p99,
        ));
    }
    let peak = report.rows.iter().map(|m| m.hwm_mb).fold(0.0, f64::max);
    checks.push((
        format!("server peak RSS {peak:.1} MB < {FLOOR_RSS_MB:.0} MB"),
        peak < FLOOR_RSS_MB,
    ));
    checks
}
