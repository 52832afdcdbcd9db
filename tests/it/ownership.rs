//! Ownership on both backends: two Graph integrations in one account never delete (or adopt)
//! each other's users; on-demand provisioning is never more destructive than a full cycle; a
//! SCIM request cannot delete or deactivate a user a Graph integration manages.

use essentry_sync::domain::DeletionThreshold;
use essentry_sync::entra::simulator::SimUser;
use essentry_sync::sync::cycle::{CycleReport, Outcome};
use reqwest::StatusCode;
use serde_json::json;

use crate::ownership_support::{add_pull, cancellations, tenant, user, users};
use crate::support::TestApp;
use crate::sync_graph_support::{INTEGRATION, World};

const ADELE: &str = "adele.vance@contoso.com";
const LIDIA: &str = "lidia.holloway@contoso.com";
const LYNNE: &str = "lynne.robbins@contoso.com";

fn planned(r: &CycleReport, action: &str) -> usize {
    r.changes.iter().filter(|c| c.action == action).count()
}

fn assert_ok(r: &CycleReport, what: &str) {
    assert_eq!(
        r.outcome,
        Outcome::Success,
        "{what}: {:?} {:?}",
        r.error,
        r.threshold_hit
    );
}

backend_test! {
    /// Scenario 1 of the issue: G1 (20 users) and G2 (2 users) in one account. G1's cycles leave
    /// G2's users (and their appointments) alone, G2 stages nothing of G1's, `--allow-deletes`
    /// on G2 deletes nobody, and a user both tenants hold is skipped by the one not managing it.
    async fn two_graph_integrations_never_delete_each_others_users(backend) {
        let app = TestApp::spawn(backend).await;
        let g1_names: Vec<String> = (0..20).map(|i| format!("g1.u{i}@one.example")).collect();
        let mut g2_names: Vec<String> = (0..2).map(|i| format!("g2.u{i}@two.example")).collect();
        let (t1, _) = tenant(&g1_names);
        let g1 = add_pull(&app, "G1", t1, DeletionThreshold::default()).await;
        assert_ok(&g1.cycle(&app).await, "G1 first cycle");
        // G2's tenant also holds one of G1's userNames (another Entra account).
        g2_names.push(g1_names[0].clone());
        let (t2, _) = tenant(&g2_names);
        let g2 = add_pull(&app, "G2", t2, DeletionThreshold::default()).await;
        let r = g2.cycle(&app).await;
        assert_ok(&r, "G2 first cycle");
        assert_eq!(planned(&r, "create"), 2, "{backend:?}: {:#?}", r.changes);
        let skip = r
            .changes
            .iter()
            .find(|c| c.action == "skip")
            .expect("the shared userName is skipped");
        assert_eq!(skip.user_name, g1_names[0]);
        assert!(
            skip.detail.as_deref().unwrap_or("").contains("\"G1\""),
            "the reason names the managing integration: {skip:?}"
        );
        for n in &g2_names[..2] {
            app.add_appointment(n, "Review", 48, &[("Gina", "gina@example.org")])
                .await;
        }

        app.clock.advance(chrono::TimeDelta::minutes(40));
        let r = g1.cycle(&app).await;
        assert_ok(&r, "G1 second cycle");
        assert_eq!(
            (planned(&r, "delete"), planned(&r, "staged_delete")),
            (0, 0),
            "{backend:?}: {:#?}",
            r.changes
        );
        for n in &g2_names[..2] {
            let u = user(&app, n).await.expect("G2's user is kept");
            assert_eq!(u.managed_by.as_ref(), Some(&g2.integ.row.id));
        }
        assert_eq!(cancellations(&app).await, (0, 0), "{backend:?}");

        let r = g2.cycle(&app).await;
        assert_ok(&r, "G2 second cycle");
        assert_eq!(
            (planned(&r, "create"), planned(&r, "delete"), planned(&r, "staged_delete")),
            (0, 0, 0),
            "{backend:?}: {:#?}",
            r.changes
        );
        let r = g2.run(&app, true).await;
        assert_ok(&r, "G2 --allow-deletes");
        assert_eq!(planned(&r, "delete"), 0);
        let all = users(&app).await;
        assert_eq!(all.len(), 22, "{backend:?}");
        let by_g1 = all
            .iter()
            .filter(|u| u.managed_by.as_ref() == Some(&g1.integ.row.id))
            .count();
        assert_eq!(by_g1, 20);
        assert_eq!(cancellations(&app).await, (0, 0), "{backend:?}");
        g1.finish().await;
        g2.finish().await;
        app.finish().await;
    }
}

backend_test! {
    /// Scenario 3 of the issue: Ann (object id 1) is renamed in Entra and a new account takes
    /// her userName. On-demand provisioning of the userName creates the new user and renames
    /// Ann, as a full cycle would: nobody is deleted, no appointment cancelled, no email queued.
    async fn on_demand_never_deletes_a_user_still_in_scope(backend) {
        let w = World::new(backend).await;
        assert_ok(&w.cycle().await, "seed");
        let old = w.user(ADELE).await.expect("Adele synced");
        w.app
            .add_appointment(ADELE, "Review", 48, &[("Gina", "gina@example.org")])
            .await;
        let old_oid = w.oid(ADELE);
        w.sim.with_tenant(|t| {
            assert!(t.update_user(&old_oid, |u| {
                u.user_principal_name = "adele.old@contoso.com".to_owned();
            }));
            let new = t.add_user(SimUser::new(ADELE).named("Adele", "New"));
            assert!(t.assign(&new));
        });
        let dry = w.run(true, false).await;
        assert_eq!(planned(&dry, "delete"), 0, "a full cycle deletes nobody");

        let r = w.on_demand(ADELE).await;
        assert!(r.succeeded(), "{backend:?}: {r:#?}");
        assert_eq!(r.action, "create", "{r:#?}");
        assert!(r.changes.iter().all(|c| c.action != "delete"), "{r:#?}");
        assert_eq!((r.appointments_cancelled, r.emails_queued), (0, 0));
        let kept = w
            .user("adele.old@contoso.com")
            .await
            .expect("old Adele is renamed, not deleted");
        assert_eq!(kept.id, old.id);
        let new = w.user(ADELE).await.expect("the new account is created");
        assert_ne!(new.id, old.id);
        assert_eq!(cancellations(&w.app).await, (0, 0), "{backend:?}");

        // The next full cycle agrees: nothing to delete or re-create.
        w.advance_minutes(40);
        let r = w.cycle().await;
        assert_ok(&r, "after on-demand");
        assert_eq!(
            (planned(&r, "create"), planned(&r, "delete")),
            (0, 0),
            "{backend:?}: {:#?}",
            r.changes
        );
        assert_eq!(w.user("adele.old@contoso.com").await.map(|u| u.id), Some(old.id));
        w.finish().await;
    }
}

backend_test! {
    /// On-demand still deletes the user asked for when it is really out of scope, and says so;
    /// it takes the integration's cycle lock.
    async fn on_demand_deletes_only_the_user_asked_for_and_takes_the_cycle_lock(backend) {
        let w = World::new(backend).await;
        assert_ok(&w.cycle().await, "seed");
        let (lidia, lynne) = (w.oid(LIDIA), w.oid(LYNNE));
        w.sim.with_tenant(|t| {
            assert!(t.unassign(&lidia));
            assert!(t.unassign(&lynne));
        });
        let r = w.on_demand(LIDIA).await;
        assert!(r.succeeded(), "{r:#?}");
        assert_eq!(r.action, "delete");
        assert!(w.user(LIDIA).await.is_none());
        assert!(w.user(LYNNE).await.is_some(), "only the user asked for");

        let lock = w
            .env
            .store
            .try_lock_cycle(&w.integ.row.id)
            .await
            .unwrap()
            .expect("lock");
        let r = w.on_demand(LYNNE).await;
        assert_eq!(r.error_code.as_deref(), Some("busy"), "{r:#?}");
        assert!(w.user(LYNNE).await.is_some());
        lock.release().await;
        w.finish().await;
    }
}

backend_test! {
    /// A SCIM DELETE, or a PATCH/PUT with active false, of a user a Graph integration manages is
    /// a 409 SCIM error naming the integration; the user is kept. SCIM's own users still go.
    async fn scim_cannot_delete_or_deactivate_a_graph_managed_user(backend) {
        let w = World::new(backend).await;
        assert_ok(&w.cycle().await, "seed");
        let id = w.user(ADELE).await.expect("synced").id.to_string();
        let path = format!("/Users/{id}");
        let patch = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": false}],
        });
        let put = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": ADELE,
            "active": false,
        });
        for reply in [
            w.app.delete(&path).await,
            w.app.patch(&path, &patch).await,
            w.app.put(&path, &put).await,
        ] {
            assert_eq!(reply.status, StatusCode::CONFLICT, "{backend:?}: {:?}", reply.body);
            assert_eq!(
                reply.body["schemas"][0],
                "urn:ietf:params:scim:api:messages:2.0:Error"
            );
            assert_eq!(reply.body["status"], "409");
            let detail = reply.body["detail"].as_str().unwrap_or_default();
            assert!(detail.contains(&format!("\"{INTEGRATION}\"")), "{detail}");
        }
        assert!(w.user(ADELE).await.is_some(), "{backend:?}: kept");
        // A user SCIM created is SCIM's to delete.
        let own = w.app.create_user("pushed@contoso.com", "Pu", "Shed").await;
        let reply = w.app.delete(&format!("/Users/{own}")).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
        w.finish().await;
    }
}
