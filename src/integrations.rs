//! The lifecycle of integrations: creating a SCIM integration (its token generated, hashed for
//! verification and sealed for the reveal) or a Graph integration (its client secret sealed,
//! never stored in plain text), listing them masked or revealed, and deleting one (its token
//! stops working at once: the deletion changes the integrations' epoch, which every cached
//! token lookup is checked against, see `store::auth_epoch` and `scim::auth`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::DeletionThreshold;
use crate::entra::cloud::{Cloud, Endpoints};
use crate::sync::mapping::Mapping;

use crate::domain::{AccountId, IntegrationId, IntegrationKind, StoreError};
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
    #[error("integration {name:?} is a {kind} integration, not a Graph one")]
    NotGraph { name: String, kind: IntegrationKind },
    #[error("integration {name:?} has unreadable settings: {reason}")]
    BadSettings { name: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A Graph integration's settings (the `settings` JSON of its row). The client secret is not
/// here: it is sealed in the row's `secret_sealed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphSettings {
    pub tenant_id: String,
    pub client_id: String,
    /// The object id of the essentry enterprise application (its service principal).
    pub service_principal_id: String,
    #[serde(default)]
    pub cloud: Cloud,
    /// Explicit Graph root (proxy, simulator); the cloud's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_url: Option<String>,
    /// Explicit login authority; the cloud's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_url: Option<String>,
    /// Also provision members of groups nested in assigned groups (Entra itself does not).
    #[serde(default)]
    pub transitive: bool,
    #[serde(default)]
    pub mapping: Mapping,
    #[serde(default)]
    pub threshold: DeletionThreshold,
    /// `every 40m`-style interval or a cron expression; the `sync.schedule` setting when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// How often a cycle reads the whole scope rather than its delta links (`every 24h`-style or
    /// cron); the `sync.full_reconcile` setting when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_reconcile: Option<String>,
}

impl GraphSettings {
    /// The settings of one enterprise application in `tenant_id`: the global cloud and its own
    /// hosts, direct and group assignments only (not transitive), the default mapping, deletion
    /// threshold and schedules. Callers change what differs.
    pub fn new(
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        service_principal_id: impl Into<String>,
    ) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            service_principal_id: service_principal_id.into(),
            cloud: Cloud::Global,
            graph_url: None,
            authority_url: None,
            transitive: false,
            mapping: Mapping::default(),
            threshold: DeletionThreshold::default(),
            schedule: None,
            full_reconcile: None,
        }
    }

    /// The Graph simulator's sample tenant (its tenant, client and service principal), pointed
    /// at the simulator's Graph root and token endpoint: what `demo`, the tests and the
    /// benchmarks connect to.
    pub fn sample(graph_url: String, authority_url: String) -> Self {
        use crate::entra::simulator::{
            SAMPLE_CLIENT_ID, SAMPLE_SERVICE_PRINCIPAL_ID, SAMPLE_TENANT_ID,
        };
        Self {
            graph_url: Some(graph_url),
            authority_url: Some(authority_url),
            ..Self::new(
                SAMPLE_TENANT_ID,
                SAMPLE_CLIENT_ID,
                SAMPLE_SERVICE_PRINCIPAL_ID,
            )
        }
    }

    pub fn endpoints(&self) -> Result<Endpoints, IntegrationError> {
        Ok(Endpoints::new(
            self.cloud,
            &self.tenant_id,
            self.graph_url.as_deref(),
            self.authority_url.as_deref(),
        ))
    }

    fn validate(&self) -> Result<(), IntegrationError> {
        let guid_or_domain = |what: &str, v: &str, domain_ok: bool| {
            let ok = uuid::Uuid::parse_str(v).is_ok()
                || (domain_ok
                    && v.contains('.')
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
            if ok {
                Ok(())
            } else {
                Err(IntegrationError::Invalid(format!(
                    "{what} {v:?} is not a GUID{}",
                    if domain_ok { " or a domain" } else { "" }
                )))
            }
        };
        guid_or_domain("--tenant-id", &self.tenant_id, true)?;
        guid_or_domain("--client-id", &self.client_id, false)?;
        guid_or_domain("--service-principal-id", &self.service_principal_id, false)?;
        for (what, url) in [
            ("--graph-url", &self.graph_url),
            ("--authority-url", &self.authority_url),
        ] {
            if let Some(u) = url {
                let parsed = reqwest::Url::parse(u).map_err(|e| {
                    IntegrationError::Invalid(format!("{what} {u:?} is not a URL: {e}"))
                })?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.query().is_some() {
                    return Err(IntegrationError::Invalid(format!(
                        "{what} must be an http(s) URL without a query"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A Graph integration ready to read: its row, settings and opened client secret.
#[derive(Debug, Clone)]
pub struct GraphIntegration {
    pub row: IntegrationRow,
    pub settings: GraphSettings,
    pub client_secret: Secret,
}

impl GraphIntegration {
    /// Parses a stored row and opens its secret.
    pub fn open(row: IntegrationRow, key: &SecretKey) -> Result<Self, IntegrationError> {
        if row.kind != IntegrationKind::Graph {
            return Err(IntegrationError::NotGraph {
                name: row.name,
                kind: row.kind,
            });
        }
        let settings: GraphSettings =
            serde_json::from_value(row.settings.clone()).map_err(|e| {
                IntegrationError::BadSettings {
                    name: row.name.clone(),
                    reason: e.to_string(),
                }
            })?;
        let sealed = row
            .secret_sealed
            .as_deref()
            .ok_or_else(|| IntegrationError::BadSettings {
                name: row.name.clone(),
                reason: "no client secret stored".to_owned(),
            })?;
        let client_secret =
            key.open(sealed, row.id.as_str())
                .map_err(|source| IntegrationError::Secret {
                    name: row.name.clone(),
                    source,
                })?;
        Ok(Self {
            row,
            settings,
            client_secret,
        })
    }
}

/// The named integration of `account`.
pub async fn find(
    store: &Store,
    account: &AccountId,
    account_name: &str,
    name: &str,
) -> Result<IntegrationRow, IntegrationError> {
    store
        .list_integrations(Some(account))
        .await?
        .into_iter()
        .find(|r| r.name == name.trim())
        .ok_or_else(|| IntegrationError::NotFound {
            account: account_name.to_owned(),
            name: name.to_owned(),
        })
}

/// Creates a Graph integration; the client secret is sealed with the secrets key.
#[allow(clippy::too_many_arguments)]
pub async fn create_graph(
    store: &Store,
    key: &SecretKey,
    account: &AccountId,
    account_name: &str,
    name: &str,
    settings: &GraphSettings,
    client_secret: &Secret,
    now: DateTime<Utc>,
) -> Result<IntegrationView, IntegrationError> {
    let name = validate_name(name)?;
    settings.validate()?;
    if client_secret.expose().trim().is_empty() {
        return Err(IntegrationError::Invalid(
            "the client secret is empty".to_owned(),
        ));
    }
    let id = IntegrationId::generate();
    let sealed = key
        .seal(client_secret.expose(), id.as_str())
        .map_err(|source| IntegrationError::Secret {
            name: name.to_owned(),
            source,
        })?;
    let row = IntegrationRow {
        id,
        account_id: account.clone(),
        account_name: account_name.to_owned(),
        name: name.to_owned(),
        kind: IntegrationKind::Graph,
        token_hash: None,
        // Nothing of a client secret is kept in clear, not even its last characters.
        token_hint: None,
        secret_sealed: Some(sealed),
        settings: serde_json::to_value(settings).map_err(|e| IntegrationError::BadSettings {
            name: name.to_owned(),
            reason: e.to_string(),
        })?,
        created_at: now,
    };
    insert(store, &row).await?;
    Ok(IntegrationView {
        name: row.name,
        account: row.account_name,
        kind: row.kind,
        endpoint_url: settings.endpoints()?.graph_v1,
        token: SEALED.to_owned(),
        created_at: row.created_at,
    })
}

/// What `integration list` shows for a Graph client secret without `--reveal`.
pub const SEALED: &str = "(sealed)";

/// An integration as shown to an operator.
#[derive(Debug, Clone, Serialize)]
pub struct IntegrationView {
    pub name: String,
    pub account: String,
    pub kind: IntegrationKind,
    pub endpoint_url: String,
    /// Revealed: the SCIM token or the Graph client secret. Otherwise the SCIM token's masked
    /// hint, and for a Graph client secret only `(sealed)`.
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

/// Stores a new integration; its name must be new in the account.
async fn insert(store: &Store, row: &IntegrationRow) -> Result<(), IntegrationError> {
    let mut tx = store.begin().await?;
    match tx.insert_integration(row).await {
        Err(StoreError::Conflict(_)) => {
            return Err(IntegrationError::Exists {
                account: row.account_name.clone(),
                name: row.name.clone(),
            });
        }
        other => other?,
    }
    tx.commit().await?;
    Ok(())
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
        kind: IntegrationKind::Scim,
        token_hash: Some(secrets::token_hash(token.expose())),
        token_hint: Some(secrets::token_hint(token.expose())),
        secret_sealed: Some(key.seal(token.expose(), id.as_str()).map_err(secret_err)?),
        settings: json!({}),
        created_at: now,
    };
    insert(store, &row).await?;
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
            // A Graph client secret is never shown, even partly, without the reveal.
            _ if r.kind == IntegrationKind::Graph => SEALED.to_owned(),
            _ => r.token_hint.clone().unwrap_or_else(|| "-".to_owned()),
        };
        let endpoint_url = match serde_json::from_value::<GraphSettings>(r.settings.clone()) {
            Ok(g) if r.kind == IntegrationKind::Graph => g
                .endpoints()
                .map(|e| e.graph_v1)
                .unwrap_or_else(|_| "-".to_owned()),
            _ => endpoint_url.to_owned(),
        };
        out.push(IntegrationView {
            endpoint_url,
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
    if deleted && let Err(e) = store.integrations_changed() {
        // The deletion is committed; the cached token lookups notice it by their maximum age.
        tracing::warn!(error = %e, "could not signal the deletion of an integration to caches");
    }
    if !deleted {
        return Err(IntegrationError::NotFound {
            account: account_name.to_owned(),
            name: name.to_owned(),
        });
    }
    Ok(())
}
