//! The pull-sync commands: `integration create-graph`, `sync` (a cycle, a dry run, approving
//! held deletions, or one user on demand) and `status`.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::json;

use super::{Common, Env, print_json};
use crate::domain::DeletionThreshold;
use crate::entra::cloud::Cloud;
use crate::integrations::{self, GraphIntegration, GraphSettings};
use crate::secrets::Secret;
use crate::sync::cycle::{CycleOptions, CycleReport, Outcome, SyncEnv, Trigger, run_cycle};
use crate::sync::mapping::{Mapping, UserNameSource};
use crate::sync::on_demand::{OnDemandReport, StepStatus, provision_user};
use crate::sync::schedule::Runner;

#[derive(Debug, Args)]
pub struct CreateGraphArgs {
    /// Internal name, e.g. EntraPull.
    #[arg(long)]
    pub name: String,
    /// Directory (tenant) id, or the tenant's domain.
    #[arg(long)]
    pub tenant_id: String,
    /// Application (client) id of the app registration.
    #[arg(long)]
    pub client_id: String,
    /// Read the client secret from this environment variable.
    #[arg(long, conflicts_with = "client_secret_file")]
    pub client_secret_env: Option<String>,
    /// Read the client secret from this file (first line).
    #[arg(long)]
    pub client_secret_file: Option<PathBuf>,
    /// Object id of the essentry enterprise application (Enterprise applications > essentry >
    /// Overview > Object ID).
    #[arg(long)]
    pub service_principal_id: String,
    /// global, usgov, usgov-dod or china.
    #[arg(long, default_value = "global", value_parser = parse_cloud)]
    pub cloud: Cloud,
    /// Explicit Graph root, for a proxy or the simulator (needs --authority-url too).
    #[arg(long, requires = "authority_url")]
    pub graph_url: Option<String>,
    /// Explicit login authority, for a proxy or the simulator.
    #[arg(long, requires = "graph_url")]
    pub authority_url: Option<String>,
    /// Also provision members of groups nested in assigned groups.
    #[arg(long)]
    pub transitive: bool,
    /// Where userName comes from: upn (userPrincipalName, default) or mail.
    #[arg(long, default_value = "upn")]
    pub user_name_from: String,
    /// `every 40m` or a cron expression (default: the sync.schedule setting).
    #[arg(long)]
    pub schedule: Option<String>,
    /// How often a cycle reads the whole scope instead of following Graph's delta links:
    /// `every 24h` or a cron expression (default: the sync.full_reconcile setting).
    #[arg(long)]
    pub full_reconcile: Option<String>,
    /// Hold a cycle that would delete more users than this (default 500; 0 = no limit).
    #[arg(long)]
    pub max_deletes: Option<usize>,
    /// Hold a cycle that would delete more than this percent of the synced users (default 10;
    /// 0 = no limit).
    #[arg(long)]
    pub max_delete_percent: Option<f64>,
    /// Create the account named by --account if it does not exist yet (otherwise an unknown
    /// account is refused, so a typo cannot create one).
    #[arg(long)]
    pub create_account: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The Graph integration to sync.
    #[arg(long)]
    pub integration: String,
    /// Print the plan (including the appointments it would cancel and whom it would email) and
    /// change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Approve every deletion currently staged (held by an earlier cycle) that this cycle's read
    /// still finds due; see `essentry-sync deletions` to review them one by one.
    #[arg(long, conflicts_with = "user")]
    pub allow_deletes: bool,
    /// Read the whole scope (a full reconcile) instead of following Graph's delta links.
    #[arg(long, conflicts_with = "user")]
    pub full: bool,
    /// Provision only this user, now: a userPrincipalName or an Entra object id.
    #[arg(long)]
    pub user: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

fn parse_cloud(value: &str) -> Result<Cloud, String> {
    Cloud::parse(value)
        .ok_or_else(|| format!("unknown cloud {value:?}: use global, usgov, usgov-dod or china"))
}

pub(super) fn sync_env(env: &Env) -> SyncEnv {
    SyncEnv {
        store: env.store.clone(),
        clock: env.clock.clone(),
        settings: env.settings.sync.clone(),
    }
}

fn read_secret(args: &CreateGraphArgs) -> Result<Secret> {
    let value = match (&args.client_secret_env, &args.client_secret_file) {
        (Some(var), None) => std::env::var(var).with_context(|| {
            format!("environment variable {var} (--client-secret-env) is not set")
        })?,
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the client secret from {}", path.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        _ => bail!(
            "give the client secret with --client-secret-env VAR or --client-secret-file PATH (never on the command line)"
        ),
    };
    let value = value.trim().to_owned();
    if value.is_empty() {
        bail!("the client secret is empty");
    }
    Ok(Secret::new(value))
}

pub(super) async fn create_graph(env: Env, args: CreateGraphArgs) -> Result<()> {
    let secret = read_secret(&args)?;
    let user_name_source = match args.user_name_from.to_ascii_lowercase().as_str() {
        "upn" | "userprincipalname" => UserNameSource::UserPrincipalName,
        "mail" => UserNameSource::Mail,
        other => bail!("--user-name-from {other:?}: use upn or mail"),
    };
    for s in [&args.schedule, &args.full_reconcile].into_iter().flatten() {
        crate::sync::schedule::Schedule::parse(s).map_err(|e| anyhow!(e))?;
    }
    let defaults = DeletionThreshold::default();
    let settings = GraphSettings {
        tenant_id: args.tenant_id.trim().to_owned(),
        client_id: args.client_id.trim().to_owned(),
        service_principal_id: args.service_principal_id.trim().to_owned(),
        cloud: args.cloud,
        graph_url: args.graph_url.clone(),
        authority_url: args.authority_url.clone(),
        transitive: args.transitive,
        mapping: Mapping { user_name_source },
        threshold: DeletionThreshold {
            max_count: match args.max_deletes {
                Some(0) => None,
                Some(n) => Some(n),
                None => defaults.max_count,
            },
            max_percent: match args.max_delete_percent {
                Some(p) if p <= 0.0 => None,
                Some(p) => Some(p),
                None => defaults.max_percent,
            },
        },
        schedule: args.schedule.clone(),
        full_reconcile: args.full_reconcile.clone(),
    };
    let account = env
        .account_or_create(&args.common, args.create_account)
        .await?;
    let key = env.secret_key()?;
    let view = integrations::create_graph(
        &env.store,
        &key,
        &account,
        env.account_name(&args.common),
        &args.name,
        &settings,
        &secret,
        env.clock.now(),
    )
    .await?;
    if args.common.json {
        return print_json(&json!({ "integration": view, "settings": settings }));
    }
    println!(
        "Graph integration {:?} created for account {:?}.",
        view.name, view.account
    );
    println!("  Graph:        {}", view.endpoint_url);
    println!("  tenant:       {}", settings.tenant_id);
    println!("  client id:    {}", settings.client_id);
    println!("  secret:       sealed at rest (`integration list --reveal` shows it)");
    println!(
        "  scope:        users and groups assigned to service principal {}{}",
        settings.service_principal_id,
        if settings.transitive {
            ", nested groups included"
        } else {
            ""
        }
    );
    println!(
        "Check it now with: essentry-sync sync --integration {:?} --dry-run",
        view.name
    );
    Ok(())
}

async fn open_integration(env: &Env, common: &Common, name: &str) -> Result<GraphIntegration> {
    let account = env.account(common).await?;
    let row = integrations::find(&env.store, &account, env.account_name(common), name).await?;
    Ok(GraphIntegration::open(row, &env.secret_key()?)?)
}

pub(super) async fn sync(env: Env, args: SyncArgs) -> Result<()> {
    let integ = open_integration(&env, &args.common, &args.integration).await?;
    let senv = sync_env(&env);
    if let Some(user) = &args.user {
        let report = provision_user(&senv, &integ, user, args.dry_run).await?;
        if args.common.json {
            print_json(&report)?;
        } else {
            print_on_demand(&report);
        }
        return match &report.error {
            None => Ok(()),
            Some(e) => Err(anyhow!("on-demand provisioning failed: {e}")),
        };
    }
    let report = run_cycle(
        &senv,
        &integ,
        CycleOptions {
            trigger: Trigger::Manual,
            dry_run: args.dry_run,
            allow_deletes: args.allow_deletes,
            full: args.full,
        },
    )
    .await?;
    if args.common.json {
        print_json(&report)?;
    } else {
        print_cycle(&report);
    }
    match (&report.outcome, &report.error) {
        (Outcome::Failed, Some(e)) => Err(anyhow!("sync cycle failed ({}): {}", e.code, e.message)),
        (Outcome::Failed, None) => Err(anyhow!("sync cycle failed")),
        (Outcome::Busy, Some(e)) => Err(anyhow!("{}", e.message)),
        _ => Ok(()),
    }
}

pub fn print_on_demand(r: &OnDemandReport) {
    println!(
        "On-demand provisioning of {} via {}{}",
        r.user,
        r.integration,
        if r.dry_run { " (dry run)" } else { "" }
    );
    for s in &r.steps {
        let mark = match s.status {
            StepStatus::Success => "ok  ",
            StepStatus::Skipped => "skip",
            StepStatus::Failed => "FAIL",
        };
        println!("  [{mark}] {:<10} {}", s.step, s.detail);
    }
    for c in &r.modified {
        println!(
            "         {}: {} -> {}",
            c.attribute,
            show(&c.old),
            show(&c.new)
        );
    }
    println!(
        "  action: {}  ({} ms, {} Graph requests)",
        r.action, r.duration_ms, r.graph.requests
    );
}

fn show(v: &Option<serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "(none)".to_owned(),
        Some(serde_json::Value::String(s)) => format!("{s:?}"),
        Some(other) => other.to_string(),
    }
}

pub fn print_cycle(r: &CycleReport) {
    println!(
        "Cycle {} of {} ({}{}): {}",
        r.cycle_id,
        r.integration,
        r.trigger.as_str(),
        if r.dry_run {
            ", dry run: nothing changed"
        } else {
            ""
        },
        r.outcome.as_str()
    );
    if let Some(read) = &r.read {
        println!(
            "  read: {} assignments ({} users directly, {} groups) -> {} users in scope; {} stored",
            read.assignments,
            read.direct_users,
            read.groups,
            read.users_in_scope,
            read.stored_users
        );
    }
    println!(
        "  Graph: {} requests, {} throttled, {} retries, {} token requests; {} ms",
        r.graph.requests, r.graph.throttled, r.graph.retries, r.graph.token_requests, r.duration_ms
    );
    for c in &r.changes {
        let changes: Vec<String> = c
            .changes
            .iter()
            .map(|a| format!("{}: {} -> {}", a.attribute, show(&a.old), show(&a.new)))
            .collect();
        println!(
            "  {:<13} {:<32} {}{}",
            c.action,
            c.user_name,
            c.detail.as_deref().unwrap_or(""),
            if changes.is_empty() {
                String::new()
            } else {
                format!(" [{}]", changes.join("; "))
            }
        );
    }
    if r.changes_not_listed > 0 {
        println!(
            "  ... and {} more (planned: {} create, {} update, {} delete, {} staged, {} skip); every one is in `essentry-sync logs --cycle {}`",
            r.changes_not_listed,
            r.planned.create,
            r.planned.update,
            r.planned.delete,
            r.planned.staged_delete,
            r.planned.skip,
            r.cycle_id
        );
    }
    if let Some(a) = &r.applied {
        println!(
            "  applied: {} created, {} updated, {} deleted, {} unchanged, {} staged, {} skipped; {} appointments cancelled, {} guest emails queued",
            a.created,
            a.updated,
            a.deprovisioned,
            a.unchanged,
            a.staged,
            a.skipped,
            a.appointments_cancelled,
            a.emails_queued
        );
        for c in &a.cancellations {
            println!(
                "    cancel {:?} at {} (host {}) -> email {}",
                c.title,
                c.starts_at.format("%Y-%m-%d %H:%M UTC"),
                c.host,
                if c.guests.is_empty() {
                    "nobody".to_owned()
                } else {
                    c.guests.join(", ")
                }
            );
        }
    }
    if let Some(hit) = &r.threshold_hit {
        println!("  HELD: {hit}");
    }
    for n in &r.notes {
        println!("  note: {n}");
    }
    if let Some(e) = &r.error {
        println!("  error ({}): {}", e.code, e.message);
    }
}

pub(super) async fn status(env: Env, common: Common) -> Result<()> {
    let key = env.secret_key()?;
    let runner = Runner::new(sync_env(&env), key);
    let statuses = runner.status().await?;
    if common.json {
        return print_json(&statuses);
    }
    if statuses.is_empty() {
        println!("no Graph integrations; create one with `essentry-sync integration create-graph`");
    }
    for s in statuses {
        println!(
            "{} (account {}), schedule {}",
            s.name, s.account, s.schedule
        );
        match &s.last_cycle {
            Some(c) => println!(
                "  last cycle: {} {} {} ({} ms, {} Graph requests, {} throttled){}",
                c.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                c.trigger,
                c.outcome,
                c.duration_ms.unwrap_or(0),
                c.graph_requests,
                c.throttled,
                c.error_message
                    .as_deref()
                    .map(|m| format!("\n  error: {m}"))
                    .unwrap_or_default()
            ),
            None => println!("  last cycle: never"),
        }
        if let Some(c) = &s.last_on_demand {
            println!(
                "  last on-demand run: {} {}{}",
                c.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                c.outcome,
                c.error_message
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            );
        }
        println!(
            "  reads: {}; full reconcile {}, next {}",
            s.reads,
            s.full_reconcile,
            s.next_full_reconcile
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_else(|| "with the next cycle".to_owned())
        );
        if let Some(n) = &s.next_run {
            println!(
                "  next run: {}{}",
                n.at.format("%Y-%m-%d %H:%M:%S UTC"),
                if n.quarantined {
                    format!(
                        " (quarantined after {} consecutive failures)",
                        n.consecutive_failures
                    )
                } else if n.consecutive_failures > 0 {
                    format!(" ({} consecutive failures)", n.consecutive_failures)
                } else {
                    String::new()
                }
            );
        }
        if s.staged_deletions > 0 {
            println!(
                "  staged deletions: {} (review: essentry-sync deletions list --integration {})",
                s.staged_deletions, s.name
            );
        }
        if let Some(e) = &s.error {
            println!("  error: {e}");
        }
    }
    Ok(())
}
