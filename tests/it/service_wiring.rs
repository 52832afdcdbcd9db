//! The production wiring, in-process: the test server is built by the same `Service::start` as
//! `serve`, here with the scheduler and the mail worker switched on, so a scheduled cycle runs
//! and a guest email is delivered without the test driving either.

use std::time::Duration;

use chrono::TimeDelta;
use essentry_sync::domain::Clock;
use essentry_sync::entra::simulator::{SAMPLE_CLIENT_SECRET, Simulator, sample_tenant};
use essentry_sync::integrations;
use essentry_sync::secrets::Secret;
use reqwest::StatusCode;

use crate::proc_support::poll;
use crate::support::TestApp;

backend_test! {
    multi_thread async fn the_service_runs_scheduled_cycles_and_delivers_mail(backend) {
        let sim = Simulator::start(sample_tenant()).await.expect("simulator");
        let app = TestApp::spawn_with(backend, |s| {
            s.sync.scheduler_enabled = true;
            s.sync.first_run_delay_secs = 1;
            s.sync.tick_secs = 1;
            s.mail.worker_enabled = true;
            s.mail.poll_interval_ms = 100;
        })
        .await;
        let key = app.state.secret_key.clone().expect("the service has a secrets key");
        let settings = crate::support::sample_graph_settings(&sim);
        integrations::create_graph(
            app.store(),
            &key,
            &app.account,
            "default",
            "EntraPull",
            &settings,
            &Secret::new(SAMPLE_CLIENT_SECRET.to_owned()),
            app.clock.now(),
        )
        .await
        .expect("create the Graph integration");
        // The scheduler runs on the service's clock: move it past the first-run delay.
        app.clock.advance(TimeDelta::seconds(5));
        let cycle = poll("a scheduled cycle", Duration::from_secs(30), || async {
            let cycles = app.store().recent_cycles(&app.account, None, 10).await.ok()?;
            cycles
                .into_iter()
                .find(|c| c.trigger == essentry_sync::domain::Trigger::Scheduled && c.finished_at.is_some())
        })
        .await;
        assert_eq!(cycle.outcome, essentry_sync::domain::CycleStatus::Success, "{backend:?}: {:?}", cycle.error_message);
        let users = app
            .store()
            .list_users_light(&app.account)
            .await
            .expect("users");
        assert!(!users.is_empty(), "{backend:?}: the scheduled cycle provisioned the tenant");

        // A SCIM-created host with an upcoming appointment, deleted: the worker delivers the
        // guest's cancellation as a file without the test running it.
        let host = app.create_user("ann@contoso.example", "Ann", "Lee").await;
        app.add_appointment("ann@contoso.example", "Kick-off", 24, &[("Vera", "vera@example.org")])
            .await;
        let r = app.delete(&format!("/Users/{host}")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend:?}: {}", r.body);
        let dir = app.state.settings.mail.file_dir.clone();
        let eml = poll("a delivered .eml", Duration::from_secs(30), || {
            let dir = dir.clone();
            async move {
                std::fs::read_dir(&dir)
                    .ok()?
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .find(|p| p.extension().is_some_and(|x| x == "eml"))
            }
        })
        .await;
        let text = std::fs::read_to_string(&eml).expect("read the .eml");
        assert!(text.contains("vera@example.org"), "{backend:?}: {text}");
        app.finish().await;
        sim.shutdown().await;
    }
}
