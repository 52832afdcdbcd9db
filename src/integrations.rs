//! The lifecycle of integrations: creating a SCIM integration (its token generated, hashed for
//! verification and sealed for the reveal), listing them masked or revealed, and deleting one
//! (its token stops working at once, since every request looks the hash up afresh).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::domain::{AccountId, IntegrationId, StoreError};
use crate::secrets::{self, Secret, SecretError, SecretKey};
use crate::store::{IntegrationRow, Store};

#[derive(Debug, thiserror::Error)]
pub enum IntegrationError {
    #[error("an integration name must be 1 to 100 printable characters")]
    BadName,
    #[error("account {account:?} already has an integration named {name:?}")]
    Exists { account: String, name: String },
    #[error("account {account:?} has no integration named {name:?}")]
    NotFound { account: String, name: String },
    #[error("integration {name:?}: {source}")]
    Secret {
        name: String,
        #[source]
        source: SecretError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An integration as shown to an operator.
#[derive(Debug, Clone, Serialize)]
pub struct IntegrationView {
    pub name: String,
    pub account: String,
    pub kind: String,
    pub endpoint_url: String,
    /// The token, or its masked hint unless revealed.
    pub token: String,
    pub created_at: DateTime<Utc>,
}

fn validate_name(name: &str) -> Result<&str, IntegrationError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(IntegrationError::BadName);
    }
    Ok(name)
}

/// Creates a SCIM integration for `account` and returns it with its token, which is shown once
/// here and afterwards only through the sealed copy.
pub async fn create_scim(
    store: &Store,
    key: &SecretKey,
    account: &AccountId,
    account_name: &str,
    name: &str,
    endpoint_url: &str,
    now: DateTime<Utc>,
) -> Result<(IntegrationView, Secret), IntegrationError> {
    let name = validate_name(name)?;
    let secret_err = |source| IntegrationError::Secret {
        name: name.to_owned(),
        source,
    };
    let token = secrets::generate_scim_token().map_err(secret_err)?;
    let id = IntegrationId::generate();
    let row = IntegrationRow {
        id: id.clone(),
        account_id: account.clone(),
        account_name: account_name.to_owned(),
        name: name.to_owned(),
        kind: "scim".to_owned(),
        token_hash: Some(secrets::token_hash(token.expose())),
        token_hint: Some(secrets::token_hint(token.expose())),
        secret_sealed: Some(key.seal(token.expose(), id.as_str()).map_err(secret_err)?),
        settings: json!({}),
        created_at: now,
    };
    let mut tx = store.begin().await?;
    match tx.insert_integration(&row).await {
        Err(StoreError::Conflict(_)) => {
            return Err(IntegrationError::Exists {
                account: account_name.to_owned(),
                name: name.to_owned(),
            });
        }
        other => other?,
    }
    tx.commit().await?;
    let view = IntegrationView {
        name: row.name,
        account: row.account_name,
        kind: row.kind,
        endpoint_url: endpoint_url.to_owned(),
        token: token.expose().to_owned(),
        created_at: row.created_at,
    };
    Ok((view, token))
}

/// Integrations of `account` (or of every account), tokens masked unless `reveal` has the key.
pub async fn list(
    store: &Store,
    account: Option<&AccountId>,
    reveal: Option<&SecretKey>,
    endpoint_url: &str,
) -> Result<Vec<IntegrationView>, IntegrationError> {
    let rows = store.list_integrations(account).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let token = match (reveal, &r.secret_sealed) {
            (Some(key), Some(sealed)) => key
                .open(sealed, r.id.as_str())
                .map_err(|source| IntegrationError::Secret {
                    name: r.name.clone(),
                    source,
                })?
                .expose()
                .to_owned(),
            _ => r.token_hint.clone().unwrap_or_else(|| "-".to_owned()),
        };
        out.push(IntegrationView {
            endpoint_url: endpoint_url.to_owned(),
            name: r.name,
            account: r.account_name,
            kind: r.kind,
            token,
            created_at: r.created_at,
        });
    }
    Ok(out)
}

/// Deletes (disconnects) an integration.
pub async fn delete(
    store: &Store,
    account: &AccountId,
    account_name: &str,
    name: &str,
) -> Result<(), IntegrationError> {
    let mut tx = store.begin().await?;
    let deleted = tx.delete_integration(account, name).await?;
    tx.commit().await?;
    if !deleted {
        return Err(IntegrationError::NotFound {
            account: account_name.to_owned(),
            name: name.to_owned(),
        });
    }
    Ok(())
}
