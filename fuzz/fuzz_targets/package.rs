//! The package loader (model.json + weights.safetensors into a Burn network on
//! the CPU). The input is a model.json's length (u32, little endian), the
//! model.json, then the weights file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((length, rest)) = data.split_first_chunk::<4>() else { return };
    let length = (u32::from_le_bytes(*length) as usize).min(rest.len());
    let (json, weights) = rest.split_at(length);
    let Ok(json) = std::str::from_utf8(json) else { return };
    let device = bedside::inference::backend::OpenedDevice::cpu().device;
    let _ = bedside::model::Model::from_package_bytes(json, weights.to_vec(), &device);
});
