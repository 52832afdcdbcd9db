//! Incremental cycles from Graph's delta links against the simulator, on both backends: a quiet
//! cycle, renames, disables, soft deletes and restores (users/delta), group adds and removes,
//! unassignments and newly assigned groups (groups/delta and the assignments), a rejected delta
//! link (410), a truncated delta page, a settings change, the full-reconcile schedule and
//! `--full`. After each incremental change a full reconcile finds nothing left to do: the
//! directory equals what a full cycle makes of the same tenant. And the store's replacement of
//! the scope rows by a full read's, which writes only the rows that differ.

use std::collections::BTreeMap;

use chrono::TimeDelta;
use essentry_sync::entra::simulator::DeltaExpiry;
use essentry_sync::sync::cycle::{CycleOptions, CycleReport, Outcome, Trigger, run_cycle};
use essentry_sync::sync::delta::{FullReason, ReadMode};
use essentry_sync::sync::mapping::UserNameSource;

use crate::sync_graph_support::{World, no_threshold};

/// Every stored user: userName → (id, given name, family name, Entra object id).
async fn directory(w: &World) -> BTreeMap<String, (String, Option<String>, Option<String>)> {
    w.users()
        .await
        .into_iter()
        .map(|u| {
            (
                u.attrs.user_name.key().to_owned(),
                (
                    u.id.to_string(),
                    u.attrs.given_name.clone(),
                    u.attrs.entra_object_id.map(|o| o.to_string()),
                ),
            )
        })
        .collect()
}

fn ok(r: CycleReport, what: &str) -> CycleReport {
    assert_eq!(
        r.outcome,
        Outcome::Success,
        "{what}: {:?} {:?}",
        r.error,
        r.threshold_hit
    );
    r
}

fn incremental(r: CycleReport, what: &str) -> CycleReport {
    let r = ok(r, what);
    assert_eq!(
        r.mode,
        Some(ReadMode::Incremental),
        "{what}: {:?}",
        r.full_reason
    );
    r
}

/// The planned changes other than skips, as (action, userName).
fn writes(r: &CycleReport) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = r
        .changes
        .iter()
        .filter(|c| c.action != "skip")
        .map(|c| (c.action.to_owned(), c.user_name.to_ascii_lowercase()))
        .collect();
    out.sort();
    out
}

/// A full reconcile after an incremental cycle finds nothing to create, update or delete, and
/// leaves every user as it was.
async fn full_agrees(w: &World, what: &str) {
    let before = directory(w).await;
    w.advance_minutes(5);
    let full = ok(w.full_cycle().await, what);
    assert_eq!(full.full_reason, Some(FullReason::Requested));
    assert_eq!(writes(&full), Vec::<(String, String)>::new(), "{what}");
    assert_eq!(directory(w).await, before, "{what}");
}

async fn world(backend: crate::support::Backend) -> World {
    let w = World::with(backend, |s| s.threshold = no_threshold()).await;
    let first = ok(w.cycle().await, "first");
    assert_eq!(
        (first.mode, first.full_reason),
        (Some(ReadMode::Full), Some(FullReason::First))
    );
    w
}

backend_test! {
    async fn a_quiet_incremental_cycle_costs_a_few_requests_and_writes_nothing(backend) {
        let w = World::with(backend, |s| s.threshold = no_threshold()).await;
        let first = ok(w.cycle().await, "first");
        let before = directory(&w).await;
        let log_rows = w.log().await.len();
        w.advance_minutes(5);
        let quiet = incremental(w.cycle().await, "quiet");
        assert!(quiet.changes.is_empty(), "{backend:?}: {:#?}", quiet.changes);
        // The assignments (one page), users/delta and the one groups/delta query: no user or
        // member listing, no getByIds.
        assert_eq!(quiet.graph.requests, 3, "{backend:?}");
        assert!(first.graph.requests > quiet.graph.requests);
        let applied = quiet.applied.as_ref().expect("applied");
        assert_eq!((applied.created, applied.updated, applied.deprovisioned), (0, 0, 0));
        assert_eq!(directory(&w).await, before);
        assert_eq!(w.log().await.len(), log_rows, "{backend:?}: no log rows");
        let read = quiet.read.as_ref().expect("read summary");
        assert_eq!(read.users_in_scope, 15, "{backend:?}: the whole scope, counted");
        let cycles = w.cycles().await;
        assert_eq!(cycles[0].mode.as_deref(), Some("incremental"));
        assert_eq!(cycles[0].full_reason, None);
        assert_eq!(cycles[1].full_reason.as_deref(), Some("first"));
        w.finish().await;
    }
}

backend_test! {
    async fn renames_disables_soft_deletes_and_restores_come_through_users_delta(backend) {
        let w = world(backend).await;
        let before = directory(&w).await;
        let adele = w.oid("adele.vance@contoso.com");
        let alex = w.oid("alex.wilber@contoso.com");
        let joni = w.oid("joni.sherman@contoso.com");
        let nestor = w.oid("nestor.wilke@contoso.com");
        w.sim.with_tenant(|t| {
            assert!(t.update_user(&adele, |u| {
                u.user_principal_name = "adele.smith@contoso.com".to_owned();
                u.mail = Some("adele.smith@contoso.com".to_owned());
                u.surname = Some("Smith".to_owned());
            }));
            assert!(t.update_user(&nestor, |u| u.given_name = Some("Nes".to_owned())));
            assert!(t.disable_user(&alex));
            assert!(t.soft_delete_user(&joni));
        });
        w.advance_minutes(5);
        let r = incremental(w.cycle().await, "changes");
        assert_eq!(
            writes(&r),
            [
                ("delete".to_owned(), "alex.wilber@contoso.com".to_owned()),
                ("delete".to_owned(), "joni.sherman@contoso.com".to_owned()),
                ("update".to_owned(), "adele.smith@contoso.com".to_owned()),
                ("update".to_owned(), "nestor.wilke@contoso.com".to_owned()),
            ],
            "{backend:?}"
        );
        let details: BTreeMap<&str, Option<&str>> = r
            .changes
            .iter()
            .filter(|c| c.action == "delete")
            .map(|c| (c.user_name.as_str(), c.detail.as_deref()))
            .collect();
        assert_eq!(details["alex.wilber@contoso.com"], Some("deactivated"));
        assert_eq!(details["joni.sherman@contoso.com"], Some("deleted"));
        let after = directory(&w).await;
        assert_eq!(
            after["adele.smith@contoso.com"].0,
            before["adele.vance@contoso.com"].0,
            "{backend:?}: renamed in place, not re-created"
        );
        assert!(!after.contains_key("adele.vance@contoso.com"));
        assert_eq!(after["nestor.wilke@contoso.com"].1.as_deref(), Some("Nes"));
        assert!(!after.contains_key("alex.wilber@contoso.com"));
        assert!(!after.contains_key("joni.sherman@contoso.com"));
        full_agrees(&w, "after users/delta changes").await;

        // Restored from the recycle bin and enabled again: back in scope.
        w.sim.with_tenant(|t| {
            assert!(t.restore_user(&joni));
            assert!(t.update_user(&alex, |u| u.account_enabled = true));
        });
        w.advance_minutes(5);
        let r = incremental(w.cycle().await, "restore");
        assert_eq!(
            writes(&r),
            [
                ("create".to_owned(), "alex.wilber@contoso.com".to_owned()),
                ("create".to_owned(), "joni.sherman@contoso.com".to_owned()),
            ],
            "{backend:?}"
        );
        full_agrees(&w, "after the restore").await;
        w.finish().await;
    }
}

backend_test! {
    async fn group_adds_removes_unassignments_and_new_groups_come_through(backend) {
        let w = world(backend).await;
        let sales = w.group("Sales");
        let engineering = w.group("Engineering");
        let platform = w.group("Platform Team");
        let isaiah = w.oid("isaiah.langer@contoso.com");
        let miriam = w.oid("miriam.graham@contoso.com");
        let pradeep = w.oid("pradeep.gupta@contoso.com");
        let lidia = w.oid("lidia.holloway@contoso.com");
        w.sim.with_tenant(|t| {
            assert!(t.remove_member(&sales, &isaiah));
            assert!(t.add_member(&sales, &miriam));
            // Still assigned directly: stays.
            assert!(t.remove_member(&engineering, &pradeep));
            assert!(t.unassign(&lidia));
        });
        w.advance_minutes(5);
        let r = incremental(w.cycle().await, "members");
        assert_eq!(
            writes(&r),
            [
                ("create".to_owned(), "miriam.graham@contoso.com".to_owned()),
                ("delete".to_owned(), "isaiah.langer@contoso.com".to_owned()),
                ("delete".to_owned(), "lidia.holloway@contoso.com".to_owned()),
            ],
            "{backend:?}"
        );
        assert!(w.user("pradeep.gupta@contoso.com").await.is_some());
        full_agrees(&w, "after membership changes").await;

        // A newly assigned group's members arrive; an unassigned group's members leave.
        w.sim.with_tenant(|t| {
            assert!(t.assign(&platform));
            assert!(t.unassign(&sales));
        });
        w.advance_minutes(5);
        let r = incremental(w.cycle().await, "assignments");
        assert_eq!(
            writes(&r),
            [
                ("create".to_owned(), "diego.siciliani@contoso.com".to_owned()),
                ("create".to_owned(), "grady.archie@contoso.com".to_owned()),
                ("delete".to_owned(), "christie.cline@contoso.com".to_owned()),
                ("delete".to_owned(), "johanna.lorenz@contoso.com".to_owned()),
                ("delete".to_owned(), "joni.sherman@contoso.com".to_owned()),
                ("delete".to_owned(), "miriam.graham@contoso.com".to_owned()),
            ],
            "{backend:?}"
        );
        full_agrees(&w, "after assignment changes").await;

        // The new group's link works: a later member change is seen incrementally.
        let patti = w.oid("patti.fernandez@contoso.com");
        w.sim.with_tenant(|t| assert!(t.add_member(&platform, &patti)));
        w.advance_minutes(5);
        let r = incremental(w.cycle().await, "new group's member");
        assert_eq!(
            writes(&r),
            [("create".to_owned(), "patti.fernandez@contoso.com".to_owned())]
        );
        w.finish().await;
    }
}

backend_test! {
    async fn a_rejected_delta_link_becomes_a_full_read_with_fresh_links(backend) {
        let w = world(backend).await;
        for expiry in [DeltaExpiry::SyncStateNotFound, DeltaExpiry::ResyncRequired] {
            let before = directory(&w).await;
            let megan = w.oid("megan.bowen@contoso.onmicrosoft.com");
            w.sim.with_tenant(|t| {
                assert!(t.update_user(&megan, |u| u.given_name = Some(format!("{expiry:?}"))))
            });
            w.sim.expire_delta_tokens(expiry);
            w.advance_minutes(5);
            let r = ok(w.cycle().await, "rejected link");
            assert_eq!(
                (r.mode, r.full_reason),
                (Some(ReadMode::Full), Some(FullReason::DeltaRejected)),
                "{backend:?} {expiry:?}"
            );
            assert!(
                r.notes.iter().any(|n| n.contains(expiry.code())),
                "{:?}",
                r.notes
            );
            assert_eq!(
                writes(&r),
                [("update".to_owned(), "megan.bowen@contoso.onmicrosoft.com".to_owned())],
                "{backend:?}: no user in scope deleted or re-created"
            );
            let after = directory(&w).await;
            assert_eq!(
                before.keys().collect::<Vec<_>>(),
                after.keys().collect::<Vec<_>>()
            );
            for (k, v) in &before {
                assert_eq!(v.0, after[k].0, "{backend:?}: {k} kept its id");
            }
            // The fresh links work.
            w.advance_minutes(5);
            let r = incremental(w.cycle().await, "after the full read");
            assert!(r.changes.is_empty(), "{:#?}", r.changes);
        }
        w.finish().await;
    }
}

backend_test! {
    async fn a_truncated_delta_page_fails_the_cycle_and_keeps_the_old_links(backend) {
        let w = world(backend).await;
        let state = w.app.store().delta_state(&w.integ.row.id).await.unwrap();
        let before = directory(&w).await;
        let adele = w.oid("adele.vance@contoso.com");
        w.sim.with_tenant(|t| {
            assert!(t.update_user(&adele, |u| u.given_name = Some("Ada".to_owned())))
        });
        // The incremental read's paged responses: assignments, then users/delta.
        w.sim.with_faults(|f| f.truncate_page = Some(2));
        w.advance_minutes(5);
        let r = w.cycle().await;
        assert_eq!(r.outcome, Outcome::Failed, "{backend:?}");
        assert_eq!(r.error.as_ref().map(|e| e.code.as_str()), Some("bad_page"));
        assert_eq!(directory(&w).await, before, "{backend:?}: nothing changed");
        assert_eq!(
            w.app.store().delta_state(&w.integ.row.id).await.unwrap(),
            state,
            "{backend:?}: the links did not advance"
        );
        // The next cycle resumes from the old position and applies the change.
        w.advance_minutes(5);
        let r = incremental(w.cycle().await, "resumed");
        assert_eq!(
            writes(&r),
            [("update".to_owned(), "adele.vance@contoso.com".to_owned())]
        );
        assert_eq!(
            w.user("adele.vance@contoso.com").await.unwrap().attrs.given_name.as_deref(),
            Some("Ada")
        );
        w.finish().await;
    }
}

backend_test! {
    async fn settings_changes_the_schedule_and_full_requests_force_a_full_read(backend) {
        let w = world(backend).await;
        // --full (and the admin API and console equivalents).
        w.advance_minutes(5);
        let r = ok(w.full_cycle().await, "--full");
        assert_eq!(r.full_reason, Some(FullReason::Requested));
        w.advance_minutes(5);
        incremental(w.cycle().await, "after --full");

        // The userName source changed: a full read under the new settings.
        let mut by_mail = w.integ.clone();
        by_mail.settings.mapping.user_name_source = UserNameSource::Mail;
        let run = |integ| {
            let env = w.env.clone();
            async move {
                run_cycle(
                    &env,
                    &integ,
                    CycleOptions {
                        trigger: Trigger::Manual,
                        dry_run: false,
                        allow_deletes: false,
                        full: false,
                    },
                )
                .await
                .expect("recorded")
            }
        };
        w.advance_minutes(5);
        let r = ok(run(by_mail.clone()).await, "settings");
        assert_eq!(r.full_reason, Some(FullReason::Settings), "{backend:?}");
        w.advance_minutes(5);
        let r = ok(run(by_mail.clone()).await, "settings again");
        assert_eq!(r.mode, Some(ReadMode::Incremental));

        // The full-reconcile schedule (every 24 h by default) comes due.
        w.app.clock.advance(TimeDelta::hours(24));
        let r = ok(run(by_mail.clone()).await, "schedule");
        assert_eq!(r.full_reason, Some(FullReason::Schedule), "{backend:?}");
        let mut hourly = by_mail.clone();
        hourly.settings.full_reconcile = Some("every 1h".to_owned());
        w.advance_minutes(30);
        assert_eq!(ok(run(hourly.clone()).await, "30m").mode, Some(ReadMode::Incremental));
        w.advance_minutes(31);
        assert_eq!(
            ok(run(hourly).await, "61m").full_reason,
            Some(FullReason::Schedule)
        );

        // A dry run follows the links but does not advance them.
        let state = w.app.store().delta_state(&w.integ.row.id).await.unwrap();
        let r = ok(w.run(true, false).await, "dry run");
        assert!(r.mode.is_some());
        assert_eq!(w.app.store().delta_state(&w.integ.row.id).await.unwrap(), state);
        w.finish().await;
    }
}

backend_test! {
    async fn transitive_integrations_always_read_in_full(backend) {
        let w = World::with(backend, |s| {
            s.threshold = no_threshold();
            s.transitive = true;
        })
        .await;
        for what in ["first", "second"] {
            w.advance_minutes(5);
            let r = ok(w.cycle().await, what);
            assert_eq!(
                (r.mode, r.full_reason),
                (Some(ReadMode::Full), Some(FullReason::Transitive)),
                "{backend:?} {what}"
            );
        }
        assert!(w.user("diego.siciliani@contoso.com").await.is_some(), "nested member");
        assert_eq!(w.app.store().delta_state(&w.integ.row.id).await.unwrap(), None);
        w.finish().await;
    }
}

backend_test! {
    async fn a_rename_into_a_taken_user_name_waits_and_lands_when_the_name_frees(backend) {
        let w = world(backend).await;
        let before = directory(&w).await;
        let adele = w.oid("adele.vance@contoso.com");
        let pradeep = w.oid("pradeep.gupta@contoso.com");
        // Adele's new UPN is the userName Pradeep (unchanged, in scope) holds.
        w.sim.with_tenant(|t| {
            assert!(t.update_user(&adele, |u| {
                u.user_principal_name = "pradeep.gupta@contoso.com".to_owned();
            }))
        });
        w.advance_minutes(5);
        let r = incremental(w.cycle().await, "conflict");
        assert_eq!(writes(&r), Vec::<(String, String)>::new(), "{backend:?}");
        assert!(
            r.changes
                .iter()
                .any(|c| c.action == "skip" && c.object_id.as_deref() == Some(adele.as_str())),
            "{backend:?}: {:#?}",
            r.changes
        );
        assert_eq!(directory(&w).await, before, "{backend:?}: Pradeep keeps his userName");
        full_agrees(&w, "after the conflict").await;

        // Pradeep moves on: Adele, skipped last time, is planned again and takes the name.
        w.sim.with_tenant(|t| {
            assert!(t.update_user(&pradeep, |u| {
                u.user_principal_name = "pradeep.g@contoso.com".to_owned();
            }))
        });
        w.advance_minutes(5);
        let r = incremental(w.cycle().await, "freed");
        assert_eq!(
            writes(&r),
            [
                ("update".to_owned(), "pradeep.g@contoso.com".to_owned()),
                ("update".to_owned(), "pradeep.gupta@contoso.com".to_owned()),
            ],
            "{backend:?}"
        );
        let after = directory(&w).await;
        assert_eq!(
            after["pradeep.gupta@contoso.com"].0,
            before["adele.vance@contoso.com"].0,
            "{backend:?}: Adele's account, renamed"
        );
        assert_eq!(
            after["pradeep.g@contoso.com"].0,
            before["pradeep.gupta@contoso.com"].0
        );
        full_agrees(&w, "after the name moved").await;
        w.finish().await;
    }
}

backend_test! {
    async fn a_full_reads_scope_rows_replace_the_stored_ones_writing_only_what_differs(backend) {
        use essentry_sync::store::delta::ScopeMember;
        let w = World::new(backend).await;
        let (store, id) = (w.app.store(), &w.integ.row.id);
        let row = |n: char, groups: &[&str]| ScopeMember {
            object_id: format!("00000000-0000-0000-0000-00000000000{n}"),
            direct: groups.is_empty(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            removed: false,
            pending: false,
        };
        let mut tx = store.begin().await.unwrap();
        tx.put_scope_members(id, &[&row('a', &[]), &row('b', &["g1"]), &row('c', &[])])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        // Sorted by object id, as a full read's rows are.
        let new = [row('a', &[]), row('b', &["g1", "g2"]), row('d', &["g2"])];
        let mut tx = store.begin().await.unwrap();
        let written = tx.replace_scope_members(id, &new).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(written, (2, 1), "{backend:?}: b and d written, c deleted, a untouched");
        let ids: Vec<String> = "abcd"
            .chars()
            .map(|n| format!("00000000-0000-0000-0000-00000000000{n}"))
            .collect();
        let mut stored = store.scope_members(id, &ids).await.unwrap();
        stored.sort_by(|x, y| x.object_id.cmp(&y.object_id));
        assert_eq!(stored, new, "{backend:?}");
        // Out of order, rows are rewritten rather than matched, to the same result.
        let mut tx = store.begin().await.unwrap();
        let reversed = [new[2].clone(), new[1].clone(), new[0].clone()];
        tx.replace_scope_members(id, &reversed).await.unwrap();
        tx.commit().await.unwrap();
        stored = store.scope_members(id, &ids).await.unwrap();
        stored.sort_by(|x, y| x.object_id.cmp(&y.object_id));
        assert_eq!(stored, new, "{backend:?}");
        let mut tx = store.begin().await.unwrap();
        assert_eq!(tx.replace_scope_members(id, &new).await.unwrap(), (0, 0));
        tx.commit().await.unwrap();
    }
}
