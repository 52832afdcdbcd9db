//! Planner tests: matching, adoption, the object-id conflict, disabled users, duplicates, renames,
//! the deletion threshold, idempotence (a second cycle is a no-op) and a 100k × 100k plan.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::*;
use crate::domain::directory::diff_attributes;
use crate::domain::{AccountId, Source};
use crate::sync::mapping::UserNameSource;

pub(super) fn oid(n: u32) -> EntraObjectId {
    EntraObjectId::from_trusted(format!("00000000-0000-0000-0000-{n:012}"))
}

pub(super) fn entra(n: u32, upn: &str) -> EntraUser {
    let local = upn.split('@').next().unwrap_or(upn);
    EntraUser {
        object_id: oid(n),
        user_principal_name: Some(upn.to_owned()),
        mail: Some(upn.to_owned()),
        given_name: Some(format!("Given{n}")),
        surname: Some(format!("Sur{n}")),
        display_name: Some(format!("User {n}")),
        mail_nickname: Some(local.to_owned()),
        account_enabled: Some(true),
        assigned_via: vec![Assignment::Direct],
    }
}

pub(super) fn disabled(e: EntraUser) -> EntraUser {
    EntraUser {
        account_enabled: Some(false),
        ..e
    }
}

/// The integration the tests plan for.
pub(super) fn integration_id() -> IntegrationId {
    IntegrationId::from_trusted("10000000-0000-0000-0000-000000000001".into())
}

pub(super) fn record(attrs: DirectoryUser) -> UserRecord {
    UserRecord {
        id: UserId::generate(),
        account_id: AccountId::from_trusted("a0000000-0000-0000-0000-000000000000".into()),
        attrs,
        source: Source::Graph,
        managed_by: Some(integration_id()),
        version: 1,
        created_at: DateTime::<Utc>::UNIX_EPOCH,
        updated_at: DateTime::<Utc>::UNIX_EPOCH,
    }
}

/// A stored user already in step with `e` (as a previous cycle left it).
pub(super) fn synced(e: &EntraUser) -> UserRecord {
    record(desired_user(e, &Mapping::default(), None).unwrap())
}

/// A stored user that remembers no object id (created by hand or pushed over SCIM).
pub(super) fn unlinked(user_name: &str) -> UserRecord {
    let resource = json!({
        "userName": user_name,
        "active": true,
        "emails": [{"type": "work", "value": user_name, "primary": true}],
    });
    let Value::Object(resource) = resource else {
        unreachable!()
    };
    let mut r = record(DirectoryUser {
        user_name: UserName::parse(user_name).unwrap(),
        given_name: None,
        family_name: None,
        display_name: None,
        external_id: None,
        active: true,
        entra_object_id: None,
        resource,
    });
    r.managed_by = None;
    r
}

pub(super) fn policy() -> Policy {
    Policy::new(
        integration_id(),
        "hr",
        Mapping::default(),
        DeletionThreshold::default(),
    )
}

pub(super) fn no_threshold() -> DeletionThreshold {
    DeletionThreshold {
        max_count: None,
        max_percent: None,
    }
}

/// Every stored user's deletion approved by an operator.
pub(super) fn approve_all(pol: Policy, stored: &[UserRecord]) -> Policy {
    Policy {
        approved: stored.iter().map(|r| r.id.clone()).collect(),
        ..pol
    }
}

fn run(users: Vec<EntraUser>, current: &[UserRecord]) -> Plan {
    plan(&Snapshot::complete(users), current, &policy())
}

/// With no threshold: in a directory this small any deprovisioning is over 10% of the managed
/// users, which the default threshold holds (tested on its own below).
fn run_approved(users: Vec<EntraUser>, current: &[UserRecord]) -> Plan {
    let approved = Policy {
        threshold: no_threshold(),
        ..policy()
    };
    plan(&Snapshot::complete(users), current, &approved)
}

/// Applies a plan the way the apply step must (deprovisions, updates in order, creates), checking
/// versions and userName uniqueness at every step as the store would.
fn apply(plan: &Plan, current: &[UserRecord]) -> Vec<UserRecord> {
    let mut users: Vec<Option<UserRecord>> = current.iter().cloned().map(Some).collect();
    let mut pos: HashMap<UserId, usize> = HashMap::new();
    let mut names: HashMap<String, UserId> = HashMap::new();
    for (i, u) in current.iter().enumerate() {
        pos.insert(u.id.clone(), i);
        names.insert(u.attrs.user_name.key().to_owned(), u.id.clone());
    }
    for d in &plan.deprovisions {
        let gone = users[pos[&d.user_id]].take().expect("deprovisioned twice");
        names.remove(gone.attrs.user_name.key());
    }
    for u in &plan.updates {
        let rec = users[pos[&u.user_id]]
            .as_mut()
            .expect("update of a deleted user");
        assert_eq!(rec.version, u.expected_version);
        let (old, new) = (rec.attrs.user_name.key(), u.desired.user_name.key());
        if old != new {
            assert!(!names.contains_key(new), "rename into taken {new}");
            names.remove(old);
            names.insert(new.to_owned(), u.user_id.clone());
        }
        rec.attrs = u.desired.clone();
        rec.managed_by = Some(integration_id());
        rec.version += 1;
    }
    for c in &plan.creates {
        assert!(c.desired.active);
        let key = c.desired.user_name.key();
        assert!(!names.contains_key(key), "create of taken {key}");
        let r = record(c.desired.clone());
        names.insert(key.to_owned(), r.id.clone());
        users.push(Some(r));
    }
    users.into_iter().flatten().collect()
}

fn only_skip(plan: &Plan) -> &PlannedSkip {
    assert_eq!(plan.skips.len(), 1, "{:#?}", plan.skips);
    &plan.skips[0]
}

#[test]
fn new_users_are_created_and_the_next_cycle_is_a_noop() {
    let users = vec![entra(2, "bob@contoso.com"), entra(1, "ann@contoso.com")];
    let p = run(users.clone(), &[]);
    assert_eq!(p.creates.len(), 2);
    assert_eq!(p.creates[0].desired.user_name.as_str(), "ann@contoso.com");
    assert_eq!(p.creates[0].desired.entra_object_id, Some(oid(1)));
    assert_eq!(p.creates[0].assigned_via, vec![Assignment::Direct]);
    assert!(
        diff_attributes(None, &p.creates[0].desired)
            .iter()
            .any(|c| c.attribute == "userName")
    );
    assert!(!p.is_noop());

    let stored = apply(&p, &[]);
    let again = run(users, &stored);
    assert!(again.is_noop(), "{again:#?}");
    assert_eq!(again.unchanged, 2);
    assert!(again.skips.is_empty() && again.staged.is_empty());
}

#[test]
fn matched_by_object_id_attribute_change_is_an_update() {
    let e = entra(1, "ann@contoso.com");
    let stored = vec![synced(&e)];
    let changed = EntraUser {
        surname: Some("Lee-Smith".into()),
        ..e
    };
    let p = run(vec![changed.clone()], &stored);
    assert_eq!(p.updates.len(), 1);
    let u = &p.updates[0];
    assert_eq!(
        (u.user_id.clone(), u.expected_version, u.adopted),
        (stored[0].id.clone(), 1, false)
    );
    assert_eq!(u.changes.len(), 1);
    assert_eq!(u.changes[0].attribute, "name.familyName");
    assert_eq!(u.changes[0].new, Some(json!("Lee-Smith")));
    assert!(run(vec![changed], &apply(&p, &stored)).is_noop());
}

#[test]
fn rename_of_a_matched_user_is_an_update_with_the_user_name_change() {
    let e = entra(1, "ann@contoso.com");
    let stored = vec![synced(&e)];
    let renamed = EntraUser {
        user_principal_name: Some("ann.lee@contoso.com".into()),
        ..e
    };
    let p = run(vec![renamed.clone()], &stored);
    assert!(p.creates.is_empty() && p.deprovisions.is_empty());
    assert_eq!(p.updates.len(), 1);
    let change = &p.updates[0].changes[0];
    assert_eq!(change.attribute, "userName");
    assert_eq!(change.old, Some(json!("ann@contoso.com")));
    assert_eq!(change.new, Some(json!("ann.lee@contoso.com")));
    assert!(run(vec![renamed], &apply(&p, &stored)).is_noop());
}

#[test]
fn unlinked_user_is_adopted_by_user_name_case_insensitively() {
    let stored = vec![unlinked("ANN@Contoso.com")];
    let e = entra(1, "ann@contoso.com");
    let p = run(vec![e.clone()], &stored);
    assert!(p.creates.is_empty());
    assert_eq!(p.updates.len(), 1);
    let u = &p.updates[0];
    assert!(u.adopted);
    assert_eq!(u.user_id, stored[0].id);
    assert_eq!(u.desired.entra_object_id, Some(oid(1)));
    // SCIM-pushed emails survive the overlay; the case of the userName follows Entra.
    assert!(u.desired.resource.contains_key("emails"));
    assert!(u.changes.iter().any(|c| c.attribute == "userName"));
    assert!(!u.changes.iter().any(|c| c.attribute == "emails"));
    assert!(run(vec![e], &apply(&p, &stored)).is_noop());
}

#[test]
fn adoption_with_nothing_else_to_change_still_records_the_object_id() {
    let e = entra(1, "ann@contoso.com");
    let mut stored = synced(&e);
    stored.attrs.entra_object_id = None;
    let p = run(vec![e], std::slice::from_ref(&stored));
    assert_eq!(p.updates.len(), 1);
    assert!(p.updates[0].adopted);
    assert!(p.updates[0].changes.is_empty());
    assert_eq!(p.unchanged, 0);
}

#[test]
fn overlay_keeps_scim_only_attributes_on_update() {
    let e = entra(1, "ann@contoso.com");
    let mut stored = synced(&e);
    let ext = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    stored
        .attrs
        .resource
        .insert("emails".into(), json!([{"value": "ann@contoso.com"}]));
    stored
        .attrs
        .resource
        .insert(ext.into(), json!({"department": "R&D"}));
    let changed = EntraUser {
        display_name: None,
        ..e
    };
    let p = run(vec![changed], std::slice::from_ref(&stored));
    let u = &p.updates[0];
    assert_eq!(
        u.desired.resource.get(ext),
        Some(&json!({"department": "R&D"}))
    );
    assert!(u.desired.resource.contains_key("emails"));
    assert!(!u.desired.resource.contains_key("displayName"));
    let attrs: Vec<&str> = u.changes.iter().map(|c| c.attribute.as_str()).collect();
    assert_eq!(attrs, ["displayName"]);
}

#[test]
fn user_name_from_mail() {
    let mut e = entra(1, "ann@contoso.onmicrosoft.com");
    e.mail = Some("ann@contoso.com".into());
    let pol = Policy {
        mapping: Mapping {
            user_name_source: UserNameSource::Mail,
        },
        ..policy()
    };
    let p = plan(&Snapshot::complete(vec![e]), &[], &pol);
    assert_eq!(p.creates[0].desired.user_name.as_str(), "ann@contoso.com");
}

#[test]
fn guest_upn_is_skipped_with_the_fix_and_a_matched_one_is_not_deprovisioned() {
    let guest = entra(1, "ann_fabrikam.com#EXT#@contoso.onmicrosoft.com");
    let p = run(vec![guest.clone()], &[]);
    let s = only_skip(&p);
    assert!(matches!(s.reason, SkipReason::NotAnEmail { .. }));
    assert_eq!(s.user_name, guest.user_principal_name);
    assert!(s.reason.to_string().contains("map userName from mail"));
    assert!(p.is_noop());

    // A linked user whose UPN became unusable stays as it is: still in scope, not deleted.
    let e = entra(2, "bob@contoso.com");
    let stored = vec![synced(&e)];
    let broken = EntraUser {
        user_principal_name: Some("bob_x.com#EXT#@contoso.onmicrosoft.com".into()),
        ..e
    };
    let p = run(vec![broken], &stored);
    assert!(p.is_noop() && p.staged.is_empty());
    assert_eq!(only_skip(&p).object_id, oid(2));
}

#[test]
fn disabled_users_are_never_created() {
    let p = run(vec![disabled(entra(1, "ann@contoso.com"))], &[]);
    assert_eq!(only_skip(&p).reason, SkipReason::Disabled);
    assert!(p.is_noop());
}

#[test]
fn disabled_matched_user_is_deactivated_and_re_enabling_creates_it_again() {
    let e = entra(1, "ann@contoso.com");
    let stored = vec![synced(&e)];
    let p = run_approved(vec![disabled(e.clone())], &stored);
    assert_eq!(p.deprovisions.len(), 1);
    let d = &p.deprovisions[0];
    assert_eq!(d.reason, DeprovisionReason::Deactivated);
    assert_eq!(
        (d.user_id.clone(), d.object_id.clone()),
        (stored[0].id.clone(), Some(oid(1)))
    );
    let stored = apply(&p, &stored);
    assert!(stored.is_empty());

    // Still disabled: nothing more to do.
    let p = run(vec![disabled(e.clone())], &stored);
    assert!(p.is_noop());
    // Re-enabled: the account was deleted, so it is created anew.
    let p = run(vec![e], &stored);
    assert_eq!(p.creates.len(), 1);
    assert_eq!(p.creates[0].object_id, oid(1));
}

#[test]
fn disabled_user_matching_an_unlinked_user_by_name_deactivates_it() {
    let stored = vec![unlinked("ann@contoso.com")];
    let p = run_approved(vec![disabled(entra(1, "ann@contoso.com"))], &stored);
    assert_eq!(p.deprovisions.len(), 1);
    assert_eq!(p.deprovisions[0].reason, DeprovisionReason::Deactivated);
    assert_eq!(p.deprovisions[0].object_id, Some(oid(1)));
}

#[test]
fn missing_account_enabled_counts_as_enabled_and_is_noted() {
    let e = EntraUser {
        account_enabled: None,
        ..entra(1, "ann@contoso.com")
    };
    let p = run(vec![e], &[]);
    assert_eq!(p.creates.len(), 1);
    assert!(p.creates[0].desired.active);
    assert_eq!(p.notes.len(), 1);
    assert!(p.notes[0].contains("accountEnabled"));
    assert!(run(vec![entra(1, "ann@contoso.com")], &[]).notes.is_empty());
}

#[test]
fn linked_users_out_of_scope_are_unassigned_and_unlinked_ones_untouched() {
    let kept = entra(1, "ann@contoso.com");
    let gone = entra(2, "bob@contoso.com");
    let stored = vec![synced(&kept), synced(&gone), unlinked("hand@contoso.com")];
    let p = plan(
        &Snapshot::complete(vec![kept]),
        &stored,
        &Policy {
            threshold: no_threshold(),
            ..policy()
        },
    );
    assert_eq!(p.deprovisions.len(), 1);
    let d = &p.deprovisions[0];
    assert_eq!(d.reason, DeprovisionReason::Unassigned);
    assert_eq!(
        (d.user_name.as_str(), d.object_id.clone()),
        ("bob@contoso.com", Some(oid(2)))
    );
    assert_eq!(p.unchanged, 1);
    assert!(p.updates.is_empty() && p.creates.is_empty() && p.skips.is_empty());

    // An empty (complete) snapshot never touches unlinked users either.
    let p = plan(
        &Snapshot::complete(vec![]),
        &[unlinked("hand@contoso.com")],
        &policy(),
    );
    assert!(p.is_noop() && p.staged.is_empty());
}

#[test]
fn duplicate_user_name_is_kept_by_the_user_matched_by_object_id() {
    let ann = entra(1, "ann@contoso.com");
    let stored = vec![synced(&ann)];
    let mut other = entra(2, "ann.other@contoso.com");
    other.mail = Some("ann@contoso.com".into());
    let mut ann_mail = ann.clone();
    ann_mail.mail = Some("ann@contoso.com".into());
    let pol = Policy {
        mapping: Mapping {
            user_name_source: UserNameSource::Mail,
        },
        ..policy()
    };
    let p = plan(&Snapshot::complete(vec![other, ann_mail]), &stored, &pol);
    assert_eq!(p.unchanged, 1);
    assert!(p.is_noop());
    let s = only_skip(&p);
    assert_eq!(s.object_id, oid(2));
    assert_eq!(s.reason, SkipReason::DuplicateUserName { other: oid(1) });
}

#[test]
fn duplicate_user_name_without_a_linked_owner_skips_both() {
    let a = entra(1, "ann@contoso.com");
    let b = EntraUser {
        user_principal_name: Some("Ann@Contoso.com".into()),
        ..entra(2, "x@contoso.com")
    };
    for stored in [vec![], vec![unlinked("ann@contoso.com")]] {
        let p = run(vec![b.clone(), a.clone()], &stored);
        assert!(p.is_noop(), "{p:#?}");
        assert_eq!(p.skips.len(), 2);
        assert_eq!(
            p.skips[0].reason,
            SkipReason::DuplicateUserName { other: oid(2) }
        );
        assert_eq!(
            p.skips[1].reason,
            SkipReason::DuplicateUserName { other: oid(1) }
        );
    }
}

// --- The object-id conflict: a stored user remembers object id A, Entra user B has its userName.

#[test]
fn recreated_account_replaces_the_old_one_when_the_old_left_the_scope() {
    let old = entra(1, "ann@contoso.com");
    let stored = vec![synced(&old)];
    let new = entra(2, "ann@contoso.com");
    let p = run_approved(vec![new.clone()], &stored);
    // Not adopted: no update touches the old user.
    assert!(p.updates.is_empty());
    assert_eq!(p.deprovisions.len(), 1);
    assert_eq!(p.deprovisions[0].user_id, stored[0].id);
    assert_eq!(p.deprovisions[0].reason, DeprovisionReason::Unassigned);
    assert_eq!(p.creates.len(), 1);
    assert_eq!(p.creates[0].object_id, oid(2));
    let stored = apply(&p, &stored);
    assert_eq!(stored[0].attrs.entra_object_id, Some(oid(2)));
    assert!(run(vec![new], &stored).is_noop());
}

#[test]
fn recreated_account_waits_while_the_old_one_keeps_the_user_name() {
    let old = entra(1, "ann@contoso.com");
    let stored = vec![synced(&old)];
    let new = entra(2, "ann@contoso.com");
    // Old still in scope with the same userName: a duplicate, the linked one keeps it.
    let p = run(vec![old.clone(), new.clone()], &stored);
    assert!(p.is_noop());
    assert_eq!(
        only_skip(&p).reason,
        SkipReason::DuplicateUserName { other: oid(1) }
    );

    // Old still in scope but unmappable (skipped): it keeps the userName, so the new one waits.
    let broken = EntraUser {
        user_principal_name: None,
        ..old
    };
    let p = run(vec![broken, new], &stored);
    assert!(p.is_noop() && p.staged.is_empty());
    let skip = p.skips.iter().find(|s| s.object_id == oid(2)).unwrap();
    assert_eq!(
        skip.reason,
        SkipReason::UserNameTaken {
            user_id: stored[0].id.clone(),
            user_name: "ann@contoso.com".into(),
            object_id: Some(oid(1)),
        }
    );
    assert!(skip.reason.to_string().contains("re-created"));
}

#[test]
fn recreated_account_is_created_when_the_old_one_is_disabled_or_renamed() {
    let old = entra(1, "ann@contoso.com");
    let stored = vec![synced(&old)];
    let new = entra(2, "ann@contoso.com");

    let p = run_approved(vec![disabled(old.clone()), new.clone()], &stored);
    assert_eq!(p.deprovisions[0].reason, DeprovisionReason::Deactivated);
    assert_eq!(p.creates.len(), 1);
    apply(&p, &stored);

    let renamed = EntraUser {
        user_principal_name: Some("ann.old@contoso.com".into()),
        ..old
    };
    let p = run(vec![renamed.clone(), new.clone()], &stored);
    assert!(p.deprovisions.is_empty());
    assert_eq!(p.updates.len(), 1);
    assert_eq!(p.updates[0].user_id, stored[0].id);
    assert_eq!(p.creates.len(), 1);
    let stored = apply(&p, &stored);
    assert!(run(vec![renamed, new], &stored).is_noop());
}

#[test]
fn recreated_account_waits_for_a_held_deletion() {
    let old = entra(1, "ann@contoso.com");
    let stored = vec![synced(&old)];
    let new = entra(2, "ann@contoso.com");
    let pol = Policy {
        threshold: DeletionThreshold {
            max_count: Some(0),
            max_percent: None,
        },
        ..policy()
    };
    let p = plan(&Snapshot::complete(vec![new.clone()]), &stored, &pol);
    assert!(p.is_noop());
    assert_eq!(p.staged.len(), 1);
    assert_eq!(
        only_skip(&p).reason,
        SkipReason::DeletionHeld {
            user_id: stored[0].id.clone(),
            user_name: "ann@contoso.com".into(),
        }
    );
    let approved = approve_all(pol, &stored);
    let p = plan(&Snapshot::complete(vec![new]), &stored, &approved);
    assert_eq!((p.deprovisions.len(), p.creates.len()), (1, 1));
    apply(&p, &stored);
}

// --- Renames that depend on each other.

#[test]
fn rename_chain_is_ordered_so_each_name_is_free_when_taken() {
    // a → b and b → c: b must move first.
    let (a, b) = (entra(1, "a@contoso.com"), entra(2, "b@contoso.com"));
    let stored = vec![synced(&a), synced(&b)];
    let a2 = EntraUser {
        user_principal_name: Some("b@contoso.com".into()),
        ..a
    };
    let b2 = EntraUser {
        user_principal_name: Some("c@contoso.com".into()),
        ..b
    };
    let p = run(vec![a2.clone(), b2.clone()], &stored);
    let order: Vec<&str> = p
        .updates
        .iter()
        .map(|u| u.desired.user_name.as_str())
        .collect();
    assert_eq!(order, ["c@contoso.com", "b@contoso.com"]);
    let stored = apply(&p, &stored);
    assert!(run(vec![a2, b2], &stored).is_noop());
}

#[test]
fn swapped_user_names_are_skipped_not_half_applied() {
    let (a, b) = (entra(1, "a@contoso.com"), entra(2, "b@contoso.com"));
    let stored = vec![synced(&a), synced(&b)];
    let a2 = EntraUser {
        user_principal_name: Some("b@contoso.com".into()),
        ..a
    };
    let b2 = EntraUser {
        user_principal_name: Some("a@contoso.com".into()),
        ..b
    };
    let p = run(vec![a2, b2], &stored);
    assert!(p.is_noop());
    assert_eq!(p.skips.len(), 2);
    assert!(
        p.skips
            .iter()
            .all(|s| matches!(s.reason, SkipReason::UserNameTaken { .. }))
    );
}

#[test]
fn rename_into_an_unlinked_users_name_is_skipped() {
    let a = entra(1, "a@contoso.com");
    let stored = vec![synced(&a), unlinked("b@contoso.com")];
    let a2 = EntraUser {
        user_principal_name: Some("b@contoso.com".into()),
        ..a
    };
    let p = run(vec![a2], &stored);
    assert!(p.is_noop());
    match &only_skip(&p).reason {
        SkipReason::UserNameTaken {
            user_id, object_id, ..
        } => {
            assert_eq!(user_id, &stored[1].id);
            assert_eq!(object_id, &None);
        }
        other => panic!("{other:?}"),
    }
}

// --- The deletion threshold.

pub(super) fn managed(n: u32) -> (Vec<EntraUser>, Vec<UserRecord>) {
    let users: Vec<EntraUser> = (1..=n)
        .map(|i| entra(i, &format!("u{i}@contoso.com")))
        .collect();
    let stored = users.iter().map(synced).collect();
    (users, stored)
}

#[test]
fn threshold_by_count_stages_every_deprovision_but_not_creates() {
    let (mut users, stored) = managed(10);
    users.truncate(7); // 3 leave the scope
    users.push(entra(99, "new@contoso.com"));
    let pol = Policy {
        threshold: DeletionThreshold {
            max_count: Some(2),
            max_percent: None,
        },
        ..policy()
    };
    let p = plan(&Snapshot::complete(users.clone()), &stored, &pol);
    assert!(p.deprovisions.is_empty());
    assert_eq!(p.staged.len(), 3);
    assert_eq!(p.creates.len(), 1);
    let why = p.threshold_hit.as_deref().unwrap();
    assert!(why.contains("deprovision 3 user(s)"), "{why}");
    assert!(why.contains("limit of 2"), "{why}");
    assert!(
        why.contains("essentry-sync deletions approve --integration hr --all"),
        "{why}"
    );
    let names: Vec<&str> = p.staged.iter().map(|d| d.user_name.as_str()).collect();
    assert_eq!(
        names,
        ["u10@contoso.com", "u8@contoso.com", "u9@contoso.com"]
    );

    // Exactly at the limit is allowed.
    let at_limit = Policy {
        threshold: DeletionThreshold {
            max_count: Some(3),
            max_percent: None,
        },
        ..pol.clone()
    };
    let p = plan(&Snapshot::complete(users.clone()), &stored, &at_limit);
    assert_eq!((p.deprovisions.len(), p.staged.len()), (3, 0));
    assert!(p.threshold_hit.is_none());

    // The operator approved.
    let approved = approve_all(pol, &stored);
    let p = plan(&Snapshot::complete(users), &stored, &approved);
    assert_eq!((p.deprovisions.len(), p.staged.len()), (3, 0));
}

#[test]
fn threshold_by_percent_of_managed_users() {
    let (users, mut stored) = managed(100);
    // Unlinked users are not managed and do not raise the base.
    stored.extend((0..50).map(|i| unlinked(&format!("hand{i}@contoso.com"))));
    let p = run(users[..90].to_vec(), &stored);
    assert_eq!(
        (p.deprovisions.len(), p.staged.len()),
        (10, 0),
        "10% is allowed"
    );
    let p = run(users[..89].to_vec(), &stored);
    assert_eq!((p.deprovisions.len(), p.staged.len()), (0, 11));
    let why = p.threshold_hit.unwrap();
    assert!(why.contains("11.0% of the 100 users"), "{why}");
    assert!(why.contains("limit of 10%"), "{why}");
}

#[test]
fn default_threshold_and_an_empty_snapshot() {
    assert_eq!(
        DeletionThreshold::default(),
        DeletionThreshold {
            max_count: Some(500),
            max_percent: Some(10.0)
        }
    );
    // A complete but empty read of a populated scope is held, not applied.
    let (_, stored) = managed(5);
    let p = run(vec![], &stored);
    assert!(p.deprovisions.is_empty());
    assert_eq!(p.staged.len(), 5);
    assert!(p.threshold_hit.is_some());
}

#[test]
fn snapshot_merges_duplicate_object_ids() {
    let mut a = entra(1, "ann@contoso.com");
    let g = Assignment::Group {
        group_id: oid(900),
        group_name: Some("Sales".into()),
    };
    let mut again = a.clone();
    again.assigned_via = vec![g.clone(), Assignment::Direct];
    let s = Snapshot::complete(vec![a.clone(), again, entra(2, "bob@contoso.com")]);
    assert_eq!(s.len(), 2);
    assert!(!s.is_empty());
    a.assigned_via.push(g);
    assert_eq!(s.users()[0], a);
}

#[test]
fn output_order_does_not_depend_on_the_snapshot_order() {
    let users: Vec<EntraUser> = (1..=20)
        .map(|i| entra(i, &format!("user{:02}@contoso.com", 21 - i)))
        .collect();
    let mut reversed = users.clone();
    reversed.reverse();
    let (p1, p2) = (run(users, &[]), run(reversed, &[]));
    assert_eq!(p1, p2);
    let names: Vec<&str> = p1
        .creates
        .iter()
        .map(|c| c.desired.user_name.as_str())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[test]
fn plans_100k_against_100k() {
    const N: u32 = 100_000;
    let stored: Vec<UserRecord> = (0..N)
        .map(|i| synced(&entra(i, &format!("user{i}@contoso.com"))))
        .collect();
    // 400 leave, 300 join, 200 change their surname, 100 are renamed; the rest are as stored.
    let users: Vec<EntraUser> = (400..N + 300)
        .map(|i| {
            let mut e = entra(i, &format!("user{i}@contoso.com"));
            if (1_000..1_200).contains(&i) {
                e.surname = Some("Changed".into());
            }
            if (2_000..2_100).contains(&i) {
                e.user_principal_name = Some(format!("renamed{i}@contoso.com"));
            }
            e
        })
        .collect();
    let p = run(users.clone(), &stored);
    assert_eq!(p.deprovisions.len(), 400);
    assert!(p.staged.is_empty());
    assert_eq!(p.creates.len(), 300);
    assert_eq!(p.updates.len(), 300);
    assert_eq!(p.unchanged, (N - 400 - 300) as usize);
    assert!(p.skips.is_empty());
    let stored = apply(&p, &stored);
    assert!(run(users, &stored).is_noop());
}

#[test]
fn a_partial_plan_counts_the_threshold_over_the_whole_scope() {
    // An incremental cycle plans 3 users of a scope of 100, one of whom left it: 1 of 100 is
    // within 10%, though it is a third of the users planned.
    let (users, stored) = managed(3);
    let partial = Snapshot::complete(users[..2].to_vec());
    let p = run(users[..2].to_vec(), &stored);
    assert_eq!(
        (p.deprovisions.len(), p.staged.len()),
        (0, 1),
        "1 of 3 is held"
    );
    let whole = Policy {
        totals: Some((100, 100)),
        ..policy()
    };
    let p = plan(&partial, &stored, &whole);
    assert_eq!(
        (p.deprovisions.len(), p.staged.len()),
        (1, 0),
        "1 of 100 is not"
    );
    assert!(p.threshold_hit.is_none());
}
