//! `essentry-sync demo`: the pull sync end to end with no configuration and no Microsoft tenant.
//! It starts the Graph simulator with a sample tenant on loopback, creates a Graph integration
//! against it in a fresh demo database (`data/demo/`, separate from the real one), books some
//! appointments, runs a cycle, changes the tenant (a rename, an unassigned host, a new group
//! member), provisions the renamed user on demand, runs another cycle, and prints the users, the
//! provisioning log, the cancelled appointments and the cancellation emails, delivered as `.eml`
//! files under `data/demo/mail/` (the outbox worker with the file transport). With `--serve` it
//! then keeps the operator console up on the demo data (see `demo_console`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::TimeDelta;
use clap::Args;

use super::sync::{print_cycle, print_on_demand, sync_env};
use super::{Env, book_appointment, format_modified, parse_guest};
use crate::config::Settings;
use crate::domain::UserName;
use crate::entra::simulator::{SAMPLE_CLIENT_SECRET, SimUser, Simulator, sample_tenant};
use crate::integrations::{self, GraphIntegration, GraphSettings};
use crate::secrets::Secret;
use crate::store::LogQuery;
use crate::sync::cycle::{CycleOptions, Trigger, run_cycle};
use crate::sync::on_demand::provision_user;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder of the demo database and key (emptied first).
    #[arg(long, default_value = "data/demo")]
    pub dir: PathBuf,
    /// Then keep the operator console up on the demo data (Ctrl-C ends it).
    #[arg(long)]
    pub serve: bool,
    /// Where `--serve` listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
}

const ACCOUNT: &str = "demo";
const INTEGRATION: &str = "EntraDemo";

fn heading(text: &str) {
    println!("\n=== {text} ===");
}

pub(super) async fn run(mut settings: Settings, args: DemoArgs) -> Result<()> {
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("emptying {}", args.dir.display()))?;
    }
    std::fs::create_dir_all(&args.dir)?;
    settings.database.url = format!("sqlite://{}", args.dir.join("essentry.db").display());
    settings.secrets.key = None;
    settings.secrets.key_file = args.dir.join("secret.key");
    settings.directory.default_account = ACCOUNT.to_owned();
    settings.mail.transport = crate::config::MailTransportKind::File;
    settings.mail.file_dir = args.dir.join("mail");
    let mail = settings.mail.clone();
    let env = Env::open(settings).await?;
    let now = env.clock.now();
    let account = env.store.ensure_account(ACCOUNT, now).await?;
    let key = env.secret_key()?;

    heading("1. A Microsoft Graph simulator with the sample tenant (Contoso)");
    let sim = Simulator::start(sample_tenant()).await?;
    println!(
        "Graph {} and token endpoint {} on loopback",
        sim.graph_url(),
        sim.authority_url()
    );
    let settings = GraphSettings::sample(sim.graph_url(), sim.authority_url());
    integrations::create_graph(
        &env.store,
        &key,
        &account,
        ACCOUNT,
        INTEGRATION,
        &settings,
        &Secret::new(SAMPLE_CLIENT_SECRET.to_owned()),
        now,
    )
    .await?;
    let row = integrations::find(&env.store, &account, ACCOUNT, INTEGRATION).await?;
    let integ = GraphIntegration::open(row, &key)?;
    let senv = sync_env(&env);
    let cycle = |trigger| CycleOptions {
        trigger,
        dry_run: false,
        allow_deletes: false,
        full: false,
    };
    println!("Graph integration {INTEGRATION:?} created (client secret sealed at rest)");

    heading("2. First cycle");
    let report = run_cycle(&senv, &integ, cycle(Trigger::Manual)).await?;
    print_cycle(&report);

    heading("3. Appointments booked");
    let tomorrow = now + TimeDelta::days(1);
    for (host, title, hours, guests) in [
        (
            "lidia.holloway@contoso.com",
            "Support escalation review",
            2,
            vec![
                "Sam Visitor <sam@fabrikam.example>",
                "ola@northwind.example",
            ],
        ),
        (
            "lidia.holloway@contoso.com",
            "Onboarding: new support engineer",
            26,
            vec!["Kim Guest <kim@adatum.example>"],
        ),
        (
            "johanna.lorenz@contoso.com",
            "Quarterly sales review",
            3,
            vec!["buyer@tailspin.example"],
        ),
    ] {
        let a = book_appointment(
            &env.store,
            &account,
            ACCOUNT,
            &UserName::parse(host)?,
            title,
            tomorrow + TimeDelta::hours(hours),
            None,
            guests
                .iter()
                .map(|g| parse_guest(g))
                .collect::<Result<Vec<_>>>()?,
        )
        .await?;
        println!(
            "{:?} hosted by {} at {} with {} guest(s)",
            a.title,
            a.host_user_name,
            a.starts_at.format("%Y-%m-%d %H:%M UTC"),
            a.guests.len()
        );
    }

    heading("4. The tenant changes in Entra");
    let alex = sim.with_tenant(|t| {
        let alex = t
            .users()
            .find(|u| u.user_principal_name == "alex.wilber@contoso.com")
            .map(|u| u.id.clone())
            .unwrap_or_default();
        t.update_user(&alex, |u| {
            u.given_name = Some("Alexander".to_owned());
            u.display_name = Some("Alexander Wilber".to_owned());
        });
        let lidia = t
            .users()
            .find(|u| u.user_principal_name == "lidia.holloway@contoso.com")
            .map(|u| u.id.clone())
            .unwrap_or_default();
        t.unassign(&lidia);
        let rene = t.add_user(
            SimUser::new("rene.magi@contoso.com")
                .named("Rene", "Magi")
                .with_mail("rene.magi@contoso.com"),
        );
        let sales = t
            .groups()
            .find(|g| g.display_name == "Sales")
            .map(|g| g.id.clone())
            .unwrap_or_default();
        t.add_member(&sales, &rene);
        alex
    });
    println!(
        "renamed Alex Wilber to Alexander; unassigned Lidia Holloway (hosts 2 upcoming appointments); added Rene Magi to the Sales group"
    );

    heading("5. On-demand provisioning of the renamed user");
    let od = provision_user(&senv, &integ, &alex, false).await?;
    print_on_demand(&od);

    heading("6. Next cycle");
    let report = run_cycle(&senv, &integ, cycle(Trigger::Manual)).await?;
    print_cycle(&report);

    heading("7. Users now");
    let users = crate::sync::cycle::stored_users(&env.store, &account).await?;
    for u in &users {
        println!(
            "{:<34} {:<12} {:<12} externalId {:<20} source {}",
            u.attrs.user_name,
            u.attrs.given_name.as_deref().unwrap_or("-"),
            u.attrs.family_name.as_deref().unwrap_or("-"),
            u.attrs.external_id.as_deref().unwrap_or("-"),
            u.source.as_str()
        );
    }

    heading("8. Provisioning log (newest first)");
    let log = env
        .store
        .list_log(
            &account,
            &LogQuery {
                limit: 40,
                ..LogQuery::default()
            },
        )
        .await?;
    for r in &log {
        println!(
            "{} {:<13} {:<8} {:<34} {}{}",
            r.at.format("%H:%M:%S"),
            r.action,
            r.status,
            r.user_name.as_deref().unwrap_or("-"),
            format_modified(&r.modified),
            r.error_message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        );
    }

    heading("9. Appointments");
    for a in env.store.list_appointments(&account).await? {
        println!(
            "{:<9} {:<34} host {:<30} {}",
            a.status.as_str(),
            a.title,
            a.host_user_name,
            a.cancel_reason.as_deref().unwrap_or("")
        );
    }

    heading("10. Cancellation emails, delivered by the outbox worker (file transport)");
    let worker = crate::notify::worker::DeliveryWorker::from_settings(
        env.store.clone(),
        env.clock.clone(),
        &mail,
    )?;
    worker.run_until_idle().await?;
    for m in env.store.list_outbox(&account).await? {
        println!(
            "to {:<34} {:?} [{}]",
            m.recipient_email, m.subject, m.status
        );
    }
    println!(
        "each email is a readable .eml file in {}",
        mail.file_dir.display()
    );
    let db = format!(
        "DATABASE_URL=sqlite://{}",
        args.dir.join("essentry.db").display()
    );
    println!(
        "\nDemo data is in {dir} (delete the folder to start again). Look around it with:\n  \
         {db} cargo run --release -- users list --account {ACCOUNT}\n  \
         {db} cargo run --release -- logs --account {ACCOUNT}\n  \
         {db} cargo run --release -- appointments list --account {ACCOUNT}\n  \
         {db} cargo run --release -- status",
        dir = args.dir.display(),
    );
    if args.serve {
        super::demo_console::serve(env, key, &args.listen).await?;
    } else {
        println!("\nSee it in the operator console: cargo run --release -- demo --serve");
        env.store.close().await;
    }
    sim.shutdown().await;
    Ok(())
}
