//! The delivery worker: claims due outbox rows in batches, sends them one at a time and records
//! each result.
//!
//! One round ([`DeliveryWorker::run_once`]):
//! 1. **Claim** up to `batch_size` rows that are `pending` and due (`next_attempt_at <= now`), in
//!    one transaction that moves their `next_attempt_at` to the end of the lease
//!    (`now + lease_secs`), counts the attempt and fixes the Message-ID (see
//!    [`crate::store::Store::claim_outbox`]). Rows whose attempts were all used up by interrupted
//!    deliveries are parked as `dead` by the same statement.
//! 2. **Send** each message. Between messages the worker checks for shutdown and for its lease:
//!    when either says stop, the unsent rest of the batch is handed back (due at once, the
//!    attempt not counted).
//! 3. **Record**: `sent` with `sent_at`; or a failure with `last_error` and `next_attempt_at =
//!    now + backoff` (exponential from `backoff_base_secs`, capped at `backoff_max_secs`, with
//!    jitter so that a relay coming back is not hit by every message at once); after
//!    `max_attempts` attempts the row is `dead` until `essentry-sync outbox retry ID`. A recipient
//!    address that cannot be written into a message is `dead` at once.
//!
//! A message that cannot be rendered is parked as `dead` with the reason (rendering never
//! panics: see [`crate::notify::render`]), so one bad row never holds up the rest. The worker
//! runs supervised ([`crate::supervise`]): should it panic anyway, it is restarted after a
//! backoff and `/readyz` says it is not running meanwhile.
//!
//! A process killed between sending and recording re-sends that one message after the lease
//! (at-least-once). Times come from the injected [`Clock`], so tests move through backoffs
//! without waiting.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lettre::message::Mailbox;
use tokio_util::sync::CancellationToken;

use super::NotifyError;
use super::render::Renderer;
use super::transport::MailTransport;
use crate::config::MailSettings;
use crate::domain::Clock;
use crate::store::{ClaimRequest, ClaimedMessage, Store};
use crate::supervise::{Backoff, Readiness, supervise};

/// The largest batch one claim takes.
const MAX_BATCH: u32 = 500;

/// How the worker paces, retries and gives up.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub batch_size: u32,
    pub poll_interval: Duration,
    pub lease: Duration,
    pub message_id_domain: String,
}

impl DeliveryPolicy {
    /// The policy of `settings`; `from` supplies the default Message-ID domain.
    pub fn from_settings(settings: &MailSettings, from: &Mailbox) -> Result<Self, NotifyError> {
        let domain = settings
            .message_id_domain
            .clone()
            .unwrap_or_else(|| from.email.domain().to_owned());
        let domain = domain.trim().to_owned();
        if domain.is_empty()
            || domain
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '<' | '>' | '@' | '"' | '\\'))
        {
            return Err(NotifyError::Config(format!(
                "mail.message_id_domain {domain:?} is not a domain"
            )));
        }
        if settings.max_attempts == 0 {
            return Err(NotifyError::Config(
                "mail.max_attempts must be at least 1".to_owned(),
            ));
        }
        Ok(Self {
            max_attempts: settings.max_attempts,
            backoff_base: Duration::from_secs(settings.backoff_base_secs.max(1)),
            backoff_max: Duration::from_secs(
                settings
                    .backoff_max_secs
                    .max(settings.backoff_base_secs)
                    .max(1),
            ),
            batch_size: settings.batch_size.clamp(1, MAX_BATCH),
            poll_interval: Duration::from_millis(settings.poll_interval_ms.max(10)),
            lease: Duration::from_secs(settings.lease_secs.max(1)),
            message_id_domain: domain,
        })
    }
}

/// The wait before the next attempt after `failures` failed attempts (1 = the first): `base`
/// doubled per further failure, capped at `max`, then jittered into its upper half (`jitter` in
/// `[0, 1)`), so the wait is between half and all of the capped value.
pub fn backoff_delay(failures: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    let capped = base.saturating_mul(1u32 << doublings).min(max);
    let half = capped / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchReport {
    /// Rows the claim took (including `exhausted`).
    pub claimed: usize,
    pub sent: usize,
    /// Failed attempts that will be retried.
    pub failed: usize,
    /// Rows parked as `dead` (failed for the last time, or exhausted by interrupted attempts).
    pub dead: usize,
    /// Claimed rows handed back unsent (shutdown, or the lease running short).
    pub released: usize,
}

impl BatchReport {
    fn add(&mut self, o: BatchReport) {
        self.claimed += o.claimed;
        self.sent += o.sent;
        self.failed += o.failed;
        self.dead += o.dead;
        self.released += o.released;
    }
}

/// Delivers the outbox of one store.
pub struct DeliveryWorker {
    store: Store,
    clock: Arc<dyn Clock>,
    renderer: Renderer,
    transport: MailTransport,
    policy: DeliveryPolicy,
    shutdown: CancellationToken,
}

impl DeliveryWorker {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        renderer: Renderer,
        transport: MailTransport,
        policy: DeliveryPolicy,
    ) -> Self {
        Self {
            store,
            clock,
            renderer,
            transport,
            policy,
            shutdown: CancellationToken::new(),
        }
    }

    /// The worker `settings` (`[mail]`) describe.
    pub fn from_settings(
        store: Store,
        clock: Arc<dyn Clock>,
        settings: &MailSettings,
    ) -> Result<Self, NotifyError> {
        let from: Mailbox = settings.from.trim().parse().map_err(|e| {
            NotifyError::Config(format!(
                "mail.from {:?} is not a mailbox: {e}",
                settings.from
            ))
        })?;
        let policy = DeliveryPolicy::from_settings(settings, &from)?;
        let transport = MailTransport::from_settings(settings)?;
        Ok(Self::new(
            store,
            clock,
            Renderer::new(from),
            transport,
            policy,
        ))
    }

    pub fn policy(&self) -> &DeliveryPolicy {
        &self.policy
    }

    pub fn transport(&self) -> &MailTransport {
        &self.transport
    }

    /// Cancelling it stops the worker between two messages.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// One round: claim a batch, send it, record the results.
    pub async fn run_once(&self) -> Result<BatchReport, NotifyError> {
        let now = self.clock.now();
        let lease = TimeDelta::from_std(self.policy.lease).unwrap_or(TimeDelta::MAX);
        let claim = self
            .store
            .claim_outbox(&ClaimRequest {
                now,
                lease_until: now + lease,
                max_attempts: i64::from(self.policy.max_attempts),
                limit: i64::from(self.policy.batch_size),
                message_id_domain: &self.policy.message_id_domain,
            })
            .await?;
        let mut report = BatchReport {
            claimed: claim.messages.len() + claim.exhausted.len(),
            dead: claim.exhausted.len(),
            ..BatchReport::default()
        };
        for id in &claim.exhausted {
            tracing::error!(outbox_id = %id, "email parked as dead: its attempts were all interrupted before their results were recorded");
        }
        // Half the lease: what is left of the batch after that goes back, so no message is
        // still being sent when its lease runs out and another worker could claim it.
        let budget = self.policy.lease / 2;
        let started = tokio::time::Instant::now();
        for (i, msg) in claim.messages.iter().enumerate() {
            if self.shutdown.is_cancelled() || started.elapsed() >= budget {
                let released = self
                    .store
                    .release_outbox(&claim.token, self.clock.now())
                    .await?;
                report.released += usize::try_from(released).unwrap_or(usize::MAX);
                tracing::info!(
                    released,
                    unsent = claim.messages.len() - i,
                    "email delivery paused: the rest of the batch goes back to the outbox"
                );
                break;
            }
            self.deliver(&claim.token, msg, &mut report).await?;
        }
        if report != BatchReport::default() {
            tracing::info!(
                claimed = report.claimed,
                sent = report.sent,
                failed = report.failed,
                dead = report.dead,
                released = report.released,
                transport = %self.transport.describe(),
                "outbox batch delivered"
            );
        }
        Ok(report)
    }

    /// Rounds until a claim finds nothing due (benchmarks and tests; `serve` uses [`Self::start`]).
    pub async fn run_until_idle(&self) -> Result<BatchReport, NotifyError> {
        let mut total = BatchReport::default();
        loop {
            let round = self.run_once().await?;
            total.add(round);
            if round.claimed == 0 || self.shutdown.is_cancelled() {
                return Ok(total);
            }
        }
    }

    async fn deliver(
        &self,
        token: &str,
        msg: &ClaimedMessage,
        report: &mut BatchReport,
    ) -> Result<(), NotifyError> {
        let result = match self.renderer.message(msg, self.clock.now()) {
            Ok(message) => self
                .transport
                .send(&msg.id, message)
                .await
                .map_err(|e| (e.0, false)),
            Err(e) => Err((e.to_string(), e.is_permanent())),
        };
        let now = self.clock.now();
        match result {
            Ok(()) => {
                if !self.store.outbox_sent(&msg.id, now).await? {
                    tracing::warn!(outbox_id = %msg.id, "email sent, but its row was already recorded or is gone");
                }
                tracing::debug!(outbox_id = %msg.id, to = %msg.recipient_email, message_id = %msg.message_id, "email sent");
                report.sent += 1;
            }
            Err((error, permanent)) => {
                let attempts = u32::try_from(msg.attempts).unwrap_or(u32::MAX);
                let dead = permanent || attempts >= self.policy.max_attempts;
                let wait = backoff_delay(
                    attempts,
                    self.policy.backoff_base,
                    self.policy.backoff_max,
                    fastrand::f64(),
                );
                let next: DateTime<Utc> = if dead {
                    now
                } else {
                    now + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX)
                };
                self.store
                    .outbox_failed(&msg.id, token, dead, &error, next)
                    .await?;
                if dead {
                    report.dead += 1;
                    tracing::error!(outbox_id = %msg.id, to = %msg.recipient_email, attempts, %error, "email parked as dead (essentry-sync outbox retry ID sends it again)");
                } else {
                    report.failed += 1;
                    tracing::warn!(outbox_id = %msg.id, to = %msg.recipient_email, attempts, retry_in_secs = wait.as_secs(), %error, "email delivery failed; will retry");
                }
            }
        }
        Ok(())
    }

    /// Runs rounds until shut down: straight on while batches come back full, otherwise every
    /// `poll_interval`. A failing store is logged and retried at the next poll.
    pub async fn run(&self) {
        tracing::info!(transport = %self.transport.describe(), "email delivery worker started");
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            let full = match self.run_once().await {
                Ok(r) => r.claimed >= self.policy.batch_size as usize,
                Err(e) => {
                    tracing::warn!(error = %e, "email delivery round failed");
                    false
                }
            };
            if full {
                continue;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.policy.poll_interval) => {}
            }
        }
        self.transport.close().await;
        tracing::info!("email delivery worker stopped");
    }

    /// Spawns [`Self::run`], supervised; stop it with [`WorkerHandle::stop`].
    pub fn start(self) -> WorkerHandle {
        self.start_supervised(Readiness::default())
    }

    /// Spawns [`Self::run`] under [`supervise`]: if the worker panics it is started again after
    /// a backoff (1 s doubling up to 1 min), and `readiness` reports it as not running until
    /// then (`/readyz` answers 503 with the reason).
    pub fn start_supervised(self, readiness: Readiness) -> WorkerHandle {
        let shutdown = self.shutdown.clone();
        let worker = Arc::new(self);
        let task = tokio::spawn(supervise(
            WORKER_TASK,
            readiness,
            shutdown.clone(),
            Backoff::default(),
            move || {
                let worker = worker.clone();
                async move { worker.run().await }
            },
        ));
        WorkerHandle { shutdown, task }
    }
}

/// The worker's name in readiness reports.
pub const WORKER_TASK: &str = "email delivery worker";

/// A running worker.
pub struct WorkerHandle {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl WorkerHandle {
    /// Stops the worker after the message it is sending, waiting up to `grace`; a send still
    /// running then is abandoned (its row is retried after the lease).
    pub async fn stop(mut self, grace: Duration) {
        self.shutdown.cancel();
        match tokio::time::timeout(grace, &mut self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "email delivery worker failed"),
            Err(_) => {
                self.task.abort();
                tracing::warn!(
                    "email delivery still running after the grace period; its message is retried after the lease"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered_into_its_upper_half() {
        let base = Duration::from_secs(30);
        let max = Duration::from_secs(3600);
        assert_eq!(backoff_delay(1, base, max, 0.0), Duration::from_secs(15));
        assert_eq!(backoff_delay(1, base, max, 1.0), Duration::from_secs(30));
        assert_eq!(backoff_delay(2, base, max, 1.0), Duration::from_secs(60));
        assert_eq!(backoff_delay(4, base, max, 0.5), Duration::from_secs(180));
        assert_eq!(backoff_delay(8, base, max, 1.0), max);
        assert_eq!(backoff_delay(40, base, max, 0.0), max / 2);
        for f in 1..12 {
            let d = backoff_delay(f, base, max, fastrand::f64());
            let capped = base.saturating_mul(1 << (f - 1)).min(max);
            assert!(d >= capped / 2 && d <= capped, "{f}: {d:?}");
        }
    }

    #[test]
    fn the_policy_checks_its_settings() {
        let from: Mailbox = "essentry <no-reply@mail.example.com>".parse().unwrap();
        let mut s = MailSettings::default();
        let p = DeliveryPolicy::from_settings(&s, &from).unwrap();
        assert_eq!(p.message_id_domain, "mail.example.com");
        assert_eq!(p.max_attempts, 8);
        s.message_id_domain = Some("bad domain".to_owned());
        assert!(DeliveryPolicy::from_settings(&s, &from).is_err());
        s.message_id_domain = Some("ids.example.com".to_owned());
        s.batch_size = 100_000;
        let p = DeliveryPolicy::from_settings(&s, &from).unwrap();
        assert_eq!(
            (p.message_id_domain.as_str(), p.batch_size),
            ("ids.example.com", MAX_BATCH)
        );
        s.max_attempts = 0;
        assert!(DeliveryPolicy::from_settings(&s, &from).is_err());
    }
}
