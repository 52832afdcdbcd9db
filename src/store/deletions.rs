//! [`Store`] and [`Tx`] methods for ownership and the deletion review (queries in
//! `backend_deletions.rs`): staged deletions, the last complete read of an integration's scope,
//! and the users an operator kept.

use chrono::{DateTime, Utc};

use super::{Store, Tx, db_err, postgres, sqlite};
use crate::domain::{AccountId, IntegrationId, StagedDeletion, StoreError, UserId};

impl Store {
    /// Staged deletions of the account, of one integration when given.
    pub async fn list_staged(
        &self,
        account: &AccountId,
        integration: Option<&IntegrationId>,
    ) -> Result<Vec<StagedDeletion>, StoreError> {
        read!(self, |c, m| m::list_staged(c, account, integration).await)
    }

    /// The cycle id and time of the integration's last complete read.
    pub async fn last_scope_read(
        &self,
        integration: &IntegrationId,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        read!(self, |c, m| m::last_scope_read(c, integration).await)
    }

    /// The ids of the users an operator kept from `integration`.
    pub async fn rejected_users(
        &self,
        integration: &IntegrationId,
    ) -> Result<Vec<UserId>, StoreError> {
        let ids = read!(self, |c, m| m::rejected_users(c, integration).await)?;
        Ok(ids.into_iter().map(UserId::from_trusted).collect())
    }
}

impl Tx {
    pub async fn list_staged(
        &mut self,
        account: &AccountId,
        integration: Option<&IntegrationId>,
    ) -> Result<Vec<StagedDeletion>, StoreError> {
        in_tx!(self, |c, m| m::list_staged(c, account, integration).await)
    }

    /// Writes a staged deletion (replacing the one of the same integration and user).
    pub async fn put_staged(&mut self, row: &StagedDeletion) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::put_staged(c, row).await)
    }

    pub async fn delete_staged(&mut self, id: &str) -> Result<bool, StoreError> {
        in_tx!(self, |c, m| m::delete_staged(c, id).await)
    }

    pub async fn mark_staged_checked(
        &mut self,
        ids: &[String],
        cycle_id: &str,
    ) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::mark_staged_checked(c, ids, cycle_id).await)
    }

    pub async fn record_scope_read(
        &mut self,
        integration: &IntegrationId,
        cycle_id: &str,
        at: DateTime<Utc>,
        users_in_scope: i64,
    ) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::record_scope_read(
            c,
            integration,
            cycle_id,
            at,
            users_in_scope
        )
        .await)
    }

    pub async fn last_scope_read(
        &mut self,
        integration: &IntegrationId,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        in_tx!(self, |c, m| m::last_scope_read(c, integration).await)
    }

    /// Clears `integration`'s ownership of `user`, remembers that it must leave the user alone,
    /// and drops the user's staged deletion.
    pub async fn reject_deletion(
        &mut self,
        integration: &IntegrationId,
        user: &UserId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        in_tx!(self, |c, m| m::reject_deletion(c, integration, user, at)
            .await)
    }

    /// Upcoming appointments `user` hosts and their guests (what a deletion would cancel/email).
    pub async fn upcoming_counts(
        &mut self,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<(i64, i64), StoreError> {
        in_tx!(self, |c, m| m::upcoming_counts(c, user, now).await)
    }
}
