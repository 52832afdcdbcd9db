//! The records the store reads and writes besides the domain's own: integrations, outbox rows
//! and claims, provisioning-log queries and rows, sync cycles and admin tokens.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::domain::{AccountId, CycleStatus, IntegrationId, IntegrationKind, Trigger};

/// An integration as stored. The token itself is never stored: only its SHA-256 (`token_hash`)
/// for verification and, sealed with the secrets key, for the privacy-mode reveal.
#[derive(Debug, Clone)]
pub struct IntegrationRow {
    pub id: IntegrationId,
    pub account_id: AccountId,
    pub account_name: String,
    pub name: String,
    pub kind: IntegrationKind,
    pub token_hash: Option<Vec<u8>>,
    pub token_hint: Option<String>,
    pub secret_sealed: Option<String>,
    pub settings: Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutboxRow {
    pub id: String,
    pub kind: String,
    pub idempotency_key: String,
    pub recipient_email: String,
    pub recipient_name: String,
    pub subject: String,
    pub body_text: String,
    pub appointment_id: Option<String>,
    pub status: String,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub integration: Option<String>,
    pub user_name: Option<String>,
    pub cycle_id: Option<String>,
    pub status: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogRow {
    pub at: DateTime<Utc>,
    pub integration: Option<String>,
    pub cycle_id: Option<String>,
    pub source: String,
    pub action: String,
    pub status: String,
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub source_object_id: Option<String>,
    pub modified: Value,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub duration_ms: Option<i64>,
}

/// One pull-sync cycle, as recorded. `outcome`: `running`, `success`, `held` (deletions
/// staged by the threshold), `failed` or `interrupted` (its process died).
#[derive(Debug, Clone, Serialize)]
pub struct CycleRow {
    pub id: String,
    pub integration_id: String,
    /// The integration's name (filled in by reads).
    pub integration: Option<String>,
    pub trigger: Trigger,
    pub dry_run: bool,
    pub outcome: CycleStatus,
    /// Counts by action and status, and what the read found.
    pub counts: Value,
    pub graph_requests: i64,
    pub throttled: i64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    /// `full` or `incremental` (`None` for rows written before delta reads, and on-demand runs).
    pub mode: Option<String>,
    /// Why the cycle read the whole scope (`first`, `requested`, `schedule`, `settings`,
    /// `delta_rejected`, `transitive`, ...).
    pub full_reason: Option<String>,
}

/// The key under which a skip or staged-delete log row is remembered.
pub fn skip_key(action: &str, object_id: &str, code: &str) -> String {
    format!("{action}:{}:{code}", object_id.to_ascii_lowercase())
}

impl CycleRow {
    /// The row of a cycle that starts now.
    pub fn running(
        id: &str,
        integration_id: &IntegrationId,
        integration: &str,
        trigger: Trigger,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: id.to_owned(),
            integration_id: integration_id.to_string(),
            integration: Some(integration.to_owned()),
            trigger,
            dry_run,
            outcome: CycleStatus::Running,
            counts: serde_json::json!({}),
            graph_requests: 0,
            throttled: 0,
            error_code: None,
            error_message: None,
            started_at: now,
            finished_at: None,
            duration_ms: None,
            mode: None,
            full_reason: None,
        }
    }
}

/// An admin API token: only its SHA-256 is stored.
#[derive(Debug, Clone)]
pub struct AdminTokenRow {
    pub id: String,
    pub name: String,
    pub token_hash: Vec<u8>,
    /// What identifies the token's kind without revealing any of it (`essy_admin_…`).
    pub token_hint: String,
    pub created_at: DateTime<Utc>,
    /// After this instant the token is refused (`None`: it does not expire).
    pub expires_at: Option<DateTime<Utc>>,
    /// The one account the token may act on (`None`: every account).
    pub account_id: Option<AccountId>,
    /// That account's name (read back with the token; not written).
    pub account_name: Option<String>,
    /// Last successful use, recorded at most once a minute.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// An admin token as `admin-token list` shows it: never the token, its hash or its hint.
#[derive(Debug, Clone, Serialize)]
pub struct AdminTokenInfo {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The account the token is limited to (`None`: every account).
    pub account: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Outbox delivery (the queries are in `backend_outbox.rs`; the worker is `crate::notify`).

/// What a delivery worker asks for when it claims due messages.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    pub now: DateTime<Utc>,
    /// The claim's lease: a claimed row is due again at this time unless its result is recorded.
    pub lease_until: DateTime<Utc>,
    /// Rows that already used this many attempts are parked as `dead` instead of claimed.
    pub max_attempts: i64,
    pub limit: i64,
    /// The domain of Message-IDs fixed at a row's first claim (`<outbox.{id}@{domain}>`).
    pub message_id_domain: &'a str,
}

/// One message a worker claimed and now delivers.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    pub id: String,
    pub account_id: AccountId,
    pub kind: String,
    pub recipient_email: String,
    pub recipient_name: String,
    pub subject: String,
    pub body_text: String,
    pub payload: Value,
    /// Attempts started, this one included.
    pub attempts: i64,
    pub message_id: String,
    /// The IANA time zone of the message's account (`accounts.time_zone`).
    pub time_zone: String,
}

/// The rows one claim took: `messages` to deliver under `token`, and `exhausted`, the ids of rows
/// whose attempts were all used up (by interrupted deliveries) and that were parked as `dead`.
#[derive(Debug, Clone, Default)]
pub struct OutboxClaim {
    pub token: String,
    pub messages: Vec<ClaimedMessage>,
    pub exhausted: Vec<String>,
}

/// An outbox row with its delivery state, for `essentry-sync outbox`.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxEntry {
    #[serde(flatten)]
    pub row: OutboxRow,
    pub next_attempt_at: DateTime<Utc>,
    pub message_id: Option<String>,
    /// A worker holds a claim on it whose lease has not run out: it is being sent right now.
    pub in_flight: bool,
}

/// What `outbox retry` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryOutcome {
    /// Back to `pending`, due now, with a fresh set of attempts.
    Requeued,
    NotFound,
    AlreadySent,
    /// A worker is sending it right now.
    InFlight,
}
