//! Loading and saving bedside model packages, and the network they build.

use burn::module::Module;
use burn_store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Tensor};

use std::cell::RefCell;

use super::conv::{ConvBuilder, ConvLayer, Factorisation};
use crate::lora::{is_adapter_tensor, no_adapters, AdapterPlan};
use super::hdbet::{HdBet, HdBetConfig};
use super::taps::Taps;
use super::unet3d::{Unet3d, Unet3dConfig};
use super::manifest::{Manifest, FORMAT};

/// The most convolution weights a package may describe: 1 GiB of f32, 16
/// times HD-BET's.
pub const MAX_CONV_WEIGHTS: u128 = 1 << 28;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model.json is not valid: {0}")]
    Manifest(String),
    #[error("model family \"{0}\" is not known to this version of bedside")]
    UnknownFamily(String),
    #[error("the weights do not fit the network: {0}")]
    Weights(String),
    /// A PyTorch checkpoint that cannot be read (its own message, named by file).
    #[error("{0}")]
    Checkpoint(String),
    #[error("I/O error on {path}: {message}")]
    Io { path: String, message: String },
}

/// A network of one of the supported families. A module itself, so that
/// any package can go on training (`bedside distill` with `start_from`).
#[derive(Module, Debug)]
pub enum Network {
    HdBet(HdBet),
    /// The student family.
    Unet3d(Unet3d),
}

impl Network {
    /// Builds the family's network with initial weights, factorising the
    /// convolutions a compressed package lists.
    pub fn build(manifest: &Manifest, device: &Device) -> Result<Self, ModelError> {
        Ok(Self::build_with_layers(manifest, no_adapters(), device)?.0)
    }

    /// The same network with a LoRA adapter beside each layer `plan` lists
    /// (zero update until trained or loaded). Its base weights load with
    /// [`Network::load_base_safetensors`], or with its adapters from the
    /// complete weights (`lora::adapter::Adapter::combined_with`).
    pub fn build_adapted(manifest: &Manifest, plan: &AdapterPlan, device: &Device) -> Result<Self, ModelError> {
        Ok(Self::build_with_layers(manifest, plan, device)?.0)
    }

    /// Every convolution of the network the manifest describes, in build
    /// order, with its geometry and ranks. (Burn initialises lazily, so the
    /// network built on the way costs no weights.)
    pub fn conv_layers(manifest: &Manifest) -> Result<Vec<ConvLayer>, ModelError> {
        Ok(Self::build_with_layers(manifest, no_adapters(), &Device::flex())?.1)
    }

    fn build_with_layers(
        manifest: &Manifest,
        adapters: &AdapterPlan,
        device: &Device,
    ) -> Result<(Self, Vec<ConvLayer>), ModelError> {
        let factorisation: Factorisation = manifest.compression.as_ref().map(|c| c.layers.clone()).unwrap_or_default();
        let layers = RefCell::new(Vec::new());
        let convs = ConvBuilder::with_adapters(&factorisation, adapters, device, &layers);
        let network = match manifest.family.as_str() {
            "hd-bet" => {
                let cfg: HdBetConfig = serde_json::from_value(manifest.hyperparameters.clone())
                    .map_err(|e| ModelError::Manifest(format!("hd-bet hyperparameters: {e}")))?;
                Network::HdBet(cfg.build(&convs))
            }
            "unet3d" => {
                let cfg: Unet3dConfig = serde_json::from_value(manifest.hyperparameters.clone())
                    .map_err(|e| ModelError::Manifest(format!("unet3d hyperparameters: {e}")))?;
                Network::Unet3d(cfg.build(&convs))
            }
            other => return Err(ModelError::UnknownFamily(other.to_string())),
        };
        let layers = layers.into_inner();
        // Burn initialises lazily, so an absurd model.json costs nothing until
        // its weights are loaded or run: it is refused here, by its size.
        let weights: u128 = layers.iter().map(|l| l.spec.in_channels as u128 * l.spec.out_channels as u128 * (l.spec.kernel as u128).pow(3)).sum();
        if weights > MAX_CONV_WEIGHTS {
            return Err(ModelError::Manifest(format!(
                "the hyperparameters describe {weights} convolution weights, more than the {MAX_CONV_WEIGHTS} bedside builds"
            )));
        }
        check_factorisation(&factorisation, &layers)?;
        if let Some(name) = adapters.keys().find(|name| !layers.iter().any(|l| l.runs && &l.name == *name)) {
            return Err(ModelError::Manifest(format!("the adapter names \"{name}\", which is not a convolution this network runs")));
        }
        Ok((network, layers))
    }

    /// Logits `[batch, classes, d, h, w]`.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        match self {
            Network::HdBet(net) => net.forward(x),
            Network::Unet3d(net) => net.forward(x),
        }
    }

    /// Logits plus the features distillation compares ([`Taps`]).
    pub fn forward_taps(&self, x: Tensor<5>) -> Taps {
        match self {
            Network::HdBet(net) => net.forward_taps(x),
            Network::Unet3d(net) => net.forward_taps(x),
        }
    }

    /// Bytes per input voxel of the largest single activation: what one
    /// device buffer must hold for a patch of a given size.
    pub fn peak_bytes_per_voxel(&self) -> u64 {
        let channels = match self {
            Network::HdBet(net) => net.widest_full_resolution_channels(),
            Network::Unet3d(net) => net.widest_full_resolution_channels(),
        };
        4 * channels as u64
    }

    /// Peak memory of one pass over `dims` voxels on the CPU: about five
    /// times its widest activation, measured in Chromium (HD-BET 1,678 MB on
    /// 128³ windows and 1,991 MB on 2.6 M voxels, student-s 291 MB, student-m
    /// 44 MB). The worker pool and the single-pass budget both count by it.
    pub fn pass_peak_bytes(&self, dims: [usize; 3]) -> u64 {
        5 * self.peak_bytes_per_voxel() * dims.iter().map(|&d| d as u64).product::<u64>()
    }

    pub fn num_params(&self) -> usize {
        match self {
            Network::HdBet(net) => net.num_params(),
            Network::Unet3d(net) => net.num_params(),
        }
    }

    /// The network's weights as safetensors bytes (f32, named like the source).
    pub fn to_safetensors(&self) -> Result<Vec<u8>, ModelError> {
        match self {
            Network::HdBet(net) => module_to_safetensors(net),
            Network::Unet3d(net) => module_to_safetensors(net),
        }
    }

    /// Replaces the weights with those in `bytes`. Every tensor of the network
    /// must be present with the right shape, and every value finite: a model
    /// with NaN weights would produce a confident-looking empty mask.
    pub fn load_safetensors(&mut self, mut bytes: Vec<u8>) -> Result<(), ModelError> {
        check_and_flush_weights(&mut bytes)?;
        match self {
            Network::HdBet(net) => load_module_safetensors(net, bytes),
            Network::Unet3d(net) => load_module_safetensors(net, bytes),
        }
    }
}

impl Network {
    /// Loads the base weights (every tensor but the adapters') into an
    /// adapted network, with the checks of [`Network::load_safetensors`].
    pub fn load_base_safetensors(&mut self, mut bytes: Vec<u8>) -> Result<(), ModelError> {
        check_and_flush_weights(&mut bytes)?;
        let mut store = SafetensorsStore::from_bytes(Some(bytes))
            .validate(false)
            .skip_enum_variants(true)
            .with_predicate(|path, _| !is_adapter_tensor(path))
            .allow_partial(true);
        let result = match self {
            Network::HdBet(net) => net.load_from(&mut store),
            Network::Unet3d(net) => net.load_from(&mut store),
        }
        .map_err(|e| ModelError::Weights(e.to_string()))?;
        // burn-store counts a tensor the file lacks as missing even when the
        // filter excludes it (hence allow_partial): the base's must be there.
        let missing: Vec<String> = result.missing.iter().filter(|(p, _)| !is_adapter_tensor(p)).map(|(p, _)| p.clone()).collect();
        describe_apply_problems(&missing, &result.errors)
    }
}

/// Any module's weights as safetensors bytes, named by their module path.
/// Enum variants (whole or factorised convolutions) are not part of tensor
/// names: a whole layer's weights keep their source names. Reads the weights
/// synchronously (see `transfer` for WebGPU in a browser).
pub fn module_to_safetensors<M: Module>(module: &M) -> Result<Vec<u8>, ModelError> {
    let mut store = SafetensorsStore::from_bytes(None).skip_enum_variants(true);
    module.save_into(&mut store).map_err(|e| ModelError::Weights(e.to_string()))?;
    store.get_bytes().map_err(|e| ModelError::Weights(e.to_string()))
}

/// Loads what [`module_to_safetensors`] wrote into `module`: every tensor
/// must be there, with its shape.
pub fn load_module_safetensors<M: Module>(module: &mut M, bytes: Vec<u8>) -> Result<(), ModelError> {
    // validate(false): a tensor of the wrong shape comes back in the result
    // (and is refused below, by name and shapes) instead of as burn-store's
    // debug dump.
    // allow_partial: a missing tensor comes back in the result (named below)
    // instead of as burn-store's multi-line summary; it is still refused.
    let mut store = SafetensorsStore::from_bytes(Some(bytes)).validate(false).allow_partial(true).skip_enum_variants(true);
    let result = module.load_from(&mut store).map_err(|e| ModelError::Weights(e.to_string()))?;
    describe_apply_problems(&result.missing.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), &result.errors)
}

/// Named f32 tensors `(name, shape, row-major values)` as safetensors bytes.
pub fn f32_safetensors(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<Vec<u8>, ModelError> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), data)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data).map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ModelError::Weights(e.to_string()))?;
    safetensors::serialize(views, None).map_err(|e| ModelError::Weights(e.to_string()))
}

/// A compressed package's layer list must name convolutions the network has,
/// at ranks they can take.
fn check_factorisation(factorisation: &Factorisation, layers: &[ConvLayer]) -> Result<(), ModelError> {
    for (name, ranks) in factorisation {
        let layer = layers.iter().find(|l| &l.name == name).ok_or_else(|| {
            ModelError::Manifest(format!("compression lists \"{name}\", which is not a convolution of this network"))
        })?;
        let channels = [layer.spec.out_channels, layer.spec.in_channels];
        if ranks.iter().zip(channels).any(|(&r, c)| r == 0 || r > c) {
            return Err(ModelError::Manifest(format!(
                "compression gives \"{name}\" ranks {ranks:?}, outside 1..=[out, in] = {channels:?}"
            )));
        }
    }
    Ok(())
}

/// Turns what burn-store reports into one clear error, or Ok when complete.
fn describe_apply_problems(
    missing: &[String],
    errors: &[burn_store::ApplyError],
) -> Result<(), ModelError> {
    if let [burn_store::ApplyError::ShapeMismatch { path, expected, found }, ..] = errors {
        return Err(ModelError::Weights(format!(
            "tensor {path} has shape {:?} but the network needs {:?}{}",
            found.as_slice(),
            expected.as_slice(),
            if errors.len() > 1 { format!(" ({} tensors do not fit)", errors.len()) } else { String::new() }
        )));
    }
    if !errors.is_empty() {
        let first: Vec<String> = errors.iter().take(3).map(|e| e.to_string()).collect();
        return Err(ModelError::Weights(format!(
            "{} tensor(s) could not be applied, e.g. {}",
            errors.len(),
            first.join("; ")
        )));
    }
    if !missing.is_empty() {
        let first: Vec<&str> = missing.iter().take(5).map(String::as_str).collect();
        return Err(ModelError::Weights(format!(
            "the file lacks {} tensor(s) the network needs, e.g. {}",
            missing.len(),
            first.join(", ")
        )));
    }
    Ok(())
}

/// Rejects weights containing NaN or infinity before they reach the network,
/// and flushes subnormal values to zero.
///
/// Why flush: 45% of HD-BET's published weights are subnormal (below 1.2e-38,
/// left there by weight decay). x86 CPUs compute with subnormals up to 100×
/// slower, and wasm cannot switch on flush-to-zero, so these weights made a
/// 128³ window take 7× longer on the CPU backends. Their contribution to any
/// output is below f32's resolution: zero is the same network.
fn check_and_flush_weights(bytes: &mut [u8]) -> Result<(), ModelError> {
    let base = bytes.as_ptr() as usize;
    let tensors = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| ModelError::Weights(format!("not a valid safetensors file: {e}")))?;
    let mut ranges = Vec::new();
    for (name, view) in tensors.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            continue;
        }
        let data = view.data();
        let bad = data
            .chunks_exact(4)
            .any(|b| !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite());
        if bad {
            return Err(ModelError::Weights(format!("tensor {name} contains NaN or infinite values")));
        }
        let start = data.as_ptr() as usize - base;
        ranges.push(start..start + data.len());
    }
    drop(tensors);
    for range in ranges {
        for b in bytes[range].chunks_exact_mut(4) {
            if f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_subnormal() {
                b.copy_from_slice(&0.0f32.to_le_bytes());
            }
        }
    }
    Ok(())
}

/// A manifest and the network it describes, with its weights, on a device.
#[derive(Debug)]
pub struct Model {
    pub manifest: Manifest,
    pub network: Network,
    /// The ensemble members' networks (`manifest.ensemble`), when they were
    /// asked for: predictions average `network` and all of these.
    pub members: Vec<Network>,
    /// sha256 (hex) of the weights files it was loaded from (with its
    /// members', folded in); none for a model made in memory (trained,
    /// merged with an adapter). See [`Model::weights_digest`].
    pub weights_sha256: Option<String>,
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Model {
    /// FLOPs of the convolutions of one pass of one network over a
    /// storage-order `patch` (the order does not matter: each level halves
    /// every axis).
    pub fn conv_flops_per_pass(&self, patch: [usize; 3]) -> u64 {
        Network::conv_layers(&self.manifest).map_or(0, |layers| layers.iter().map(|l| l.flops(patch)).sum())
    }

    /// Builds a model from the two files of a package, already in memory
    /// (the browser fetches them; the CLI reads them from a folder).
    pub fn from_package_bytes(model_json: &str, weights: Vec<u8>, device: &Device) -> Result<Self, ModelError> {
        Self::from_manifest(parse_manifest(model_json)?, weights, device)
    }

    /// Builds a model from a manifest already parsed (a package made in memory).
    pub fn from_manifest(manifest: Manifest, weights: Vec<u8>, device: &Device) -> Result<Self, ModelError> {
        let mut network = Network::build(&manifest, device)?;
        let digest = sha256_hex(&[weights.as_slice()]);
        network.load_safetensors(weights)?;
        Ok(Self { manifest, network, members: Vec::new(), weights_sha256: Some(digest) })
    }

    /// Adds one ensemble member from its weights (the file the manifest names).
    pub fn add_member(&mut self, weights: Vec<u8>, device: &Device) -> Result<(), ModelError> {
        let mut network = Network::build(&self.manifest, device)?;
        let member = sha256_hex(&[weights.as_slice()]);
        self.weights_sha256 = self.weights_sha256.take().map(|d| sha256_hex(&[d.as_bytes(), member.as_bytes()]));
        network.load_safetensors(weights)?;
        self.members.push(network);
        Ok(())
    }

    /// The identity of the weights in use, as a DICOM SEG names the
    /// algorithm's version: the first 16 hex digits of the sha256 of the
    /// weights file (ensemble members folded in), the same in the CLI and the
    /// page. A model made in memory (trained, merged with an adapter) has no
    /// file: its weights are serialised and hashed (native only: on WebGPU in
    /// a browser they cannot be read back synchronously).
    pub fn weights_digest(&self) -> Result<String, ModelError> {
        let full = match &self.weights_sha256 {
            Some(digest) => digest.clone(),
            None => {
                let files = self.networks().map(Network::to_safetensors).collect::<Result<Vec<_>, _>>()?;
                sha256_hex(&files.iter().map(Vec::as_slice).collect::<Vec<_>>())
            }
        };
        Ok(full[..16].to_string())
    }

    /// The networks whose predictions are averaged: the main one, then the members.
    pub fn networks(&self) -> impl Iterator<Item = &Network> {
        std::iter::once(&self.network).chain(&self.members)
    }

    /// Loads a package folder; with `ensemble`, every member the manifest lists too.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(dir: &std::path::Path, ensemble: bool, device: &Device) -> Result<Self, ModelError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| ModelError::Io { path: path.display().to_string(), message: e.to_string() })
        };
        let json = String::from_utf8(read("model.json")?)
            .map_err(|_| ModelError::Manifest("model.json is not UTF-8".into()))?;
        let mut model = Self::from_package_bytes(&json, read("weights.safetensors")?, device)?;
        if ensemble {
            if model.manifest.ensemble.is_empty() {
                return Err(ModelError::Manifest(format!("{} lists no ensemble members", dir.join("model.json").display())));
            }
            for member in model.manifest.ensemble.clone() {
                check_file_name(&member.weights)?;
                model.add_member(read(&member.weights)?, device)?;
            }
        }
        Ok(model)
    }

    /// Writes the package: `model.json`, `weights.safetensors`, and one file per loaded member.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save_dir(&self, dir: &std::path::Path) -> Result<(), ModelError> {
        let io = |path: &std::path::Path, e: std::io::Error| ModelError::Io { path: path.display().to_string(), message: e.to_string() };
        if self.members.len() != self.manifest.ensemble.len() {
            return Err(ModelError::Manifest(format!(
                "the manifest lists {} ensemble members but {} are loaded",
                self.manifest.ensemble.len(),
                self.members.len()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut files = vec![("weights.safetensors", &self.network)];
        for (entry, network) in self.manifest.ensemble.iter().zip(&self.members) {
            check_file_name(&entry.weights)?;
            files.push((entry.weights.as_str(), network));
        }
        for (name, network) in files {
            let p = dir.join(name);
            std::fs::write(&p, network.to_safetensors()?).map_err(|e| io(&p, e))?;
        }
        let json = serde_json::to_string_pretty(&self.manifest).map_err(|e| ModelError::Manifest(e.to_string()))?;
        let p = dir.join("model.json");
        std::fs::write(&p, json + "\n").map_err(|e| io(&p, e))
    }
}

/// A member's weights file must sit beside `model.json`: a manifest may not
/// point the loader (or the page's fetch) anywhere else.
pub fn check_file_name(name: &str) -> Result<(), ModelError> {
    let ok = name.ends_with(".safetensors")
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ModelError::Manifest(format!("ensemble weights \"{name}\" must be a plain .safetensors file name")))
    }
}

pub fn parse_manifest(model_json: &str) -> Result<Manifest, ModelError> {
    let manifest: Manifest = serde_json::from_str(model_json).map_err(|e| ModelError::Manifest(e.to_string()))?;
    if manifest.format != FORMAT {
        return Err(ModelError::Manifest(format!(
            "format is \"{}\", this version of bedside reads \"{FORMAT}\"",
            manifest.format
        )));
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tensor};

    fn test_manifest(family: &str, hyperparameters: serde_json::Value) -> String {
        serde_json::json!({
            "format": FORMAT, "id": "student-test", "name": "test student", "family": family,
            "hyperparameters": hyperparameters,
            "preprocessing": {"target_spacing": [1.5, 1.5, 1.5], "axis_order": "zyx", "normalisation": "zscore",
                              "interpolation": "trilinear", "patch_size": [32, 32, 32], "divisible_by": 4},
            "postprocessing": {"largest_component": true},
            "labels": [{"value": 0, "name": "background", "color": [0, 0, 0]}, {"value": 1, "name": "brain", "color": [255, 80, 60]}],
            "provenance": {"source": "test", "source_sha256": "", "citation": "", "converted_by": "test"},
            "licence": "Apache-2.0", "params": 0, "flops_per_patch": 0
        })
        .to_string()
    }

    /// A `unet3d` student travels through a package (manifest + safetensors) unchanged.
    #[test]
    fn unet3d_package_round_trip() {
        let device = Device::flex();
        let cfg = Unet3dConfig::new().with_base_filters(2).with_depth(2);
        let manifest = test_manifest("unet3d", serde_json::to_value(&cfg).unwrap());
        let original = Network::Unet3d(cfg.init(&device));
        let weights = original.to_safetensors().unwrap();
        let loaded = Model::from_package_bytes(&manifest, weights, &device).unwrap();
        let x = Tensor::<5>::random([1, 1, 8, 8, 8], Distribution::Default, &device);
        let (a, b) = (original.forward(x.clone()), loaded.network.forward(x));
        let diff = (a - b).abs().max().into_scalar::<f32>();
        assert_eq!(diff, 0.0);
    }

    /// The layer list names every kernel in the weights file, and its FLOPs
    /// add up to the families' own counts; a factorised layer is stored under
    /// its three parts.
    #[test]
    fn conv_layers_name_every_kernel_and_count_the_flops() {
        let hd = HdBetConfig::new().with_base_filters(3);
        let unet = Unet3dConfig::new().with_base_filters(4).with_depth(3).with_max_filters(Some(8));
        let patch = [32, 48, 16];
        for (family, hyper, flops) in [
            ("hd-bet", serde_json::to_value(&hd).unwrap(), hd.flops(patch)),
            ("unet3d", serde_json::to_value(&unet).unwrap(), unet.flops(patch)),
        ] {
            let mut manifest = parse_manifest(&test_manifest(family, hyper)).unwrap();
            let layers = Network::conv_layers(&manifest).unwrap();
            assert_eq!(layers.iter().map(|l| l.flops(patch)).sum::<u64>(), flops, "{family}");
            let network = Network::build(&manifest, &Device::flex()).unwrap();
            let bytes = network.to_safetensors().unwrap();
            let weights = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let kernels: Vec<String> = weights.names().into_iter().filter(|n| weights.tensor(n).unwrap().shape().len() == 5).map(|n| n.to_string()).collect();
            assert_eq!(kernels.len(), layers.len(), "{family}: {kernels:?}");
            for layer in &layers {
                assert!(kernels.contains(&format!("{}.weight", layer.name)), "{family}: {}", layer.name);
            }

            // Factorise the second layer: its tensors change names, and the list says so.
            let target = layers[1].name.clone();
            manifest.compression = Some(crate::model::manifest::Compression {
                source_id: "x".into(),
                source_sha256: String::new(),
                rule: serde_json::json!({}),
                layers: [(target.clone(), [2, 2])].into_iter().collect(),
                report: Vec::new(),
            });
            let layers = Network::conv_layers(&manifest).unwrap();
            assert_eq!(layers[1].ranks, Some([2, 2]));
            let bytes = Network::build(&manifest, &Device::flex()).unwrap().to_safetensors().unwrap();
            let weights = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            for part in ["first.weight", "core.weight", "last.weight", "last.bias"] {
                assert!(weights.tensor(&format!("{target}.{part}")).is_ok(), "{family}: {target}.{part}");
            }
            assert!(weights.tensor(&format!("{target}.weight")).is_err());

            // A layer the network does not have, or ranks it cannot take, are refused.
            for (name, ranks) in [("no.such.layer", [1, 1]), (target.as_str(), [0, 1]), (target.as_str(), [1, 999])] {
                let c = manifest.compression.as_mut().unwrap();
                c.layers = [(name.to_string(), ranks)].into_iter().collect();
                assert!(matches!(Network::build(&manifest, &Device::flex()), Err(ModelError::Manifest(_))), "{name} {ranks:?}");
            }
        }
    }
}
