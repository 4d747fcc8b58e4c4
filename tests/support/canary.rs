//! PHI canaries: the patient data every test sends, which must never show
//! up in what Relay writes for operators or answers in an error — its log
//! (at the most verbose level), its error bodies, its panic messages — nor
//! may any bearer token. Every `relay` process the harness starts is checked
//! when it ends ([`assert_clean_log`]), and every error answer the
//! harness reads ([`assert_clean_error`]), so the whole suite is the canary
//! test.

/// The patient's name in every referral the tests send.
pub const PATIENT_NAME: &str = "Zebulon Quixote-Marlowe";
/// The patient's record number.
pub const MRN: &str = "MRN-77120";
/// The patient's birth date.
pub const BIRTH_DATE: &str = "1961-07-14";
/// Part of the clinical history, which is patient data too.
pub const HISTORY: &str = "Father had melanoma";
/// Files uploaded through the harness are named after the patient, as a
/// clinic's export often is.
pub const FILENAME: &str = "Quixote-Marlowe";

/// Everything that must never be written out.
pub const ALL: [&str; 5] = [PATIENT_NAME, FILENAME, MRN, BIRTH_DATE, HISTORY];

/// The canary (or bearer token) in `text`, if any, and the line it is on.
pub fn find(text: &str) -> Option<(&'static str, &str)> {
    for line in text.lines() {
        if let Some(canary) = ALL.iter().find(|c| line.contains(**c)) {
            return Some((canary, line));
        }
        if contains_token(line) {
            return Some(("a bearer token", line));
        }
    }
    None
}

/// Whether `text` holds a whole token, `relay_<32 hex>_<64 hex>`. Token ids
/// alone are public and may be logged; the secret may not.
fn contains_token(text: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    text.match_indices("relay_").any(|(at, prefix)| {
        let rest = &text[at + prefix.len()..];
        rest.len() >= 32 + 1 + 64
            && rest.is_char_boundary(32)
            && rest.is_char_boundary(97)
            && hex(&rest[..32])
            && rest.as_bytes()[32] == b'_'
            && hex(&rest[33..97])
    })
}

/// Panics when a process's log names a canary.
pub fn assert_clean_log(what: &str, log: &str) {
    if let Some((canary, line)) = find(log) {
        panic!("PHI canary: {canary} leaked into the log of {what}:\n{line}");
    }
}

/// Panics when an error answer names a canary.
pub fn assert_clean_error(status: u16, body: &str) {
    if status >= 400
        && let Some((canary, _)) = find(body)
    {
        panic!("PHI canary: {canary} leaked into a {status} error body");
    }
}
