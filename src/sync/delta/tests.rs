//! The pure parts of choosing and recording a cycle's read.

use super::*;
use chrono::TimeDelta;

fn state(fp: &str, full_at: DateTime<Utc>) -> DeltaState {
    DeltaState {
        users_link: "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=a".to_owned(),
        groups_links: Vec::new(),
        assignments: AssignedScope::default(),
        fingerprint: fp.to_owned(),
        full_at,
        updated_at: full_at,
    }
}

#[test]
fn full_reads_happen_for_each_reason_and_only_then() {
    let t0 = DateTime::parse_from_rfc3339("2026-11-30T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let daily = Schedule::parse("every 24h").unwrap();
    let s = state("fp", t0);
    let at = |h: i64| t0 + TimeDelta::hours(h);
    assert_eq!(
        full_reason(None, "fp", false, false, at(1), &daily),
        Some(FullReason::First)
    );
    assert_eq!(
        full_reason(Some(&s), "fp", false, false, at(1), &daily),
        None
    );
    assert_eq!(
        full_reason(Some(&s), "fp", false, true, at(1), &daily),
        Some(FullReason::Requested)
    );
    assert_eq!(
        full_reason(Some(&s), "other", false, false, at(1), &daily),
        Some(FullReason::Settings)
    );
    assert_eq!(
        full_reason(Some(&s), "fp", false, false, at(24), &daily),
        Some(FullReason::Schedule)
    );
    assert_eq!(
        full_reason(Some(&s), "fp", true, false, at(1), &daily),
        Some(FullReason::Transitive)
    );
    assert_eq!(next_full_reconcile(Some(&s), false, &daily), Some(at(24)));
    assert_eq!(next_full_reconcile(Some(&s), true, &daily), None);
}

#[test]
fn the_fingerprint_follows_the_settings_that_shape_a_read() {
    let base: GraphSettings = serde_json::from_value(serde_json::json!({
        "tenantId": "contoso.onmicrosoft.com",
        "clientId": "00000000-0000-0000-0000-000000000001",
        "servicePrincipalId": "00000000-0000-0000-0000-000000000002",
    }))
    .unwrap();
    let fp = fingerprint(&base);
    let mut other = base.clone();
    other.schedule = Some("every 5m".to_owned());
    other.threshold.max_count = Some(1);
    assert_eq!(
        fingerprint(&other),
        fp,
        "schedule and threshold do not shape a read"
    );
    other.transitive = true;
    assert_ne!(fingerprint(&other), fp);
    let mut mail = base.clone();
    mail.mapping.user_name_source = crate::sync::mapping::UserNameSource::Mail;
    assert_ne!(fingerprint(&mail), fp);
}

#[test]
fn only_skips_another_change_can_lift_are_pending() {
    let oid =
        |n: u8| EntraObjectId::parse(&format!("00000000-0000-0000-0000-0000000000{n:02}")).unwrap();
    let mut plan = Plan::default();
    plan.skips.push(crate::sync::plan::PlannedSkip {
        object_id: oid(1),
        user_name: None,
        reason: SkipReason::Disabled,
    });
    plan.skips.push(crate::sync::plan::PlannedSkip {
        object_id: oid(2),
        user_name: None,
        reason: SkipReason::DuplicateUserName { other: oid(1) },
    });
    let member = |n: u8| ScopeMember {
        object_id: oid(n).as_str().to_owned(),
        direct: true,
        groups: Vec::new(),
        removed: false,
        pending: true,
    };
    let mut write = StateWrite::Patch {
        state: state("fp", Utc::now()),
        put: vec![member(1), member(2), member(3)],
        delete: Vec::new(),
    };
    write.complete(&Snapshot::complete(Vec::new()), &plan);
    let StateWrite::Patch { put, .. } = write else {
        unreachable!()
    };
    let pending: Vec<bool> = put.iter().map(|m| m.pending).collect();
    assert_eq!(pending, vec![false, true, false]);
}
