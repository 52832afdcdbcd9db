//! Harness for tests with several Graph integrations in one account: each [`Pull`] is its own
//! Graph simulator (a small tenant of directly assigned users) and a Graph integration of the
//! [`TestApp`]'s account pointed at it.

#![allow(dead_code)]

use std::sync::Arc;

use essentry_sync::domain::{Clock, DeletionThreshold, UserName, UserRecord};
use essentry_sync::entra::simulator::{SimUser, Simulator, Tenant};
use essentry_sync::integrations::{self, GraphIntegration, GraphSettings};
use essentry_sync::secrets::{Secret, SecretKey};
use essentry_sync::sync::cycle::{CycleOptions, CycleReport, SyncEnv, Trigger, run_cycle};

use crate::support::TestApp;
use crate::sync_graph_support::sync_settings;

const SECRET: &str = "pull-test-secret";

/// One Graph integration and the tenant it reads.
pub struct Pull {
    pub name: String,
    pub sim: Simulator,
    pub integ: GraphIntegration,
}

/// A tenant whose `users` (UPNs) are all assigned directly; returns it with their object ids.
pub fn tenant(users: &[String]) -> (Tenant, Vec<String>) {
    let mut t = Tenant::new(
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
        SECRET,
    );
    let mut ids = Vec::new();
    for (i, upn) in users.iter().enumerate() {
        let id = t.add_user(SimUser::new(upn).named(&format!("Given{i}"), "Tester"));
        assert!(t.assign(&id));
        ids.push(id);
    }
    (t, ids)
}

/// The environment cycles run in (the app's store and pinned clock).
pub fn env(app: &TestApp) -> SyncEnv {
    let clock: Arc<dyn Clock> = app.clock.clone();
    SyncEnv {
        store: app.store().clone(),
        clock,
        settings: sync_settings(),
    }
}

/// Creates Graph integration `name` of the app's account for a simulator serving `tenant`.
pub async fn add_pull(
    app: &TestApp,
    name: &str,
    tenant: Tenant,
    threshold: DeletionThreshold,
) -> Pull {
    let settings_tenant = (
        tenant.tenant_id.clone(),
        tenant.client_id.clone(),
        tenant.service_principal_id.clone(),
    );
    let sim = Simulator::start(tenant).await.expect("simulator starts");
    let settings = GraphSettings {
        graph_url: Some(sim.graph_url()),
        authority_url: Some(sim.authority_url()),
        threshold,
        ..GraphSettings::new(settings_tenant.0, settings_tenant.1, settings_tenant.2)
    };
    let key = SecretKey::load_or_create(&app.dir().join("secret.key")).expect("key");
    integrations::create_graph(
        app.store(),
        &key,
        &app.account,
        "default",
        name,
        &settings,
        &Secret::new(SECRET.to_owned()),
        app.clock.now(),
    )
    .await
    .expect("create the Graph integration");
    let row = integrations::find(app.store(), &app.account, "default", name)
        .await
        .expect("find it");
    let integ = GraphIntegration::open(row, &key).expect("open it");
    Pull {
        name: name.to_owned(),
        sim,
        integ,
    }
}

impl Pull {
    pub async fn run(&self, app: &TestApp, allow_deletes: bool) -> CycleReport {
        run_cycle(
            &env(app),
            &self.integ,
            CycleOptions {
                trigger: Trigger::Manual,
                dry_run: false,
                allow_deletes,
                full: false,
            },
        )
        .await
        .expect("the cycle is recorded")
    }

    pub async fn cycle(&self, app: &TestApp) -> CycleReport {
        self.run(app, false).await
    }

    pub async fn finish(self) {
        self.sim.shutdown().await;
    }
}

pub async fn user(app: &TestApp, user_name: &str) -> Option<UserRecord> {
    app.store()
        .user_by_name(&app.account, &UserName::parse(user_name).expect("email"))
        .await
        .expect("user by name")
}

pub async fn users(app: &TestApp) -> Vec<UserRecord> {
    app.store()
        .list_users(&app.account, None, 0, 100_000, false)
        .await
        .expect("list users")
        .0
}

/// How many appointments of the account are cancelled, and how many emails are queued.
pub async fn cancellations(app: &TestApp) -> (usize, usize) {
    let appointments = app
        .store()
        .list_appointments(&app.account)
        .await
        .expect("appointments");
    let outbox = app.store().list_outbox(&app.account).await.expect("outbox");
    (
        appointments
            .iter()
            .filter(|a| a.status == essentry_sync::domain::AppointmentStatus::Cancelled)
            .count(),
        outbox.len(),
    )
}
