//! Free text with bounds. Every text a client sends has a length limit and no
//! control characters, so a row can never grow without bound and nothing
//! stored can corrupt a terminal or a log line when an operator prints it.

use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// Whether a text may span several lines (clinical notes) or must be one line
/// (names, identifiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lines {
    One,
    Many,
}

/// Checks a text against its bounds; returns it trimmed.
pub(crate) fn check_text(
    raw: String,
    what: &str,
    min: usize,
    max: usize,
    lines: Lines,
) -> Result<String, InvalidValue> {
    let text = raw.trim().to_owned();
    let chars = text.chars().count();
    if chars < min {
        return Err(InvalidValue(if min == 1 {
            format!("{what} must not be empty")
        } else {
            format!("{what} must be at least {min} characters")
        }));
    }
    if chars > max {
        return Err(InvalidValue(format!(
            "{what} must be at most {max} characters"
        )));
    }
    let allowed =
        |c: char| !c.is_control() || (lines == Lines::Many && matches!(c, '\n' | '\t' | '\r'));
    if !text.chars().all(allowed) {
        return Err(InvalidValue(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(text)
}

macro_rules! bounded_text {
    ($(#[$doc:meta])* $name:ident, $what:literal, $min:tt, $max:tt, $lines:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(try_from = "String", into = "String")]
        #[schema(value_type = String, min_length = $min, max_length = $max)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                check_text(value, $what, $min, $max, $lines).map(Self)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

bounded_text!(
    /// The name of an office or a user.
    Name,
    "name",
    1,
    200,
    Lines::One
);
bounded_text!(
    /// A short clinical attribute: body site, duration, modality, body part.
    ShortText,
    "value",
    1,
    200,
    Lines::One
);
bounded_text!(
    /// The clinical question the referring physician wants answered.
    Question,
    "question",
    1,
    4000,
    Lines::Many
);
bounded_text!(
    /// History, medications, allergies: longer notes, may be empty.
    ClinicalNote,
    "note",
    0,
    20000,
    Lines::Many
);
bounded_text!(
    /// Why an office withdrew a case.
    CancelReason,
    "reason",
    1,
    2000,
    Lines::Many
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_accepts_ordinary_text() {
        let q =
            Question::try_from("  Is this a melanoma?\nThree months. ".to_owned()).expect("valid");
        assert_eq!(q.as_str(), "Is this a melanoma?\nThree months.");
    }

    #[test]
    fn rejects_empty_and_blank() {
        assert!(Name::try_from(String::new()).is_err());
        assert!(Name::try_from("   ".to_owned()).is_err());
    }

    #[test]
    fn enforces_maximum_in_characters_not_bytes() {
        assert!(Name::try_from("é".repeat(200)).is_ok());
        assert!(Name::try_from("é".repeat(201)).is_err());
    }

    #[test]
    fn one_line_values_refuse_newlines_and_controls() {
        assert!(Name::try_from("Dr\nSmith".to_owned()).is_err());
        assert!(ShortText::try_from("left\u{7}arm".to_owned()).is_err());
        assert!(ClinicalNote::try_from("line one\nline two".to_owned()).is_ok());
    }

    #[test]
    fn notes_may_be_empty() {
        assert!(ClinicalNote::try_from(String::new()).is_ok());
    }
}
