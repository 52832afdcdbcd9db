//! Deletion review: the accidental-deletion threshold a Graph integration is configured with,
//! and the staged deletions an operator approves or rejects one user at a time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::directory::DeprovisionReason;
use super::ids::{AccountId, EntraObjectId, IntegrationId, UserId};

/// How many deprovisionings one cycle may apply without an operator's approval. A cycle that
/// would deprovision *more* than either limit is held (`None`: no limit of that kind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeletionThreshold {
    pub max_count: Option<usize>,
    /// Percent of the threshold base: the users this integration manages, or the users in scope
    /// when that is more (see [`DeletionThreshold::base`]).
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

impl DeletionThreshold {
    /// What the percent limit is taken of: the users the integration manages before the cycle,
    /// or the users in scope of the read when that is more. On a first cycle (nothing managed
    /// yet, everyone about to be created or adopted) the base is the scope, never 0; a read that
    /// lost most of the scope still divides by the managed users it would delete.
    pub fn base(managed: usize, in_scope: usize) -> usize {
        managed.max(in_scope)
    }

    /// Why `n` deprovisionings over `base` are too many, one phrase per limit exceeded; empty
    /// when they may proceed.
    pub fn exceeded(&self, n: usize, base: usize) -> Vec<String> {
        let mut over = Vec::new();
        if n == 0 {
            return over;
        }
        if let Some(max) = self.max_count
            && n > max
        {
            over.push(format!("more than the limit of {max} users"));
        }
        if let Some(max) = self.max_percent
            && (n as f64) > max * base as f64 / 100.0
        {
            let share = if base == 0 {
                "all".to_owned()
            } else {
                format!("{:.1}%", n as f64 * 100.0 / base as f64)
            };
            over.push(format!(
                "{share} of the {base} users managed by this integration, more than the limit \
                 of {max}%"
            ));
        }
        over
    }
}

/// Why a Graph integration deletes a user it manages, as the deletion review shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StagedReason {
    /// No longer assigned to the application (directly or through a group).
    Unassigned,
    /// Disabled in Entra (accountEnabled = false).
    Disabled,
    /// The Entra account no longer exists.
    DeletedInEntra,
}

impl StagedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unassigned => "unassigned",
            Self::Disabled => "disabled",
            Self::DeletedInEntra => "deleted_in_entra",
        }
    }

    /// The stored text back; unknown text reads as `Unassigned`.
    pub fn parse(value: &str) -> Self {
        match value {
            "disabled" => Self::Disabled,
            "deleted_in_entra" => Self::DeletedInEntra,
            _ => Self::Unassigned,
        }
    }

    pub fn from_deprovision(reason: DeprovisionReason) -> Self {
        match reason {
            DeprovisionReason::Unassigned => Self::Unassigned,
            DeprovisionReason::Deactivated => Self::Disabled,
            DeprovisionReason::Deleted => Self::DeletedInEntra,
        }
    }

    pub fn deprovision_reason(self) -> DeprovisionReason {
        match self {
            Self::Unassigned => DeprovisionReason::Unassigned,
            Self::Disabled => DeprovisionReason::Deactivated,
            Self::DeletedInEntra => DeprovisionReason::Deleted,
        }
    }
}

/// One deletion a held cycle staged for review. It stays until an operator approves or rejects
/// it, a later complete read finds the user back in scope (the row is removed), or it expires
/// (`expires_at`; a cycle that still finds the deletion due stages it again).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StagedDeletion {
    pub id: String,
    pub account_id: AccountId,
    pub integration_id: IntegrationId,
    /// The integration's name (for people).
    pub integration: String,
    pub user_id: UserId,
    pub user_name: String,
    pub object_id: Option<EntraObjectId>,
    pub reason: StagedReason,
    /// Upcoming appointments the deletion would cancel, and the guests it would email.
    pub appointments: i64,
    pub guests: i64,
    pub staged_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The cycle whose complete read last found the deletion still due.
    pub checked_cycle_id: String,
}

impl StagedDeletion {
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now
    }
}
