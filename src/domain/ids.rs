//! Validated identifiers: account, user, group and integration ids, the login `UserName` and the
//! Entra object id. Every value that crosses a seam is parsed here once, so the rest of the code
//! never re-checks a string.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a value was refused by a `parse`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("userName must be the user's email address (e.g. ann@example.com); got {0:?}")]
    NotAnEmail(String),
    #[error("{kind} must be a UUID; got {value:?}")]
    NotAUuid { kind: &'static str, value: String },
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh random (v4) id.
            pub fn generate() -> Self {
                Self(Uuid::new_v4().to_string())
            }

            /// Accepts any UUID spelling and keeps the canonical lowercase hyphenated form.
            pub fn parse(value: &str) -> Result<Self, ParseError> {
                Uuid::parse_str(value.trim())
                    .map(|u| Self(u.to_string()))
                    .map_err(|_| ParseError::NotAUuid { kind: $kind, value: value.to_owned() })
            }

            /// Wraps a value read back from our own store (already canonical).
            pub fn from_trusted(value: String) -> Self {
                Self(value)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

uuid_id!(
    /// An essentry company account: the tenant boundary of every row.
    AccountId,
    "account id"
);
uuid_id!(
    /// A user's essentry id (the SCIM `id`). A re-created user gets a new one.
    UserId,
    "user id"
);
uuid_id!(
    /// A group's essentry id.
    GroupId,
    "group id"
);
uuid_id!(
    /// An integration (SCIM push or Graph pull) of an account.
    IntegrationId,
    "integration id"
);
uuid_id!(
    /// An appointment hosted by a user.
    AppointmentId,
    "appointment id"
);
uuid_id!(
    /// The immutable object id of a user or group in Microsoft Entra ID.
    EntraObjectId,
    "Entra object id"
);

/// The form every case-insensitive key is compared in: Unicode NFC (so a precomposed `é` and
/// `e` + combining accent are one character), then lower-cased (full Unicode case mapping, which
/// SQLite's `lower()` lacks), then NFC again (lower-casing may leave a sequence unnormalized).
/// The `*_lower` columns hold this form and filter values are folded the same way.
pub fn fold_key(value: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let lower: String = value.nfc().collect::<String>().to_lowercase();
    lower.nfc().collect()
}

/// The login email of a user and the directory's unique key: compared case-insensitively after
/// Unicode NFC normalization ([`fold_key`]), shown as it was given.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct UserName {
    value: String,
    #[serde(skip)]
    key: String,
}

impl UserName {
    /// The longest address SMTP can carry (RFC 5321 path limit less the angle brackets).
    pub const MAX_LEN: usize = 254;

    /// Accepts a syntactically valid email address (RFC 5322 addr-spec with a dotted or bracketed
    /// domain, as the `email_address` crate checks it); surrounding white space is removed.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let trimmed = value.trim();
        // The refused value is echoed in errors and logs: at most 100 characters of it.
        let refuse = || {
            let mut shown: String = value.chars().take(100).collect();
            if shown.len() < value.len() {
                shown.push('…');
            }
            ParseError::NotAnEmail(shown)
        };
        if trimmed.is_empty() || trimmed.len() > Self::MAX_LEN {
            return Err(refuse());
        }
        if !email_address::EmailAddress::is_valid(trimmed) {
            return Err(refuse());
        }
        Ok(Self {
            key: fold_key(trimmed),
            value: trimmed.to_owned(),
        })
    }

    /// As the user or IdP spelled it.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The case-folded form that uniqueness and look-ups use.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl PartialEq for UserName {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for UserName {}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl<'de> Deserialize<'de> for UserName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_name_accepts_emails_and_folds_case() {
        let a = UserName::parse(" Ann.Lee@Contoso.com ").unwrap();
        assert_eq!(a.as_str(), "Ann.Lee@Contoso.com");
        assert_eq!(a.key(), "ann.lee@contoso.com");
        assert_eq!(a, UserName::parse("ann.lee@contoso.COM").unwrap());
    }

    #[test]
    fn user_name_key_is_nfc_before_folding() {
        let nfc = UserName::parse("jos\u{e9}@a.example").unwrap();
        let nfd = UserName::parse("Jose\u{301}@A.example").unwrap();
        assert_eq!(nfc, nfd);
        assert_eq!(nfd.key(), "jos\u{e9}@a.example");
        assert_eq!(nfd.as_str(), "Jose\u{301}@A.example", "shown as given");
        // Lower-casing after NFC: the Kelvin sign and the Angstrom sign fold with their letters.
        assert_eq!(fold_key("\u{212A}\u{212B}"), fold_key("k\u{e5}"));
    }

    #[test]
    fn user_name_refuses_non_emails() {
        for bad in [
            "",
            "Test_User_dfeef4c5-5681-4387-b016-bdf221e82081",
            "a@",
            "@b.com",
            "two words@x.com",
            "a@b@c.com",
        ] {
            assert!(UserName::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(UserName::parse(&long).is_err());
    }

    #[test]
    fn uuid_ids_are_canonicalised() {
        let id = UserId::parse("7E8F2D0C-1C5A-4C1B-9B1A-9D6F0E6C9A10").unwrap();
        assert_eq!(id.as_str(), "7e8f2d0c-1c5a-4c1b-9b1a-9d6f0e6c9a10");
        assert!(EntraObjectId::parse("not-a-guid").is_err());
    }
}
