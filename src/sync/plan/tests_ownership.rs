//! Planner tests of ownership: only this integration's users are deprovisioned, adoption of
//! unmanaged and SCIM-managed users (with the previous manager), no adoption of another Graph
//! integration's users, users an operator kept, the threshold base of a first cycle, approved
//! deletions and the on-demand restriction to one deletable user.

use super::tests::{
    approve_all, entra, integration_id, managed, no_threshold, policy, synced, unlinked,
};
use super::*;

fn other_graph() -> IntegrationId {
    IntegrationId::from_trusted("20000000-0000-0000-0000-000000000002".into())
}

fn scim() -> IntegrationId {
    IntegrationId::from_trusted("30000000-0000-0000-0000-000000000003".into())
}

/// The test policy, knowing the other Graph integration "G2" and the SCIM integration "Push".
fn with_managers() -> Policy {
    let mut p = policy();
    p.managers.insert(
        other_graph(),
        Manager {
            name: "G2".into(),
            graph: true,
        },
    );
    p.managers.insert(
        scim(),
        Manager {
            name: "Push".into(),
            graph: false,
        },
    );
    p.managers.insert(
        integration_id(),
        Manager {
            name: "hr".into(),
            graph: true,
        },
    );
    p
}

fn owned_by(mut r: UserRecord, owner: Option<IntegrationId>) -> UserRecord {
    r.managed_by = owner;
    r
}

#[test]
fn users_of_another_graph_integration_are_never_deprovisioned() {
    let mine = entra(1, "ann@contoso.com");
    let theirs = entra(2, "bob@contoso.com");
    let stored = vec![
        synced(&mine),
        owned_by(synced(&theirs), Some(other_graph())),
    ];
    let pol = Policy {
        threshold: no_threshold(),
        ..with_managers()
    };
    let p = plan(&Snapshot::complete(vec![mine]), &stored, &pol);
    assert!(p.deprovisions.is_empty(), "{:?}", p.deprovisions);
    assert!(p.staged.is_empty());
    assert!(p.is_noop());
}

#[test]
fn another_graph_integrations_user_is_skipped_naming_it() {
    let theirs = entra(2, "bob@contoso.com");
    let stored = vec![owned_by(synced(&theirs), Some(other_graph()))];
    // In this integration's scope too, by object id and (a different account) by userName.
    let same_name = entra(3, "bob@contoso.com");
    for e in [theirs.clone(), same_name] {
        let p = plan(&Snapshot::complete(vec![e]), &stored, &with_managers());
        assert!(p.is_noop(), "{p:?}");
        assert_eq!(p.skips.len(), 1);
        match &p.skips[0].reason {
            SkipReason::ManagedElsewhere { integration, .. } => assert_eq!(integration, "G2"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(p.skips[0].reason.to_string().contains("\"G2\""));
    }
}

#[test]
fn unmanaged_and_scim_users_are_adopted_with_their_previous_manager() {
    let ann = entra(1, "ann@contoso.com");
    let bob = entra(2, "bob@contoso.com");
    let stored = vec![
        unlinked("ann@contoso.com"),
        owned_by(unlinked("bob@contoso.com"), Some(scim())),
    ];
    let p = plan(
        &Snapshot::complete(vec![ann, bob]),
        &stored,
        &with_managers(),
    );
    assert_eq!(p.updates.len(), 2);
    let from: Vec<Option<&str>> = p
        .updates
        .iter()
        .map(|u| u.adopted_from.as_deref())
        .collect();
    assert_eq!(from, [Some("none"), Some("Push (scim)")]);
    for u in &p.updates {
        assert!(u.adopted);
        assert!(u.changes.iter().any(|c| c.attribute == MANAGED_BY));
    }
}

#[test]
fn a_linked_unmanaged_user_is_adopted_by_object_id_but_never_deprovisioned() {
    let ann = entra(1, "ann@contoso.com");
    let gone = entra(2, "bob@contoso.com");
    let stored = vec![owned_by(synced(&ann), None), owned_by(synced(&gone), None)];
    let pol = Policy {
        threshold: no_threshold(),
        ..with_managers()
    };
    let p = plan(&Snapshot::complete(vec![ann]), &stored, &pol);
    assert!(p.deprovisions.is_empty());
    assert_eq!(p.updates.len(), 1);
    assert_eq!(p.updates[0].adopted_from.as_deref(), Some("none"));
    assert!(!p.updates[0].adopted);
}

#[test]
fn a_user_the_operator_kept_is_left_alone() {
    let ann = entra(1, "ann@contoso.com");
    let stored = vec![owned_by(synced(&ann), None)];
    let mut pol = with_managers();
    pol.kept.insert(stored[0].id.clone());
    for e in [ann.clone(), disabled(ann.clone())] {
        let p = plan(&Snapshot::complete(vec![e]), &stored, &pol);
        assert!(p.is_noop() && p.staged.is_empty(), "{p:?}");
        assert!(matches!(
            p.skips[0].reason,
            SkipReason::KeptByOperator { .. }
        ));
    }
}

#[test]
fn first_cycle_threshold_base_is_the_scope_not_zero() {
    assert_eq!(DeletionThreshold::base(0, 20), 20);
    assert_eq!(DeletionThreshold::base(30, 20), 30);
    // 20 unmanaged users adopted, one disabled user among them deprovisioned: 1 of 20 = 5%.
    let mut users: Vec<EntraUser> = (1..=20)
        .map(|i| entra(i, &format!("u{i}@contoso.com")))
        .collect();
    users[0] = disabled(users[0].clone());
    let stored: Vec<UserRecord> = (1..=20)
        .map(|i| unlinked(&format!("u{i}@contoso.com")))
        .collect();
    let p = plan(&Snapshot::complete(users), &stored, &with_managers());
    assert!(p.threshold_hit.is_none(), "{:?}", p.threshold_hit);
    assert_eq!((p.deprovisions.len(), p.updates.len()), (1, 19));
}

#[test]
fn approved_deletions_bypass_the_threshold_and_new_ones_are_held() {
    let (users, stored) = managed(10);
    // Five leave the scope; two of them were staged and approved.
    let pol = Policy {
        approved: [stored[5].id.clone(), stored[6].id.clone()].into(),
        ..policy()
    };
    let p = plan(&Snapshot::complete(users[..5].to_vec()), &stored, &pol);
    let deleted: Vec<&UserId> = p.deprovisions.iter().map(|d| &d.user_id).collect();
    assert_eq!(deleted.len(), 2);
    assert!(deleted.contains(&&stored[5].id) && deleted.contains(&&stored[6].id));
    assert_eq!(p.staged.len(), 3, "the three not approved are held");
    let all = approve_all(policy(), &stored);
    let p = plan(&Snapshot::complete(users[..5].to_vec()), &stored, &all);
    assert_eq!((p.deprovisions.len(), p.staged.len()), (5, 0));
}

#[test]
fn only_deletable_users_are_deprovisioned() {
    let (users, stored) = managed(3);
    let pol = Policy {
        threshold: no_threshold(),
        deletable: Some([stored[2].id.clone()].into()),
        ..policy()
    };
    let p = plan(&Snapshot::complete(users[..1].to_vec()), &stored, &pol);
    assert_eq!(p.deprovisions.len(), 1);
    assert_eq!(p.deprovisions[0].user_id, stored[2].id);
}

#[test]
fn deleted_in_entra_is_the_reason_when_graph_says_so() {
    let (users, stored) = managed(2);
    let mut pol = Policy {
        threshold: no_threshold(),
        ..policy()
    };
    pol.deleted_in_entra.insert(users[1].object_id.clone());
    let p = plan(&Snapshot::complete(users[..1].to_vec()), &stored, &pol);
    assert_eq!(p.deprovisions[0].reason, DeprovisionReason::Deleted);
}

fn disabled(e: EntraUser) -> EntraUser {
    super::tests::disabled(e)
}
