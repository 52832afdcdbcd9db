//! Group member operations, split out of a PATCH so they can be applied to the member table
//! without loading the member list.

use serde_json::Value;

use super::super::filter::{AttrPath, CompValue, CompareOp, Filter};
use super::apply::get_ci;
use super::*;

// ---------------------------------------------------------------------------
// Group members

/// A change to a group's member list, by member id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    Add(Vec<String>),
    Remove(Vec<String>),
    RemoveAll,
    ReplaceAll(Vec<String>),
}

/// For groups: removes member operations from `ops` so they can be applied to a member table without loading the member list. Handles `add` path `members` (value array of {"value": id}), `remove` path `members[value eq "id"]`, `remove` path `members` with a value array (Entra sends this) and without value (remove all), `replace` path `members` (replace all), and path-less add/replace whose value object has a `members` key. Returns the remaining ops plus the member changes in order.
pub fn split_member_ops(
    ops: Vec<PatchOp>,
) -> Result<(Vec<PatchOp>, Vec<MemberChange>), PatchError> {
    use PatchErrorKind::*;
    let mut rest = Vec::new();
    let mut changes = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        let ctx = |e: PatchError| PatchError::new(e.kind, format!("Operations[{i}]: {}", e.detail));
        match &op.path {
            Some(path) if is_members(&path.attr) => {
                if path.attr.sub_attr.is_some() || path.sub_attr.is_some() {
                    return Err(ctx(PatchError::new(
                        InvalidPath,
                        "member sub-attributes cannot be patched",
                    )));
                }
                let value = op.value.as_ref().filter(|v| !v.is_null());
                let change = match (&path.value_filter, op.op, value) {
                    (Some(filter), PatchOpKind::Remove, _) => MemberChange::Remove(filter_ids(filter).ok_or_else(|| {
                        ctx(PatchError::new(InvalidPath, "member filters must be of the form value eq \"id\" (optionally joined by or)"))
                    })?),
                    (Some(_), _, _) => {
                        return Err(ctx(PatchError::new(InvalidPath, "add and replace on members cannot use a value filter")));
                    }
                    (None, kind, None) => {
                        if op.value.is_none() && kind != PatchOpKind::Remove {
                            return Err(ctx(PatchError::new(InvalidValue, format!("{} requires a 'value'", kind.name()))));
                        }
                        MemberChange::RemoveAll
                    }
                    (None, PatchOpKind::Add, Some(v)) => MemberChange::Add(member_ids(v).map_err(ctx)?),
                    (None, PatchOpKind::Remove, Some(v)) => MemberChange::Remove(member_ids(v).map_err(ctx)?),
                    (None, PatchOpKind::Replace, Some(v)) => MemberChange::ReplaceAll(member_ids(v).map_err(ctx)?),
                };
                changes.push(change);
            }
            None if op.op != PatchOpKind::Remove => {
                let Some(Value::Object(object)) = &op.value else {
                    rest.push(op);
                    continue;
                };
                let Some(key) = object
                    .keys()
                    .find(|k| is_members(&AttrPath::simple(k)) || is_qualified_members(k))
                    .cloned()
                else {
                    rest.push(op);
                    continue;
                };
                let mut object = object.clone();
                let members = object.remove(&key).unwrap_or(Value::Null);
                changes.push(match (op.op, members.is_null()) {
                    (_, true) => MemberChange::RemoveAll,
                    (PatchOpKind::Add, false) => {
                        MemberChange::Add(member_ids(&members).map_err(ctx)?)
                    }
                    (_, false) => MemberChange::ReplaceAll(member_ids(&members).map_err(ctx)?),
                });
                if !object.is_empty() {
                    rest.push(PatchOp {
                        op: op.op,
                        path: None,
                        value: Some(Value::Object(object)),
                    });
                }
            }
            _ => rest.push(op),
        }
    }
    Ok((rest, changes))
}

fn is_members(attr: &AttrPath) -> bool {
    attr.is("members")
        && attr
            .schema
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case(GROUP_CORE_URN))
}

fn is_qualified_members(key: &str) -> bool {
    key.len() == GROUP_CORE_URN.len() + ":members".len()
        && key
            .get(..GROUP_CORE_URN.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(GROUP_CORE_URN))
        && key
            .get(GROUP_CORE_URN.len()..)
            .is_some_and(|s| s.eq_ignore_ascii_case(":members"))
}

/// Ids from `[{"value": id}, ...]`, a single object, or bare strings.
fn member_ids(value: &Value) -> Result<Vec<String>, PatchError> {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    };
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        let id = match item {
            Value::String(s) => s.clone(),
            Value::Object(o) => match get_ci(o, "value") {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    return err(
                        PatchErrorKind::InvalidValue,
                        "each member needs a string 'value' holding its id",
                    );
                }
            },
            Value::Null => continue,
            _ => {
                return err(
                    PatchErrorKind::InvalidValue,
                    "members must be objects like {\"value\": \"id\"}",
                );
            }
        };
        if id.is_empty() {
            return err(
                PatchErrorKind::InvalidValue,
                "a member id must not be empty",
            );
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Ids from `value eq "a"` or `value eq "a" or value eq "b" ...`.
fn filter_ids(filter: &Filter) -> Option<Vec<String>> {
    match filter {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::String(id),
        } if path.is("value") && path.sub_attr.is_none() && path.schema.is_none() => {
            Some(vec![id.clone()])
        }
        Filter::Or(a, b) => {
            let mut ids = filter_ids(a)?;
            ids.extend(filter_ids(b)?);
            Some(ids)
        }
        _ => None,
    }
}
