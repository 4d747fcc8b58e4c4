//! DICOM application entity titles: how a modality or PACS names itself on
//! an association, and which office each calling title belongs to.

use serde::Serialize;

use super::{InvalidValue, OfficeId, Timestamp, UserId};

/// An AE title (PS3.5 VR `AE`): 1–16 characters of printable ASCII without
/// a backslash, leading and trailing spaces not significant. Comparison is
/// exact (AE titles are case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[schema(value_type = String)]
pub struct AeTitle(String);

impl AeTitle {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AeTitle {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        AeTitle::parse(&value)
    }
}

impl AeTitle {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let title = raw.trim_matches([' ', '\0']);
        if title.is_empty() || title.len() > 16 {
            return Err(InvalidValue::new(
                "an AE title must have 1 to 16 characters",
            ));
        }
        if !title
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'\\')
        {
            return Err(InvalidValue::new(
                "an AE title must be printable ASCII without a backslash",
            ));
        }
        Ok(Self(title.to_owned()))
    }
}

impl std::fmt::Display for AeTitle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A calling AE title mapped to an office. The title acts as an office user
/// of its own (`user`), created with the mapping, so the cases it opens,
/// the images it stores and their audit events name it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AeMapping {
    pub ae_title: AeTitle,
    pub office: OfficeId,
    pub user: UserId,
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ae_titles_are_trimmed_and_bounded() {
        assert_eq!(
            AeTitle::parse(" CT_SCANNER1 ").ok().map(|a| a.0),
            Some("CT_SCANNER1".to_owned())
        );
        assert_eq!(
            AeTitle::parse("STORESCU\0\0").ok().map(|a| a.0),
            Some("STORESCU".to_owned())
        );
        assert!(AeTitle::parse("").is_err());
        assert!(AeTitle::parse("    ").is_err());
        assert!(AeTitle::parse("ABCDEFGHIJKLMNOPQ").is_err());
        assert!(AeTitle::parse("A\\B").is_err());
        assert!(AeTitle::parse("A\nB").is_err());
        assert!(AeTitle::parse("ÄRZTE").is_err());
    }
}
