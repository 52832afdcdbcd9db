//! The incremental read: the assignments again, then Graph's delta links; the users whose scope
//! or attributes changed (and the staged and pending ones) are looked up and matched against
//! the stored users they touch (see the parent module).

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::super::cycle::{ReadSummary, SyncEnv};
use super::super::mapping::user_name_of;
use super::{
    Fallback, FullReason, NEIGHBOUR_ROUNDS, Prepared, ReadMode, StateWrite, assignments_of,
};
use crate::domain::entra::{EntraUser, Snapshot};
use crate::domain::{EntraObjectId, UserId, UserRecord};
use crate::entra::delta::{GROUPS_PER_QUERY, MemberChange};
use crate::entra::graph::{GraphReader, ReadError};
use crate::integrations::GraphIntegration;
use crate::store::delta::{AssignedScope, DeltaState, GroupsLink, ScopeMember};

/// One user's scope before and after the changes.
struct Change {
    old: Option<ScopeMember>,
    new: ScopeMember,
}

impl Change {
    fn was_in_scope(&self) -> bool {
        self.old.as_ref().is_some_and(ScopeMember::in_scope)
    }
}

pub(super) async fn incremental(
    env: &SyncEnv,
    integ: &GraphIntegration,
    reader: &GraphReader,
    state: DeltaState,
    now: DateTime<Utc>,
) -> Result<Prepared, Fallback> {
    let id = &integ.row.id;
    let assigned = reader.read_assignments().await?;
    let users = reader.users_delta(&state.users_link).await?;
    let new_groups: HashMap<String, Option<String>> = assigned.groups.iter().cloned().collect();
    let new_direct: HashSet<&str> = assigned.direct.iter().map(String::as_str).collect();
    let old_direct: HashSet<&str> = state
        .assignments
        .direct
        .iter()
        .map(String::as_str)
        .collect();

    // Membership changes of the groups still assigned, and fresh links for groups newly
    // assigned (taken before their members are read).
    let mut links: Vec<GroupsLink> = Vec::new();
    let mut member_changes: Vec<MemberChange> = Vec::new();
    let mut dropped: HashSet<String> = state
        .assignments
        .groups
        .iter()
        .map(|(g, _)| g.clone())
        .filter(|g| !new_groups.contains_key(g))
        .collect();
    for chunk in &state.groups_links {
        let kept: Vec<String> = chunk
            .groups
            .iter()
            .filter(|g| new_groups.contains_key(*g))
            .cloned()
            .collect();
        if kept.is_empty() {
            continue;
        }
        let delta = reader.groups_delta(&chunk.link).await?;
        let kept_set: HashSet<&str> = kept.iter().map(String::as_str).collect();
        for c in delta.changes {
            match &c {
                MemberChange::GroupRemoved { group } if kept_set.contains(group.as_str()) => {
                    dropped.insert(group.clone());
                }
                MemberChange::Added { group, .. } | MemberChange::Removed { group, .. }
                    if kept_set.contains(group.as_str()) =>
                {
                    member_changes.push(c);
                }
                _ => {}
            }
        }
        links.push(GroupsLink {
            groups: kept,
            link: delta.link,
        });
    }
    for l in &mut links {
        l.groups.retain(|g| !dropped.contains(g));
    }
    links.retain(|l| !l.groups.is_empty());
    let tracked: HashSet<String> = links.iter().flat_map(|l| l.groups.clone()).collect();
    let mut added: Vec<(String, Option<String>)> = assigned
        .groups
        .iter()
        .filter(|(g, _)| !tracked.contains(g) && !dropped.contains(g))
        .cloned()
        .collect();
    added.sort();
    let mut read_users: HashMap<String, EntraUser> = HashMap::new();
    let mut joined: HashMap<String, Vec<String>> = HashMap::new();
    for chunk in added.chunks(GROUPS_PER_QUERY) {
        let ids: Vec<String> = chunk.iter().map(|(g, _)| g.clone()).collect();
        let link = reader.latest_groups_link(&ids).await?;
        for (g, name) in chunk {
            for mut u in reader.group_members(g, name.clone()).await? {
                let oid = u.object_id.as_str().to_owned();
                joined.entry(oid.clone()).or_default().push(g.clone());
                u.assigned_via.clear();
                read_users.insert(oid, u);
            }
        }
        links.push(GroupsLink { groups: ids, link });
    }

    // Every user the changes touch, with its scope row before.
    let changed: HashSet<String> = users
        .changed
        .iter()
        .map(|u| u.object_id.as_str().to_owned())
        .collect();
    let removed: HashSet<String> = users
        .removed
        .iter()
        .map(|o| o.as_str().to_owned())
        .collect();
    let mut by_user: HashMap<String, Vec<(bool, String)>> = HashMap::new();
    for c in member_changes {
        match c {
            MemberChange::Added { group, user } => {
                by_user.entry(user).or_default().push((true, group))
            }
            MemberChange::Removed { group, user } => {
                by_user.entry(user).or_default().push((false, group))
            }
            MemberChange::GroupRemoved { .. } => {}
        }
    }
    let staged: HashSet<String> = env
        .store
        .list_staged(&integ.row.account_id, Some(id))
        .await?
        .into_iter()
        .filter_map(|r| r.object_id.map(|o| o.as_str().to_owned()))
        .collect();
    let mut ids: BTreeSet<String> = BTreeSet::new();
    ids.extend(changed.iter().cloned());
    ids.extend(removed.iter().cloned());
    ids.extend(by_user.keys().cloned());
    ids.extend(joined.keys().cloned());
    ids.extend(staged.iter().cloned());
    ids.extend(
        new_direct
            .symmetric_difference(&old_direct)
            .map(|s| (*s).to_owned()),
    );
    let mut rows: HashMap<String, ScopeMember> = HashMap::new();
    for m in env.store.pending_scope_members(id).await? {
        ids.insert(m.object_id.clone());
        rows.insert(m.object_id.clone(), m);
    }
    for g in &dropped {
        for m in env.store.scope_members_of_group(id, g).await? {
            ids.insert(m.object_id.clone());
            rows.insert(m.object_id.clone(), m);
        }
    }
    let unknown: Vec<String> = ids
        .iter()
        .filter(|i| !rows.contains_key(*i))
        .cloned()
        .collect();
    for m in env.store.scope_members(id, &unknown).await? {
        rows.insert(m.object_id.clone(), m);
    }

    // Each touched user's scope after the changes.
    let mut changes: HashMap<String, Change> = HashMap::with_capacity(ids.len());
    for oid in &ids {
        let old = rows.remove(oid);
        let mut new = old.clone().unwrap_or_else(|| ScopeMember {
            object_id: oid.clone(),
            direct: false,
            groups: Vec::new(),
            removed: false,
            pending: false,
        });
        new.direct = new_direct.contains(oid.as_str());
        new.groups
            .retain(|g| new_groups.contains_key(g) && !dropped.contains(g));
        for (add, g) in by_user.get(oid).into_iter().flatten() {
            if *add {
                if !new.groups.contains(g) {
                    new.groups.push(g.clone());
                }
            } else {
                new.groups.retain(|x| x != g);
            }
        }
        for g in joined.get(oid).into_iter().flatten() {
            if !new.groups.contains(g) {
                new.groups.push(g.clone());
            }
        }
        new.groups.sort();
        if removed.contains(oid) {
            new.removed = true;
        } else if changed.contains(oid) || read_users.contains_key(oid) {
            new.removed = false;
        }
        changes.insert(oid.clone(), Change { old, new });
    }

    // The users to plan: whose scope changed, whose attributes changed while in scope, the
    // staged and the pending ones.
    let mut planned: HashSet<String> = changes
        .iter()
        .filter(|(oid, c)| {
            let (was, is) = (c.was_in_scope(), c.new.in_scope());
            was != is
                || (is && (changed.contains(*oid) || read_users.contains_key(*oid)))
                || c.old.as_ref().is_some_and(|o| o.pending)
                || staged.contains(*oid)
        })
        .map(|(oid, _)| oid.clone())
        .collect();
    let mut deleted: HashSet<EntraObjectId> = users
        .removed
        .iter()
        .filter(|o| planned.contains(o.as_str()))
        .cloned()
        .collect();
    let mut entra: HashMap<String, EntraUser> = HashMap::new();
    let wanted: Vec<String> = planned
        .iter()
        .filter(|oid| changes.get(*oid).is_some_and(|c| c.new.in_scope()))
        .cloned()
        .collect();
    lookup(
        reader,
        &wanted,
        &mut read_users,
        &mut entra,
        &mut changes,
        &mut deleted,
    )
    .await?;

    // The stored users the planned ones match, and the in-scope users those hold in turn.
    let account = &integ.row.account_id;
    let mut current: HashMap<UserId, UserRecord> = HashMap::new();
    let (mut asked_oids, mut asked_keys): (HashSet<String>, HashSet<String>) =
        (HashSet::new(), HashSet::new());
    let mut converged = false;
    for _ in 0..NEIGHBOUR_ROUNDS {
        let oids: Vec<String> = planned.difference(&asked_oids).cloned().collect();
        let keys: Vec<String> = entra
            .values()
            .filter_map(|u| user_name_of(u, &integ.settings.mapping).ok())
            .map(|n| n.key().to_owned())
            .filter(|k| !asked_keys.contains(k))
            .collect();
        if oids.is_empty() && keys.is_empty() {
            converged = true;
            break;
        }
        asked_oids.extend(oids.iter().cloned());
        asked_keys.extend(keys.iter().cloned());
        for r in env.store.users_light_by_object_ids(account, &oids).await? {
            current.insert(r.id.clone(), r);
        }
        for r in env.store.users_light_by_name_keys(account, &keys).await? {
            current.insert(r.id.clone(), r);
        }
        let extra: Vec<String> = current
            .values()
            .filter_map(|r| r.attrs.entra_object_id.as_ref())
            .map(|o| o.as_str().to_owned())
            .filter(|o| !planned.contains(o))
            .collect();
        if extra.is_empty() {
            continue;
        }
        let extra_rows = env.store.scope_members(id, &extra).await?;
        let mut in_scope = Vec::new();
        for m in extra_rows {
            if m.in_scope() {
                in_scope.push(m.object_id.clone());
            }
            changes.insert(
                m.object_id.clone(),
                Change {
                    old: Some(m.clone()),
                    new: m,
                },
            );
        }
        planned.extend(extra);
        lookup(
            reader,
            &in_scope,
            &mut read_users,
            &mut entra,
            &mut changes,
            &mut deleted,
        )
        .await?;
    }
    if !converged {
        return Err(Fallback::Full(
            FullReason::Conflicts,
            "the changes' userName conflicts reach too far for an incremental plan; read in full"
                .to_owned(),
        ));
    }

    // The planned users as the planner sees them.
    let mut snapshot_users: Vec<EntraUser> = Vec::with_capacity(entra.len());
    for (oid, mut u) in entra {
        let Some(c) = changes.get(&oid) else { continue };
        if !c.new.in_scope() {
            continue;
        }
        u.assigned_via = assignments_of(&c.new, &new_groups);
        snapshot_users.push(u);
    }
    snapshot_users.sort_by(|a, b| a.object_id.cmp(&b.object_id));
    let before = env.store.scope_size(id).await?;
    let delta_in_scope: i64 = changes
        .values()
        .map(|c| i64::from(c.new.in_scope()) - i64::from(c.was_in_scope()))
        .sum();
    let in_scope_total = usize::try_from(before + delta_in_scope).unwrap_or(0);
    let managed =
        usize::try_from(env.store.count_managed(account, id).await?).unwrap_or(usize::MAX);
    let current: Vec<UserRecord> = current.into_values().collect();
    let summary = ReadSummary {
        assignments: assigned.rows,
        direct_users: assigned.direct.len(),
        groups: assigned.groups.len(),
        users_in_scope: in_scope_total,
        stored_users: current.len(),
    };
    let (mut put, mut delete) = (Vec::new(), Vec::new());
    for (oid, c) in changes {
        // A deleted account keeps its row (and groups) while it was in scope, so a restore
        // brings it back; one never in scope leaves no row.
        if c.new.in_scope() || (c.new.removed && c.old.is_some()) {
            put.push(c.new);
        } else if c.old.is_some() {
            delete.push(oid);
        }
    }
    put.sort_by(|a, b| a.object_id.cmp(&b.object_id));
    delete.sort();
    tracing::info!(
        users_changed = users.changed.len(),
        users_removed = users.removed.len(),
        planned = snapshot_users.len(),
        stored = current.len(),
        "incremental read"
    );
    Ok(Prepared {
        mode: ReadMode::Incremental,
        full_reason: None,
        snapshot: Snapshot::complete(snapshot_users),
        current,
        summary,
        totals: Some((managed, in_scope_total)),
        deleted: Some(deleted),
        write: StateWrite::Patch {
            state: DeltaState {
                users_link: users.link,
                groups_links: links,
                assignments: AssignedScope {
                    direct: assigned.direct,
                    groups: assigned.groups,
                },
                fingerprint: state.fingerprint,
                full_at: state.full_at,
                updated_at: now,
            },
            put,
            delete,
        },
        notes: Vec::new(),
    })
}

/// The attributes of `ids` (read this cycle already, or by `getByIds`). An id Graph no longer
/// returns is an account deleted since: out of scope, and deprovisioned as deleted.
async fn lookup(
    reader: &GraphReader,
    ids: &[String],
    read_users: &mut HashMap<String, EntraUser>,
    entra: &mut HashMap<String, EntraUser>,
    changes: &mut HashMap<String, Change>,
    deleted: &mut HashSet<EntraObjectId>,
) -> Result<(), ReadError> {
    let missing: Vec<String> = ids
        .iter()
        .filter(|i| !read_users.contains_key(*i) && !entra.contains_key(*i))
        .cloned()
        .collect();
    for u in reader.users_by_object_ids(&missing).await? {
        read_users.insert(u.object_id.as_str().to_owned(), u);
    }
    for oid in ids {
        match read_users.remove(oid) {
            Some(u) => {
                entra.insert(oid.clone(), u);
            }
            None if entra.contains_key(oid) => {}
            None => {
                if let Some(c) = changes.get_mut(oid) {
                    c.new.removed = true;
                }
                if let Ok(o) = EntraObjectId::parse(oid) {
                    deleted.insert(o);
                }
            }
        }
    }
    Ok(())
}
