//! Bearer-token authentication of the SCIM endpoint, with an in-memory cache of token lookups.
//!
//! A token is looked up by its SHA-256 and checked in constant time; it is never logged or
//! kept (the cache is keyed by the hash). A successful lookup is cached with the integrations'
//! epoch it was read under ([`crate::store::AuthEpoch`], read *before* the lookup); a cached
//! entry serves a request only while the epoch is unchanged, so deleting (disconnecting) an
//! integration — in this process, in a CLI process on the same SQLite file, or on any
//! PostgreSQL replica — makes its token fail at once. An entry also serves for at most
//! [`MAX_AGE`], which bounds what a missed signal could cost. Failed lookups are not cached.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::domain::IntegrationKind;
use crate::http::AppState;
use crate::secrets;
use crate::store::AuthEpoch;

use super::error::ScimError;
use super::request::Caller;

/// How long a cached lookup serves before the database is asked again.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// Most cached tokens (only valid tokens are cached, one per SCIM integration); beyond it the
/// cache starts over.
const MAX_ENTRIES: usize = 10_000;

/// What a valid token resolves to.
#[derive(Debug, Clone)]
struct Resolved {
    caller: Caller,
    account_name: Arc<str>,
    token_hash: Arc<[u8]>,
}

struct Entry {
    resolved: Resolved,
    epoch: AuthEpoch,
    fetched: Instant,
}

/// The cache of token lookups (one per server).
#[derive(Default)]
pub struct AuthCache {
    entries: RwLock<HashMap<Vec<u8>, Entry>>,
}

impl AuthCache {
    fn get(&self, hash: &[u8], epoch: AuthEpoch) -> Option<Resolved> {
        let entries = self.entries.read().ok()?;
        let e = entries.get(hash)?;
        (e.epoch == epoch && e.fetched.elapsed() < MAX_AGE).then(|| e.resolved.clone())
    }

    fn put(&self, hash: Vec<u8>, resolved: Resolved, epoch: AuthEpoch) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            hash,
            Entry {
                resolved,
                epoch,
                fetched: Instant::now(),
            },
        );
    }
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The SCIM integration `token` belongs to, from the cache or the database.
async fn resolve(state: &AppState, token: &str) -> Result<Option<Resolved>, ScimError> {
    let hash = secrets::token_hash(token);
    let epoch = state.store.auth_epoch().await?;
    if let Some(hit) = state.auth_cache.get(&hash, epoch)
        && secrets::verify_token(token, &hit.token_hash)
    {
        return Ok(Some(hit));
    }
    // Boxed: a cache miss is rare, and its database future would otherwise be carried (and
    // copied) by every request's.
    let found = Box::pin(state.store.integration_by_token_hash(&hash)).await?;
    let Some(integration) = found.filter(|i| {
        i.kind == IntegrationKind::Scim
            && i.token_hash
                .as_deref()
                .is_some_and(|h| secrets::verify_token(token, h))
    }) else {
        return Ok(None);
    };
    let resolved = Resolved {
        caller: Caller {
            account: integration.account_id,
            integration_id: integration.id,
            integration_name: integration.name,
        },
        account_name: integration.account_name.into(),
        token_hash: hash.clone().into(),
    };
    state.auth_cache.put(hash, resolved.clone(), epoch);
    Ok(Some(resolved))
}

/// Resolves the bearer token to its integration (401 without a valid one) and runs the request
/// in a `scim` span naming the integration and its account.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(token) = bearer(&req) else {
        return ScimError::unauthorized(
            "missing bearer token: send \"Authorization: Bearer <token>\"",
        )
        .into_response();
    };
    let resolved = match resolve(&state, token).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return ScimError::unauthorized(
                "the bearer token is not valid (was the integration deleted?)",
            )
            .into_response();
        }
        Err(e) => return e.into_response(),
    };
    let span = tracing::info_span!(
        "scim",
        integration = %resolved.caller.integration_name,
        integration_id = %resolved.caller.integration_id,
        account = %resolved.account_name,
        method = %req.method(),
        path = %req.uri().path(),
    );
    req.extensions_mut().insert(resolved.caller);
    next.run(req).instrument(span).await
}
