//! Evaluation of a parsed SCIM filter against a JSON resource (or one element of a
//! multi-valued attribute): attribute resolution, case-insensitive comparison in the folded
//! (NFC, lower-case) form, `pr`, and the flat evaluation of `and`/`or` chains.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::{AttrPath, CompValue, CompareOp, Filter};

/// Evaluate against a JSON resource (or a multi-valued element). String comparisons are case-insensitive unless `case_exact(path)` says otherwise; multi-valued attributes match if any element matches; `pr` is false for null, empty string, empty array and empty object.
///
/// Inside a `ValuePath`, `case_exact` is asked about the combined path, e.g.
/// `emails.value` for `emails[value eq "x"]`.
pub fn matches(filter: &Filter, resource: &Value, case_exact: &dyn Fn(&AttrPath) -> bool) -> bool {
    match filter {
        Filter::Compare { path, op, value } => {
            let exact = case_exact(path);
            let candidates = resolve(path, resource);
            match op {
                CompareOp::Ne => !candidates
                    .iter()
                    .any(|c| compare(c, CompareOp::Eq, value, exact)),
                CompareOp::Eq if *value == CompValue::Null => {
                    candidates.is_empty() || candidates.iter().any(|c| c.is_null())
                }
                _ => candidates.iter().any(|c| compare(c, *op, value, exact)),
            }
        }
        Filter::Present(path) => resolve(path, resource).iter().any(|v| is_present(v)),
        Filter::And(..) => filter
            .operands()
            .into_iter()
            .all(|f| matches(f, resource, case_exact)),
        Filter::Or(..) => filter
            .operands()
            .into_iter()
            .any(|f| matches(f, resource, case_exact)),
        Filter::Not(inner) => !matches(inner, resource, case_exact),
        Filter::ValuePath { path, filter } => {
            let inner_exact = |inner: &AttrPath| -> bool {
                if inner.schema.is_none() && inner.sub_attr.is_none() {
                    let combined = AttrPath {
                        schema: path.schema.clone(),
                        name: path.name.clone(),
                        sub_attr: Some(inner.name.clone()),
                    };
                    case_exact(&combined)
                } else {
                    case_exact(inner)
                }
            };
            let Some(base) = container_for(path, resource) else {
                return false;
            };
            let Some(attr) = get_ci(base, &path.name) else {
                return false;
            };
            let attr = match &path.sub_attr {
                Some(sub) => match attr.as_object().and_then(|_| get_ci(attr, sub)) {
                    Some(v) => v,
                    None => return false,
                },
                None => attr,
            };
            match attr {
                Value::Array(items) => items.iter().any(|item| matches(filter, item, &inner_exact)),
                Value::Null => false,
                other => matches(filter, other, &inner_exact),
            }
        }
    }
}

fn get_ci<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    let map = value.as_object()?;
    if let Some(v) = map.get(key) {
        return Some(v);
    }
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// The object holding the attribute: an extension object when the path's
/// schema names a key of the resource, otherwise the resource itself.
fn container_for<'a>(path: &AttrPath, resource: &'a Value) -> Option<&'a Value> {
    if let Some(schema) = &path.schema
        && let Some(ext) = get_ci(resource, schema)
        && ext.is_object()
    {
        return Some(ext);
    }
    Some(resource)
}

/// All values the path designates, with multi-valued attributes flattened.
fn resolve<'a>(path: &AttrPath, resource: &'a Value) -> Vec<&'a Value> {
    let mut out = Vec::new();
    let Some(base) = container_for(path, resource) else {
        return out;
    };
    let attr = match get_ci(base, &path.name) {
        Some(v) => v,
        // A primitive element of a multi-valued attribute is its own `value`.
        None if !base.is_object() && path.is("value") && path.sub_attr.is_none() => base,
        None => return out,
    };
    let elements: Vec<&Value> = match attr {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    match &path.sub_attr {
        None => out = elements,
        Some(sub) => {
            for element in elements {
                match get_ci(element, sub) {
                    Some(Value::Array(items)) => out.extend(items.iter()),
                    Some(v) => out.push(v),
                    None => {}
                }
            }
        }
    }
    out
}

fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => a.iter().any(is_present),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn compare(candidate: &Value, op: CompareOp, literal: &CompValue, exact: bool) -> bool {
    // A complex value is compared through its `value` sub-attribute.
    let candidate = match candidate {
        Value::Object(_) => match get_ci(candidate, "value") {
            Some(v) => v,
            None => return false,
        },
        other => other,
    };
    match (candidate, literal) {
        (Value::String(have), CompValue::String(want)) => {
            let (have, want) = if exact {
                (have.clone(), want.clone())
            } else {
                (crate::domain::fold_key(have), crate::domain::fold_key(want))
            };
            match op {
                CompareOp::Eq => have == want,
                CompareOp::Ne => have != want,
                CompareOp::Co => have.contains(&want),
                CompareOp::Sw => have.starts_with(&want),
                CompareOp::Ew => have.ends_with(&want),
                _ => ordered(op, have.cmp(&want)),
            }
        }
        (Value::Bool(have), CompValue::Bool(want)) => match op {
            CompareOp::Eq => have == want,
            CompareOp::Ne => have != want,
            _ => false,
        },
        (Value::Number(have), CompValue::Number(want)) => match number_cmp(have, want) {
            Some(ord) => match op {
                CompareOp::Eq => ord == Ordering::Equal,
                CompareOp::Ne => ord != Ordering::Equal,
                CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
                _ => ordered(op, ord),
            },
            None => false,
        },
        (Value::Null, CompValue::Null) => op == CompareOp::Eq,
        _ => false,
    }
}

fn ordered(op: CompareOp, ord: Ordering) -> bool {
    match op {
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        _ => false,
    }
}

fn number_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}
