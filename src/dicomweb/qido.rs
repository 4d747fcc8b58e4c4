//! QIDO-RS: searches for studies, series and instances in the caller's
//! scope, answered in DICOM JSON from the attributes ingest indexed (no
//! blob is opened). Every instance behind an answer is audited as listed.
//!
//! Matching keys, by keyword or tag: StudyInstanceUID, SeriesInstanceUID,
//! SOPInstanceUID, PatientID, AccessionNumber and Modality /
//! ModalitiesInStudy match exactly; PatientName with `*` and `?`,
//! case-insensitively; StudyDate as a day or a range. `limit` (default 100,
//! at most 1000), `offset`, `includefield` (`all`, keywords or tags, among
//! the attributes Relay keeps) and `fuzzymatching=false`. Any other key is
//! `400`, so a filter is never silently ignored.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use relay_workers::model::{
    DateRange, DicomAccess, DicomInstance, DicomQuery, NamePattern, QueryLevel,
};
use serde_json::Value;

use super::dicom_json::{Dataset, key};
use super::{DICOM_JSON, DicomPath, base_url, is_uid};
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiQuery, Caller};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// The raw query string pairs (keys may repeat: `includefield`).
type Params = ApiQuery<Vec<(String, String)>>;

/// `GET /dicomweb/studies`
#[utoipa::path(get, path = "/dicomweb/studies", tag = "dicomweb",
    params(("PatientName" = Option<String>, Query, description = "Matching keys, limit, offset, includefield: see the README")),
    security(("bearer" = [])),
    responses((status = 200, description = "Matching studies", content_type = "application/dicom+json"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn search_studies(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(params): Params,
) -> Result<Response, ApiError> {
    search(
        &state,
        &caller,
        &headers,
        QueryLevel::Study,
        DicomPath::default(),
        &params,
    )
    .await
}

/// `GET /dicomweb/series`
#[utoipa::path(get, path = "/dicomweb/series", tag = "dicomweb", security(("bearer" = [])),
    responses((status = 200, description = "Matching series", content_type = "application/dicom+json"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn search_all_series(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(params): Params,
) -> Result<Response, ApiError> {
    search(
        &state,
        &caller,
        &headers,
        QueryLevel::Series,
        DicomPath::default(),
        &params,
    )
    .await
}

/// `GET /dicomweb/studies/{study}/series`
#[utoipa::path(get, path = "/dicomweb/studies/{study}/series", tag = "dicomweb",
    params(("study" = String, Path, description = "Study Instance UID", pattern = "^[0-9.]{1,64}$")), security(("bearer" = [])),
    responses((status = 200, description = "Matching series of the study", content_type = "application/dicom+json"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "A UID in the path is malformed", body = ErrorBody)))]
pub async fn search_study_series(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    path: DicomPath,
    ApiQuery(params): Params,
) -> Result<Response, ApiError> {
    search(&state, &caller, &headers, QueryLevel::Series, path, &params).await
}

/// `GET /dicomweb/studies/{study}/instances`
#[utoipa::path(get, path = "/dicomweb/studies/{study}/instances", tag = "dicomweb",
    params(("study" = String, Path, description = "Study Instance UID", pattern = "^[0-9.]{1,64}$")), security(("bearer" = [])),
    responses((status = 200, description = "Matching instances of the study", content_type = "application/dicom+json"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "A UID in the path is malformed", body = ErrorBody)))]
pub async fn search_study_instances(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    path: DicomPath,
    ApiQuery(params): Params,
) -> Result<Response, ApiError> {
    search(
        &state,
        &caller,
        &headers,
        QueryLevel::Instance,
        path,
        &params,
    )
    .await
}

/// `GET /dicomweb/studies/{study}/series/{series}/instances`
#[utoipa::path(get, path = "/dicomweb/studies/{study}/series/{series}/instances", tag = "dicomweb",
    params(("study" = String, Path, description = "Study Instance UID", pattern = "^[0-9.]{1,64}$"),
        ("series" = String, Path, description = "Series Instance UID", pattern = "^[0-9.]{1,64}$")), security(("bearer" = [])),
    responses((status = 200, description = "Matching instances of the series", content_type = "application/dicom+json"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "A UID in the path is malformed", body = ErrorBody)))]
pub async fn search_series_instances(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    path: DicomPath,
    ApiQuery(params): Params,
) -> Result<Response, ApiError> {
    search(
        &state,
        &caller,
        &headers,
        QueryLevel::Instance,
        path,
        &params,
    )
    .await
}

async fn search(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    level: QueryLevel,
    path: DicomPath,
    params: &[(String, String)],
) -> Result<Response, ApiError> {
    let Search {
        mut query,
        include,
        limited,
    } = parse(level, params)?;
    if path.study.is_some() {
        query.study_instance_uid = path.study;
    }
    if path.series.is_some() {
        query.series_instance_uid = path.series;
    }
    let found = state
        .catalog
        .dicom_instances(&caller.audit, caller.scope(), &query, DicomAccess::Search)
        .await?;
    let base = base_url(state, headers);
    let results: Vec<Value> = match level {
        QueryLevel::Study => groups(&found, |i| i.index.study_instance_uid.clone())
            .into_iter()
            .map(|g| {
                let mut set = study_attributes(&g, &base);
                filter(&mut set, STUDY_KEYS, &include);
                set.into_value()
            })
            .collect(),
        QueryLevel::Series => groups(&found, |i| {
            format!(
                "{} {}",
                i.index.study_instance_uid, i.index.series_instance_uid
            )
        })
        .into_iter()
        .map(|g| {
            let mut set = study_attributes(&g, &base);
            set.merge(series_attributes(&g, &base));
            filter(&mut set, SERIES_KEYS, &include);
            set.into_value()
        })
        .collect(),
        QueryLevel::Instance => unique(&found)
            .into_iter()
            .map(|i| {
                let one = [i];
                let mut set = study_attributes(&one, &base);
                set.merge(series_attributes(&one, &base));
                set.merge(instance_attributes(i, &base));
                filter(&mut set, INSTANCE_KEYS, &include);
                set.into_value()
            })
            .collect(),
    };
    let full = results.len() >= query.limit as usize;
    let mut response = (
        [(header::CONTENT_TYPE, DICOM_JSON)],
        Value::Array(results).to_string(),
    )
        .into_response();
    if full && !limited {
        response.headers_mut().insert(
            header::WARNING,
            HeaderValue::from_static(
                "299 relay \"The number of results exceeded the maximum supported by the server. Additional results can be requested.\"",
            ),
        );
    }
    Ok(response)
}

/// A parsed search: the query, the `includefield` keys, and whether the
/// client set its own `limit`.
struct Search {
    query: DicomQuery,
    include: Include,
    limited: bool,
}

/// Which attributes beyond a level's defaults to return.
enum Include {
    All,
    Keys(BTreeSet<String>),
}

fn invalid(message: String) -> ApiError {
    ApiError::InvalidQuery(message)
}

fn parse(level: QueryLevel, params: &[(String, String)]) -> Result<Search, ApiError> {
    let mut query = DicomQuery::new(level, DEFAULT_LIMIT);
    let mut include = BTreeSet::new();
    let mut all = false;
    let mut limited = false;
    for (name, value) in params {
        let uid = |what: &str| -> Result<Option<String>, ApiError> {
            if value.is_empty() {
                return Ok(None);
            }
            if is_uid(value) {
                Ok(Some(value.clone()))
            } else {
                Err(invalid(format!("{what} must be a UID (digits and dots)")))
            }
        };
        let text = || (!value.is_empty()).then(|| value.clone());
        match name.as_str() {
            "StudyInstanceUID" | "0020000D" => query.study_instance_uid = uid("StudyInstanceUID")?,
            "SeriesInstanceUID" | "0020000E" => {
                query.series_instance_uid = uid("SeriesInstanceUID")?
            }
            "SOPInstanceUID" | "00080018" => query.sop_instance_uid = uid("SOPInstanceUID")?,
            "PatientID" | "00100020" => query.patient_id = text(),
            "AccessionNumber" | "00080050" => query.accession_number = text(),
            "Modality" | "00080060" | "ModalitiesInStudy" | "00080061" => query.modality = text(),
            "PatientName" | "00100010" => {
                query.patient_name = text()
                    .map(|v| NamePattern::parse(&v))
                    .transpose()
                    .map_err(|e| invalid(e.to_string()))?
            }
            "StudyDate" | "00080020" => {
                query.study_date = text()
                    .map(|v| DateRange::parse(&v))
                    .transpose()
                    .map_err(|e| invalid(e.to_string()))?
            }
            "limit" => {
                let limit: u32 = value
                    .parse()
                    .map_err(|_| invalid("limit must be a number".to_owned()))?;
                if limit == 0 || limit > MAX_LIMIT {
                    return Err(invalid(format!("limit must be between 1 and {MAX_LIMIT}")));
                }
                query.limit = limit;
                limited = true;
            }
            "offset" => {
                query.offset = value
                    .parse()
                    .map_err(|_| invalid("offset must be a number".to_owned()))?
            }
            "includefield" => {
                for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                    if field.eq_ignore_ascii_case("all") {
                        all = true;
                    } else if let Some(tag) = tag_of(field) {
                        include.insert(key(tag));
                    }
                    // An attribute Relay does not keep is simply absent.
                }
            }
            "fuzzymatching" if value == "false" => {}
            other => {
                return Err(invalid(format!(
                    "{other:?} is not a supported query parameter; see the README's DICOMweb section"
                )));
            }
        }
    }
    Ok(Search {
        query,
        include: if all {
            Include::All
        } else {
            Include::Keys(include)
        },
        limited,
    })
}

/// A keyword (`PatientAge`) or tag (`00101010`) from the standard dictionary.
fn tag_of(field: &str) -> Option<Tag> {
    use dicom_core::dictionary::DataDictionary;
    if field.len() == 8 && field.bytes().all(|b| b.is_ascii_hexdigit()) {
        let group = u16::from_str_radix(&field[..4], 16).ok()?;
        let element = u16::from_str_radix(&field[4..], 16).ok()?;
        return Some(Tag(group, element));
    }
    dicom_dictionary_std::StandardDataDictionary
        .by_name(field)
        .map(|entry| entry.tag.inner())
}

/// What each level returns unless `includefield` asks for more.
const STUDY_KEYS: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::ACCESSION_NUMBER,
    tags::MODALITIES_IN_STUDY,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::RETRIEVE_URL,
    tags::STUDY_DESCRIPTION,
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_ID,
    tags::NUMBER_OF_STUDY_RELATED_SERIES,
    tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
];
const SERIES_KEYS: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::MODALITY,
    tags::SERIES_DESCRIPTION,
    tags::RETRIEVE_URL,
    tags::STUDY_INSTANCE_UID,
    tags::SERIES_INSTANCE_UID,
    tags::SERIES_NUMBER,
    tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
];
const INSTANCE_KEYS: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::SOP_CLASS_UID,
    tags::SOP_INSTANCE_UID,
    tags::RETRIEVE_URL,
    tags::STUDY_INSTANCE_UID,
    tags::SERIES_INSTANCE_UID,
    tags::INSTANCE_NUMBER,
    tags::ROWS,
    tags::COLUMNS,
    tags::NUMBER_OF_FRAMES,
    tags::AVAILABLE_TRANSFER_SYNTAX_UID,
];

fn filter(set: &mut Dataset, defaults: &[Tag], include: &Include) {
    let Include::Keys(extra) = include else {
        return;
    };
    let defaults: BTreeSet<String> = defaults.iter().map(|t| key(*t)).collect();
    set.retain(|k| defaults.contains(k) || extra.contains(k));
}

/// Instances once each (the same SOP Instance UID in two cases is one
/// instance to DICOM), in the catalog's order.
fn unique(found: &[DicomInstance]) -> Vec<&DicomInstance> {
    let mut seen = BTreeSet::new();
    found
        .iter()
        .filter(|i| seen.insert(i.index.sop_instance_uid.as_str()))
        .collect()
}

/// Consecutive runs of instances with the same `key` (the catalog returns
/// them ordered by study and series), each instance once.
fn groups(
    found: &[DicomInstance],
    key: impl Fn(&DicomInstance) -> String,
) -> Vec<Vec<&DicomInstance>> {
    let mut out: Vec<(String, Vec<&DicomInstance>)> = Vec::new();
    for instance in unique(found) {
        let k = key(instance);
        match out.last_mut() {
            Some((last, group)) if *last == k => group.push(instance),
            _ => out.push((k, vec![instance])),
        }
    }
    out.into_iter().map(|(_, g)| g).collect()
}

/// The first value any instance of `group` has.
fn first<'a>(
    group: &[&'a DicomInstance],
    pick: impl Fn(&'a DicomInstance) -> Option<&'a str>,
) -> Option<&'a str> {
    group.iter().find_map(|i| pick(i))
}

fn study_attributes(group: &[&DicomInstance], base: &str) -> Dataset {
    let mut set = Dataset::new();
    let study = group
        .first()
        .map(|i| i.index.study_instance_uid.as_str())
        .unwrap_or_default();
    let modalities: BTreeSet<String> = group
        .iter()
        .filter_map(|i| i.index.modality.clone())
        .collect();
    let series: BTreeSet<&str> = group
        .iter()
        .map(|i| i.index.series_instance_uid.as_str())
        .collect();
    set.text(tags::SPECIFIC_CHARACTER_SET, "CS", Some("ISO_IR 192"))
        .text(
            tags::STUDY_DATE,
            "DA",
            first(group, |i| i.index.study_date.as_deref()),
        )
        .text(
            tags::STUDY_TIME,
            "TM",
            first(group, |i| i.index.study_time.as_deref()),
        )
        .text(
            tags::ACCESSION_NUMBER,
            "SH",
            first(group, |i| i.index.accession_number.as_deref()),
        )
        .texts(
            tags::MODALITIES_IN_STUDY,
            "CS",
            &modalities.into_iter().collect::<Vec<_>>(),
        )
        .person(
            tags::REFERRING_PHYSICIAN_NAME,
            first(group, |i| i.index.referring_physician_name.as_deref()),
        )
        .text(
            tags::STUDY_DESCRIPTION,
            "LO",
            first(group, |i| i.index.study_description.as_deref()),
        )
        .person(
            tags::PATIENT_NAME,
            first(group, |i| i.index.patient_name.as_deref()),
        )
        .text(
            tags::PATIENT_ID,
            "LO",
            first(group, |i| i.index.patient_id.as_deref()),
        )
        .text(
            tags::PATIENT_BIRTH_DATE,
            "DA",
            first(group, |i| i.index.patient_birth_date.as_deref()),
        )
        .text(
            tags::PATIENT_SEX,
            "CS",
            first(group, |i| i.index.patient_sex.as_deref()),
        )
        .text(tags::STUDY_INSTANCE_UID, "UI", Some(study))
        .text(
            tags::STUDY_ID,
            "SH",
            first(group, |i| i.index.study_id.as_deref()),
        )
        .number(
            tags::NUMBER_OF_STUDY_RELATED_SERIES,
            "IS",
            Some(series.len() as i64),
        )
        .number(
            tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
            "IS",
            Some(group.len() as i64),
        )
        .text(
            tags::RETRIEVE_URL,
            "UR",
            Some(&format!("{base}/dicomweb/studies/{study}")),
        );
    set
}

fn series_attributes(group: &[&DicomInstance], base: &str) -> Dataset {
    let mut set = Dataset::new();
    let Some(one) = group.first() else {
        return set;
    };
    let (study, series) = (
        one.index.study_instance_uid.as_str(),
        one.index.series_instance_uid.as_str(),
    );
    set.text(
        tags::MODALITY,
        "CS",
        first(group, |i| i.index.modality.as_deref()),
    )
    .text(
        tags::SERIES_DESCRIPTION,
        "LO",
        first(group, |i| i.index.series_description.as_deref()),
    )
    .text(tags::SERIES_INSTANCE_UID, "UI", Some(series))
    .number(
        tags::SERIES_NUMBER,
        "IS",
        group.iter().find_map(|i| i.index.series_number),
    )
    .number(
        tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
        "IS",
        Some(group.len() as i64),
    )
    .text(
        tags::RETRIEVE_URL,
        "UR",
        Some(&format!("{base}/dicomweb/studies/{study}/series/{series}")),
    );
    set
}

fn instance_attributes(instance: &DicomInstance, base: &str) -> Dataset {
    let i = &instance.index;
    let mut set = Dataset::new();
    set.text(tags::SOP_CLASS_UID, "UI", Some(&i.sop_class_uid))
        .text(tags::SOP_INSTANCE_UID, "UI", Some(&i.sop_instance_uid))
        .number(tags::INSTANCE_NUMBER, "IS", i.instance_number)
        .number(tags::ROWS, "US", i.rows)
        .number(tags::COLUMNS, "US", i.columns)
        .number(tags::NUMBER_OF_FRAMES, "IS", i.number_of_frames)
        .text(
            tags::AVAILABLE_TRANSFER_SYNTAX_UID,
            "UI",
            Some(&i.transfer_syntax_uid),
        )
        .text(
            tags::RETRIEVE_URL,
            "UR",
            Some(&format!(
                "{base}/dicomweb/studies/{}/series/{}/instances/{}",
                i.study_instance_uid, i.series_instance_uid, i.sop_instance_uid
            )),
        );
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn keywords_and_tags_name_the_same_keys() {
        let by_name = parse(
            QueryLevel::Study,
            &pairs(&[
                ("PatientID", "A1"),
                ("StudyDate", "20240101-"),
                ("limit", "5"),
            ]),
        )
        .expect("parsed");
        let by_tag = parse(
            QueryLevel::Study,
            &pairs(&[
                ("00100020", "A1"),
                ("00080020", "20240101-"),
                ("limit", "5"),
            ]),
        )
        .expect("parsed");
        assert_eq!(by_name.query, by_tag.query);
        assert_eq!(by_name.query.limit, 5);
        assert!(by_name.limited);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        for bad in [
            ("PatientAge", "040Y"),
            ("StudyInstanceUID", "1.2.x"),
            ("limit", "0"),
            ("StudyDate", "2024"),
            ("fuzzymatching", "true"),
        ] {
            assert!(
                matches!(
                    parse(QueryLevel::Study, &pairs(&[bad])),
                    Err(ApiError::InvalidQuery(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn includefield_names_keywords_or_tags() {
        let parsed = parse(
            QueryLevel::Instance,
            &pairs(&[("includefield", "PatientName,00080020")]),
        )
        .expect("parsed");
        let Include::Keys(keys) = parsed.include else {
            panic!("keys expected");
        };
        assert!(keys.contains("00100010") && keys.contains("00080020"));
    }
}
