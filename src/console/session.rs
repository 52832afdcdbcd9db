//! Signing in and out of the console, and the session every other page requires.
//!
//! - `POST /admin/login` (form field `token`, an admin token checked by
//!   [`crate::admin_tokens::authenticate`], as the admin API checks it) starts a session: a random cookie value whose SHA-256
//!   is the key of a `console_sessions` row (so every replica on the same database knows it),
//!   with a CSRF token of its own. The cookie is `HttpOnly`, `SameSite=Strict`, scoped to
//!   `/admin`, and `Secure` when `server.public_url` is https.
//! - A session ends [`IDLE`] after its last request or [`ABSOLUTE`] after sign-in (never after
//!   the admin token's own expiry), whichever comes first, at sign-out (the row is deleted, so
//!   the cookie is worthless at once), or when its admin token is revoked (the token's row goes,
//!   and its sessions with it). A token scoped to one account signs in to that account only.
//! - Every POST behind the sign-in must carry the session's CSRF token as the form field `csrf`;
//!   [`require_session`] checks it before the handler runs, so a request without it (403)
//!   changes nothing.
//! - Failed sign-ins are limited per client address: [`MAX_FAILURES`] in [`FAILURE_WINDOW`],
//!   then 429 until the window ends. The limiter is in memory, per replica.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Form, FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use minijinja::context;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{ConsoleError, audit, render};
use crate::admin_tokens::{self, AuthError};
use crate::domain::AccountId;
use crate::http::AppState;
use crate::secrets;
use crate::store::SessionRow;

/// The session cookie's name.
pub const COOKIE: &str = "essy_console";
/// A session ends this long after its last request.
pub const IDLE: TimeDelta = TimeDelta::minutes(30);
/// A session ends this long after sign-in, however active.
pub const ABSOLUTE: TimeDelta = TimeDelta::hours(12);
/// Failed sign-ins a client may make in [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 5;
pub const FAILURE_WINDOW: TimeDelta = TimeDelta::minutes(5);
/// Activity is written back to the session row at most this often.
const TOUCH_EVERY: TimeDelta = TimeDelta::seconds(60);
/// The largest form a POST may carry.
const MAX_FORM: usize = 64 * 1024;

/// Who is signed in, and what they may see: one account.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The admin token's name (the "who" of the audit trail).
    pub token_name: String,
    pub account: AccountId,
    pub account_name: String,
    pub csrf: String,
    /// The client's address, for the audit trail.
    pub client: String,
}

fn random_token() -> Result<String, ConsoleError> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf)
        .map_err(|e| ConsoleError::BadRequest(format!("no randomness available: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// The client's address (the TCP peer; behind a reverse proxy, the proxy's).
pub(crate) fn client_of(request_ext: &axum::http::Extensions) -> String {
    request_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn cookie_value(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn secure(state: &AppState) -> bool {
    state.settings.public_url().starts_with("https://")
}

fn set_cookie(state: &AppState, value: &str, max_age: i64) -> Option<HeaderValue> {
    let secure = if secure(state) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// `GET /admin/login`.
pub async fn login_form() -> Result<Response, ConsoleError> {
    login_page(StatusCode::OK, None)
}

fn login_page(status: StatusCode, error: Option<&str>) -> Result<Response, ConsoleError> {
    let html = render::render("login.html", context! { error => error })?;
    Ok((status, html).into_response())
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
}

/// Whether `client` may try to sign in now: fewer than [`MAX_FAILURES`] in the current window.
fn allowed(state: &AppState, client: &str, now: DateTime<Utc>) -> bool {
    let Ok(map) = state.console.sign_in_failures.lock() else {
        return false;
    };
    match map.get(client) {
        Some((start, n)) if now - *start < FAILURE_WINDOW => *n < MAX_FAILURES,
        _ => true,
    }
}

fn record_failure(state: &AppState, client: &str, now: DateTime<Utc>) {
    if let Ok(mut map) = state.console.sign_in_failures.lock() {
        if map.len() > 10_000 {
            map.retain(|_, (start, _)| now - *start < FAILURE_WINDOW);
        }
        let entry = map.entry(client.to_owned()).or_insert((now, 0));
        if now - entry.0 >= FAILURE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

/// `POST /admin/login`.
pub async fn login(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ConsoleError> {
    let client = client_of(request.extensions());
    let now = state.clock.now();
    if !allowed(&state, &client, now) {
        audit(&state, None, "-", "sign_in_limited", None, None, &client).await?;
        return login_page(
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many failed sign-ins from this address. Wait a few minutes and try again."),
        );
    }
    let Form(form) = Form::<LoginForm>::from_request(request, &state)
        .await
        .map_err(|e| ConsoleError::BadRequest(e.body_text()))?;
    let token = form.token.trim();
    // The one check of an admin token (unknown, revoked, expired), shared with the admin API.
    let caller = if token.is_empty() {
        None
    } else {
        match admin_tokens::authenticate(&state.store, token, now).await {
            Ok(caller) => Some(caller),
            Err(AuthError::Store(e)) => return Err(e.into()),
            Err(refused) => {
                tracing::info!(target: "audit", reason = %refused, client = %client, "console sign-in refused");
                None
            }
        }
    };
    let row = match caller {
        Some(_) => {
            state
                .store
                .admin_token_by_hash(&secrets::token_hash(token))
                .await?
        }
        None => None,
    };
    let (Some(caller), Some(row)) = (caller, row) else {
        record_failure(&state, &client, now);
        audit(&state, None, "-", "sign_in_failed", None, None, &client).await?;
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("That is not a valid admin token."),
        );
    };
    // A token scoped to one account sees that account; an unscoped one the default account.
    let (account, account_name) = match caller.account {
        Some((id, name)) => (id, name),
        None => {
            let name = state.settings.directory.default_account.clone();
            (state.store.ensure_account(&name, now).await?, name)
        }
    };
    let value = random_token()?;
    let expires_at = match row.expires_at {
        Some(at) => at.min(now + ABSOLUTE),
        None => now + ABSOLUTE,
    };
    let session = SessionRow {
        id_hash: secrets::token_hash(&value),
        token_id: row.id.clone(),
        token_name: caller.name.clone(),
        account_id: Some(account.clone()),
        account_name: Some(account_name),
        csrf: random_token()?,
        created_at: now,
        last_seen_at: now,
        expires_at,
    };
    state.store.insert_session(&session).await?;
    audit(
        &state,
        Some(&account),
        &caller.name,
        "sign_in",
        None,
        None,
        &client,
    )
    .await?;
    let mut response = Redirect::to("/admin/").into_response();
    if let Some(cookie) = set_cookie(&state, &value, (expires_at - now).num_seconds()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `POST /admin/logout`: ends the session server-side and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    axum::Extension(viewer): axum::Extension<Viewer>,
    axum::Extension(SessionKey(hash)): axum::Extension<SessionKey>,
) -> Result<Response, ConsoleError> {
    state.store.delete_session(&hash, state.clock.now()).await?;
    audit(
        &state,
        Some(&viewer.account),
        &viewer.token_name,
        "sign_out",
        None,
        None,
        &viewer.client,
    )
    .await?;
    let mut response = Redirect::to("/admin/login").into_response();
    if let Some(cookie) = set_cookie(&state, "", 0) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// The SHA-256 of the session cookie (the session row's key), for sign-out.
#[derive(Debug, Clone)]
pub struct SessionKey(pub Vec<u8>);

/// The middleware of every page behind the sign-in: a live session or a 303 to the sign-in
/// page; on a POST, the session's CSRF token in the form or 403.
pub async fn require_session(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ConsoleError> {
    let now = state.clock.now();
    let Some(value) = cookie_value(request.headers()) else {
        return Ok(Redirect::to("/admin/login").into_response());
    };
    let hash = secrets::token_hash(&value);
    let Some(session) = state.store.session_by_hash(&hash).await? else {
        return Ok(Redirect::to("/admin/login").into_response());
    };
    if now >= session.expires_at || now - session.last_seen_at >= IDLE {
        state.store.delete_session(&hash, now).await?;
        return Ok(Redirect::to("/admin/login").into_response());
    }
    if now - session.last_seen_at >= TOUCH_EVERY {
        state.store.touch_session(&hash, now).await?;
    }
    let (account, account_name) = match (session.account_id.clone(), session.account_name.clone()) {
        (Some(id), Some(name)) => (id, name),
        _ => {
            let name = state.settings.directory.default_account.clone();
            (state.store.ensure_account(&name, now).await?, name)
        }
    };
    let viewer = Viewer {
        token_name: session.token_name.clone(),
        account,
        account_name,
        csrf: session.csrf.clone(),
        client: client_of(request.extensions()),
    };
    let mut request = if request.method() == axum::http::Method::POST {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_FORM)
            .await
            .map_err(|_| ConsoleError::BadRequest("the form is too large".to_owned()))?;
        let presented = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .ok()
            .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v));
        let valid =
            presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(session.csrf.as_bytes())));
        if !valid {
            tracing::warn!(
                target: "audit",
                actor = %viewer.token_name,
                path = %parts.uri.path(),
                "console POST without a valid CSRF token refused"
            );
            return Ok(render::error_page(
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from the console. Reload the page and try again.",
            ));
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        request
    };
    request.extensions_mut().insert(viewer);
    request.extensions_mut().insert(SessionKey(hash));
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; essy_console=abc-123 ; other=1"),
        );
        assert_eq!(cookie_value(&headers).as_deref(), Some("abc-123"));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("essy_console=; x=y"),
        );
        assert_eq!(cookie_value(&headers), None, "an empty value is no session");
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("not_essy_console=abc"),
        );
        assert_eq!(cookie_value(&headers), None);
    }

    #[test]
    fn session_values_are_long_and_distinct() {
        let (a, b) = (random_token().ok(), random_token().ok());
        assert!(a.as_ref().is_some_and(|v| v.len() >= 43), "{a:?}");
        assert_ne!(a, b);
    }
}
