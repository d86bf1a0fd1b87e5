//! The PyTorch checkpoint reader (HD-BET's legacy format, through bedside's
//! own pickle machine): any bytes give tensors or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bedside::import::pytorch::read_checkpoint(data);
});
