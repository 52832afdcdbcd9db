//! The closed sets of words the store keeps as text — integration kinds, what started a sync
//! cycle, and the state a recorded cycle is in — as enums. The store decodes each column once
//! (an unknown word is corrupt data, never a silent default); the rest of the code matches on
//! variants instead of comparing strings.

use serde::{Deserialize, Serialize};

/// Defines a fieldless enum stored as text: `as_str` gives the stored word, `parse` reads it
/// back (`None` for any other word), and serde uses the same words.
macro_rules! text_enum {
    ($(#[$doc:meta])* pub enum $name:ident { $($(#[$vdoc:meta])* $variant:ident => $word:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $word)] $variant,)+
        }

        impl $name {
            /// The stored word.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $word,)+
                }
            }

            /// The variant a stored word names, if any.
            pub fn parse(word: &str) -> Option<Self> {
                match word {
                    $($word => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// How an integration reaches the directory.
    pub enum IntegrationKind {
        /// An IdP pushes over the SCIM endpoint with the integration's bearer token.
        Scim => "scim",
        /// essentry pulls from Microsoft Graph on a schedule.
        Graph => "graph",
    }
}

text_enum! {
    /// What started a sync cycle.
    pub enum Trigger {
        /// The schedule inside `serve`.
        Scheduled => "scheduled",
        /// An operator (`sync`, the admin API).
        Manual => "manual",
        /// Provisioning of one user on demand.
        OnDemand => "on_demand",
    }
}

text_enum! {
    /// The state of a recorded sync cycle.
    pub enum CycleStatus {
        /// Started and not finished (or its process is still running it).
        Running => "running",
        /// Applied (or, for a dry run, planned) completely.
        Success => "success",
        /// Applied, but the deletion threshold held the deprovisionings.
        Held => "held",
        /// Nothing was changed: the read, the plan or the apply failed.
        Failed => "failed",
        /// Its process died while it ran (found at the next start); nothing half-applied.
        Interrupted => "interrupted",
    }
}

impl CycleStatus {
    /// A cycle that ended without applying anything.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::Interrupted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_words_round_trip_and_unknown_words_are_refused() {
        for k in [IntegrationKind::Scim, IntegrationKind::Graph] {
            assert_eq!(IntegrationKind::parse(k.as_str()), Some(k));
        }
        for t in [Trigger::Scheduled, Trigger::Manual, Trigger::OnDemand] {
            assert_eq!(Trigger::parse(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_value(t).ok(),
                Some(serde_json::json!(t.as_str()))
            );
        }
        assert_eq!(
            CycleStatus::parse("interrupted"),
            Some(CycleStatus::Interrupted)
        );
        assert_eq!(CycleStatus::parse("Success"), None);
        assert_eq!(IntegrationKind::parse("ldap"), None);
    }
}
