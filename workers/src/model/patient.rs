//! The patient a case is about. These are the fields that make a case
//! patient data: they are never logged and every read of them is audited.

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::InvalidValue;
use super::text::{Lines, check_text};

/// The patient's name as the referring office records it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, min_length = 1, max_length = 200,
    pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*$"
)]
pub struct PatientName(String);

impl PatientName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Redacted: a patient name must never reach a log line through `{:?}`.
impl std::fmt::Debug for PatientName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PatientName(<redacted>)")
    }
}

impl TryFrom<String> for PatientName {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        check_text(value, "patient name", 1, 200, Lines::One).map(Self)
    }
}

impl From<PatientName> for String {
    fn from(value: PatientName) -> String {
        value.0
    }
}

/// The office's medical record number for the patient.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, min_length = 1, max_length = 64,
    pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*$"
)]
pub struct Mrn(String);

impl Mrn {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Mrn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mrn(<redacted>)")
    }
}

impl TryFrom<String> for Mrn {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        check_text(value, "mrn", 1, 64, Lines::One).map(Self)
    }
}

impl From<Mrn> for String {
    fn from(value: Mrn) -> String {
        value.0
    }
}

/// A date of birth: a calendar date (`YYYY-MM-DD`), not in the future, not
/// before 1900.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, format = Date, pattern = r"^(19|[2-9][0-9])[0-9]{2}-[0-9]{2}-[0-9]{2}$")]
pub struct BirthDate(NaiveDate);

impl BirthDate {
    pub fn date(&self) -> NaiveDate {
        self.0
    }

    /// Age in whole years on `day`.
    pub fn age_on(&self, day: NaiveDate) -> u32 {
        day.years_since(self.0).unwrap_or(0)
    }
}

impl TryFrom<String> for BirthDate {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let bad = || InvalidValue::new("birth date must be a date like 1980-04-30");
        // Exactly RFC 3339's full-date: chrono alone would take `1980-4-30`
        // or a year of five digits.
        let shape = value.len() == 10
            && value.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                _ => b.is_ascii_digit(),
            });
        if !shape {
            return Err(bad());
        }
        let date = NaiveDate::parse_from_str(&value, "%Y-%m-%d").map_err(|_| bad())?;
        if date > Utc::now().date_naive() {
            return Err(InvalidValue::new("birth date must not be in the future"));
        }
        if date < NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(NaiveDate::MIN) {
            return Err(InvalidValue::new(
                "birth date must not be before 1900-01-01",
            ));
        }
        Ok(Self(date))
    }
}

impl From<BirthDate> for String {
    fn from(value: BirthDate) -> String {
        value.0.format("%Y-%m-%d").to_string()
    }
}

/// Administrative sex, with the values of HL7 FHIR `AdministrativeGender`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    Female,
    Male,
    Other,
    Unknown,
}

impl Sex {
    pub fn as_str(&self) -> &'static str {
        match self {
            Sex::Female => "female",
            Sex::Male => "male",
            Sex::Other => "other",
            Sex::Unknown => "unknown",
        }
    }

    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        match text {
            "female" => Ok(Sex::Female),
            "male" => Ok(Sex::Male),
            "other" => Ok(Sex::Other),
            "unknown" => Ok(Sex::Unknown),
            _ => Err(InvalidValue::new(
                "sex must be female, male, other or unknown",
            )),
        }
    }
}

/// Who the case is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Patient {
    pub name: PatientName,
    pub birth_date: BirthDate,
    pub sex: Sex,
    pub mrn: Mrn,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn birth_date_accepts_iso_dates() {
        let d = BirthDate::try_from("1980-04-30".to_owned()).expect("valid");
        assert_eq!(String::from(d), "1980-04-30");
    }

    #[test]
    fn birth_date_rejects_future_and_nonsense() {
        assert!(BirthDate::try_from("2999-01-01".to_owned()).is_err());
        assert!(BirthDate::try_from("1980-02-30".to_owned()).is_err());
        assert!(BirthDate::try_from("30/04/1980".to_owned()).is_err());
        assert!(BirthDate::try_from("1850-01-01".to_owned()).is_err());
        // Only the shape the OpenAPI pattern gives: no padding, no short
        // fields, no long years.
        for refused in [
            " 1980-04-30",
            "1980-4-30",
            "1980-04-3",
            "+1980-04-30",
            "19800-04-30",
        ] {
            assert!(
                BirthDate::try_from(refused.to_owned()).is_err(),
                "{refused}"
            );
        }
    }

    #[test]
    fn debug_never_shows_the_name_or_mrn() {
        let name = PatientName::try_from("Jane Roe".to_owned()).expect("valid");
        let mrn = Mrn::try_from("MRN-4411".to_owned()).expect("valid");
        assert!(!format!("{name:?}").contains("Jane"));
        assert!(!format!("{mrn:?}").contains("4411"));
    }

    #[test]
    fn sex_parses_its_own_rendering() {
        for sex in [Sex::Female, Sex::Male, Sex::Other, Sex::Unknown] {
            assert_eq!(Sex::parse(sex.as_str()), Ok(sex));
        }
        assert!(Sex::parse("f").is_err());
    }
}
