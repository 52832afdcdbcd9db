//! Applying PATCH operations to a stored resource (RFC 7644 §3.5.2.1–3), with value coercion.

use serde_json::{Map, Value};

use super::super::filter::{AttrPath, CompValue, CompareOp, Filter, PatchPath, matches};
use super::super::schema::find_def;
use super::*;

// ---------------------------------------------------------------------------
// Applying operations

/// Applies ops in order to `resource` (a JSON object holding the resource as stored: core attributes at top level, extension attributes under their URN key). All-or-nothing: on error the caller discards the copy.
pub fn apply(
    resource: &mut Map<String, Value>,
    ops: &[PatchOp],
    schema: &ResourceSchema,
) -> Result<(), PatchError> {
    for (i, op) in ops.iter().enumerate() {
        apply_op(resource, op, schema)
            .map_err(|e| PatchError::new(e.kind, format!("Operations[{i}]: {}", e.detail)))?;
    }
    Ok(())
}

/// Builds a resource from a POST/PUT body: the body is applied as one path-less `replace`, and
/// errors are worded for a body — no `Operations[i]` (a PUT has none), and an attribute the
/// schema does not know is an `invalidValue` naming it (there is no path to be invalid).
pub fn apply_body(
    resource: &mut Map<String, Value>,
    body: Map<String, Value>,
    schema: &ResourceSchema,
) -> Result<(), PatchError> {
    let op = PatchOp {
        op: PatchOpKind::Replace,
        path: None,
        value: Some(Value::Object(body)),
    };
    apply_op(resource, &op, schema).map_err(|e| {
        let kind = match e.kind {
            PatchErrorKind::InvalidPath | PatchErrorKind::NoTarget => PatchErrorKind::InvalidValue,
            other => other,
        };
        PatchError::new(kind, format!("in the request body: {}", e.detail))
    })
}

fn apply_op(
    resource: &mut Map<String, Value>,
    op: &PatchOp,
    schema: &ResourceSchema,
) -> Result<(), PatchError> {
    if op.op != PatchOpKind::Remove && op.value.is_none() {
        return err(
            PatchErrorKind::InvalidValue,
            "add and replace require a 'value'",
        );
    }
    match &op.path {
        Some(path) => apply_path(resource, op.op, path, op.value.as_ref(), schema, false),
        None if op.op == PatchOpKind::Remove => {
            err(PatchErrorKind::NoTarget, "remove requires a 'path'")
        }
        None => apply_pathless(
            resource,
            op.op,
            op.value.as_ref().unwrap_or(&Value::Null),
            schema,
        ),
    }
}

fn apply_pathless(
    resource: &mut Map<String, Value>,
    kind: PatchOpKind,
    value: &Value,
    schema: &ResourceSchema,
) -> Result<(), PatchError> {
    let Some(object) = value.as_object() else {
        return err(
            PatchErrorKind::InvalidValue,
            "an operation without 'path' needs an object 'value'",
        );
    };
    for (key, v) in object {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        let path = parse_patch_path(key).map_err(|e| {
            PatchError::new(
                PatchErrorKind::InvalidPath,
                format!("invalid attribute \"{key}\" in value: {e}"),
            )
        })?;
        apply_path(resource, kind, &path, Some(v), schema, true)?;
    }
    Ok(())
}

/// The stored key of the extension a path designates as a whole, if it does:
/// a known extension URN, a URN already stored, or an unknown URN whose last
/// segment is capitalised like a resource type (`...:2.0:User`).
fn whole_extension(
    path: &PatchPath,
    value: Option<&Value>,
    schema: &ResourceSchema,
    resource: &Map<String, Value>,
) -> Option<String> {
    let prefix = path.attr.schema.as_deref()?;
    if path.attr.sub_attr.is_some() || path.value_filter.is_some() || path.sub_attr.is_some() {
        return None;
    }
    let full = format!("{prefix}:{}", path.attr.name);
    if full.eq_ignore_ascii_case(schema.core_urn) {
        return Some(schema.core_urn.to_string());
    }
    if let Some(known) = schema.known_extension(&full) {
        return Some(existing_key(resource, known).unwrap_or_else(|| known.to_string()));
    }
    if let Some(existing) = existing_key(resource, &full)
        && !existing.eq_ignore_ascii_case(schema.core_urn)
    {
        return Some(existing);
    }
    let capitalised = path.attr.name.starts_with(|c: char| c.is_ascii_uppercase());
    let object_or_removal = value.is_none_or(|v| v.is_object() || v.is_null());
    if !schema.is_known_schema(prefix) && is_urn(prefix) && capitalised && object_or_removal {
        return Some(full);
    }
    None
}

fn is_urn(s: &str) -> bool {
    s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
}

fn existing_key(map: &Map<String, Value>, key: &str) -> Option<String> {
    if map.contains_key(key) {
        return Some(key.to_string());
    }
    map.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned()
}

/// Removes every key equal to `key` ignoring case; returns the exact-case
/// value if present, else the first one found.
fn take_ci(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    let exact = map.remove(key);
    let others: Vec<String> = map
        .keys()
        .filter(|k| k.eq_ignore_ascii_case(key))
        .cloned()
        .collect();
    let mut found = exact;
    for k in others {
        let v = map.remove(&k);
        if found.is_none() {
            found = v;
        }
    }
    found
}

pub(super) fn get_ci<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    get_key_ci(map, key)
}

/// Where a path points, after schema lookup.
struct Target<'p> {
    /// `None` for core attributes, else the stored key of the extension.
    ext: Option<String>,
    /// Storage key of the attribute (canonical spelling when known).
    name: String,
    def: Option<&'static AttrDef>,
    /// Sub-attribute: storage name and its kind when known.
    sub: Option<(String, Option<AttrKind>)>,
    filter: Option<&'p Filter>,
}

fn resolve_target<'p>(
    path: &'p PatchPath,
    schema: &ResourceSchema,
    resource: &Map<String, Value>,
) -> Result<Target<'p>, PatchError> {
    use PatchErrorKind::InvalidPath;
    let attr = &path.attr;
    let (ext, def): (Option<String>, Option<&'static AttrDef>) = match attr.schema.as_deref() {
        None => match find_def(schema.attributes, &attr.name) {
            Some(def) => (None, Some(def)),
            None => match find_in_extensions(schema, &attr.name) {
                Some((urn, def)) => (
                    Some(existing_key(resource, urn).unwrap_or_else(|| urn.to_string())),
                    Some(def),
                ),
                None if attr.is("schemas") => {
                    return err(InvalidPath, "'schemas' cannot be modified with PATCH");
                }
                None => return err(InvalidPath, format!("unknown attribute '{}'", attr.name)),
            },
        },
        Some(urn) if urn.eq_ignore_ascii_case(schema.core_urn) => {
            match find_def(schema.attributes, &attr.name) {
                Some(def) => (None, Some(def)),
                None if attr.is("schemas") => {
                    return err(InvalidPath, "'schemas' cannot be modified with PATCH");
                }
                None => {
                    return err(
                        InvalidPath,
                        format!("unknown attribute '{}' in {urn}", attr.name),
                    );
                }
            }
        }
        Some(urn) => match schema.known_extension(urn) {
            Some(known) => match find_def(schema.extension_defs(known), &attr.name) {
                Some(def) => (
                    Some(existing_key(resource, known).unwrap_or_else(|| known.to_string())),
                    Some(def),
                ),
                None => {
                    return err(
                        InvalidPath,
                        format!("unknown attribute '{}' in {known}", attr.name),
                    );
                }
            },
            None if is_urn(urn) => (
                Some(existing_key(resource, urn).unwrap_or_else(|| urn.to_string())),
                None,
            ),
            None => return err(InvalidPath, format!("unknown schema '{urn}'")),
        },
    };
    let sub_name = attr.sub_attr.as_deref().or(path.sub_attr.as_deref());
    let sub = match (sub_name, def) {
        (None, _) => None,
        (Some(s), None) => Some((s.to_string(), None)),
        (Some(s), Some(d)) => match d.sub(s) {
            Some((canonical, kind)) => Some((canonical.to_string(), Some(kind))),
            None if d.kind != AttrKind::Complex => {
                return err(InvalidPath, format!("'{}' has no sub-attributes", d.name));
            }
            None => {
                return err(
                    InvalidPath,
                    format!("unknown sub-attribute '{s}' of '{}'", d.name),
                );
            }
        },
    };
    if path.value_filter.is_some() && def.is_some_and(|d| !d.multi_valued) {
        return err(
            InvalidPath,
            format!(
                "a value filter can only be used on a multi-valued attribute, and '{}' is single-valued",
                attr.name
            ),
        );
    }
    let name = match def {
        Some(d) => d.name.to_string(),
        None => attr.name.clone(),
    };
    Ok(Target {
        ext,
        name,
        def,
        sub,
        filter: path.value_filter.as_ref(),
    })
}

fn find_in_extensions(
    schema: &ResourceSchema,
    name: &str,
) -> Option<(&'static str, &'static AttrDef)> {
    let mut found = schema
        .extension_attributes
        .iter()
        .filter_map(|(urn, defs)| find_def(defs, name).map(|d| (*urn, d)));
    let first = found.next()?;
    // Only an unambiguous bare name resolves into an extension.
    if found.next().is_some() {
        None
    } else {
        Some(first)
    }
}

fn apply_path(
    resource: &mut Map<String, Value>,
    kind: PatchOpKind,
    path: &PatchPath,
    value: Option<&Value>,
    schema: &ResourceSchema,
    pathless: bool,
) -> Result<(), PatchError> {
    if let Some(ext) = whole_extension(path, value, schema, resource) {
        return apply_whole_extension(resource, kind, &ext, value, schema);
    }
    let target = resolve_target(path, schema, resource)?;
    let current = container(resource, target.ext.as_deref()).and_then(|c| get_ci(c, &target.name));
    if let Some(def) = target.def {
        match def.mutability {
            Mutability::ReadOnly => {
                // A path-less value may echo a read-only attribute unchanged.
                if pathless && kind != PatchOpKind::Remove && current == value {
                    return Ok(());
                }
                return err(
                    PatchErrorKind::Mutability,
                    format!("'{}' is read-only", def.name),
                );
            }
            Mutability::Immutable if current.is_some_and(|c| !c.is_null()) && current != value => {
                return err(
                    PatchErrorKind::Mutability,
                    format!("'{}' is immutable and already set", def.name),
                );
            }
            _ => {}
        }
    }
    // Explicit null on add/replace means "unassign" (RFC 7643 §2.5).
    let set_value = match kind {
        PatchOpKind::Remove => None,
        _ => value.filter(|v| !v.is_null()),
    };
    if set_value.is_none()
        && target.sub.is_none()
        && target.filter.is_none()
        && target.def.is_some_and(|d| d.required)
    {
        return err(
            PatchErrorKind::InvalidValue,
            format!("'{}' is required and cannot be removed", target.name),
        );
    }
    let ext = target.ext.clone();
    match set_value {
        None => {
            let removal_value = if kind == PatchOpKind::Remove {
                value
            } else {
                None
            };
            if let Some(c) = container_mut(resource, ext.as_deref(), false)? {
                remove_target(c, &target, removal_value);
            }
        }
        Some(v) => {
            if let Some(c) = container_mut(resource, ext.as_deref(), true)? {
                set_target(c, kind, &target, v)?;
            }
        }
    }
    if let Some(ext) = ext {
        drop_empty_extension(resource, &ext);
    }
    Ok(())
}

fn apply_whole_extension(
    resource: &mut Map<String, Value>,
    kind: PatchOpKind,
    ext: &str,
    value: Option<&Value>,
    schema: &ResourceSchema,
) -> Result<(), PatchError> {
    let core = ext.eq_ignore_ascii_case(schema.core_urn);
    if core && (kind == PatchOpKind::Remove || !value.is_some_and(Value::is_object)) {
        return err(
            PatchErrorKind::InvalidPath,
            format!("{ext} cannot be removed or replaced as a whole"),
        );
    }
    let object = match (kind, value) {
        (PatchOpKind::Remove, _) | (_, None | Some(Value::Null)) => {
            take_ci(resource, ext);
            unregister_extension(resource, ext);
            return Ok(());
        }
        (_, Some(Value::Object(o))) => o,
        (_, Some(_)) => {
            return err(
                PatchErrorKind::InvalidValue,
                format!("the value for extension {ext} must be an object"),
            );
        }
    };
    // A client may repeat the extension's `schemas` inside its value object (scim2-tester
    // does); it names the extension we are already in, so it carries nothing to store.
    for (key, v) in object
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("schemas"))
    {
        let mut path = parse_patch_path(key).map_err(|e| {
            PatchError::new(
                PatchErrorKind::InvalidPath,
                format!("invalid attribute \"{key}\" in {ext}: {e}"),
            )
        })?;
        if path.attr.schema.is_some() {
            return err(
                PatchErrorKind::InvalidPath,
                format!("attribute \"{key}\" inside {ext} must not be URN-qualified"),
            );
        }
        if !core {
            path.attr.schema = Some(ext.to_string());
        }
        apply_path(resource, kind, &path, Some(v), schema, true)?;
    }
    Ok(())
}

fn container<'a>(
    resource: &'a Map<String, Value>,
    ext: Option<&str>,
) -> Option<&'a Map<String, Value>> {
    match ext {
        None => Some(resource),
        Some(key) => get_ci(resource, key).and_then(Value::as_object),
    }
}

/// The object holding the target attribute; creates an extension object (and
/// lists its URN in `schemas`) when `create` is set.
fn container_mut<'a>(
    resource: &'a mut Map<String, Value>,
    ext: Option<&str>,
    create: bool,
) -> Result<Option<&'a mut Map<String, Value>>, PatchError> {
    let Some(ext) = ext else {
        return Ok(Some(resource));
    };
    let key = match existing_key(resource, ext) {
        Some(k) => k,
        None if create => {
            register_extension(resource, ext);
            resource.insert(ext.to_string(), Value::Object(Map::new()));
            ext.to_string()
        }
        None => return Ok(None),
    };
    match resource.get_mut(&key) {
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(slot) if create => {
            *slot = Value::Object(Map::new());
            Ok(slot.as_object_mut())
        }
        _ => Ok(None),
    }
}

fn register_extension(resource: &mut Map<String, Value>, ext: &str) {
    if let Some(Value::Array(schemas)) = resource.get_mut("schemas")
        && !schemas
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(ext)))
    {
        schemas.push(Value::String(ext.to_string()));
    }
}

fn unregister_extension(resource: &mut Map<String, Value>, ext: &str) {
    if let Some(Value::Array(schemas)) = resource.get_mut("schemas") {
        schemas.retain(|s| !s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(ext)));
    }
}

fn drop_empty_extension(resource: &mut Map<String, Value>, ext: &str) {
    let Some(key) = existing_key(resource, ext) else {
        return;
    };
    if resource
        .get(&key)
        .is_some_and(|v| v.as_object().is_some_and(Map::is_empty))
    {
        resource.remove(&key);
        unregister_extension(resource, ext);
    }
}

fn case_exact_of(def: Option<&AttrDef>) -> impl Fn(&AttrPath) -> bool {
    let exact = def.is_some_and(|d| d.case_exact);
    move |_| exact
}

fn remove_target(c: &mut Map<String, Value>, target: &Target, value: Option<&Value>) {
    let exact = case_exact_of(target.def);
    let Some(mut current) = take_ci(c, &target.name) else {
        return;
    };
    match (&target.filter, &target.sub) {
        (None, None) => match (&mut current, value) {
            // Entra removes members with `"path":"members","value":[{"value":id}]`.
            (Value::Array(items), Some(wanted)) if !wanted.is_null() => {
                let wanted: Vec<&Value> = match wanted {
                    Value::Array(w) => w.iter().collect(),
                    other => vec![other],
                };
                let is_exact = target.def.is_some_and(|d| d.case_exact);
                items.retain(|item| !wanted.iter().any(|w| same_element(item, w, is_exact)));
            }
            _ => current = Value::Null,
        },
        (None, Some((sub, _))) => match &mut current {
            Value::Object(o) => {
                take_ci(o, sub);
            }
            Value::Array(items) => {
                for item in items.iter_mut() {
                    if let Value::Object(o) = item {
                        take_ci(o, sub);
                    }
                }
            }
            _ => {}
        },
        (Some(filter), sub) => {
            let elements = match &mut current {
                Value::Array(items) => items,
                _ => return restore(c, &target.name, current),
            };
            match sub {
                Some((sub, _)) => {
                    for item in elements.iter_mut() {
                        if matches(filter, item, &exact)
                            && let Value::Object(o) = item
                        {
                            take_ci(o, sub);
                        }
                    }
                }
                None => elements.retain(|item| !matches(filter, item, &exact)),
            }
        }
    }
    restore(c, &target.name, current);
}

/// Stores `value` back unless it became empty.
fn restore(c: &mut Map<String, Value>, name: &str, mut value: Value) {
    if let Value::Array(items) = &mut value {
        items.retain(|i| !(i.is_null() || i.as_object().is_some_and(Map::is_empty)));
    }
    let empty = match &value {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if !empty {
        c.insert(name.to_string(), value);
    }
}

/// Whether stored element `item` is the one `wanted` names: by `value` when
/// `wanted` has one, else by equality.
fn same_element(item: &Value, wanted: &Value, exact: bool) -> bool {
    let id_of = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => get_ci(o, "value")
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        }
    };
    match (id_of(item), id_of(wanted)) {
        (Some(a), Some(b)) if exact => a == b,
        (Some(a), Some(b)) => a.to_lowercase() == b.to_lowercase(),
        _ => item == wanted,
    }
}

fn set_target(
    c: &mut Map<String, Value>,
    kind: PatchOpKind,
    target: &Target,
    value: &Value,
) -> Result<(), PatchError> {
    let current = take_ci(c, &target.name);
    let result = set_value(current, kind, target, value)?;
    restore(c, &target.name, result);
    Ok(())
}

fn set_value(
    current: Option<Value>,
    kind: PatchOpKind,
    target: &Target,
    value: &Value,
) -> Result<Value, PatchError> {
    let def = target.def;
    let multi = def.map_or(matches!(current, Some(Value::Array(_))), |d| d.multi_valued);
    if let Some(filter) = target.filter {
        let items = match current {
            Some(Value::Array(items)) => items,
            Some(Value::Null) | None => Vec::new(),
            Some(other) => vec![other],
        };
        return set_filtered(items, kind, target, filter, value).map(Value::Array);
    }
    match (&target.sub, def) {
        (Some((sub, sub_kind)), _) => {
            let v = coerce_sub(*sub_kind, value, sub)?;
            if multi {
                let mut items = match current {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                };
                if items.is_empty() {
                    items.push(Value::Object(Map::new()));
                }
                for item in items.iter_mut() {
                    if let Value::Object(o) = item {
                        put(o, sub, v.clone());
                    }
                }
                Ok(Value::Array(items))
            } else {
                let mut object = match current {
                    Some(Value::Object(o)) => o,
                    _ => Map::new(),
                };
                put(&mut object, sub, v);
                Ok(Value::Object(object))
            }
        }
        (None, Some(d)) if d.multi_valued => {
            let new_items = coerce_multi(d, value)?;
            let mut items = match (kind, current) {
                (PatchOpKind::Add, Some(Value::Array(items))) => items,
                _ => Vec::new(),
            };
            let first_new = items.len();
            for item in new_items {
                if kind == PatchOpKind::Replace || !items.contains(&item) {
                    items.push(item);
                }
            }
            let written: Vec<usize> = (first_new..items.len()).collect();
            enforce_single_primary(&mut items, &written);
            Ok(Value::Array(items))
        }
        (None, Some(d)) if d.kind == AttrKind::Complex => {
            let incoming = coerce_complex(d, value, true)?;
            let mut object = match current {
                Some(Value::Object(o)) => o,
                _ => Map::new(),
            };
            merge(&mut object, incoming);
            Ok(Value::Object(object))
        }
        (None, Some(d)) => coerce_scalar(d.kind, value, d.name),
        (None, None) => Ok(match (kind, current, value) {
            (PatchOpKind::Add, Some(Value::Array(mut items)), Value::Array(new)) => {
                items.extend(new.iter().filter(|v| !v.is_null()).cloned());
                Value::Array(items)
            }
            (_, Some(Value::Object(mut object)), Value::Object(new)) => {
                merge(&mut object, new.clone());
                Value::Object(object)
            }
            _ => value.clone(),
        }),
    }
}

fn set_filtered(
    mut items: Vec<Value>,
    kind: PatchOpKind,
    target: &Target,
    filter: &Filter,
    value: &Value,
) -> Result<Vec<Value>, PatchError> {
    let exact = case_exact_of(target.def);
    let matched: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| matches(filter, item, &exact))
        .map(|(i, _)| i)
        .collect();
    let written = if matched.is_empty() {
        // Entra expects `emails[type eq "work"].value` to create the element.
        let Some(equalities) = equalities(filter) else {
            return err(
                PatchErrorKind::NoTarget,
                format!("no value of '{}' matches the filter", target.name),
            );
        };
        let mut element = Map::new();
        for (name, literal) in equalities {
            let (key, sub_kind) = sub_of(target.def, &name);
            put(
                &mut element,
                &key,
                coerce_sub(sub_kind, &literal.to_json(), &key)?,
            );
        }
        match &target.sub {
            Some((sub, sub_kind)) => put(&mut element, sub, coerce_sub(*sub_kind, value, sub)?),
            None => merge(&mut element, element_object(target.def, value)?),
        }
        items.push(Value::Object(element));
        vec![items.len() - 1]
    } else {
        for &i in &matched {
            let Some(item) = items.get_mut(i) else {
                continue;
            };
            match &target.sub {
                Some((sub, sub_kind)) => {
                    let v = coerce_sub(*sub_kind, value, sub)?;
                    match item {
                        Value::Object(o) => put(o, sub, v),
                        other => *other = Value::Object(Map::from_iter([(sub.to_string(), v)])),
                    }
                }
                None if kind == PatchOpKind::Replace => *item = element_value(target.def, value)?,
                None => {
                    let incoming = element_object(target.def, value)?;
                    match item {
                        Value::Object(o) => merge(o, incoming),
                        other => *other = Value::Object(incoming),
                    }
                }
            }
        }
        matched
    };
    enforce_single_primary(&mut items, &written);
    Ok(items)
}

/// `a eq x and b eq y` as `[(a, x), (b, y)]`; `None` for any other filter.
fn equalities(filter: &Filter) -> Option<Vec<(String, CompValue)>> {
    match filter {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } if path.schema.is_none() && path.sub_attr.is_none() && *value != CompValue::Null => {
            Some(vec![(path.name.clone(), value.clone())])
        }
        Filter::And(a, b) => {
            let mut all = equalities(a)?;
            all.extend(equalities(b)?);
            Some(all)
        }
        _ => None,
    }
}

fn sub_of(def: Option<&AttrDef>, name: &str) -> (String, Option<AttrKind>) {
    match def.and_then(|d| d.sub(name)) {
        Some((canonical, kind)) => (canonical.to_string(), Some(kind)),
        None => (name.to_string(), None),
    }
}

/// Sets `key` (replacing any differently-cased spelling); null removes it.
fn put(object: &mut Map<String, Value>, key: &str, value: Value) {
    take_ci(object, key);
    if !value.is_null() {
        object.insert(key.to_string(), value);
    }
}

fn merge(object: &mut Map<String, Value>, incoming: Map<String, Value>) {
    for (k, v) in incoming {
        put(object, &k, v);
    }
}

/// Keeps `primary: true` on at most one element: the last written one that
/// has it wins (RFC 7643 §2.4).
fn enforce_single_primary(items: &mut [Value], written: &[usize]) {
    let is_primary =
        |v: &Value| v.as_object().and_then(|o| get_ci(o, "primary")) == Some(&Value::Bool(true));
    let winner = written
        .iter()
        .rev()
        .copied()
        .find(|&i| items.get(i).is_some_and(is_primary))
        .or_else(|| items.iter().rposition(is_primary));
    let Some(winner) = winner else { return };
    for (i, item) in items.iter_mut().enumerate() {
        if i != winner
            && is_primary(item)
            && let Value::Object(o) = item
        {
            put(o, "primary", Value::Bool(false));
        }
    }
}

// ---------------------------------------------------------------------------
// Value coercion

pub(super) fn coerce_scalar(
    kind: AttrKind,
    value: &Value,
    what: &str,
) -> Result<Value, PatchError> {
    use PatchErrorKind::InvalidValue;
    match (kind, value) {
        (_, Value::Null) => Ok(Value::Null),
        (AttrKind::Boolean, Value::Bool(_)) => Ok(value.clone()),
        (AttrKind::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => {
            Ok(Value::Bool(true))
        }
        (AttrKind::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => {
            Ok(Value::Bool(false))
        }
        (AttrKind::Boolean, _) => err(
            InvalidValue,
            format!("'{what}' must be a boolean, got {}", brief(value)),
        ),
        (AttrKind::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(value.clone()),
        (AttrKind::Integer, Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(n) => Ok(Value::from(n)),
            Err(_) => err(
                InvalidValue,
                format!("'{what}' must be an integer, got {}", brief(value)),
            ),
        },
        (AttrKind::Integer, _) => err(
            InvalidValue,
            format!("'{what}' must be an integer, got {}", brief(value)),
        ),
        (AttrKind::Complex, _) => err(
            InvalidValue,
            format!("'{what}' is complex and needs an object"),
        ),
        (_, Value::String(_)) => Ok(value.clone()),
        (_, Value::Number(n)) => Ok(Value::String(n.to_string())),
        (_, Value::Bool(b)) => Ok(Value::String(b.to_string())),
        (_, _) => err(
            InvalidValue,
            format!("'{what}' must be a string, got {}", brief(value)),
        ),
    }
}

/// Coerces a sub-attribute value; unknown sub-attributes are kept as sent.
fn coerce_sub(kind: Option<AttrKind>, value: &Value, what: &str) -> Result<Value, PatchError> {
    match kind {
        Some(kind) => coerce_scalar(kind, value, what),
        None => Ok(value.clone()),
    }
}

fn brief(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A complex value as an object with canonical sub-attribute names. For a
/// single-valued attribute (`lenient`), a bare scalar becomes
/// `{"value": ...}` and a one-element array is unwrapped (Entra sends
/// `manager` both ways).
fn coerce_complex(
    def: &AttrDef,
    value: &Value,
    lenient: bool,
) -> Result<Map<String, Value>, PatchError> {
    match value {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, v) in o {
                let (key, kind) = sub_of(Some(def), k);
                let v = if v.is_null() {
                    Value::Null
                } else {
                    coerce_sub(kind, v, &format!("{}.{key}", def.name))?
                };
                out.insert(key, v);
            }
            Ok(out)
        }
        Value::Array(items) if lenient && items.len() == 1 => match items.first() {
            Some(only) => coerce_complex(def, only, false),
            None => Ok(Map::new()),
        },
        Value::String(_) | Value::Number(_) | Value::Bool(_)
            if lenient && def.sub("value").is_some() =>
        {
            let (key, kind) = sub_of(Some(def), "value");
            let v = coerce_sub(kind, value, &format!("{}.value", def.name))?;
            Ok(Map::from_iter([(key, v)]))
        }
        _ => err(
            PatchErrorKind::InvalidValue,
            format!("'{}' needs an object, got {}", def.name, brief(value)),
        ),
    }
}

/// One element of a multi-valued attribute, nulls dropped.
fn element_value(def: Option<&AttrDef>, value: &Value) -> Result<Value, PatchError> {
    match def {
        Some(d) if d.kind == AttrKind::Complex => {
            let mut o = coerce_complex(d, value, false)?;
            o.retain(|_, v| !v.is_null());
            Ok(Value::Object(o))
        }
        Some(d) => coerce_scalar(d.kind, value, d.name),
        None => Ok(value.clone()),
    }
}

fn element_object(def: Option<&AttrDef>, value: &Value) -> Result<Map<String, Value>, PatchError> {
    match element_value(def, value)? {
        Value::Object(o) => Ok(o),
        other => err(
            PatchErrorKind::InvalidValue,
            format!("expected an object for an element, got {}", brief(&other)),
        ),
    }
}

fn coerce_multi(def: &AttrDef, value: &Value) -> Result<Vec<Value>, PatchError> {
    let raw: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    raw.into_iter()
        .filter(|v| !v.is_null())
        .map(|v| element_value(Some(def), v))
        .filter(|r| !matches!(r, Ok(Value::Object(o)) if o.is_empty()))
        .collect()
}
