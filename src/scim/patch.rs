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

use super::filter::{AttrPath, CompValue, CompareOp, Filter, PatchPath, matches, parse_patch_path};

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

fn err<T>(kind: PatchErrorKind, detail: impl Into<String>) -> Result<T, PatchError> {
    Err(PatchError::new(kind, detail))
}

// ---------------------------------------------------------------------------
// Schemas

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrKind {
    String,
    Boolean,
    Complex,
    Reference,
    DateTime,
    Integer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

/// One attribute of a resource schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttrDef {
    pub name: &'static str,
    pub multi_valued: bool,
    pub kind: AttrKind,
    pub sub_attributes: &'static [(&'static str, AttrKind)],
    pub mutability: Mutability,
    pub case_exact: bool,
    /// Required attributes cannot be removed.
    pub required: bool,
}

impl AttrDef {
    pub const fn new(name: &'static str, kind: AttrKind) -> Self {
        AttrDef {
            name,
            multi_valued: false,
            kind,
            sub_attributes: &[],
            mutability: Mutability::ReadWrite,
            case_exact: false,
            required: false,
        }
    }
    pub const fn complex(name: &'static str, subs: &'static [(&'static str, AttrKind)]) -> Self {
        let mut def = AttrDef::new(name, AttrKind::Complex);
        def.sub_attributes = subs;
        def
    }
    pub const fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    pub const fn mutability(mut self, mutability: Mutability) -> Self {
        self.mutability = mutability;
        self
    }
    pub const fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    fn sub(&self, name: &str) -> Option<(&'static str, AttrKind)> {
        self.sub_attributes
            .iter()
            .copied()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

/// Describes the resource type being patched.
#[derive(Debug)]
pub struct ResourceSchema {
    pub core_urn: &'static str,
    pub extension_urns: &'static [&'static str],
    pub attributes: &'static [AttrDef],
    /// Attribute definitions of the extensions in `extension_urns`.
    pub extension_attributes: &'static [(&'static str, &'static [AttrDef])],
}

impl ResourceSchema {
    fn known_extension(&self, urn: &str) -> Option<&'static str> {
        self.extension_urns
            .iter()
            .copied()
            .find(|u| u.eq_ignore_ascii_case(urn))
    }
    fn extension_defs(&self, urn: &str) -> &'static [AttrDef] {
        self.extension_attributes
            .iter()
            .find(|(u, _)| u.eq_ignore_ascii_case(urn))
            .map_or(&[], |(_, defs)| defs)
    }
    fn is_known_schema(&self, urn: &str) -> bool {
        urn.eq_ignore_ascii_case(self.core_urn) || self.known_extension(urn).is_some()
    }
}

fn find_def(defs: &'static [AttrDef], name: &str) -> Option<&'static AttrDef> {
    defs.iter().find(|d| d.name.eq_ignore_ascii_case(name))
}

use AttrKind as K;

const MULTI_SUBS: &[(&str, AttrKind)] = &[
    ("value", K::String),
    ("display", K::String),
    ("type", K::String),
    ("primary", K::Boolean),
];
const PHOTO_SUBS: &[(&str, AttrKind)] = &[
    ("value", K::Reference),
    ("display", K::String),
    ("type", K::String),
    ("primary", K::Boolean),
];
const NAME_SUBS: &[(&str, AttrKind)] = &[
    ("formatted", K::String),
    ("familyName", K::String),
    ("givenName", K::String),
    ("middleName", K::String),
    ("honorificPrefix", K::String),
    ("honorificSuffix", K::String),
];
const ADDRESS_SUBS: &[(&str, AttrKind)] = &[
    ("formatted", K::String),
    ("streetAddress", K::String),
    ("locality", K::String),
    ("region", K::String),
    ("postalCode", K::String),
    ("country", K::String),
    ("type", K::String),
    ("primary", K::Boolean),
];
const REF_SUBS: &[(&str, AttrKind)] = &[
    ("value", K::String),
    ("$ref", K::Reference),
    ("display", K::String),
    ("type", K::String),
];
/// RFC 7643 §8.7.1: a group member is referenced by `value`, `$ref` and `type`.
const MEMBER_SUBS: &[(&str, AttrKind)] = &[
    ("value", K::String),
    ("$ref", K::Reference),
    ("type", K::String),
];
const META_SUBS: &[(&str, AttrKind)] = &[
    ("resourceType", K::String),
    ("created", K::DateTime),
    ("lastModified", K::DateTime),
    ("location", K::Reference),
    ("version", K::String),
];
const MANAGER_SUBS: &[(&str, AttrKind)] = &[
    ("value", K::String),
    ("$ref", K::Reference),
    ("displayName", K::String),
];

const USER_ATTRIBUTES: &[AttrDef] = &[
    AttrDef::new("id", K::String)
        .mutability(Mutability::ReadOnly)
        .case_exact(),
    AttrDef::new("externalId", K::String).case_exact(),
    AttrDef::complex("meta", META_SUBS).mutability(Mutability::ReadOnly),
    AttrDef::new("userName", K::String).required(),
    AttrDef::complex("name", NAME_SUBS),
    AttrDef::new("displayName", K::String),
    AttrDef::new("nickName", K::String),
    AttrDef::new("profileUrl", K::Reference),
    AttrDef::new("title", K::String),
    AttrDef::new("userType", K::String),
    AttrDef::new("preferredLanguage", K::String),
    AttrDef::new("locale", K::String),
    AttrDef::new("timezone", K::String),
    AttrDef::new("active", K::Boolean),
    AttrDef::new("password", K::String)
        .mutability(Mutability::WriteOnly)
        .case_exact(),
    AttrDef::complex("emails", MULTI_SUBS).multi(),
    AttrDef::complex("phoneNumbers", MULTI_SUBS).multi(),
    AttrDef::complex("ims", MULTI_SUBS).multi(),
    AttrDef::complex("photos", PHOTO_SUBS).multi(),
    AttrDef::complex("addresses", ADDRESS_SUBS).multi(),
    AttrDef::complex("groups", REF_SUBS)
        .multi()
        .mutability(Mutability::ReadOnly),
    AttrDef::complex("entitlements", MULTI_SUBS).multi(),
    AttrDef::complex("roles", MULTI_SUBS).multi(),
    AttrDef::complex("x509Certificates", MULTI_SUBS).multi(),
];

const ENTERPRISE_ATTRIBUTES: &[AttrDef] = &[
    AttrDef::new("employeeNumber", K::String),
    AttrDef::new("costCenter", K::String),
    AttrDef::new("organization", K::String),
    AttrDef::new("division", K::String),
    AttrDef::new("department", K::String),
    AttrDef::complex("manager", MANAGER_SUBS),
];

const GROUP_ATTRIBUTES: &[AttrDef] = &[
    AttrDef::new("id", K::String)
        .mutability(Mutability::ReadOnly)
        .case_exact(),
    AttrDef::new("externalId", K::String).case_exact(),
    AttrDef::complex("meta", META_SUBS).mutability(Mutability::ReadOnly),
    AttrDef::new("displayName", K::String).required(),
    AttrDef::complex("members", MEMBER_SUBS).multi(),
];

/// RFC 7643 §4.1 User plus the §4.3 enterprise extension.
pub static USER_SCHEMA: ResourceSchema = ResourceSchema {
    core_urn: USER_CORE_URN,
    extension_urns: &[ENTERPRISE_USER_URN],
    attributes: USER_ATTRIBUTES,
    extension_attributes: &[(ENTERPRISE_USER_URN, ENTERPRISE_ATTRIBUTES)],
};

/// RFC 7643 §4.2 Group.
pub static GROUP_SCHEMA: ResourceSchema = ResourceSchema {
    core_urn: GROUP_CORE_URN,
    extension_urns: &[],
    attributes: GROUP_ATTRIBUTES,
    extension_attributes: &[],
};

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

fn get_ci<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
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
    for (key, v) in object {
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
                        other => *other = Value::Object(Map::from_iter([(sub.clone(), v)])),
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

fn coerce_scalar(kind: AttrKind, value: &Value, what: &str) -> Result<Value, PatchError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENT: &str = ENTERPRISE_USER_URN;

    fn body(ops: Value) -> Value {
        json!({"schemas": [PATCH_OP_URN], "Operations": ops})
    }

    fn parse(ops: Value) -> Vec<PatchOp> {
        parse_patch_request(&body(ops)).unwrap()
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(o) => o,
            other => panic!("not an object: {other}"),
        }
    }

    fn patch_user(resource: Value, ops: Value) -> Result<Value, PatchError> {
        let mut r = obj(resource);
        apply(&mut r, &parse(ops), &USER_SCHEMA)?;
        Ok(Value::Object(r))
    }

    fn patch_group(resource: Value, ops: Value) -> Result<Value, PatchError> {
        let mut r = obj(resource);
        apply(&mut r, &parse(ops), &GROUP_SCHEMA)?;
        Ok(Value::Object(r))
    }

    fn user() -> Value {
        json!({
            "schemas": [USER_CORE_URN],
            "id": "2819c223",
            "userName": "bjensen@example.com",
            "active": true,
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "meta": {"resourceType": "User"}
        })
    }

    fn kind_of(r: Result<Value, PatchError>) -> PatchErrorKind {
        match r {
            Ok(v) => panic!("expected an error, got {v}"),
            Err(e) => e.kind,
        }
    }

    // ----- parse_patch_request -----

    #[test]
    fn parses_entra_tutorial_body() {
        let ops = parse_patch_request(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
                {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}
            ]
        }))
        .unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].op, PatchOpKind::Replace);
        let path = ops[0].path.as_ref().unwrap();
        assert!(path.attr.is("emails"));
        assert_eq!(path.sub_attr.as_deref(), Some("value"));
        assert!(path.value_filter.is_some());
        assert!(
            ops[1]
                .path
                .as_ref()
                .unwrap()
                .attr
                .is_sub("name", "familyName")
        );
        assert_eq!(ops[1].value, Some(json!("updatedFamilyName")));
    }

    #[test]
    fn parse_accepts_any_case() {
        let ops = parse_patch_request(&json!({
            "schemas": ["URN:IETF:PARAMS:SCIM:API:MESSAGES:2.0:PATCHOP"],
            "operations": [
                {"op": "ADD", "path": "title", "value": "x"},
                {"OP": "remove", "Path": "title"},
                {"op": "rEpLaCe", "value": {"title": "y"}}
            ]
        }))
        .unwrap();
        let kinds: Vec<_> = ops.iter().map(|o| o.op).collect();
        assert_eq!(
            kinds,
            [PatchOpKind::Add, PatchOpKind::Remove, PatchOpKind::Replace]
        );
        assert!(ops[2].path.is_none());
    }

    #[test]
    fn parse_null_value_is_kept_absent_is_error() {
        let ops = parse(json!([{"op": "Add", "path": "nickName", "value": null}]));
        assert_eq!(ops[0].value, Some(Value::Null));
        let e = parse_patch_request(&body(json!([{"op": "Add", "path": "nickName"}]))).unwrap_err();
        assert_eq!(e.kind, PatchErrorKind::InvalidValue);
        assert!(e.detail.contains("add requires a 'value'"), "{e}");
        let e = parse_patch_request(&body(json!([{"op": "replace"}]))).unwrap_err();
        assert_eq!(e.kind, PatchErrorKind::InvalidValue);
    }

    #[test]
    fn parse_errors() {
        use PatchErrorKind::*;
        let cases = [
            (json!([1, 2]), InvalidSyntax),
            (
                json!({"Operations": [{"op": "add", "path": "title", "value": "x"}]}),
                InvalidSyntax,
            ),
            (
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "Operations": [{"op": "add", "path": "title", "value": "x"}]}),
                InvalidSyntax,
            ),
            (
                json!({"schemas": PATCH_OP_URN, "Operations": [{"op": "add", "path": "title", "value": "x"}]}),
                InvalidSyntax,
            ),
            (json!({"schemas": [PATCH_OP_URN]}), InvalidSyntax),
            (body(json!([])), InvalidSyntax),
            (body(json!({"op": "add"})), InvalidSyntax),
            (body(json!(["add"])), InvalidSyntax),
            (
                body(json!([{"op": "move", "path": "title"}])),
                InvalidSyntax,
            ),
            (body(json!([{"op": 1, "path": "title"}])), InvalidSyntax),
            (
                body(json!([{"path": "title", "value": "x"}])),
                InvalidSyntax,
            ),
            (
                body(json!([{"op": "add", "path": "emails[type eq work].value", "value": "x"}])),
                InvalidPath,
            ),
            (
                body(json!([{"op": "add", "path": "", "value": "x"}])),
                InvalidPath,
            ),
            (
                body(json!([{"op": "add", "path": 7, "value": "x"}])),
                InvalidPath,
            ),
            (body(json!([{"op": "Remove"}])), NoTarget),
            (body(json!([{"op": "remove", "path": null}])), NoTarget),
            (body(json!([{"op": "add", "path": "title"}])), InvalidValue),
        ];
        for (input, kind) in cases {
            let e = parse_patch_request(&input).unwrap_err();
            assert_eq!(e.kind, kind, "{input}: {e}");
            assert!(!e.detail.is_empty());
        }
        let e = parse_patch_request(&body(
            json!([{"op": "add", "path": "title", "value": "x"}, {"op": "bad"}]),
        ))
        .unwrap_err();
        assert!(e.detail.starts_with("Operations[1]"), "{e}");
    }

    #[test]
    fn parse_operation_limit() {
        let one = json!({"op": "replace", "path": "title", "value": "x"});
        let max = vec![one.clone(); MAX_OPERATIONS];
        assert_eq!(parse(Value::Array(max)).len(), MAX_OPERATIONS);
        let over = vec![one; MAX_OPERATIONS + 1];
        let e = parse_patch_request(&body(Value::Array(over))).unwrap_err();
        assert_eq!(e.kind, PatchErrorKind::InvalidSyntax);
        assert!(e.detail.contains("at most 10000"));
    }

    // ----- apply: users -----

    #[test]
    fn entra_tutorial_replace_email_and_family_name() {
        let ops = json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
            {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}
        ]);
        let r = patch_user(user(), ops.clone()).unwrap();
        assert_eq!(
            r["emails"][0],
            json!({"value": "updatedEmail@microsoft.com", "type": "work", "primary": true})
        );
        assert_eq!(r["emails"][1]["value"], "babs@jensen.org");
        assert_eq!(
            r["name"],
            json!({"givenName": "Barbara", "familyName": "updatedFamilyName"})
        );
        // On an empty resource the work email element is created.
        let r = patch_user(json!({"userName": "u"}), ops).unwrap();
        assert_eq!(
            r["emails"],
            json!([{"type": "work", "value": "updatedEmail@microsoft.com"}])
        );
        assert_eq!(r["name"], json!({"familyName": "updatedFamilyName"}));
    }

    #[test]
    fn entra_active_as_string() {
        let r = patch_user(
            user(),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .unwrap();
        assert_eq!(r["active"], json!(false));
        let r = patch_user(
            r,
            json!([{"op": "Replace", "path": "active", "value": "True"}]),
        )
        .unwrap();
        assert_eq!(r["active"], json!(true));
        let r = patch_user(
            r,
            json!([{"op": "replace", "path": "active", "value": "false"}]),
        )
        .unwrap();
        assert_eq!(r["active"], json!(false));
        let r = patch_user(
            r,
            json!([{"op": "replace", "path": "active", "value": true}]),
        )
        .unwrap();
        assert_eq!(r["active"], json!(true));
        for bad in [json!("yes"), json!(1), json!({"a": 1}), json!([true])] {
            let k = kind_of(patch_user(
                user(),
                json!([{"op": "replace", "path": "active", "value": bad}]),
            ));
            assert_eq!(k, PatchErrorKind::InvalidValue);
        }
    }

    #[test]
    fn entra_pathless_replace_mixed_keys() {
        let r = patch_user(
            user(),
            json!([{"op": "replace", "value": {
                "active": false,
                "name.givenName": "Ann",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Sales"
            }}]),
        )
        .unwrap();
        assert_eq!(r["active"], json!(false));
        assert_eq!(
            r["name"],
            json!({"givenName": "Ann", "familyName": "Jensen"})
        );
        assert_eq!(r[ENT], json!({"department": "Sales"}));
        assert_eq!(r["schemas"], json!([USER_CORE_URN, ENT]));
    }

    #[test]
    fn pathless_string_booleans_and_whole_extension() {
        let r = patch_user(
            json!({"userName": "u"}),
            json!([{"op": "Add", "value": {
                "active": "True",
                "displayName": "Ann Example",
                "emails": [{"value": "a@x.com", "type": "work", "primary": "true"}],
                ENT: {"employeeNumber": "42", "manager": {"value": "boss"}}
            }}]),
        )
        .unwrap();
        assert_eq!(r["active"], json!(true));
        assert_eq!(
            r["emails"],
            json!([{"value": "a@x.com", "type": "work", "primary": true}])
        );
        assert_eq!(
            r[ENT],
            json!({"employeeNumber": "42", "manager": {"value": "boss"}})
        );
        // A whole-extension replace merges into what is there.
        let r = patch_user(
            r,
            json!([{"op": "Replace", "value": {ENT: {"department": "R&D"}}}]),
        )
        .unwrap();
        assert_eq!(
            r[ENT],
            json!({"employeeNumber": "42", "department": "R&D", "manager": {"value": "boss"}})
        );
        // Through a path as well.
        let r = patch_user(
            r,
            json!([{"op": "Replace", "path": ENT, "value": {"costCenter": "cc"}}]),
        )
        .unwrap();
        assert_eq!(r[ENT]["costCenter"], "cc");
        let r = patch_user(r, json!([{"op": "Remove", "path": ENT}])).unwrap();
        assert!(r.get(ENT).is_none());
    }

    #[test]
    fn pathless_core_urn_object_applies_core_attributes() {
        let r = patch_user(
            user(),
            json!([{"op": "replace", "value": {USER_CORE_URN: {"title": "Boss"}}}]),
        )
        .unwrap();
        assert_eq!(r["title"], "Boss");
        let k = kind_of(patch_user(
            user(),
            json!([{"op": "remove", "path": USER_CORE_URN}]),
        ));
        assert_eq!(k, PatchErrorKind::InvalidPath);
    }

    #[test]
    fn attribute_names_case_insensitive_and_canonical() {
        let r = patch_user(
            json!({"userName": "u", "name": {"givenName": "Old"}}),
            json!([
                {"op": "replace", "path": "name.givenname", "value": "New"},
                {"op": "replace", "path": "DISPLAYNAME", "value": "D"},
                {"op": "add", "path": "Emails", "value": {"Value": "a@b.c", "TYPE": "work"}},
                {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:Title", "value": "T"},
                {"op": "replace", "path": "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:DEPARTMENT", "value": "Ops"}
            ]),
        )
        .unwrap();
        assert_eq!(r["name"], json!({"givenName": "New"}));
        assert_eq!(r["displayName"], "D");
        assert_eq!(r["emails"], json!([{"value": "a@b.c", "type": "work"}]));
        assert_eq!(r["title"], "T");
        assert_eq!(r[ENT], json!({"department": "Ops"}));
        // A stored key with other casing is replaced by the canonical one.
        let r = patch_user(
            json!({"username": "old"}),
            json!([{"op": "replace", "path": "userName", "value": "new"}]),
        )
        .unwrap();
        assert_eq!(r, json!({"userName": "new"}));
    }

    #[test]
    fn unknown_attributes_and_schemas_are_invalid_path() {
        use PatchErrorKind::InvalidPath;
        for path in [
            "favouriteColour",
            "schemas",
            "urn:ietf:params:scim:schemas:core:2.0:User:schemas",
            "urn:ietf:params:scim:schemas:core:2.0:User:nope",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:shoeSize",
            "name.nickname",
            "userName.value",
            "emails[type eq \"work\"].colour",
            "foo:bar",
        ] {
            let k = kind_of(patch_user(
                user(),
                json!([{"op": "replace", "path": path, "value": "x"}]),
            ));
            assert_eq!(k, InvalidPath, "{path}");
        }
        let k = kind_of(patch_user(
            user(),
            json!([{"op": "add", "value": {"schemas": ["x"], "bogus": 1}}]),
        ));
        assert_eq!(k, InvalidPath);
        let k = kind_of(patch_user(
            user(),
            json!([{"op": "add", "value": {"a b": 1}}]),
        ));
        assert_eq!(k, InvalidPath);
    }

    #[test]
    fn custom_extension_stored_as_sent() {
        let custom = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User";
        let r = patch_user(
            user(),
            json!([
                {"op": "Add", "path": format!("{custom}:costCode"), "value": "C-1"},
                {"op": "Add", "path": format!("{custom}:badge.number"), "value": 7}
            ]),
        )
        .unwrap();
        assert_eq!(
            r[custom],
            json!({"costCode": "C-1", "badge": {"number": 7}})
        );
        assert!(r["schemas"].as_array().unwrap().contains(&json!(custom)));
        // Whole custom extension objects, path-less and with a path.
        let other = "urn:example:acme:2.0:User";
        let r = patch_user(
            r,
            json!([{"op": "replace", "value": {other: {"level": 3}}}]),
        )
        .unwrap();
        assert_eq!(r[other], json!({"level": 3}));
        let r = patch_user(
            r,
            json!([{"op": "replace", "path": other, "value": {"tier": "gold"}}]),
        )
        .unwrap();
        assert_eq!(r[other], json!({"level": 3, "tier": "gold"}));
        let r = patch_user(r, json!([{"op": "remove", "path": format!("{custom}:costCode")}, {"op": "remove", "path": format!("{custom}:badge")}])).unwrap();
        assert!(r.get(custom).is_none());
        assert!(!r["schemas"].as_array().unwrap().contains(&json!(custom)));
        let r = patch_user(r, json!([{"op": "remove", "path": other}])).unwrap();
        assert!(r.get(other).is_none());
    }

    #[test]
    fn read_only_attributes_are_mutability_errors() {
        for path in [
            "id",
            "meta",
            "meta.lastModified",
            "groups",
            "groups[value eq \"g\"]",
        ] {
            for op in ["add", "replace", "remove"] {
                let k = kind_of(patch_user(
                    user(),
                    json!([{"op": op, "path": path, "value": "x"}]),
                ));
                assert_eq!(k, PatchErrorKind::Mutability, "{op} {path}");
            }
        }
        // Echoing an unchanged read-only value in a path-less op is tolerated.
        let r = patch_user(
            user(),
            json!([{"op": "replace", "value": {"id": "2819c223", "title": "t"}}]),
        )
        .unwrap();
        assert_eq!(r["title"], "t");
        let k = kind_of(patch_user(
            user(),
            json!([{"op": "replace", "value": {"id": "other"}}]),
        ));
        assert_eq!(k, PatchErrorKind::Mutability);
    }

    #[test]
    fn immutable_attributes() {
        static SCHEMA: ResourceSchema = ResourceSchema {
            core_urn: "urn:x:Thing",
            extension_urns: &[],
            attributes: &[
                AttrDef::new("serial", AttrKind::String).mutability(Mutability::Immutable)
            ],
            extension_attributes: &[],
        };
        let mut r = Map::new();
        let ops = parse(json!([{"op": "add", "path": "serial", "value": "s1"}]));
        apply(&mut r, &ops, &SCHEMA).unwrap();
        assert_eq!(r["serial"], "s1");
        apply(&mut r, &ops, &SCHEMA).unwrap();
        let change = parse(json!([{"op": "replace", "path": "serial", "value": "s2"}]));
        assert_eq!(
            apply(&mut r, &change, &SCHEMA).unwrap_err().kind,
            PatchErrorKind::Mutability
        );
    }

    #[test]
    fn removing_required_attribute_is_invalid_value() {
        let e = patch_user(user(), json!([{"op": "remove", "path": "userName"}])).unwrap_err();
        assert_eq!(e.kind, PatchErrorKind::InvalidValue);
        assert!(e.detail.contains("required"), "{e}");
        let k = kind_of(patch_user(
            user(),
            json!([{"op": "replace", "path": "userName", "value": null}]),
        ));
        assert_eq!(k, PatchErrorKind::InvalidValue);
        let k = kind_of(patch_group(
            json!({"displayName": "g"}),
            json!([{"op": "remove", "path": "displayName"}]),
        ));
        assert_eq!(k, PatchErrorKind::InvalidValue);
    }

    #[test]
    fn null_value_unassigns() {
        let r = patch_user(
            json!({"userName": "u", "nickName": "Babs", "title": "t", "name": {"givenName": "g", "familyName": "f"}}),
            json!([
                {"op": "Add", "path": "nickName", "value": null},
                {"op": "replace", "value": {"title": null}},
                {"op": "replace", "path": "name.givenName", "value": null},
                {"op": "add", "path": "name", "value": {"familyName": null}}
            ]),
        )
        .unwrap();
        assert_eq!(r, json!({"userName": "u"}));
        // Unassigning something absent is a no-op.
        let r = patch_user(json!({"userName": "u"}), json!([{"op": "remove", "path": "nickName"}, {"op": "replace", "path": "emails", "value": null}])).unwrap();
        assert_eq!(r, json!({"userName": "u"}));
    }

    #[test]
    fn add_to_multi_valued_appends() {
        let r = patch_user(
            user(),
            json!([
                {"op": "add", "path": "emails", "value": {"value": "third@x.com", "type": "other"}},
                {"op": "add", "path": "emails", "value": [{"value": "fourth@x.com"}, {"value": "babs@jensen.org", "type": "home"}]},
                {"op": "add", "path": "phoneNumbers", "value": [{"value": "555-1234", "type": "work"}]}
            ]),
        )
        .unwrap();
        let emails: Vec<&str> = r["emails"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["value"].as_str().unwrap())
            .collect();
        // The exact duplicate is not added twice.
        assert_eq!(
            emails,
            [
                "bjensen@example.com",
                "babs@jensen.org",
                "third@x.com",
                "fourth@x.com"
            ]
        );
        assert_eq!(
            r["phoneNumbers"],
            json!([{"value": "555-1234", "type": "work"}])
        );
    }

    #[test]
    fn replace_multi_valued_replaces_all() {
        let r = patch_user(user(), json!([{"op": "replace", "path": "emails", "value": [{"value": "only@x.com", "type": "work"}]}])).unwrap();
        assert_eq!(
            r["emails"],
            json!([{"value": "only@x.com", "type": "work"}])
        );
        let r = patch_user(
            user(),
            json!([{"op": "replace", "path": "emails", "value": []}]),
        )
        .unwrap();
        assert!(r.get("emails").is_none());
    }

    #[test]
    fn primary_is_unique() {
        let r = patch_user(user(), json!([{"op": "add", "path": "emails", "value": {"value": "new@x.com", "primary": true}}])).unwrap();
        let primaries: Vec<&Value> = r["emails"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["primary"])
            .collect();
        assert_eq!(primaries, [&json!(false), &Value::Null, &json!(true)]);
        let r = patch_user(
            user(),
            json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": "True"}]),
        )
        .unwrap();
        assert_eq!(r["emails"][0]["primary"], json!(false));
        assert_eq!(r["emails"][1]["primary"], json!(true));
        let r = patch_user(
            json!({"userName": "u"}),
            json!([{"op": "replace", "path": "emails", "value": [{"value": "a", "primary": true}, {"value": "b", "primary": true}]}]),
        )
        .unwrap();
        assert_eq!(
            r["emails"],
            json!([{"value": "a", "primary": false}, {"value": "b", "primary": true}])
        );
    }

    #[test]
    fn filtered_replace_and_add() {
        // Replace the whole matching element.
        let r = patch_user(user(), json!([{"op": "replace", "path": "emails[type eq \"home\"]", "value": {"value": "h@x.com", "type": "home"}}])).unwrap();
        assert_eq!(r["emails"][1], json!({"value": "h@x.com", "type": "home"}));
        // Add merges into the matching element.
        let r = patch_user(user(), json!([{"op": "add", "path": "emails[type eq \"home\"]", "value": {"display": "Home"}}])).unwrap();
        assert_eq!(
            r["emails"][1],
            json!({"value": "babs@jensen.org", "type": "home", "display": "Home"})
        );
        // Filters are case-insensitive for caseExact=false attributes.
        let r = patch_user(user(), json!([{"op": "replace", "path": "emails[TYPE EQ \"HOME\"].value", "value": "z@x.com"}])).unwrap();
        assert_eq!(r["emails"][1]["value"], "z@x.com");
        // Every match is updated.
        let r = patch_user(
            user(),
            json!([{"op": "replace", "path": "emails[value co \"@\"].display", "value": "d"}]),
        )
        .unwrap();
        assert!(
            r["emails"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["display"] == "d")
        );
    }

    #[test]
    fn filtered_add_creates_element_from_equalities() {
        let r = patch_user(
            json!({"userName": "u"}),
            json!([
                {"op": "Add", "path": "addresses[type eq \"work\"].streetAddress", "value": "1 Main St"},
                {"op": "Add", "path": "addresses[type eq \"work\"].locality", "value": "Springfield"},
                {"op": "Replace", "path": "phoneNumbers[type eq \"mobile\" and primary eq \"True\"].value", "value": "555"},
                {"op": "Add", "path": "emails[type eq \"work\"]", "value": {"value": "w@x.com"}}
            ]),
        )
        .unwrap();
        assert_eq!(
            r["addresses"],
            json!([{"type": "work", "streetAddress": "1 Main St", "locality": "Springfield"}])
        );
        assert_eq!(
            r["phoneNumbers"],
            json!([{"type": "mobile", "primary": true, "value": "555"}])
        );
        assert_eq!(r["emails"], json!([{"type": "work", "value": "w@x.com"}]));
    }

    #[test]
    fn filtered_no_match_non_equality_is_no_target() {
        for path in [
            "emails[value co \"nomatch\"].value",
            "emails[type eq \"a\" or type eq \"b\"].value",
            "emails[not (type eq \"work\") and type eq \"home\" and value eq \"zzz\"].value",
            "emails[type.x eq \"a\"].value",
        ] {
            let k = kind_of(patch_user(
                user(),
                json!([{"op": "replace", "path": path, "value": "v"}]),
            ));
            assert_eq!(k, PatchErrorKind::NoTarget, "{path}");
        }
    }

    #[test]
    fn filtered_remove() {
        let r = patch_user(
            user(),
            json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]),
        )
        .unwrap();
        assert_eq!(
            r["emails"],
            json!([{"value": "bjensen@example.com", "type": "work", "primary": true}])
        );
        let r = patch_user(
            user(),
            json!([{"op": "remove", "path": "emails[type eq \"work\"].primary"}]),
        )
        .unwrap();
        assert_eq!(
            r["emails"][0],
            json!({"value": "bjensen@example.com", "type": "work"})
        );
        // No match: no-op.
        let r = patch_user(
            user(),
            json!([{"op": "remove", "path": "emails[type eq \"other\"]"}]),
        )
        .unwrap();
        assert_eq!(r, user());
        let r = patch_user(
            user(),
            json!([{"op": "remove", "path": "phoneNumbers[type eq \"x\"]"}]),
        )
        .unwrap();
        assert_eq!(r, user());
        // Removing every element removes the attribute.
        let r = patch_user(
            user(),
            json!([{"op": "remove", "path": "emails[value pr]"}]),
        )
        .unwrap();
        assert!(r.get("emails").is_none());
        // Remove the sub-attribute everywhere.
        let r = patch_user(user(), json!([{"op": "remove", "path": "emails.type"}])).unwrap();
        assert_eq!(
            r["emails"],
            json!([{"value": "bjensen@example.com", "primary": true}, {"value": "babs@jensen.org"}])
        );
    }

    #[test]
    fn filter_on_single_valued_is_invalid_path() {
        for op in ["replace", "add", "remove"] {
            let k = kind_of(patch_user(
                user(),
                json!([{"op": op, "path": "name[givenName eq \"Barbara\"].familyName", "value": "x"}]),
            ));
            assert_eq!(k, PatchErrorKind::InvalidPath);
            let k = kind_of(patch_user(
                user(),
                json!([{"op": op, "path": "title[value eq \"x\"]", "value": "x"}]),
            ));
            assert_eq!(k, PatchErrorKind::InvalidPath);
        }
    }

    #[test]
    fn sub_attribute_of_multi_valued_without_filter() {
        let r = patch_user(
            user(),
            json!([{"op": "replace", "path": "emails.display", "value": "d"}]),
        )
        .unwrap();
        assert!(
            r["emails"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["display"] == "d")
        );
        let r = patch_user(
            json!({"userName": "u"}),
            json!([{"op": "add", "path": "emails.value", "value": "a@b.c"}]),
        )
        .unwrap();
        assert_eq!(r["emails"], json!([{"value": "a@b.c"}]));
    }

    #[test]
    fn manager_variants() {
        let m = format!("{ENT}:manager");
        // URN path with a bare id.
        let r = patch_user(
            user(),
            json!([{"op": "Replace", "path": m, "value": "boss-1"}]),
        )
        .unwrap();
        assert_eq!(r[ENT], json!({"manager": {"value": "boss-1"}}));
        // Unqualified path with the one-element array form.
        let r = patch_user(
            user(),
            json!([{"op": "Add", "path": "manager", "value": [{"$ref": null, "value": "boss-2"}]}]),
        )
        .unwrap();
        assert_eq!(r[ENT], json!({"manager": {"value": "boss-2"}}));
        // Object form, then sub-attribute path, then removal.
        let r = patch_user(
            r,
            json!([{"op": "Add", "path": m, "value": {"value": "boss-3", "displayName": "Boss"}}]),
        )
        .unwrap();
        assert_eq!(
            r[ENT]["manager"],
            json!({"value": "boss-3", "displayName": "Boss"})
        );
        let r = patch_user(
            r,
            json!([{"op": "Replace", "path": format!("{m}.value"), "value": "boss-4"}]),
        )
        .unwrap();
        assert_eq!(r[ENT]["manager"]["value"], "boss-4");
        let r = patch_user(r, json!([{"op": "Remove", "path": m}])).unwrap();
        assert!(r.get(ENT).is_none());
        assert_eq!(r["schemas"], json!([USER_CORE_URN]));
        let k = kind_of(patch_user(
            user(),
            json!([{"op": "add", "path": m, "value": [{"value": "a"}, {"value": "b"}]}]),
        ));
        assert_eq!(k, PatchErrorKind::InvalidValue);
    }

    #[test]
    fn value_type_errors() {
        use PatchErrorKind::InvalidValue;
        let cases = [
            json!({"op": "replace", "path": "userName", "value": {"x": 1}}),
            json!({"op": "replace", "path": "title", "value": [1]}),
            json!({"op": "replace", "path": "name", "value": [1, 2]}),
            json!({"op": "replace", "path": "name", "value": "plain"}),
            json!({"op": "add", "path": "emails", "value": [{"value": "a", "primary": "maybe"}]}),
            json!({"op": "add", "path": "emails", "value": [[1]]}),
            json!({"op": "replace", "value": "not an object"}),
            json!({"op": "replace", "value": [{"title": "x"}]}),
            json!({"op": "replace", "path": ENT, "value": "x"}),
            json!({"op": "replace", "path": "emails[type eq \"work\"]", "value": "x@y"}),
        ];
        for op in cases {
            let e = patch_user(user(), Value::Array(vec![op.clone()])).unwrap_err();
            assert_eq!(e.kind, InvalidValue, "{op}: {e}");
        }
        // Numbers and booleans are accepted as strings for string attributes.
        let r = patch_user(
            user(),
            json!([{"op": "replace", "value": {"title": 7, "nickName": true}}]),
        )
        .unwrap();
        assert_eq!(
            (r["title"].as_str(), r["nickName"].as_str()),
            (Some("7"), Some("true"))
        );
    }

    #[test]
    fn integer_coercion() {
        assert_eq!(
            coerce_scalar(AttrKind::Integer, &json!(5), "n").unwrap(),
            json!(5)
        );
        assert_eq!(
            coerce_scalar(AttrKind::Integer, &json!(" 12 "), "n").unwrap(),
            json!(12)
        );
        assert!(coerce_scalar(AttrKind::Integer, &json!(1.5), "n").is_err());
        assert!(coerce_scalar(AttrKind::Integer, &json!("x"), "n").is_err());
        assert!(coerce_scalar(AttrKind::Complex, &json!("x"), "n").is_err());
    }

    #[test]
    fn error_detail_names_the_operation() {
        let e = patch_user(user(), json!([{"op": "replace", "path": "title", "value": "ok"}, {"op": "replace", "path": "nope", "value": 1}])).unwrap_err();
        assert_eq!(e.kind, PatchErrorKind::InvalidPath);
        assert!(
            e.detail
                .starts_with("Operations[1]: unknown attribute 'nope'"),
            "{e}"
        );
        assert_eq!(e.to_string(), e.detail);
        assert_eq!(e.kind.scim_type(), "invalidPath");
    }

    #[test]
    fn hand_built_ops_are_checked_too() {
        let mut r = obj(user());
        let remove_all = [PatchOp {
            op: PatchOpKind::Remove,
            path: None,
            value: None,
        }];
        assert_eq!(
            apply(&mut r, &remove_all, &USER_SCHEMA).unwrap_err().kind,
            PatchErrorKind::NoTarget
        );
        let add_nothing = [PatchOp {
            op: PatchOpKind::Add,
            path: Some(parse_patch_path("title").unwrap()),
            value: None,
        }];
        assert_eq!(
            apply(&mut r, &add_nothing, &USER_SCHEMA).unwrap_err().kind,
            PatchErrorKind::InvalidValue
        );
    }

    // ----- groups -----

    fn group() -> Value {
        json!({
            "schemas": [GROUP_CORE_URN],
            "id": "g1",
            "displayName": "Group One",
            "members": [{"value": "id1"}, {"value": "id2"}, {"value": "id3"}]
        })
    }

    #[test]
    fn group_display_name_replace() {
        let r = patch_group(
            group(),
            json!([{"op": "Replace", "path": "displayName", "value": "new"}]),
        )
        .unwrap();
        assert_eq!(r["displayName"], "new");
        let k = kind_of(patch_group(
            group(),
            json!([{"op": "Replace", "path": "userName", "value": "x"}]),
        ));
        assert_eq!(k, PatchErrorKind::InvalidPath);
    }

    #[test]
    fn group_members_applied_generically() {
        let r = patch_group(group(), json!([{"op": "Add", "path": "members", "value": [{"value": "id4"}, {"value": "id5"}]}])).unwrap();
        assert_eq!(r["members"].as_array().unwrap().len(), 5);
        let r = patch_group(
            r,
            json!([{"op": "Remove", "path": "members[value eq \"id1\"]"}]),
        )
        .unwrap();
        assert_eq!(r["members"].as_array().unwrap().len(), 4);
        let r = patch_group(r, json!([{"op": "Remove", "path": "members", "value": [{"value": "id2"}, {"value": "ID3"}]}])).unwrap();
        assert_eq!(r["members"], json!([{"value": "id4"}, {"value": "id5"}]));
        let r = patch_group(r, json!([{"op": "Remove", "path": "members"}])).unwrap();
        assert!(r.get("members").is_none());
    }

    #[test]
    fn split_entra_member_ops() {
        let ops = parse(json!([
            {"op": "Replace", "path": "displayName", "value": "new"},
            {"op": "Add", "path": "members", "value": [{"value": "id1"}, {"value": "id2"}]},
            {"op": "Remove", "path": "members[value eq \"id1\"]"},
            {"op": "Remove", "path": "members", "value": [{"value": "id2"}, {"value": "id3"}]},
            {"op": "Remove", "path": "members"},
            {"op": "Replace", "path": "members", "value": [{"value": "id9"}]},
            {"op": "Add", "path": "urn:ietf:params:scim:schemas:core:2.0:Group:members", "value": {"value": "id7"}},
            {"op": "Remove", "path": "members[value eq \"a\" or value eq \"b\"]"},
            {"op": "add", "value": {"displayName": "x", "members": [{"value": "p1"}]}},
            {"op": "replace", "value": {"members": [{"value": "p2"}]}},
            {"op": "replace", "value": {"urn:ietf:params:scim:schemas:core:2.0:Group:members": null}},
            {"op": "replace", "path": "members", "value": null}
        ]));
        let (rest, changes) = split_member_ops(ops).unwrap();
        assert_eq!(
            changes,
            [
                MemberChange::Add(vec!["id1".into(), "id2".into()]),
                MemberChange::Remove(vec!["id1".into()]),
                MemberChange::Remove(vec!["id2".into(), "id3".into()]),
                MemberChange::RemoveAll,
                MemberChange::ReplaceAll(vec!["id9".into()]),
                MemberChange::Add(vec!["id7".into()]),
                MemberChange::Remove(vec!["a".into(), "b".into()]),
                MemberChange::Add(vec!["p1".into()]),
                MemberChange::ReplaceAll(vec!["p2".into()]),
                MemberChange::RemoveAll,
                MemberChange::RemoveAll,
            ]
        );
        assert_eq!(rest.len(), 2);
        assert!(rest[0].path.as_ref().unwrap().attr.is("displayName"));
        assert_eq!(rest[1].value, Some(json!({"displayName": "x"})));
        // The rest still applies to the group.
        let mut g = obj(group());
        apply(&mut g, &rest, &GROUP_SCHEMA).unwrap();
        assert_eq!(g["displayName"], "x");
    }

    #[test]
    fn split_many_members() {
        let members: Vec<Value> = (0..5000)
            .map(|i| json!({"value": format!("id{i}")}))
            .collect();
        let ops = parse(json!([{"op": "Add", "path": "members", "value": members}]));
        let (rest, changes) = split_member_ops(ops).unwrap();
        assert!(rest.is_empty());
        match &changes[..] {
            [MemberChange::Add(ids)] => assert_eq!(ids.len(), 5000),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn split_member_errors() {
        use PatchErrorKind::*;
        let cases = [
            (
                json!({"op": "Add", "path": "members", "value": [{"display": "no id"}]}),
                InvalidValue,
            ),
            (
                json!({"op": "Add", "path": "members", "value": [{"value": 5}]}),
                InvalidValue,
            ),
            (
                json!({"op": "Add", "path": "members", "value": [{"value": ""}]}),
                InvalidValue,
            ),
            (
                json!({"op": "Add", "path": "members", "value": [true]}),
                InvalidValue,
            ),
            (
                json!({"op": "Remove", "path": "members[type eq \"User\"]"}),
                InvalidPath,
            ),
            (
                json!({"op": "Remove", "path": "members[value ne \"x\"]"}),
                InvalidPath,
            ),
            (
                json!({"op": "Replace", "path": "members[value eq \"x\"]", "value": {"value": "y"}}),
                InvalidPath,
            ),
            (
                json!({"op": "Replace", "path": "members.value", "value": "y"}),
                InvalidPath,
            ),
            (
                json!({"op": "Remove", "path": "members[value eq \"x\"].display"}),
                InvalidPath,
            ),
            (
                json!({"op": "replace", "value": {"members": 5}}),
                InvalidValue,
            ),
        ];
        for (op, kind) in cases {
            let e = split_member_ops(parse(Value::Array(vec![op.clone()]))).unwrap_err();
            assert_eq!(e.kind, kind, "{op}: {e}");
            assert!(e.detail.starts_with("Operations[0]"));
        }
        let hand_built = vec![PatchOp {
            op: PatchOpKind::Add,
            path: Some(parse_patch_path("members").unwrap()),
            value: None,
        }];
        assert_eq!(split_member_ops(hand_built).unwrap_err().kind, InvalidValue);
        // Non-member ops pass through untouched.
        let ops =
            parse(json!([{"op": "remove", "path": "externalId"}, {"op": "add", "value": "odd"}]));
        let (rest, changes) = split_member_ops(ops.clone()).unwrap();
        assert_eq!(rest, ops);
        assert!(changes.is_empty());
    }

    // ----- robustness -----

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    fn random_value(rng: &mut Rng, depth: usize) -> Value {
        match rng.below(if depth > 2 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => json!(rng.below(2) == 0),
            2 => json!(rng.pick(&["True", "false", "work", "", "x@y.com", "id1"])),
            3 => json!(rng.below(100)),
            4 => json!(-1.5),
            5 => json!(rng.pick(&["yes", "home"])),
            6 => Value::Array(
                (0..rng.below(3))
                    .map(|_| random_value(rng, depth + 1))
                    .collect(),
            ),
            _ => {
                let keys = [
                    "value",
                    "type",
                    "primary",
                    "givenName",
                    "display",
                    "department",
                    "members",
                    "active",
                    "name.givenName",
                    ENT,
                    "$ref",
                    "x",
                ];
                Value::Object(
                    (0..rng.below(4))
                        .map(|_| (rng.pick(&keys).to_string(), random_value(rng, depth + 1)))
                        .collect(),
                )
            }
        }
    }

    #[test]
    fn apply_never_panics_on_odd_input() {
        let paths = [
            "userName",
            "name",
            "name.givenName",
            "emails",
            "emails.value",
            "emails[type eq \"work\"]",
            "emails[type eq \"work\"].value",
            "emails[value pr].primary",
            "emails[not (type eq \"x\")]",
            "active",
            "phoneNumbers[type eq \"mobile\" and primary eq true].value",
            "addresses[type eq \"work\"].streetAddress",
            "manager",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            "urn:ietf:params:scim:schemas:extension:Custom:2.0:User",
            "urn:ietf:params:scim:schemas:extension:Custom:2.0:User:a.b",
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "members",
            "members[value eq \"id1\"]",
            "displayName",
            "id",
            "meta.created",
            "schemas",
            "groups",
            "x509Certificates[value eq 5]",
            "roles[primary eq \"True\"]",
        ];
        let kinds = [PatchOpKind::Add, PatchOpKind::Remove, PatchOpKind::Replace];
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for round in 0..3000 {
            let schema = if round % 3 == 0 {
                &GROUP_SCHEMA
            } else {
                &USER_SCHEMA
            };
            let mut resource = if round % 3 == 0 {
                obj(group())
            } else {
                obj(user())
            };
            // Sometimes start from a corrupted stored resource.
            if rng.below(4) == 0 {
                let key = rng
                    .pick(&["emails", "name", "members", ENT, "active", "schemas"])
                    .to_string();
                resource.insert(key, random_value(&mut rng, 0));
            }
            let ops: Vec<PatchOp> = (0..1 + rng.below(4))
                .map(|_| {
                    let path = if rng.below(5) == 0 {
                        None
                    } else {
                        parse_patch_path(paths[rng.below(paths.len())]).ok()
                    };
                    let value = if rng.below(6) == 0 {
                        None
                    } else {
                        Some(random_value(&mut rng, 0))
                    };
                    PatchOp {
                        op: *rng.pick(&kinds),
                        path,
                        value,
                    }
                })
                .collect();
            let _ = apply(&mut resource, &ops, schema);
            let _ = split_member_ops(ops);
        }
    }

    #[test]
    fn parse_request_never_panics_on_odd_bodies() {
        let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
        for _ in 0..3000 {
            let mut ops = Vec::new();
            for _ in 0..rng.below(4) {
                let mut op = Map::new();
                if rng.below(5) != 0 {
                    op.insert(
                        "op".into(),
                        json!(rng.pick(&["add", "Remove", "REPLACE", "x"])),
                    );
                }
                if rng.below(3) != 0 {
                    op.insert(
                        "path".into(),
                        json!(rng.pick(&[
                            "title",
                            "emails[",
                            "a[b eq 1].c",
                            "urn:x:y:z",
                            "",
                            "name.givenName"
                        ])),
                    );
                }
                if rng.below(3) != 0 {
                    op.insert("value".into(), random_value(&mut rng, 0));
                }
                ops.push(Value::Object(op));
            }
            let body = match rng.below(4) {
                0 => random_value(&mut rng, 0),
                _ => json!({"schemas": [PATCH_OP_URN], "Operations": ops}),
            };
            if let Ok(parsed) = parse_patch_request(&body) {
                let mut r = obj(user());
                let _ = apply(&mut r, &parsed, &USER_SCHEMA);
            }
        }
    }
}
