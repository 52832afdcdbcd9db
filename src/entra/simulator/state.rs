//! The simulated directory: the tenant's identity (ids, the app registration and its secret),
//! its users, its groups (which may nest), and the app role assignments of our application's
//! service principal. Tests change it between reads to play renames, disables, removals and
//! membership changes.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::changes::{Change, ChangeLog, user_diff};

/// A user object, with the properties the sync reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimUser {
    /// The object id (a GUID).
    pub id: String,
    pub user_principal_name: String,
    pub mail: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub display_name: Option<String>,
    pub mail_nickname: Option<String>,
    pub job_title: Option<String>,
    pub department: Option<String>,
    pub account_enabled: bool,
}

impl SimUser {
    /// An enabled user with a fresh id; the mail nickname is the UPN's local part.
    pub fn new(user_principal_name: &str) -> Self {
        let nickname = user_principal_name
            .split('@')
            .next()
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        Self {
            id: Uuid::new_v4().to_string(),
            user_principal_name: user_principal_name.to_owned(),
            mail: None,
            given_name: None,
            surname: None,
            display_name: None,
            mail_nickname: nickname,
            job_title: None,
            department: None,
            account_enabled: true,
        }
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets given name and surname, and the display name "Given Surname".
    pub fn named(mut self, given_name: &str, surname: &str) -> Self {
        self.given_name = Some(given_name.to_owned());
        self.surname = Some(surname.to_owned());
        self.display_name = Some(format!("{given_name} {surname}"));
        self
    }

    pub fn with_mail(mut self, mail: &str) -> Self {
        self.mail = Some(mail.to_owned());
        self
    }

    pub fn with_job_title(mut self, title: &str) -> Self {
        self.job_title = Some(title.to_owned());
        self
    }

    pub fn in_department(mut self, department: &str) -> Self {
        self.department = Some(department.to_owned());
        self
    }

    pub fn disabled(mut self) -> Self {
        self.account_enabled = false;
        self
    }
}

/// A security group. `members` holds user ids and group ids (nested groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimGroup {
    pub id: String,
    pub display_name: String,
    pub members: Vec<String>,
}

impl SimGroup {
    /// An empty group with a fresh id.
    pub fn new(display_name: &str) -> Self {
        Self {
            id: Uuid::new_v4().to_string(),
            display_name: display_name.to_owned(),
            members: Vec::new(),
        }
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    pub fn with_members<I, S>(mut self, members: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.members = members.into_iter().map(Into::into).collect();
        self
    }
}

/// What kind of principal an app role assignment names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalType {
    User,
    Group,
}

impl PrincipalType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
        }
    }
}

/// One app role assignment granted on our service principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The assignment's own id (Graph uses an opaque 43-character key).
    pub id: String,
    pub principal_id: String,
    pub principal_type: PrincipalType,
    pub created_date_time: DateTime<Utc>,
}

/// A directory object found by id.
pub(super) enum Object<'a> {
    User(&'a SimUser),
    Group(&'a SimGroup),
}

/// A soft-deleted user in the recycle bin, with what a restore gives back.
#[derive(Debug, Clone)]
pub(super) struct Deleted {
    pub user: SimUser,
    /// Groups the user was a direct member of.
    pub groups: Vec<String>,
    pub assigned: bool,
}

/// The simulated tenant. The identity fields are public; the directory changes through methods
/// that keep memberships and assignments consistent (deleting a user also removes it from
/// groups and drops its assignments, as Entra does), and that record each change for the delta
/// queries.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The directory (tenant) id, a GUID.
    pub tenant_id: String,
    /// The initial domain, e.g. `contoso.onmicrosoft.com`; the token endpoint accepts it in
    /// place of the tenant id.
    pub domain: String,
    /// The app registration's application (client) id.
    pub client_id: String,
    pub client_secret: String,
    /// When set, the token endpoint answers AADSTS7000222 (secret expired).
    pub client_secret_expired: bool,
    /// When false, tokens are still issued (as Entra does for the client-credentials grant) but
    /// every Graph call answers 403 `Authorization_RequestDenied`.
    pub admin_consent: bool,
    /// Object id of our application's service principal (the resource of the assignments).
    pub service_principal_id: String,
    /// The app role that assignments grant.
    pub app_role_id: String,
    /// The service principal's display name (`resourceDisplayName` of assignments).
    pub app_display_name: String,
    /// Active users with their ordinals (see `ordinals`).
    users: HashMap<String, (u64, SimUser)>,
    /// Active users by ascending ordinal.
    user_order: Vec<String>,
    groups: Vec<SimGroup>,
    assignments: Vec<Assignment>,
    /// Soft-deleted users (the recycle bin).
    deleted_users: HashMap<String, Deleted>,
    /// A stable position for every group and every user ever added, the order in which delta
    /// queries list objects: here for groups and deleted users (an active user's is in
    /// `users`, which spares a second map of 100,000 keys in a benchmark's tenant).
    ordinals: HashMap<String, u64>,
    next_ordinal: u64,
    pub(super) log: ChangeLog,
}

impl Tenant {
    /// An empty tenant with fresh service principal and app role ids.
    pub fn new(
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            domain: "contoso.onmicrosoft.com".to_owned(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            client_secret_expired: false,
            admin_consent: true,
            service_principal_id: Uuid::new_v4().to_string(),
            app_role_id: Uuid::new_v4().to_string(),
            app_display_name: "essentry".to_owned(),
            users: HashMap::new(),
            user_order: Vec::new(),
            groups: Vec::new(),
            assignments: Vec::new(),
            deleted_users: HashMap::new(),
            ordinals: HashMap::new(),
            next_ordinal: 0,
            log: ChangeLog::default(),
        }
    }

    /// The ordinal of a group, given on first sight.
    fn group_ordinal(&mut self, id: &str) -> u64 {
        if let Some(o) = self.ordinals.get(id) {
            return *o;
        }
        self.next_ordinal += 1;
        self.ordinals.insert(id.to_owned(), self.next_ordinal);
        self.next_ordinal
    }

    /// The ordinal of a user becoming active: its old one when it was deleted, else a new one.
    fn take_user_ordinal(&mut self, id: &str) -> u64 {
        self.ordinals.remove(id).unwrap_or_else(|| {
            self.next_ordinal += 1;
            self.next_ordinal
        })
    }

    /// The delta-query order of a user or group ever added (also after deletion).
    pub(super) fn ordinal(&self, id: &str) -> Option<u64> {
        self.users
            .get(id)
            .map(|(o, _)| *o)
            .or_else(|| self.ordinals.get(id).copied())
    }

    fn active_ordinal(&self, id: &str) -> u64 {
        self.users.get(id).map_or(0, |(o, _)| *o)
    }

    /// Puts an active user's id into `user_order` at its ordinal's place.
    fn insert_in_order(&mut self, id: String, ordinal: u64) {
        let at = self
            .user_order
            .partition_point(|u| self.active_ordinal(u) < ordinal);
        self.user_order.insert(at, id);
    }

    /// Takes an active user out (deleted): its ordinal stays known.
    fn deactivate(&mut self, id: &str) -> Option<SimUser> {
        let (ordinal, user) = self.users.remove(id)?;
        self.ordinals.insert(id.to_owned(), ordinal);
        self.user_order.retain(|u| u != id);
        Some(user)
    }

    /// Adds a user (or replaces the one with the same id) and returns its id. A soft-deleted
    /// user with the same id leaves the recycle bin for good.
    pub fn add_user(&mut self, user: SimUser) -> String {
        let id = user.id.clone();
        if let Some((_, old)) = self.users.get_mut(&id) {
            let props = user_diff(old, &user);
            *old = user;
            if props != 0 {
                self.log.record(Change::UserUpdated {
                    id: id.clone(),
                    props,
                });
            }
            return id;
        }
        self.deleted_users.remove(&id);
        let ordinal = self.take_user_ordinal(&id);
        self.users.insert(id.clone(), (ordinal, user));
        self.insert_in_order(id.clone(), ordinal);
        self.log.record(Change::UserCreated(id.clone()));
        id
    }

    pub fn user(&self, id: &str) -> Option<&SimUser> {
        self.users.get(id).map(|(_, u)| u)
    }

    /// The user with this UPN (case-insensitive).
    pub fn user_by_upn(&self, upn: &str) -> Option<&SimUser> {
        self.users()
            .find(|u| u.user_principal_name.eq_ignore_ascii_case(upn))
    }

    /// Users in the order they were added.
    pub fn users(&self) -> impl Iterator<Item = &SimUser> {
        self.user_order.iter().filter_map(|id| self.user(id))
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Changes a user in place (a rename, a new department...); false when there is no such
    /// user. The id cannot change. The changed properties are recorded for `users/delta`.
    pub fn update_user(&mut self, id: &str, change: impl FnOnce(&mut SimUser)) -> bool {
        let Some((_, user)) = self.users.get_mut(id) else {
            return false;
        };
        let before = user.clone();
        change(user);
        user.id = id.to_owned();
        let props = user_diff(&before, user);
        if props != 0 {
            self.log.record(Change::UserUpdated {
                id: id.to_owned(),
                props,
            });
        }
        true
    }

    /// Sets `accountEnabled` to false; false when there is no such user.
    pub fn disable_user(&mut self, id: &str) -> bool {
        self.update_user(id, |u| u.account_enabled = false)
    }

    /// Deletes a user for good (also from the recycle bin), with its group memberships and its
    /// assignments. `users/delta` reports it `@removed` with reason `deleted`.
    pub fn remove_user(&mut self, id: &str) -> Option<SimUser> {
        let user = match self.deactivate(id) {
            Some(user) => {
                self.forget_principal(id, false);
                user
            }
            None => self.deleted_users.remove(id)?.user,
        };
        self.log.record(Change::UserPurged(id.to_owned()));
        Some(user)
    }

    /// Deletes a user into the recycle bin (Entra's default delete): it leaves every group and
    /// loses its assignments, and `users/delta` reports it `@removed` with reason `changed`.
    /// False when there is no such active user.
    pub fn soft_delete_user(&mut self, id: &str) -> bool {
        let Some(user) = self.deactivate(id) else {
            return false;
        };
        let groups = self
            .groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m == id))
            .map(|g| g.id.clone())
            .collect();
        let assigned = self.is_assigned(id);
        self.forget_principal(id, false);
        self.deleted_users.insert(
            id.to_owned(),
            Deleted {
                user,
                groups,
                assigned,
            },
        );
        self.log.record(Change::UserSoftDeleted(id.to_owned()));
        true
    }

    /// Restores a soft-deleted user with its group memberships (of groups that still exist)
    /// and its assignment. False when the recycle bin has no such user.
    pub fn restore_user(&mut self, id: &str) -> bool {
        let Some(deleted) = self.deleted_users.remove(id) else {
            return false;
        };
        let ordinal = self.take_user_ordinal(id);
        self.users.insert(id.to_owned(), (ordinal, deleted.user));
        self.insert_in_order(id.to_owned(), ordinal);
        self.log.record(Change::UserRestored(id.to_owned()));
        for g in &deleted.groups {
            self.add_member(g, id);
        }
        if deleted.assigned {
            self.assign(id);
        }
        true
    }

    /// Active users with their ordinals, in ordinal order, from the first whose ordinal is at
    /// least `ordinal`.
    pub(super) fn users_from(&self, ordinal: u64) -> impl Iterator<Item = (u64, &SimUser)> {
        let at = self
            .user_order
            .partition_point(|id| self.active_ordinal(id) < ordinal);
        self.user_order[at..].iter().filter_map(move |id| {
            let (o, u) = self.users.get(id)?;
            Some((*o, u))
        })
    }

    /// A soft-deleted user in the recycle bin.
    pub fn deleted_user(&self, id: &str) -> Option<&SimUser> {
        self.deleted_users.get(id).map(|d| &d.user)
    }

    /// Whether a user with this id is in the recycle bin.
    pub(super) fn is_soft_deleted(&self, id: &str) -> bool {
        self.deleted_users.contains_key(id)
    }

    /// The position of the change log (the number of changes recorded since the simulator
    /// started): tests compare it before and after a step to see whether it changed anything.
    pub fn change_position(&self) -> u64 {
        self.log.position()
    }

    /// Adds a group (or replaces the one with the same id: its name and members) and returns
    /// its id.
    pub fn add_group(&mut self, group: SimGroup) -> String {
        let id = group.id.clone();
        if self.group(&id).is_some() {
            self.rename_group(&id, &group.display_name);
            self.set_members(&id, group.members);
            return id;
        }
        self.group_ordinal(&id);
        self.log.record(Change::GroupCreated(id.clone()));
        let members = group.members.clone();
        self.groups.push(group);
        for m in &members {
            self.record_member(&id, m, true);
        }
        id
    }

    /// Records a membership change; the member's kind is read from the directory.
    fn record_member(&mut self, group: &str, member: &str, added: bool) {
        let is_group = self.group(member).is_some();
        self.log.record(Change::Member {
            group: group.to_owned(),
            member: member.to_owned(),
            is_group,
            added,
        });
    }

    pub fn group(&self, id: &str) -> Option<&SimGroup> {
        self.groups.iter().find(|g| g.id == id)
    }

    pub fn groups(&self) -> impl Iterator<Item = &SimGroup> {
        self.groups.iter()
    }

    /// Renames a group; false when there is no such group.
    pub fn rename_group(&mut self, id: &str, display_name: &str) -> bool {
        let Some(g) = self.groups.iter_mut().find(|g| g.id == id) else {
            return false;
        };
        if g.display_name != display_name {
            g.display_name = display_name.to_owned();
            self.log.record(Change::GroupRenamed(id.to_owned()));
        }
        true
    }

    /// Deletes a group, its membership in other groups and its assignments.
    pub fn remove_group(&mut self, id: &str) -> Option<SimGroup> {
        let at = self.groups.iter().position(|g| g.id == id)?;
        let group = self.groups.remove(at);
        self.forget_principal(id, true);
        self.log.record(Change::GroupDeleted(id.to_owned()));
        Some(group)
    }

    /// Replaces a group's members; false when there is no such group. Members that left and
    /// joined are recorded for `groups/delta`.
    pub fn set_members<I, S>(&mut self, group_id: &str, members: I) -> bool
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let new: Vec<String> = members.into_iter().map(Into::into).collect();
        let Some(g) = self.groups.iter_mut().find(|g| g.id == group_id) else {
            return false;
        };
        let old = std::mem::replace(&mut g.members, new.clone());
        let old_set: HashSet<&str> = old.iter().map(String::as_str).collect();
        let new_set: HashSet<&str> = new.iter().map(String::as_str).collect();
        for m in old.iter().filter(|m| !new_set.contains(m.as_str())) {
            self.record_member(group_id, m, false);
        }
        for m in new.iter().filter(|m| !old_set.contains(m.as_str())) {
            self.record_member(group_id, m, true);
        }
        true
    }

    /// Adds one member (user or group id) unless already there; false when there is no group.
    pub fn add_member(&mut self, group_id: &str, member_id: &str) -> bool {
        let Some(g) = self.groups.iter_mut().find(|g| g.id == group_id) else {
            return false;
        };
        if !g.members.iter().any(|m| m == member_id) {
            g.members.push(member_id.to_owned());
            self.record_member(group_id, member_id, true);
        }
        true
    }

    /// Removes one member; false when the group or the membership does not exist.
    pub fn remove_member(&mut self, group_id: &str, member_id: &str) -> bool {
        let Some(g) = self.groups.iter_mut().find(|g| g.id == group_id) else {
            return false;
        };
        let before = g.members.len();
        g.members.retain(|m| m != member_id);
        let removed = g.members.len() != before;
        if removed {
            self.record_member(group_id, member_id, false);
        }
        removed
    }

    /// Assigns the app role to a user or group (idempotent). False when no such principal.
    pub fn assign(&mut self, principal_id: &str) -> bool {
        let principal_type = if self.users.contains_key(principal_id) {
            PrincipalType::User
        } else if self.group(principal_id).is_some() {
            PrincipalType::Group
        } else {
            return false;
        };
        if !self.is_assigned(principal_id) {
            self.assignments.push(Assignment {
                id: assignment_id(),
                principal_id: principal_id.to_owned(),
                principal_type,
                created_date_time: Utc::now(),
            });
            self.log.record(Change::Assignment {
                principal: principal_id.to_owned(),
                assigned: true,
            });
        }
        true
    }

    /// Appends an assignment without checks (bulk generation of known-new principals).
    pub(super) fn assign_new(&mut self, principal_id: &str, group: bool) {
        self.assignments.push(Assignment {
            id: assignment_id(),
            principal_id: principal_id.to_owned(),
            principal_type: if group {
                PrincipalType::Group
            } else {
                PrincipalType::User
            },
            created_date_time: Utc::now(),
        });
        self.log.record(Change::Assignment {
            principal: principal_id.to_owned(),
            assigned: true,
        });
    }

    /// Removes the principal's assignment; false when it had none.
    pub fn unassign(&mut self, principal_id: &str) -> bool {
        let before = self.assignments.len();
        self.assignments.retain(|a| a.principal_id != principal_id);
        let removed = self.assignments.len() != before;
        if removed {
            self.log.record(Change::Assignment {
                principal: principal_id.to_owned(),
                assigned: false,
            });
        }
        removed
    }

    pub fn is_assigned(&self, principal_id: &str) -> bool {
        self.assignments
            .iter()
            .any(|a| a.principal_id == principal_id)
    }

    pub fn assignments(&self) -> &[Assignment] {
        &self.assignments
    }

    /// The user members of a group (no nesting), in membership order.
    pub fn direct_user_members(&self, group_id: &str) -> Option<Vec<&SimUser>> {
        let group = self.group(group_id)?;
        Some(group.members.iter().filter_map(|m| self.user(m)).collect())
    }

    /// Every user reached through the group and its nested groups, each once (cycles are safe).
    pub fn transitive_user_members(&self, group_id: &str) -> Option<Vec<&SimUser>> {
        let objects = self.transitive_members(group_id)?;
        Some(
            objects
                .into_iter()
                .filter_map(|o| match o {
                    Object::User(u) => Some(u),
                    Object::Group(_) => None,
                })
                .collect(),
        )
    }

    /// The users the sync should provision: assigned directly, or members of an assigned group;
    /// with `nested`, also members of groups nested in an assigned group. (Entra itself does not
    /// extend an app assignment to nested groups; a sync may choose to.) Ids, each once, in
    /// assignment order.
    pub fn effective_assigned_users(&self, nested: bool) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for a in &self.assignments {
            let users = match a.principal_type {
                PrincipalType::User => self.user(&a.principal_id).into_iter().collect(),
                PrincipalType::Group if nested => self
                    .transitive_user_members(&a.principal_id)
                    .unwrap_or_default(),
                PrincipalType::Group => self
                    .direct_user_members(&a.principal_id)
                    .unwrap_or_default(),
            };
            for u in users {
                if seen.insert(u.id.as_str()) {
                    out.push(u.id.clone());
                }
            }
        }
        out
    }

    /// The groups `member_id` is a member of: directly, or (with `transitive`) also through
    /// nesting; in group order, each once.
    pub fn groups_of(&self, member_id: &str, transitive: bool) -> Vec<&SimGroup> {
        let mut found: HashSet<&str> = HashSet::new();
        let mut frontier = vec![member_id];
        while let Some(id) = frontier.pop() {
            for g in self.groups() {
                if g.members.iter().any(|m| m == id) && found.insert(g.id.as_str()) && transitive {
                    frontier.push(g.id.as_str());
                }
            }
        }
        self.groups()
            .filter(|g| found.contains(g.id.as_str()))
            .collect()
    }

    /// A user or group by id.
    pub(super) fn object(&self, id: &str) -> Option<Object<'_>> {
        if let Some(u) = self.user(id) {
            return Some(Object::User(u));
        }
        self.group(id).map(Object::Group)
    }

    /// The direct members of a group that exist (users and groups), in order.
    pub(super) fn direct_members(&self, group_id: &str) -> Option<Vec<Object<'_>>> {
        let group = self.group(group_id)?;
        Some(
            group
                .members
                .iter()
                .filter_map(|m| self.object(m))
                .collect(),
        )
    }

    /// Users and nested groups under a group, depth first, each once; the group itself is left
    /// out even when a cycle leads back to it.
    pub(super) fn transitive_members(&self, group_id: &str) -> Option<Vec<Object<'_>>> {
        let root = self.group(group_id)?;
        let mut seen: HashSet<&str> = HashSet::new();
        seen.insert(root.id.as_str());
        let mut out = Vec::new();
        // An explicit stack of member iterators keeps deep nesting off the call stack.
        let mut stack = vec![root.members.iter()];
        while let Some(top) = stack.last_mut() {
            let Some(member) = top.next() else {
                stack.pop();
                continue;
            };
            if !seen.insert(member.as_str()) {
                continue;
            }
            match self.object(member) {
                Some(Object::User(u)) => out.push(Object::User(u)),
                Some(Object::Group(g)) => {
                    out.push(Object::Group(g));
                    stack.push(g.members.iter());
                }
                None => {}
            }
        }
        Some(out)
    }

    /// The display name shown as `principalDisplayName`.
    pub(super) fn principal_display_name(&self, id: &str) -> Option<String> {
        match self.object(id)? {
            Object::User(u) => Some(
                u.display_name
                    .clone()
                    .unwrap_or_else(|| u.user_principal_name.clone()),
            ),
            Object::Group(g) => Some(g.display_name.clone()),
        }
    }

    /// Drops a deleted principal from every group and its assignments, recording both.
    fn forget_principal(&mut self, id: &str, is_group: bool) {
        let mut left = Vec::new();
        for g in &mut self.groups {
            let before = g.members.len();
            g.members.retain(|m| m != id);
            if g.members.len() != before {
                left.push(g.id.clone());
            }
        }
        for group in left {
            self.log.record(Change::Member {
                group,
                member: id.to_owned(),
                is_group,
                added: false,
            });
        }
        // `unassign` records the assignment's removal, if there was one.
        self.unassign(id);
    }
}

/// An opaque, URL-safe 43-character key like the ids Graph gives app role assignments.
fn assignment_id() -> String {
    let a = Uuid::new_v4().simple().to_string();
    let b = Uuid::new_v4().simple().to_string();
    a.chars().chain(b.chars()).take(43).collect()
}
