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

/// The text of a UUID-shaped id, held without a heap allocation when it is a canonical UUID
/// (36 ASCII characters: what `parse` and `generate` make and what the store holds). A pull cycle
/// keeps several ids for each of 100,000 users at once; inline, each costs 40 bytes instead of a
/// `String` and its 36-byte allocation. Anything else read back from the store is kept as given.
#[derive(Clone)]
enum IdText {
    Inline([u8; 36]),
    Other(Box<str>),
}

impl IdText {
    fn new(value: String) -> Self {
        match <[u8; 36]>::try_from(value.as_bytes()) {
            Ok(bytes) if value.is_ascii() => Self::Inline(bytes),
            _ => Self::Other(value.into_boxed_str()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Only ASCII is ever stored inline, so this is always valid UTF-8.
            Self::Inline(bytes) => std::str::from_utf8(bytes).unwrap_or_default(),
            Self::Other(s) => s,
        }
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(IdText);

        impl $name {
            /// A fresh id: a UUID v7 (RFC 9562), whose first 48 bits are the time and the
            /// rest random, so that ids made one after another sort together and an index on
            /// them grows at its end instead of at a random page per insert.
            pub fn generate() -> Self {
                Self(IdText::new(Uuid::now_v7().to_string()))
            }

            /// Accepts any UUID spelling and keeps the canonical lowercase hyphenated form.
            pub fn parse(value: &str) -> Result<Self, ParseError> {
                Uuid::parse_str(value.trim())
                    .map(|u| Self(IdText::new(u.to_string())))
                    .map_err(|_| ParseError::NotAUuid { kind: $kind, value: value.to_owned() })
            }

            /// Wraps a value read back from our own store (already canonical).
            pub fn from_trusted(value: String) -> Self {
                Self(IdText::new(value))
            }

            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.as_str()).finish()
            }
        }

        // Equality, order and hash are the text's, whatever the representation.
        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.as_str() == other.as_str()
            }
        }

        impl Eq for $name {}

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.as_str().cmp(other.as_str())
            }
        }

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.as_str().hash(state);
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d).map(Self::from_trusted)
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
    // ASCII text is already in NFC and lower-cases to ASCII: most addresses and names.
    if value.is_ascii() {
        return value.to_ascii_lowercase();
    }
    let lower: String = value.nfc().collect::<String>().to_lowercase();
    lower.nfc().collect()
}

/// The login email of a user and the directory's unique key: compared case-insensitively after
/// Unicode NFC normalization ([`fold_key`]), shown as it was given.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct UserName {
    value: String,
    /// The folded key when it differs from `value` (most addresses are already lower-case: a
    /// pull cycle holds 200,000 of these, and a second copy of each would be pure waste).
    #[serde(skip)]
    key: Option<Box<str>>,
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
        let key = fold_key(trimmed);
        Ok(Self {
            key: (key != trimmed).then(|| key.into_boxed_str()),
            value: trimmed.to_owned(),
        })
    }

    /// As the user or IdP spelled it.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The case-folded form that uniqueness and look-ups use.
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or(&self.value)
    }
}

impl PartialEq for UserName {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
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
        let lower = UserName::parse("ann.lee@contoso.com").unwrap();
        assert!(
            lower.key.is_none(),
            "no second copy of a key equal to the value"
        );
        assert_eq!(lower.key(), "ann.lee@contoso.com");
        assert_eq!(lower, a);
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
    fn ascii_keys_fold_as_the_unicode_path_does() {
        use unicode_normalization::UnicodeNormalization;
        let all: String = (0u8..128).map(char::from).collect();
        for s in [all.as_str(), "Ann.O'Neil+Tag@Contoso.COM", "", "ÄB"] {
            let slow: String = s.nfc().collect::<String>().to_lowercase().nfc().collect();
            assert_eq!(fold_key(s), slow, "{s:?}");
        }
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
    fn ids_keep_their_text_inline_or_not() {
        let canonical = UserId::parse("7e8f2d0c-1c5a-4c1b-9b1a-9d6f0e6c9a10").unwrap();
        assert!(matches!(canonical.0, IdText::Inline(_)));
        // The store may hold anything; it comes back as it was, and compares as text.
        let odd = UserId::from_trusted("legacy-id".to_owned());
        assert!(matches!(odd.0, IdText::Other(_)));
        assert_eq!(odd.as_str(), "legacy-id");
        let wide = UserId::from_trusted("é".repeat(18));
        assert_eq!(wide.as_str(), "é".repeat(18));
        assert_eq!(odd.cmp(&canonical), "legacy-id".cmp(canonical.as_str()));
        assert_eq!(
            serde_json::to_string(&canonical).unwrap(),
            "\"7e8f2d0c-1c5a-4c1b-9b1a-9d6f0e6c9a10\""
        );
        let back: UserId = serde_json::from_str("\"legacy-id\"").unwrap();
        assert_eq!(back, odd);
        assert_eq!(
            format!("{canonical:?}"),
            "UserId(\"7e8f2d0c-1c5a-4c1b-9b1a-9d6f0e6c9a10\")"
        );
        assert!(std::mem::size_of::<UserId>() <= 40);
    }

    #[test]
    fn uuid_ids_are_canonicalised() {
        let id = UserId::parse("7E8F2D0C-1C5A-4C1B-9B1A-9D6F0E6C9A10").unwrap();
        assert_eq!(id.as_str(), "7e8f2d0c-1c5a-4c1b-9b1a-9d6f0e6c9a10");
        assert!(EntraObjectId::parse("not-a-guid").is_err());
    }
}
