//! Which case a file goes into: the `--case-per` rule.
//!
//! `subfolder` (the default): each folder directly under the watched one is
//! one case, with everything below it (a study's series folders, a folder
//! of photos beside it); files lying directly in the watched folder are one
//! case too. Its referral is the `case.json` in that top folder.
//!
//! `study`: each DICOM study (StudyInstanceUID) is one case, wherever its
//! files lie; its referral is the `case.json` nearest to the file, looking
//! from the file's folder up to the watched one. A file that is not DICOM
//! (a photo) falls back to the `subfolder` rule.

use std::path::Path;

use clap::ValueEnum;
use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;

use super::scan::SIDECAR;

/// How files are grouped into cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CasePer {
    /// One case per folder directly under the watched folder
    Subfolder,
    /// One case per DICOM study (StudyInstanceUID); other files per subfolder
    Study,
}

/// The group a file belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOf {
    /// The journal's name for the group: `folder:<name>` or `study:<uid>`.
    pub key: String,
    /// The top folder the file is in (`""` for the watched folder itself).
    pub folder: String,
    /// Where its referral may be, nearest first, relative to the watched
    /// folder.
    pub sidecars: Vec<String>,
}

impl CasePer {
    /// The group of the file at `rel` (its bytes at `path`, read only for
    /// the `study` rule: the header, up to the pixel data).
    pub fn group_of(self, rel: &str, path: &Path) -> GroupOf {
        let by_folder = by_folder(rel);
        if self == CasePer::Subfolder {
            return by_folder;
        }
        match study_uid(path) {
            Some(uid) => GroupOf {
                key: format!("study:{uid}"),
                folder: by_folder.folder,
                sidecars: nearest_sidecars(rel),
            },
            None => by_folder,
        }
    }
}

fn by_folder(rel: &str) -> GroupOf {
    match rel.split_once('/') {
        Some((top, _)) => GroupOf {
            key: format!("folder:{top}"),
            folder: top.to_owned(),
            sidecars: vec![format!("{top}/{SIDECAR}")],
        },
        None => GroupOf {
            key: "folder:.".to_owned(),
            folder: String::new(),
            sidecars: vec![SIDECAR.to_owned()],
        },
    }
}

/// `a/b/x.dcm` → `a/b/case.json`, `a/case.json`, `case.json`.
fn nearest_sidecars(rel: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut dir = rel;
    while let Some((parent, _)) = dir.rsplit_once('/') {
        out.push(format!("{parent}/{SIDECAR}"));
        dir = parent;
    }
    out.push(SIDECAR.to_owned());
    out
}

/// The StudyInstanceUID of a DICOM Part 10 file; `None` for anything else.
fn study_uid(path: &Path) -> Option<String> {
    let object = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .ok()?;
    let uid = object
        .element(tags::STUDY_INSTANCE_UID)
        .ok()?
        .to_str()
        .ok()?
        .trim_end_matches(['\0', ' '])
        .to_owned();
    (!uid.is_empty()).then_some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name)
    }

    #[test]
    fn subfolder_groups_by_the_top_folder_and_its_sidecar() {
        let group = CasePer::Subfolder.group_of("ct/SE1/x.dcm", Path::new("unused"));
        assert_eq!(group.key, "folder:ct");
        assert_eq!(group.sidecars, ["ct/case.json"]);
        let top = CasePer::Subfolder.group_of("x.jpg", Path::new("unused"));
        assert_eq!(top.key, "folder:.");
        assert_eq!(top.sidecars, ["case.json"]);
    }

    #[test]
    fn study_groups_dicom_by_study_uid_and_photos_by_folder() {
        let ct = CasePer::Study.group_of("a/b/ct.dcm", &fixture("dicom/CT_small.dcm"));
        let mr = CasePer::Study.group_of("a/b/mr.dcm", &fixture("dicom/MR_small.dcm"));
        assert!(ct.key.starts_with("study:1."), "{}", ct.key);
        assert_ne!(ct.key, mr.key);
        assert_eq!(ct.sidecars, ["a/b/case.json", "a/case.json", "case.json"]);
        let photo = CasePer::Study.group_of("a/p.jpg", &fixture("photos/plain.png"));
        assert_eq!(photo.key, "folder:a");
        let text = CasePer::Study.group_of("a/t.dcm", &fixture("bad/text-as-dicom.dcm"));
        assert_eq!(text.key, "folder:a");
    }
}
