//! Pull sync from Microsoft Graph: plan (pure), guards, apply, schedule, log.
//!
//! - [`cycle`]: one cycle end to end (read, plan, apply, summary row); a failed read changes
//!   nothing.
//! - [`delta`]: what a cycle plans from — a full read (first cycle, settings changed, rejected
//!   delta link, the full-reconcile schedule, `--full`, transitive integrations) or an
//!   incremental one that follows Graph's delta links and plans only what changed.
//! - [`on_demand`]: one user now, through Entra's steps (connection, import, scope, match,
//!   action).
//! - [`schedule`]: when each integration runs (interval or cron, quarantine after failures) and
//!   the runner inside `serve` (tokio-cron-scheduler).
//! - [`deletions`]: the deletion review — staged deletions as rows, approved or rejected per
//!   user, each re-checked against the integration's last complete read.
//! - [`apply`]: applies a plan through the directory operations in one transaction.
//! - [`mapping`]: an Entra user (as Graph returns it) → the directory user essentry should hold,
//!   per the attribute table of the product page.
//! - [`progress`]: live progress of a running cycle for whoever shows it (the console).
//! - [`plan`]: a complete snapshot of the users in scope against the stored users → the creates,
//!   updates and deprovisionings of one cycle, with the deletion threshold applied. No I/O.

pub mod apply;
pub mod cycle;
pub mod deletions;
pub mod delta;
pub mod mapping;
pub mod on_demand;
pub mod plan;
pub mod progress;
pub mod schedule;
