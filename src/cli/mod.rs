//! The operator's commands behind the `essentry-sync` binary: argument definitions (clap) and
//! what each command does. Output for people goes to stdout as text, or as stable JSON with
//! `--json`; errors go to stderr with a non-zero exit (see `main.rs`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use serde_json::json;

use crate::config::Settings;
use crate::domain::{
    AccountId, Appointment, AppointmentId, AppointmentStatus, Clock, Guest, SystemClock, UserName,
};

use crate::integrations;
use crate::secrets::SecretKey;
use crate::store::{LogQuery, Store, StoreConfig};

mod admin_token;
mod deletions;
mod demo;
mod demo_console;
mod directory;
mod sync;

pub use directory::parse_guest;
use directory::{appointments, book_appointment, outbox, users_list};

#[derive(Debug, Parser)]
#[command(
    name = "essentry-sync",
    version,
    about = "Keeps an essentry user directory in step with Microsoft Entra ID"
)]
pub struct Cli {
    /// Settings file (default: config/essentry-sync.toml if present).
    #[arg(long, global = true, env = "ESSENTRY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: the SCIM endpoint, the admin API, health, and the scheduled pull sync of
    /// every Graph integration.
    Serve {
        /// Address to listen on (overrides server.listen).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Create, list and delete integrations.
    #[command(subcommand)]
    Integration(IntegrationCmd),
    /// Inspect the user directory.
    #[command(subcommand)]
    Users(UsersCmd),
    /// Create and list appointments.
    #[command(subcommand)]
    Appointments(AppointmentsCmd),
    /// Run one pull-sync cycle of a Graph integration in the foreground (or, with --user,
    /// provision one user on demand) and exit with its outcome.
    Sync(sync::SyncArgs),
    /// Review the deletions held cycles staged: list them, approve them (per user or all), or
    /// reject one (keep the user).
    #[command(subcommand)]
    Deletions(deletions::DeletionsCmd),
    /// Show each Graph integration's last cycle, its outcome and the next run.
    Status {
        #[command(flatten)]
        common: Common,
    },
    /// Create, list and revoke admin API tokens.
    #[command(subcommand)]
    AdminToken(admin_token::AdminTokenCmd),
    /// Try the pull sync end to end against a built-in Graph simulator (no configuration, no
    /// Microsoft tenant needed); prints what happened.
    Demo(demo::DemoArgs),
    /// Show the email outbox (guest cancellation notices: waiting, sent, dead) with attempts and
    /// the last error; `outbox retry ID` sends a dead or waiting message again now.
    Outbox {
        #[command(subcommand)]
        action: Option<OutboxCmd>,
        /// Only messages that gave up (`dead`), for `outbox retry`.
        #[arg(long)]
        dead: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Show the provisioning log, newest first.
    Logs {
        #[command(flatten)]
        common: Common,
        /// Only this integration.
        #[arg(long)]
        integration: Option<String>,
        /// Only this userName.
        #[arg(long)]
        user: Option<String>,
        /// Only this cycle.
        #[arg(long)]
        cycle: Option<String>,
        /// success, failure or skipped.
        #[arg(long)]
        status: Option<String>,
        /// Only events at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<DateTime<Utc>>,
        /// At most this many rows.
        #[arg(long, default_value_t = 200)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCmd {
    /// Put a dead (or waiting) message back to pending, due now, with a fresh set of attempts.
    Retry {
        /// The message's id (first column of `essentry-sync outbox`).
        id: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Args)]
pub struct Common {
    /// Account (company) to act on (default: directory.default_account).
    #[arg(long)]
    pub account: Option<String>,
    /// Machine-readable JSON output.
    #[arg(long)]
    pub json: bool,
}

// Parsed once per process; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum IntegrationCmd {
    /// Create a SCIM integration: prints the Endpoint URL and the Token to paste into your IdP.
    CreateScim {
        /// Internal name, e.g. EntraID.
        #[arg(long)]
        name: String,
        /// Create the account named by --account if it does not exist yet (otherwise an
        /// unknown account is refused, so a typo cannot create one).
        #[arg(long)]
        create_account: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Create a Graph integration: essentry-sync pulls the users and groups assigned to your
    /// Entra enterprise application (client credentials; the secret is sealed at rest).
    CreateGraph(sync::CreateGraphArgs),
    /// List integrations, tokens masked unless --reveal ("privacy mode" off).
    List {
        #[command(flatten)]
        common: Common,
        /// Show the full tokens.
        #[arg(long)]
        reveal: bool,
        /// List every account's integrations.
        #[arg(long)]
        all_accounts: bool,
    },
    /// Disconnect an integration: its token stops working at once.
    Delete {
        name: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCmd {
    /// List the users of an account.
    List {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppointmentsCmd {
    /// Create an appointment hosted by a user, with invited guests.
    Create {
        /// The host's userName (email).
        #[arg(long)]
        host: String,
        /// Start, RFC 3339 (e.g. 2026-12-01T09:00:00+01:00).
        #[arg(long)]
        starts_at: DateTime<Utc>,
        /// End, RFC 3339 (default: one hour after the start).
        #[arg(long)]
        ends_at: Option<DateTime<Utc>>,
        #[arg(long)]
        title: String,
        /// A guest, as "email" or "Name <email>"; repeat for several.
        #[arg(long = "guest", required = true)]
        guests: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// List appointments with their status and guests.
    List {
        #[command(flatten)]
        common: Common,
    },
}

/// Everything a command needs: settings, the store and the clock.
pub struct Env {
    pub settings: Settings,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
}

impl Env {
    pub async fn open(settings: Settings) -> Result<Self> {
        let store = Store::connect(&StoreConfig {
            url: settings.database.url.clone(),
            max_connections: settings.database.max_connections,
            pg_schema: None,
        })
        .await
        .with_context(|| {
            format!(
                "opening the database ({})",
                redact_url(&settings.database.url)
            )
        })?;
        Ok(Self {
            settings,
            store,
            clock: Arc::new(SystemClock),
        })
    }

    pub(crate) fn account_name<'a>(&'a self, common: &'a Common) -> &'a str {
        common
            .account
            .as_deref()
            .unwrap_or(&self.settings.directory.default_account)
    }

    /// The account a command acts on. The default account (`directory.default_account`) is
    /// created on first use; an account named with `--account` must exist.
    pub(crate) async fn account(&self, common: &Common) -> Result<AccountId> {
        self.account_or_create(common, false).await
    }

    /// As [`Env::account`], creating a missing `--account` when `create` is set (the
    /// `--create-account` of the commands that onboard an account: `integration create-*`).
    pub(crate) async fn account_or_create(
        &self,
        common: &Common,
        create: bool,
    ) -> Result<AccountId> {
        let name = self.account_name(common);
        if create || name == self.settings.directory.default_account {
            return Ok(self.store.ensure_account(name, self.clock.now()).await?);
        }
        self.store.account_by_name(name).await?.ok_or_else(|| {
            anyhow!(
                "no account {name:?}: check the spelling (an account is created by \
                 `integration create-scim --account {name} --create-account` or \
                 `integration create-graph ... --create-account`)"
            )
        })
    }

    pub(crate) fn secret_key(&self) -> Result<SecretKey> {
        match &self.settings.secrets.key {
            Some(k) => Ok(SecretKey::from_base64(k)?),
            None => Ok(SecretKey::load_or_create(&self.settings.secrets.key_file)?),
        }
    }
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..s + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// A provisioning-log row's modified attributes as `attr: old -> new; ...`.
pub(crate) fn format_modified(modified: &serde_json::Value) -> String {
    modified
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    format!(
                        "{}: {} -> {}",
                        c["attribute"].as_str().unwrap_or("?"),
                        c["old"],
                        c["new"]
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

pub(crate) fn print_json(value: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn run(cli: Cli, settings: Settings) -> Result<()> {
    match cli.command {
        Command::Serve { listen } => serve(settings, listen).await,
        Command::Integration(cmd) => integration(Env::open(settings).await?, cmd).await,
        Command::Users(UsersCmd::List { common }) => {
            users_list(Env::open(settings).await?, common).await
        }
        Command::Appointments(cmd) => appointments(Env::open(settings).await?, cmd).await,
        Command::Outbox {
            action,
            dead,
            common,
        } => outbox(Env::open(settings).await?, action, dead, common).await,
        Command::Sync(args) => sync::sync(Env::open(settings).await?, args).await,
        Command::Deletions(cmd) => deletions::run(Env::open(settings).await?, cmd).await,
        Command::Status { common } => sync::status(Env::open(settings).await?, common).await,
        Command::AdminToken(cmd) => admin_token::run(Env::open(settings).await?, cmd).await,
        Command::Demo(args) => demo::run(settings, args).await,
        Command::Logs {
            common,
            integration,
            user,
            cycle,
            status,
            since,
            limit,
        } => {
            let env = Env::open(settings).await?;
            let account = env.account(&common).await?;
            let rows = env
                .store
                .list_log(
                    &account,
                    &LogQuery {
                        integration,
                        user_name: user,
                        cycle_id: cycle,
                        status,
                        since,
                        limit,
                    },
                )
                .await?;
            if common.json {
                return print_json(&rows);
            }
            if rows.is_empty() {
                println!("no provisioning events");
            }
            for r in rows {
                let changes = format_modified(&r.modified);
                println!(
                    "{}  {:<7} {:<13} {:<8} {:<30} {}{}",
                    r.at.format("%Y-%m-%d %H:%M:%S"),
                    r.source,
                    r.action,
                    r.status,
                    r.user_name.as_deref().unwrap_or("-"),
                    changes,
                    r.error_message
                        .map(|m| format!(" error: {m}"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
    }
}

/// Waits for SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn serve(mut settings: Settings, listen: Option<String>) -> Result<()> {
    if let Some(listen) = listen {
        settings.server.listen = listen;
    }
    let env = Env::open(settings).await?;
    // SQLite serves one process; a second `serve` on the same file is refused here.
    let _serve_lock = env.store.lock_serve()?;
    let listener = tokio::net::TcpListener::bind(&env.settings.server.listen)
        .await
        .with_context(|| format!("listening on {}", env.settings.server.listen))?;
    env.store
        .ensure_account(&env.settings.directory.default_account, env.clock.now())
        .await?;
    let grace = std::time::Duration::from_secs(env.settings.server.shutdown_grace_secs);
    let key = env.secret_key()?;
    let service =
        crate::service::Service::start(listener, env.store, env.clock, env.settings, key).await?;
    let state = service.state();
    tracing::info!(address = %service.local_addr(), scim = %state.scim_base, backend = state.store.backend_name(), "essentry-sync serving");
    shutdown_signal().await;
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: no new requests, no new cycles; finishing what runs"
    );
    service.shutdown(grace).await;
    tracing::info!("stopped");
    Ok(())
}

async fn integration(env: Env, cmd: IntegrationCmd) -> Result<()> {
    let endpoint = env.settings.scim_base_url();
    match cmd {
        IntegrationCmd::CreateGraph(args) => sync::create_graph(env, args).await,
        IntegrationCmd::CreateScim {
            name,
            create_account,
            common,
        } => {
            let account = env.account_or_create(&common, create_account).await?;
            let key = env.secret_key()?;
            let (view, _token) = integrations::create_scim(
                &env.store,
                &key,
                &account,
                env.account_name(&common),
                &name,
                &endpoint,
                env.clock.now(),
            )
            .await?;
            if common.json {
                return print_json(&view);
            }
            println!(
                "SCIM integration {:?} created for account {:?}.\n",
                view.name, view.account
            );
            println!("  Endpoint URL: {}", view.endpoint_url);
            println!("  Token:        {}\n", view.token);
            println!(
                "In Microsoft Entra ID: Enterprise apps > your app > Provisioning > Connect your application:"
            );
            println!(
                "paste the Endpoint URL as \"Tenant URL\" and the Token as \"Secret token\", then Test connection."
            );
            println!(
                "The token grants write access to the whole directory: treat it like a password."
            );
            Ok(())
        }
        IntegrationCmd::List {
            common,
            reveal,
            all_accounts,
        } => {
            let account = if all_accounts {
                None
            } else {
                Some(env.account(&common).await?)
            };
            let key = if reveal {
                Some(env.secret_key()?)
            } else {
                None
            };
            let views =
                integrations::list(&env.store, account.as_ref(), key.as_ref(), &endpoint).await?;
            if common.json {
                return print_json(&views);
            }
            if views.is_empty() {
                println!(
                    "no integrations (create one with: essentry-sync integration create-scim --name EntraID)"
                );
            }
            for i in views {
                println!(
                    "{:<20} {:<12} {:<6} {}  token {}  created {}",
                    i.name,
                    i.account,
                    i.kind,
                    i.endpoint_url,
                    i.token,
                    i.created_at.format("%Y-%m-%d %H:%M")
                );
            }
            Ok(())
        }
        IntegrationCmd::Delete { name, common } => {
            let account = env.account(&common).await?;
            integrations::delete(&env.store, &account, env.account_name(&common), &name).await?;
            if common.json {
                return print_json(&json!({"deleted": name}));
            }
            println!("integration {name:?} deleted: its token no longer works.");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db/x"),
            "postgres://app:***@db/x"
        );
        assert_eq!(redact_url("sqlite://data/e.db"), "sqlite://data/e.db");
    }
}
