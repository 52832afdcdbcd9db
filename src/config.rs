//! Settings: built-in defaults, then `config/essentry-sync.toml` (or `--config`), then the
//! environment (`ESSENTRY_<SECTION>__<KEY>`, e.g. `ESSENTRY_SERVER__LISTEN`, plus the customary
//! `DATABASE_URL`), each overriding the one before.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub secrets: SecretsSettings,
    pub directory: DirectorySettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ServerSettings {
    /// Address `serve` listens on.
    pub listen: String,
    /// The externally reachable base URL, used in Endpoint URLs and `meta.location`.
    /// Defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// Largest accepted request body, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Largest `count` a SCIM list returns in one page.
    pub max_page_size: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DatabaseSettings {
    /// `sqlite://data/essentry.db` (default) or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
}

#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SecretsSettings {
    /// The 32-byte key that seals secrets at rest, base64. Prefer the environment
    /// (`ESSENTRY_SECRETS__KEY`) or `key_file` over writing it here.
    pub key: Option<String>,
    /// Where the key lives when `key` is unset; created (mode 0600) on first run.
    pub key_file: PathBuf,
}

impl std::fmt::Debug for SecretsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsSettings")
            .field("key", &self.key.as_ref().map(|_| "[redacted]"))
            .field("key_file", &self.key_file)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DirectorySettings {
    /// The account commands act on when `--account` is not given.
    pub default_account: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `essentry_sync=debug,info`. `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            public_url: None,
            max_body_bytes: 1024 * 1024,
            max_page_size: 1000,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://data/essentry.db".to_owned(),
            max_connections: 8,
        }
    }
}

impl Default for SecretsSettings {
    fn default() -> Self {
        Self {
            key: None,
            key_file: PathBuf::from("data/secret.key"),
        }
    }
}

impl Default for DirectorySettings {
    fn default() -> Self {
        Self {
            default_account: "default".to_owned(),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: "text".to_owned(),
            filter: "info".to_owned(),
        }
    }
}

/// The default location of the settings file.
pub const DEFAULT_FILE: &str = "config/essentry-sync.toml";

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Settings {
    /// Loads defaults, then `file` (required to exist if given explicitly; the default file is
    /// optional), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) if !path.exists() => {
                return Err(ConfigError(format!("{} does not exist", path.display())));
            }
            Some(path) => figment = figment.merge(Toml::file(path)),
            None => figment = figment.merge(Toml::file(DEFAULT_FILE)),
        }
        figment = figment.merge(Env::prefixed("ESSENTRY_").split("__"));
        if let Ok(url) = std::env::var("DATABASE_URL")
            && !url.trim().is_empty()
        {
            figment = figment.merge(Serialized::default("database.url", url));
        }
        let settings: Settings = figment.extract().map_err(|e| ConfigError(e.to_string()))?;
        if !matches!(settings.log.format.as_str(), "text" | "json") {
            return Err(ConfigError(format!(
                "log.format must be \"text\" or \"json\", not {:?}",
                settings.log.format
            )));
        }
        Ok(settings)
    }

    /// The base URL clients reach this service at, without a trailing slash.
    pub fn public_url(&self) -> String {
        self.server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.server.listen))
            .trim_end_matches('/')
            .to_owned()
    }

    /// The SCIM Endpoint URL (Entra's "Tenant URL").
    pub fn scim_base_url(&self) -> String {
        format!("{}/scim/v2", self.public_url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_matches_the_defaults() {
        let shipped = Settings::load(Some(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/essentry-sync.toml"
        ))));
        // The environment of the test run may override some keys; compare the file alone.
        let file: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/config/essentry-sync.toml"
            )))
            .extract()
            .unwrap();
        assert!(shipped.is_ok());
        assert_eq!(file, Settings::default());
    }
}
