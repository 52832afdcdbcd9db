//! Our status check and retry policy for every Microsoft Graph request and every page.
//!
//! graph-rs-sdk's own retry only understands whole-second `Retry-After` values and its pager
//! hands a throttled (429) page back as data, so the pull sync does not rely on it: each request
//! (each page of a paged listing included) goes through [`run`], which
//!
//! 1. asks the caller's operation for one attempt; the operation turns the response into a
//!    [`Verdict`] with [`classify`] / [`classify_response`] (or [`Verdict::transient`] for a
//!    connection error or timeout);
//! 2. retries only `429 Too Many Requests`, `503 Service Unavailable`, `504 Gateway Timeout` and
//!    transient transport errors; every other 4xx/5xx is final, and `401` is handed straight back
//!    as [`RetryError::RefreshToken`] so the caller can refresh the token once and call [`run`]
//!    again;
//! 3. waits exactly what the server asked in `Retry-After` ([`parse_retry_after`]: delta-seconds,
//!    Graph's fractional seconds such as `2.128`, or an HTTP-date), capped at
//!    [`RetryPolicy::max_retry_after`]; without a usable `Retry-After` it waits a capped
//!    exponential backoff with full jitter ([`RetryPolicy::backoff`]);
//! 4. charges every retry and its wait to the sync cycle's shared [`RetryBudget`] *before*
//!    sleeping; once the budget would be exceeded the request fails with
//!    [`RetryError::BudgetExhausted`], which the caller must treat as "abort the cycle before any
//!    deprovisioning".
//!
//! Waiting uses [`tokio::time::sleep`], so tests pause tokio's clock (`start_paused = true`) and
//! assert exact virtual delays; the jitter is a plain function pointer in the policy
//! ([`RetryPolicy::jitter`]) so tests can make it deterministic. Every wait is logged with
//! `tracing` (status, attempt, delay) and nothing else: no URL, no request or response headers.
//!
//! # Why no backoff crate
//!
//! `backoff` is unmaintained (RUSTSEC-2025-0012). `backon` is maintained, but its jitter adds a
//! random amount *on top of* the exponential delay (not full jitter in `[0, cap]`), it has no
//! notion of a budget shared by many requests, and it owns the sleeping; we would use only its
//! delay iterator, which here is three lines ([`RetryPolicy::backoff`]). Writing that small piece
//! keeps `Retry-After` precedence, the shared budget and the injectable jitter in one place.
//! `httpdate` parses the HTTP-date forms (RFC 9110 §5.6.7: IMF-fixdate, RFC 850, asctime) and
//! `fastrand` supplies the jitter; both are small and already in the dependency tree.
//!
//! # Example
//!
//! ```ignore
//! let policy = RetryPolicy::default();
//! let budget = RetryBudget::default(); // one per sync cycle, cloned into every task
//! let page = retry::run(&policy, &budget, |_attempt| async {
//!     let resp = client.get(&url).bearer_auth(&token).send().await
//!         .map_err(|e| (Verdict::transient(), GraphError::from(e)))?;
//!     let retry_after = resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok());
//!     match classify_response(resp.status().as_u16(), retry_after, SystemTime::now()) {
//!         Verdict::Done if resp.status().is_success() => Ok(resp.json::<Page>().await?),
//!         Verdict::Done => Err((Verdict::Fail, GraphError::status(resp))),
//!         verdict => Err((verdict, GraphError::status(resp))),
//!     }
//! }).await?;
//! ```

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// Default per-cycle cap on the number of retries, all requests together.
pub const DEFAULT_BUDGET_MAX_RETRIES: u32 = 200;
/// Default per-cycle cap on the time spent waiting between retries, all requests together.
pub const DEFAULT_BUDGET_MAX_WAIT: Duration = Duration::from_secs(15 * 60);

/// A function that spreads a backoff delay: given the capped exponential delay `d`, it returns a
/// delay in `[0, d]` (anything larger is clamped to `d`). [`full_jitter`] is the default; tests
/// use a fixed function such as `|d| d`.
pub type Jitter = fn(Duration) -> Duration;

/// Full jitter: a uniformly random delay in `[0, d]` (nanosecond resolution).
pub fn full_jitter(d: Duration) -> Duration {
    let max = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=max))
}

/// How one request is retried. The same policy serves every request of a sync cycle.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per request, the first one included (default 6). `0` is taken as `1`.
    pub max_attempts_per_request: u32,
    /// First backoff step when the server gave no `Retry-After` (default 500 ms).
    pub base_delay: Duration,
    /// Cap of the exponential backoff before jitter (default 60 s). Does not apply to
    /// `Retry-After`, which is only capped by [`max_retry_after`](Self::max_retry_after).
    pub max_delay: Duration,
    /// Cap of a server-sent `Retry-After` (default 10 min): absurd values wait this long.
    /// Values below it are honoured exactly, never shortened.
    pub max_retry_after: Duration,
    /// Spreads the backoff delay (default [`full_jitter`]); never applied to `Retry-After`.
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts_per_request: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(10 * 60),
            jitter: full_jitter,
        }
    }
}

impl RetryPolicy {
    /// The backoff after the failed attempt number `attempt` (1-based) when there is no
    /// `Retry-After`: `jitter(min(max_delay, base_delay * 2^(attempt-1)))`, clamped to that cap.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        let capped = self
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        (self.jitter)(capped).min(capped)
    }

    /// The wait after the failed attempt number `attempt`: the server's `Retry-After` (capped at
    /// [`max_retry_after`](Self::max_retry_after)) when it sent one, the [`backoff`](Self::backoff)
    /// otherwise.
    pub fn delay_for(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(after) => after.min(self.max_retry_after),
            None => self.backoff(attempt),
        }
    }
}

/// What to do with one attempt's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not a retry matter: the caller reads the response (success, or redirect-class status).
    Done,
    /// Transient: try again. `status` is the HTTP status (`None` for a connection error or
    /// timeout); `after` is the server's parsed `Retry-After`, uncapped.
    Retry {
        status: Option<u16>,
        after: Option<Duration>,
    },
    /// 401: the caller refreshes the access token once and runs the request again.
    RefreshToken,
    /// Final failure: every other 4xx and 5xx.
    Fail,
}

impl Verdict {
    /// The verdict for a connection error or timeout (classified by the caller).
    pub const fn transient() -> Self {
        Verdict::Retry {
            status: None,
            after: None,
        }
    }
}

/// Classifies a status code alone (no `Retry-After`): 429/503/504 retry, 401 refreshes the token,
/// other 4xx/5xx fail, everything below 400 is [`Verdict::Done`].
pub fn classify(status: u16) -> Verdict {
    match status {
        429 | 503 | 504 => Verdict::Retry {
            status: Some(status),
            after: None,
        },
        401 => Verdict::RefreshToken,
        400..=599 => Verdict::Fail,
        _ => Verdict::Done,
    }
}

/// Like [`classify`], and for a retryable status also reads the `Retry-After` header value
/// (pass `headers.get(RETRY_AFTER)` as text; `None` when absent or not visible ASCII) relative to
/// `now`. `Retry-After` on any other status is ignored.
pub fn classify_response(status: u16, retry_after: Option<&str>, now: SystemTime) -> Verdict {
    match classify(status) {
        Verdict::Retry { status, .. } => Verdict::Retry {
            status,
            after: retry_after.and_then(|v| parse_retry_after(v, now)),
        },
        other => other,
    }
}

/// Parses a `Retry-After` value (RFC 9110 §10.2.3, plus what Graph really sends) into a wait
/// relative to `now`:
///
/// - delta-seconds, `"7"` → 7 s; `"0"` → zero; values too large for `u64` saturate (the policy
///   caps them later);
/// - fractional seconds as Graph sends them, `"2.128"` → 2.128 s (digits past nanoseconds round
///   *up*, so we never wake earlier than asked);
/// - an HTTP-date, `"Wed, 21 Oct 2026 07:28:00 GMT"` (and the obsolete RFC 850 / asctime
///   forms) → the time from `now` until then;
///
/// and `None` (fall back to backoff) for anything else: negative numbers, signs, exponents,
/// empty or garbage text, and dates at or before `now` (which say nothing useful and may just be
/// clock skew).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.as_bytes()[0].is_ascii_digit() {
        return parse_seconds(value);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    at.duration_since(now).ok().filter(|d| !d.is_zero())
}

/// `1*DIGIT [ "." 1*DIGIT ]` as a duration, saturating on overflow.
fn parse_seconds(value: &str) -> Option<Duration> {
    let (whole, fraction) = match value.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (value, None),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = whole.parse::<u64>().unwrap_or(u64::MAX);
    let Some(fraction) = fraction else {
        return Some(Duration::from_secs(secs));
    };
    if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (head, rest) = fraction.split_at(fraction.len().min(9));
    let mut nanos = 0u32;
    for (i, b) in head.bytes().enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    let duration = Duration::new(secs, nanos);
    if rest.bytes().any(|b| b != b'0') {
        Some(duration.saturating_add(Duration::from_nanos(1)))
    } else {
        Some(duration)
    }
}

/// The retry allowance of one sync cycle, shared by all its requests: clones share the same
/// counters (an `Arc` around a mutex that is never held across an `.await`).
///
/// A retry is charged, with its full wait, before the wait starts, so concurrent requests can
/// never overrun the budget together; the waited total is the sum of all waits (concurrent
/// waits add up), not wall time.
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<BudgetInner>,
}

struct BudgetInner {
    max_retries: u32,
    max_wait: Duration,
    used: Mutex<BudgetUsed>,
}

#[derive(Default, Clone, Copy)]
struct BudgetUsed {
    retries: u32,
    waited: Duration,
    throttled: u32,
}

/// Why [`RetryBudget::charge`] refused: the totals so far, the refused retry not included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BudgetSpent {
    retries: u32,
    waited: Duration,
}

impl RetryBudget {
    /// A budget of at most `max_retries` retries and `max_wait` total waiting for one cycle.
    pub fn new(max_retries: u32, max_wait: Duration) -> Self {
        Self {
            inner: Arc::new(BudgetInner {
                max_retries,
                max_wait,
                used: Mutex::new(BudgetUsed::default()),
            }),
        }
    }

    fn used(&self) -> BudgetUsed {
        *self
            .inner
            .used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Retries charged so far.
    pub fn retries(&self) -> u32 {
        self.used().retries
    }

    /// Total wait charged so far (waits in progress included).
    pub fn waited(&self) -> Duration {
        self.used().waited
    }

    /// Retries charged because of a 429 (throttling), a subset of [`retries`](Self::retries).
    pub fn throttled(&self) -> u32 {
        self.used().throttled
    }

    /// The configured retry cap.
    pub fn max_retries(&self) -> u32 {
        self.inner.max_retries
    }

    /// The configured waiting cap.
    pub fn max_wait(&self) -> Duration {
        self.inner.max_wait
    }

    /// Charges one retry waiting `delay`, or refuses when that would exceed either cap.
    fn charge(&self, delay: Duration, throttled: bool) -> Result<(), BudgetSpent> {
        let mut used = self
            .inner
            .used
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let waited = used.waited.saturating_add(delay);
        if used.retries >= self.inner.max_retries || waited > self.inner.max_wait {
            return Err(BudgetSpent {
                retries: used.retries,
                waited: used.waited,
            });
        }
        used.retries += 1;
        used.waited = waited;
        if throttled {
            used.throttled += 1;
        }
        Ok(())
    }
}

impl Default for RetryBudget {
    /// [`DEFAULT_BUDGET_MAX_RETRIES`] retries and [`DEFAULT_BUDGET_MAX_WAIT`] of waiting.
    fn default() -> Self {
        Self::new(DEFAULT_BUDGET_MAX_RETRIES, DEFAULT_BUDGET_MAX_WAIT)
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let used = self.used();
        f.debug_struct("RetryBudget")
            .field("retries", &used.retries)
            .field("max_retries", &self.inner.max_retries)
            .field("waited", &used.waited)
            .field("max_wait", &self.inner.max_wait)
            .field("throttled", &used.throttled)
            .finish()
    }
}

/// Why [`run`] gave up. `E` is the caller's error for the last attempt.
#[derive(Debug, thiserror::Error)]
pub enum RetryError<E> {
    /// The request stayed transient for all its attempts.
    #[error("request still failing after {attempts} attempts: {last}")]
    Exhausted { attempts: u32, last: E },
    /// The cycle's shared retry budget is spent; the cycle must abort (before deprovisioning).
    #[error(
        "retry budget of the sync cycle exhausted after {retries} retries and {waited:?} of \
         waiting (limits: {max_retries} retries, {max_wait:?}); last error: {last}"
    )]
    BudgetExhausted {
        retries: u32,
        waited: Duration,
        max_retries: u32,
        max_wait: Duration,
        last: E,
    },
    /// 401: refresh the access token (once) and run the request again.
    #[error("access token rejected (401): {0}")]
    RefreshToken(E),
    /// A final failure (or an operation that returned [`Verdict::Done`] as an error).
    #[error("{0}")]
    Fatal(E),
}

impl<E> RetryError<E> {
    /// Whether the cycle's budget ran out (the caller aborts the cycle).
    pub fn is_budget_exhausted(&self) -> bool {
        matches!(self, RetryError::BudgetExhausted { .. })
    }

    /// The underlying error of the last attempt.
    pub fn into_inner(self) -> E {
        match self {
            RetryError::Exhausted { last, .. }
            | RetryError::BudgetExhausted { last, .. }
            | RetryError::RefreshToken(last)
            | RetryError::Fatal(last) => last,
        }
    }
}

/// Runs `op` until it succeeds, fails finally, or the policy or the budget is exhausted.
///
/// `op` gets the 1-based attempt number and returns `Ok(T)` or `Err((verdict, error))`:
/// [`Verdict::Retry`] waits and tries again, [`Verdict::RefreshToken`] returns
/// [`RetryError::RefreshToken`] at once, [`Verdict::Fail`] (and [`Verdict::Done`] given as an
/// error) returns [`RetryError::Fatal`]. Each wait is charged to `budget` first and then slept
/// with [`tokio::time::sleep`]; it is logged at `warn` for a 429 and at `info` otherwise, with
/// the status, the attempt and the delay only (never request headers).
///
/// # Errors
///
/// [`RetryError::RefreshToken`] on a 401, [`RetryError::Fatal`] on a final failure,
/// [`RetryError::Exhausted`] after `max_attempts_per_request` transient failures and
/// [`RetryError::BudgetExhausted`] when the cycle's budget cannot pay for the next wait (checked
/// before sleeping, so a refused request returns at once).
pub async fn run<T, E, F, Fut>(
    policy: &RetryPolicy,
    budget: &RetryBudget,
    mut op: F,
) -> Result<T, RetryError<E>>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, (Verdict, E)>>,
{
    let max_attempts = policy.max_attempts_per_request.max(1);
    let mut attempt = 1u32;
    loop {
        let (status, after, last) = match op(attempt).await {
            Ok(value) => return Ok(value),
            Err((Verdict::Retry { status, after }, e)) => (status, after, e),
            Err((Verdict::RefreshToken, e)) => return Err(RetryError::RefreshToken(e)),
            Err((Verdict::Fail | Verdict::Done, e)) => return Err(RetryError::Fatal(e)),
        };
        if attempt >= max_attempts {
            tracing::warn!(
                status,
                attempts = attempt,
                "Graph request still failing; giving up"
            );
            return Err(RetryError::Exhausted {
                attempts: attempt,
                last,
            });
        }
        let delay = policy.delay_for(attempt, after);
        let throttled = status == Some(429);
        if let Err(spent) = budget.charge(delay, throttled) {
            tracing::warn!(
                status,
                attempt,
                delay_ms = millis(delay),
                retries = spent.retries,
                waited_ms = millis(spent.waited),
                "retry budget of the sync cycle exhausted"
            );
            return Err(RetryError::BudgetExhausted {
                retries: spent.retries,
                waited: spent.waited,
                max_retries: budget.max_retries(),
                max_wait: budget.max_wait(),
                last,
            });
        }
        let retry_after_ms = after.map(millis);
        if throttled {
            tracing::warn!(
                status,
                attempt,
                delay_ms = millis(delay),
                retry_after_ms,
                "Graph throttled the request; waiting before retrying"
            );
        } else {
            tracing::info!(
                status,
                attempt,
                delay_ms = millis(delay),
                retry_after_ms,
                "transient Graph failure; waiting before retrying"
            );
        }
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::time::Instant;

    /// Deterministic jitter: the full capped delay.
    fn no_jitter(d: Duration) -> Duration {
        d
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            jitter: no_jitter,
            ..RetryPolicy::default()
        }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[derive(Debug, PartialEq, Eq)]
    struct Boom(u32);

    impl fmt::Display for Boom {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "boom {}", self.0)
        }
    }

    /// An op failing with `status`/`retry_after` for the first `failures` attempts, recording the
    /// virtual time of each attempt.
    fn flaky<'a>(
        failures: u32,
        status: u16,
        retry_after: Option<&'static str>,
        times: &'a Mutex<Vec<Instant>>,
    ) -> impl FnMut(u32) -> std::future::Ready<Result<u32, (Verdict, Boom)>> + 'a {
        move |attempt| {
            times.lock().unwrap().push(Instant::now());
            std::future::ready(if attempt > failures {
                Ok(attempt)
            } else {
                Err((classify_response(status, retry_after, now()), Boom(attempt)))
            })
        }
    }

    fn gaps(times: &Mutex<Vec<Instant>>) -> Vec<Duration> {
        times
            .lock()
            .unwrap()
            .windows(2)
            .map(|w| w[1] - w[0])
            .collect()
    }

    // --- classification ---

    #[test]
    fn classify_statuses() {
        for s in [429, 503, 504] {
            assert_eq!(
                classify(s),
                Verdict::Retry {
                    status: Some(s),
                    after: None
                }
            );
        }
        assert_eq!(classify(401), Verdict::RefreshToken);
        for s in [400, 403, 404, 409, 412, 500, 501, 502] {
            assert_eq!(classify(s), Verdict::Fail, "{s}");
        }
        for s in [200, 201, 204, 302] {
            assert_eq!(classify(s), Verdict::Done, "{s}");
        }
    }

    #[test]
    fn classify_response_reads_retry_after_only_when_retrying() {
        assert_eq!(
            classify_response(429, Some("2.128"), now()),
            Verdict::Retry {
                status: Some(429),
                after: Some(ms(2128))
            }
        );
        assert_eq!(
            classify_response(503, Some("nonsense"), now()),
            Verdict::Retry {
                status: Some(503),
                after: None
            }
        );
        assert_eq!(classify_response(404, Some("5"), now()), Verdict::Fail);
        assert_eq!(
            classify_response(401, Some("5"), now()),
            Verdict::RefreshToken
        );
        assert_eq!(classify_response(200, Some("5"), now()), Verdict::Done);
    }

    // --- Retry-After parsing ---

    #[test]
    fn parses_delta_seconds() {
        assert_eq!(parse_retry_after("7", now()), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(" 120 ", now()),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("0", now()), Some(Duration::ZERO));
    }

    #[test]
    fn parses_fractional_seconds() {
        assert_eq!(parse_retry_after("2.128", now()), Some(ms(2128)));
        assert_eq!(parse_retry_after("0.5", now()), Some(ms(500)));
        assert_eq!(
            parse_retry_after("1.000000001", now()),
            Some(Duration::new(1, 1))
        );
        // Past nanosecond precision rounds up, never down.
        assert_eq!(
            parse_retry_after("1.0000000001", now()),
            Some(Duration::new(1, 1))
        );
        assert_eq!(
            parse_retry_after("1.0000000000", now()),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn parses_http_date_relative_to_now() {
        let date = "Wed, 21 Oct 2026 07:28:00 GMT";
        let at = httpdate::parse_http_date(date).unwrap();
        let now = at - Duration::from_secs(90);
        assert_eq!(parse_retry_after(date, now), Some(Duration::from_secs(90)));
        // RFC 850 and asctime forms are accepted too (RFC 9110 §5.6.7).
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-26 07:28:00 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 07:28:00 2026", now),
            Some(Duration::from_secs(90))
        );
        // A date that has passed (or is now) falls back to backoff.
        assert_eq!(parse_retry_after(date, at), None);
        assert_eq!(parse_retry_after(date, at + Duration::from_secs(5)), None);
    }

    #[test]
    fn ignores_negative_and_garbage() {
        for v in [
            "",
            "  ",
            "-5",
            "-0.5",
            "+5",
            "soon",
            "1e3",
            "NaN",
            "inf",
            "5.",
            ".5",
            "1.2.3",
            "5s",
            "5 s",
            "0x10",
            "1,5",
            "١٢",
            "Wed, 99 Foo 2026 07:28:00 GMT",
        ] {
            assert_eq!(parse_retry_after(v, now()), None, "{v:?}");
        }
    }

    #[test]
    fn huge_values_saturate_instead_of_failing() {
        assert_eq!(
            parse_retry_after("99999999999999999999999", now()),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            parse_retry_after("18446744073709551615.9999999999", now()),
            Some(Duration::MAX)
        );
    }

    // --- delays ---

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = policy();
        let delays: Vec<_> = (1..=10).map(|a| p.backoff(a)).collect();
        assert_eq!(
            delays,
            [
                500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000
            ]
            .map(ms)
        );
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn full_jitter_stays_within_bounds() {
        let p = RetryPolicy::default();
        for attempt in 1..=12 {
            let cap = policy().backoff(attempt);
            for _ in 0..200 {
                assert!(p.backoff(attempt) <= cap);
            }
        }
        assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn misbehaving_jitter_is_clamped_to_the_cap() {
        let p = RetryPolicy {
            jitter: |d| d * 10,
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff(1), ms(500));
    }

    #[test]
    fn retry_after_wins_over_backoff_and_is_capped() {
        let p = policy();
        // Shorter than the backoff would be: still exactly what the server asked.
        assert_eq!(p.delay_for(6, Some(ms(100))), ms(100));
        // Longer than max_delay but under the cap: honoured in full.
        assert_eq!(
            p.delay_for(1, Some(Duration::from_secs(300))),
            Duration::from_secs(300)
        );
        assert_eq!(p.delay_for(1, Some(Duration::MAX)), p.max_retry_after);
        assert_eq!(p.delay_for(3, None), ms(2000));
    }

    // --- run, on tokio's paused clock ---

    #[tokio::test(start_paused = true)]
    async fn fractional_retry_after_waits_at_least_that_long() {
        let budget = RetryBudget::default();
        let times = Mutex::new(Vec::new());
        let start = Instant::now();
        let out = run(&policy(), &budget, flaky(1, 429, Some("2.128"), &times)).await;
        assert_eq!(out.unwrap(), 2);
        let elapsed = start.elapsed();
        assert!(elapsed >= ms(2128), "{elapsed:?}");
        assert!(elapsed < ms(2130), "{elapsed:?}");
        assert_eq!(budget.retries(), 1);
        assert_eq!(budget.throttled(), 1);
        assert_eq!(budget.waited(), ms(2128));
    }

    #[tokio::test(start_paused = true)]
    async fn http_date_retry_after_waits_until_then() {
        let budget = RetryBudget::default();
        let date = httpdate::fmt_http_date(now() + Duration::from_secs(30));
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let out = run(&policy(), &budget, |attempt| {
            calls.fetch_add(1, Ordering::SeqCst);
            let verdict = classify_response(503, Some(&date), now());
            async move {
                if attempt == 1 {
                    Err((verdict, Boom(attempt)))
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
        assert_eq!(out.unwrap(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_secs(30), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(31), "{elapsed:?}");
        assert_eq!(budget.throttled(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn without_retry_after_backoff_grows() {
        let budget = RetryBudget::default();
        let times = Mutex::new(Vec::new());
        let out = run(&policy(), &budget, flaky(5, 503, None, &times)).await;
        assert_eq!(out.unwrap(), 6);
        let gaps = gaps(&times);
        let expected = [500, 1_000, 2_000, 4_000, 8_000].map(ms);
        assert_eq!(gaps.len(), expected.len());
        for (gap, want) in gaps.iter().zip(expected) {
            assert!(*gap >= want && *gap < want + ms(2), "{gap:?} vs {want:?}");
        }
        assert_eq!(budget.retries(), 5);
        assert_eq!(budget.waited(), ms(15_500));
    }

    #[tokio::test(start_paused = true)]
    async fn without_retry_after_full_jitter_stays_within_bounds() {
        let p = RetryPolicy {
            max_attempts_per_request: 8,
            ..RetryPolicy::default()
        };
        let budget = RetryBudget::default();
        let times = Mutex::new(Vec::new());
        let out = run(&p, &budget, flaky(7, 504, None, &times)).await;
        assert_eq!(out.unwrap(), 8);
        let gaps = gaps(&times);
        assert_eq!(gaps.len(), 7);
        for (i, gap) in gaps.iter().enumerate() {
            let cap = policy().backoff(i as u32 + 1);
            assert!(*gap <= cap + ms(1), "attempt {}: {gap:?} > {cap:?}", i + 1);
        }
        assert!(budget.waited() <= ms(500 + 1_000 + 2_000 + 4_000 + 8_000 + 16_000 + 32_000));
    }

    #[tokio::test(start_paused = true)]
    async fn garbage_retry_after_falls_back_to_backoff() {
        let budget = RetryBudget::default();
        let times = Mutex::new(Vec::new());
        let out = run(&policy(), &budget, flaky(2, 429, Some("soon-ish"), &times)).await;
        assert_eq!(out.unwrap(), 3);
        let gaps = gaps(&times);
        assert!(gaps[0] >= ms(500) && gaps[0] < ms(502), "{gaps:?}");
        assert!(gaps[1] >= ms(1000) && gaps[1] < ms(1002), "{gaps:?}");
        assert_eq!(budget.throttled(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn huge_retry_after_is_capped() {
        let budget = RetryBudget::default();
        let times = Mutex::new(Vec::new());
        let start = Instant::now();
        let out = run(&policy(), &budget, flaky(1, 429, Some("86400000"), &times)).await;
        assert_eq!(out.unwrap(), 2);
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_secs(600), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(601), "{elapsed:?}");
        assert_eq!(budget.waited(), Duration::from_secs(600));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_above_max_delay_but_below_cap_is_honoured() {
        let budget = RetryBudget::default();
        let times = Mutex::new(Vec::new());
        let start = Instant::now();
        let out = run(&policy(), &budget, flaky(1, 503, Some("120"), &times)).await;
        assert_eq!(out.unwrap(), 2);
        assert!(start.elapsed() >= Duration::from_secs(120));
        assert!(start.elapsed() < Duration::from_secs(121));
    }

    #[tokio::test(start_paused = true)]
    async fn client_errors_are_not_retried() {
        for status in [400, 403, 404, 409, 500] {
            let budget = RetryBudget::default();
            let times = Mutex::new(Vec::new());
            let start = Instant::now();
            let out = run(&policy(), &budget, flaky(9, status, Some("1"), &times)).await;
            assert!(matches!(out, Err(RetryError::Fatal(Boom(1)))), "{status}");
            assert_eq!(times.lock().unwrap().len(), 1);
            assert_eq!(start.elapsed(), Duration::ZERO);
            assert_eq!(budget.retries(), 0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unauthorized_is_handed_back_for_token_refresh() {
        let budget = RetryBudget::default();
        let times = Mutex::new(Vec::new());
        let start = Instant::now();
        let out = run(&policy(), &budget, flaky(9, 401, None, &times)).await;
        match out {
            Err(RetryError::RefreshToken(Boom(1))) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(times.lock().unwrap().len(), 1);
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(budget.retries(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn connection_errors_are_retried() {
        let budget = RetryBudget::default();
        let out = run(&policy(), &budget, |attempt| async move {
            if attempt < 3 {
                Err((Verdict::transient(), Boom(attempt)))
            } else {
                Ok(attempt)
            }
        })
        .await;
        assert_eq!(out.unwrap(), 3);
        assert_eq!(budget.retries(), 2);
        assert_eq!(budget.throttled(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_per_request_are_exhausted() {
        let p = RetryPolicy {
            max_attempts_per_request: 3,
            ..policy()
        };
        let budget = RetryBudget::default();
        let times = Mutex::new(Vec::new());
        let out = run(&p, &budget, flaky(u32::MAX, 503, None, &times)).await;
        match out {
            Err(RetryError::Exhausted {
                attempts: 3,
                last: Boom(3),
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(times.lock().unwrap().len(), 3);
        assert_eq!(budget.retries(), 2);
        assert_eq!(budget.waited(), ms(1_500));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_attempts_still_tries_once() {
        let p = RetryPolicy {
            max_attempts_per_request: 0,
            ..policy()
        };
        let times = Mutex::new(Vec::new());
        let out = run(&p, &RetryBudget::default(), flaky(9, 429, None, &times)).await;
        assert!(matches!(
            out,
            Err(RetryError::Exhausted { attempts: 1, .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn shared_retry_count_is_exhausted_across_concurrent_requests() {
        let p = RetryPolicy {
            max_attempts_per_request: 50,
            ..policy()
        };
        let budget = RetryBudget::new(5, Duration::from_secs(3600));
        let (t1, t2) = (Mutex::new(Vec::new()), Mutex::new(Vec::new()));
        let b1 = budget.clone();
        let (a, b) = tokio::join!(
            run(&p, &b1, flaky(u32::MAX, 429, Some("1"), &t1)),
            run(&p, &budget, flaky(u32::MAX, 503, Some("1"), &t2)),
        );
        for out in [&a, &b] {
            match out {
                Err(RetryError::BudgetExhausted {
                    retries: 5,
                    waited,
                    max_retries: 5,
                    ..
                }) => assert_eq!(*waited, Duration::from_secs(5)),
                other => panic!("unexpected {other:?}"),
            }
        }
        // Both loops drew from the same budget; no more than 5 retries in total.
        let attempts = t1.lock().unwrap().len() + t2.lock().unwrap().len();
        assert_eq!(attempts, 2 + 5);
        assert!(t1.lock().unwrap().len() >= 2 && t2.lock().unwrap().len() >= 2);
        assert_eq!(budget.retries(), 5);
        assert_eq!(b1.retries(), 5);
        assert_eq!(budget.waited(), Duration::from_secs(5));
        assert_eq!(budget.throttled() as usize, t1.lock().unwrap().len() - 1);
        let msg = a.unwrap_err().to_string();
        assert!(msg.contains("budget"), "{msg}");
        assert!(msg.contains("5 retries"), "{msg}");
        assert!(msg.contains("5s"), "{msg}");
    }

    #[tokio::test(start_paused = true)]
    async fn shared_wait_is_exhausted_across_concurrent_requests() {
        let budget = RetryBudget::new(200, Duration::from_secs(10));
        let (t1, t2) = (Mutex::new(Vec::new()), Mutex::new(Vec::new()));
        let p = policy();
        let start = Instant::now();
        let (a, b) = tokio::join!(
            run(&p, &budget, flaky(u32::MAX, 429, Some("4"), &t1)),
            run(&p, &budget, flaky(u32::MAX, 429, Some("4"), &t2)),
        );
        // 4 s + 4 s fit in 10 s; a third 4 s wait would not.
        for out in [a, b] {
            let err = out.unwrap_err();
            assert!(err.is_budget_exhausted(), "{err:?}");
            match err {
                RetryError::BudgetExhausted {
                    retries, waited, ..
                } => {
                    assert_eq!(retries, 2);
                    assert_eq!(waited, Duration::from_secs(8));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(budget.retries(), 2);
        assert_eq!(budget.waited(), Duration::from_secs(8));
        // The two waits ran concurrently.
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn budget_refuses_before_sleeping() {
        let budget = RetryBudget::new(10, Duration::from_secs(60));
        let times = Mutex::new(Vec::new());
        let start = Instant::now();
        let out = run(&policy(), &budget, flaky(9, 429, Some("300"), &times)).await;
        assert!(matches!(
            out,
            Err(RetryError::BudgetExhausted {
                retries: 0,
                last: Boom(1),
                ..
            })
        ));
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[test]
    fn errors_say_what_happened() {
        let e: RetryError<Boom> = RetryError::BudgetExhausted {
            retries: 200,
            waited: Duration::from_secs(900),
            max_retries: 200,
            max_wait: Duration::from_secs(900),
            last: Boom(4),
        };
        assert_eq!(
            e.to_string(),
            "retry budget of the sync cycle exhausted after 200 retries and 900s of waiting \
             (limits: 200 retries, 900s); last error: boom 4"
        );
        assert_eq!(e.into_inner(), Boom(4));
        let e: RetryError<Boom> = RetryError::Exhausted {
            attempts: 6,
            last: Boom(6),
        };
        assert_eq!(
            e.to_string(),
            "request still failing after 6 attempts: boom 6"
        );
        assert!(!e.is_budget_exhausted());
        let dbg = format!("{:?}", RetryBudget::new(3, Duration::from_secs(1)));
        assert!(dbg.contains("max_retries: 3"), "{dbg}");
    }
}
