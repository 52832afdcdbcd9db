//! The Graph pull sync end to end, on both backends: `run_cycle` and `provision_user` against the
//! Graph simulator over loopback HTTP (token endpoint included), with every outcome checked in
//! the store — users, appointments, outbox, provisioning log and the cycle rows.

use std::collections::BTreeMap;

use essentry_sync::domain::DeletionThreshold;
use essentry_sync::domain::{AppointmentStatus, Clock, Source};
use essentry_sync::store::LogRow;
use essentry_sync::sync::cycle::{CycleReport, Outcome, PlannedChange};
use essentry_sync::sync::delta::{FullReason, ReadMode};
use essentry_sync::sync::mapping::UserNameSource;
use essentry_sync::sync::on_demand::{OnDemandReport, StepStatus};
use reqwest::StatusCode;
use serde_json::json;

use crate::sync_graph_support::{DISABLED, IN_SCOPE, INTEGRATION, OUT_OF_SCOPE, World};

const ADELE: &str = "adele.vance@contoso.com";
const LIDIA: &str = "lidia.holloway@contoso.com";
const LYNNE: &str = "lynne.robbins@contoso.com";
const MIRIAM: &str = "miriam.graham@contoso.com";
const PRADEEP: &str = "pradeep.gupta@contoso.com";
const ALLAN: &str = "allan.deyoung@contoso.com";
const HENRIETTA: &str = "henrietta.mueller@contoso.com";

const STEPS: [&str; 5] = ["connection", "import", "scope", "match", "action"];

fn changes<'a>(r: &'a CycleReport, action: &str) -> Vec<&'a PlannedChange> {
    r.changes.iter().filter(|c| c.action == action).collect()
}

fn change<'a>(r: &'a CycleReport, action: &str, user_name: &str) -> &'a PlannedChange {
    r.changes
        .iter()
        .find(|c| c.action == action && c.user_name.eq_ignore_ascii_case(user_name))
        .unwrap_or_else(|| panic!("no planned {action} of {user_name}: {:#?}", r.changes))
}

fn rows<'a>(log: &'a [LogRow], action: &str) -> Vec<&'a LogRow> {
    log.iter().filter(|l| l.action == action).collect()
}

fn of_cycle<'a>(log: &'a [LogRow], cycle_id: &str) -> Vec<&'a LogRow> {
    log.iter()
        .filter(|l| l.cycle_id.as_deref() == Some(cycle_id))
        .collect()
}

fn step_names(r: &OnDemandReport) -> Vec<&'static str> {
    r.steps.iter().map(|s| s.step).collect()
}

fn step<'a>(r: &'a OnDemandReport, name: &str) -> &'a essentry_sync::sync::on_demand::Step {
    r.steps
        .iter()
        .find(|s| s.step == name)
        .unwrap_or_else(|| panic!("no step {name}: {:#?}", r.steps))
}

/// The report of a cycle that must have succeeded.
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

backend_test! {
    async fn first_cycle_creates_the_scope_and_a_second_cycle_writes_nothing(backend) {
        let w = World::new(backend).await;
        let r = ok(w.cycle().await, &format!("{backend:?} first cycle"));
        assert!(!r.dry_run);
        let read = r.read.as_ref().expect("read summary");
        assert_eq!(
            (
                read.assignments,
                read.direct_users,
                read.groups,
                read.users_in_scope,
                read.stored_users
            ),
            (9, 7, 2, 15, 0),
            "{backend:?}: 2 groups and 7 users assigned; 15 distinct users in scope"
        );
        let applied = r.applied.as_ref().expect("applied");
        assert_eq!(
            (
                applied.created,
                applied.updated,
                applied.deprovisioned,
                applied.skipped,
                applied.staged
            ),
            (12, 0, 0, 3, 0),
            "{backend:?}: {applied:?}"
        );
        assert!(r.graph.requests > 0);
        assert_eq!(r.graph.throttled, 0);

        // Every enabled user in scope, with the mapped attributes and the object id.
        let users = w.users().await;
        assert_eq!(users.len(), IN_SCOPE.len(), "{backend:?}");
        for (upn, given, surname) in IN_SCOPE {
            let u = w
                .user(upn)
                .await
                .unwrap_or_else(|| panic!("{backend:?}: {upn} created"));
            let a = &u.attrs;
            assert_eq!(a.user_name.as_str(), upn);
            assert_eq!(a.given_name.as_deref(), Some(given));
            assert_eq!(a.family_name.as_deref(), Some(surname));
            assert_eq!(
                a.external_id.as_deref(),
                upn.split('@').next(),
                "externalId ← mailNickname"
            );
            assert_eq!(
                a.display_name.as_deref(),
                Some(format!("{given} {surname}").as_str())
            );
            assert!(a.active);
            assert_eq!(
                a.entra_object_id.as_ref().map(|o| o.as_str().to_owned()),
                Some(w.oid(upn)),
                "{upn}: the Entra object id is remembered"
            );
            assert_eq!(u.source, Source::Graph);
            assert_eq!(u.version, 1);
            assert_eq!(a.resource["userName"], json!(upn));
            assert_eq!(a.resource["name"]["givenName"], json!(given));
            assert_eq!(a.resource["name"]["familyName"], json!(surname));
        }
        for upn in DISABLED.iter().chain(OUT_OF_SCOPE.iter()) {
            assert!(
                w.user(upn).await.is_none(),
                "{backend:?}: {upn} must not be created"
            );
        }
        // Pradeep is assigned directly and through Engineering: created once, both named.
        let pradeep: Vec<_> = changes(&r, "create")
            .into_iter()
            .filter(|c| c.user_name == PRADEEP)
            .collect();
        assert_eq!(pradeep.len(), 1);
        let detail = pradeep[0].detail.as_deref().unwrap_or_default();
        assert!(detail.contains("assigned directly"), "{detail}");
        assert!(detail.contains("through group Engineering"), "{detail}");
        assert_eq!(
            change(&r, "create", "joni.sherman@contoso.com")
                .detail
                .as_deref(),
            Some("through group Sales")
        );
        let mut skipped: Vec<&str> = changes(&r, "skip")
            .iter()
            .map(|c| c.user_name.as_str())
            .collect();
        skipped.sort_unstable();
        let mut disabled = DISABLED.to_vec();
        disabled.sort_unstable();
        assert_eq!(skipped, disabled, "disabled users are skipped, not created");

        // The provisioning log: one create per user, one skip per disabled user.
        let log = w.log().await;
        let creates = rows(&log, "create");
        assert_eq!(creates.len(), 12, "{backend:?}");
        for row in &creates {
            assert_eq!(row.status, "success");
            assert_eq!(row.source, "graph");
            assert_eq!(row.integration.as_deref(), Some(INTEGRATION));
            assert_eq!(row.cycle_id.as_deref(), Some(r.cycle_id.as_str()));
            let name = row.user_name.as_deref().expect("user name");
            assert_eq!(row.source_object_id.as_deref(), Some(w.oid(name).as_str()));
        }
        let skips = rows(&log, "skip");
        assert_eq!(skips.len(), 3);
        for row in &skips {
            assert_eq!(row.status, "skipped");
            assert_eq!(row.error_code.as_deref(), Some("disabled"));
        }
        assert_eq!(log.len(), 15, "nothing else is logged");

        let cycles = w.cycles().await;
        assert_eq!(cycles.len(), 1);
        let c = &cycles[0];
        assert_eq!(c.id, r.cycle_id);
        assert_eq!(
            (c.outcome.as_str(), c.trigger.as_str(), c.dry_run),
            ("success", "manual", false)
        );
        assert_eq!(c.integration.as_deref(), Some(INTEGRATION));
        assert!(c.graph_requests > 0);
        assert!(c.error_code.is_none());
        assert!(c.finished_at.is_some());
        assert_eq!(c.counts["planned"]["create"], json!(12));
        assert_eq!(c.counts["planned"]["skip"], json!(3));
        assert_eq!(c.counts["applied"]["created"], json!(12));

        // A second cycle with no change in Entra is incremental and plans nothing.
        let before: BTreeMap<String, (i64, chrono::DateTime<chrono::Utc>)> = users
            .iter()
            .map(|u| (u.id.to_string(), (u.version, u.updated_at)))
            .collect();
        w.advance_minutes(40);
        let quiet = ok(w.cycle().await, &format!("{backend:?} incremental cycle"));
        assert_eq!(quiet.mode, Some(ReadMode::Incremental), "{backend:?}");
        assert!(quiet.changes.is_empty(), "{:#?}", quiet.changes);
        assert!(quiet.graph.requests < r.graph.requests, "{backend:?}");
        // A full reconcile with no change in Entra writes nothing either.
        w.advance_minutes(40);
        let again = ok(w.full_cycle().await, &format!("{backend:?} full reconcile"));
        assert_eq!(again.mode, Some(ReadMode::Full));
        assert_eq!(again.full_reason, Some(FullReason::Requested));
        let applied = again.applied.as_ref().expect("applied");
        assert_eq!(
            (
                applied.created,
                applied.updated,
                applied.deprovisioned,
                applied.appointments_cancelled,
                applied.emails_queued
            ),
            (0, 0, 0, 0, 0),
            "{backend:?}: {applied:?}"
        );
        assert_eq!(applied.unchanged, 12);
        assert_eq!(
            applied.already_logged, 3,
            "the skips were logged by cycle 1"
        );
        assert!(
            again.changes.iter().all(|c| c.action == "skip"),
            "{:#?}",
            again.changes
        );
        assert_eq!(w.log().await.len(), 15, "{backend:?}: no new log rows");
        let after: BTreeMap<String, (i64, chrono::DateTime<chrono::Utc>)> = w
            .users()
            .await
            .iter()
            .map(|u| (u.id.to_string(), (u.version, u.updated_at)))
            .collect();
        assert_eq!(before, after, "{backend:?}: no user was written");
        let cycles = w.cycles().await;
        assert_eq!(cycles.len(), 3);
        assert_eq!(cycles[0].id, again.cycle_id);
        assert_eq!(cycles[0].outcome, essentry_sync::domain::CycleStatus::Success);
        let modes: Vec<(Option<&str>, Option<&str>)> = cycles
            .iter()
            .map(|c| (c.mode.as_deref(), c.full_reason.as_deref()))
            .collect();
        assert_eq!(
            modes,
            [
                (Some("full"), Some("requested")),
                (Some("incremental"), None),
                (Some("full"), Some("first")),
            ],
            "{backend:?}: the summary rows record how each cycle read"
        );
        w.finish().await;
    }
}

backend_test! {
    async fn renames_disables_unassignments_and_new_group_members_are_applied(backend) {
        let w = World::new(backend).await;
        ok(w.cycle().await, "seed");
        let upcoming = w
            .app
            .add_appointment(
                LIDIA,
                "Site visit",
                24,
                &[
                    ("Vera Visitor", "vera@example.org"),
                    ("Bob Guest", "bob@example.org"),
                ],
            )
            .await;
        let past = w
            .app
            .add_appointment(LIDIA, "Last week", -48, &[("Dora", "dora@example.net")])
            .await;

        // A rename and a new member of an assigned group.
        let adele_before = w.user(ADELE).await.expect("adele");
        let (adele, miriam, sales) = (w.oid(ADELE), w.oid(MIRIAM), w.group("Sales"));
        w.sim.with_tenant(|t| {
            assert!(t.update_user(&adele, |u| u.given_name = Some("Adeline".to_owned())));
            assert!(t.add_member(&sales, &miriam));
        });
        w.advance_minutes(40);
        let r = ok(w.cycle().await, &format!("{backend:?} rename"));
        let applied = r.applied.as_ref().expect("applied");
        assert_eq!(
            (applied.created, applied.updated, applied.deprovisioned),
            (1, 1, 0),
            "{backend:?}"
        );
        let update = change(&r, "update", ADELE);
        assert_eq!(update.detail, None, "matched by object id, not adopted");
        assert_eq!(
            serde_json::to_value(&update.changes).unwrap(),
            json!([{"attribute": "name.givenName", "old": "Adele", "new": "Adeline"}])
        );
        let create = change(&r, "create", MIRIAM);
        assert_eq!(create.detail.as_deref(), Some("through group Sales"));
        assert_eq!(create.object_id.as_deref(), Some(miriam.as_str()));

        let adele_after = w.user(ADELE).await.expect("adele");
        assert_eq!(adele_after.id, adele_before.id);
        assert_eq!(adele_after.attrs.given_name.as_deref(), Some("Adeline"));
        assert_eq!(adele_after.attrs.family_name.as_deref(), Some("Vance"));
        assert_eq!(adele_after.version, adele_before.version + 1);
        let m = w.user(MIRIAM).await.expect("miriam created");
        assert_eq!(
            m.attrs.entra_object_id.as_ref().map(|o| o.as_str()),
            Some(miriam.as_str())
        );
        assert_eq!(m.attrs.given_name.as_deref(), Some("Miriam"));
        let log = w.log().await;
        let this = of_cycle(&log, &r.cycle_id);
        assert_eq!(this.len(), 2, "{backend:?}: {this:#?}");
        let logged = rows(&log, "update");
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].user_name.as_deref(), Some(ADELE));
        assert_eq!(
            logged[0].modified,
            json!([{"attribute": "name.givenName", "old": "Adele", "new": "Adeline"}])
        );

        // Lidia, who hosts an upcoming appointment, is disabled in Entra.
        let lidia = w.oid(LIDIA);
        let lidia_id = w.user(LIDIA).await.expect("lidia").id;
        w.sim
            .with_tenant(|t| assert!(t.update_user(&lidia, |u| u.account_enabled = false)));
        w.advance_minutes(40);
        let r = ok(w.cycle().await, &format!("{backend:?} disable"));
        let applied = r.applied.as_ref().expect("applied");
        assert_eq!(
            (
                applied.deprovisioned,
                applied.appointments_cancelled,
                applied.emails_queued,
                applied.created,
                applied.updated
            ),
            (1, 1, 2, 0, 0),
            "{backend:?}"
        );
        let delete = change(&r, "delete", LIDIA);
        assert_eq!(delete.detail.as_deref(), Some("deactivated"));
        assert_eq!(delete.object_id.as_deref(), Some(lidia.as_str()));
        assert_eq!(applied.cancellations.len(), 1);
        let c = &applied.cancellations[0];
        assert_eq!(c.host, LIDIA);
        assert_eq!(c.appointment_id, upcoming.id.to_string());
        let mut guests = c.guests.clone();
        guests.sort();
        assert_eq!(guests, ["bob@example.org", "vera@example.org"]);

        assert!(
            w.user(LIDIA).await.is_none(),
            "{backend:?}: account deleted"
        );
        assert!(
            w.app
                .store()
                .user_by_id(&w.app.account, &lidia_id)
                .await
                .unwrap()
                .is_none()
        );
        let now = w.app.clock.now();
        for a in w
            .app
            .store()
            .list_appointments(&w.app.account)
            .await
            .unwrap()
        {
            if a.id == upcoming.id {
                assert_eq!(a.status, AppointmentStatus::Cancelled, "{backend:?}");
                assert_eq!(a.cancelled_at, Some(now));
                assert!(a.host_user_id.is_none());
                assert_eq!(a.host_user_name, LIDIA);
            } else if a.id == past.id {
                assert_eq!(a.status, AppointmentStatus::Scheduled, "past: untouched");
            }
        }
        let outbox = w.app.store().list_outbox(&w.app.account).await.unwrap();
        let mut recipients: Vec<&str> = outbox.iter().map(|m| m.recipient_email.as_str()).collect();
        recipients.sort_unstable();
        assert_eq!(
            recipients,
            ["bob@example.org", "vera@example.org"],
            "{backend:?}: one email per guest"
        );
        for m in &outbox {
            assert_eq!(m.kind, "appointment_cancelled");
            assert_eq!(m.status, "pending");
            assert_eq!(
                m.appointment_id.as_deref(),
                Some(upcoming.id.to_string().as_str())
            );
        }
        let log = w.log().await;
        let this = of_cycle(&log, &r.cycle_id);
        assert_eq!(this.len(), 1, "{backend:?}: {this:#?}");
        let row = this[0];
        assert_eq!(
            (
                row.action.as_str(),
                row.status.as_str(),
                row.source.as_str()
            ),
            ("delete", "success", "graph")
        );
        assert_eq!(row.user_name.as_deref(), Some(LIDIA));
        assert_eq!(row.user_id.as_deref(), Some(lidia_id.as_str()));
        assert_eq!(row.source_object_id.as_deref(), Some(lidia.as_str()));
        assert_eq!(row.integration.as_deref(), Some(INTEGRATION));

        // Lynne is unassigned.
        let lynne = w.oid(LYNNE);
        w.sim.with_tenant(|t| assert!(t.unassign(&lynne)));
        w.advance_minutes(40);
        let r = ok(w.cycle().await, &format!("{backend:?} unassign"));
        let applied = r.applied.as_ref().expect("applied");
        assert_eq!(
            (
                applied.deprovisioned,
                applied.appointments_cancelled,
                applied.emails_queued
            ),
            (1, 0, 0)
        );
        assert_eq!(
            change(&r, "delete", LYNNE).detail.as_deref(),
            Some("unassigned")
        );
        assert!(
            w.user(LYNNE).await.is_none(),
            "{backend:?}: account deleted"
        );
        let log = w.log().await;
        let this = of_cycle(&log, &r.cycle_id);
        assert_eq!(this.iter().filter(|l| l.action == "delete").count(), 1);
        assert!(
            this.iter().any(|l| l.action == "delete"
                && l.user_name.as_deref() == Some(LYNNE)
                && l.source_object_id.as_deref() == Some(lynne.as_str())),
            "{this:#?}"
        );
        // Lidia, now disabled and without an account, is a (logged once) skip.
        assert!(
            this.iter().any(|l| l.action == "skip"
                && l.source_object_id.as_deref() == Some(lidia.as_str())
                && l.error_code.as_deref() == Some("disabled")),
            "{this:#?}"
        );
        assert_eq!(
            w.app
                .store()
                .list_outbox(&w.app.account)
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(w.users().await.len(), 12 + 1 - 2);
        w.finish().await;
    }
}

/// A failed cycle changed nothing: the unassigned user is still there, nothing was logged, and
/// the cycle row says why.
pub(crate) async fn assert_failed(
    w: &World,
    r: &CycleReport,
    code: &str,
    log_rows: usize,
    what: &str,
) {
    let backend = w.backend();
    assert_eq!(r.outcome, Outcome::Failed, "{backend:?} {what}: {r:#?}");
    let error = r.error.as_ref().expect("an error");
    assert_eq!(error.code, code, "{backend:?} {what}: {}", error.message);
    assert!(
        error.message.contains("nothing was changed"),
        "{}",
        error.message
    );
    assert!(r.applied.is_none());
    assert!(
        r.changes.is_empty(),
        "nothing is planned from a partial read"
    );
    assert!(
        w.user(LYNNE).await.is_some(),
        "{backend:?} {what}: no user is deleted after a failed read"
    );
    assert_eq!(w.users().await.len(), 12);
    assert_eq!(
        w.log().await.len(),
        log_rows,
        "{backend:?} {what}: nothing logged"
    );
    let cycles = w.cycles().await;
    assert_eq!(cycles[0].id, r.cycle_id);
    assert_eq!(
        cycles[0].outcome,
        essentry_sync::domain::CycleStatus::Failed
    );
    assert_eq!(cycles[0].error_code.as_deref(), Some(code));
}

backend_test! {
    async fn failed_reads_delete_nobody_and_transient_faults_are_ridden_out(backend) {
        let w = World::new(backend).await;
        ok(w.cycle().await, "seed");
        let lynne = w.oid(LYNNE);
        w.sim.with_tenant(|t| assert!(t.unassign(&lynne)));
        let log_rows = w.log().await.len();

        // A page without `value`.
        w.sim.with_faults(|f| f.truncate_page = Some(1));
        let r = w.cycle().await;
        assert_failed(&w, &r, "bad_page", log_rows, "truncated page").await;

        // A nextLink whose skiptoken Graph refuses.
        w.sim.with_faults(|f| f.break_next_link = Some(1));
        let r = w.cycle().await;
        assert_failed(
            &w,
            &r,
            "Directory_ExpiredPageToken",
            log_rows,
            "broken nextLink",
        )
        .await;

        // Graph keeps answering 503.
        w.sim.with_faults(|f| {
            f.server_error_next = 1_000;
            f.server_error_status = 503;
            f.retry_after = "0.01".to_owned();
        });
        let errors_before = w.sim.stats().server_errors;
        let r = w.cycle().await;
        assert_failed(&w, &r, "retries_exhausted", log_rows, "persistent 503").await;
        assert!(r.graph.requests >= 6, "{:?}", r.graph);
        assert!(w.sim.stats().server_errors - errors_before >= 6);
        w.sim.with_faults(|f| f.server_error_next = 0);

        // Throttling with a fractional Retry-After: waited out, and the cycle goes through (and
        // now, on a complete read, Lynne is deprovisioned).
        w.sim.with_faults(|f| {
            f.throttle_next = 3;
            f.retry_after = "0.01".to_owned();
        });
        let started = std::time::Instant::now();
        let r = ok(w.cycle().await, &format!("{backend:?} throttled"));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(r.graph.throttled > 0, "{:?}", r.graph);
        assert_eq!(r.graph.throttled, 3, "{:?}", r.graph);
        assert!(r.graph.retries >= 3, "{:?}", r.graph);
        assert_eq!(r.applied.as_ref().unwrap().deprovisioned, 1);
        assert!(w.user(LYNNE).await.is_none(), "{backend:?}");
        assert_eq!(w.cycles().await[0].throttled, 3);

        // Every token expires: one 401, one refresh, and the cycle succeeds.
        let before = w.sim.stats();
        w.sim.with_faults(|f| f.expire_tokens = true);
        let r = ok(w.cycle().await, &format!("{backend:?} expired token"));
        let after = w.sim.stats();
        assert_eq!(after.unauthorized - before.unauthorized, 1, "{backend:?}");
        assert_eq!(r.graph.token_requests, 2, "the first token and one refresh");
        assert_eq!(after.tokens_issued - before.tokens_issued, 2);
        assert_eq!(w.users().await.len(), 11);
        w.finish().await;
    }
}

backend_test! {
    async fn the_deletion_threshold_holds_deletions_until_approved(backend) {
        let w = World::with(backend, |s| {
            s.threshold = DeletionThreshold {
                max_count: Some(1),
                max_percent: None,
            }
        })
        .await;
        ok(w.cycle().await, "seed");
        let (lidia, lynne) = (w.oid(LIDIA), w.oid(LYNNE));
        w.sim.with_tenant(|t| {
            assert!(t.unassign(&lidia));
            assert!(t.unassign(&lynne));
        });
        w.advance_minutes(40);
        let r = w.cycle().await;
        assert_eq!(r.outcome, Outcome::Held, "{backend:?}: {r:#?}");
        let hit = r.threshold_hit.as_deref().expect("threshold message");
        assert!(hit.contains("--allow-deletes"), "{hit}");
        assert!(hit.contains(INTEGRATION), "{hit}");
        let applied = r.applied.as_ref().expect("applied");
        assert_eq!((applied.deprovisioned, applied.staged), (0, 2));
        assert!(changes(&r, "delete").is_empty());
        let mut staged: Vec<&str> = changes(&r, "staged_delete")
            .iter()
            .map(|c| c.user_name.as_str())
            .collect();
        staged.sort_unstable();
        assert_eq!(staged, [LIDIA, LYNNE]);
        assert!(
            w.user(LIDIA).await.is_some(),
            "{backend:?}: held, not deleted"
        );
        assert!(
            w.user(LYNNE).await.is_some(),
            "{backend:?}: held, not deleted"
        );
        let log = w.log().await;
        let staged_rows = rows(&log, "staged_delete");
        assert_eq!(staged_rows.len(), 2, "{backend:?}");
        for row in &staged_rows {
            assert_eq!(row.status, "skipped");
            assert_eq!(row.error_code.as_deref(), Some("DeletionThresholdExceeded"));
            assert_eq!(row.cycle_id.as_deref(), Some(r.cycle_id.as_str()));
            let oid = row.source_object_id.as_deref().expect("object id");
            assert!(oid == lidia || oid == lynne, "{oid}");
        }
        assert!(rows(&log, "delete").is_empty());
        assert_eq!(w.cycles().await[0].outcome, essentry_sync::domain::CycleStatus::Held);

        // Held again: the staged rows are not logged a second time. (The cycle is incremental:
        // it plans the staged users again, not the unchanged skipped ones.)
        w.advance_minutes(40);
        let r = w.cycle().await;
        assert_eq!(r.outcome, Outcome::Held, "{backend:?}");
        assert_eq!(r.mode, Some(ReadMode::Incremental));
        assert_eq!(r.applied.as_ref().unwrap().already_logged, 2);
        assert_eq!(rows(&w.log().await, "staged_delete").len(), 2);

        // The operator approves.
        w.advance_minutes(40);
        let r = ok(w.run(false, true).await, &format!("{backend:?} approved"));
        assert_eq!(r.applied.as_ref().unwrap().deprovisioned, 2);
        assert!(w.user(LIDIA).await.is_none(), "{backend:?}");
        assert!(w.user(LYNNE).await.is_none(), "{backend:?}");
        let log = w.log().await;
        let deletes = rows(&log, "delete");
        assert_eq!(deletes.len(), 2);
        assert!(
            deletes
                .iter()
                .all(|d| d.cycle_id.as_deref() == Some(r.cycle_id.as_str()))
        );
        assert_eq!(w.cycles().await[0].outcome, essentry_sync::domain::CycleStatus::Success);
        w.finish().await;
    }
}

backend_test! {
    async fn a_dry_run_reports_the_deletion_and_its_cancellations_and_changes_nothing(backend) {
        let w = World::new(backend).await;
        ok(w.cycle().await, "seed");
        let appointment = w
            .app
            .add_appointment(
                LIDIA,
                "Board meeting",
                30,
                &[
                    ("Vera Visitor", "vera@example.org"),
                    ("Bob Guest", "bob@example.org"),
                ],
            )
            .await;
        let lidia = w.oid(LIDIA);
        w.sim.with_tenant(|t| assert!(t.unassign(&lidia)));
        let users_before: BTreeMap<String, i64> = w
            .users()
            .await
            .iter()
            .map(|u| (u.id.to_string(), u.version))
            .collect();
        let (log_before, cycles_before) = (w.log().await.len(), w.cycles().await.len());

        let r = ok(w.run(true, false).await, &format!("{backend:?} dry run"));
        assert!(r.dry_run);
        let delete = change(&r, "delete", LIDIA);
        assert_eq!(delete.detail.as_deref(), Some("unassigned"));
        let applied = r.applied.as_ref().expect("applied");
        assert_eq!(
            (
                applied.deprovisioned,
                applied.appointments_cancelled,
                applied.emails_queued
            ),
            (1, 1, 2),
            "{backend:?}"
        );
        assert_eq!(applied.cancellations.len(), 1);
        let c = &applied.cancellations[0];
        assert_eq!(c.host, LIDIA);
        assert_eq!(c.appointment_id, appointment.id.to_string());
        assert_eq!(c.title, "Board meeting");
        assert_eq!(c.starts_at, appointment.starts_at);
        let mut guests = c.guests.clone();
        guests.sort();
        assert_eq!(guests, ["bob@example.org", "vera@example.org"]);

        // Nothing changed.
        assert!(w.user(LIDIA).await.is_some(), "{backend:?}");
        let users_after: BTreeMap<String, i64> = w
            .users()
            .await
            .iter()
            .map(|u| (u.id.to_string(), u.version))
            .collect();
        assert_eq!(users_before, users_after);
        let appointments = w
            .app
            .store()
            .list_appointments(&w.app.account)
            .await
            .unwrap();
        assert_eq!(appointments.len(), 1);
        assert_eq!(appointments[0].status, AppointmentStatus::Scheduled);
        assert!(appointments[0].host_user_id.is_some());
        assert!(
            w.app
                .store()
                .list_outbox(&w.app.account)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            w.log().await.len(),
            log_before,
            "{backend:?}: nothing logged"
        );
        assert_eq!(
            w.cycles().await.len(),
            cycles_before,
            "{backend:?}: a dry run records no cycle"
        );

        // The real cycle does what the dry run said.
        let r = ok(w.cycle().await, "real");
        let applied = r.applied.as_ref().unwrap();
        assert_eq!(
            (
                applied.deprovisioned,
                applied.appointments_cancelled,
                applied.emails_queued
            ),
            (1, 1, 2)
        );
        assert!(w.user(LIDIA).await.is_none());
        assert_eq!(
            w.app
                .store()
                .list_outbox(&w.app.account)
                .await
                .unwrap()
                .len(),
            2
        );
        w.finish().await;
    }
}

backend_test! {
    async fn on_demand_provisioning_creates_updates_and_deletes_one_user(backend) {
        let w = World::new(backend).await;
        let mut runs = 0;

        // Create, by UPN.
        let r = w.on_demand(ADELE).await;
        runs += 1;
        assert!(r.succeeded(), "{backend:?}: {r:#?}");
        assert_eq!(step_names(&r), STEPS);
        let statuses: Vec<StepStatus> = r.steps.iter().map(|s| s.status).collect();
        assert_eq!(
            statuses,
            [
                StepStatus::Success,
                StepStatus::Success,
                StepStatus::Success,
                StepStatus::Skipped,
                StepStatus::Success
            ],
            "nothing to match for a new user: {:#?}",
            r.steps
        );
        assert_eq!(r.action, "create");
        assert_eq!(r.user_name.as_deref(), Some(ADELE));
        assert!(
            step(&r, "scope")
                .detail
                .contains("through group Engineering"),
            "{:?}",
            step(&r, "scope")
        );
        assert!(r.modified.iter().any(|c| c.attribute == "userName"));
        let adele = w.oid(ADELE);
        let u = w.user(ADELE).await.expect("adele created");
        assert_eq!(
            u.attrs.entra_object_id.as_ref().map(|o| o.as_str()),
            Some(adele.as_str())
        );
        let log = w.log().await;
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].action, "create");
        assert_eq!(log[0].cycle_id.as_deref(), Some(r.cycle_id.as_str()));

        // Create, by object id; assigned both ways.
        let pradeep = w.oid(PRADEEP);
        let r = w.on_demand(&pradeep).await;
        runs += 1;
        assert!(r.succeeded(), "{r:#?}");
        assert_eq!(r.action, "create");
        assert_eq!(r.user_name.as_deref(), Some(PRADEEP));
        let scope = &step(&r, "scope").detail;
        assert!(scope.contains("assigned directly"), "{scope}");
        assert!(scope.contains("through group Engineering"), "{scope}");
        assert_eq!(w.users().await.len(), 2, "only the named users");

        // Renamed in Entra: an update by object id, with the change listed.
        w.sim.with_tenant(|t| {
            assert!(t.update_user(&adele, |u| u.given_name = Some("Adeline".to_owned())))
        });
        let r = w.on_demand(&adele).await;
        runs += 1;
        assert!(r.succeeded(), "{r:#?}");
        assert_eq!(r.action, "update");
        assert_eq!(step_names(&r), STEPS);
        assert!(
            step(&r, "match").detail.contains("by Entra object id"),
            "{:?}",
            step(&r, "match")
        );
        assert_eq!(
            serde_json::to_value(&r.modified).unwrap(),
            json!([{"attribute": "name.givenName", "old": "Adele", "new": "Adeline"}])
        );
        assert_eq!(
            w.user(ADELE).await.unwrap().attrs.given_name.as_deref(),
            Some("Adeline")
        );

        // Nothing to do the second time.
        let r = w.on_demand(&adele).await;
        runs += 1;
        assert!(r.succeeded());
        assert_eq!(r.action, "none");
        assert_eq!(step(&r, "action").status, StepStatus::Skipped);

        // Unassigned: deleted.
        let lidia = w.oid(LIDIA);
        assert_eq!(w.on_demand(LIDIA).await.action, "create");
        runs += 1;
        w.sim.with_tenant(|t| assert!(t.unassign(&lidia)));
        let r = w.on_demand(LIDIA).await;
        runs += 1;
        assert!(r.succeeded(), "{r:#?}");
        assert_eq!(r.action, "delete", "{backend:?}: {:#?}", r.steps);
        assert_eq!(step(&r, "scope").status, StepStatus::Skipped);
        assert!(w.user(LIDIA).await.is_none(), "{backend:?}");

        // Not in the tenant at all: nothing to do.
        let users = w.users().await.len();
        let r = w.on_demand("nobody@contoso.com").await;
        runs += 1;
        assert!(r.succeeded(), "{r:#?}");
        assert_eq!(r.action, "none");
        assert_eq!(step_names(&r), STEPS);
        assert_eq!(step(&r, "import").status, StepStatus::Skipped);
        assert_eq!(w.users().await.len(), users);

        // Disabled in Entra and never created: skipped (and logged).
        let r = w.on_demand(HENRIETTA).await;
        runs += 1;
        assert!(r.succeeded(), "{r:#?}");
        assert_eq!(r.action, "skip");
        assert!(w.user(HENRIETTA).await.is_none());
        assert!(w.log().await.iter().any(|l| l.action == "skip"
            && l.error_code.as_deref() == Some("disabled")
            && l.cycle_id.as_deref() == Some(r.cycle_id.as_str())));

        // Disabled in Entra while holding an account (and an appointment): deleted.
        assert_eq!(w.on_demand(LYNNE).await.action, "create");
        runs += 1;
        w.app
            .add_appointment(LYNNE, "Interview", 5, &[("Gina", "gina@example.org")])
            .await;
        let lynne = w.oid(LYNNE);
        w.sim
            .with_tenant(|t| assert!(t.update_user(&lynne, |u| u.account_enabled = false)));
        let r = w.on_demand(&lynne).await;
        runs += 1;
        assert!(r.succeeded(), "{r:#?}");
        assert_eq!(r.action, "delete");
        assert_eq!((r.appointments_cancelled, r.emails_queued), (1, 1));
        assert!(w.user(LYNNE).await.is_none(), "{backend:?}");
        let log = w.log().await;
        let delete = log
            .iter()
            .find(|l| l.action == "delete" && l.user_name.as_deref() == Some(LYNNE))
            .expect("delete row");
        assert_eq!(delete.cycle_id.as_deref(), Some(r.cycle_id.as_str()));
        assert_eq!(delete.source_object_id.as_deref(), Some(lynne.as_str()));

        // Each run is recorded as an on-demand cycle.
        let cycles = w.cycles().await;
        assert_eq!(cycles.len(), runs, "{backend:?}");
        assert!(cycles.iter().all(|c| c.trigger == essentry_sync::domain::Trigger::OnDemand));
        assert!(cycles.iter().all(|c| c.outcome == essentry_sync::domain::CycleStatus::Success), "{cycles:#?}");
        assert_eq!(cycles[0].id, r.cycle_id);
        w.finish().await;
    }
}

backend_test! {
    async fn user_name_from_mail_skips_users_without_mail_and_logs_it_once(backend) {
        let w = World::with(backend, |s| {
            s.mapping.user_name_source = UserNameSource::Mail
        })
        .await;
        let r = ok(w.cycle().await, &format!("{backend:?} first"));
        let applied = r.applied.as_ref().unwrap();
        assert_eq!((applied.created, applied.skipped), (11, 4), "{backend:?}");
        // Megan's mail differs from her UPN: the mail is her userName.
        let megan = w
            .user("megan.bowen@contoso.com")
            .await
            .expect("megan by mail");
        assert_eq!(megan.attrs.user_name.as_str(), "megan.bowen@contoso.com");
        assert!(
            w.user("megan.bowen@contoso.onmicrosoft.com")
                .await
                .is_none()
        );
        assert!(
            w.user(ALLAN).await.is_none(),
            "{backend:?}: no mail, no user"
        );
        let skip = change(&r, "skip", ALLAN);
        let reason = skip.detail.as_deref().unwrap_or_default();
        assert!(reason.contains("no mail"), "{reason}");
        assert!(
            reason.contains("map userName from userPrincipalName"),
            "{reason}"
        );

        let allan = w.oid(ALLAN);
        let allan_rows = |log: &[LogRow]| -> usize {
            log.iter()
                .filter(|l| l.action == "skip" && l.source_object_id.as_deref() == Some(&allan))
                .count()
        };
        let log = w.log().await;
        assert_eq!(allan_rows(&log), 1, "{backend:?}");
        let row = log
            .iter()
            .find(|l| l.source_object_id.as_deref() == Some(allan.as_str()))
            .unwrap();
        assert_eq!(row.status, "skipped");
        assert_eq!(row.error_code.as_deref(), Some("missing_user_name"));
        assert_eq!(row.user_name.as_deref(), Some(ALLAN));
        assert!(
            row.error_message
                .as_deref()
                .unwrap_or_default()
                .contains("map userName from userPrincipalName")
        );
        let rows_after_first = log.len();

        w.advance_minutes(40);
        let r = ok(w.full_cycle().await, &format!("{backend:?} second"));
        change(&r, "skip", ALLAN);
        let applied = r.applied.as_ref().unwrap();
        assert_eq!(applied.already_logged, 4);
        assert_eq!((applied.created, applied.updated), (0, 0));
        let log = w.log().await;
        assert_eq!(
            allan_rows(&log),
            1,
            "{backend:?}: logged once across cycles"
        );
        assert_eq!(log.len(), rows_after_first);
        w.finish().await;
    }
}

backend_test! {
    async fn a_user_created_over_scim_with_the_same_user_name_is_adopted(backend) {
        let w = World::new(backend).await;
        let scim_id = w
            .app
            .create_user("Adele.Vance@contoso.com", "Adele", "Vance")
            .await;
        let r = ok(w.cycle().await, &format!("{backend:?} adopt"));
        let applied = r.applied.as_ref().unwrap();
        assert_eq!(
            (applied.created, applied.updated),
            (11, 1),
            "{backend:?}: adopted, not duplicated"
        );
        let update = change(&r, "update", ADELE);
        assert_eq!(
            update.detail.as_deref(),
            Some("adopted from EntraID (scim): matched by userName")
        );
        assert!(changes(&r, "create").iter().all(|c| c.user_name != ADELE));

        let users = w.users().await;
        assert_eq!(users.len(), 12);
        let adeles: Vec<_> = users
            .iter()
            .filter(|u| u.attrs.user_name.key() == ADELE)
            .collect();
        assert_eq!(adeles.len(), 1, "{backend:?}");
        let adele = adeles[0];
        assert_eq!(adele.id.as_str(), scim_id, "the SCIM user keeps its id");
        let oid = w.oid(ADELE);
        assert_eq!(
            adele.attrs.entra_object_id.as_ref().map(|o| o.as_str()),
            Some(oid.as_str())
        );
        assert_eq!(adele.attrs.user_name.as_str(), ADELE, "userName ← UPN");
        assert_eq!(adele.attrs.external_id.as_deref(), Some("adele.vance"));
        assert_eq!(adele.attrs.display_name.as_deref(), Some("Adele Vance"));
        let log = w.log().await;
        let updates = rows(&log, "update");
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].source_object_id.as_deref(), Some(oid.as_str()));
        assert_eq!(updates[0].user_id.as_deref(), Some(scim_id.as_str()));
        // The adoption is logged with the previous manager.
        let owner = updates[0]
            .modified
            .as_array()
            .and_then(|m| m.iter().find(|c| c["attribute"] == "managedBy"))
            .cloned()
            .expect("managedBy change logged");
        assert_eq!(owner["old"], "EntraID (scim)");
        assert_eq!(owner["new"], format!("{INTEGRATION} (graph)"));

        // Over SCIM it is the same resource.
        let reply = w.app.get(&format!("/Users/{scim_id}")).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["userName"], ADELE);
        assert_eq!(reply.body["externalId"], "adele.vance");

        // And it is linked now: the next full reconcile has nothing to do.
        w.advance_minutes(40);
        let r = ok(w.full_cycle().await, "second");
        let applied = r.applied.as_ref().unwrap();
        assert_eq!(
            (applied.created, applied.updated, applied.unchanged),
            (0, 0, 12)
        );
        w.finish().await;
    }
}

backend_test! {
    /// A cycle that writes much of the directory (here a tenant's first sync) refreshes the
    /// database's planner statistics of the tables it wrote (`ANALYZE` on PostgreSQL, counted
    /// apart from autovacuum's), so the cycles after it do not read 100,000 fresh rows with plans
    /// made for empty tables; a cycle that changes a few users leaves them to autovacuum.
    async fn a_sync_that_rewrites_much_of_the_directory_refreshes_planner_statistics(backend) {
        use essentry_sync::entra::simulator::large_tenant;
        use essentry_sync::sync::apply::STATISTICS_MIN_WRITES;
        let w = World::with_tenant(backend, large_tenant(STATISTICS_MIN_WRITES), |_| {}).await;
        let tables = ["users", "user_emails", "provisioning_log", "graph_scope"];
        for table in tables {
            let before = w.app.manual_analyzes(table).await;
            assert!(matches!(before, None | Some(0)), "{backend:?} {table}: {before:?}");
        }
        let first = ok(w.cycle().await, "first");
        assert_eq!(first.applied.as_ref().map(|a| a.created), Some(STATISTICS_MIN_WRITES));
        let expected = match backend {
            crate::support::Backend::Postgres => Some(1),
            crate::support::Backend::Sqlite => None,
        };
        for table in tables {
            assert_eq!(w.app.manual_analyzes(table).await, expected, "{backend:?} {table}");
        }

        // Ten renames of a thousand users: below the threshold.
        let renamed: Vec<String> = w.sim.with_tenant(|t| t.users().take(10).map(|u| u.id.clone()).collect());
        w.sim.with_tenant(|t| {
            for id in &renamed {
                assert!(t.update_user(id, |u| u.given_name = Some("Renamed".to_owned())));
            }
        });
        w.advance_minutes(5);
        let second = ok(w.cycle().await, "renames");
        assert_eq!(second.applied.as_ref().map(|a| a.updated), Some(10), "{backend:?}");
        for table in tables {
            assert_eq!(w.app.manual_analyzes(table).await, expected, "{backend:?} {table}");
        }
        w.finish().await;
    }
}
