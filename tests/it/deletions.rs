//! The deletion review on both backends: `sync --allow-deletes` approves what is still staged
//! (not a fresh read), staged deletions expire and are staged again, and `deletions
//! list/approve/reject` from the command line and the admin API.

use std::process::Output;

use chrono::TimeDelta;
use essentry_sync::domain::{DeletionThreshold, StagedReason};
use essentry_sync::sync::cycle::{CycleReport, Outcome};
use essentry_sync::sync::deletions::{self, Selection};
use serde_json::{Value, json};

use crate::ownership_support::{add_pull, cancellations, env, tenant, user};
use crate::proc_support::BIN;
use crate::support::TestApp;
use crate::sync_graph_support::{INTEGRATION, World};

const LIDIA: &str = "lidia.holloway@contoso.com";
const LYNNE: &str = "lynne.robbins@contoso.com";
const ADELE: &str = "adele.vance@contoso.com";

/// Every deletion held for review.
fn hold_all() -> DeletionThreshold {
    DeletionThreshold {
        max_count: Some(0),
        max_percent: None,
    }
}

fn staged(r: &CycleReport) -> Vec<&str> {
    let mut v: Vec<&str> = r
        .changes
        .iter()
        .filter(|c| c.action == "staged_delete")
        .map(|c| c.user_name.as_str())
        .collect();
    v.sort_unstable();
    v
}

fn deleted(r: &CycleReport) -> usize {
    r.changes.iter().filter(|c| c.action == "delete").count()
}

backend_test! {
    /// Scenario 2 of the issue: u0 is staged and reviewed; then u0 is back in scope and u1
    /// falls out. `sync --allow-deletes` deletes neither: u0's staged deletion was withdrawn by
    /// the read, u1's is new and staged for review. Approving u1 then deletes exactly u1.
    async fn allow_deletes_approves_what_is_staged_not_a_fresh_read(backend) {
        let app = TestApp::spawn(backend).await;
        let names: Vec<String> = (0..5).map(|i| format!("u{i}@one.example")).collect();
        let (t, ids) = tenant(&names);
        let p = add_pull(&app, "P", t, hold_all()).await;
        assert_eq!(p.cycle(&app).await.outcome, Outcome::Success);
        app.add_appointment(&names[0], "Review", 48, &[("Gina", "gina@example.org")])
            .await;
        app.add_appointment(&names[1], "Plan", 24, &[("Hal", "hal@example.org")])
            .await;
        p.sim.with_tenant(|t| assert!(t.unassign(&ids[0])));
        app.clock.advance(TimeDelta::minutes(40));
        let r = p.cycle(&app).await;
        assert_eq!(r.outcome, Outcome::Held);
        assert_eq!(staged(&r), [names[0].as_str()]);
        let rows = app.store().list_staged(&app.account, None).await.unwrap();
        assert_eq!(rows.len(), 1, "{backend:?}");
        assert_eq!(
            (rows[0].reason, rows[0].appointments, rows[0].guests),
            (StagedReason::Unassigned, 1, 1)
        );

        p.sim.with_tenant(|t| {
            assert!(t.assign(&ids[0]));
            assert!(t.unassign(&ids[1]));
        });
        app.clock.advance(TimeDelta::minutes(40));
        let r = p.run(&app, true).await;
        assert_eq!(deleted(&r), 0, "{backend:?}: {:#?}", r.changes);
        assert_eq!(staged(&r), [names[1].as_str()]);
        assert!(user(&app, &names[0]).await.is_some());
        assert!(user(&app, &names[1]).await.is_some());
        assert_eq!(cancellations(&app).await, (0, 0), "{backend:?}");
        let rows = app.store().list_staged(&app.account, None).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.user_name.as_str()).collect::<Vec<_>>(), [names[1].as_str()]);

        // u0 again: back in scope, so approving it deletes nothing.
        let row = &p.integ.row;
        let report = deletions::approve(&env(&app), row, &Selection::Users(vec![names[0].clone()]))
            .await
            .unwrap();
        assert!(report.deleted.is_empty());
        assert_eq!(report.not_deleted.len(), 1);
        // The reviewed u1 is deleted, with its appointment and the guest's email.
        let report = deletions::approve(&env(&app), row, &Selection::Users(vec![names[1].to_uppercase()]))
            .await
            .unwrap();
        assert_eq!(report.deleted.len(), 1, "{backend:?}: {report:?}");
        assert_eq!(report.deleted[0].appointments_cancelled, 1);
        assert!(user(&app, &names[1]).await.is_none());
        assert!(user(&app, &names[0]).await.is_some());
        assert_eq!(cancellations(&app).await, (1, 1));
        p.finish().await;
        app.finish().await;
    }
}

backend_test! {
    /// A staged deletion says why (an account deleted in Entra is told from an unassigned one);
    /// it expires after `sync.staged_deletion_expiry_days`, is then not approvable, and the next
    /// cycle that still finds it due stages it again.
    async fn staged_deletions_expire_and_are_staged_again(backend) {
        let app = TestApp::spawn(backend).await;
        let names: Vec<String> = (0..3).map(|i| format!("u{i}@one.example")).collect();
        let (t, ids) = tenant(&names);
        let p = add_pull(&app, "P", t, hold_all()).await;
        p.cycle(&app).await;
        p.sim.with_tenant(|t| {
            assert!(t.unassign(&ids[2]));
            assert!(t.remove_user(&ids[1]).is_some());
        });
        let r = p.cycle(&app).await;
        assert_eq!(r.outcome, Outcome::Held);
        let first = app.store().list_staged(&app.account, None).await.unwrap();
        let reasons: Vec<(&str, StagedReason)> = first
            .iter()
            .map(|r| (r.user_name.as_str(), r.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                (names[1].as_str(), StagedReason::DeletedInEntra),
                (names[2].as_str(), StagedReason::Unassigned)
            ],
            "{backend:?}"
        );
        assert_eq!(first[0].expires_at - first[0].staged_at, TimeDelta::days(7));

        app.clock.advance(TimeDelta::days(8));
        let report = deletions::approve(&env(&app), &p.integ.row, &Selection::All)
            .await
            .unwrap();
        assert!(report.deleted.is_empty(), "{backend:?}: expired");
        assert!(report.not_deleted[0].reason.contains("expired"), "{report:?}");
        assert!(user(&app, &names[2]).await.is_some());

        let r = p.cycle(&app).await;
        assert_eq!(r.outcome, Outcome::Held, "{backend:?}: {:?}", r.error);
        let again = app.store().list_staged(&app.account, None).await.unwrap();
        assert_eq!(again.len(), 2);
        assert!(again[0].staged_at > first[0].staged_at, "{backend:?}: staged again");
        let report = deletions::approve(&env(&app), &p.integ.row, &Selection::All)
            .await
            .unwrap();
        assert_eq!(report.deleted.len(), 2);
        p.finish().await;
        app.finish().await;
    }
}

/// Runs the binary against the world's store.
fn cli(w: &World, args: &[&str]) -> Output {
    std::process::Command::new(BIN)
        .args(args)
        .current_dir(w.app.dir())
        .env("DATABASE_URL", w.app.database_url())
        .env_remove("RUST_LOG")
        .output()
        .expect("run essentry-sync")
}

fn cli_json(w: &World, args: &[&str]) -> Value {
    let out = cli(w, args);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON: {e}"))
}

/// A world whose Graph integration holds every deletion; Lidia (hosting an appointment) and
/// Lynne are unassigned and staged.
async fn held_world(backend: crate::support::Backend) -> World {
    let w = World::with(backend, |s| s.threshold = hold_all()).await;
    // The binary runs on the system clock: the appointment must be upcoming for it too.
    w.app.clock.set(chrono::Utc::now());
    assert_eq!(w.cycle().await.outcome, Outcome::Success);
    w.app
        .add_appointment(LIDIA, "Review", 48, &[("Gina", "gina@example.org")])
        .await;
    let (lidia, lynne) = (w.oid(LIDIA), w.oid(LYNNE));
    w.sim.with_tenant(|t| {
        assert!(t.unassign(&lidia));
        assert!(t.unassign(&lynne));
    });
    w.advance_minutes(40);
    assert_eq!(w.cycle().await.outcome, Outcome::Held);
    w
}

backend_test! {
    /// `essentry-sync deletions list/approve/reject`.
    async fn deletions_from_the_command_line(backend) {
        let w = held_world(backend).await;
        let list = cli_json(&w, &["deletions", "list", "--integration", INTEGRATION, "--json"]);
        let rows = list.as_array().expect("array");
        assert_eq!(rows.len(), 2, "{backend:?}: {list}");
        let lidia = rows.iter().find(|r| r["user_name"] == LIDIA).expect("Lidia");
        assert_eq!(lidia["reason"], "unassigned");
        assert_eq!((lidia["appointments"].as_i64(), lidia["guests"].as_i64()), (Some(1), Some(1)));
        assert_eq!(lidia["integration"], INTEGRATION);
        assert!(lidia["staged_at"].is_string() && lidia["expires_at"].is_string());
        let status = cli_json(&w, &["status", "--json"]);
        assert_eq!(status[0]["staged_deletions"], 2, "{status}");
        let text = cli(&w, &["deletions", "list"]);
        assert!(String::from_utf8_lossy(&text.stdout).contains(LYNNE));

        // Lynne is kept: not deleted, no longer managed, and later cycles leave her alone.
        let kept = cli_json(&w, &[
            "deletions", "reject", "--integration", INTEGRATION, "--user", LYNNE, "--json",
        ]);
        assert_eq!(kept["kept"], true);
        let lynne = w.user(LYNNE).await.expect("kept");
        assert_eq!(lynne.managed_by, None);
        assert!(w.log().await.iter().any(|l| l.action == "deletion_rejected"));

        let done = cli_json(&w, &[
            "deletions", "approve", "--integration", INTEGRATION, "--all", "--json",
        ]);
        assert_eq!(done["deleted"].as_array().map(Vec::len), Some(1), "{done}");
        assert_eq!(done["deleted"][0]["user_name"], LIDIA);
        assert_eq!(done["deleted"][0]["appointments_cancelled"], 1);
        assert!(w.user(LIDIA).await.is_none());
        assert_eq!(cancellations(&w.app).await, (1, 1));

        w.advance_minutes(40);
        let r = w.cycle().await;
        assert_eq!(r.outcome, Outcome::Success, "{backend:?}: {:#?}", r.changes);
        assert!(w.user(LYNNE).await.is_some());
        let missing = cli(&w, &[
            "deletions", "reject", "--integration", INTEGRATION, "--user", ADELE,
        ]);
        assert!(!missing.status.success());
        w.finish().await;
    }
}

backend_test! {
    /// The same operations under `/admin/v1`; a user back in scope by the last complete read is
    /// not deleted by an approval.
    async fn deletions_through_the_admin_api(backend) {
        let w = held_world(backend).await;
        let token = cli_json(&w, &["admin-token", "create", "--name", "ops", "--json"]);
        let token = token["token"].as_str().expect("token").to_owned();
        let base = w.app.base.replace("/scim/v2", "/admin/v1");
        let http = reqwest::Client::new();
        let get = |path: String| http.get(format!("{base}{path}")).bearer_auth(&token).send();
        let rows: Value = get(format!("/deletions?integration={INTEGRATION}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(rows.as_array().map(Vec::len), Some(2), "{backend:?}: {rows}");

        // Lidia is assigned again; the next read withdraws her staged deletion.
        let lidia = w.oid(LIDIA);
        w.sim.with_tenant(|t| assert!(t.assign(&lidia)));
        w.advance_minutes(40);
        w.cycle().await;
        let post = |path: &str, body: Value| {
            http.post(format!("{base}/integrations/{INTEGRATION}/deletions/{path}"))
                .bearer_auth(&token)
                .json(&body)
                .send()
        };
        let reply = post("approve", json!({"users": [LIDIA, LYNNE]})).await.unwrap();
        assert_eq!(reply.status(), reqwest::StatusCode::OK);
        let report: Value = reply.json().await.unwrap();
        assert_eq!(report["deleted"].as_array().map(Vec::len), Some(1), "{report}");
        assert_eq!(report["deleted"][0]["user_name"], LYNNE);
        assert_eq!(report["not_deleted"][0]["user_name"], LIDIA);
        assert!(w.user(LIDIA).await.is_some(), "{backend:?}: back in scope, kept");
        assert_eq!(cancellations(&w.app).await, (0, 0));

        // While a cycle runs, the review waits its turn.
        let lock = w
            .env
            .store
            .try_lock_cycle(&w.integ.row.id)
            .await
            .unwrap()
            .expect("lock");
        let reply = post("approve", json!({"all": true})).await.unwrap();
        assert_eq!(reply.status(), reqwest::StatusCode::CONFLICT);
        lock.release().await;
        let reply = post("reject", json!({"user": ADELE})).await.unwrap();
        assert_eq!(reply.status(), reqwest::StatusCode::NOT_FOUND);
        let reply = post("approve", json!({})).await.unwrap();
        assert_eq!(reply.status(), reqwest::StatusCode::BAD_REQUEST);
        let unauth = http
            .get(format!("{base}/deletions"))
            .send()
            .await
            .unwrap();
        assert_eq!(unauth.status(), reqwest::StatusCode::UNAUTHORIZED);
        w.finish().await;
    }
}
