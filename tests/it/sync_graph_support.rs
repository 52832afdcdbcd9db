//! The harness of the Graph pull-sync tests: a [`TestApp`] (real store on either backend, a SCIM
//! server on loopback) plus the Graph simulator serving the sample tenant, and a Graph
//! integration of the same account pointed at it.

#![allow(dead_code)]

use std::sync::Arc;

use chrono::TimeDelta;
use essentry_sync::config::SyncSettings;
use essentry_sync::domain::DeletionThreshold;
use essentry_sync::domain::{Clock, UserName, UserRecord};
use essentry_sync::entra::simulator::{SAMPLE_CLIENT_SECRET, Simulator, Tenant, sample_tenant};
use essentry_sync::integrations::{self, GraphIntegration, GraphSettings};
use essentry_sync::secrets::{Secret, SecretKey};
use essentry_sync::store::{CycleRow, LogQuery, LogRow};
use essentry_sync::sync::cycle::{CycleOptions, CycleReport, SyncEnv, Trigger, run_cycle};
use essentry_sync::sync::on_demand::{OnDemandReport, provision_user};

use crate::support::{Backend, TestApp};

/// The Graph integration's name in every test.
pub const INTEGRATION: &str = "graph";

/// 32 zero bytes: the tests need a key, not a secret one.
const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// The enabled users of the sample tenant in the application's scope (assigned directly or as
/// direct members of an assigned group): UPN, given name, surname.
pub const IN_SCOPE: [(&str, &str, &str); 12] = [
    ("adele.vance@contoso.com", "Adele", "Vance"),
    ("alex.wilber@contoso.com", "Alex", "Wilber"),
    ("pradeep.gupta@contoso.com", "Pradeep", "Gupta"),
    ("isaiah.langer@contoso.com", "Isaiah", "Langer"),
    ("johanna.lorenz@contoso.com", "Johanna", "Lorenz"),
    ("joni.sherman@contoso.com", "Joni", "Sherman"),
    ("christie.cline@contoso.com", "Christie", "Cline"),
    ("lidia.holloway@contoso.com", "Lidia", "Holloway"),
    ("lynne.robbins@contoso.com", "Lynne", "Robbins"),
    ("megan.bowen@contoso.onmicrosoft.com", "Megan", "Bowen"),
    ("nestor.wilke@contoso.com", "Nestor", "Wilke"),
    ("allan.deyoung@contoso.com", "Allan", "Deyoung"),
];

/// In scope but disabled: never created.
pub const DISABLED: [&str; 3] = [
    "henrietta.mueller@contoso.com",
    "lee.gu@contoso.com",
    "debra.berger@contoso.com",
];

/// Not in scope: members of the nested "Platform Team" only, and the unassigned Finance users.
pub const OUT_OF_SCOPE: [&str; 5] = [
    "diego.siciliani@contoso.com",
    "grady.archie@contoso.com",
    "miriam.graham@contoso.com",
    "patti.fernandez@contoso.com",
    "emily.braun@contoso.com",
];

/// Fast retries: the simulator's faults send `Retry-After: 0.01` and the budget is short.
pub fn sync_settings() -> SyncSettings {
    SyncSettings {
        retry_budget_wait_secs: 5,
        request_timeout_secs: 10,
        ..SyncSettings::default()
    }
}

/// No deletion threshold at all.
pub fn no_threshold() -> DeletionThreshold {
    DeletionThreshold {
        max_count: None,
        max_percent: None,
    }
}

pub struct World {
    pub app: TestApp,
    pub sim: Simulator,
    pub env: SyncEnv,
    pub integ: GraphIntegration,
}

impl World {
    pub async fn new(backend: Backend) -> Self {
        Self::with(backend, |_| {}).await
    }

    /// A world whose Graph integration settings `tweak` adjusts (mapping, threshold, ...).
    pub async fn with(backend: Backend, tweak: impl FnOnce(&mut GraphSettings)) -> Self {
        Self::with_tenant(backend, sample_tenant(), tweak).await
    }

    /// A world whose simulator serves `tenant` instead of the sample tenant.
    pub async fn with_tenant(
        backend: Backend,
        tenant: Tenant,
        tweak: impl FnOnce(&mut GraphSettings),
    ) -> Self {
        let app = TestApp::spawn(backend).await;
        let sim = Simulator::start(tenant)
            .await
            .expect("the Graph simulator starts");
        let mut settings = crate::support::sample_graph_settings(&sim);
        tweak(&mut settings);
        let key = SecretKey::from_base64(KEY).expect("key");
        let now = app.clock.now();
        integrations::create_graph(
            app.store(),
            &key,
            &app.account,
            "default",
            INTEGRATION,
            &settings,
            &Secret::new(SAMPLE_CLIENT_SECRET.to_owned()),
            now,
        )
        .await
        .expect("create the Graph integration");
        let row = integrations::find(app.store(), &app.account, "default", INTEGRATION)
            .await
            .expect("find the Graph integration");
        let integ = GraphIntegration::open(row, &key).expect("open the Graph integration");
        let clock: Arc<dyn Clock> = app.clock.clone();
        let env = SyncEnv {
            store: app.store().clone(),
            clock,
            settings: sync_settings(),
        };
        Self {
            app,
            sim,
            env,
            integ,
        }
    }

    pub fn backend(&self) -> Backend {
        self.app.backend
    }

    /// The object id of the simulated user with this UPN.
    pub fn oid(&self, upn: &str) -> String {
        self.sim.with_tenant(|t| {
            t.user_by_upn(upn)
                .unwrap_or_else(|| panic!("no {upn} in the sample tenant"))
                .id
                .clone()
        })
    }

    /// The object id of the simulated group with this display name.
    pub fn group(&self, name: &str) -> String {
        self.sim.with_tenant(|t| {
            t.groups()
                .find(|g| g.display_name == name)
                .unwrap_or_else(|| panic!("no group {name}"))
                .id
                .clone()
        })
    }

    /// One manual cycle that applies its plan.
    pub async fn cycle(&self) -> CycleReport {
        self.run(false, false).await
    }

    /// One manual full reconcile (the whole scope read, as `sync --full`).
    pub async fn full_cycle(&self) -> CycleReport {
        self.run_with(false, false, true).await
    }

    pub async fn run(&self, dry_run: bool, allow_deletes: bool) -> CycleReport {
        self.run_with(dry_run, allow_deletes, false).await
    }

    pub async fn run_with(&self, dry_run: bool, allow_deletes: bool, full: bool) -> CycleReport {
        run_cycle(
            &self.env,
            &self.integ,
            CycleOptions {
                trigger: Trigger::Manual,
                dry_run,
                allow_deletes,
                full,
            },
        )
        .await
        .expect("the cycle is recorded")
    }

    pub async fn on_demand(&self, key: &str) -> OnDemandReport {
        provision_user(&self.env, &self.integ, key, false)
            .await
            .expect("the on-demand run is recorded")
    }

    /// Every stored user.
    pub async fn users(&self) -> Vec<UserRecord> {
        self.app
            .store()
            .list_users(&self.app.account, None, 0, 10_000, false)
            .await
            .expect("list users")
            .0
    }

    pub async fn user(&self, user_name: &str) -> Option<UserRecord> {
        self.app
            .store()
            .user_by_name(
                &self.app.account,
                &UserName::parse(user_name).expect("email"),
            )
            .await
            .expect("user by name")
    }

    /// The provisioning log, newest first.
    pub async fn log(&self) -> Vec<LogRow> {
        self.app
            .store()
            .list_log(
                &self.app.account,
                &LogQuery {
                    limit: 10_000,
                    ..Default::default()
                },
            )
            .await
            .expect("list log")
    }

    /// Recorded cycles, newest first.
    pub async fn cycles(&self) -> Vec<CycleRow> {
        self.app
            .store()
            .recent_cycles(&self.app.account, Some(&self.integ.row.id), 1000)
            .await
            .expect("recent cycles")
    }

    /// Moves the pinned clock (so log rows of different cycles have different times).
    pub fn advance_minutes(&self, minutes: i64) {
        self.app.clock.advance(TimeDelta::minutes(minutes));
    }

    pub async fn finish(self) {
        self.sim.shutdown().await;
        self.app.finish().await;
    }
}
