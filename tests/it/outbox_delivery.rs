//! Delivery of the outbox to a real SMTP receiver on loopback (`sink`), on SQLite and on
//! PostgreSQL: what guests receive (recipients, subject, text and HTML parts, Message-ID, local
//! time), retries with backoff while the relay is down and exactly one delivery when it is back,
//! dead messages and `outbox retry`, STARTTLS/implicit TLS refused by a plain relay (nothing
//! sent), two workers on one store, the file transport, a graceful stop between messages, and
//! `serve` killed with SIGKILL mid-delivery (at-least-once after a restart).

pub(crate) mod sink;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use essentry_sync::config::{MailSettings, MailTransportKind, SmtpTls};
use essentry_sync::domain::notice::cancellation_messages;
use essentry_sync::domain::{
    AccountId, Appointment, AppointmentId, AppointmentStatus, Clock, Guest, ManualClock,
    SystemClock,
};
use essentry_sync::notify::{BatchReport, DeliveryWorker};
use essentry_sync::store::{OutboxEntry, Store, StoreConfig};
use reqwest::StatusCode;
use serde_json::Value;

use self::sink::SmtpSink;
use crate::support::{Backend, TestApp, TestStore, postgres_url, t0};

const BIN: &str = env!("CARGO_BIN_EXE_essentry-sync");
const DOMAIN: &str = "test.essentry";

/// SMTP to the receiver on `port`, plain text (loopback), fast timeouts.
pub(crate) fn smtp_settings(port: u16) -> MailSettings {
    MailSettings {
        transport: MailTransportKind::Smtp,
        from: format!("essentry <no-reply@{DOMAIN}>"),
        smtp_host: "127.0.0.1".to_owned(),
        smtp_port: Some(port),
        smtp_tls: SmtpTls::None,
        smtp_timeout_secs: 5,
        poll_interval_ms: 20,
        ..MailSettings::default()
    }
}

fn worker(store: &Store, clock: &Arc<ManualClock>, settings: &MailSettings) -> DeliveryWorker {
    DeliveryWorker::from_settings(store.clone(), clock.clone(), settings).expect("worker")
}

/// A loopback port with nothing listening on it (yet).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `n` cancellation notices queued at `now` as the directory queues them (one appointment with
/// `n` guests; no appointment row, so `appointment_id` is cleared).
pub(crate) async fn enqueue(
    store: &Store,
    account: &AccountId,
    n: usize,
    now: chrono::DateTime<Utc>,
) {
    let starts = now + TimeDelta::days(1);
    let appointment = Appointment {
        id: AppointmentId::generate(),
        account_id: account.clone(),
        host_user_id: None,
        host_user_name: "hanna.host@contoso.com".to_owned(),
        host_display: "Hanna Host".to_owned(),
        title: "Load test".to_owned(),
        starts_at: starts,
        ends_at: starts + TimeDelta::hours(1),
        status: AppointmentStatus::Cancelled,
        cancelled_at: Some(now),
        cancel_reason: Some("deleted".to_owned()),
        guests: (0..n)
            .map(|i| Guest {
                name: format!("Guest {i}"),
                email: format!("guest{i}@example.org"),
            })
            .collect(),
    };
    let mut messages =
        cancellation_messages(&appointment, now, || uuid::Uuid::new_v4().to_string());
    for m in &mut messages {
        m.appointment_id = None;
    }
    let mut tx = store.begin().await.unwrap();
    use essentry_sync::domain::DirectoryTx;
    tx.enqueue(&messages).await.unwrap();
    tx.commit().await.unwrap();
}

pub(crate) async fn entries(
    store: &Store,
    account: &AccountId,
    now: chrono::DateTime<Utc>,
) -> Vec<OutboxEntry> {
    store
        .list_outbox_entries(account, false, now)
        .await
        .unwrap()
}

/// The receiver's messages by recipient.
fn by_recipient(sink: &SmtpSink) -> BTreeMap<String, Vec<sink::Received>> {
    let mut out: BTreeMap<String, Vec<sink::Received>> = BTreeMap::new();
    for m in sink.received() {
        for to in &m.to {
            out.entry(to.clone()).or_default().push(m.clone());
        }
    }
    out
}

/// The text of the part of `mail` with MIME type `mime`.
fn part(mail: &mailparse::ParsedMail<'_>, mime: &str) -> String {
    mail.subparts
        .iter()
        .find(|p| p.ctype.mimetype == mime)
        .unwrap_or_else(|| panic!("no {mime} part"))
        .get_body()
        .unwrap()
}

/// A TestApp whose user Hanna hosted two upcoming appointments (3 distinct guests) and was
/// deleted over SCIM, so 3 cancellation notices wait in the outbox.
async fn deprovisioned(backend: Backend) -> TestApp {
    let app = TestApp::spawn(backend).await;
    let host = app
        .create_user("Hanna.Host@contoso.com", "Hanna", "Host")
        .await;
    app.add_appointment(
        "hanna.host@contoso.com",
        "Quarterly review",
        24,
        &[
            ("Vera Visitor", "vera@example.org"),
            ("Bob", "bob@example.org"),
        ],
    )
    .await;
    app.add_appointment(
        "hanna.host@contoso.com",
        "Site tour",
        72,
        &[("", "carla@example.net")],
    )
    .await;
    let r = app.delete(&format!("/Users/{host}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    app
}

backend_test! {
    async fn emails_arrive_with_recipients_subject_both_parts_and_message_id(backend) {
        let app = deprovisioned(backend).await;
        assert!(
            app.store()
                .set_account_time_zone(&app.account, "Europe/Berlin")
                .await
                .unwrap()
        );
        let sink =
            SmtpSink::start_with("127.0.0.1:0".parse().unwrap(), Some(("essentry", "s3cret")))
                .await;
        let mut settings = smtp_settings(sink.port());
        settings.smtp_username = Some("essentry".to_owned());
        settings.smtp_password = Some("s3cret".to_owned());
        let w = worker(app.store(), &app.clock, &settings);

        let report = w.run_once().await.unwrap();
        assert_eq!(
            report,
            BatchReport {
                claimed: 3,
                sent: 3,
                ..BatchReport::default()
            },
            "{backend:?}"
        );
        let rows = entries(app.store(), &app.account, app.clock.now()).await;
        let got = by_recipient(&sink);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            ["bob@example.org", "carla@example.net", "vera@example.org"],
            "{backend:?}"
        );
        for row in &rows {
            assert_eq!(row.row.status, "sent", "{backend:?}");
            assert_eq!(row.row.sent_at, Some(t0()));
            assert_eq!(row.row.attempts, 1);
            let expected_id = format!("<outbox.{}@{DOMAIN}>", row.row.id);
            assert_eq!(row.message_id.as_deref(), Some(expected_id.as_str()));
            let mails = &got[&row.row.recipient_email];
            assert_eq!(
                mails.len(),
                1,
                "{backend:?}: exactly one email to {}",
                row.row.recipient_email
            );
            let m = &mails[0];
            assert_eq!(m.from, format!("no-reply@{DOMAIN}"));
            assert_eq!(m.user.as_deref(), Some("essentry"), "sent after AUTH");
            let parsed = mailparse::parse_mail(&m.data).unwrap();
            use mailparse::MailHeaderMap;
            let header = |n: &str| parsed.headers.get_first_value(n).unwrap_or_default();
            assert_eq!(header("Message-ID"), expected_id);
            assert_eq!(header("Subject"), row.row.subject);
            assert!(
                header("To").contains(&row.row.recipient_email),
                "{}",
                header("To")
            );
            assert!(header("From").contains(&format!("no-reply@{DOMAIN}")));
            assert_eq!(parsed.ctype.mimetype, "multipart/alternative");
            let text = part(&parsed, "text/plain");
            let html = part(&parsed, "text/html");
            assert!(
                text.contains("Hanna Host") && html.contains("Hanna Host"),
                "{text}"
            );
            assert!(text.contains("has been cancelled"), "{text}");
        }
        let vera = &got["vera@example.org"][0];
        let parsed = mailparse::parse_mail(&vera.data).unwrap();
        let text = part(&parsed, "text/plain");
        assert!(text.starts_with("Hello Vera Visitor,"), "{text}");
        // 2026-11-29 12:00 UTC is 13:00 in Berlin (CET).
        let when = "Sunday, 29 November 2026, 13:00 – 14:00 CET (Europe/Berlin)";
        assert!(
            text.contains(&format!("\"Quarterly review\" with Hanna Host on {when}")),
            "{text}"
        );
        let html = part(&parsed, "text/html");
        let when_html = when.replace('/', "&#x2f;");
        assert!(
            html.contains("<strong>Quarterly review</strong>") && html.contains(&when_html),
            "{html}"
        );
        let carla = mailparse::parse_mail(&got["carla@example.net"][0].data).unwrap();
        let text = part(&carla, "text/plain");
        assert_eq!(
            text.lines().next(),
            Some("Hello,"),
            "no name, no name in the greeting: {text}"
        );
        assert!(
            text.contains("\"Site tour\"") && text.contains("Tuesday, 1 December 2026, 13:00"),
            "{text}"
        );

        // Nothing is sent twice.
        app.clock.advance(TimeDelta::hours(2));
        assert_eq!(w.run_once().await.unwrap(), BatchReport::default());
        assert_eq!(sink.count(), 3);
        sink.stop().await;
        app.finish().await;
    }
}

backend_test! {
    async fn smtp_down_retries_with_backoff_then_delivers_each_message_once(backend) {
        let ts = TestStore::new(backend).await;
        let clock = Arc::new(ManualClock::new(t0()));
        let account = ts.store.ensure_account("default", t0()).await.unwrap();
        enqueue(&ts.store, &account, 5, t0()).await;
        let port = free_port();
        let settings = smtp_settings(port);
        let w = worker(&ts.store, &clock, &settings);

        // The relay is down: every attempt fails and is put off by the backoff.
        let first = w.run_once().await.unwrap();
        assert_eq!(
            first,
            BatchReport {
                claimed: 5,
                failed: 5,
                ..BatchReport::default()
            },
            "{backend:?}"
        );
        for e in entries(&ts.store, &account, clock.now()).await {
            assert_eq!((e.row.status.as_str(), e.row.attempts), ("pending", 1));
            assert!(!e.in_flight);
            let error = e.row.last_error.unwrap_or_default();
            assert!(
                error.to_lowercase().contains("connection"),
                "{backend:?}: {error}"
            );
            let wait = e.next_attempt_at - clock.now();
            assert!(
                wait >= TimeDelta::seconds(15) && wait <= TimeDelta::seconds(30),
                "first backoff within [base/2, base]: {wait}"
            );
        }
        assert_eq!(
            w.run_once().await.unwrap().claimed,
            0,
            "not due before the backoff"
        );
        clock.advance(TimeDelta::seconds(30));
        let second = w.run_once().await.unwrap();
        assert_eq!((second.claimed, second.failed), (5, 5));
        for e in entries(&ts.store, &account, clock.now()).await {
            assert_eq!(e.row.attempts, 2);
            let wait = e.next_attempt_at - clock.now();
            assert!(
                wait >= TimeDelta::seconds(30) && wait <= TimeDelta::seconds(60),
                "doubled: {wait}"
            );
        }

        // The relay comes back on the same port.
        let sink = SmtpSink::start_with(format!("127.0.0.1:{port}").parse().unwrap(), None).await;
        clock.advance(TimeDelta::seconds(60));
        let third = w.run_once().await.unwrap();
        assert_eq!((third.claimed, third.sent), (5, 5), "{backend:?}");
        clock.advance(TimeDelta::hours(3));
        assert_eq!(w.run_once().await.unwrap().claimed, 0);
        let got = by_recipient(&sink);
        assert_eq!(got.len(), 5);
        assert!(got.values().all(|m| m.len() == 1), "no duplicates");
        for e in entries(&ts.store, &account, clock.now()).await {
            assert_eq!((e.row.status.as_str(), e.row.attempts), ("sent", 3));
            assert!(
                e.row.last_error.is_some(),
                "the last failure stays as history"
            );
        }
        sink.stop().await;
        ts.cleanup().await;
    }
}

backend_test! {
    async fn tls_when_configured_is_required_and_nothing_goes_out_in_plain_text(backend) {
        let ts = TestStore::new(backend).await;
        let clock = Arc::new(ManualClock::new(t0()));
        let account = ts.store.ensure_account("default", t0()).await.unwrap();
        enqueue(&ts.store, &account, 2, t0()).await;
        // The receiver speaks plain SMTP and offers no STARTTLS.
        let sink =
            SmtpSink::start_with("127.0.0.1:0".parse().unwrap(), Some(("essentry", "s3cret")))
                .await;
        for (tls, expected) in [
            (SmtpTls::Starttls, "does not offer STARTTLS"),
            (SmtpTls::Implicit, "TLS with 127.0.0.1"),
        ] {
            let mut settings = smtp_settings(sink.port());
            settings.smtp_tls = tls;
            settings.smtp_username = Some("essentry".to_owned());
            settings.smtp_password = Some("s3cret".to_owned());
            let w = worker(&ts.store, &clock, &settings);
            let r = w.run_once().await.unwrap();
            assert_eq!((r.claimed, r.failed), (2, 2), "{backend:?} {tls:?}");
            for e in entries(&ts.store, &account, clock.now()).await {
                let error = e.row.last_error.unwrap_or_default();
                assert!(error.contains(expected), "{backend:?} {tls:?}: {error}");
            }
            clock.advance(TimeDelta::hours(2));
        }
        assert_eq!(sink.count(), 0, "no mail without TLS");
        sink.stop().await;
        ts.cleanup().await;
    }
}

/// The database URL the binary should use for `ts` (PostgreSQL: its schema as search path).
fn database_url(ts: &TestStore) -> String {
    match (&ts.backend, &ts.schema) {
        (Backend::Postgres, Some(schema)) => {
            let base = postgres_url();
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}options=-c%20search_path%3D{schema}")
        }
        _ => format!("sqlite://{}", ts.dir.path().join("essentry.db").display()),
    }
}

fn cli(ts: &TestStore, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(ts.dir.path())
        .env("DATABASE_URL", database_url(ts))
        .output()
        .expect("run essentry-sync")
}

fn cli_json(ts: &TestStore, args: &[&str]) -> Value {
    let out = cli(ts, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

backend_test! {
    async fn a_message_that_keeps_failing_goes_dead_and_outbox_retry_revives_it(backend) {
        let ts = TestStore::new(backend).await;
        let clock = Arc::new(ManualClock::new(t0()));
        let account = ts.store.ensure_account("default", t0()).await.unwrap();
        enqueue(&ts.store, &account, 3, t0()).await;
        let sink = SmtpSink::start().await;
        sink.refuse("guest1@example.org");
        let mut settings = smtp_settings(sink.port());
        settings.max_attempts = 3;
        let w = worker(&ts.store, &clock, &settings);

        let r = w.run_once().await.unwrap();
        assert_eq!((r.sent, r.failed, r.dead), (2, 1, 0), "{backend:?}");
        clock.advance(TimeDelta::hours(2));
        let r = w.run_once().await.unwrap();
        assert_eq!((r.claimed, r.failed, r.dead), (1, 1, 0));
        clock.advance(TimeDelta::hours(2));
        let r = w.run_once().await.unwrap();
        assert_eq!(
            (r.claimed, r.failed, r.dead),
            (1, 0, 1),
            "the third failure is the last"
        );
        clock.advance(TimeDelta::days(2));
        assert_eq!(
            w.run_once().await.unwrap().claimed,
            0,
            "dead rows are not retried"
        );

        let dead = cli_json(&ts, &["outbox", "--dead", "--json"]);
        let dead = dead.as_array().unwrap();
        assert_eq!(dead.len(), 1, "{backend:?}: {dead:?}");
        assert_eq!(dead[0]["recipient_email"], "guest1@example.org");
        assert_eq!(dead[0]["status"], "dead");
        assert_eq!(dead[0]["attempts"], 3);
        assert!(
            dead[0]["last_error"].as_str().unwrap().contains("451"),
            "{}",
            dead[0]
        );
        let all = cli_json(&ts, &["outbox", "--json"]);
        assert_eq!(all.as_array().unwrap().len(), 3);
        let text = cli(&ts, &["outbox", "--dead"]);
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("dead") && text.contains("3 attempt(s)") && text.contains("last error: "),
            "{text}"
        );

        let dead_id = dead[0]["id"].as_str().unwrap().to_owned();
        let sent_id = all
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["status"] == "sent")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let refused = cli(&ts, &["outbox", "retry", &sent_id]);
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("already sent"));
        assert!(
            !cli(&ts, &["outbox", "retry", "no-such-message"])
                .status
                .success()
        );
        let retried = cli_json(&ts, &["outbox", "retry", &dead_id, "--json"]);
        assert_eq!(retried["outcome"], "requeued");
        assert_eq!(
            cli_json(&ts, &["outbox", "--dead", "--json"]),
            serde_json::json!([])
        );

        // The relay takes it now; `retry` made it due at the command's (real) time.
        sink.accept("guest1@example.org");
        clock.set(Utc::now() + TimeDelta::minutes(1));
        let r = w.run_once().await.unwrap();
        assert_eq!((r.claimed, r.sent), (1, 1), "{backend:?}");
        let got = by_recipient(&sink);
        assert_eq!(got.len(), 3);
        assert!(got.values().all(|m| m.len() == 1));
        let revived = entries(&ts.store, &account, clock.now())
            .await
            .into_iter()
            .find(|e| e.row.id == dead_id)
            .unwrap();
        assert_eq!(
            (revived.row.status.as_str(), revived.row.attempts),
            ("sent", 1)
        );
        sink.stop().await;
        ts.cleanup().await;
    }
}

backend_test! {
    multi_thread async fn two_workers_on_one_store_deliver_every_message_exactly_once(backend) {
        let ts = TestStore::new(backend).await;
        let clock = Arc::new(ManualClock::new(t0()));
        let account = ts.store.ensure_account("default", t0()).await.unwrap();
        enqueue(&ts.store, &account, 200, t0()).await;
        // The second worker has its own connection pool, as a second replica would.
        let second = Store::connect(&StoreConfig {
            url: database_url(&ts),
            max_connections: 4,
            pg_schema: ts.schema.clone(),
        })
        .await
        .unwrap();
        let sink = SmtpSink::start().await;
        let mut settings = smtp_settings(sink.port());
        settings.batch_size = 10;
        let a = worker(&ts.store, &clock, &settings);
        let b = worker(&second, &clock, &settings);
        let (ra, rb) = tokio::join!(a.run_until_idle(), b.run_until_idle());
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ra.sent + rb.sent, 200, "{backend:?}: {ra:?} {rb:?}");
        assert!(
            ra.sent > 0 && rb.sent > 0,
            "{backend:?}: both workers took part: {ra:?} {rb:?}"
        );
        assert_eq!(sink.count(), 200, "{backend:?}: exactly once");
        let ids: HashSet<String> = sink
            .received()
            .iter()
            .map(|m| m.header("Message-ID").unwrap())
            .collect();
        assert_eq!(ids.len(), 200);
        let counts = ts.store.outbox_counts(&account).await.unwrap();
        assert_eq!(counts.get("sent"), Some(&200), "{counts:?}");
        second.close().await;
        sink.stop().await;
        ts.cleanup().await;
    }
}

backend_test! {
    async fn the_file_transport_writes_one_readable_eml_per_message(backend) {
        let app = deprovisioned(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let settings = MailSettings {
            file_dir: dir.path().join("mail"),
            message_id_domain: Some(DOMAIN.to_owned()),
            ..MailSettings::default()
        };
        assert_eq!(
            settings.transport,
            MailTransportKind::File,
            "the embedded default"
        );
        let w = worker(app.store(), &app.clock, &settings);
        assert_eq!(w.run_once().await.unwrap().sent, 3, "{backend:?}");
        let rows = entries(app.store(), &app.account, app.clock.now()).await;
        let mut files: Vec<String> = std::fs::read_dir(dir.path().join("mail"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut expected: Vec<String> = rows.iter().map(|r| format!("{}.eml", r.row.id)).collect();
        expected.sort();
        assert_eq!(
            files, expected,
            "one <outbox id>.eml per message, no temporary files"
        );
        let vera = rows
            .iter()
            .find(|r| r.row.recipient_email == "vera@example.org")
            .unwrap();
        let raw =
            std::fs::read_to_string(dir.path().join("mail").join(format!("{}.eml", vera.row.id)))
                .unwrap();
        // Readable as it is: headers and the greeting in plain sight.
        assert!(
            raw.contains(&format!("Subject: {}", vera.row.subject)),
            "{raw}"
        );
        assert!(
            raw.contains(&format!("Message-ID: <outbox.{}@{DOMAIN}>", vera.row.id)),
            "{raw}"
        );
        assert!(raw.contains("Hello Vera Visitor,"), "{raw}");
        assert!(raw.contains("From: essentry <no-reply@localhost>"), "{raw}");
        let parsed = mailparse::parse_mail(raw.as_bytes()).unwrap();
        let text = part(&parsed, "text/plain");
        assert!(text.contains("\"Quarterly review\" with Hanna Host on Sunday, 29 November 2026, 12:00 – 13:00 UTC"), "{text}");
        app.finish().await;
    }
}

backend_test! {
    async fn a_stopped_worker_finishes_its_message_and_hands_the_rest_back(backend) {
        let ts = TestStore::new(backend).await;
        let clock = Arc::new(ManualClock::new(t0()));
        let account = ts.store.ensure_account("default", t0()).await.unwrap();
        enqueue(&ts.store, &account, 10, t0()).await;
        let sink = SmtpSink::start().await;
        sink.set_delay(Duration::from_millis(150));
        let mut settings = smtp_settings(sink.port());
        settings.batch_size = 10;
        let handle = worker(&ts.store, &clock, &settings).start();
        assert!(
            sink.wait_for(2, Duration::from_secs(20)).await,
            "{backend:?}"
        );
        let stopping = std::time::Instant::now();
        handle.stop(Duration::from_secs(10)).await;
        assert!(
            stopping.elapsed() < Duration::from_secs(2),
            "stops after the message in flight"
        );
        let rows = entries(&ts.store, &account, clock.now()).await;
        let sent = rows.iter().filter(|e| e.row.status == "sent").count();
        assert_eq!(sent, sink.count(), "{backend:?}: what was sent is recorded");
        assert!(
            sent < 10,
            "{backend:?}: stopped before the end of the batch"
        );
        for e in rows.iter().filter(|e| e.row.status == "pending") {
            assert!(
                !e.in_flight,
                "{backend:?}: handed back, not left to the lease"
            );
            assert_eq!(e.row.attempts, 0, "a message never tried is not an attempt");
            assert!(e.next_attempt_at <= clock.now());
        }
        sink.stop().await;
        ts.cleanup().await;
    }
}

/// `serve` with the mail worker on `sink`, a short lease and a fast poll.
fn spawn_serve(ts: &TestStore, sink_port: u16, log: &Path) -> Child {
    Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .current_dir(ts.dir.path())
        .env("DATABASE_URL", database_url(ts))
        .env("ESSENTRY_MAIL__TRANSPORT", "smtp")
        .env("ESSENTRY_MAIL__SMTP_HOST", "127.0.0.1")
        .env("ESSENTRY_MAIL__SMTP_PORT", sink_port.to_string())
        .env("ESSENTRY_MAIL__SMTP_TLS", "none")
        .env("ESSENTRY_MAIL__BATCH_SIZE", "4")
        .env("ESSENTRY_MAIL__POLL_INTERVAL_MS", "100")
        .env("ESSENTRY_MAIL__LEASE_SECS", "2")
        .env("ESSENTRY_LOG__FILTER", "info")
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .spawn()
        .expect("spawn serve")
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

async fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve did not exit within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

backend_test! {
    async fn serve_killed_mid_delivery_delivers_every_email_after_a_restart(backend) {
        let ts = TestStore::new(backend).await;
        let account = ts
            .store
            .ensure_account("default", Utc::now())
            .await
            .unwrap();
        enqueue(&ts.store, &account, 12, SystemClock.now()).await;
        let sink = SmtpSink::start().await;
        sink.set_delay(Duration::from_millis(200));
        let log = ts.dir.path().join("serve.log");

        let mut first = spawn_serve(&ts, sink.port(), &log);
        assert!(
            sink.wait_for(3, Duration::from_secs(60)).await,
            "{backend:?}: serve delivered nothing: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        signal(&first, "-KILL");
        let status = wait_exit(&mut first, Duration::from_secs(10)).await;
        assert!(!status.success(), "killed");
        let counts = ts.store.outbox_counts(&account).await.unwrap();
        let sent_before = counts.get("sent").copied().unwrap_or(0);
        assert!(
            sent_before < 12,
            "{backend:?}: killed mid-delivery: {counts:?}"
        );

        let mut second = spawn_serve(&ts, sink.port(), &log);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let counts = ts.store.outbox_counts(&account).await.unwrap();
            if counts.get("sent") == Some(&12) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{backend:?}: not all sent after the restart: {counts:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        signal(&second, "-TERM");
        let status = wait_exit(&mut second, Duration::from_secs(15)).await;
        assert!(status.success(), "{backend:?}: graceful stop: {status:?}");

        // Every guest got their email; the only possible duplicate is the one whose send had
        // completed when serve was killed, and it carries the same Message-ID.
        let got = by_recipient(&sink);
        assert_eq!(got.len(), 12, "{backend:?}");
        let duplicates: usize = got.values().map(|m| m.len() - 1).sum();
        assert!(duplicates <= 1, "{backend:?}: {duplicates} duplicates");
        eprintln!(
            "{backend:?}: {sent_before} of 12 recorded sent when killed, {} received, {duplicates} re-sent",
            sink.count()
        );
        for mails in got.values() {
            let ids: HashSet<String> = mails
                .iter()
                .map(|m| m.header("Message-ID").unwrap())
                .collect();
            assert_eq!(ids.len(), 1, "a re-send keeps its Message-ID");
        }
        let rows = entries(&ts.store, &account, Utc::now()).await;
        let by_id: HashMap<&str, &OutboxEntry> =
            rows.iter().map(|r| (r.row.id.as_str(), r)).collect();
        assert_eq!(by_id.len(), 12);
        sink.stop().await;
        ts.cleanup().await;
    }
}
