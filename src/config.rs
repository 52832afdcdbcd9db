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
    pub sync: SyncSettings,
    pub admin: AdminSettings,
}

/// The pull sync's schedule, guards and limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SyncSettings {
    /// How often each Graph integration runs: `every 40m` (also `s`, `h`) or a cron expression
    /// (`0 */40 * * * *` style, seconds first, or 5 fields). An integration's own `schedule`
    /// overrides it.
    pub schedule: String,
    /// Seconds after `serve` starts before an integration that never ran gets its first cycle.
    pub first_run_delay_secs: u64,
    /// How often `serve` checks which integrations are due, in seconds.
    pub tick_secs: u64,
    /// Consecutive failed cycles after which an integration is quarantined (backs off).
    pub quarantine_after_failures: u32,
    /// First quarantine wait in minutes; it doubles with each further failure.
    pub quarantine_base_minutes: u64,
    /// Longest quarantine wait in hours.
    pub quarantine_max_hours: u64,
    /// Days the provisioning log and cycle summaries are kept.
    pub log_retention_days: u32,
    /// Retries all Graph requests of one cycle may use together.
    pub retry_budget_retries: u32,
    /// Seconds all retries of one cycle may wait together.
    pub retry_budget_wait_secs: u64,
    /// A listing longer than this many pages aborts the cycle.
    pub max_pages: u32,
    /// Graph requests in flight at once during a read.
    pub concurrency: usize,
    /// Timeout of one Graph request, in seconds.
    pub request_timeout_secs: u64,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            schedule: "every 40m".to_owned(),
            first_run_delay_secs: 15,
            tick_secs: 30,
            quarantine_after_failures: 3,
            quarantine_base_minutes: 60,
            quarantine_max_hours: 24,
            log_retention_days: 30,
            retry_budget_retries: 200,
            retry_budget_wait_secs: 15 * 60,
            max_pages: 10_000,
            concurrency: 4,
            request_timeout_secs: 60,
        }
    }
}

/// The admin API (`/admin/v1`). Its tokens are created with `essentry-sync admin-token create`
/// and stored hashed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AdminSettings {
    /// Serve the admin API at all.
    pub enabled: bool,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self { enabled: true }
    }
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
