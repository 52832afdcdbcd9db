//! Pull sync from Microsoft Graph: plan (pure), guards, apply, schedule, log.
//!
//! Declared here so far:
//! - [`apply`]: applies a plan through the directory operations in one transaction.
//! - [`mapping`]: an Entra user (as Graph returns it) → the directory user essentry should hold,
//!   per the attribute table of the product page.
//! - [`plan`]: a complete snapshot of the users in scope against the stored users → the creates,
//!   updates and deprovisionings of one cycle, with the deletion threshold applied. No I/O.

pub mod apply;
pub mod mapping;
pub mod plan;
