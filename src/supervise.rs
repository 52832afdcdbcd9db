//! Background tasks that must keep running (the outbox delivery worker): [`supervise`] runs
//! one, catches a panic that would end it, and starts it again after a capped exponential
//! backoff; [`Readiness`] records which tasks are not running, and why, for `/readyz`.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

/// Which supervised tasks are not running, with the reason. Cheap to clone; every clone sees
/// the same state.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<Mutex<BTreeMap<&'static str, String>>>);

impl Readiness {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<&'static str, String>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `task` is not running, because of `reason`.
    pub fn down(&self, task: &'static str, reason: impl Into<String>) {
        self.lock().insert(task, reason.into());
    }

    /// `task` runs (again).
    pub fn up(&self, task: &'static str) {
        self.lock().remove(task);
    }

    /// One line per task that is not running: `<task> is not running: <reason>`.
    pub fn problems(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|(task, reason)| format!("{task} is not running: {reason}"))
            .collect()
    }
}

/// How long [`supervise`] waits before a restart: `base` doubling per consecutive failure up to
/// `max`. A run that lasted longer than `max` resets the count.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

/// The text of a panic payload, cut to 300 characters.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    text.chars().take(300).collect()
}

/// Runs the future `start` makes until it returns or `shutdown` is cancelled; when it panics,
/// marks `task` down in `readiness`, waits out the backoff and starts a new one. Returns when a
/// run returns normally or on shutdown.
pub async fn supervise<F, Fut>(
    task: &'static str,
    readiness: Readiness,
    shutdown: CancellationToken,
    backoff: Backoff,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut failures = 0u32;
    loop {
        readiness.up(task);
        let started = tokio::time::Instant::now();
        let Err(panic) = AssertUnwindSafe(start()).catch_unwind().await else {
            return;
        };
        if started.elapsed() > backoff.max {
            failures = 0;
        }
        failures = failures.saturating_add(1);
        let doublings = failures.saturating_sub(1).min(20);
        let wait = backoff.base.saturating_mul(1 << doublings).min(backoff.max);
        let reason = panic_text(panic.as_ref());
        readiness.down(
            task,
            format!(
                "it stopped after a panic ({reason}); restart {failures} in {} ms",
                wait.as_millis()
            ),
        );
        tracing::error!(task, panic = %reason, failures, wait_ms = wait.as_millis() as u64, "background task panicked; restarting it after a backoff");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if shutdown.is_cancelled() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted_with_backoff_and_reported_meanwhile() {
        let readiness = Readiness::default();
        let shutdown = CancellationToken::new();
        let runs = Arc::new(AtomicU32::new(0));
        let backoff = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        let counted = runs.clone();
        let stop = shutdown.clone();
        let supervisor = tokio::spawn(supervise(
            "test worker",
            readiness.clone(),
            shutdown.clone(),
            backoff,
            move || {
                let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                let stop = stop.clone();
                async move {
                    tokio::task::yield_now().await;
                    if n <= 2 {
                        panic!("poisoned row {n}");
                    }
                    stop.cancelled().await;
                }
            },
        ));
        // First panic: down for 1 s.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let problems = readiness.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(
                "test worker is not running: it stopped after a panic (poisoned row 1)"
            ),
            "{problems:?}"
        );
        // Second panic after the restart: down for 2 s (doubled).
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(readiness.problems()[0].contains("restart 2 in 2000 ms"));
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert!(readiness.problems().is_empty(), "running again");
        shutdown.cancel();
        supervisor.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
