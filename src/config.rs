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
    pub mail: MailSettings,
    pub scim: ScimSettings,
}

/// What one SCIM request may cost (see [`crate::scim::write`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ScimSettings {
    /// Most operations in one PATCH request (`400 tooMany` beyond).
    pub max_patch_operations: usize,
    /// Most values in one multi-valued attribute such as `emails` (`400 invalidValue` beyond);
    /// group members are not counted.
    pub max_multi_valued: usize,
    /// Most write requests that share one transaction on SQLite (group commit: writes arriving
    /// together commit together, each with its own result; 1 gives every write its own
    /// transaction). PostgreSQL always gives every write its own transaction.
    pub group_commit_max: usize,
}

impl Default for ScimSettings {
    fn default() -> Self {
        Self {
            max_patch_operations: 1000,
            max_multi_valued: 100,
            group_commit_max: 64,
        }
    }
}

/// The pull sync's schedule, guards and limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SyncSettings {
    /// Whether `serve` runs Graph integrations on their schedule (off: cycles run only when an
    /// operator asks, through the CLI or the admin API).
    pub scheduler_enabled: bool,
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
    /// More users than this in one listing or in the whole scope aborts the cycle.
    pub max_users: u64,
    /// Graph requests in flight at once during a read.
    pub concurrency: usize,
    /// Timeout of one Graph request, in seconds.
    pub request_timeout_secs: u64,
    /// Days a staged deletion waits for review before it expires (a later cycle that still
    /// finds it due stages it again).
    pub staged_deletion_expiry_days: u32,
    /// How often a Graph integration's cycle reads the whole scope instead of following its
    /// delta links (`every 24h` or a cron expression). An integration's own `full_reconcile`
    /// overrides it.
    pub full_reconcile: String,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            scheduler_enabled: true,
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
            max_users: 1_000_000,
            concurrency: 4,
            request_timeout_secs: 60,
            staged_deletion_expiry_days: 7,
            full_reconcile: "every 24h".to_owned(),
        }
    }
}

/// How queued emails (the outbox) are delivered: see [`crate::notify`].
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MailSettings {
    /// Whether `serve` delivers the outbox (off: emails wait in the outbox for a process that
    /// does).
    pub worker_enabled: bool,
    /// `file` (the default: one `.eml` per message under `file_dir`) or `smtp`.
    pub transport: MailTransportKind,
    /// Where the file transport writes.
    pub file_dir: PathBuf,
    /// The sender, `address` or `Name <address>`.
    pub from: String,
    /// The domain of Message-IDs (`<outbox.{id}@{domain}>`); unset: the domain of `from`.
    pub message_id_domain: Option<String>,
    /// The SMTP relay (smtp transport).
    pub smtp_host: String,
    /// Unset: 587 with `starttls`, 465 with `implicit`, 25 with `none`.
    pub smtp_port: Option<u16>,
    /// `starttls` (upgrade required), `implicit` (TLS from the first byte) or `none` (plain
    /// text; only for a relay on loopback).
    pub smtp_tls: SmtpTls,
    /// SMTP AUTH credentials; both or neither. Prefer `ESSENTRY_MAIL__SMTP_PASSWORD`.
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    /// Timeout of connecting to the relay, and of sending one message, in seconds.
    pub smtp_timeout_secs: u64,
    /// Delivery attempts before a message is parked as `dead`.
    pub max_attempts: u32,
    /// Wait after the first failed attempt, in seconds; it doubles per further failure (with
    /// jitter), up to `backoff_max_secs`.
    pub backoff_base_secs: u64,
    pub backoff_max_secs: u64,
    /// Messages one worker claims at a time.
    pub batch_size: u32,
    /// How often the worker looks for due messages when the outbox is idle, in milliseconds.
    pub poll_interval_ms: u64,
    /// How long a claim holds a message, in seconds: a worker that dies mid-send leaves its
    /// messages to be sent again after this.
    pub lease_secs: u64,
}

/// The mail transport.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MailTransportKind {
    File,
    Smtp,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    Starttls,
    Implicit,
    None,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            worker_enabled: true,
            transport: MailTransportKind::File,
            file_dir: PathBuf::from("data/mail"),
            from: "essentry <no-reply@localhost>".to_owned(),
            message_id_domain: None,
            smtp_host: "localhost".to_owned(),
            smtp_port: None,
            smtp_tls: SmtpTls::Starttls,
            smtp_username: None,
            smtp_password: None,
            smtp_timeout_secs: 30,
            max_attempts: 8,
            backoff_base_secs: 30,
            backoff_max_secs: 3600,
            batch_size: 20,
            poll_interval_ms: 2000,
            lease_secs: 300,
        }
    }
}

impl std::fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSettings")
            .field("transport", &self.transport)
            .field("file_dir", &self.file_dir)
            .field("from", &self.from)
            .field("message_id_domain", &self.message_id_domain)
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("smtp_tls", &self.smtp_tls)
            .field("smtp_username", &self.smtp_username)
            .field(
                "smtp_password",
                &self.smtp_password.as_ref().map(|_| "[redacted]"),
            )
            .field("smtp_timeout_secs", &self.smtp_timeout_secs)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_base_secs", &self.backoff_base_secs)
            .field("backoff_max_secs", &self.backoff_max_secs)
            .field("batch_size", &self.batch_size)
            .field("poll_interval_ms", &self.poll_interval_ms)
            .field("lease_secs", &self.lease_secs)
            .finish()
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
    /// Seconds `serve` waits on SIGTERM/SIGINT for in-flight requests and a running cycle.
    pub shutdown_grace_secs: u64,
    /// Seconds a client has to send a request's headers (also how long an idle keep-alive
    /// connection stays open); then the connection is closed.
    pub header_read_timeout_secs: u64,
    /// Seconds one request may take, body included; then it is answered 408 and cut off.
    pub request_timeout_secs: u64,
    /// Most connections served at once; further ones wait to be accepted.
    pub max_connections: usize,
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

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event (coloured only at a terminal).
    #[default]
    Text,
    /// One JSON object per line, with the spans (request, integration, cycle ids).
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: LogFormat,
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
            shutdown_grace_secs: 30,
            header_read_timeout_secs: 10,
            request_timeout_secs: 60,
            max_connections: 1024,
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
            format: LogFormat::Text,
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

    #[test]
    fn the_smtp_password_is_redacted_in_debug_output() {
        let mut settings = Settings::default();
        settings.mail.smtp_username = Some("mailer".to_owned());
        settings.mail.smtp_password = Some("hunter2-smtp".to_owned());
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2-smtp"), "{shown}");
        assert!(
            shown.contains("[redacted]") && shown.contains("mailer"),
            "{shown}"
        );
    }
}
