//! Access tokens for Microsoft Graph with the OAuth 2.0 client-credentials grant (`oauth2`),
//! against `{authority}/{tenant}/oauth2/v2.0/token`. A token is cached until shortly before it
//! expires and refreshed once when Graph answers 401. Entra's AADSTS errors become messages that
//! name the fix. The client secret and the tokens never reach a log line.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use oauth2::basic::{BasicClient, BasicErrorResponse};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RequestTokenError, Scope,
    TokenResponse, TokenUrl,
};
use tokio::sync::Mutex;

use super::cloud::Endpoints;
use crate::domain::Clock;
use crate::secrets::Secret;

type TokenClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Microsoft Entra refused the token request ({code}): {fix} [{error}: {description}]")]
    Rejected {
        /// The AADSTS code, or the OAuth error code when there is none.
        code: String,
        error: String,
        description: String,
        fix: &'static str,
    },
    #[error("the token endpoint could not be reached: {0}")]
    Transport(String),
    #[error("the token endpoint URL is invalid: {0}")]
    BadUrl(String),
    #[error("the token endpoint answered something that is not a token response: {0}")]
    Malformed(String),
}

/// What to do about an AADSTS error, in the words of the operator who must do it.
pub fn fix_for(code: &str) -> &'static str {
    match code {
        "AADSTS7000215" => {
            "the client secret is wrong: create a new one under App registrations > Certificates & secrets and update the integration"
        }
        "AADSTS7000222" => {
            "the client secret has expired: create a new one under App registrations > Certificates & secrets and update the integration"
        }
        "AADSTS700016" => {
            "no application with this client id exists in the tenant: check --client-id and --tenant-id"
        }
        "AADSTS90002" | "AADSTS90023" => {
            "the tenant was not found: check --tenant-id (and --cloud for national clouds)"
        }
        "AADSTS65001" | "AADSTS500011" => {
            "the application lacks admin consent: grant admin consent for Application.Read.All, User.Read.All and GroupMember.Read.All"
        }
        "AADSTS7000218" => {
            "the request carried no client secret: set --client-secret-env or --client-secret-file"
        }
        "AADSTS50126" | "AADSTS50034" => "the credentials are not valid for this tenant",
        "AADSTS90033" => {
            "Microsoft Entra's token service is temporarily unavailable; nothing to fix on your side, the next attempt retries"
        }
        _ => {
            "see the error description; the integration's tenant id, client id and secret must match the app registration"
        }
    }
}

/// The first `AADSTSnnnn` code in an error description.
pub fn aadsts_code(description: &str) -> Option<String> {
    let start = description.find("AADSTS")?;
    let digits: String = description[start + 6..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!digits.is_empty()).then(|| format!("AADSTS{digits}"))
}

struct Cached {
    token: Secret,
    refresh_at: DateTime<Utc>,
}

/// Hands out Graph access tokens for one integration.
pub struct TokenSource {
    client: TokenClient,
    http: reqwest::Client,
    scope: String,
    clock: Arc<dyn Clock>,
    cache: Mutex<Option<Cached>>,
    requests: AtomicU64,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    pub fn new(
        endpoints: &Endpoints,
        client_id: &str,
        client_secret: &Secret,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AuthError> {
        let token_url = TokenUrl::new(endpoints.token_url.clone())
            .map_err(|e| AuthError::BadUrl(e.to_string()))?;
        let client = BasicClient::new(ClientId::new(client_id.to_owned()))
            .set_client_secret(ClientSecret::new(client_secret.expose().to_owned()))
            // Entra expects client_id and client_secret in the form body.
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(token_url);
        let http = reqwest::Client::builder()
            // Following redirects on a token request invites SSRF.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| AuthError::Transport(e.to_string()))?;
        Ok(Self {
            client,
            http,
            scope: endpoints.scope.clone(),
            clock,
            cache: Mutex::new(None),
            requests: AtomicU64::new(0),
        })
    }

    /// How many token requests were sent (a refresh counts).
    pub fn token_requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// A valid token: the cached one until shortly before it expires, else a new one.
    pub async fn token(&self) -> Result<Secret, AuthError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref().filter(|c| self.clock.now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        let fresh = self.request().await?;
        let token = fresh.token.clone();
        *cache = Some(fresh);
        Ok(token)
    }

    /// Drops the cached token and requests a new one (after Graph answered 401).
    pub async fn refresh(&self) -> Result<Secret, AuthError> {
        let mut cache = self.cache.lock().await;
        crate::metrics::token_refresh();
        let fresh = self.request().await?;
        let token = fresh.token.clone();
        *cache = Some(fresh);
        Ok(token)
    }

    async fn request(&self) -> Result<Cached, AuthError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = self
            .client
            .exchange_client_credentials()
            .add_scope(Scope::new(self.scope.clone()))
            .request_async(&self.http)
            .await;
        crate::metrics::token_request(response.is_ok());
        let response = response.map_err(map_error)?;
        let lifetime = response
            .expires_in()
            .and_then(|d| TimeDelta::from_std(d).ok())
            .unwrap_or(TimeDelta::minutes(60));
        // Refresh five minutes early, or at half the lifetime for short-lived tokens.
        let margin = TimeDelta::minutes(5).min(lifetime / 2);
        tracing::debug!(
            lifetime_s = lifetime.num_seconds(),
            "Graph access token issued"
        );
        Ok(Cached {
            token: Secret::new(response.access_token().secret().clone()),
            refresh_at: self.clock.now() + lifetime - margin,
        })
    }
}

fn map_error<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, BasicErrorResponse>,
) -> AuthError {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let description = r.error_description().cloned().unwrap_or_default();
            let error = r.error().to_string();
            let code = aadsts_code(&description).unwrap_or_else(|| error.clone());
            // Entra appends trace and correlation ids; the first line says it all.
            let description = description.lines().next().unwrap_or_default().to_owned();
            AuthError::Rejected {
                fix: fix_for(&code),
                code,
                error,
                description,
            }
        }
        RequestTokenError::Request(e) => AuthError::Transport(e.to_string()),
        RequestTokenError::Parse(e, _) => AuthError::Malformed(e.to_string()),
        RequestTokenError::Other(e) => AuthError::Malformed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aadsts_codes_are_found_and_explained() {
        let d = "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.\r\nTrace ID: x";
        assert_eq!(aadsts_code(d).as_deref(), Some("AADSTS7000215"));
        assert!(fix_for("AADSTS7000215").contains("Certificates & secrets"));
        assert!(fix_for("AADSTS90002").contains("--tenant-id"));
        assert!(fix_for("AADSTS65001").contains("admin consent"));
        assert_eq!(aadsts_code("no code here"), None);
        assert_eq!(aadsts_code("AADSTS"), None);
    }
}
