//! `admin-token create | list | revoke`: the admin API's tokens (see [`crate::admin_tokens`]).
//! A token is printed once, at creation; `list` shows name, creation, last use, expiry and
//! account scope, never the token or its hash.

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;
use serde_json::json;

use super::{Env, print_json};
use crate::admin_tokens;

#[derive(Debug, Subcommand)]
pub enum AdminTokenCmd {
    /// Create an admin API token (shown once; only its hash is stored).
    Create {
        /// A name to recognise the token by (and to revoke it with).
        #[arg(long)]
        name: String,
        /// Refuse the token after this long, e.g. 30d, 12h or 90m (default: no expiry).
        #[arg(long)]
        expires_in: Option<String>,
        /// Limit the token to this (existing) account; without it the token acts on every
        /// account.
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List admin tokens: name, created, last used, expiry and account scope.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke an admin token: requests presenting it fail from now on.
    Revoke {
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    },
}

pub(super) async fn run(env: Env, cmd: AdminTokenCmd) -> Result<()> {
    match cmd {
        AdminTokenCmd::Create {
            name,
            expires_in,
            account,
            json,
        } => create(env, &name, expires_in.as_deref(), account.as_deref(), json).await,
        AdminTokenCmd::List { json } => list(env, json).await,
        AdminTokenCmd::Revoke { name, json } => {
            admin_tokens::revoke(&env.store, &name).await?;
            if json {
                return print_json(&json!({ "revoked": name.trim() }));
            }
            println!("admin token {:?} revoked: it no longer works.", name.trim());
            Ok(())
        }
    }
}

async fn create(
    env: Env,
    name: &str,
    expires_in: Option<&str>,
    account: Option<&str>,
    json: bool,
) -> Result<()> {
    let now = env.clock.now();
    let expires_at = match expires_in {
        Some(text) => {
            let delta =
                admin_tokens::parse_expires_in(text).map_err(|e| anyhow!("--expires-in: {e}"))?;
            Some(
                now.checked_add_signed(delta)
                    .with_context(|| format!("--expires-in {text:?} is too long"))?,
            )
        }
        None => None,
    };
    let account_id = match account {
        Some(a) => Some(env.store.account_by_name(a).await?.ok_or_else(|| {
            anyhow!("no account {a:?}: a token can only be limited to an existing account")
        })?),
        None => None,
    };
    let (row, token) =
        admin_tokens::create(&env.store, name, expires_at, account_id.as_ref(), now).await?;
    if json {
        return print_json(&json!({
            "name": row.name,
            "token": token.expose(),
            "expires_at": row.expires_at,
            "account": account,
        }));
    }
    println!(
        "Admin token {:?} (shown once; send it as `Authorization: Bearer <token>`):",
        row.name
    );
    println!("{}", token.expose());
    if let Some(at) = row.expires_at {
        println!("It expires at {}.", at.format("%Y-%m-%d %H:%M:%S UTC"));
    }
    if let Some(a) = account {
        println!("It acts on account {a:?} only.");
    }
    Ok(())
}

async fn list(env: Env, json: bool) -> Result<()> {
    let tokens = admin_tokens::list(&env.store).await?;
    if json {
        return print_json(&tokens);
    }
    if tokens.is_empty() {
        println!("no admin tokens (create one with: essentry-sync admin-token create --name ops)");
    }
    let now = env.clock.now();
    let time = |t: Option<chrono::DateTime<chrono::Utc>>, none: &str| {
        t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| none.to_owned())
    };
    for t in tokens {
        let expired = t.expires_at.is_some_and(|at| at <= now);
        println!(
            "{:<20} created {}  last used {:<16}  expires {:<16}{}  account {}",
            t.name,
            t.created_at.format("%Y-%m-%d %H:%M"),
            time(t.last_used_at, "never"),
            time(t.expires_at, "never"),
            if expired { " (expired)" } else { "" },
            t.account.as_deref().unwrap_or("(all)")
        );
    }
    Ok(())
}
