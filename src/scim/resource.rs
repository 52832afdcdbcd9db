//! SCIM User and Group representations: request bodies in, neutral directory records out, and
//! back to JSON with `id`, `schemas` and `meta`; plus `attributes`/`excludedAttributes`
//! projection. The wire shapes stay in this module.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::domain::text;
use crate::domain::{DirectoryUser, EntraObjectId, GroupRecord, UserName, UserRecord};

use super::error::ScimError;
use super::patch::{self, ResourceSchema};

pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// Attributes a client may send but never sets: server-assigned or read-only.
const SERVER_OWNED: [&str; 4] = ["id", "meta", "schemas", "groups"];

/// Canonicalises a POST/PUT body the same way a PATCH would build it — attribute names in
/// their schema spelling, `"True"`/`"False"` as booleans, `null` as unassigned, dotted and URN
/// keys placed where they belong — by applying it as one path-less `replace` to an empty resource.
fn normalize(
    body: &Value,
    schema: &ResourceSchema,
    core_urn: &str,
) -> Result<Map<String, Value>, ScimError> {
    let Value::Object(obj) = body else {
        return Err(ScimError::invalid_syntax(
            "the request body must be a JSON object",
        ));
    };
    if let Some(schemas) = obj
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("schemas"))
        .map(|(_, v)| v)
    {
        let listed = schemas
            .as_array()
            .ok_or_else(|| ScimError::invalid_syntax("\"schemas\" must be an array of URIs"))?;
        if !listed
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(core_urn)))
        {
            return Err(ScimError::invalid_syntax(format!(
                "\"schemas\" must include {core_urn}"
            )));
        }
    }
    let mut value = Map::new();
    for (k, v) in obj {
        let owned = SERVER_OWNED.iter().any(|s| s.eq_ignore_ascii_case(k));
        if !owned && !k.eq_ignore_ascii_case("password") {
            value.insert(k.clone(), v.clone());
        }
    }
    let mut out = Map::new();
    patch::apply_body(&mut out, value, schema)?;
    Ok(out)
}

fn opt_string(resource: &Map<String, Value>, key: &str) -> Result<Option<String>, ScimError> {
    match resource.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ScimError::invalid_value(format!("{key} must be a string"))),
    }
}

/// The neutral user a SCIM resource describes. `userName` must be the user's email address.
pub fn user_from_resource(resource: Map<String, Value>) -> Result<DirectoryUser, ScimError> {
    let user_name = match resource.get("userName") {
        Some(Value::String(s)) => {
            UserName::parse(s).map_err(|e| ScimError::invalid_value(e.to_string()))?
        }
        None | Some(Value::Null) => {
            return Err(ScimError::invalid_value(
                "userName is required (the user's email address)",
            ));
        }
        Some(_) => return Err(ScimError::invalid_value("userName must be a string")),
    };
    let name = resource.get("name").and_then(Value::as_object);
    let sub = |key: &str| -> Result<Option<String>, ScimError> {
        match name.and_then(|n| n.get(key)) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ScimError::invalid_value(format!(
                "name.{key} must be a string"
            ))),
        }
    };
    let active = match resource.get("active") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ScimError::invalid_value("active must be a boolean")),
    };
    let given_name = sub("givenName")?;
    let family_name = sub("familyName")?;
    let display_name = opt_string(&resource, "displayName")?;
    // These become the host's name in guest emails: no control characters (a CR LF there would
    // start a new mail header).
    for (field, value) in [
        ("name.givenName", &given_name),
        ("name.familyName", &family_name),
        ("displayName", &display_name),
    ] {
        if let Some(v) = value {
            text::check_display_text(field, v)
                .map_err(|e| ScimError::invalid_value(e.to_string()))?;
        }
    }
    Ok(DirectoryUser {
        given_name,
        family_name,
        display_name,
        external_id: opt_string(&resource, "externalId")?,
        active,
        entra_object_id: None,
        user_name,
        resource,
    })
}

/// Parses a POST/PUT User body.
pub fn user_from_body(body: &Value) -> Result<DirectoryUser, ScimError> {
    let mut resource = normalize(body, &patch::USER_SCHEMA, USER_URN)?;
    if !resource.contains_key("active") {
        resource.insert("active".to_owned(), Value::Bool(true));
    }
    user_from_resource(resource)
}

/// A group body: display name, external id, member ids, and the rest of the resource as sent.
pub struct GroupBody {
    pub display_name: String,
    pub external_id: Option<String>,
    pub members: Vec<String>,
    pub resource: Map<String, Value>,
}

pub fn group_from_body(body: &Value) -> Result<GroupBody, ScimError> {
    let mut resource = normalize(body, &patch::GROUP_SCHEMA, GROUP_URN)?;
    let members = match resource.remove("members") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => member_ids(&items)?,
        Some(_) => return Err(ScimError::invalid_value("members must be an array")),
    };
    let g = group_from_resource(resource)?;
    Ok(GroupBody { members, ..g })
}

/// Display name and external id of a group resource (members excluded).
pub fn group_from_resource(resource: Map<String, Value>) -> Result<GroupBody, ScimError> {
    let display_name = match resource.get("displayName") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => {
            return Err(ScimError::invalid_value(
                "displayName is required and must be a non-empty string",
            ));
        }
    };
    Ok(GroupBody {
        display_name,
        external_id: opt_string(&resource, "externalId")?,
        members: Vec::new(),
        resource,
    })
}

/// The `value`s of a members array.
pub fn member_ids(items: &[Value]) -> Result<Vec<String>, ScimError> {
    items
        .iter()
        .map(|m| match m.get("value") {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(ScimError::invalid_value(
                "each member needs a \"value\" holding a user id",
            )),
        })
        .collect()
}

pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `W/"<version>"`.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Reads an `If-Match` value: `*` (or absent) means no condition.
pub fn parse_if_match(value: Option<&str>) -> Result<Option<i64>, ScimError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty() && *v != "*") else {
        return Ok(None);
    };
    let inner = v.trim_start_matches("W/").trim_matches('"');
    inner.parse::<i64>().map(Some).map_err(|_| {
        ScimError::new(
            axum::http::StatusCode::PRECONDITION_FAILED,
            None,
            format!("If-Match {v:?} matches no version of this resource"),
        )
    })
}

fn schemas_of(core: &str, resource: &Map<String, Value>) -> Value {
    let mut list = vec![Value::String(core.to_owned())];
    list.extend(
        resource
            .iter()
            .filter(|(k, v)| k.starts_with("urn:") && v.is_object())
            .map(|(k, _)| Value::String(k.clone())),
    );
    Value::Array(list)
}

/// The SCIM representation of a stored user (or of one just deprovisioned, `active` false). It
/// takes the record, so that the stored attributes move into the response instead of being
/// copied (a list renders each user once and drops it).
pub fn user_json(user: UserRecord, base_url: &str) -> Value {
    let mut out = Map::new();
    out.insert(
        "schemas".to_owned(),
        schemas_of(USER_URN, &user.attrs.resource),
    );
    out.insert("id".to_owned(), json!(user.id.as_str()));
    let meta = json!({
        "resourceType": "User",
        "created": ts(user.created_at),
        "lastModified": ts(user.updated_at),
        "location": format!("{base_url}/Users/{}", user.id),
        "version": etag(user.version),
    });
    // `password` is writeOnly (returned: never); it is not stored, and never echoed.
    out.extend(
        user.attrs
            .resource
            .into_iter()
            .filter(|(k, _)| k.as_str() != "password"),
    );
    out.insert("userName".to_owned(), json!(user.attrs.user_name.as_str()));
    out.insert("active".to_owned(), json!(user.attrs.active));
    out.insert("meta".to_owned(), meta);
    Value::Object(out)
}

/// The SCIM representation of a group; `members` is `None` when they were not asked for.
pub fn group_json(
    group: &GroupRecord,
    members: Option<&[(String, String)]>,
    base_url: &str,
) -> Value {
    let mut out = Map::new();
    out.insert("schemas".to_owned(), schemas_of(GROUP_URN, &group.resource));
    out.insert("id".to_owned(), json!(group.id.as_str()));
    for (k, v) in &group.resource {
        out.insert(k.clone(), v.clone());
    }
    out.insert("displayName".to_owned(), json!(group.display_name));
    if let Some(members) = members {
        let list: Vec<Value> = members
            .iter()
            .map(|(id, display)| {
                json!({
                    "value": id,
                    "display": display,
                    "$ref": format!("{base_url}/Users/{id}"),
                    "type": "User",
                })
            })
            .collect();
        out.insert("members".to_owned(), Value::Array(list));
    }
    out.insert(
        "meta".to_owned(),
        json!({
            "resourceType": "Group",
            "created": ts(group.created_at),
            "lastModified": ts(group.updated_at),
            "location": format!("{base_url}/Groups/{}", group.id),
            "version": etag(group.version),
        }),
    );
    Value::Object(out)
}

/// `attributes` / `excludedAttributes` of a request (RFC 7644 §3.4.2.5), as lists of paths.
#[derive(Debug, Default, Clone)]
pub struct Projection {
    pub attributes: Vec<String>,
    pub excluded: Vec<String>,
}

/// The most distinct paths one `attributes` or `excludedAttributes` list may name.
pub const MAX_PROJECTION_PATHS: usize = 100;

/// The paths of one list, trimmed and deduplicated (case-insensitively, first spelling kept);
/// more than [`MAX_PROJECTION_PATHS`] distinct ones is `400 tooMany`.
/// At most 100 characters of a refused path, for the error message.
fn truncate_for_error(path: &str) -> String {
    path.chars().take(100).collect()
}

fn split_list(name: &str, v: Option<&str>) -> Result<Vec<String>, ScimError> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for path in v.unwrap_or("").split(',').map(str::trim) {
        if path.is_empty() || !seen.insert(path.to_ascii_lowercase()) {
            continue;
        }
        // RFC 7644 §3.9: these are attribute names (`name`, `name.givenName`, URN-qualified),
        // not PATCH paths. A value filter would otherwise be read as an unknown attribute and
        // silently return only `id`.
        if path.contains(['[', ']', '"', ' ', '(', ')']) {
            return Err(ScimError::invalid_value(format!(
                "{name}: {:?} is not an attribute name; value filters such as \
                 emails[type eq \"work\"] are not supported here (name the attribute, e.g. \
                 emails or emails.value)",
                truncate_for_error(path)
            )));
        }
        if out.len() == MAX_PROJECTION_PATHS {
            return Err(ScimError::bad_request(
                "tooMany",
                format!("{name} names more than {MAX_PROJECTION_PATHS} distinct attributes"),
            ));
        }
        out.push(path.to_owned());
    }
    Ok(out)
}

/// Splits a possibly URN-qualified path into (schema, top-level attribute, sub-attribute).
fn split_path<'a>(path: &'a str, core: &str) -> (Option<&'a str>, &'a str, Option<&'a str>) {
    // `get` rather than indexing: a byte index inside a multi-byte character is `None`, not a
    // panic.
    let core_prefixed = path
        .get(..core.len())
        .filter(|p| p.eq_ignore_ascii_case(core))
        .and_then(|_| path.get(core.len()..))
        .filter(|rest| !rest.is_empty());
    let (schema, rest) = if let Some(rest) = core_prefixed {
        (None, rest.trim_start_matches(':'))
    } else if path.starts_with("urn:") {
        match path.rfind(':') {
            Some(i) => {
                let (s, r) = path.split_at(i);
                // `i` is the byte index of an ASCII ':'.
                let r = r.strip_prefix(':').unwrap_or(r);
                // `urn:...:User` alone names the whole extension.
                if r.contains('.') || r.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                    (Some(s), r)
                } else {
                    return (None, path, None);
                }
            }
            None => return (None, path, None),
        }
    } else {
        (None, path)
    };
    match rest.split_once('.') {
        Some((a, b)) => (schema, a, Some(b)),
        None => (schema, rest, None),
    }
}

fn find_key<'m>(m: &'m Map<String, Value>, name: &str) -> Option<&'m String> {
    m.keys().find(|k| k.eq_ignore_ascii_case(name))
}

impl Projection {
    /// The projection a request asks for; a list of more than [`MAX_PROJECTION_PATHS`]
    /// distinct paths is refused (each path costs a pass over every returned resource).
    pub fn new(attributes: Option<&str>, excluded: Option<&str>) -> Result<Self, ScimError> {
        Ok(Self {
            attributes: split_list("attributes", attributes)?,
            excluded: split_list("excludedAttributes", excluded)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty() && self.excluded.is_empty()
    }

    /// Whether the top-level attribute `name` will be returned (e.g. group `members`).
    pub fn returns(&self, name: &str, core: &str) -> bool {
        let hit = |list: &[String]| {
            list.iter().any(|p| {
                let (schema, top, _) = split_path(p, core);
                schema.is_none() && top.eq_ignore_ascii_case(name)
            })
        };
        if !self.attributes.is_empty() {
            return hit(&self.attributes);
        }
        !self.excluded.iter().any(|p| {
            let (schema, top, sub) = split_path(p, core);
            schema.is_none() && sub.is_none() && top.eq_ignore_ascii_case(name)
        })
    }

    /// Applies the projection to a resource. `id` and `schemas` are always returned (and
    /// `meta`'s `resourceType`), as RFC 7643 marks them `returned: always`.
    pub fn apply(&self, resource: Value, core: &str) -> Value {
        let Value::Object(mut m) = resource else {
            return resource;
        };
        const ALWAYS: [&str; 2] = ["id", "schemas"];
        if !self.attributes.is_empty() {
            let mut out = Map::new();
            for k in ALWAYS {
                if let Some(v) = m.get(k) {
                    out.insert(k.to_owned(), v.clone());
                }
            }
            for p in &self.attributes {
                let (schema, top, sub) = split_path(p, core);
                let container = match schema {
                    Some(s) => find_key(&m, s)
                        .and_then(|k| m.get(k))
                        .and_then(Value::as_object),
                    None => Some(&m),
                };
                let Some(container) = container else { continue };
                let Some(key) = find_key(container, top).cloned() else {
                    continue;
                };
                let Some(value) = container.get(&key).cloned() else {
                    continue;
                };
                let picked = match (sub, &value) {
                    (Some(sub), Value::Object(o)) => find_key(o, sub)
                        .map(|sk| json!({ sk.clone(): o[sk].clone() }))
                        .unwrap_or(Value::Null),
                    (Some(sub), Value::Array(items)) => Value::Array(
                        items
                            .iter()
                            .filter_map(|i| i.as_object())
                            .filter_map(|o| {
                                find_key(o, sub).map(|sk| json!({ sk.clone(): o[sk].clone() }))
                            })
                            .collect(),
                    ),
                    _ => value,
                };
                if picked.is_null() {
                    continue;
                }
                let target = match schema.and_then(|s| find_key(&m, s).cloned()) {
                    Some(urn) => {
                        let slot = out.entry(urn).or_insert_with(|| Value::Object(Map::new()));
                        match slot.as_object_mut() {
                            Some(o) => o,
                            None => continue,
                        }
                    }
                    None => &mut out,
                };
                merge_into(target, key, picked);
            }
            return Value::Object(out);
        }
        for p in &self.excluded {
            let (schema, top, sub) = split_path(p, core);
            if schema.is_none() && ALWAYS.iter().any(|a| a.eq_ignore_ascii_case(top)) {
                continue;
            }
            let container = match schema {
                Some(s) => match find_key(&m, s).cloned() {
                    Some(k) => m.get_mut(&k).and_then(Value::as_object_mut),
                    None => None,
                },
                None => Some(&mut m),
            };
            let Some(container) = container else { continue };
            let Some(key) = find_key(container, top).cloned() else {
                continue;
            };
            match sub {
                None => {
                    container.remove(&key);
                }
                Some(sub) => match container.get_mut(&key) {
                    Some(Value::Object(o)) => {
                        if let Some(sk) = find_key(o, sub).cloned() {
                            o.remove(&sk);
                        }
                    }
                    Some(Value::Array(items)) => {
                        for item in items.iter_mut().filter_map(Value::as_object_mut) {
                            if let Some(sk) = find_key(item, sub).cloned() {
                                item.remove(&sk);
                            }
                        }
                    }
                    _ => {}
                },
            }
        }
        Value::Object(m)
    }
}

fn merge_into(target: &mut Map<String, Value>, key: String, value: Value) {
    match (target.get_mut(&key), value) {
        (Some(Value::Object(existing)), Value::Object(add)) => existing.extend(add),
        (_, value) => {
            target.insert(key, value);
        }
    }
}

/// Parses an Entra object id carried in `externalId`-like places; `None` if it is not one.
pub fn entra_object_id(value: Option<&str>) -> Option<EntraObjectId> {
    value.and_then(|v| EntraObjectId::parse(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_canonicalised() {
        let u = user_from_body(&json!({
            "schemas": [USER_URN, ENTERPRISE_URN],
            "USERNAME": "Ann@Contoso.com",
            "active": "True",
            "name": {"givenName": "Ann", "familyName": "Lee", "formatted": null},
            "id": "client-chosen",
            "title": null,
            ENTERPRISE_URN: {"department": "Sales"}
        }))
        .unwrap();
        assert_eq!(u.user_name.as_str(), "Ann@Contoso.com");
        assert!(u.active);
        assert_eq!(u.given_name.as_deref(), Some("Ann"));
        assert!(!u.resource.contains_key("id"));
        assert!(!u.resource.contains_key("title"));
        assert_eq!(u.resource[ENTERPRISE_URN]["department"], "Sales");
    }

    #[test]
    fn non_email_user_name_is_invalid_value() {
        let e =
            user_from_body(&json!({"schemas": [USER_URN], "userName": "Test_User_1"})).unwrap_err();
        assert_eq!(e.scim_type, Some("invalidValue"));
    }

    #[test]
    fn projection_keeps_always_returned() {
        let r = json!({"id": "1", "schemas": [USER_URN], "userName": "a@b.c", "name": {"givenName": "A", "familyName": "B"}, "emails": [{"value": "x", "type": "work"}]});
        let p = Projection::new(Some("name.givenName,emails.value"), None).unwrap();
        let out = p.apply(r.clone(), USER_URN);
        assert_eq!(
            out,
            json!({"id": "1", "schemas": [USER_URN], "name": {"givenName": "A"}, "emails": [{"value": "x"}]})
        );
        let p = Projection::new(None, Some("name,userName,id")).unwrap();
        let out = p.apply(r, USER_URN);
        assert_eq!(
            out,
            json!({"id": "1", "schemas": [USER_URN], "emails": [{"value": "x", "type": "work"}]})
        );
        assert!(
            !Projection::new(None, Some("members"))
                .unwrap()
                .returns("members", GROUP_URN)
        );
        assert!(
            Projection::new(Some("displayName,members"), None)
                .unwrap()
                .returns("members", GROUP_URN)
        );
    }

    #[test]
    fn paths_with_multi_byte_characters_never_panic() {
        let r = json!({"id": "1", "schemas": [GROUP_URN], "displayName": "G", "ü": 1});
        // Every prefix length around the core URN's, so a byte index lands inside a character.
        for n in 0..=GROUP_URN.len() + 2 {
            for tail in ["é", "€", "😀", "ü:x", ":é.ß"] {
                let path = format!("{}{tail}", &"x".repeat(n));
                let prefixed = format!("{}{tail}", &GROUP_URN[..n.min(GROUP_URN.len())]);
                for p in [path, prefixed, format!("urn:é:{tail}")] {
                    let proj = Projection::new(Some(&p), Some(&p)).unwrap();
                    let _ = proj.apply(r.clone(), GROUP_URN);
                    let _ = proj.returns("members", GROUP_URN);
                    let proj = Projection::new(None, Some(&p)).unwrap();
                    let _ = proj.apply(r.clone(), GROUP_URN);
                }
            }
        }
        let p = Projection::new(Some("ü"), None).unwrap();
        assert_eq!(
            p.apply(r, GROUP_URN),
            json!({"id": "1", "schemas": [GROUP_URN], "ü": 1})
        );
    }

    #[test]
    fn projection_lists_are_deduplicated_and_capped() {
        let repeated = vec!["displayName"; 1_000].join(",");
        let p = Projection::new(Some(&repeated), Some("Members, members ,MEMBERS")).unwrap();
        assert_eq!(p.attributes, vec!["displayName".to_owned()]);
        assert_eq!(p.excluded, vec!["Members".to_owned()]);
        let distinct: Vec<String> = (0..=MAX_PROJECTION_PATHS)
            .map(|i| format!("a{i}"))
            .collect();
        assert!(Projection::new(Some(&distinct[1..].join(",")), None).is_ok());
        let e = Projection::new(None, Some(&distinct.join(","))).unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.scim_type),
            (400, Some("tooMany")),
            "{}",
            e.detail
        );
        assert!(e.detail.contains("excludedAttributes"), "{}", e.detail);
    }
}
