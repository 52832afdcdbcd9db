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
//! - The delta queries `users/delta` and `groups/delta` (module `delta`): `$select`,
//!   `$filter=id eq '…' or …` (50 ids at most), `Prefer: odata.maxpagesize` (default 100, at
//!   most 999), opaque `$skiptoken`/`$deltatoken` links, `$deltatoken=latest`, replayable
//!   delta links, changed users as `id` plus the changed selected properties, `@removed`
//!   (`changed` for a soft delete, `deleted` for a permanent one), `members@delta` with added and
//!   removed members, a large group's members spread over consecutive pages, and `410 Gone`
//!   (`syncStateNotFound` or `resyncRequired`) for an invalidated token.
//! - [`Faults`] injects throttling (429 + `Retry-After`), 503/504, truncated pages, broken
//!   next links, looping next links (all of these on delta pages too), token expiry, delta
//!   token expiry, token endpoint outages and latency; [`Stats`] counts requests, by route too
//!   (`GET /users/delta` and `GET /groups/delta` are routes of their own).
//!
//! The directory is a [`Tenant`] that tests change between reads. Use the closure accessors
//! ([`Simulator::with_tenant`], [`Simulator::with_faults`]); the guard accessors must not be
//! held across an `.await` (the server locks the same state).
//!
//! Control API for tests and benchmarks (every [`Tenant`] mutator records its change in the log
//! the delta queries read, once the tenant is served):
//! - users: [`Tenant::add_user`] (create), [`Tenant::update_user`] (rename or any attribute),
//!   [`Tenant::disable_user`], [`Tenant::soft_delete_user`] (recycle bin: leaves its groups and
//!   loses its assignment), [`Tenant::restore_user`] (gives both back), [`Tenant::remove_user`]
//!   (permanent delete, also from the recycle bin);
//! - groups: [`Tenant::add_group`], [`Tenant::rename_group`], [`Tenant::remove_group`],
//!   [`Tenant::add_member`], [`Tenant::remove_member`], [`Tenant::set_members`];
//! - assignments (`appRoleAssignedTo`, which has no delta query): [`Tenant::assign`],
//!   [`Tenant::unassign`];
//! - [`Tenant::change_position`] counts the changes recorded since the simulator started;
//! - [`Simulator::expire_delta_tokens`] (or [`Faults::expire_delta_tokens`]) makes every
//!   delta and skip token issued so far answer 410 with the chosen [`DeltaExpiry`] code.

mod changes;
mod delta;
mod faults;
mod graph;
mod odata;
mod routes;
mod samples;
mod state;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_delta;
#[cfg(test)]
mod tests_faults;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use faults::{DeltaExpiry, Faults, Stats};
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
    /// This server's identity in delta tokens: a token from another simulator (or an earlier
    /// run) is answered 410, as Graph answers a token it does not know.
    instance: u64,
    /// Delta tokens carry the epoch they were issued in; expiry moves to the next epoch.
    delta_epoch: AtomicU64,
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

    /// The current delta epoch, first moving to a new one if the expiry fault asks for it.
    fn delta_epoch(&self) -> u64 {
        if std::mem::take(&mut self.faults().expire_delta_tokens) {
            self.delta_epoch.fetch_add(1, Ordering::SeqCst);
        }
        self.delta_epoch.load(Ordering::SeqCst)
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
    pub async fn bind(mut tenant: Tenant, addr: SocketAddr) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        tenant.log.start_recording();
        let shared = Arc::new(Shared {
            tenant: Mutex::new(tenant),
            faults: Mutex::new(Faults::default()),
            stats: Mutex::new(Stats::default()),
            tokens: Mutex::new(HashMap::new()),
            base_url: format!("http://{addr}"),
            instance: Uuid::new_v4().as_u64_pair().0,
            delta_epoch: AtomicU64::new(0),
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

    /// Invalidates every delta and skip token issued so far: their next use answers `410 Gone`
    /// with `code` (see [`Faults::expire_delta_tokens`] for the same as a fault).
    pub fn expire_delta_tokens(&self, code: DeltaExpiry) {
        self.shared.faults().delta_expiry = code;
        self.shared.delta_epoch.fetch_add(1, Ordering::SeqCst);
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
