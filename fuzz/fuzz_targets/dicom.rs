//! The DICOM reader, as the CLI and the page take their input: a ZIP is
//! unpacked (bounded), a DICOM file is parsed, grouped into series and read
//! as a volume (uncompressed, deflate, RLE and JPEG decoding included).
#![no_main]

use bedside::volume::{archive, dicom};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let files = if archive::is_zip(data) {
        match archive::unzip(data) {
            Ok(files) => files,
            Err(_) => return,
        }
    } else {
        vec![("input.dcm".to_string(), data.to_vec())]
    };
    if let Ok(list) = dicom::list_series(&files) {
        if let Some(series) = list.first() {
            let _ = dicom::read_series(&files, series);
            let _ = dicom::reference_series(&files, series);
        }
    }
});
