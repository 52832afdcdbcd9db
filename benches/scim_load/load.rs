//! The load itself: the four scenarios, `--concurrency` client tasks looping over one of them
//! for a fixed time while recording every request's latency, the nearest-rank percentiles, and
//! one measured scenario (warm-up, top-up of non-member users, measured run, server memory).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::requests::{Outcome, Rng, Shared, one_request};
use crate::server::{Server, memory_mb};

/// The unmeasured warm-up before each scenario.
const WARM_UP: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `GET /healthz`: no auth, no database; the server's own limit in the same run.
    Healthz,
    Filter,
    Create,
    PatchUser,
    PatchGroup,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Self::Healthz,
        Self::Filter,
        Self::Create,
        Self::PatchUser,
        Self::PatchGroup,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Healthz => "0. GET /healthz (no auth, no database)",
            Self::Filter => "a. GET /Users?filter=userName eq",
            Self::Create => "b. POST /Users",
            Self::PatchUser => "c. PATCH /Users/{id} name.givenName",
            Self::PatchGroup => "d. PATCH /Groups/{id} add member",
        }
    }
}

/// One measured phase of one scenario.
#[derive(Debug, Clone)]
pub struct Measured {
    pub scenario: Scenario,
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub rss_mb: f64,
    pub hwm_mb: f64,
    /// A few distinct error descriptions, for the report.
    pub error_samples: Vec<String>,
    /// Set when the scenario ran out of work before the time was up.
    pub note: Option<String>,
}

impl Measured {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
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

/// Warms up, then measures `scenario` for `seconds`, and reads the server's memory after it.
pub async fn measure(
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
    let log_start = std::fs::metadata(server.log_path()).map_or(0, |m| m.len());
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
    if warm.errors > 0 || r.errors > 0 {
        // The server's own account of the errors (the temp dir and its log are deleted at the
        // end unless `--keep` is given).
        let (lines, _) = server.log_problems_since(log_start, 40);
        eprintln!(
            "    server log ({}) during this scenario, WARN/ERROR lines:",
            server.log_path().display()
        );
        for l in &lines {
            eprintln!("      {l}");
        }
        if lines.is_empty() {
            eprintln!("      (none)");
        }
        for s in &r.error_samples {
            eprintln!("    error sample: {s}");
        }
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
    let have = || sh.created().len();
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
