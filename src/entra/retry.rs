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
mod tests;
