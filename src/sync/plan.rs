//! The pure planner of a pull-sync cycle: a complete [`Snapshot`] of the Entra users in scope,
//! the users stored in essentry and a [`Policy`] in; the creates, updates and deprovisionings of
//! the cycle out, with the deletion threshold applied. No I/O and no clock.
//!
//! **Ownership.** Every stored user is, for the integration being planned, one of:
//! - *mine*: managed by this integration. Only these are ever deprovisioned because their object
//!   id left the scope.
//! - *adoptable*: unmanaged, or managed by a SCIM integration. A match (by object id, or by
//!   userName when it remembers no object id) adopts it: the update makes this integration its
//!   manager, and the provisioning log records the previous one.
//! - *foreign*: managed by another Graph integration, or kept by an operator who rejected this
//!   integration's deletion of it. Never matched, updated or deprovisioned; an Entra user that
//!   would match it is skipped with a reason naming the integration.
//!
//! Matching, in this order:
//! 1. by the Entra object id the stored user remembers (`attrs.entra_object_id`);
//! 2. by userName (case-insensitive) for adoptable stored users that remember no object id.
//!
//! A stored user that remembers a *different* object id than the Entra user of its userName is a
//! different person (e.g. a re-created Entra account) and is never adopted. The new account gets
//! the userName only if the plan frees it — the old user is deprovisioned (its object id left the
//! scope or was disabled) or renamed (its Entra account got another userName); otherwise the new
//! one is skipped with [`SkipReason::UserNameTaken`] (or [`SkipReason::DeletionHeld`] when the
//! deletion threshold holds the deprovisioning that would free it).
//!
//! The phases of [`plan`]: `contenders` (who wants which userName, and which managed users left
//! the scope), `winners` (one Entra user per userName, and what it asks for), `threshold` (the
//! one place deletions are held), `intents` (the creates and updates, now that it is known which
//! userNames are freed), then `order`.
//!
//! The plan is consistent for an apply that runs, in one transaction: `deprovisions`, then
//! `updates` in list order (a rename into a userName another rename frees comes after it), then
//! `creates`.

use std::collections::{HashMap, HashSet};

use crate::domain::directory::{MANAGED_BY, diff_attributes};
use crate::domain::entra::{EntraUser, Snapshot};
use crate::domain::{
    AttributeChange, DeletionThreshold, DeprovisionReason, DirectoryUser, EntraObjectId,
    IntegrationId, Manager, UserId, UserName, UserRecord,
};

use super::mapping::{
    Assignment, Mapping, SkipReason, desired_user, in_step, mapped_user, user_name_of,
};

mod order;

/// What the planner is told about the integration and the operator's decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub mapping: Mapping,
    pub threshold: DeletionThreshold,
    /// The integration being planned.
    pub integration_id: IntegrationId,
    /// Its name, for the approval command in [`Plan::threshold_hit`].
    pub integration: String,
    /// The account's other integrations that may manage users, by id.
    pub managers: HashMap<IntegrationId, Manager>,
    /// Users whose staged deletion an operator approved and that are still due: deprovisioned
    /// without counting against the threshold.
    pub approved: HashSet<UserId>,
    /// Users an operator kept from this integration (deletion rejected): left alone.
    pub kept: HashSet<UserId>,
    /// Object ids of managed users out of scope that Graph says no longer exist (their
    /// deprovisioning's reason is `Deleted`).
    pub deleted_in_entra: HashSet<EntraObjectId>,
    /// When set, only these stored users may be deprovisioned (on-demand provisioning: the user
    /// asked for); any other deprovisioning is left out of the plan.
    pub deletable: Option<HashSet<UserId>>,
    /// The threshold's base when the plan covers only part of the scope (an incremental cycle):
    /// the users this integration manages and the users in its whole scope. `None`: counted
    /// from `current` and the snapshot, which then hold everything.
    pub totals: Option<(usize, usize)>,
}

impl Policy {
    /// The policy of a cycle with no operator decisions.
    pub fn new(
        integration_id: IntegrationId,
        integration: impl Into<String>,
        mapping: Mapping,
        threshold: DeletionThreshold,
    ) -> Self {
        Self {
            mapping,
            threshold,
            integration_id,
            integration: integration.into(),
            managers: HashMap::new(),
            approved: HashSet::new(),
            kept: HashSet::new(),
            deleted_in_entra: HashSet::new(),
            deletable: None,
            totals: None,
        }
    }
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
    /// The update takes the user over from its previous manager (`"none"` or `"SCIM
    /// integration NAME"`); `None` when this integration already manages it.
    pub adopted_from: Option<String>,
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

/// What a stored user is to the integration being planned (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
enum Claim {
    Mine,
    Adoptable,
    /// Another Graph integration manages it (named).
    ManagedElsewhere(String),
    /// An operator kept it from this integration.
    Kept,
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
    fn available(
        &mut self,
        key: &str,
        claimant: Option<usize>,
        claims: &[Claim],
    ) -> Result<(), SkipReason> {
        let Some(&h) = self.by_name.get(key) else {
            return Ok(());
        };
        if Some(h) == claimant || self.vacates(h) {
            return Ok(());
        }
        let record = &self.current[h];
        let user_id = record.id.clone();
        let user_name = record.attrs.user_name.as_str().to_owned();
        Err(if self.held[h] {
            SkipReason::DeletionHeld { user_id, user_name }
        } else {
            match &claims[h] {
                Claim::ManagedElsewhere(integration) => SkipReason::ManagedElsewhere {
                    user_id,
                    user_name,
                    integration: integration.clone(),
                },
                Claim::Kept => SkipReason::KeptByOperator { user_id, user_name },
                Claim::Mine | Claim::Adoptable => SkipReason::UserNameTaken {
                    user_id,
                    user_name,
                    object_id: record.attrs.entra_object_id.clone(),
                },
            }
        })
    }
}

/// What each stored user is to this integration.
fn claims_of(current: &[UserRecord], policy: &Policy) -> Vec<Claim> {
    current
        .iter()
        .map(|r| {
            if policy.kept.contains(&r.id) {
                return Claim::Kept;
            }
            match &r.managed_by {
                Some(m) if *m == policy.integration_id => Claim::Mine,
                Some(m) => match policy.managers.get(m) {
                    Some(manager) if manager.graph => Claim::ManagedElsewhere(manager.name.clone()),
                    _ => Claim::Adoptable,
                },
                None => Claim::Adoptable,
            }
        })
        .collect()
}

/// Why an Entra user that is a foreign stored user's is skipped.
fn foreign_reason(record: &UserRecord, claim: &Claim) -> Option<SkipReason> {
    let user_id = record.id.clone();
    let user_name = record.attrs.user_name.as_str().to_owned();
    match claim {
        Claim::ManagedElsewhere(integration) => Some(SkipReason::ManagedElsewhere {
            user_id,
            user_name,
            integration: integration.clone(),
        }),
        Claim::Kept => Some(SkipReason::KeptByOperator { user_id, user_name }),
        Claim::Mine | Claim::Adoptable => None,
    }
}

/// The stored user (mine first, then adoptable) each Entra user matches by object id.
fn match_by_oid(
    users: &[EntraUser],
    current: &[UserRecord],
    claims: &[Claim],
) -> Vec<Option<usize>> {
    let mut by_oid: HashMap<&str, usize> = HashMap::with_capacity(current.len());
    for pass in [Claim::Mine, Claim::Adoptable] {
        for (i, r) in current.iter().enumerate() {
            if claims[i] == pass
                && let Some(o) = &r.attrs.entra_object_id
            {
                by_oid.entry(o.as_str()).or_insert(i);
            }
        }
    }
    users
        .iter()
        .map(|e| by_oid.get(e.object_id.as_str()).copied())
        .collect()
}

/// Each Entra user's userName, or why it is skipped: unmappable, or its object id belongs to a
/// foreign stored user (another Graph integration's, or one an operator kept). The reason is
/// boxed: it is rare, and unboxed it would more than double each of the 100,000 entries.
fn names_of(
    users: &[EntraUser],
    current: &[UserRecord],
    claims: &[Claim],
    matched: &[Option<usize>],
    policy: &Policy,
) -> Vec<Result<UserName, Box<SkipReason>>> {
    let mut foreign_oid: HashMap<&str, usize> = HashMap::new();
    for (i, r) in current.iter().enumerate() {
        // The claims `foreign_reason` answers for, checked without building the reason.
        if matches!(claims[i], Claim::ManagedElsewhere(_) | Claim::Kept)
            && let Some(o) = &r.attrs.entra_object_id
        {
            foreign_oid.entry(o.as_str()).or_insert(i);
        }
    }
    users
        .iter()
        .zip(matched)
        .map(|(e, m)| match (m, foreign_oid.get(e.object_id.as_str())) {
            (None, Some(&s)) => match foreign_reason(&current[s], &claims[s]) {
                Some(reason) => Err(Box::new(reason)),
                None => user_name_of(e, &policy.mapping).map_err(Box::new),
            },
            _ => user_name_of(e, &policy.mapping).map_err(Box::new),
        })
        .collect()
}

/// One cycle's planning, phase by phase (see the module documentation).
struct Planner<'a> {
    users: &'a [EntraUser],
    current: &'a [UserRecord],
    policy: &'a Policy,
    names: &'a [Result<UserName, Box<SkipReason>>],
    claims: &'a [Claim],
    matched: &'a [Option<usize>],
    by_name: HashMap<&'a str, usize>,
    deprovisioned: Vec<bool>,
    deprovisions: Vec<PlannedDeprovision>,
    rename_to: Vec<Option<&'a str>>,
    /// Users managed by this integration before the cycle (the threshold's base).
    managed: usize,
    out: Plan,
}

impl<'a> Planner<'a> {
    fn deprovision(&mut self, s: usize, oid: Option<&EntraObjectId>, reason: DeprovisionReason) {
        let r = &self.current[s];
        if let Some(only) = &self.policy.deletable
            && !only.contains(&r.id)
        {
            return;
        }
        if !std::mem::replace(&mut self.deprovisioned[s], true) {
            self.deprovisions.push(PlannedDeprovision {
                user_id: r.id.clone(),
                user_name: r.attrs.user_name.as_str().to_owned(),
                object_id: oid.cloned().or_else(|| r.attrs.entra_object_id.clone()),
                reason,
            });
        }
    }

    fn skip(&mut self, j: usize, reason: SkipReason) {
        let e = &self.users[j];
        let user_name = match &self.names[j] {
            Ok(n) => Some(n.as_str().to_owned()),
            Err(_) => e.user_principal_name.clone().or_else(|| e.mail.clone()),
        };
        self.out.skips.push(PlannedSkip {
            object_id: e.object_id.clone(),
            user_name,
            reason,
        });
    }

    /// The stored user holding `key` when it is this integration's or adoptable and remembers
    /// no object id.
    fn adoptable_by_name(&self, key: &str) -> Option<usize> {
        self.by_name.get(key).copied().filter(|&s| {
            matches!(self.claims[s], Claim::Mine | Claim::Adoptable)
                && self.current[s].attrs.entra_object_id.is_none()
        })
    }

    /// Phase 1: who wants which userName, and which managed users left the scope. Disabled
    /// users only contend for adopting an unlinked stored user (to deprovision it); they never
    /// hold a userName afterwards. The contenders come as (userName key, Entra user) sorted by
    /// key, each key's users in snapshot order: one flat vector rather than a map of 100,000
    /// small vectors.
    fn contenders(&mut self) -> Vec<(&'a str, usize)> {
        let (users, names) = (self.users, self.names);
        let mut contenders: Vec<(&'a str, usize)> = Vec::with_capacity(users.len());
        for (j, e) in users.iter().enumerate() {
            let name = names[j]
                .as_ref()
                .map(UserName::key)
                .map_err(|reason| &**reason);
            if e.is_disabled() {
                if let Some(s) = self.matched[j] {
                    self.deprovision(s, Some(&e.object_id), DeprovisionReason::Deactivated);
                } else if let Ok(key) = name
                    && self.adoptable_by_name(key).is_some()
                {
                    contenders.push((key, j));
                } else if let Err(
                    reason @ (SkipReason::ManagedElsewhere { .. }
                    | SkipReason::KeptByOperator { .. }),
                ) = name
                {
                    self.skip(j, reason.clone());
                } else {
                    self.skip(j, SkipReason::Disabled);
                }
                continue;
            }
            match name {
                Ok(key) => contenders.push((key, j)),
                Err(reason) => self.skip(j, reason.clone()),
            }
        }
        let in_scope: HashSet<&str> = users.iter().map(|e| e.object_id.as_str()).collect();
        for (s, r) in self.current.iter().enumerate() {
            if self.claims[s] == Claim::Mine
                && let Some(o) = &r.attrs.entra_object_id
                && !in_scope.contains(o.as_str())
            {
                let reason = if self.policy.deleted_in_entra.contains(o) {
                    DeprovisionReason::Deleted
                } else {
                    DeprovisionReason::Unassigned
                };
                self.deprovision(s, None, reason);
            }
        }
        contenders.sort_by_key(|(key, _)| *key);
        contenders
    }

    /// Phase 2: one winner per userName — matched by object id and already holding it, else
    /// matched by object id, else the only one; a tie at the best rank has no winner — and what
    /// each winner asks for. A userName held by a foreign stored user is not adopted.
    fn winners(&mut self, contenders: Vec<(&'a str, usize)>) -> Vec<Intent> {
        let (users, current, matched) = (self.users, self.current, self.matched);
        let rank = |j: usize, key: &str| match matched[j] {
            Some(s) if current[s].attrs.user_name.key() == key => 0u8,
            Some(_) => 1,
            None => 2,
        };
        let mut intents: Vec<Intent> = Vec::new();
        let mut js: Vec<usize> = Vec::new();
        for group in contenders.chunk_by(|a, b| a.0 == b.0) {
            let key = group[0].0;
            js.clear();
            js.extend(group.iter().map(|(_, j)| *j));
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
            for &j in &js {
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
                self.skip(j, SkipReason::DuplicateUserName { other });
            }
            let Some(w) = winner else { continue };
            let e = &users[w];
            match (best, matched[w]) {
                (0, Some(s)) => intents.push(Intent::Keep {
                    entra: w,
                    stored: s,
                }),
                (1, Some(s)) => {
                    self.rename_to[s] = Some(key);
                    intents.push(Intent::Rename {
                        entra: w,
                        stored: s,
                    });
                }
                _ => match self.adoptable_by_name(key) {
                    Some(h) if e.is_disabled() => {
                        self.deprovision(h, Some(&e.object_id), DeprovisionReason::Deactivated)
                    }
                    Some(h) => intents.push(Intent::Keep {
                        entra: w,
                        stored: h,
                    }),
                    None if e.is_disabled() => self.skip(w, SkipReason::Disabled),
                    None => intents.push(Intent::Create {
                        entra: w,
                        holder: self.by_name.get(key).copied(),
                    }),
                },
            }
        }
        intents
    }

    /// Phase 3, the deletion threshold (the only place deletions are held). Deprovisionings an
    /// operator approved go ahead; the others are held — all of them, staged for review — when
    /// they are more than the threshold allows over [`DeletionThreshold::base`].
    fn threshold(&mut self) -> Stored<'a> {
        let n = self.current.len();
        let (approved, rest): (Vec<PlannedDeprovision>, Vec<PlannedDeprovision>) =
            std::mem::take(&mut self.deprovisions)
                .into_iter()
                .partition(|d| self.policy.approved.contains(&d.user_id));
        let base = match self.policy.totals {
            Some((managed, in_scope)) => DeletionThreshold::base(managed, in_scope),
            None => DeletionThreshold::base(self.managed, self.users.len()),
        };
        let over = self.policy.threshold.exceeded(rest.len(), base);
        let mut stored = Stored {
            current: self.current,
            by_name: std::mem::take(&mut self.by_name),
            gone: std::mem::take(&mut self.deprovisioned),
            held: vec![false; n],
            rename_to: std::mem::take(&mut self.rename_to),
            resolved: vec![Resolve::Unknown; n],
        };
        if over.is_empty() {
            self.out.deprovisions = approved;
            self.out.deprovisions.extend(rest);
            return stored;
        }
        let index: HashMap<&UserId, usize> = self
            .current
            .iter()
            .enumerate()
            .map(|(i, r)| (&r.id, i))
            .collect();
        for d in &rest {
            if let Some(&s) = index.get(&d.user_id) {
                stored.gone[s] = false;
                stored.held[s] = true;
            }
        }
        self.out.threshold_hit = Some(threshold_message(rest.len(), &over, self.policy));
        self.out.deprovisions = approved;
        self.out.staged = rest;
        stored
    }

    /// Phase 4: the creates and updates, now that it is known which userNames are freed.
    /// Returns, for each planned update, the stored user it updates.
    fn intents(&mut self, intents: Vec<Intent>, stored: &mut Stored<'a>) -> HashMap<usize, usize> {
        let (users, current, policy) = (self.users, self.current, self.policy);
        let mut update_of: HashMap<usize, usize> = HashMap::new();
        for intent in intents {
            let (j, s, check) = match intent {
                Intent::Keep { entra, stored: s } => (entra, Some(s), None),
                Intent::Rename { entra, stored: s } => (entra, Some(s), stored.rename_to[s]),
                Intent::Create { entra, holder } => (entra, None, holder.map(|h| stored.key(h))),
            };
            if let Some(key) = check
                && let Err(reason) = stored.available(key, s, self.claims)
            {
                self.skip(j, reason);
                continue;
            }
            let e = &users[j];
            let mine = |s: usize| self.claims[s] == Claim::Mine;
            if let (Some(s), Ok(name)) = (s, &self.names[j]) {
                let attrs = &current[s].attrs;
                if mine(s) && attrs.entra_object_id.is_some() && in_step(e, name, attrs) {
                    self.out.unchanged += 1;
                    continue;
                }
            }
            // A new user's resource is built when it is created (`overlay` on an empty map), so
            // an initial cycle of a large tenant does not hold every resource at once.
            let desired = match s {
                Some(s) => desired_user(e, &policy.mapping, Some(&current[s].attrs.resource)),
                None => mapped_user(e, &policy.mapping),
            };
            let desired = match desired {
                Ok(d) => d,
                Err(reason) => {
                    self.skip(j, reason);
                    continue;
                }
            };
            let Some(s) = s else {
                self.out.creates.push(PlannedCreate {
                    object_id: e.object_id.clone(),
                    desired,
                    assigned_via: e.assigned_via.clone(),
                });
                continue;
            };
            let record = &current[s];
            let mut changes = diff_attributes(Some(&record.attrs), &desired);
            let adopted = record.attrs.entra_object_id.is_none();
            let adopted_from = (!mine(s)).then(|| self.manager_of(record));
            if changes.is_empty() && !adopted && adopted_from.is_none() {
                self.out.unchanged += 1;
                continue;
            }
            if let Some(from) = &adopted_from {
                changes.push(AttributeChange {
                    attribute: MANAGED_BY.to_owned(),
                    old: Some(from.clone().into()),
                    new: Some(format!("{} (graph)", policy.integration).into()),
                });
            }
            update_of.insert(s, self.out.updates.len());
            self.out.updates.push(PlannedUpdate {
                user_id: record.id.clone(),
                object_id: e.object_id.clone(),
                desired,
                changes,
                expected_version: record.version,
                adopted,
                adopted_from,
            });
        }
        update_of
    }

    /// The previous manager of an adoptable user, for people.
    fn manager_of(&self, record: &UserRecord) -> String {
        match record
            .managed_by
            .as_ref()
            .and_then(|m| self.policy.managers.get(m))
        {
            Some(m) => format!("{} (scim)", m.name),
            None => "none".to_owned(),
        }
    }
}

fn unknown_enabled_note(users: &[EntraUser]) -> Option<String> {
    let unknown = users.iter().filter(|e| e.account_enabled.is_none()).count();
    (unknown > 0).then(|| {
        format!(
            "Graph returned no accountEnabled for {unknown} user(s); they were treated as \
             enabled (the reader should $select accountEnabled)"
        )
    })
}

/// Plans one cycle. See the module documentation for the ownership and matching rules; in
/// short:
/// - disabled Entra users are never created; a stored user they match is deprovisioned
///   (`Deactivated`); a missing `accountEnabled` counts as enabled (and is noted);
/// - a stored user this integration manages whose object id is not in the snapshot is
///   deprovisioned (`Unassigned`, or `Deleted` when Graph says the account is gone); no other
///   stored user is ever deprovisioned for leaving the scope;
/// - two Entra users mapping to one userName: the one matched by object id keeps it (the one
///   already holding it before one being renamed to it); with no such winner both are skipped;
/// - an update is planned only when an attribute changes, the object id must be recorded or the
///   user is adopted from another manager;
/// - more deprovisionings than the threshold allows (not counting approved ones) moves them all
///   to `staged`; creates and updates proceed unless they need a userName a staged one holds.
pub fn plan(snapshot: &Snapshot, current: &[UserRecord], policy: &Policy) -> Plan {
    let users = snapshot.users();
    let claims = claims_of(current, policy);
    let matched = match_by_oid(users, current, &claims);
    let names = names_of(users, current, &claims, &matched, policy);
    let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(current.len());
    for (i, r) in current.iter().enumerate() {
        by_name.entry(r.attrs.user_name.key()).or_insert(i);
    }
    let mut planner = Planner {
        users,
        current,
        policy,
        names: &names,
        claims: &claims,
        matched: &matched,
        by_name,
        deprovisioned: vec![false; current.len()],
        deprovisions: Vec::new(),
        rename_to: vec![None; current.len()],
        managed: claims.iter().filter(|c| **c == Claim::Mine).count(),
        out: Plan::default(),
    };
    planner.out.notes.extend(unknown_enabled_note(users));
    let contenders = planner.contenders();
    let intents = planner.winners(contenders);
    let mut stored = planner.threshold();
    let update_of = planner.intents(intents, &mut stored);
    let mut out = planner.out;
    order::order(&mut out, &stored, &update_of);
    out
}

/// Why the deprovisionings are held, with the numbers and the commands that review them.
fn threshold_message(n: usize, over: &[String], policy: &Policy) -> String {
    let name = if policy.integration.is_empty() {
        "NAME"
    } else {
        policy.integration.as_str()
    };
    format!(
        "deletion threshold reached: this cycle would deprovision {n} user(s), {}; none was \
         deprovisioned, all {n} are staged (creates and updates are not held). Review them with \
         `essentry-sync deletions list --integration {name}`, then approve with `essentry-sync \
         deletions approve --integration {name} --all` (or --user USERNAME ..., or `essentry-sync \
         sync --integration {name} --allow-deletes`) or keep a user with `deletions reject`",
        over.join(" and ")
    )
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ownership;
