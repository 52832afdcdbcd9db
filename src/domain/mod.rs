//! The directory's own language: validated ids, neutral user/group/appointment records, the
//! provisioning operations with their side effects, the cancellation notices they queue, what a
//! complete read of Entra looks like ([`entra`]) and the deletion review ([`deletion`]).
//! No database, HTTP or wire-format crate is used here.

pub mod clip;
pub mod clock;
pub mod deletion;
pub mod directory;
pub mod entra;
pub mod ids;
pub mod kinds;
pub mod model;
pub mod notice;
pub mod query;
pub mod text;

pub use clock::{Clock, ManualClock, SystemClock};
pub use deletion::{DeletionThreshold, StagedDeletion, StagedReason};
pub use directory::{
    DeprovisionReason, DeprovisionReport, DirectoryError, DirectoryTx, Manager, OpContext,
    StoreError, UpdateOutcome,
};
pub use ids::{
    AccountId, AppointmentId, EntraObjectId, GroupId, IntegrationId, ParseError, UserId, UserName,
    fold_key,
};
pub use kinds::{CycleStatus, IntegrationKind, Trigger};
pub use model::*;
