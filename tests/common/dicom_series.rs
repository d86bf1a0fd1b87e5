//! The DICOM series the DICOM tests read: written by pydicom (and dcmtk for
//! the compressed ones) from Colin27 by `tests/reference/make_dicom_series.py`,
//! once per test process; and dcm2niix's NIfTI of a folder.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{reference_script, run_python, scratch_dir};

pub struct Series {
    pub name: String,
    pub folder: PathBuf,
    /// "ok", or the words bedside's refusal must contain.
    pub expect: String,
}

/// The series, written once per test process.
pub fn series() -> &'static [Series] {
    static SERIES: OnceLock<Vec<Series>> = OnceLock::new();
    SERIES.get_or_init(|| {
        let out = scratch_dir("dicom_series");
        let listed = run_python(&[reference_script("make_dicom_series.py"), "www/sample/ch2.nii.gz".into(), out.display().to_string()]);
        listed
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut parts = l.trim().split('\t');
                let mut next = || parts.next().expect("name, folder, expectation").to_string();
                Series { name: next(), folder: PathBuf::from(next()), expect: next() }
            })
            .collect()
    })
}

pub fn named(name: &str) -> &'static Series {
    series().iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no series {name}"))
}

/// dcm2niix's NIfTI files of `folder` (one per series, named by series number).
pub fn dcm2niix(folder: &Path, out: &Path) -> Vec<PathBuf> {
    // dcm2niix renames rather than overwrites (1a.nii): start from an empty folder.
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).expect("dcm2niix output folder");
    let status = Command::new("dcm2niix")
        .args(["-z", "n", "-b", "n", "-f", "%s", "-o"])
        .arg(out)
        .arg(folder)
        .output()
        .expect("dcm2niix runs (apt package dcm2niix, installed by scripts/setup)");
    assert!(status.status.success(), "dcm2niix failed on {}: {}", folder.display(), String::from_utf8_lossy(&status.stdout));
    let mut files: Vec<PathBuf> = std::fs::read_dir(out).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "nii")).collect();
    files.sort();
    files
}

pub fn files_of(folder: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

