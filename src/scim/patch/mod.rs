//! SCIM 2.0 PATCH (RFC 7644 §3.5.2) applied to a JSON resource, including the
//! quirks of Microsoft Entra ID's provisioning service.
//!
//! This module owns: parsing a PatchOp request body (`parse_patch_request`),
//! the attribute schemas of Users and Groups that PATCH needs
//! (`USER_SCHEMA`, `GROUP_SCHEMA`), applying operations to a stored resource
//! (`apply`), and splitting group member changes out of a request so they can
//! be applied to a member table (`split_member_ops`).
//!
//! Entra quirks handled: capitalised `op` values, booleans sent as the strings
//! "True"/"False", path-less operations whose value keys are dotted or
//! URN-qualified paths, `emails[type eq "work"].value` targeting an element
//! that does not exist yet (it is created), member removal with a `value`
//! array, unqualified enterprise attributes (`manager`), complex values sent
//! as a bare string or a one-element array, and custom extension URNs.

use serde_json::{Map, Value};

use super::filter::{PatchPath, parse_patch_path};
pub use super::schema::{AttrDef, AttrKind, GROUP_SCHEMA, Mutability, ResourceSchema, USER_SCHEMA};

mod apply;
mod members;
#[cfg(test)]
mod tests;

pub use apply::{apply, apply_body};
pub use members::{MemberChange, split_member_ops};

/// The schema URN a PATCH request body must declare.
pub const PATCH_OP_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Most operations accepted in one request.
pub const MAX_OPERATIONS: usize = 10_000;
pub const USER_CORE_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_CORE_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchOpKind {
    Add,
    Remove,
    Replace,
}

impl PatchOpKind {
    /// The lower-case operation name.
    pub fn name(self) -> &'static str {
        match self {
            PatchOpKind::Add => "add",
            PatchOpKind::Remove => "remove",
            PatchOpKind::Replace => "replace",
        }
    }
}

/// One PATCH operation. `value` is `None` when the key was absent and
/// `Some(Value::Null)` when it was an explicit null.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    pub op: PatchOpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// The SCIM `scimType` of a failed PATCH (all are HTTP 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchErrorKind {
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    Mutability,
}

impl PatchErrorKind {
    /// The RFC 7644 §3.12 `scimType` keyword.
    pub fn scim_type(self) -> &'static str {
        match self {
            PatchErrorKind::InvalidSyntax => "invalidSyntax",
            PatchErrorKind::InvalidPath => "invalidPath",
            PatchErrorKind::NoTarget => "noTarget",
            PatchErrorKind::InvalidValue => "invalidValue",
            PatchErrorKind::Mutability => "mutability",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{detail}")]
pub struct PatchError {
    pub kind: PatchErrorKind,
    pub detail: String,
}

impl PatchError {
    pub fn new(kind: PatchErrorKind, detail: impl Into<String>) -> Self {
        PatchError {
            kind,
            detail: detail.into(),
        }
    }
}

pub(crate) fn err<T>(kind: PatchErrorKind, detail: impl Into<String>) -> Result<T, PatchError> {
    Err(PatchError::new(kind, detail))
}

// ---------------------------------------------------------------------------
// Request parsing

fn get_key_ci<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Parses a PatchOp request body. `schemas` must contain
/// [`PATCH_OP_URN`]; `Operations` (any case of the key) must be a non-empty
/// array of at most [`MAX_OPERATIONS`] objects; `op` is case-insensitive;
/// `path` is parsed with [`parse_patch_path`]. `remove` without a path is
/// `NoTarget` (RFC 7644 §3.5.2.2); `add`/`replace` without a `value` key is
/// `InvalidValue` (an explicit `null` is accepted and removes the target).
pub fn parse_patch_request(body: &Value) -> Result<Vec<PatchOp>, PatchError> {
    use PatchErrorKind::*;
    let Some(body) = body.as_object() else {
        return err(
            InvalidSyntax,
            "the PATCH request body must be a JSON object",
        );
    };
    let declares_patch = get_key_ci(body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter().any(|u| {
                u.as_str()
                    .is_some_and(|u| u.eq_ignore_ascii_case(PATCH_OP_URN))
            })
        });
    if !declares_patch {
        return err(
            InvalidSyntax,
            format!("'schemas' must contain \"{PATCH_OP_URN}\""),
        );
    }
    let Some(operations) = get_key_ci(body, "Operations") else {
        return err(InvalidSyntax, "the request has no 'Operations' array");
    };
    let Some(operations) = operations.as_array() else {
        return err(InvalidSyntax, "'Operations' must be an array");
    };
    if operations.is_empty() {
        return err(
            InvalidSyntax,
            "'Operations' must contain at least one operation",
        );
    }
    if operations.len() > MAX_OPERATIONS {
        return err(
            InvalidSyntax,
            format!(
                "'Operations' has {} entries; at most {MAX_OPERATIONS} are accepted",
                operations.len()
            ),
        );
    }
    let mut ops = Vec::with_capacity(operations.len());
    for (i, raw) in operations.iter().enumerate() {
        let Some(raw) = raw.as_object() else {
            return err(InvalidSyntax, format!("Operations[{i}] must be an object"));
        };
        let op = match get_key_ci(raw, "op").and_then(Value::as_str) {
            Some(s) if s.eq_ignore_ascii_case("add") => PatchOpKind::Add,
            Some(s) if s.eq_ignore_ascii_case("remove") => PatchOpKind::Remove,
            Some(s) if s.eq_ignore_ascii_case("replace") => PatchOpKind::Replace,
            Some(s) => {
                return err(
                    InvalidSyntax,
                    format!("Operations[{i}]: unknown op \"{s}\"; expected add, remove or replace"),
                );
            }
            None => {
                return err(
                    InvalidSyntax,
                    format!("Operations[{i}]: 'op' must be a string"),
                );
            }
        };
        let path = match get_key_ci(raw, "path") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) => match parse_patch_path(p) {
                Ok(path) => Some(path),
                Err(e) => {
                    return err(
                        InvalidPath,
                        format!("Operations[{i}]: invalid path \"{p}\": {e}"),
                    );
                }
            },
            Some(_) => {
                return err(
                    InvalidPath,
                    format!("Operations[{i}]: 'path' must be a string"),
                );
            }
        };
        let value = get_key_ci(raw, "value").cloned();
        match op {
            PatchOpKind::Remove if path.is_none() => {
                return err(
                    NoTarget,
                    format!("Operations[{i}]: remove requires a 'path'"),
                );
            }
            PatchOpKind::Add | PatchOpKind::Replace if value.is_none() => {
                return err(
                    InvalidValue,
                    format!("Operations[{i}]: {} requires a 'value'", op.name()),
                );
            }
            _ => {}
        }
        ops.push(PatchOp { op, path, value });
    }
    Ok(ops)
}
