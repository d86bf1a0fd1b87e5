//! Adapter files, PEFT-like: `adapter_config.json` (rank, α, the adapted
//! layers, and the base model's id and weights hash) and
//! `adapter_model.safetensors` (`<layer>.lora_A.weight` `[r, C_in, k, k, k]`
//! and `<layer>.lora_B.weight` `[C_out, r, 1, 1, 1]`; a factorised layer's
//! are under `<layer>.core.`). Also the check that an adapter meets the base
//! it was trained on, and the merge into a plain package.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::layer::merged_kernel;
use super::{is_adapter_tensor, AdapterPlan, AdapterSpec, LoraError, Trainables};
use crate::model::package::f32_safetensors;
use crate::model::{Manifest, Network};

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// `adapter_config.json`. Field names follow PEFT's where PEFT has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    /// Always "LORA".
    pub peft_type: String,
    pub r: usize,
    pub lora_alpha: f32,
    /// Every adapted convolution, by its path in the base model's weights.
    pub target_modules: Vec<String>,
    /// What else the file holds: `adapters` (LoRA A/B only), or also the
    /// normalisation affines and biases (`adapters-norms-biases`), or those
    /// alone (`norms-biases`, with r = 0 and no target modules).
    #[serde(default = "adapters_only")]
    pub trainables: Trainables,
    /// What the user asked for (`all`, a group, patterns), for the record.
    #[serde(default)]
    pub targets: String,
    /// The base model's id (its package folder name) …
    pub base_model_name_or_path: String,
    /// … and the sha256 of its `weights.safetensors`: an adapter only means
    /// something on the weights it was trained beside.
    pub base_model_sha256: String,
    pub bedside_version: String,
    /// How it was trained (data, steps, losses), when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
}

/// An adapter in memory: its config and its safetensors bytes.
#[derive(Debug, Clone)]
pub struct Adapter {
    pub config: AdapterConfig,
    pub weights: Vec<u8>,
}

fn adapters_only() -> Trainables {
    Trainables::Adapters
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl Adapter {
    /// Reads the two files, refusing anything that is not a LoRA adapter
    /// with one finite f32 A/B pair per listed layer.
    pub fn from_files(config_json: &str, weights: Vec<u8>) -> Result<Self, LoraError> {
        let config: AdapterConfig = serde_json::from_str(config_json)
            .map_err(|e| LoraError::File(format!("{CONFIG_FILE} is not valid: {e}")))?;
        if config.peft_type != "LORA" {
            return Err(LoraError::File(format!("peft_type is \"{}\"; bedside reads LoRA adapters only", config.peft_type)));
        }
        if config.trainables == Trainables::Full {
            return Err(LoraError::File("a fully fine-tuned model is a package, not an adapter".into()));
        }
        let lora = config.trainables.adapters();
        if lora && (config.r == 0 || !(config.lora_alpha.is_finite() && config.lora_alpha > 0.0) || config.target_modules.is_empty()) {
            return Err(LoraError::File(format!(
                "r = {}, lora_alpha = {} and {} target modules are not a usable adapter",
                config.r,
                config.lora_alpha,
                config.target_modules.len()
            )));
        }
        if !lora && !config.target_modules.is_empty() {
            return Err(LoraError::File(format!("trainables \"{}\" has no LoRA layers, yet target_modules lists some", config.trainables.name())));
        }
        let adapter = Self { config, weights };
        let tensors = adapter.tensors()?;
        for layer in &adapter.config.target_modules {
            let pair = pair_of(&tensors, layer).ok_or_else(|| {
                LoraError::File(format!("{WEIGHTS_FILE} has no lora_A/lora_B pair for \"{layer}\""))
            })?;
            let (a, b) = (&tensors[&format!("{pair}.lora_A.weight")], &tensors[&format!("{pair}.lora_B.weight")]);
            if a.0.len() != 5 || b.0.len() != 5 || a.0[0] != adapter.config.r || b.0[1] != adapter.config.r {
                return Err(LoraError::File(format!(
                    "\"{layer}\": lora_A {:?} and lora_B {:?} do not have rank r = {}",
                    a.0, b.0, adapter.config.r
                )));
            }
        }
        let pairs = tensors.keys().filter(|n| is_adapter_tensor(n)).count();
        if pairs != 2 * adapter.config.target_modules.len() {
            return Err(LoraError::File(format!(
                "{WEIGHTS_FILE} holds {pairs} LoRA tensors for {} listed layers",
                adapter.config.target_modules.len()
            )));
        }
        if let Some(stray) = tensors.keys().find(|n| !adapter.config.trainables.learns(n)) {
            return Err(LoraError::File(format!("{WEIGHTS_FILE} holds \"{stray}\", which trainables \"{}\" does not train", adapter.config.trainables.name())));
        }
        Ok(adapter)
    }

    /// The plan that rebuilds the layers this adapter was trained on.
    pub fn plan(&self) -> AdapterPlan {
        let spec = AdapterSpec { rank: self.config.r, alpha: self.config.lora_alpha };
        self.config.target_modules.iter().map(|name| (name.clone(), spec)).collect()
    }

    /// Refuses a base other than the one the adapter was trained on.
    pub fn check_base(&self, id: &str, weights_sha256: &str) -> Result<(), LoraError> {
        if self.config.base_model_sha256 == weights_sha256 {
            return Ok(());
        }
        Err(LoraError::Mismatch(format!(
            "this adapter was trained on \"{}\" (weights sha256 {}…), not on \"{id}\" (sha256 {}…): load it onto the model it was made for",
            self.config.base_model_name_or_path,
            short(&self.config.base_model_sha256),
            short(weights_sha256)
        )))
    }

    /// The base's weights with this adapter's tensors added (LoRA pairs) or
    /// put in place (normalisation affines and biases it trained): the
    /// complete weights of the adapted network.
    pub fn combined_with(&self, base_weights: &[u8]) -> Result<Vec<u8>, LoraError> {
        let mut tensors = read_f32_tensors(base_weights).map_err(LoraError::Mismatch)?;
        for (name, (shape, values)) in self.tensors()? {
            if let Some((base_shape, _)) = tensors.get(&name) {
                if *base_shape != shape {
                    return Err(LoraError::Mismatch(format!("{name} is {shape:?} in the adapter but {base_shape:?} in the base")));
                }
            } else if !is_adapter_tensor(&name) {
                return Err(LoraError::Mismatch(format!("the base has no tensor {name}")));
            }
            tensors.insert(name, (shape, values));
        }
        let all: Vec<(String, Vec<usize>, Vec<f32>)> = tensors.into_iter().map(|(n, (s, v))| (n, s, v)).collect();
        f32_safetensors(&all).map_err(|e| LoraError::Mismatch(e.to_string()))
    }

    pub fn config_json(&self) -> String {
        serde_json::to_string_pretty(&self.config).expect("plain data") + "\n"
    }

    /// name → (shape, values), every value checked finite.
    fn tensors(&self) -> Result<BTreeMap<String, (Vec<usize>, Vec<f32>)>, LoraError> {
        read_f32_tensors(&self.weights).map_err(LoraError::File)
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Where a layer's A/B pair lives: beside the layer, or beside its core.
fn pair_of<V>(tensors: &BTreeMap<String, V>, layer: &str) -> Option<String> {
    [layer.to_string(), format!("{layer}.core")]
        .into_iter()
        .find(|p| tensors.contains_key(&format!("{p}.lora_A.weight")) && tensors.contains_key(&format!("{p}.lora_B.weight")))
}

/// The tensors of a network's weights (`weights`) that learn under
/// `trainables`, as an adapter file's safetensors.
pub fn trained_tensors(weights: &[u8], trainables: Trainables) -> Result<Vec<u8>, LoraError> {
    let tensors = read_f32_tensors(weights).map_err(LoraError::Mismatch)?;
    let kept: Vec<(String, Vec<usize>, Vec<f32>)> =
        tensors.into_iter().filter(|(n, _)| trainables.learns(n)).map(|(n, (s, v))| (n, s, v)).collect();
    f32_safetensors(&kept).map_err(|e| LoraError::Mismatch(e.to_string()))
}

/// Every f32 tensor of a safetensors file: name → (shape, values).
pub fn read_f32_tensors(bytes: &[u8]) -> Result<BTreeMap<String, (Vec<usize>, Vec<f32>)>, String> {
    let file = safetensors::SafeTensors::deserialize(bytes).map_err(|e| format!("not a valid safetensors file: {e}"))?;
    let mut out = BTreeMap::new();
    for (name, view) in file.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(format!("tensor {name} is {:?}, not f32", view.dtype()));
        }
        let values: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(format!("tensor {name} contains NaN or infinite values"));
        }
        out.insert(name, (view.shape().to_vec(), values));
    }
    Ok(out)
}

/// Folds every adapter in an adapted network's weights (`weights`, with
/// `lora_A`/`lora_B` tensors) into its kernel, and drops the adapter
/// tensors: the weights of a plain package that computes the same.
pub fn merge_weights(weights: &[u8], plan: &AdapterPlan, device: &Device) -> Result<Vec<u8>, LoraError> {
    let mut tensors = read_f32_tensors(weights).map_err(LoraError::Mismatch)?;
    for (layer, spec) in plan {
        let pair = pair_of(&tensors, layer)
            .ok_or_else(|| LoraError::Mismatch(format!("\"{layer}\" has no adapter to merge")))?;
        let take = |t: &BTreeMap<String, (Vec<usize>, Vec<f32>)>, name: &str| -> Result<Tensor<5>, LoraError> {
            let (shape, values) = t.get(name).ok_or_else(|| LoraError::Mismatch(format!("no tensor {name}")))?;
            let shape: [usize; 5] = shape.clone().try_into().map_err(|_| LoraError::Mismatch(format!("{name} is not a 3D kernel")))?;
            Ok(Tensor::<5>::from_data(TensorData::new(values.clone(), shape), device))
        };
        let weight_name = format!("{pair}.weight");
        let merged = merged_kernel(
            take(&tensors, &weight_name)?,
            take(&tensors, &format!("{pair}.lora_A.weight"))?,
            take(&tensors, &format!("{pair}.lora_B.weight"))?,
            spec.scale(),
        );
        let values: Vec<f32> = merged.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| LoraError::Mismatch(format!("{e:?}")))?;
        tensors.get_mut(&weight_name).expect("read above").1 = values;
    }
    let plain: Vec<(String, Vec<usize>, Vec<f32>)> =
        tensors.into_iter().filter(|(name, _)| !is_adapter_tensor(name)).map(|(n, (s, v))| (n, s, v)).collect();
    f32_safetensors(&plain).map_err(|e| LoraError::Mismatch(e.to_string()))
}

/// The base model's network with `adapter` beside its layers, after checking
/// that `base_weights` (the package's `weights.safetensors`) are the ones the
/// adapter was trained on. For training further, or exporting again.
pub fn adapted_network(manifest: &Manifest, base_weights: &[u8], adapter: &Adapter, device: &Device) -> Result<Network, LoraError> {
    adapter.check_base(&manifest.id, &sha256_hex(base_weights))?;
    let mut network = Network::build_adapted(manifest, &adapter.plan(), device).map_err(|e| LoraError::Mismatch(e.to_string()))?;
    network.load_safetensors(adapter.combined_with(base_weights)?).map_err(|e| LoraError::Mismatch(e.to_string()))?;
    Ok(network)
}

/// The base with the adapter folded into its kernels: a plain network (no
/// extra convolutions at inference) that computes what the adapted one does.
pub fn merged_network(manifest: &Manifest, base_weights: &[u8], adapter: &Adapter, device: &Device) -> Result<Network, LoraError> {
    let adapted = adapted_network(manifest, base_weights, adapter, device)?;
    let weights = adapted.to_safetensors().map_err(|e| LoraError::Mismatch(e.to_string()))?;
    let merged = merge_weights(&weights, &adapter.plan(), device)?;
    let mut network = Network::build(manifest, device).map_err(|e| LoraError::Mismatch(e.to_string()))?;
    network.load_safetensors(merged).map_err(|e| LoraError::Mismatch(e.to_string()))?;
    Ok(network)
}

/// The base model with `adapter` folded in, under an adapted manifest
/// (`<base>-lora`): what `--adapter` runs, `bedside lora merge` writes and
/// the page's "Load an adapter" adds to the model list.
pub fn merged_model(base: &Manifest, base_weights: &[u8], adapter: &Adapter, device: &Device) -> Result<crate::model::Model, LoraError> {
    let network = merged_network(base, base_weights, adapter, device)?;
    let manifest = adapted_manifest(
        base,
        format!("{}-lora", base.id),
        format!("{} + LoRA adapter (r = {}, merged)", base.name, adapter.config.r),
        serde_json::json!({ "merged_lora_adapter": adapter.config }),
    );
    Ok(crate::model::Model { manifest, network, members: Vec::new(), weights_sha256: None })
}

/// The manifest of a model adapted from `base`: its own id, name and
/// training record, and none of what belongs to the base alone: its
/// measured figures, its ensemble members, and the contrast bound of its
/// quality signal. That bound warns that a student which learnt from
/// T1-weighted heads meets a T2-weighted scan; an adapted model learnt the
/// site's own contrast, so on those scans the warning would be wrong.
pub fn adapted_manifest(base: &Manifest, id: String, name: String, training: serde_json::Value) -> Manifest {
    let mut manifest = base.clone();
    manifest.id = id;
    manifest.name = name;
    manifest.training = Some(training);
    manifest.evaluation.clear();
    manifest.ensemble.clear();
    if let Some(q) = manifest.quality.as_mut() {
        q.max_core_skewness = None;
    }
    manifest
}
