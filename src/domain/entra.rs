//! The Entra side as the directory sees it: a user read from Microsoft Graph, how it came into
//! the application's scope, and the [`Snapshot`] of one complete read. The Graph reader
//! (`entra::graph`) produces these; the planner (`sync::plan`) consumes them.

use std::collections::HashMap;

use super::ids::EntraObjectId;

/// How a user came into the application's scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Assignment {
    /// Assigned to the application directly.
    Direct,
    /// A member of a group assigned to the application.
    Group {
        group_id: EntraObjectId,
        group_name: Option<String>,
    },
}

/// A user as the Graph reader returns it (the `$select`ed attributes; `None` when Graph returned
/// null or did not return the attribute).
#[derive(Debug, Clone, PartialEq)]
pub struct EntraUser {
    pub object_id: EntraObjectId,
    pub user_principal_name: Option<String>,
    pub mail: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub display_name: Option<String>,
    pub mail_nickname: Option<String>,
    /// `None`: not returned (missing from `$select`); the planner treats it as enabled.
    pub account_enabled: Option<bool>,
    /// Why the user is in scope; one entry per direct or group assignment.
    pub assigned_via: Vec<Assignment>,
}

impl EntraUser {
    /// `accountEnabled` is explicitly false. A missing value counts as enabled.
    pub fn is_disabled(&self) -> bool {
        self.account_enabled == Some(false)
    }
}

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
