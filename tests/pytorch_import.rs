//! bedside's in-memory reader of legacy PyTorch checkpoints (the one the page
//! uses for uploaded weights) against burn-store's file-based reader, on
//! HD-BET's five real fold files; and the importer's refusals.

#![cfg(not(target_arch = "wasm32"))] // reads files and runs the native CLI

mod common;

use bedside::import::hdbet::import_hdbet_bytes;
use bedside::import::pytorch::read_checkpoint;
use bedside::model::Network;
use bedside::model::hdbet::HdBetConfig;
use burn::tensor::Device;
use burn_store::pytorch_reader::PytorchReader;
use burn_store::{ModuleSnapshot, PytorchStore};
use common::*;

#[test]
fn every_hdbet_fold_reads_tensor_for_tensor_like_burn_store() {
    for fold in 0..5 {
        let path = hdbet_fold(fold);
        let ours = read_checkpoint(&std::fs::read(&path).unwrap()).unwrap();
        let reference = PytorchReader::new(&path).unwrap();
        assert!(ours.skipped.is_empty(), "fold {fold}: skipped {:?}", ours.skipped);
        assert_eq!(ours.tensors.len(), reference.len(), "fold {fold}: tensor count");
        assert!(ours.tensors.len() > 100, "fold {fold}: only {} tensors", ours.tensors.len());
        for (name, t) in &ours.tensors {
            let r = reference.get(name).unwrap_or_else(|| panic!("fold {fold}: burn-store has no {name}"));
            assert_eq!(t.shape, r.shape(), "fold {fold}: shape of {name}");
            assert_eq!(t.dtype, "float32");
            let bytes = r.read().unwrap();
            let expected: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            assert!(
                t.values.iter().map(|v| v.to_bits()).eq(expected.iter().map(|v| v.to_bits())),
                "fold {fold}: values of {name} differ"
            );
        }
    }
}

/// The network built by the importer holds exactly what burn-store's
/// `PytorchStore` loads into it (with InstanceNorm's weight/bias as gamma/beta),
/// except that subnormal values are flushed to zero.
#[test]
fn imported_network_equals_burn_stores_load() {
    let device = Device::flex();
    let path = hdbet_fold(0);
    let imported = import_hdbet_bytes(&std::fs::read(&path).unwrap(), "0.model", "test", &device).unwrap();
    assert_eq!(imported.manifest.name, "HD-BET (fold 0)");
    assert_eq!(imported.manifest.params, 16_349_655);

    let mut net = HdBetConfig::new().init(&device);
    let mut store = PytorchStore::from_file(&path)
        .with_key_remapping(r"^(.*bn[^.]*)\.weight$", "$1.gamma")
        .with_key_remapping(r"^(.*bn[^.]*)\.bias$", "$1.beta")
        .allow_partial(true)
        .validate(true);
    let result = net.load_from(&mut store).unwrap();
    assert!(result.missing.is_empty() && result.errors.is_empty(), "{result:?}");
    let (a, b) = (imported.network.to_safetensors().unwrap(), Network::HdBet(net).to_safetensors().unwrap());
    let (a, b) = (safetensors::SafeTensors::deserialize(&a).unwrap(), safetensors::SafeTensors::deserialize(&b).unwrap());
    let mut names = a.names();
    names.sort();
    let mut reference_names = b.names();
    reference_names.sort();
    assert_eq!(names, reference_names);
    for name in names {
        let (x, y) = (a.tensor(name).unwrap(), b.tensor(name).unwrap());
        assert_eq!(x.shape(), y.shape(), "shape of {name}");
        // bedside flushes subnormal weights to zero on load (see `check_and_flush_weights`);
        // every other value must be bit-identical.
        let flushed = |b: &[u8]| {
            let v = f32::from_le_bytes(b.try_into().unwrap());
            if v.is_subnormal() { 0.0f32.to_bits() } else { v.to_bits() }
        };
        assert!(
            x.data().chunks_exact(4).map(flushed).eq(y.data().chunks_exact(4).map(flushed)),
            "the imported {name} differs from burn-store's"
        );
        assert!(x.data().chunks_exact(4).all(|b| !f32::from_le_bytes(b.try_into().unwrap()).is_subnormal()));
    }
}

fn import_fails(name: &str, bytes: &[u8]) -> String {
    let dir = scratch_dir("pytorch_import");
    let input = dir.join(name);
    std::fs::write(&input, bytes).unwrap();
    let out = dir.join(format!("{name}.package"));
    run_fails(&["import-hdbet", input.to_str().unwrap(), "--out", out.to_str().unwrap()], Some(&out))
}

#[test]
fn a_truncated_fold_is_refused() {
    let full = std::fs::read(hdbet_fold(0)).unwrap();
    for keep in [full.len() / 2, 20_000, 5_000, 100] {
        let msg = import_fails("truncated.model", &full[..keep]);
        assert!(msg.contains("truncated"), "{keep} bytes: {msg}");
    }
}

#[test]
fn a_fold_with_a_nan_weight_is_refused() {
    let mut bytes = std::fs::read(hdbet_fold(0)).unwrap();
    // The last storage's last element.
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    let msg = import_fails("nan.model", &bytes);
    assert!(msg.contains("nan"), "{msg}");
}

#[test]
fn other_files_are_named_for_what_they_are() {
    let msg = import_fails("zip.model", b"PK\x03\x04 a zip archive");
    assert!(msg.contains("zip format"), "{msg}");
    let nifti = std::fs::read(data("colin27/ch2.nii.gz")).unwrap();
    let msg = import_fails("ch2.model", &nifti);
    assert!(msg.contains("not a pytorch checkpoint"), "{msg}");
}
