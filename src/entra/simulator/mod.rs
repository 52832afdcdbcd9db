//! A Microsoft Graph simulator for tests and the `demo` command: an HTTP server on loopback that
//! behaves like Microsoft Entra's token endpoint and the Graph v1.0 calls the pull sync makes.
//!
//! - `POST {authority}/{tenant}/oauth2/v2.0/token` (tenant id or initial domain): the
//!   client-credentials grant with the secret in the form or as HTTP Basic, answered with
//!   Entra's token JSON, or Entra's error shape and AADSTS codes (unknown tenant 90002, unknown client 700016, missing secret
//!   7000218, bad secret 7000215, expired secret 7000222, bad scope 1002012, non-Graph resource
//!   500011, bad grant type 70003, missing parameter 900144).
//! - Graph under `{graph_url}` (`.../v1.0`), every call with a bearer token we issued:
//!   `servicePrincipals/{id}/appRoleAssignedTo`, `directoryObjects/getByIds`,
//!   `groups/{id}/members[/microsoft.graph.user]`,
//!   `groups/{id}/transitiveMembers[/microsoft.graph.user]`, `groups/{id}`, `users/{id|upn}`,
//!   `users?$filter=...`, and `$batch` (up to 20 sub-requests). Collections page with `$top`
//!   (1..=999, default 100) and an absolute `@odata.nextLink` carrying `$skiptoken`.
//! - [`Faults`] injects throttling (429 + `Retry-After`), 503/504, truncated pages, broken
//!   next links, token expiry, token endpoint outages and latency; [`Stats`] counts requests.
//!
//! The directory is a [`Tenant`] that tests change between reads. Use the closure accessors
//! ([`Simulator::with_tenant`], [`Simulator::with_faults`]); the guard accessors must not be
//! held across an `.await` (the server locks the same state).

mod faults;
mod graph;
mod odata;
mod routes;
mod samples;
mod state;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_faults;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use faults::{Faults, Stats};
pub use samples::{
    LARGE_GROUP_SIZE, SAMPLE_APP_ROLE_ID, SAMPLE_CLIENT_ID, SAMPLE_CLIENT_SECRET,
    SAMPLE_SERVICE_PRINCIPAL_ID, SAMPLE_TENANT_ID, large_tenant, sample_tenant,
};
pub use state::{Assignment, PrincipalType, SimGroup, SimUser, Tenant};

use odata::GraphError;

/// Locks a mutex, recovering the data if a panicking thread poisoned it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// State shared by the server's handlers and the [`Simulator`] handle. Each part has its own
/// lock and no code path holds two at once.
pub(super) struct Shared {
    tenant: Mutex<Tenant>,
    faults: Mutex<Faults>,
    stats: Mutex<Stats>,
    /// Issued access tokens and when each expires.
    tokens: Mutex<HashMap<String, Instant>>,
    /// `http://127.0.0.1:PORT`.
    base_url: String,
}

impl Shared {
    fn tenant(&self) -> MutexGuard<'_, Tenant> {
        lock(&self.tenant)
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    fn stats(&self) -> MutexGuard<'_, Stats> {
        lock(&self.stats)
    }

    fn graph_url(&self) -> String {
        format!("{}/v1.0", self.base_url)
    }

    /// Issues an opaque access token valid for `lifetime_secs`.
    fn issue_token(&self, lifetime_secs: u64) -> String {
        let token = format!(
            "eyJ0eXAiOiJKV1QiLCJzaW0iOnRydWV9.{}.{}",
            Uuid::new_v4().simple(),
            Uuid::new_v4().simple()
        );
        let now = Instant::now();
        let expiry = now
            .checked_add(Duration::from_secs(lifetime_secs))
            .unwrap_or(now);
        let mut tokens = lock(&self.tokens);
        if tokens.len() > 10_000 {
            tokens.retain(|_, e| *e > now);
        }
        tokens.insert(token.clone(), expiry);
        drop(tokens);
        self.stats().tokens_issued += 1;
        token
    }

    /// Checks the bearer token, first expiring every token if the fault asks for it.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), GraphError> {
        let expire = std::mem::take(&mut self.faults().expire_tokens);
        let mut tokens = lock(&self.tokens);
        if expire {
            let now = Instant::now();
            for expiry in tokens.values_mut() {
                *expiry = (*expiry).min(now);
            }
        }
        routes::check_token(&tokens, headers)
    }
}

/// A running simulator. Dropping it stops the server (without waiting); [`Simulator::shutdown`]
/// stops it and waits.
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Serves `tenant` on `127.0.0.1` at a free port.
    pub async fn start(tenant: Tenant) -> std::io::Result<Simulator> {
        Self::bind(tenant, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Serves `tenant` at `addr` (for a demo on a fixed port; keep it on loopback).
    pub async fn bind(tenant: Tenant, addr: SocketAddr) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            tenant: Mutex::new(tenant),
            faults: Mutex::new(Faults::default()),
            stats: Mutex::new(Stats::default()),
            tokens: Mutex::new(HashMap::new()),
            base_url: format!("http://{addr}"),
        });
        let app = routes::router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "Graph simulator stopped with an error");
            }
        });
        Ok(Simulator {
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The socket the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Graph root with version, e.g. `http://127.0.0.1:PORT/v1.0`.
    pub fn graph_url(&self) -> String {
        self.shared.graph_url()
    }

    /// The login authority, e.g. `http://127.0.0.1:PORT`.
    pub fn authority_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The token endpoint for the simulated tenant.
    pub fn token_url(&self) -> String {
        let tenant_id = self.shared.tenant().tenant_id.clone();
        format!("{}/{tenant_id}/oauth2/v2.0/token", self.shared.base_url)
    }

    /// Reads or changes the directory.
    pub fn with_tenant<R>(&self, f: impl FnOnce(&mut Tenant) -> R) -> R {
        f(&mut self.shared.tenant())
    }

    /// The directory, locked. Do not hold the guard across an `.await`.
    pub fn tenant(&self) -> MutexGuard<'_, Tenant> {
        self.shared.tenant()
    }

    /// Reads or changes the injected faults.
    pub fn with_faults<R>(&self, f: impl FnOnce(&mut Faults) -> R) -> R {
        f(&mut self.shared.faults())
    }

    /// The faults, locked. Do not hold the guard across an `.await`.
    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        self.shared.faults()
    }

    /// Replaces all faults.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults() = faults;
    }

    /// A copy of the statistics.
    pub fn stats(&self) -> Stats {
        self.shared.stats().clone()
    }

    pub fn reset_stats(&self) {
        *self.shared.stats() = Stats::default();
    }

    /// A valid access token without a token request (for tests of Graph-only code).
    pub fn issue_token(&self) -> String {
        let lifetime = self.shared.faults().token_lifetime_secs;
        self.shared.issue_token(lifetime)
    }

    /// Stops accepting requests and waits (up to five seconds) for the server to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
