//! The Graph pull sync's delta state (queries in `backend_delta.rs`): per integration, the delta
//! links its next incremental cycle follows, the assignments they continue from, the settings
//! fingerprint and the time of the last full reconcile ([`DeltaState`]); and who is in the
//! integration's scope, through what ([`ScopeMember`]). Both are rewritten only inside the
//! transaction of a cycle's apply, so a failed cycle leaves them as they were.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Store, Tx, db_err, postgres, sqlite};
use crate::domain::{AccountId, IntegrationId, StoreError, UserRecord};

/// One `groups/delta` query: at most 50 assigned groups (`$filter=id eq '…' or …`) and its link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupsLink {
    /// Object ids (lowercase) the link's filter names. A group unassigned since stays in the
    /// filter (its changes are ignored) until the next full read.
    pub groups: Vec<String>,
    pub link: String,
}

/// The application's assignments when the state was taken.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedScope {
    /// Users assigned directly (lowercase object ids).
    pub direct: Vec<String>,
    /// Groups assigned (lowercase object id, display name).
    pub groups: Vec<(String, Option<String>)>,
}

/// Where an integration's incremental cycles continue from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaState {
    /// `users/delta` (`$select` of the mapped attributes).
    pub users_link: String,
    pub groups_links: Vec<GroupsLink>,
    pub assignments: AssignedScope,
    /// Of the settings that force a full read when they change.
    pub fingerprint: String,
    /// When the last full reconcile read the scope.
    pub full_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One user in an integration's scope, and through what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeMember {
    /// Lowercase object id.
    pub object_id: String,
    pub direct: bool,
    /// The assigned groups the user is a member of (lowercase object ids).
    pub groups: Vec<String>,
    /// `users/delta` reported the account deleted (`@removed`); out of scope until it returns.
    pub removed: bool,
    /// The last plan skipped the user: the next incremental cycle plans it again.
    pub pending: bool,
}

impl ScopeMember {
    /// In scope: not removed, and assigned directly or through a group.
    pub fn in_scope(&self) -> bool {
        !self.removed && (self.direct || !self.groups.is_empty())
    }
}

impl Store {
    pub async fn delta_state(
        &self,
        integration: &IntegrationId,
    ) -> Result<Option<DeltaState>, StoreError> {
        read!(self, |c, m| m::delta_state(c, integration).await)
    }

    /// The scope rows of `ids` (lowercase object ids); ids without a row are not returned.
    pub async fn scope_members(
        &self,
        integration: &IntegrationId,
        ids: &[String],
    ) -> Result<Vec<ScopeMember>, StoreError> {
        read!(self, |c, m| m::scope_members(c, integration, ids).await)
    }

    /// The scope rows that list `group` among their groups.
    pub async fn scope_members_of_group(
        &self,
        integration: &IntegrationId,
        group: &str,
    ) -> Result<Vec<ScopeMember>, StoreError> {
        read!(self, |c, m| m::scope_members_where(
            c,
            integration,
            Some(group)
        )
        .await)
    }

    /// The scope rows the last plan skipped.
    pub async fn pending_scope_members(
        &self,
        integration: &IntegrationId,
    ) -> Result<Vec<ScopeMember>, StoreError> {
        read!(self, |c, m| m::scope_members_where(c, integration, None)
            .await)
    }

    /// How many users are in the integration's scope.
    pub async fn scope_size(&self, integration: &IntegrationId) -> Result<i64, StoreError> {
        read!(self, |c, m| m::scope_size(c, integration).await)
    }

    /// Stored users (typed attributes, `resource` empty) remembering one of the object ids.
    pub async fn users_light_by_object_ids(
        &self,
        account: &AccountId,
        ids: &[String],
    ) -> Result<Vec<UserRecord>, StoreError> {
        read!(self, |c, m| m::users_light_by_object_ids(c, account, ids)
            .await)
    }

    /// Stored users (typed attributes, `resource` empty) holding one of the userName keys.
    pub async fn users_light_by_name_keys(
        &self,
        account: &AccountId,
        keys: &[String],
    ) -> Result<Vec<UserRecord>, StoreError> {
        read!(self, |c, m| m::users_light_by_name_keys(c, account, keys)
            .await)
    }

    /// How many users of the account `integration` manages.
    pub async fn count_managed(
        &self,
        account: &AccountId,
        integration: &IntegrationId,
    ) -> Result<i64, StoreError> {
        read!(self, |c, m| m::count_managed(c, account, integration).await)
    }
}

impl Tx {
    pub async fn put_delta_state(
        &mut self,
        integration: &IntegrationId,
        state: &DeltaState,
    ) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::put_delta_state(c, integration, state).await)
    }

    /// Forgets the delta state and scope rows: the next cycle is a full read.
    pub async fn clear_delta_state(
        &mut self,
        integration: &IntegrationId,
    ) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::clear_delta_state(c, integration).await)
    }

    pub async fn put_scope_members(
        &mut self,
        integration: &IntegrationId,
        members: &[&ScopeMember],
    ) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::put_scope_members(c, integration, members)
            .await)
    }

    pub async fn delete_scope_members(
        &mut self,
        integration: &IntegrationId,
        ids: &[String],
    ) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::delete_scope_members(c, integration, ids)
            .await)
    }

    /// Makes the integration's scope rows exactly `members` (one per object id; best sorted by
    /// object id), writing only the rows that differ, without loading the stored rows all at
    /// once. Returns the rows written and deleted.
    pub async fn replace_scope_members(
        &mut self,
        integration: &IntegrationId,
        members: &[ScopeMember],
    ) -> Result<(usize, usize), StoreError> {
        in_tx!(self, |c, m| m::replace_scope_members(
            c,
            integration,
            members
        )
        .await)
    }

    pub async fn clear_scope(&mut self, integration: &IntegrationId) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::clear_scope(c, integration).await)
    }
}
