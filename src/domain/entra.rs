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
    pub fn complete(mut users: Vec<EntraUser>) -> Self {
        // In place: a second vector of 100,000 users would double the read's peak memory.
        let mut first: HashMap<&str, usize> = HashMap::with_capacity(users.len());
        let mut duplicate_of: Vec<Option<usize>> = Vec::new();
        for (i, user) in users.iter().enumerate() {
            match first.get(user.object_id.as_str()) {
                Some(&f) => {
                    duplicate_of.resize(users.len(), None);
                    duplicate_of[i] = Some(f);
                }
                None => {
                    first.insert(user.object_id.as_str(), i);
                }
            }
        }
        drop(first);
        if duplicate_of.is_empty() {
            return Self { users };
        }
        for (i, f) in duplicate_of.iter().enumerate() {
            let Some(f) = *f else { continue };
            let via = std::mem::take(&mut users[i].assigned_via);
            let kept = &mut users[f].assigned_via;
            for a in via {
                if !kept.contains(&a) {
                    kept.push(a);
                }
            }
        }
        let mut index = 0;
        users.retain(|_| {
            let keep = duplicate_of[index].is_none();
            index += 1;
            keep
        });
        Self { users }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn user(oid: &str, given: &str, via: Vec<Assignment>) -> EntraUser {
        EntraUser {
            object_id: EntraObjectId::parse(oid).expect("oid"),
            user_principal_name: Some(format!("{given}@example.com")),
            mail: None,
            given_name: Some(given.to_owned()),
            surname: None,
            display_name: None,
            mail_nickname: None,
            account_enabled: Some(true),
            assigned_via: via,
        }
    }

    #[test]
    fn a_user_read_twice_is_kept_once_with_merged_assignments() {
        let a = "6e7b768e-07e2-4810-8459-485f84f8f204";
        let b = "0c8f1b7e-3d5a-4e6f-9a21-6b4c2d8e7f10";
        let g = |n: &str| Assignment::Group {
            group_id: EntraObjectId::parse("3f2a9c4d-1b6e-4f80-a5d7-9e0c1b2a3d4e").expect("gid"),
            group_name: Some(n.to_owned()),
        };
        let snapshot = Snapshot::complete(vec![
            user(a, "first", vec![Assignment::Direct]),
            user(b, "bob", vec![g("Sales")]),
            user(a, "second", vec![g("Sales"), Assignment::Direct]),
            user(b, "bob-again", vec![g("Sales")]),
        ]);
        assert_eq!(snapshot.len(), 2);
        let users = snapshot.users();
        assert_eq!(users[0].given_name.as_deref(), Some("first"));
        assert_eq!(users[0].assigned_via, vec![Assignment::Direct, g("Sales")]);
        assert_eq!(users[1].given_name.as_deref(), Some("bob"));
        assert_eq!(users[1].assigned_via, vec![g("Sales")]);
        let single = Snapshot::complete(vec![user(a, "only", vec![])]);
        assert_eq!(single.users()[0].given_name.as_deref(), Some("only"));
    }
}
