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
