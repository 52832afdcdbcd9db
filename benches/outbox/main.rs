//! Outbox delivery benchmark: one [`DeliveryWorker`] sending to a real SMTP receiver on loopback
//! (the test suite's `sink`, on the `mailin` protocol crate), on SQLite and on PostgreSQL.
//!
//! Run it (release build) with:
//!
//! ```text
//! cargo bench --bench outbox -- [--backend sqlite|postgres|both] [--messages 3000]
//!                               [--appointments 1000] [--guests 5]
//! ```
//!
//! Defaults: both backends (PostgreSQL at `postgres://postgres@127.0.0.1:5432/test`, override
//! with `ESSENTRY_BENCH_POSTGRES_URL`, in a fresh schema `bench_outbox_<random>` dropped at the
//! end), 3,000 messages, 1,000 appointments with 5 guests each.
//!
//! Scenarios, each on a fresh store:
//! 1. **throughput**: `--messages` cancellation notices are queued, then one worker (batches of
//!    50, SMTP in plain text to the receiver, a pooled connection) delivers them all; wall-clock
//!    from the first claim to the last recorded send. Messages/s = messages / that time.
//! 2. **deprovisioning**: a host with `--appointments` upcoming appointments of `--guests`
//!    distinct guests each is deprovisioned (`deprovision_user`, one transaction, as a SCIM
//!    DELETE or a sync cycle does); timed until the transaction committed the
//!    `appointments × guests` emails to the outbox ("queued"), and then until the worker has
//!    delivered every one ("delivered", measured from the start of the deprovisioning).
//!
//! Every scenario checks that the receiver got exactly one email per message and that every row
//! ends `sent`. It prints a markdown table and PASS/FAIL against the floor of 200 messages/s for
//! one worker (on every backend). Exit code 1 when a check fails, 2 when a backend could not be
//! run. `RUST_LOG` (default `warn`) shows the worker's own logs on stderr.

#[path = "../common/mod.rs"]
mod common;
#[path = "../../tests/it/outbox_delivery/sink.rs"]
mod sink;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, TimeDelta, Utc};
use essentry_sync::config::{MailSettings, MailTransportKind, SmtpTls};
use essentry_sync::domain::directory::{
    DeprovisionReason, OpContext, create_user, deprovision_user,
};
use essentry_sync::domain::notice::cancellation_messages;
use essentry_sync::domain::{
    AccountId, Appointment, AppointmentId, AppointmentStatus, Clock, DirectoryTx, DirectoryUser,
    Guest, Source, SystemClock, UserName,
};
use essentry_sync::notify::DeliveryWorker;
use essentry_sync::store::{Store, StoreConfig};

use crate::sink::SmtpSink;

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The floor: messages per second one worker delivers to a loopback relay.
const FLOOR_PER_SEC: f64 = 200.0;
const USAGE: &str = "usage: cargo bench --bench outbox -- [--backend sqlite|postgres|both] \
                     [--messages 3000] [--appointments 1000] [--guests 5]";

pub use common::Backend;

#[derive(Debug, Clone)]
struct Options {
    backends: Vec<Backend>,
    messages: usize,
    appointments: usize,
    guests: usize,
    pg_url: String,
}

fn parse_args() -> Result<Options> {
    let mut opts = Options {
        backends: vec![Backend::Sqlite, Backend::Postgres],
        messages: 3000,
        appointments: 1000,
        guests: 5,
        pg_url: std::env::var("ESSENTRY_BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_PG_URL.to_owned()),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        // `cargo bench` passes `--bench` to every bench binary.
        if arg == "--bench" {
            continue;
        }
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| anyhow!("{key} needs a value\n{USAGE}"))
        };
        match key.as_str() {
            "--backend" => {
                opts.backends = match value()?.as_str() {
                    "sqlite" => vec![Backend::Sqlite],
                    "postgres" => vec![Backend::Postgres],
                    "both" => vec![Backend::Sqlite, Backend::Postgres],
                    other => bail!("--backend {other:?}\n{USAGE}"),
                }
            }
            "--messages" => {
                opts.messages = value()?.replace('_', "").parse().context("--messages")?
            }
            "--appointments" => {
                opts.appointments = value()?
                    .replace('_', "")
                    .parse()
                    .context("--appointments")?
            }
            "--guests" => opts.guests = value()?.parse().context("--guests")?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if opts.messages == 0 || opts.appointments == 0 || opts.guests == 0 {
        bail!("--messages, --appointments and --guests must be positive");
    }
    Ok(opts)
}

/// A fresh store: a SQLite file in a temp dir, or a fresh PostgreSQL schema.
struct BenchStore {
    store: Store,
    pg: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl BenchStore {
    async fn open(backend: Backend, opts: &Options) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let (url, schema) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("bench.db").display()),
                None,
            ),
            Backend::Postgres => (
                opts.pg_url.clone(),
                Some(format!("bench_outbox_{}", uuid::Uuid::new_v4().simple())),
            ),
        };
        let store = Store::connect(&StoreConfig {
            url: url.clone(),
            max_connections: 4,
            pg_schema: schema.clone(),
        })
        .await
        .with_context(|| format!("opening the {} store", backend.name()))?;
        Ok(Self {
            store,
            pg: schema.map(|s| (url, s)),
            _dir: dir,
        })
    }

    async fn close(self) {
        self.store.close().await;
        if let Some((url, schema)) = self.pg {
            use sqlx::Connection;
            if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                )))
                .execute(&mut c)
                .await;
            }
        }
    }
}

fn worker(store: &Store, port: u16) -> Result<DeliveryWorker> {
    let settings = MailSettings {
        transport: MailTransportKind::Smtp,
        from: "essentry <no-reply@bench.essentry>".to_owned(),
        smtp_host: "127.0.0.1".to_owned(),
        smtp_port: Some(port),
        smtp_tls: SmtpTls::None,
        batch_size: 50,
        ..MailSettings::default()
    };
    Ok(DeliveryWorker::from_settings(
        store.clone(),
        Arc::new(SystemClock),
        &settings,
    )?)
}

fn appointment(account: &AccountId, n: usize, guests: usize, starts: DateTime<Utc>) -> Appointment {
    Appointment {
        id: AppointmentId::generate(),
        account_id: account.clone(),
        host_user_id: None,
        host_user_name: "hanna.host@contoso.com".to_owned(),
        host_display: "Hanna Host".to_owned(),
        title: format!("Meeting {n}"),
        starts_at: starts,
        ends_at: starts + TimeDelta::hours(1),
        status: AppointmentStatus::Scheduled,
        cancelled_at: None,
        cancel_reason: None,
        guests: (0..guests)
            .map(|g| Guest {
                name: format!("Guest {n}-{g}"),
                email: format!("guest{n}-{g}@example.org"),
            })
            .collect(),
    }
}

/// Checks that the receiver got exactly `n` emails, one per Message-ID, and every row is sent.
async fn verify(store: &Store, account: &AccountId, sink: &SmtpSink, n: usize) -> Result<()> {
    if sink.count() != n {
        bail!("the receiver got {} emails, expected {n}", sink.count());
    }
    let ids: std::collections::HashSet<String> = sink
        .received()
        .iter()
        .filter_map(|m| m.header("Message-ID"))
        .collect();
    if ids.len() != n {
        bail!("{} distinct Message-IDs for {n} emails", ids.len());
    }
    let counts = store.outbox_counts(account).await?;
    if counts.get("sent").copied() != Some(n as i64) || counts.len() != 1 {
        bail!("outbox rows by status: {counts:?}, expected {n} sent");
    }
    Ok(())
}

struct Row {
    backend: Backend,
    scenario: String,
    messages: usize,
    queued: Option<Duration>,
    delivered: Duration,
    /// Messages per second of the worker alone.
    rate: f64,
}

async fn throughput(backend: Backend, opts: &Options) -> Result<Row> {
    let bs = BenchStore::open(backend, opts).await?;
    let clock = SystemClock;
    let account = bs.store.ensure_account("default", clock.now()).await?;
    let a = appointment(&account, 0, opts.messages, clock.now() + TimeDelta::days(1));
    let mut messages = cancellation_messages(&a, clock.now(), || uuid::Uuid::new_v4().to_string());
    for m in &mut messages {
        m.appointment_id = None;
    }
    let mut tx = bs.store.begin().await?;
    tx.enqueue(&messages).await?;
    tx.commit().await?;
    let sink = SmtpSink::start().await;
    let w = worker(&bs.store, sink.port())?;
    let started = Instant::now();
    let report = w.run_until_idle().await?;
    let elapsed = started.elapsed();
    if report.sent != opts.messages {
        bail!(
            "the worker sent {} of {}: {report:?}",
            report.sent,
            opts.messages
        );
    }
    verify(&bs.store, &account, &sink, opts.messages).await?;
    sink.stop().await;
    bs.close().await;
    Ok(Row {
        backend,
        scenario: "throughput, 1 worker".to_owned(),
        messages: opts.messages,
        queued: None,
        delivered: elapsed,
        rate: opts.messages as f64 / elapsed.as_secs_f64(),
    })
}

async fn deprovisioning(backend: Backend, opts: &Options) -> Result<Row> {
    let bs = BenchStore::open(backend, opts).await?;
    let clock = SystemClock;
    let account = bs.store.ensure_account("default", clock.now()).await?;
    let ctx = OpContext {
        account: account.clone(),
        source: Source::Cli,
        integration_id: None,
        cycle_id: None,
        now: clock.now(),
    };
    let mut tx = bs.store.begin().await?;
    let host = create_user(
        &mut tx,
        &ctx,
        DirectoryUser {
            user_name: UserName::parse("hanna.host@contoso.com").map_err(|e| anyhow!("{e}"))?,
            given_name: Some("Hanna".to_owned()),
            family_name: Some("Host".to_owned()),
            display_name: None,
            external_id: None,
            active: true,
            entra_object_id: None,
            resource: Default::default(),
        },
    )
    .await
    .map_err(|e| anyhow!("creating the host: {e}"))?;
    let first = clock.now() + TimeDelta::days(1);
    for n in 0..opts.appointments {
        let mut a = appointment(
            &account,
            n,
            opts.guests,
            first + TimeDelta::minutes(n as i64),
        );
        a.host_user_id = Some(host.id.clone());
        tx.insert_appointment(&a).await?;
    }
    tx.commit().await?;
    let expected = opts.appointments * opts.guests;
    let sink = SmtpSink::start().await;
    let w = worker(&bs.store, sink.port())?;

    let started = Instant::now();
    let ctx = OpContext {
        now: clock.now(),
        ..ctx
    };
    let mut tx = bs.store.begin().await?;
    let report = deprovision_user(&mut tx, &ctx, &host.id, DeprovisionReason::Deleted)
        .await
        .map_err(|e| anyhow!("deprovisioning: {e}"))?;
    tx.commit().await?;
    let queued = started.elapsed();
    let pending = bs.store.outbox_counts(&account).await?;
    if pending.get("pending").copied() != Some(expected as i64) {
        bail!("after the deprovisioning: {pending:?}, expected {expected} pending ({report:?})");
    }
    let sending = Instant::now();
    let sent = w.run_until_idle().await?;
    let worker_time = sending.elapsed();
    let delivered = started.elapsed();
    if sent.sent != expected {
        bail!("the worker sent {} of {expected}: {sent:?}", sent.sent);
    }
    verify(&bs.store, &account, &sink, expected).await?;
    sink.stop().await;
    bs.close().await;
    Ok(Row {
        backend,
        scenario: format!(
            "deprovisioning: {} appointments × {} guests",
            opts.appointments, opts.guests
        ),
        messages: expected,
        queued: Some(queued),
        delivered,
        rate: expected as f64 / worker_time.as_secs_f64(),
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    common::init_tracing();
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut rows = Vec::new();
    let mut failed = false;
    let mut unavailable = false;
    for &backend in &opts.backends {
        for scenario in ["throughput", "deprovisioning"] {
            eprintln!("{}: {scenario} …", backend.name());
            let result = match scenario {
                "throughput" => throughput(backend, &opts).await,
                _ => deprovisioning(backend, &opts).await,
            };
            match result {
                Ok(row) => rows.push(row),
                Err(e) if format!("{e:#}").contains("opening the") => {
                    eprintln!("{}: skipped, {e:#}", backend.name());
                    unavailable = true;
                    break;
                }
                Err(e) => {
                    println!("FAIL {} {scenario}: {e:#}", backend.name());
                    failed = true;
                }
            }
        }
    }

    println!();
    println!("| Backend | Scenario | Emails | Queued (s) | Delivered (s) | Worker emails/s |");
    println!("|---|---|--:|--:|--:|--:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.2} | {:.0} |",
            r.backend.name(),
            r.scenario,
            r.messages,
            r.queued
                .map(|q| format!("{:.2}", q.as_secs_f64()))
                .unwrap_or_default(),
            r.delivered.as_secs_f64(),
            r.rate
        );
    }
    println!();
    for r in &rows {
        let pass = r.rate >= FLOOR_PER_SEC;
        failed |= !pass;
        println!(
            "{} {} {}: {:.0} emails/s with one worker (floor {FLOOR_PER_SEC:.0}/s)",
            if pass { "PASS" } else { "FAIL" },
            r.backend.name(),
            r.scenario,
            r.rate
        );
    }
    if failed {
        ExitCode::from(1)
    } else if unavailable {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
