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

/// Checks a text against its bounds; returns it trimmed. The length and the
/// characters are those sent (a text over its length with spaces at its end
/// is still over it); "not empty" means something besides whitespace. The
/// schemas of the text types state the same rules as a `pattern` (the
/// tests below hold the two together).
pub(crate) fn check_text(
    raw: String,
    what: &str,
    min: usize,
    max: usize,
    lines: Lines,
) -> Result<String, InvalidValue> {
    let allowed =
        |c: char| !c.is_control() || (lines == Lines::Many && matches!(c, '\n' | '\t' | '\r'));
    if !raw.chars().all(allowed) {
        return Err(InvalidValue(format!(
            "{what} must not contain control characters"
        )));
    }
    if raw.chars().count() > max {
        return Err(InvalidValue(format!(
            "{what} must be at most {max} characters"
        )));
    }
    let text = raw.trim().to_owned();
    if text.chars().count() < min {
        return Err(InvalidValue(if min == 1 {
            format!("{what} must not be empty")
        } else {
            format!("{what} must be at least {min} characters")
        }));
    }
    Ok(text)
}

macro_rules! bounded_text {
    ($(#[$doc:meta])* $name:ident, $what:literal, $min:tt, $max:tt, $lines:expr, $pattern:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(try_from = "String", into = "String")]
        #[schema(value_type = String, min_length = $min, max_length = $max, pattern = $pattern)]
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
    Lines::One,
    r"^[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*$"
);
bounded_text!(
    /// A short clinical attribute: body site, duration, modality, body part.
    ShortText,
    "value",
    1,
    200,
    Lines::One,
    r"^[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*$"
);
bounded_text!(
    /// The clinical question the referring physician wants answered.
    Question,
    "question",
    1,
    4000,
    Lines::Many,
    r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
);
bounded_text!(
    /// History, medications, allergies: longer notes, may be empty.
    ClinicalNote,
    "note",
    0,
    20000,
    Lines::Many,
    r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
);
bounded_text!(
    /// Why an office withdrew a case.
    CancelReason,
    "reason",
    1,
    2000,
    Lines::Many,
    r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The rules of [`check_text`] as the OpenAPI `pattern` of a one-line text
    /// of at least one character: no control character, and one character that
    /// is neither a control nor whitespace (Unicode `White_Space`, what `trim`
    /// removes). Escapes are `\uXXXX`, which JSON Schema's regular expressions
    /// (ECMA-262), Python's and Rust's all read alike.
    const ONE_LINE_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*$";

    /// [`ONE_LINE_PATTERN`] for text of several lines: tabs and line breaks
    /// allowed.
    const LINES_PATTERN: &str = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$";

    /// [`LINES_PATTERN`] for text that may be empty (or only whitespace).
    const OPTIONAL_LINES_PATTERN: &str =
        r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$";

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

    #[test]
    fn length_and_characters_are_those_sent() {
        assert!(Name::try_from(format!("{} ", "a".repeat(200))).is_err());
        assert!(Name::try_from("Dr Smith\t".to_owned()).is_err());
        assert!(ClinicalNote::try_from("note\n".to_owned()).is_ok());
    }

    /// Texts at the edges of the rules: controls that are whitespace,
    /// whitespace that is not a control, line breaks, invisible characters.
    const EDGES: &[&str] = &[
        "",
        " ",
        "a",
        " a ",
        "a b",
        "a\n",
        "\na",
        "\n",
        "a\tb",
        "\t",
        "\r\n",
        "a\u{b}",
        "a\u{c}b",
        "a\u{0}b",
        "a\u{7f}",
        "\u{85}",
        "a\u{85}",
        "\u{9f}",
        "\u{a0}",
        "a\u{a0}",
        "\u{a1}",
        "\u{1680}",
        "\u{2000}",
        "\u{200b}",
        "\u{2028}",
        "a\u{2029}b",
        "\u{3000}",
        "\u{feff}",
        "\u{feff}a",
        "é",
        "😀",
    ];

    fn schema_pattern<T: utoipa::PartialSchema>() -> String {
        let schema = serde_json::to_value(T::schema()).expect("a schema is JSON");
        schema["pattern"].as_str().expect("a pattern").to_owned()
    }

    #[test]
    fn the_schemas_state_the_rules_check_text_enforces() {
        use crate::model::{Mrn, PatientName, ReportText};
        let kinds = [
            (
                ONE_LINE_PATTERN,
                1,
                Lines::One,
                vec![
                    schema_pattern::<Name>(),
                    schema_pattern::<ShortText>(),
                    schema_pattern::<PatientName>(),
                    schema_pattern::<Mrn>(),
                ],
            ),
            (
                LINES_PATTERN,
                1,
                Lines::Many,
                vec![
                    schema_pattern::<Question>(),
                    schema_pattern::<CancelReason>(),
                ],
            ),
            (
                OPTIONAL_LINES_PATTERN,
                0,
                Lines::Many,
                vec![
                    schema_pattern::<ClinicalNote>(),
                    schema_pattern::<ReportText>(),
                ],
            ),
        ];
        for (pattern, min, lines, schemas) in kinds {
            for schema in schemas {
                assert_eq!(schema, pattern);
            }
            let regex = regex_lite::Regex::new(pattern).expect("the pattern compiles");
            for text in EDGES {
                assert_eq!(
                    regex.is_match(text),
                    check_text((*text).to_owned(), "text", min, 100, lines).is_ok(),
                    "{pattern} on {text:?}"
                );
            }
        }
    }

    #[test]
    fn the_diagnosis_code_schema_states_its_rules() {
        use crate::model::DiagnosisCode;
        let regex = regex_lite::Regex::new(&schema_pattern::<DiagnosisCode>()).expect("compiles");
        for text in EDGES.iter().chain(&["C43.5", " C43", "C43 ", "C 43"]) {
            assert_eq!(
                regex.is_match(text),
                DiagnosisCode::try_from((*text).to_owned()).is_ok(),
                "{text:?}"
            );
        }
    }
}
