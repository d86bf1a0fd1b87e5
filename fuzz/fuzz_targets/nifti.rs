//! The NIfTI reader (NIfTI-1 and -2, plain and gzip): any bytes give a volume
//! or an error, never a panic, a hang or an allocation the header merely claims.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first volume, as every command reads a file, and a later one, as
    // `--volume N` and the page's picker read a 4D file.
    for index in [0, 1] {
        if let Ok(volume) = bedside::volume::read_nifti_volume(data, index) {
            let _ = bedside::volume::intensity_stats(&volume.data);
        }
    }
    let _ = bedside::volume::extract_volume(data, 0);
});
