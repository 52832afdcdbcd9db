//! The tenant's change log, which the delta queries (`users/delta`, `groups/delta`) read: every
//! directory change the [`super::Tenant`] mutators make, numbered in order. A delta token holds a
//! position in this log; the next round reports what was recorded after it.
//!
//! The log records only while the tenant is served by a simulator: a tenant built beforehand
//! (a benchmark's 100,000 users) starts with an empty log, which is right, since no delta token
//! can predate the server, and the first round of a delta query lists the current state anyway.

use super::graph::USER_PROPS;
use super::state::SimUser;

/// A set of user properties, one bit per entry of [`USER_PROPS`].
pub(super) type PropSet = u32;

/// The bit of a user property (by its canonical name); 0 for unknown names.
pub(super) fn prop_bit(name: &str) -> PropSet {
    USER_PROPS
        .iter()
        .position(|p| *p == name)
        .map_or(0, |i| 1 << i)
}

/// The bits of several properties.
pub(super) fn prop_set<'a>(names: impl IntoIterator<Item = &'a str>) -> PropSet {
    names.into_iter().fold(0, |acc, n| acc | prop_bit(n))
}

/// The user properties whose values differ between `a` and `b`.
pub(super) fn user_diff(a: &SimUser, b: &SimUser) -> PropSet {
    let mut set = 0;
    let mut mark = |changed: bool, name: &str| {
        if changed {
            set |= prop_bit(name);
        }
    };
    mark(a.display_name != b.display_name, "displayName");
    mark(a.given_name != b.given_name, "givenName");
    mark(a.job_title != b.job_title, "jobTitle");
    mark(a.mail != b.mail, "mail");
    mark(a.surname != b.surname, "surname");
    mark(
        a.user_principal_name != b.user_principal_name,
        "userPrincipalName",
    );
    mark(a.account_enabled != b.account_enabled, "accountEnabled");
    mark(a.mail_nickname != b.mail_nickname, "mailNickname");
    mark(a.department != b.department, "department");
    set
}

/// One recorded directory change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Change {
    /// A user was created (every property is new).
    UserCreated(String),
    /// Some of a user's properties changed.
    UserUpdated {
        id: String,
        props: PropSet,
    },
    /// A user was deleted into the recycle bin (restorable).
    UserSoftDeleted(String),
    /// A soft-deleted user was restored (reported like a creation).
    UserRestored(String),
    /// A user was deleted for good.
    UserPurged(String),
    GroupCreated(String),
    GroupRenamed(String),
    /// A group was deleted (security groups are deleted for good).
    GroupDeleted(String),
    /// A member (user, or nested group) joined or left a group.
    Member {
        group: String,
        member: String,
        is_group: bool,
        added: bool,
    },
    /// An app role assignment was granted or removed. Graph has no delta query for these; it is
    /// recorded so that the log is complete.
    Assignment {
        principal: String,
        assigned: bool,
    },
}

/// The numbered changes. Position `n` means "after the first `n` changes".
#[derive(Debug, Clone, Default)]
pub(super) struct ChangeLog {
    recording: bool,
    entries: Vec<Change>,
}

impl ChangeLog {
    /// Starts recording (done when a simulator starts serving the tenant).
    pub fn start_recording(&mut self) {
        self.recording = true;
    }

    pub fn record(&mut self, change: Change) {
        if self.recording {
            self.entries.push(change);
        }
    }

    /// The current position: the number of changes recorded.
    pub fn position(&self) -> u64 {
        self.entries.len() as u64
    }

    /// The changes recorded after `position`.
    pub fn since(&self, position: u64) -> &[Change] {
        let at = usize::try_from(position)
            .unwrap_or(usize::MAX)
            .min(self.entries.len());
        &self.entries[at..]
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn diffs_name_the_changed_properties() {
        let a = SimUser::new("a@x.example").named("A", "B");
        let mut b = a.clone();
        assert_eq!(user_diff(&a, &b), 0);
        b.given_name = Some("C".into());
        b.account_enabled = false;
        assert_eq!(user_diff(&a, &b), prop_set(["givenName", "accountEnabled"]));
        assert_eq!(prop_bit("nope"), 0);
    }

    #[test]
    fn the_log_records_only_once_started() {
        let mut log = ChangeLog::default();
        log.record(Change::UserCreated("a".into()));
        assert_eq!(log.position(), 0);
        log.start_recording();
        log.record(Change::UserCreated("b".into()));
        log.record(Change::UserPurged("b".into()));
        assert_eq!(log.position(), 2);
        assert_eq!(log.since(1), &[Change::UserPurged("b".into())]);
        assert!(log.since(5).is_empty());
    }
}
