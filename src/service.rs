//! The running service that `serve` starts: the HTTP server (SCIM, admin API, health, metrics),
//! the pull-sync scheduler and the outbox delivery worker, with one orderly shutdown.
//!
//! The CLI and the tests build it through the same [`Service::start`], so the wiring the tests
//! exercise in-process is the wiring production runs. `sync.scheduler_enabled` and
//! `mail.worker_enabled` switch the two background parts off (tests that drive cycles and
//! delivery themselves do).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_cron_scheduler::JobScheduler;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::domain::Clock;
use crate::http::{self, AppState};
use crate::notify::{DeliveryWorker, NotifyError, WorkerHandle};
use crate::secrets::SecretKey;
use crate::store::Store;
use crate::sync::cycle::SyncEnv;
use crate::sync::schedule::Runner;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("starting the sync scheduler: {0}")]
    Scheduler(String),
    #[error("starting the email delivery worker: {0}")]
    Mail(#[from] NotifyError),
    #[error("reading the listening address: {0}")]
    Listener(#[from] std::io::Error),
}

/// A started service. Stop it with [`Service::shutdown`].
pub struct Service {
    state: AppState,
    local_addr: std::net::SocketAddr,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    scheduler: Option<(Arc<Runner>, JobScheduler)>,
    mail: Option<WorkerHandle>,
}

impl Service {
    /// Starts serving on `listener`: the HTTP server, and (unless switched off in `settings`)
    /// the scheduler of Graph integrations and the outbox delivery worker.
    pub async fn start(
        listener: TcpListener,
        store: Store,
        clock: Arc<dyn Clock>,
        settings: Settings,
        key: SecretKey,
    ) -> Result<Self, ServiceError> {
        let local_addr = listener.local_addr()?;
        let scheduler = if settings.sync.scheduler_enabled {
            let env = SyncEnv {
                store: store.clone(),
                clock: clock.clone(),
                settings: settings.sync.clone(),
            };
            let runner = Runner::new(env, key.clone());
            let sched = runner
                .start()
                .await
                .map_err(|e| ServiceError::Scheduler(e.to_string()))?;
            Some((runner, sched))
        } else {
            None
        };
        let mail = if settings.mail.worker_enabled {
            Some(
                DeliveryWorker::from_settings(store.clone(), clock.clone(), &settings.mail)?
                    .start(),
            )
        } else {
            None
        };
        let state = AppState::with_key(store, clock, settings, Some(key));
        let stop = CancellationToken::new();
        let server = tokio::spawn(http::serve(
            listener,
            state.clone(),
            stop.clone().cancelled_owned(),
        ));
        Ok(Self {
            state,
            local_addr,
            stop,
            server,
            scheduler,
            mail,
        })
    }

    /// The state the HTTP handlers share (store, clock, settings).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }

    /// Stops taking requests and starting cycles, then waits up to `grace` for what runs: the
    /// scheduler first (a running cycle may reach its commit, or rolls back), the mail worker
    /// after the message it is sending, and in-flight requests. Closes the database pools.
    pub async fn shutdown(self, grace: Duration) {
        self.stop.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        let stopping_runner = async {
            if let Some((runner, sched)) = self.scheduler {
                runner.stop(sched, grace).await;
            }
        };
        let stopping_mail = async {
            if let Some(mail) = self.mail {
                mail.stop(grace).await;
            }
        };
        let draining = tokio::time::timeout_at(deadline, self.server);
        let ((), (), drained) = tokio::join!(stopping_runner, stopping_mail, draining);
        match drained {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server error while stopping"),
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server task failed"),
            Err(_) => {
                tracing::warn!("in-flight requests still running after the grace period; exiting")
            }
        }
        // Closing the pools waits for borrowed connections; a cycle cut off by the grace period
        // may still hold one (its transaction rolls back when the process exits).
        if tokio::time::timeout(Duration::from_secs(2), self.state.store.close())
            .await
            .is_err()
        {
            tracing::warn!(
                "database connections still in use at exit; their transactions roll back"
            );
        }
    }
}
