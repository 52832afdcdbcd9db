//! `essentry-sync deletions list|approve|reject`: the review of the deletions held cycles staged,
//! one user at a time (see [`crate::sync::deletions`]).

use anyhow::{Result, bail};
use clap::Subcommand;

use super::sync::sync_env;
use super::{Common, Env, print_json};
use crate::integrations;
use crate::store::IntegrationRow;
use crate::sync::deletions::{self, ApproveReport, Selection};

#[derive(Debug, Subcommand)]
pub enum DeletionsCmd {
    /// The staged deletions: user, integration, reason (unassigned, disabled, deleted in Entra),
    /// the appointments the deletion would cancel and the guests it would email, staged and
    /// expiry times.
    List {
        /// Only this Graph integration.
        #[arg(long)]
        integration: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Apply exactly these staged deletions, each re-checked against the integration's last
    /// complete read (a user back in scope is not deleted).
    Approve {
        #[arg(long)]
        integration: String,
        /// Every staged deletion of the integration.
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        all: bool,
        /// A userName to approve (repeat for several).
        #[arg(long, num_args = 1..)]
        user: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Keep the user: no deletion, no cancellation; the integration stops managing the user
    /// (logged) and leaves it alone from now on.
    Reject {
        #[arg(long)]
        integration: String,
        #[arg(long)]
        user: String,
        #[command(flatten)]
        common: Common,
    },
}

async fn graph_row(env: &Env, common: &Common, name: &str) -> Result<IntegrationRow> {
    let account = env.account(common).await?;
    let row = integrations::find(&env.store, &account, env.account_name(common), name).await?;
    if row.kind != crate::domain::IntegrationKind::Graph {
        bail!(
            "integration {name:?} is a {} integration; only Graph integrations stage deletions",
            row.kind
        );
    }
    Ok(row)
}

pub(super) async fn run(env: Env, cmd: DeletionsCmd) -> Result<()> {
    match cmd {
        DeletionsCmd::List {
            integration,
            common,
        } => {
            let account = env.account(&common).await?;
            let id = match &integration {
                Some(name) => Some(graph_row(&env, &common, name).await?.id),
                None => None,
            };
            let rows = env.store.list_staged(&account, id.as_ref()).await?;
            if common.json {
                return print_json(&rows);
            }
            if rows.is_empty() {
                println!("no staged deletions");
            }
            let now = env.clock.now();
            for r in rows {
                println!(
                    "{:<30} {:<16} {:<17} {} appointment(s), {} guest email(s)  staged {}  \
                     expires {}{}",
                    r.user_name,
                    r.integration,
                    r.reason.as_str(),
                    r.appointments,
                    r.guests,
                    r.staged_at.format("%Y-%m-%d %H:%M"),
                    r.expires_at.format("%Y-%m-%d %H:%M"),
                    if r.expired(now) { " (expired)" } else { "" }
                );
            }
            Ok(())
        }
        DeletionsCmd::Approve {
            integration,
            all,
            user,
            common,
        } => {
            let row = graph_row(&env, &common, &integration).await?;
            let selection = if all {
                Selection::All
            } else {
                Selection::Users(user)
            };
            let report = deletions::approve(&sync_env(&env), &row, &selection).await?;
            if common.json {
                print_json(&report)
            } else {
                print_approve(&report);
                Ok(())
            }
        }
        DeletionsCmd::Reject {
            integration,
            user,
            common,
        } => {
            let row = graph_row(&env, &common, &integration).await?;
            let report = deletions::reject(&sync_env(&env), &row, &user).await?;
            if common.json {
                return print_json(&report);
            }
            println!(
                "kept {}: not deleted, no longer managed by {} (it leaves the user alone)",
                report.user_name, report.integration
            );
            Ok(())
        }
    }
}

fn print_approve(r: &ApproveReport) {
    for d in &r.deleted {
        println!(
            "deleted {} ({}): {} appointment(s) cancelled, {} guest email(s) queued",
            d.user_name,
            d.reason.as_str(),
            d.appointments_cancelled,
            d.emails_queued
        );
    }
    for n in &r.not_deleted {
        println!("not deleted {}: {}", n.user_name, n.reason);
    }
    if r.deleted.is_empty() && r.not_deleted.is_empty() {
        println!("no staged deletions of {}", r.integration);
    }
}
