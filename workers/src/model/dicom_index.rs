//! What DICOMweb searches (QIDO-RS) match on and answer with: a few
//! attributes of each stored DICOM instance, read by ingest and kept in the
//! catalog beside the image, so a search never opens a blob.
//!
//! Values are kept as DICOM writes them (a PN with its `^`, a DA as
//! `YYYYMMDD`), trimmed of padding; absent or empty attributes are `None`.

use super::{Image, InvalidValue};

/// The searchable attributes of one DICOM instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DicomIndex {
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax_uid: String,
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub accession_number: Option<String>,
    pub study_id: Option<String>,
    pub study_description: Option<String>,
    pub referring_physician_name: Option<String>,
    pub modality: Option<String>,
    pub series_number: Option<i64>,
    pub series_description: Option<String>,
    pub instance_number: Option<i64>,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub number_of_frames: Option<i64>,
}

/// A stored DICOM instance: its image record and its searchable attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct DicomInstance {
    pub image: Image,
    pub index: DicomIndex,
}

/// What a DICOMweb search returns one result per.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryLevel {
    Study,
    Series,
    Instance,
}

/// Why the instances are read, which decides their audit event: a search
/// lists (`image.list`), metadata reads (`image.read`), a retrieval
/// downloads the bytes (`image.download`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DicomAccess {
    Search,
    Metadata,
    Retrieve,
}

/// A DICOMweb query: the matching keys (all combine), the level, a page.
///
/// UIDs, Patient ID, Accession Number and Modality match exactly; the
/// patient's name matches a [`NamePattern`]; the study date a [`DateRange`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DicomQuery {
    pub level: QueryLevel,
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub patient_id: Option<String>,
    pub patient_name: Option<NamePattern>,
    pub accession_number: Option<String>,
    /// Modality (series, instances) or ModalitiesInStudy (a study with any
    /// instance of it).
    pub modality: Option<String>,
    pub study_date: Option<DateRange>,
    /// Results (studies, series or instances) to skip.
    pub offset: u32,
    /// At most this many results.
    pub limit: u32,
}

impl DicomQuery {
    /// A query for everything at `level`, up to `limit` results.
    pub fn new(level: QueryLevel, limit: u32) -> Self {
        Self {
            level,
            study_instance_uid: None,
            series_instance_uid: None,
            sop_instance_uid: None,
            patient_id: None,
            patient_name: None,
            accession_number: None,
            modality: None,
            study_date: None,
            offset: 0,
            limit,
        }
    }
}

/// A DICOM wildcard match on a person's name (`*` any run, `?` one
/// character), case-insensitive, held as the SQL `LIKE` pattern it becomes
/// (lower-case, `\` escaping `%`, `_` and itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern(String);

impl NamePattern {
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        if text.is_empty() || text.chars().count() > 320 {
            return Err(InvalidValue::new("PatientName must be 1 to 320 characters"));
        }
        let mut like = String::with_capacity(text.len() + 4);
        for c in text.to_lowercase().chars() {
            match c {
                '*' => like.push('%'),
                '?' => like.push('_'),
                '%' | '_' | '\\' => {
                    like.push('\\');
                    like.push(c);
                }
                other => like.push(other),
            }
        }
        Ok(Self(like))
    }

    /// The `LIKE` pattern, to compare with `LOWER(patient_name)`.
    pub fn as_like(&self) -> &str {
        &self.0
    }
}

/// A DA range: `YYYYMMDD`, `YYYYMMDD-YYYYMMDD`, `-YYYYMMDD` or `YYYYMMDD-`,
/// both ends included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateRange {
    pub from: Option<String>,
    pub to: Option<String>,
}

impl DateRange {
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let date = |d: &str| -> Result<Option<String>, InvalidValue> {
            match d.len() {
                0 => Ok(None),
                8 if d.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(d.to_owned())),
                _ => Err(InvalidValue::new(
                    "StudyDate must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD (either end may be left out)",
                )),
            }
        };
        let (from, to) = match text.split_once('-') {
            Some((from, to)) => (date(from)?, date(to)?),
            None => {
                let day = date(text)?;
                (day.clone(), day)
            }
        };
        if from.is_none() && to.is_none() {
            return Err(InvalidValue::new("StudyDate must name at least one date"));
        }
        Ok(Self { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_wildcards_become_like_patterns_with_sql_wildcards_escaped() {
        assert_eq!(
            NamePattern::parse("Doe^J*").expect("ok").as_like(),
            "doe^j%"
        );
        assert_eq!(
            NamePattern::parse("?a_b%c\\").expect("ok").as_like(),
            "_a\\_b\\%c\\\\"
        );
        assert!(NamePattern::parse("").is_err());
    }

    #[test]
    fn study_dates_are_days_or_ranges() {
        let day = DateRange::parse("20240131").expect("day");
        assert_eq!(day.from.as_deref(), Some("20240131"));
        assert_eq!(day.to.as_deref(), Some("20240131"));
        let open = DateRange::parse("-20240131").expect("open start");
        assert_eq!((open.from, open.to.as_deref()), (None, Some("20240131")));
        let range = DateRange::parse("20230101-20231231").expect("range");
        assert_eq!(range.from.as_deref(), Some("20230101"));
        assert!(DateRange::parse("2024-01-31").is_err());
        assert!(DateRange::parse("-").is_err());
        assert!(DateRange::parse("2024013").is_err());
    }
}
