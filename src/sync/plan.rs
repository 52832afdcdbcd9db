//! The pure planner of a pull-sync cycle: a complete [`Snapshot`] of the Entra users in scope,
//! the users stored in essentry and a [`Policy`] in; the creates, updates and deprovisionings of
//! the cycle out, with the deletion threshold applied. No I/O and no clock.
//!
//! Matching, in this order:
//! 1. by the Entra object id the stored user remembers (`attrs.entra_object_id`);
//! 2. by userName (case-insensitive) for stored users that remember no object id: the user is
//!    *adopted* (the update records the object id).
//!
//! A stored user that remembers a *different* object id than the Entra user of its userName is a
//! different person (e.g. a re-created Entra account) and is never adopted. The new account gets
//! the userName only if the plan frees it — the old user is deprovisioned (its object id left the
//! scope or was disabled) or renamed (its Entra account got another userName); otherwise the new
//! one is skipped with [`SkipReason::UserNameTaken`] (or [`SkipReason::DeletionHeld`] when the
//! deletion threshold holds the deprovisioning that would free it).
//!
//! The plan is consistent for an apply that runs, in one transaction: `deprovisions`, then
//! `updates` in list order (a rename into a userName another rename frees comes after it), then
//! `creates`.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::domain::directory::diff_attributes;
use crate::domain::{
    AttributeChange, DeprovisionReason, DirectoryUser, EntraObjectId, UserId, UserName, UserRecord,
};

use super::mapping::{
    Assignment, EntraUser, Mapping, SkipReason, desired_user, in_step, mapped_user, user_name_of,
};

/// Every Entra user in scope, read completely.
///
/// **Invariant: a `Snapshot` only ever holds a complete read.** Construct it only via
/// [`Snapshot::complete`], which the Graph reader calls after *every* page was read successfully.
/// A partial read (a failed page, a throttled request given up on, a cancelled cycle) must never
/// produce a `Snapshot`: the planner reads "absent from the snapshot" as "no longer in scope" and
/// would deprovision everyone on the missing pages.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    users: Vec<EntraUser>,
}

impl Snapshot {
    /// The snapshot of a read that finished. A user listed more than once (assigned directly and
    /// through groups, or returned on two pages) is kept once, with its assignments merged; the
    /// first occurrence's attributes win.
    pub fn complete(users: Vec<EntraUser>) -> Self {
        let mut index: HashMap<EntraObjectId, usize> = HashMap::with_capacity(users.len());
        let mut out: Vec<EntraUser> = Vec::with_capacity(users.len());
        for user in users {
            if let Some(&i) = index.get(&user.object_id) {
                let kept = &mut out[i];
                for a in user.assigned_via {
                    if !kept.assigned_via.contains(&a) {
                        kept.assigned_via.push(a);
                    }
                }
            } else {
                index.insert(user.object_id.clone(), out.len());
                out.push(user);
            }
        }
        Self { users: out }
    }

    pub fn users(&self) -> &[EntraUser] {
        &self.users
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// How many deprovisionings one cycle may apply without an operator's approval. A cycle that
/// would deprovision *more* than either limit is held (`None`: no limit of that kind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeletionThreshold {
    pub max_count: Option<usize>,
    /// Percent of the currently managed users (stored users that remember an Entra object id).
    pub max_percent: Option<f64>,
}

impl Default for DeletionThreshold {
    fn default() -> Self {
        Self {
            max_count: Some(500),
            max_percent: Some(10.0),
        }
    }
}

/// What the planner is told about the integration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    pub mapping: Mapping,
    pub threshold: DeletionThreshold,
    /// The operator approved: apply staged deletions (the threshold is not checked).
    pub allow_deletes: bool,
    /// The integration's name, for the approval command in [`Plan::threshold_hit`].
    pub integration: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCreate {
    pub object_id: EntraObjectId,
    /// The mapped attributes; its `resource` is empty until the executor builds it
    /// ([`overlay`](super::mapping::overlay) on an empty map).
    pub desired: DirectoryUser,
    /// (The attributes a create sets are `diff_attributes(None, &desired)`; not kept here, since
    /// an initial cycle of a large tenant would hold them for every user.)
    pub assigned_via: Vec<Assignment>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedUpdate {
    pub user_id: UserId,
    pub object_id: EntraObjectId,
    pub desired: DirectoryUser,
    /// `diff_attributes(current, desired)`; empty for an adoption that only records the object id.
    pub changes: Vec<AttributeChange>,
    pub expected_version: i64,
    /// Matched by userName; the object id is not yet remembered (the update records it).
    pub adopted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedDeprovision {
    pub user_id: UserId,
    pub user_name: String,
    /// The Entra account the stored user belongs to (remembered, or matched this cycle).
    pub object_id: Option<EntraObjectId>,
    /// `Deactivated` for accountEnabled = false, `Unassigned` when no longer in scope.
    pub reason: DeprovisionReason,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedSkip {
    pub object_id: EntraObjectId,
    /// The mapped userName, or the raw source value when it could not be mapped.
    pub user_name: Option<String>,
    pub reason: SkipReason,
}

/// One cycle's decisions. Every list is sorted by userName (case-insensitive), except `updates`,
/// which is sorted by the desired userName and then reordered only as far as a chain of renames
/// needs (see the module documentation for the apply order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub creates: Vec<PlannedCreate>,
    pub updates: Vec<PlannedUpdate>,
    pub deprovisions: Vec<PlannedDeprovision>,
    /// Deprovisionings held by the deletion threshold (not applied this cycle).
    pub staged: Vec<PlannedDeprovision>,
    pub skips: Vec<PlannedSkip>,
    /// Matched users whose mapped attributes are already as Entra has them.
    pub unchanged: usize,
    /// Why deletions were held, with the numbers and the command that approves them.
    pub threshold_hit: Option<String>,
    /// Observations for the operator that change nothing (e.g. accountEnabled not returned).
    pub notes: Vec<String>,
}

impl Plan {
    /// Nothing to write: no creates, updates or deprovisionings (staged ones are not written).
    pub fn is_noop(&self) -> bool {
        self.creates.is_empty() && self.updates.is_empty() && self.deprovisions.is_empty()
    }
}

/// What an Entra user that won its userName asks for.
enum Intent {
    /// Update stored user `stored` (matched by object id or adopted by userName); the userName
    /// key does not change, so nothing can block it.
    Keep { entra: usize, stored: usize },
    /// Update stored user `stored`, matched by object id, to another userName key.
    Rename { entra: usize, stored: usize },
    /// Create a user; `holder` is the stored user (remembering another object id) that holds
    /// the userName now and must give it up first.
    Create { entra: usize, holder: Option<usize> },
}

/// Feasibility of a stored user's rename, resolved once.
#[derive(Clone, Copy, PartialEq)]
enum Resolve {
    Unknown,
    Visiting,
    Yes,
    No,
}

/// The planner's working state over the stored users.
struct Stored<'a> {
    current: &'a [UserRecord],
    by_name: HashMap<&'a str, usize>,
    /// Deprovisioned this cycle and not held by the threshold.
    gone: Vec<bool>,
    /// Deprovisioning held by the threshold.
    held: Vec<bool>,
    /// The userName key a stored user is renamed to, when it won that key.
    rename_to: Vec<Option<&'a str>>,
    resolved: Vec<Resolve>,
}

impl<'a> Stored<'a> {
    fn key(&self, s: usize) -> &'a str {
        self.current[s].attrs.user_name.key()
    }

    /// Whether stored user `s` gives up its current userName this cycle: deprovisioned, or
    /// renamed by a rename that is itself possible. Follows rename chains iteratively; a cycle of
    /// renames (a swap) gives up nothing.
    fn vacates(&mut self, s: usize) -> bool {
        let mut path = Vec::new();
        let mut cur = s;
        let result = loop {
            if self.gone[cur] {
                break true;
            }
            match self.resolved[cur] {
                Resolve::Yes => break true,
                Resolve::No | Resolve::Visiting => break false,
                Resolve::Unknown => {}
            }
            let Some(target) = self.rename_to[cur] else {
                break false;
            };
            self.resolved[cur] = Resolve::Visiting;
            path.push(cur);
            match self.by_name.get(target) {
                None => break true,
                Some(&h) if h == cur => break true,
                Some(&h) => cur = h,
            }
        };
        let mark = if result { Resolve::Yes } else { Resolve::No };
        for p in path {
            self.resolved[p] = mark;
        }
        result
    }

    /// Whether userName `key` is free for `claimant` (the stored user being renamed to it, or
    /// `None` for a create) once the deprovisionings and earlier renames ran; `Err` says why not.
    fn available(&mut self, key: &str, claimant: Option<usize>) -> Result<(), SkipReason> {
        let Some(&h) = self.by_name.get(key) else {
            return Ok(());
        };
        if Some(h) == claimant || self.vacates(h) {
            return Ok(());
        }
        let record = &self.current[h];
        let user_name = record.attrs.user_name.as_str().to_owned();
        Err(if self.held[h] {
            SkipReason::DeletionHeld {
                user_id: record.id.clone(),
                user_name,
            }
        } else {
            SkipReason::UserNameTaken {
                user_id: record.id.clone(),
                user_name,
                object_id: record.attrs.entra_object_id.clone(),
            }
        })
    }
}

/// Plans one cycle. See the module documentation for the matching rules; in short:
/// - disabled Entra users are never created; a stored user they match is deprovisioned
///   (`Deactivated`); a missing `accountEnabled` counts as enabled (and is noted);
/// - a stored user remembering an object id that is not in the snapshot is deprovisioned
///   (`Unassigned`); stored users without an object id and without a userName match are never
///   touched;
/// - two Entra users mapping to one userName: the one matched by object id keeps it (the one
///   already holding it before one being renamed to it); with no such winner both are skipped;
/// - an update is planned only when an attribute changes or the object id must be recorded;
/// - more deprovisionings than the threshold allows (and no `allow_deletes`) moves them all to
///   `staged`; creates and updates proceed unless they need a userName a staged one holds.
pub fn plan(snapshot: &Snapshot, current: &[UserRecord], policy: &Policy) -> Plan {
    let users = snapshot.users();
    let mapping = &policy.mapping;
    let mut out = Plan::default();

    let mut by_oid: HashMap<&str, usize> = HashMap::with_capacity(current.len());
    let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(current.len());
    for (i, r) in current.iter().enumerate() {
        if let Some(o) = &r.attrs.entra_object_id {
            by_oid.entry(o.as_str()).or_insert(i);
        }
        by_name.entry(r.attrs.user_name.key()).or_insert(i);
    }
    let in_scope: HashSet<&str> = users.iter().map(|e| e.object_id.as_str()).collect();
    let matched: Vec<Option<usize>> = users
        .iter()
        .map(|e| by_oid.get(e.object_id.as_str()).copied())
        .collect();
    let names: Vec<Result<UserName, SkipReason>> =
        users.iter().map(|e| user_name_of(e, mapping)).collect();

    let mut deprovisioned = vec![false; current.len()];
    let mut deprovisions: Vec<PlannedDeprovision> = Vec::new();
    let mut deprovision = |s: usize, oid: Option<&EntraObjectId>, reason| {
        if !std::mem::replace(&mut deprovisioned[s], true) {
            let r = &current[s];
            deprovisions.push(PlannedDeprovision {
                user_id: r.id.clone(),
                user_name: r.attrs.user_name.as_str().to_owned(),
                object_id: oid.cloned().or_else(|| r.attrs.entra_object_id.clone()),
                reason,
            });
        }
    };
    let skip_of = |j: usize, reason: SkipReason| {
        let e = &users[j];
        let user_name = match &names[j] {
            Ok(n) => Some(n.as_str().to_owned()),
            Err(_) => e.user_principal_name.clone().or_else(|| e.mail.clone()),
        };
        PlannedSkip {
            object_id: e.object_id.clone(),
            user_name,
            reason,
        }
    };

    // Who wants which userName. Disabled users only contend for adopting an unlinked stored user
    // (to deprovision it); they never hold a userName afterwards.
    let mut contenders: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut unknown_enabled = 0usize;
    for (j, e) in users.iter().enumerate() {
        if e.account_enabled.is_none() {
            unknown_enabled += 1;
        }
        if e.is_disabled() {
            if let Some(s) = matched[j] {
                deprovision(s, Some(&e.object_id), DeprovisionReason::Deactivated);
            } else if let Ok(n) = &names[j]
                && by_name
                    .get(n.key())
                    .is_some_and(|&s| current[s].attrs.entra_object_id.is_none())
            {
                contenders.entry(n.key()).or_default().push(j);
            } else {
                out.skips.push(skip_of(j, SkipReason::Disabled));
            }
            continue;
        }
        match &names[j] {
            Ok(n) => contenders.entry(n.key()).or_default().push(j),
            Err(reason) => out.skips.push(skip_of(j, reason.clone())),
        }
    }
    for (s, r) in current.iter().enumerate() {
        if let Some(o) = &r.attrs.entra_object_id
            && !in_scope.contains(o.as_str())
        {
            deprovision(s, None, DeprovisionReason::Unassigned);
        }
    }

    // One winner per userName: matched by object id and already holding it, else matched by
    // object id, else the only one. A tie at the best rank has no winner.
    let rank = |j: usize, key: &str| match matched[j] {
        Some(s) if current[s].attrs.user_name.key() == key => 0u8,
        Some(_) => 1,
        None => 2,
    };
    let mut intents: Vec<Intent> = Vec::new();
    let mut rename_to: Vec<Option<&str>> = vec![None; current.len()];
    for (&key, js) in &contenders {
        let best = js.iter().map(|&j| rank(j, key)).min().unwrap_or(2);
        let top: Vec<usize> = js
            .iter()
            .copied()
            .filter(|&j| rank(j, key) == best)
            .collect();
        let winner = match top.as_slice() {
            [w] => Some(*w),
            _ => None,
        };
        for &j in js {
            if Some(j) == winner {
                continue;
            }
            let other = match winner {
                Some(w) => users[w].object_id.clone(),
                None => top
                    .iter()
                    .filter(|&&t| t != j)
                    .map(|&t| &users[t].object_id)
                    .min()
                    .unwrap_or(&users[j].object_id)
                    .clone(),
            };
            out.skips
                .push(skip_of(j, SkipReason::DuplicateUserName { other }));
        }
        let Some(w) = winner else { continue };
        let e = &users[w];
        match (best, matched[w]) {
            (0, Some(s)) => intents.push(Intent::Keep {
                entra: w,
                stored: s,
            }),
            (1, Some(s)) => {
                rename_to[s] = Some(key);
                intents.push(Intent::Rename {
                    entra: w,
                    stored: s,
                });
            }
            _ => match by_name.get(key).copied() {
                Some(h) if current[h].attrs.entra_object_id.is_none() => {
                    if e.is_disabled() {
                        deprovision(h, Some(&e.object_id), DeprovisionReason::Deactivated);
                    } else {
                        intents.push(Intent::Keep {
                            entra: w,
                            stored: h,
                        });
                    }
                }
                _ if e.is_disabled() => out.skips.push(skip_of(w, SkipReason::Disabled)),
                holder => intents.push(Intent::Create { entra: w, holder }),
            },
        }
    }

    // The deletion threshold.
    let managed = current
        .iter()
        .filter(|r| r.attrs.entra_object_id.is_some())
        .count();
    let held = if policy.allow_deletes {
        None
    } else {
        threshold_message(deprovisions.len(), managed, policy)
    };
    let mut stored = Stored {
        current,
        by_name,
        gone: deprovisioned,
        held: vec![false; current.len()],
        rename_to,
        resolved: vec![Resolve::Unknown; current.len()],
    };
    if held.is_some() {
        stored.held = std::mem::take(&mut stored.gone);
        stored.gone = vec![false; current.len()];
        out.staged = deprovisions;
    } else {
        out.deprovisions = deprovisions;
    }
    out.threshold_hit = held;

    // Creates and updates, now that it is known which userNames are freed.
    let mut update_of: HashMap<usize, usize> = HashMap::new();
    for intent in intents {
        let (j, s, check) = match intent {
            Intent::Keep { entra, stored: s } => (entra, Some(s), None),
            Intent::Rename { entra, stored: s } => (entra, Some(s), stored.rename_to[s]),
            Intent::Create { entra, holder } => (entra, None, holder.map(|h| stored.key(h))),
        };
        if let Some(key) = check
            && let Err(reason) = stored.available(key, s)
        {
            out.skips.push(skip_of(j, reason));
            continue;
        }
        let e = &users[j];
        if let (Some(s), Ok(name)) = (s, &names[j]) {
            let attrs = &current[s].attrs;
            if attrs.entra_object_id.is_some() && in_step(e, name, attrs) {
                out.unchanged += 1;
                continue;
            }
        }
        // A new user's resource is built when it is created (`overlay` on an empty map), so an
        // initial cycle of a large tenant does not hold every resource at once.
        let desired = match s {
            Some(s) => desired_user(e, mapping, Some(&current[s].attrs.resource)),
            None => mapped_user(e, mapping),
        };
        let desired = match desired {
            Ok(d) => d,
            Err(reason) => {
                out.skips.push(skip_of(j, reason));
                continue;
            }
        };
        match s {
            Some(s) => {
                let record = &current[s];
                let changes = diff_attributes(Some(&record.attrs), &desired);
                let adopted = record.attrs.entra_object_id.is_none();
                if changes.is_empty() && !adopted {
                    out.unchanged += 1;
                    continue;
                }
                update_of.insert(s, out.updates.len());
                out.updates.push(PlannedUpdate {
                    user_id: record.id.clone(),
                    object_id: e.object_id.clone(),
                    desired,
                    changes,
                    expected_version: record.version,
                    adopted,
                });
            }
            None => out.creates.push(PlannedCreate {
                object_id: e.object_id.clone(),
                desired,
                assigned_via: e.assigned_via.clone(),
            }),
        }
    }

    if unknown_enabled > 0 {
        out.notes.push(format!(
            "Graph returned no accountEnabled for {unknown_enabled} user(s); they were treated as \
             enabled (the reader should $select accountEnabled)"
        ));
    }
    order(&mut out, &stored, &update_of);
    out
}

/// Why the deprovisionings are held, or `None` when they may proceed.
fn threshold_message(n: usize, managed: usize, policy: &Policy) -> Option<String> {
    if n == 0 {
        return None;
    }
    let t = &policy.threshold;
    let mut over = Vec::new();
    if let Some(max) = t.max_count
        && n > max
    {
        over.push(format!("more than the limit of {max} users"));
    }
    if let Some(max) = t.max_percent
        && (n as f64) > max * managed as f64 / 100.0
    {
        let share = if managed == 0 {
            "all".to_owned()
        } else {
            format!("{:.1}%", n as f64 * 100.0 / managed as f64)
        };
        over.push(format!(
            "{share} of the {managed} users managed by this integration, more than the limit of \
             {max}%"
        ));
    }
    if over.is_empty() {
        return None;
    }
    let name = if policy.integration.is_empty() {
        "NAME"
    } else {
        policy.integration.as_str()
    };
    Some(format!(
        "deletion threshold reached: this cycle would deprovision {n} user(s), {}; none was \
         deprovisioned, all {n} are staged (creates and updates are not held). Review the staged \
         users, then approve with `essentry-sync sync --integration {name} --allow-deletes`",
        over.join(" and ")
    ))
}

/// Sorts every list by userName; then moves each rename after the rename that frees its target.
fn order(out: &mut Plan, stored: &Stored<'_>, update_of: &HashMap<usize, usize>) {
    fn fold(s: &str) -> String {
        s.to_lowercase()
    }
    out.creates.sort_by(|a, b| {
        (a.desired.user_name.key(), &a.object_id).cmp(&(b.desired.user_name.key(), &b.object_id))
    });
    let by_name = |a: &PlannedDeprovision, b: &PlannedDeprovision| {
        (fold(&a.user_name), &a.user_id).cmp(&(fold(&b.user_name), &b.user_id))
    };
    out.deprovisions.sort_by(by_name);
    out.staged.sort_by(by_name);
    out.skips.sort_by(|a, b| {
        let key = |s: &PlannedSkip| (s.user_name.as_deref().map(fold), s.object_id.clone());
        key(a).cmp(&key(b))
    });

    // Stored user index of each update, before sorting.
    let mut stored_of: Vec<usize> = vec![0; out.updates.len()];
    for (&s, &u) in update_of {
        stored_of[u] = s;
    }
    let mut idx: Vec<usize> = (0..out.updates.len()).collect();
    idx.sort_by(|&a, &b| {
        let (ua, ub) = (&out.updates[a], &out.updates[b]);
        (ua.desired.user_name.key(), &ua.user_id).cmp(&(ub.desired.user_name.key(), &ub.user_id))
    });
    // The update that must run before update `u`: the one renaming away the holder of u's target.
    let before = |u: usize| -> Option<usize> {
        let s = stored_of[u];
        let target = out.updates[u].desired.user_name.key();
        if target == stored.key(s) {
            return None;
        }
        let h = *stored.by_name.get(target)?;
        (h != s).then(|| update_of.get(&h).copied()).flatten()
    };
    let mut emitted = vec![false; out.updates.len()];
    let mut sequence = Vec::with_capacity(out.updates.len());
    for &u in &idx {
        // Walk back to the first rename of the chain not yet emitted; `emitted` doubles as the
        // guard against a cycle (the planner never produces one).
        let mut chain = Vec::new();
        let mut cur = Some(u);
        while let Some(c) = cur.filter(|&c| !emitted[c]) {
            emitted[c] = true;
            chain.push(c);
            cur = before(c);
        }
        sequence.extend(chain.into_iter().rev());
    }
    let mut slots: Vec<Option<PlannedUpdate>> = std::mem::take(&mut out.updates)
        .into_iter()
        .map(Some)
        .collect();
    out.updates = sequence
        .into_iter()
        .filter_map(|u| slots[u].take())
        .collect();
}

#[cfg(test)]
mod tests;
