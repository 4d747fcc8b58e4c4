//! Identifiers. Every record id is a UUIDv7: unguessable enough to be safe in
//! URLs, sortable by creation time, and stored as its hyphenated text form so
//! both SQL backends treat it the same way.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::InvalidValue;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::try_parse(s)
                    .map(Self)
                    .map_err(|_| InvalidValue::new(concat!("not a valid ", $what, " id")))
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

id_type!(
    /// A primary care office: the tenant that owns cases.
    OfficeId,
    "office"
);
id_type!(
    /// A person who signs in: office staff, a specialist or an administrator.
    UserId,
    "user"
);
id_type!(
    /// A consult case.
    CaseId,
    "case"
);
id_type!(
    /// An image attached to a case.
    ImageId,
    "image"
);
id_type!(
    /// A bearer token's public half; the secret half is never stored.
    TokenId,
    "token"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let id = CaseId::generate();
        let parsed: CaseId = id.to_string().parse().expect("parses");
        assert_eq!(id, parsed);
    }

    #[test]
    fn rejects_garbage() {
        assert!("not-a-uuid".parse::<OfficeId>().is_err());
        assert!("".parse::<UserId>().is_err());
    }

    #[test]
    fn later_ids_sort_after_earlier_ones() {
        let a = CaseId::generate();
        let b = CaseId::generate();
        assert!(a.to_string() < b.to_string());
    }
}
