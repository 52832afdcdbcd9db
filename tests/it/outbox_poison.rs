//! One bad outbox row cannot stop email delivery, on both backends: a guest name with CR LF
//! (a row written before names were checked) and an unusable address, queued by deleting their
//! host over SCIM, next to good messages of another account. The supervised worker — as `serve`
//! runs it — delivers every good message in its first round, sends the CR LF one with the name
//! cleaned (no forged header), parks the unusable one as dead with the reason, and `/readyz`
//! stays 200 throughout.

use std::sync::Arc;
use std::time::Duration;

use essentry_sync::domain::{Clock, ManualClock};
use essentry_sync::notify::DeliveryWorker;
use reqwest::StatusCode;

use crate::outbox_delivery::sink::SmtpSink;
use crate::outbox_delivery::{enqueue, entries, smtp_settings};
use crate::support::TestApp;

const EVIL: &str = "Evil\r\nBcc: x@evil.example";

backend_test! {
    async fn a_poisoned_row_does_not_delay_other_messages(backend) {
        let app = TestApp::spawn(backend).await;
        app.create_user("hanna.host@contoso.com", "Hanna", "Host").await;
        let hanna = app.store().user_by_name(
            &app.account,
            &essentry_sync::domain::UserName::parse("hanna.host@contoso.com").unwrap(),
        ).await.unwrap().unwrap();
        app.add_appointment(
            "hanna.host@contoso.com",
            "Quarterly review",
            24,
            &[(EVIL, "s@x.example"), ("Nobody", "not an address"), ("Vera", "vera@example.org")],
        )
        .await;
        let r = app.delete(&format!("/Users/{}", hanna.id)).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        let other = app.store().ensure_account("other", app.clock.now()).await.unwrap();
        enqueue(app.store(), &other, 3, app.clock.now()).await;

        let sink = SmtpSink::start().await;
        let clock = Arc::new(ManualClock::new(app.clock.now()));
        let worker = DeliveryWorker::from_settings(
            app.store().clone(),
            clock.clone(),
            &smtp_settings(sink.port()),
        )
        .expect("worker");
        // One round: every good message goes out in it, the poisoned ones do not stop it.
        let report = worker.run_once().await.expect("a round");
        assert_eq!((report.sent, report.dead, report.failed), (5, 1, 0), "{report:?}");
        assert_eq!(sink.count(), 5);
        let received = sink.received();
        assert!(
            received.iter().all(|m| m.to.iter().all(|t| t != "x@evil.example")),
            "no forged Bcc recipient"
        );
        let evil = received
            .iter()
            .find(|m| m.to == ["s@x.example"])
            .expect("the CR LF guest got the email, with the name cleaned");
        let text = evil.text();
        let headers = text.split("\r\n\r\n").next().unwrap_or_default();
        assert!(
            !headers.lines().any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
            "{headers}"
        );
        let to = evil.header("To").unwrap_or_default();
        assert!(to.contains("Evil Bcc: x@evil.example"), "{to}");
        let dead: Vec<_> = entries(app.store(), &app.account, clock.now())
            .await
            .into_iter()
            .filter(|e| e.row.status == "dead")
            .collect();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].row.recipient_email, "not an address");
        let reason = dead[0].row.last_error.as_deref().unwrap_or_default();
        assert!(reason.contains("not a usable email address"), "{reason}");

        // Supervised, as `serve` runs it: a new message is delivered, and /readyz is 200.
        enqueue(app.store(), &other, 1, clock.now()).await;
        let handle = worker.start_supervised(app.state.readiness.clone());
        assert!(sink.wait_for(6, Duration::from_secs(20)).await);
        let ready = app
            .client
            .get(app.base.replace("/scim/v2", "/readyz"))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), StatusCode::OK);
        handle.stop(Duration::from_secs(5)).await;
        sink.stop().await;
        app.finish().await;
    }
}

backend_test! {
    /// `/readyz` answers 503 naming a background task that is not running.
    async fn readyz_reports_a_worker_that_is_not_running(backend) {
        let app = TestApp::spawn(backend).await;
        let url = app.base.replace("/scim/v2", "/readyz");
        app.state
            .readiness
            .down("email delivery worker", "it stopped after a panic (boom); restart 1 in 1000 ms");
        let r = app.client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let text = r.text().await.unwrap();
        assert!(
            text.starts_with("not ready: email delivery worker is not running: it stopped after a panic (boom)"),
            "{text}"
        );
        app.state.readiness.up("email delivery worker");
        let r = app.client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        app.finish().await;
    }
}

/// `appointments create` refuses a guest name or title with control characters, with a clear
/// error, before anything is stored.
#[test]
fn the_cli_refuses_control_characters_in_guests_and_titles() {
    let dir = tempfile::tempdir().unwrap();
    let run = |title: &str, guest: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_essentry-sync"))
            .args(["appointments", "create", "--host", "nobody@contoso.com"])
            .args(["--starts-at", "2030-01-01T09:00:00Z", "--title", title])
            .args(["--guest", guest])
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .output()
            .expect("run essentry-sync")
    };
    let out = run("Review", "Evil\r\nBcc: x@evil.example <s@x.example>");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the guest name must not contain control characters"),
        "{err}"
    );
    let out = run("Review\r\nX-Injected: 1", "g@example.org");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--title must not contain control characters"),
        "{err}"
    );
}
