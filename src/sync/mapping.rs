//! Entra user → the directory user essentry should hold, per the attribute table of the product
//! page (`userName` ← `userPrincipalName`, `name.givenName` ← `givenName`, `name.familyName` ←
//! `surname`, `externalId` ← `mailNickname`, `active` ← account enabled), plus `displayName` and
//! the Entra object id the pull sync remembers. Pure: no I/O.
//!
//! Only the mapped attributes are written; everything else a stored resource holds (for example
//! `emails` or the enterprise extension pushed over SCIM) is kept as it is.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::domain::entra::{Assignment, EntraUser};
use crate::domain::text;
use crate::domain::{DirectoryUser, EntraObjectId, UserId, UserName};

/// "assigned directly", "through group Sales", or both, for people.
pub fn describe_assignments(via: &[Assignment]) -> String {
    let parts: Vec<String> = via
        .iter()
        .map(|a| match a {
            Assignment::Direct => "assigned directly".to_owned(),
            Assignment::Group {
                group_id,
                group_name,
            } => format!(
                "through group {}",
                group_name.clone().unwrap_or_else(|| group_id.to_string())
            ),
        })
        .collect();
    if parts.is_empty() {
        "not assigned".to_owned()
    } else {
        parts.join("; ")
    }
}

/// The Entra attribute `userName` is taken from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UserNameSource {
    /// `userPrincipalName`, Entra's default mapping.
    #[default]
    UserPrincipalName,
    /// `mail`, for tenants whose UPNs are not the users' real email addresses.
    Mail,
}

impl UserNameSource {
    /// The Graph attribute name (also the configuration value).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserPrincipalName => "userPrincipalName",
            Self::Mail => "mail",
        }
    }

    /// The other choice, which the skip messages suggest.
    fn alternative(self) -> Self {
        match self {
            Self::UserPrincipalName => Self::Mail,
            Self::Mail => Self::UserPrincipalName,
        }
    }
}

impl fmt::Display for UserNameSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The per-integration choices of the mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Mapping {
    pub user_name_source: UserNameSource,
}

/// Why an Entra user in scope is left alone this cycle. The messages are for operators: each says
/// what is wrong and what fixes it.
#[derive(Debug, Clone, PartialEq)]
pub enum SkipReason {
    /// The attribute `userName` is mapped from is empty.
    MissingUserName { source: UserNameSource },
    /// The attribute `userName` is mapped from is not a usable email address (including guest
    /// UPNs such as `ann_contoso.com#EXT#@tenant.onmicrosoft.com`).
    NotAnEmail {
        source: UserNameSource,
        value: String,
    },
    /// `accountEnabled` is false and no stored user belongs to it: disabled users are never
    /// created (essentry keeps no inactive accounts).
    Disabled,
    /// Another Entra user in scope maps to the same userName.
    DuplicateUserName { other: EntraObjectId },
    /// The userName belongs to an essentry user that keeps it this cycle (not linked to Entra, or
    /// linked to a different Entra account that is still in scope).
    UserNameTaken {
        user_id: UserId,
        user_name: String,
        object_id: Option<EntraObjectId>,
    },
    /// The userName is freed only by deprovisioning `user_id`, which the deletion threshold held.
    DeletionHeld { user_id: UserId, user_name: String },
    /// A name that would appear in guest emails (givenName, surname, displayName) holds a
    /// control character such as a line break.
    ControlCharacters {
        attribute: &'static str,
        found: String,
    },
    /// The essentry user with this object id or userName is managed by another Graph
    /// integration, which alone syncs (and may delete) it.
    ManagedElsewhere {
        user_id: UserId,
        user_name: String,
        integration: String,
    },
    /// An operator rejected this integration's deletion of the essentry user with this object
    /// id or userName: the integration leaves it alone.
    KeptByOperator { user_id: UserId, user_name: String },
}

impl SkipReason {
    /// A short stable code for logs and counters.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingUserName { .. } => "missing_user_name",
            Self::NotAnEmail { .. } => "not_an_email",
            Self::Disabled => "disabled",
            Self::DuplicateUserName { .. } => "duplicate_user_name",
            Self::UserNameTaken { .. } => "user_name_taken",
            Self::DeletionHeld { .. } => "deletion_held",
            Self::ControlCharacters { .. } => "control_characters",
            Self::ManagedElsewhere { .. } => "managed_elsewhere",
            Self::KeptByOperator { .. } => "kept_by_operator",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingUserName { source } => write!(
                f,
                "the user has no {source} in Entra, and userName (the login email) is mapped from \
                 {source}; set {source} in Entra, or map userName from {} for this integration",
                source.alternative()
            ),
            Self::NotAnEmail { source, value } if is_guest_upn(value) => write!(
                f,
                "{source} {value:?} is a guest (#EXT#) name in the tenant's onmicrosoft.com \
                 domain, not the user's email address; essentry needs the real email as userName, \
                 so map userName from mail for this integration"
            ),
            Self::NotAnEmail {
                source: UserNameSource::UserPrincipalName,
                value,
            } => write!(
                f,
                "userPrincipalName {value:?} is not an email address; essentry needs the user's \
                 real email as userName: fix the UPN in Entra, or map userName from mail for this \
                 integration"
            ),
            Self::NotAnEmail {
                source: UserNameSource::Mail,
                value,
            } => write!(
                f,
                "mail {value:?} is not an email address; fix the user's mail attribute in Entra, \
                 or map userName from userPrincipalName for this integration"
            ),
            Self::Disabled => f.write_str(
                "the account is disabled in Entra (accountEnabled = false); essentry keeps no \
                 inactive accounts, so it is not created; enable the account to provision it",
            ),
            Self::DuplicateUserName { other } => write!(
                f,
                "another Entra user in scope ({other}) maps to the same userName; userNames must \
                 be unique, so this one is not synced: change the email of one of them in Entra, \
                 or remove one from the application's assignments"
            ),
            Self::UserNameTaken {
                user_id,
                user_name,
                object_id: None,
            } => write!(
                f,
                "userName {user_name:?} is already used by essentry user {user_id}, which is not \
                 linked to Entra (created by hand or by SCIM push) and stays as it is; delete or \
                 rename that user in essentry, or change this user's email in Entra"
            ),
            Self::UserNameTaken {
                user_id,
                user_name,
                object_id: Some(oid),
            } => write!(
                f,
                "userName {user_name:?} is still held by essentry user {user_id}, which belongs \
                 to a different Entra account ({oid}) that keeps it this cycle (a re-created \
                 account?); remove the old account from the application's assignments (or change \
                 one of the emails) and the next cycle frees the userName"
            ),
            Self::DeletionHeld { user_id, user_name } => write!(
                f,
                "userName {user_name:?} is freed only by deprovisioning essentry user {user_id}, \
                 which the deletion threshold held this cycle; approve the staged deletion \
                 (`essentry-sync deletions approve`) and the next cycle syncs this user"
            ),
            Self::ManagedElsewhere {
                user_id,
                user_name,
                integration,
            } => write!(
                f,
                "essentry user {user_name:?} ({user_id}) is managed by the Graph integration \
                 {integration:?}, which alone syncs and deletes it; this integration does not \
                 adopt it: remove the user from one of the two applications' assignments"
            ),
            Self::KeptByOperator { user_id, user_name } => write!(
                f,
                "an operator rejected this integration's deletion of essentry user \
                 {user_name:?} ({user_id}), so this integration leaves it alone"
            ),
            Self::ControlCharacters { attribute, found } => write!(
                f,
                "{attribute} contains a control character ({found}); names appear in guest \
                 emails, where a line break could forge a header, so the user is not synced \
                 (an existing essentry user is left as it is): fix {attribute} in Entra"
            ),
        }
    }
}

impl std::error::Error for SkipReason {}

/// A guest (B2B) UPN: `ann_contoso.com#EXT#@tenant.onmicrosoft.com`. It parses as an address but
/// is not one anybody reads mail at.
fn is_guest_upn(value: &str) -> bool {
    value.to_ascii_uppercase().contains("#EXT#")
}

/// A Graph string value, with empty (or blank) strings read as absent.
fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|s| !s.trim().is_empty())
}

/// The userName of `e` under `mapping`, validated.
pub fn user_name_of(e: &EntraUser, mapping: &Mapping) -> Result<UserName, SkipReason> {
    let source = mapping.user_name_source;
    let raw = match source {
        UserNameSource::UserPrincipalName => &e.user_principal_name,
        UserNameSource::Mail => &e.mail,
    };
    let value = present(raw).ok_or(SkipReason::MissingUserName { source })?;
    let not_an_email = || SkipReason::NotAnEmail {
        source,
        value: value.to_owned(),
    };
    if is_guest_upn(value) {
        return Err(not_an_email());
    }
    UserName::parse(value).map_err(|_| not_an_email())
}

/// Sets `key` to a string or removes it.
fn set_or_remove(map: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    match value {
        Some(v) => {
            map.insert(key.to_owned(), Value::String(v.to_owned()));
        }
        None => {
            map.remove(key);
        }
    }
}

/// The mapped attributes of `e`, with an empty `resource`: userName ← userPrincipalName (or
/// mail), given name ← givenName, family name ← surname, displayName ← displayName, externalId ←
/// mailNickname, active ← accountEnabled (missing counts as enabled), entra_object_id ← id.
/// [`overlay`] turns them into the resource to store.
///
/// A disabled user maps to `active: false`; whether that deprovisions or skips is the planner's
/// decision, so this never returns [`SkipReason::Disabled`].
pub fn mapped_user(e: &EntraUser, mapping: &Mapping) -> Result<DirectoryUser, SkipReason> {
    for (attribute, value) in [
        ("givenName", &e.given_name),
        ("surname", &e.surname),
        ("displayName", &e.display_name),
    ] {
        if let Some(v) = present(value)
            && let Err(err) = text::check_display_text(attribute, v)
        {
            return Err(SkipReason::ControlCharacters {
                attribute,
                found: err.found,
            });
        }
    }
    Ok(DirectoryUser {
        user_name: user_name_of(e, mapping)?,
        given_name: present(&e.given_name).map(str::to_owned),
        family_name: present(&e.surname).map(str::to_owned),
        display_name: present(&e.display_name).map(str::to_owned),
        external_id: present(&e.mail_nickname).map(str::to_owned),
        active: e.account_enabled.unwrap_or(true),
        entra_object_id: Some(e.object_id.clone()),
        resource: Map::new(),
    })
}

/// `base` (a stored resource, or empty for a new user) with the mapped attributes of `d` laid
/// over it: userName, name.givenName, name.familyName, displayName, externalId, active. Absent
/// values remove the attribute; everything else (emails or the enterprise extension pushed over
/// SCIM, other `name` sub-attributes) is kept as it is.
pub fn overlay(base: &Map<String, Value>, d: &DirectoryUser) -> Map<String, Value> {
    let mut resource = base.clone();
    resource.insert(
        "userName".to_owned(),
        Value::String(d.user_name.as_str().to_owned()),
    );
    let mut name = match resource.remove("name") {
        Some(Value::Object(n)) => n,
        _ => Map::new(),
    };
    set_or_remove(&mut name, "givenName", d.given_name.as_deref());
    set_or_remove(&mut name, "familyName", d.family_name.as_deref());
    if !name.is_empty() {
        resource.insert("name".to_owned(), Value::Object(name));
    }
    set_or_remove(&mut resource, "displayName", d.display_name.as_deref());
    set_or_remove(&mut resource, "externalId", d.external_id.as_deref());
    resource.insert("active".to_owned(), Value::Bool(d.active));
    resource
}

/// The directory user `e` should be: [`mapped_user`] with its resource [`overlay`]ed on `base`
/// (the current stored resource when the user already exists).
pub fn desired_user(
    e: &EntraUser,
    mapping: &Mapping,
    base: Option<&Map<String, Value>>,
) -> Result<DirectoryUser, SkipReason> {
    let mut d = mapped_user(e, mapping)?;
    d.resource = overlay(base.unwrap_or(&Map::new()), &d);
    Ok(d)
}

/// Whether `current` already holds what `e` maps to: exactly when
/// `diff_attributes(Some(current), &desired_user(e, mapping, Some(&current.resource))?)` is empty
/// (`user_name` is `user_name_of(e, mapping)`). The overlay leaves every attribute it does not map
/// as it is, so comparing the mapped values is enough; the planner uses this to skip building and
/// diffing the resource of every unchanged user. The object id is not compared.
pub fn in_step(e: &EntraUser, user_name: &UserName, current: &DirectoryUser) -> bool {
    current.user_name.as_str() == user_name.as_str()
        && current.given_name.as_deref() == present(&e.given_name)
        && current.family_name.as_deref() == present(&e.surname)
        && current.display_name.as_deref() == present(&e.display_name)
        && current.external_id.as_deref() == present(&e.mail_nickname)
        && current.active == e.account_enabled.unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn oid(n: u32) -> EntraObjectId {
        EntraObjectId::parse(&format!("00000000-0000-0000-0000-{n:012}")).unwrap()
    }

    fn ann() -> EntraUser {
        EntraUser {
            object_id: oid(1),
            user_principal_name: Some("Ann.Lee@contoso.com".into()),
            mail: Some("ann@contoso.com".into()),
            given_name: Some("Ann".into()),
            surname: Some("Lee".into()),
            display_name: Some("Ann Lee".into()),
            mail_nickname: Some("ann.lee".into()),
            account_enabled: Some(true),
            assigned_via: vec![Assignment::Direct],
        }
    }

    #[test]
    fn maps_every_attribute_of_the_table() {
        let u = desired_user(&ann(), &Mapping::default(), None).unwrap();
        assert_eq!(u.user_name.as_str(), "Ann.Lee@contoso.com");
        assert_eq!(u.given_name.as_deref(), Some("Ann"));
        assert_eq!(u.family_name.as_deref(), Some("Lee"));
        assert_eq!(u.display_name.as_deref(), Some("Ann Lee"));
        assert_eq!(u.external_id.as_deref(), Some("ann.lee"));
        assert!(u.active);
        assert_eq!(u.entra_object_id, Some(oid(1)));
        assert_eq!(
            Value::Object(u.resource),
            json!({
                "userName": "Ann.Lee@contoso.com",
                "name": {"givenName": "Ann", "familyName": "Lee"},
                "displayName": "Ann Lee",
                "externalId": "ann.lee",
                "active": true
            })
        );
    }

    #[test]
    fn user_name_from_mail() {
        let mapping = Mapping {
            user_name_source: UserNameSource::Mail,
        };
        let u = desired_user(&ann(), &mapping, None).unwrap();
        assert_eq!(u.user_name.as_str(), "ann@contoso.com");
        let no_mail = EntraUser {
            mail: None,
            ..ann()
        };
        let err = desired_user(&no_mail, &mapping, None).unwrap_err();
        assert_eq!(
            err,
            SkipReason::MissingUserName {
                source: UserNameSource::Mail
            }
        );
        assert!(
            err.to_string()
                .contains("map userName from userPrincipalName")
        );
    }

    #[test]
    fn guest_upn_is_refused_with_the_fix() {
        let guest = EntraUser {
            user_principal_name: Some("ann_fabrikam.com#EXT#@contoso.onmicrosoft.com".into()),
            ..ann()
        };
        let err = desired_user(&guest, &Mapping::default(), None).unwrap_err();
        assert!(matches!(err, SkipReason::NotAnEmail { .. }));
        let text = err.to_string();
        assert!(text.contains("onmicrosoft.com"), "{text}");
        assert!(text.contains("map userName from mail"), "{text}");
        // The same user maps fine from mail.
        let mapping = Mapping {
            user_name_source: UserNameSource::Mail,
        };
        assert!(desired_user(&guest, &mapping, None).is_ok());
    }

    #[test]
    fn non_email_upn_and_blank_values() {
        let bad = EntraUser {
            user_principal_name: Some("not an email".into()),
            ..ann()
        };
        let err = user_name_of(&bad, &Mapping::default()).unwrap_err();
        assert_eq!(err.code(), "not_an_email");
        assert!(err.to_string().contains("map userName from mail"));
        let blank = EntraUser {
            user_principal_name: Some("  ".into()),
            ..ann()
        };
        assert_eq!(
            user_name_of(&blank, &Mapping::default()).unwrap_err(),
            SkipReason::MissingUserName {
                source: UserNameSource::UserPrincipalName
            }
        );
    }

    #[test]
    fn overlay_keeps_scim_only_attributes_and_removes_absent_mapped_ones() {
        let base = json!({
            "userName": "ann.lee@contoso.com",
            "name": {"givenName": "Annie", "familyName": "Lee", "formatted": "Annie Lee"},
            "displayName": "Annie",
            "externalId": "old",
            "title": "Engineer",
            "active": true,
            "emails": [{"type": "work", "value": "ann@contoso.com", "primary": true}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}
        });
        let Value::Object(base) = base else { panic!() };
        let e = EntraUser {
            surname: None,
            display_name: None,
            mail_nickname: Some(String::new()),
            ..ann()
        };
        let u = desired_user(&e, &Mapping::default(), Some(&base)).unwrap();
        assert_eq!(u.family_name, None);
        assert_eq!(u.display_name, None);
        assert_eq!(u.external_id, None);
        assert_eq!(
            Value::Object(u.resource),
            json!({
                "userName": "Ann.Lee@contoso.com",
                "name": {"givenName": "Ann", "formatted": "Annie Lee"},
                "title": "Engineer",
                "active": true,
                "emails": [{"type": "work", "value": "ann@contoso.com", "primary": true}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}
            })
        );
    }

    #[test]
    fn no_empty_name_object_and_disabled_maps_to_inactive() {
        let e = EntraUser {
            given_name: None,
            surname: None,
            account_enabled: Some(false),
            ..ann()
        };
        let u = desired_user(&e, &Mapping::default(), None).unwrap();
        assert!(!u.resource.contains_key("name"));
        assert!(!u.active);
        assert_eq!(u.resource.get("active"), Some(&json!(false)));
        let unknown = EntraUser {
            account_enabled: None,
            ..ann()
        };
        assert!(
            desired_user(&unknown, &Mapping::default(), None)
                .unwrap()
                .active
        );
        assert!(!unknown.is_disabled());
    }

    #[test]
    fn in_step_agrees_with_diff_attributes() {
        use crate::domain::directory::diff_attributes;
        let base = desired_user(&ann(), &Mapping::default(), None).unwrap();
        let mut with_extras = base.clone();
        with_extras
            .resource
            .insert("emails".into(), json!([{"value": "x@y.com"}]));
        with_extras.resource.insert(
            "name".into(),
            json!({"givenName": "Ann", "familyName": "Lee", "formatted": "A L"}),
        );
        let variants: Vec<EntraUser> = vec![
            ann(),
            EntraUser {
                user_principal_name: Some("ANN.LEE@contoso.com".into()),
                ..ann()
            },
            EntraUser {
                user_principal_name: Some("other@contoso.com".into()),
                ..ann()
            },
            EntraUser {
                given_name: None,
                ..ann()
            },
            EntraUser {
                given_name: Some(String::new()),
                ..ann()
            },
            EntraUser {
                surname: Some("Lea".into()),
                ..ann()
            },
            EntraUser {
                display_name: None,
                ..ann()
            },
            EntraUser {
                mail_nickname: Some("x".into()),
                ..ann()
            },
            EntraUser {
                account_enabled: None,
                ..ann()
            },
            EntraUser {
                account_enabled: Some(false),
                ..ann()
            },
            EntraUser {
                mail: None,
                assigned_via: vec![],
                ..ann()
            },
        ];
        for current in [&base, &with_extras] {
            for e in &variants {
                let name = user_name_of(e, &Mapping::default()).unwrap();
                let desired =
                    desired_user(e, &Mapping::default(), Some(&current.resource)).unwrap();
                let diff = diff_attributes(Some(current), &desired);
                assert_eq!(
                    in_step(e, &name, current),
                    diff.is_empty(),
                    "{e:?}: {diff:?}"
                );
            }
        }
    }

    #[test]
    fn user_name_source_serde_and_default() {
        assert_eq!(
            Mapping::default().user_name_source,
            UserNameSource::UserPrincipalName
        );
        assert_eq!(
            json!(UserNameSource::UserPrincipalName),
            json!("userPrincipalName")
        );
        assert_eq!(json!(UserNameSource::Mail), json!("mail"));
        let m: Mapping = serde_json::from_value(json!({"user_name_source": "mail"})).unwrap();
        assert_eq!(m.user_name_source, UserNameSource::Mail);
        let m: Mapping = serde_json::from_value(json!({})).unwrap();
        assert_eq!(m, Mapping::default());
    }

    #[test]
    fn names_with_control_characters_are_skipped_with_the_attribute() {
        let mut e = ann();
        e.surname = Some("Lee\r\nBcc: x@evil.example".into());
        let err = mapped_user(&e, &Mapping::default()).unwrap_err();
        assert_eq!(
            err,
            SkipReason::ControlCharacters {
                attribute: "surname",
                found: "\\r".into()
            }
        );
        assert_eq!(err.code(), "control_characters");
        assert!(err.to_string().contains("fix surname in Entra"), "{err}");
        e.surname = Some("Lee".into());
        e.display_name = Some("Ann\u{85}Lee".into());
        assert!(matches!(
            mapped_user(&e, &Mapping::default()),
            Err(SkipReason::ControlCharacters {
                attribute: "displayName",
                ..
            })
        ));
    }

    #[test]
    fn every_skip_reason_reads_as_a_sentence_with_a_fix() {
        let reasons = [
            SkipReason::MissingUserName {
                source: UserNameSource::UserPrincipalName,
            },
            SkipReason::NotAnEmail {
                source: UserNameSource::Mail,
                value: "x".into(),
            },
            SkipReason::Disabled,
            SkipReason::DuplicateUserName { other: oid(2) },
            SkipReason::UserNameTaken {
                user_id: UserId::generate(),
                user_name: "a@b.com".into(),
                object_id: None,
            },
            SkipReason::UserNameTaken {
                user_id: UserId::generate(),
                user_name: "a@b.com".into(),
                object_id: Some(oid(3)),
            },
            SkipReason::DeletionHeld {
                user_id: UserId::generate(),
                user_name: "a@b.com".into(),
            },
            SkipReason::ControlCharacters {
                attribute: "givenName",
                found: "\\r".into(),
            },
        ];
        for r in reasons {
            let text = r.to_string();
            assert!(text.len() > 60, "{text}");
            assert!(!r.code().is_empty());
        }
    }
}
