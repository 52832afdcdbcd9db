//! The plan executor on both backends: a planned cycle applied through the directory
//! operations, a second plan against the result is a no-op, and an unassigned host is
//! deprovisioned with the same side effects as a SCIM deactivation.

use essentry_sync::domain::directory::OpContext;
use essentry_sync::domain::entra::Snapshot;
use essentry_sync::domain::entra::{Assignment, EntraUser};
use essentry_sync::domain::{AccountId, EntraObjectId, Source};
use essentry_sync::domain::{DeletionThreshold, IntegrationId};
use essentry_sync::store::IntegrationRow;
use essentry_sync::sync::apply::{Mode, apply};
use essentry_sync::sync::plan::{Policy, plan};

use crate::support::TestApp;

fn entra(id: &str, upn: &str, given: &str) -> EntraUser {
    EntraUser {
        object_id: EntraObjectId::parse(id).unwrap(),
        user_principal_name: Some(upn.to_owned()),
        mail: None,
        given_name: Some(given.to_owned()),
        surname: Some("Tester".to_owned()),
        display_name: Some(format!("{given} Tester")),
        mail_nickname: Some(given.to_lowercase()),
        account_enabled: Some(true),
        assigned_via: vec![Assignment::Direct],
    }
}

/// A Graph integration row of the account (the users it creates are managed by it).
async fn graph_integration(app: &TestApp, account: &AccountId) -> IntegrationId {
    let row = IntegrationRow {
        id: IntegrationId::generate(),
        account_id: account.clone(),
        account_name: "default".to_owned(),
        name: "graph".to_owned(),
        kind: essentry_sync::domain::IntegrationKind::Graph,
        token_hash: None,
        token_hint: None,
        secret_sealed: None,
        settings: serde_json::json!({}),
        created_at: crate::support::t0(),
    };
    let mut tx = app.store().begin().await.unwrap();
    tx.insert_integration(&row).await.unwrap();
    tx.commit().await.unwrap();
    row.id
}

const ANN: &str = "0b6a3f39-1f5e-4f0e-9a51-6f0c9f2d3a01";
const BOB: &str = "0b6a3f39-1f5e-4f0e-9a51-6f0c9f2d3a02";

backend_test! {
    async fn a_planned_cycle_applies_once_and_then_is_a_noop(backend) {
        let app = TestApp::spawn(backend).await;
        let integration = graph_integration(&app, &app.account).await;
        let ctx = OpContext {
            account: app.account.clone(),
            source: Source::Graph,
            integration_id: Some(integration.clone()),
            cycle_id: Some("cycle-1".to_owned()),
            now: crate::support::t0(),
        };
        let policy = Policy::new(
            integration,
            "graph",
            Default::default(),
            DeletionThreshold {
                max_count: None,
                max_percent: None,
            },
        );
        let current = app
            .store()
            .list_users(&app.account, None, 0, 1000, false)
            .await
            .unwrap()
            .0;
        let snapshot = Snapshot::complete(vec![
            entra(ANN, "ann@contoso.com", "Ann"),
            entra(BOB, "bob@contoso.com", "Bob"),
        ]);
        let first = plan(&snapshot, &current, &policy);
        assert_eq!(first.creates.len(), 2, "{backend:?}");
        let report = apply(app.store(), &ctx, &first, Mode::Commit, &Default::default())
            .await
            .unwrap();
        assert_eq!(report.created, 2);

        let current = app
            .store()
            .list_users(&app.account, None, 0, 1000, false)
            .await
            .unwrap()
            .0;
        assert!(
            plan(&snapshot, &current, &policy).is_noop(),
            "{backend:?}: a second cycle writes nothing"
        );

        // Bob hosts an appointment, then is unassigned: deprovisioned like a SCIM deactivation.
        app.add_appointment(
            "bob@contoso.com",
            "Demo",
            48,
            &[("Gina", "gina@example.org")],
        )
        .await;
        let snapshot = Snapshot::complete(vec![entra(ANN, "ann@contoso.com", "Ann")]);
        let second = plan(&snapshot, &current, &policy);
        assert_eq!(second.deprovisions.len(), 1, "{backend:?}");
        let report = apply(
            app.store(),
            &ctx,
            &second,
            Mode::Commit,
            &Default::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            (
                report.deprovisioned,
                report.appointments_cancelled,
                report.emails_queued
            ),
            (1, 1, 1)
        );
        let outbox = app.store().list_outbox(&app.account).await.unwrap();
        assert_eq!(outbox[0].recipient_email, "gina@example.org");
        let users = app
            .store()
            .list_users(&app.account, None, 0, 1000, true)
            .await
            .unwrap();
        assert_eq!(users.1, Some(1));
        app.finish().await;
    }
}
