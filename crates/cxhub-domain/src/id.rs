//! Server-assigned ids: UUID v7 newtypes (they sort by creation time), one macro for all of them.

use uuid::Uuid;

/// Parses a UUID given by a caller, with a description fit for a field violation.
pub(crate) fn parse_uuid(s: &str) -> Result<Uuid, String> {
    if s.is_empty() {
        return Err("required".into());
    }
    Uuid::parse_str(s).map_err(|_| "not a valid id (expected a UUID)".into())
}

/// Declares a UUID v7 id newtype with `generate`, `Display` and `FromStr` (errors phrased for
/// field violations).
macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize, ::serde::Deserialize)]
        pub struct $name(pub ::uuid::Uuid);

        impl $name {
            /// A fresh id.
            pub fn generate() -> Self {
                Self(::uuid::Uuid::now_v7())
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $crate::id::parse_uuid(s).map(Self)
            }
        }
    };
}
pub(crate) use uuid_id;

#[cfg(test)]
mod tests {

    uuid_id!(
        /// An id for the test.
        ThingId
    );

    #[test]
    fn ids_parse_and_print_and_explain_refusals() {
        let id = ThingId::generate();
        assert_eq!(id.to_string().parse::<ThingId>(), Ok(id));
        assert_eq!("".parse::<ThingId>(), Err("required".to_owned()));
        assert!("42".parse::<ThingId>().is_err_and(|e| e.contains("UUID")));
        assert!(ThingId::generate() > id, "v7 ids sort by creation time");
    }
}
