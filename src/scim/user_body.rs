//! A stored user's SCIM representation serialized straight from its record: the same JSON, key
//! for key and in the same order, as [`resource::user_json`] builds as a `Value` tree, without
//! building that tree. Lists and reads without `attributes`/`excludedAttributes` use it; a
//! projection still goes through the tree.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use super::resource::{self, USER_URN};
use crate::domain::UserRecord;

/// One user's response body (see the module docs).
pub struct UserBody {
    user: UserRecord,
    location: String,
    created: String,
    last_modified: String,
    version: String,
}

/// One resource of a response: a user written from its record, or any JSON value.
pub enum Rendered {
    User(Box<UserBody>),
    Json(Value),
}

impl UserBody {
    pub fn new(user: UserRecord, base_url: &str) -> Self {
        Self {
            location: format!("{base_url}/Users/{}", user.id),
            created: resource::ts(user.created_at),
            last_modified: resource::ts(user.updated_at),
            version: resource::etag(user.version),
            user,
        }
    }
}

/// What one top-level key holds.
enum Entry<'a> {
    Stored(&'a Value),
    Schemas,
    Id,
    UserName,
    Active,
    Meta,
}

/// The `meta` object, its keys in `Value`'s (sorted) order.
struct Meta<'a>(&'a UserBody);

impl Serialize for Meta<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.0;
        let mut map = s.serialize_map(Some(5))?;
        map.serialize_entry("created", &b.created)?;
        map.serialize_entry("lastModified", &b.last_modified)?;
        map.serialize_entry("location", &b.location)?;
        map.serialize_entry("resourceType", "User")?;
        map.serialize_entry("version", &b.version)?;
        map.end()
    }
}

/// `schemas`: the core URN, then every extension URN the stored attributes hold an object for.
struct Schemas<'a>(&'a UserRecord);

impl Serialize for Schemas<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let extensions = self
            .0
            .attrs
            .resource
            .iter()
            .filter(|(k, v)| k.starts_with("urn:") && v.is_object());
        let mut seq = s.serialize_seq(None)?;
        seq.serialize_element(USER_URN)?;
        for (k, _) in extensions {
            seq.serialize_element(k)?;
        }
        seq.end()
    }
}

impl Serialize for UserBody {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let user = &self.user;
        // `user_json` inserts `schemas` and `id`, then the stored attributes (all but
        // `password`, which is never returned) over them, then `userName`, `active` and `meta`
        // over those: the same precedence here, and the keys in the map's byte order.
        let stored =
            user.attrs.resource.iter().filter(|(k, _)| {
                !matches!(k.as_str(), "password" | "userName" | "active" | "meta")
            });
        let mut entries: Vec<(&str, Entry<'_>)> = stored
            .map(|(k, v)| (k.as_str(), Entry::Stored(v)))
            .collect();
        for (key, entry) in [("schemas", Entry::Schemas), ("id", Entry::Id)] {
            if !user.attrs.resource.contains_key(key) {
                entries.push((key, entry));
            }
        }
        entries.push(("userName", Entry::UserName));
        entries.push(("active", Entry::Active));
        entries.push(("meta", Entry::Meta));
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut map = s.serialize_map(Some(entries.len()))?;
        for (key, entry) in entries {
            match entry {
                Entry::Stored(v) => map.serialize_entry(key, v)?,
                Entry::Schemas => map.serialize_entry(key, &Schemas(user))?,
                Entry::Id => map.serialize_entry(key, user.id.as_str())?,
                Entry::UserName => map.serialize_entry(key, user.attrs.user_name.as_str())?,
                Entry::Active => map.serialize_entry(key, &user.attrs.active)?,
                Entry::Meta => map.serialize_entry(key, &Meta(self))?,
            }
        }
        map.end()
    }
}

impl Serialize for Rendered {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Rendered::User(body) => body.serialize(s),
            Rendered::Json(value) => value.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::domain::{AccountId, DirectoryUser, Source, UserId, UserName};

    fn record(resource: Value) -> UserRecord {
        let Value::Object(resource) = resource else {
            panic!("a test resource is an object");
        };
        UserRecord {
            id: UserId::parse("0190a3c4-0000-7000-8000-000000000001").unwrap(),
            account_id: AccountId::parse("0190a3c4-0000-7000-8000-0000000000aa").unwrap(),
            attrs: DirectoryUser {
                user_name: UserName::parse("Ada@Example.com").unwrap(),
                given_name: Some("Ada".into()),
                family_name: Some("Lovelace".into()),
                display_name: None,
                external_id: Some("ext-1".into()),
                active: true,
                entra_object_id: None,
                resource,
            },
            source: Source::Scim,
            managed_by: None,
            version: 7,
            created_at: chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            updated_at: chrono::Utc.with_ymd_and_hms(2026, 2, 3, 4, 5, 6).unwrap(),
        }
    }

    /// The direct body and `user_json` agree byte for byte.
    fn same_bytes(resource: Value) {
        let user = record(resource);
        let tree =
            serde_json::to_string(&resource::user_json(user.clone(), "https://h/scim/v2")).unwrap();
        let direct = serde_json::to_string(&UserBody::new(user, "https://h/scim/v2")).unwrap();
        assert_eq!(direct, tree);
    }

    #[test]
    fn a_plain_user_is_written_as_user_json_writes_it() {
        same_bytes(json!({
            "userName": "Ada@Example.com",
            "active": true,
            "displayName": "Ada Lovelace",
            "emails": [{"value": "ada@example.com", "type": "work", "primary": true}],
            "externalId": "ext-1",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
        }));
    }

    #[test]
    fn extensions_precedence_and_never_returned_keys_match_user_json() {
        // Stored keys that the fixed ones override, or that override them, an extension (listed
        // in `schemas`), a password (never returned), keys that sort before capitals and after.
        same_bytes(json!({
            "userName": "someone-else@example.com",
            "active": false,
            "password": "hunter2",
            "meta": {"resourceType": "Group"},
            "id": "stored-id",
            "schemas": ["urn:x"],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"},
            "urn:plain": "not an object",
            "Zeta": 1,
            "émoji": "✓",
        }));
        same_bytes(json!({}));
    }
}
