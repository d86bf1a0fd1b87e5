//! What image a path on the command line holds: a NIfTI file (one volume of
//! a 4D series), a DICOM file, or a folder or ZIP of DICOM files (one series
//! of those it holds). Every command that takes an image reads it here.

use std::path::{Path, PathBuf};

use super::CliError;
use crate::volume::dicom::{self, SeriesReference, SeriesSummary};
use crate::volume::archive;
use crate::volume::{self, Volume};

/// Which image of a path: volume `volume` (from 0) of a 4D NIfTI file, and
/// series `series` (its number in the list, from 1, or its UID) of DICOM
/// files holding several.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pick<'a> {
    pub volume: usize,
    pub series: Option<&'a str>,
}

/// A folder is read to this many files, and this many bytes in all, before
/// anything is parsed: a mistyped path (the disk's root) fails at once
/// instead of reading the disk.
const MAX_FILES: usize = 20_000;
const MAX_BYTES: u64 = 8 << 30;

/// The image at `path`, and the DICOM series it came from (none for NIfTI).
pub fn load(path: &Path, pick: Pick) -> Result<(Volume, Option<SeriesSummary>), CliError> {
    Input::read(path)?.volume(pick)
}

/// What a path holds, read from disk once: DICOM files, or one NIfTI file.
pub enum Input {
    Dicom { shown: String, files: Vec<(String, Vec<u8>)> },
    Nifti { shown: String, bytes: Vec<u8> },
}

impl Input {
    pub fn read(path: &Path) -> Result<Input, CliError> {
        let shown = path.display().to_string();
        if path.is_dir() {
            return Ok(Input::Dicom { files: read_folder(path)?, shown });
        }
        let bytes = super::commands::read_file(path)?;
        if archive::is_zip(&bytes) {
            let files = archive::unzip(&bytes).map_err(|e| CliError(format!("{shown}: {e}")))?;
            return Ok(Input::Dicom { shown, files });
        }
        if dicom::is_dicom(&bytes) {
            // Named as given, so that a message about the file names it once.
            return Ok(Input::Dicom { files: vec![(shown.clone(), bytes)], shown });
        }
        Ok(Input::Nifti { shown, bytes })
    }

    /// The picked image, and the DICOM series it came from (none for NIfTI).
    pub fn volume(&self, pick: Pick) -> Result<(Volume, Option<SeriesSummary>), CliError> {
        match self {
            Input::Dicom { shown, files } => {
                let (volume, series) = dicom::read_chosen(files, pick.series).map_err(|e| located(shown, e))?;
                Ok((volume, Some(series)))
            }
            Input::Nifti { shown, bytes } => {
                let volume = volume::read_nifti_volume(bytes, pick.volume).map_err(|e| CliError(format!("{shown}: {e}")))?;
                Ok((volume, None))
            }
        }
    }

    /// What a DICOM SEG of the picked series points back to.
    pub fn reference(&self, pick: Pick) -> Result<SeriesReference, CliError> {
        match self {
            Input::Dicom { shown, files } => {
                let list = dicom::list_series(files).map_err(|e| located(shown, e))?;
                let chosen = dicom::choose(&list, pick.series, files.len()).map_err(|e| located(shown, e))?;
                dicom::reference_series(files, chosen).map_err(|e| located(shown, e))
            }
            Input::Nifti { shown, .. } => Err(CliError(format!(
                "{shown}: a DICOM SEG points back to the DICOM series it was made from; this is a NIfTI file, so save the mask with --out"
            ))),
        }
    }
}

/// A DICOM error about `shown` (a folder, a ZIP or one file): prefixed with
/// it, unless the message already begins with it (one file, named by itself).
fn located(shown: &str, e: dicom::DicomError) -> CliError {
    let message = e.to_string();
    if message.starts_with(&format!("{shown}: ")) {
        CliError(message)
    } else {
        CliError(format!("{shown}: {message}"))
    }
}

/// Every file under `dir` (recursively), with a name relative to it.
fn read_folder(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, CliError> {
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
    let mut files = Vec::new();
    let mut total = 0u64;
    while let Some(d) = pending.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| CliError(format!("cannot read {}: {e}", d.display())))?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if p.is_dir() {
                pending.push(p);
                continue;
            }
            total += p.metadata().map(|m| m.len()).unwrap_or(0);
            if files.len() >= MAX_FILES || total > MAX_BYTES {
                return Err(CliError(format!(
                    "{}: more than {MAX_FILES} files or {} GB: not one series; give the series' own folder",
                    dir.display(),
                    MAX_BYTES >> 30
                )));
            }
            let name = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
            files.push((name, super::commands::read_file(&p)?));
        }
    }
    Ok(files)
}
