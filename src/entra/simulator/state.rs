//! The simulated directory: the tenant's identity (ids, the app registration and its secret),
//! its users, its groups (which may nest), and the app role assignments of our application's
//! service principal. Tests change it between reads to play renames, disables, removals and
//! membership changes.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

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

/// The simulated tenant. The identity fields are public; the directory changes through methods
/// that keep memberships and assignments consistent (deleting a user also removes it from
/// groups and drops its assignments, as Entra does).
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
    users: HashMap<String, SimUser>,
    user_order: Vec<String>,
    groups: Vec<SimGroup>,
    assignments: Vec<Assignment>,
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
        }
    }

    /// Adds a user (or replaces the one with the same id) and returns its id.
    pub fn add_user(&mut self, user: SimUser) -> String {
        let id = user.id.clone();
        if self.users.insert(id.clone(), user).is_none() {
            self.user_order.push(id.clone());
        }
        id
    }

    pub fn user(&self, id: &str) -> Option<&SimUser> {
        self.users.get(id)
    }

    /// The user with this UPN (case-insensitive).
    pub fn user_by_upn(&self, upn: &str) -> Option<&SimUser> {
        self.users()
            .find(|u| u.user_principal_name.eq_ignore_ascii_case(upn))
    }

    /// Users in the order they were added.
    pub fn users(&self) -> impl Iterator<Item = &SimUser> {
        self.user_order.iter().filter_map(|id| self.users.get(id))
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Changes a user in place; false when there is no such user. The id cannot change.
    pub fn update_user(&mut self, id: &str, change: impl FnOnce(&mut SimUser)) -> bool {
        let Some(user) = self.users.get_mut(id) else {
            return false;
        };
        change(user);
        user.id = id.to_owned();
        true
    }

    /// Deletes a user, its group memberships and its assignments.
    pub fn remove_user(&mut self, id: &str) -> Option<SimUser> {
        let user = self.users.remove(id)?;
        self.user_order.retain(|u| u != id);
        self.forget_principal(id);
        Some(user)
    }

    /// Adds a group (or replaces the one with the same id) and returns its id.
    pub fn add_group(&mut self, group: SimGroup) -> String {
        let id = group.id.clone();
        match self.groups.iter_mut().find(|g| g.id == id) {
            Some(existing) => *existing = group,
            None => self.groups.push(group),
        }
        id
    }

    pub fn group(&self, id: &str) -> Option<&SimGroup> {
        self.groups.iter().find(|g| g.id == id)
    }

    pub fn groups(&self) -> impl Iterator<Item = &SimGroup> {
        self.groups.iter()
    }

    /// Renames a group; false when there is no such group.
    pub fn rename_group(&mut self, id: &str, display_name: &str) -> bool {
        match self.groups.iter_mut().find(|g| g.id == id) {
            Some(g) => {
                g.display_name = display_name.to_owned();
                true
            }
            None => false,
        }
    }

    /// Deletes a group, its membership in other groups and its assignments.
    pub fn remove_group(&mut self, id: &str) -> Option<SimGroup> {
        let at = self.groups.iter().position(|g| g.id == id)?;
        let group = self.groups.remove(at);
        self.forget_principal(id);
        Some(group)
    }

    /// Replaces a group's members; false when there is no such group.
    pub fn set_members<I, S>(&mut self, group_id: &str, members: I) -> bool
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        match self.groups.iter_mut().find(|g| g.id == group_id) {
            Some(g) => {
                g.members = members.into_iter().map(Into::into).collect();
                true
            }
            None => false,
        }
    }

    /// Adds one member (user or group id) unless already there; false when there is no group.
    pub fn add_member(&mut self, group_id: &str, member_id: &str) -> bool {
        match self.groups.iter_mut().find(|g| g.id == group_id) {
            Some(g) => {
                if !g.members.iter().any(|m| m == member_id) {
                    g.members.push(member_id.to_owned());
                }
                true
            }
            None => false,
        }
    }

    /// Removes one member; false when the group or the membership does not exist.
    pub fn remove_member(&mut self, group_id: &str, member_id: &str) -> bool {
        match self.groups.iter_mut().find(|g| g.id == group_id) {
            Some(g) => {
                let before = g.members.len();
                g.members.retain(|m| m != member_id);
                g.members.len() != before
            }
            None => false,
        }
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
    }

    /// Removes the principal's assignment; false when it had none.
    pub fn unassign(&mut self, principal_id: &str) -> bool {
        let before = self.assignments.len();
        self.assignments.retain(|a| a.principal_id != principal_id);
        self.assignments.len() != before
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
        Some(
            group
                .members
                .iter()
                .filter_map(|m| self.users.get(m))
                .collect(),
        )
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
                PrincipalType::User => self.users.get(&a.principal_id).into_iter().collect(),
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
        if let Some(u) = self.users.get(id) {
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

    /// Drops a deleted principal from every group and its assignments.
    fn forget_principal(&mut self, id: &str) {
        for g in &mut self.groups {
            g.members.retain(|m| m != id);
        }
        self.assignments.retain(|a| a.principal_id != id);
    }
}

/// An opaque, URL-safe 43-character key like the ids Graph gives app role assignments.
fn assignment_id() -> String {
    let a = Uuid::new_v4().simple().to_string();
    let b = Uuid::new_v4().simple().to_string();
    a.chars().chain(b.chars()).take(43).collect()
}
