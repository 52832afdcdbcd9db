//! Neutral records of the directory: users as the rest of the code sees them (whatever pushed or
//! pulled them), appointments with guests, outbox messages and provisioning-log entries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ids::{
    AccountId, AppointmentId, EntraObjectId, GroupId, IntegrationId, UserId, UserName,
};

/// Who asked for a directory change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A SCIM client (Entra's provisioning service, Okta, ...) pushed it.
    Scim,
    /// The Microsoft Graph pull sync decided it.
    Graph,
    /// An operator at the command line.
    Cli,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scim => "scim",
            Self::Graph => "graph",
            Self::Cli => "cli",
        }
    }

    /// The source a stored word names, if any.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "scim" => Some(Self::Scim),
            "graph" => Some(Self::Graph),
            "cli" => Some(Self::Cli),
            _ => None,
        }
    }
}

/// The state a source wants a user to have. `resource` is the SCIM representation as the source
/// sent it (core attributes at the top, extensions under their URN), without `id`, `meta` or
/// `schemas`; the typed fields are what essentry itself uses.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryUser {
    pub user_name: UserName,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub external_id: Option<String>,
    pub active: bool,
    pub entra_object_id: Option<EntraObjectId>,
    pub resource: Map<String, Value>,
}

/// One `emails` entry, kept only so SCIM filters such as `emails[type eq "work"].value` work;
/// essentry never uses it as the login (that is `userName`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailEntry {
    pub kind: Option<String>,
    pub value: Option<String>,
    pub primary: bool,
}

impl DirectoryUser {
    /// The `emails` entries of the resource, in order.
    pub fn emails(&self) -> Vec<EmailEntry> {
        let Some(Value::Array(items)) = self.resource.get("emails") else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(Value::as_object)
            .map(|e| EmailEntry {
                kind: e.get("type").and_then(Value::as_str).map(str::to_owned),
                value: e.get("value").and_then(Value::as_str).map(str::to_owned),
                primary: e.get("primary").and_then(Value::as_bool).unwrap_or(false),
            })
            .collect()
    }
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: UserId,
    pub account_id: AccountId,
    pub attrs: DirectoryUser,
    pub source: Source,
    /// The integration that manages the user: the Graph integration that created or adopted it,
    /// the SCIM integration that created it, or `None` (made by hand, released by an operator,
    /// or its integration was deleted). A Graph cycle deletes only the users it manages.
    pub managed_by: Option<IntegrationId>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A group as stored (members live in their own table and are never loaded with it).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecord {
    pub id: GroupId,
    pub account_id: AccountId,
    pub display_name: String,
    pub external_id: Option<String>,
    pub resource: Map<String, Value>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One attribute that a change set, with its value before and after (`None`: absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeChange {
    pub attribute: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppointmentStatus {
    Scheduled,
    Cancelled,
}

impl AppointmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status a stored word names, if any.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "scheduled" => Some(Self::Scheduled),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guest {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Appointment {
    pub id: AppointmentId,
    pub account_id: AccountId,
    pub host_user_id: Option<UserId>,
    pub host_user_name: String,
    pub host_display: String,
    pub title: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub status: AppointmentStatus,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    pub guests: Vec<Guest>,
}

/// An email to send later, written in the same transaction as the change that caused it. It holds
/// everything a delivery worker needs; `idempotency_key` makes a second enqueue a no-op.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxMessage {
    pub id: String,
    pub account_id: AccountId,
    pub kind: String,
    pub idempotency_key: String,
    pub recipient_email: String,
    pub recipient_name: String,
    pub subject: String,
    pub body_text: String,
    pub appointment_id: Option<AppointmentId>,
    pub payload: Value,
    pub created_at: DateTime<Utc>,
}

/// What a provisioning-log row says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogAction {
    Create,
    Update,
    Delete,
    Skip,
    StagedDelete,
    /// An operator rejected a staged deletion: the user is kept and no longer managed by the
    /// integration.
    DeletionRejected,
}

impl LogAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Skip => "skip",
            Self::StagedDelete => "staged_delete",
            Self::DeletionRejected => "deletion_rejected",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStatus {
    Success,
    Failure,
    Skipped,
}

impl LogStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Skipped => "skipped",
        }
    }
}

/// One user-level provisioning event, from a SCIM request, a pull cycle or the CLI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogEntry {
    pub id: String,
    pub account_id: AccountId,
    pub integration_id: Option<IntegrationId>,
    pub cycle_id: Option<String>,
    pub source: Source,
    pub action: LogAction,
    pub status: LogStatus,
    pub user_id: Option<UserId>,
    pub user_name: Option<String>,
    pub source_object_id: Option<String>,
    pub modified: Vec<AttributeChange>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub duration_ms: Option<i64>,
    pub at: DateTime<Utc>,
}
