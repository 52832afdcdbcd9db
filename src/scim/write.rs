//! What every SCIM write shares: the cost limits checked before any work (operations per PATCH,
//! values per multi-valued attribute), applying a PATCH to a copy of the resource before the
//! write transaction opens, and the begin/operate/commit skeleton that either applies a write
//! fully or not at all (an error or a panic drops the transaction, which rolls it back).
//!
//! A PATCH is applied outside the transaction because applying it is the CPU-heavy part: the
//! single SQLite writer is held only for the write itself. The write then checks the version the
//! PATCH was applied to. When another request changed the resource in between, a request whose
//! `If-Match` named the now stale version is refused with 412; one without `If-Match` asked for
//! no precondition, so its PATCH is applied again to the current version inside the write
//! transaction, under the row lock, where no other write can come first (the limits bound what
//! that costs).

use serde_json::{Map, Value};

use crate::config::ScimSettings;
use crate::domain::StoreError;
use crate::http::AppState;
use crate::store::Tx;

use super::error::ScimError;
use super::patch::{self, PatchOp, ResourceSchema};

/// The request-cost limits of the SCIM endpoint (`[scim]` settings).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most operations in one PATCH request.
    pub max_patch_operations: usize,
    /// Most values in one multi-valued attribute (`emails`, `phoneNumbers`, ...). Group members
    /// are rows of their own table and are not counted here.
    pub max_multi_valued: usize,
}

impl Limits {
    pub fn from_settings(settings: &ScimSettings) -> Self {
        Self {
            max_patch_operations: settings.max_patch_operations.max(1),
            max_multi_valued: settings.max_multi_valued.max(1),
        }
    }

    /// Refuses a PATCH with more operations than the limit (`400 tooMany`).
    pub fn check_operations(&self, ops: &[PatchOp]) -> Result<(), ScimError> {
        if ops.len() > self.max_patch_operations {
            return Err(ScimError::bad_request(
                "tooMany",
                format!(
                    "the PATCH has {} operations; at most {} are accepted in one request \
                     (scim.max_patch_operations)",
                    ops.len(),
                    self.max_patch_operations
                ),
            ));
        }
        Ok(())
    }

    /// Refuses a resource with a multi-valued attribute longer than the limit (`400
    /// invalidValue`), at any depth (extension attributes included).
    pub fn check_resource(&self, resource: &Map<String, Value>) -> Result<(), ScimError> {
        for (key, value) in resource {
            self.check_value(key, value)?;
        }
        Ok(())
    }

    fn check_value(&self, path: &str, value: &Value) -> Result<(), ScimError> {
        match value {
            Value::Array(items) => {
                if items.len() > self.max_multi_valued {
                    return Err(ScimError::invalid_value(format!(
                        "{path} has {} values; at most {} are accepted (scim.max_multi_valued)",
                        items.len(),
                        self.max_multi_valued
                    )));
                }
                items.iter().try_for_each(|v| self.check_value(path, v))
            }
            Value::Object(o) => o
                .iter()
                .try_for_each(|(k, v)| self.check_value(&format!("{path}.{k}"), v)),
            _ => Ok(()),
        }
    }

    /// Applies `ops` to `resource` one at a time, checking the multi-valued limit after each,
    /// so no operation ever works on an attribute longer than the limit plus its own values:
    /// one PATCH touches at most operations × values.
    pub fn apply_patch(
        &self,
        resource: &mut Map<String, Value>,
        ops: &[PatchOp],
        schema: &ResourceSchema,
    ) -> Result<(), ScimError> {
        self.check_operations(ops)?;
        for (i, op) in ops.iter().enumerate() {
            patch::apply(resource, std::slice::from_ref(op), schema).map_err(|e| {
                // `apply` numbers the operations of the slice it was given: this one is 0.
                let detail = e
                    .detail
                    .strip_prefix("Operations[0]: ")
                    .unwrap_or(&e.detail);
                ScimError::bad_request(e.kind.scim_type(), format!("Operations[{i}]: {detail}"))
            })?;
            self.check_resource(resource)?;
        }
        Ok(())
    }
}

/// Runs `operate` in a write transaction and returns its result once that transaction
/// committed. Writes arriving together share one transaction (group commit,
/// [`crate::store::GroupCommit`]), each in a savepoint of its own: on an error only this write's
/// savepoint is rolled back, so nothing of a failed write is kept and the others are unaffected.
pub async fn transact<T, E>(
    state: &AppState,
    operate: impl AsyncFnOnce(&mut Tx) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<StoreError>,
{
    state.writes.run(operate).await
}
