//! The files inside a ZIP archive (a PACS or a colleague's export of a
//! DICOM series), read with the `zip` crate, bounded before anything large is
//! allocated: the sizes the archive declares are checked first, and each
//! entry is read through a limit, so a ZIP bomb ends in a message.

use std::io::Read;

/// Whether `bytes` start like a ZIP archive (a local file header).
pub fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

/// At most this many entries and this many bytes unpacked in all: a series
/// is at most a few thousand slices, and the browser's wasm memory is 4 GB.
/// Under the fuzzer (`cfg(fuzzing)`) 64 KiB, so an input's work stays near its
/// size (as `dicom_guard`'s limit on an inflated data set).
pub const MAX_ENTRIES: usize = 20_000;
pub const MAX_UNPACKED_BYTES: u64 = if cfg!(fuzzing) {
    64 << 10
} else if cfg!(target_arch = "wasm32") {
    1 << 30
} else {
    8 << 30
};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("not a readable ZIP archive: {0}")]
    Unreadable(String),
    #[error("the ZIP archive holds {0} entries, more than the {MAX_ENTRIES} bedside reads")]
    TooManyEntries(usize),
    #[error("the ZIP archive unpacks to more than {} MB, more than bedside reads at once", MAX_UNPACKED_BYTES >> 20)]
    TooLarge,
}

/// Every file in the archive (folders skipped), with its path inside it.
pub fn unzip(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ArchiveError> {
    let unreadable = |e: zip::result::ZipError| ArchiveError::Unreadable(e.to_string());
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(unreadable)?;
    if archive.len() > MAX_ENTRIES {
        return Err(ArchiveError::TooManyEntries(archive.len()));
    }
    let mut declared = 0u64;
    for i in 0..archive.len() {
        declared = declared.saturating_add(archive.by_index_raw(i).map_err(unreadable)?.size());
    }
    if declared > MAX_UNPACKED_BYTES {
        return Err(ArchiveError::TooLarge);
    }
    let mut files = Vec::new();
    let mut unpacked = 0u64;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(unreadable)?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().map_err(unreadable)?.into_owned();
        // The declared size may lie: read through what is left of the budget.
        let mut data = Vec::with_capacity(entry.size().min(64 << 20) as usize);
        (&mut entry).take(MAX_UNPACKED_BYTES - unpacked + 1).read_to_end(&mut data).map_err(|e| ArchiveError::Unreadable(format!("{name}: {e}")))?;
        unpacked += data.len() as u64;
        if unpacked > MAX_UNPACKED_BYTES {
            return Err(ArchiveError::TooLarge);
        }
        files.push((name, data));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zipped(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            out.start_file(*name, options).unwrap();
            out.write_all(data).unwrap();
        }
        out.finish().unwrap().into_inner()
    }

    #[test]
    fn unzips_every_file_with_its_path() {
        let bytes = zipped(&[("series/a.dcm", b"first"), ("series/b.dcm", &[7u8; 5000])]);
        assert!(is_zip(&bytes));
        let files = unzip(&bytes).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0], ("series/a.dcm".to_string(), b"first".to_vec()));
        assert_eq!(files[1].1, vec![7u8; 5000]);
    }

    #[test]
    fn a_broken_archive_is_named() {
        let mut bytes = zipped(&[("a.dcm", b"first")]);
        bytes.truncate(bytes.len() - 30);
        assert!(matches!(unzip(&bytes), Err(ArchiveError::Unreadable(_))));
        assert!(!is_zip(b"not a zip"));
    }
}
