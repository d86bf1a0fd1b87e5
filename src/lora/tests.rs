//! The adapter's contract: zero at the start, mergeable, trainable alone,
//! storable, and bound to the base it was trained on.

use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};

use super::adapter::{merge_weights, read_f32_tensors, sha256_hex, trained_tensors, Adapter, AdapterConfig};
use super::*;
use crate::model::manifest::Compression;
use crate::model::package::f32_safetensors;
use crate::model::unet3d::Unet3dConfig;
use crate::model::{Manifest, Network};

/// A small student-like unet3d (2 levels), optionally with one factorised layer.
fn manifest(compressed: bool) -> Manifest {
    let mut m: Manifest = serde_json::from_str(include_str!("../../models/student-s/model.json")).unwrap();
    m.hyperparameters = serde_json::to_value(Unet3dConfig::new().with_base_filters(4).with_depth(2)).unwrap();
    m.training = None;
    if compressed {
        m.compression = Some(Compression {
            source_id: "test".into(),
            source_sha256: String::new(),
            rule: serde_json::json!({}),
            layers: [("encoder.1.unit2.conv".to_string(), [5, 6])].into_iter().collect(),
            report: Vec::new(),
        });
    }
    m
}

fn config(targets: &str, rank: usize) -> LoraConfig {
    LoraConfig { rank, alpha: 2.0 * rank as f32, targets: targets.into() }
}

/// A base network with seeded weights, and its weights file.
fn base(m: &Manifest, device: &Device) -> (Network, Vec<u8>) {
    device.seed(11);
    let mut net = Network::build(m, device).unwrap();
    // Materialise the lazy initialisation, then round-trip through a file.
    let bytes = net.to_safetensors().unwrap();
    net.load_safetensors(bytes.clone()).unwrap();
    (net, bytes)
}

fn adapted(m: &Manifest, plan: &AdapterPlan, weights: &[u8], device: &Device) -> Network {
    let mut net = Network::build_adapted(m, plan, device).unwrap();
    net.load_base_safetensors(weights.to_vec()).unwrap();
    net
}

fn max_gap(a: Tensor<5>, b: Tensor<5>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

fn input(device: &Device) -> Tensor<5> {
    Tensor::<5>::random([1, 1, 16, 16, 16], Distribution::Normal(0.0, 1.0), device)
}

/// Every adapter tensor of `net` replaced by seeded random values (a trained adapter).
fn with_random_adapters(mut net: Network, device: &Device) -> Network {
    let tensors = read_f32_tensors(&net.to_safetensors().unwrap()).unwrap();
    let mut seed = 7u32;
    let random: Vec<(String, Vec<usize>, Vec<f32>)> = tensors
        .into_iter()
        .map(|(name, (shape, values))| {
            if !is_adapter_tensor(&name) {
                return (name, shape, values);
            }
            let v = values
                .iter()
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                })
                .collect();
            (name, shape, v)
        })
        .collect();
    net.load_safetensors(f32_safetensors(&random).unwrap()).unwrap();
    let _ = device;
    net
}

#[test]
fn targets_select_groups_patterns_and_refuse_what_does_not_fit() {
    let layers = Network::conv_layers(&manifest(false)).unwrap();
    let names = |plan: AdapterPlan| plan.into_keys().collect::<Vec<_>>();
    let all = names(config("all", 2).plan(&layers).unwrap());
    assert_eq!(all.len(), layers.len());
    let bottleneck = names(config("bottleneck", 2).plan(&layers).unwrap());
    // The stride-2 convolution into the coarsest level reads the level above: encoder.
    assert_eq!(bottleneck, ["encoder.2.unit1.conv", "encoder.2.unit2.conv"]);
    let encoder = names(config("encoder", 2).plan(&layers).unwrap());
    assert!(encoder.iter().all(|n| n.starts_with("encoder.0") || n.starts_with("encoder.1") || n == "encoder.2.down.conv"), "{encoder:?}");
    let decoder = names(config("decoder", 2).plan(&layers).unwrap());
    assert!(decoder.contains(&"head".to_string()) && decoder.iter().all(|n| n == "head" || n.starts_with("decoder.")), "{decoder:?}");
    assert_eq!(encoder.len() + bottleneck.len() + decoder.len(), all.len());
    assert_eq!(names(config("decoder.*.fuse.conv, head", 2).plan(&layers).unwrap()), ["decoder.0.fuse.conv", "decoder.1.fuse.conv", "head"]);
    // Refusals, each with a message that says what to do.
    let err = config("context*", 2).plan(&layers).unwrap_err().to_string();
    assert!(err.contains("names no convolution"), "{err}");
    let err = LoraConfig { rank: 0, alpha: 1.0, targets: "all".into() }.plan(&layers).unwrap_err().to_string();
    assert!(err.contains("at least 1"), "{err}");
    // The head maps 4 channels to 2 classes: rank 3 is above its full rank;
    // within "all" it is allowed (other layers use it), but not beyond the widest.
    let err = config("head", 3).plan(&layers).unwrap_err().to_string();
    assert!(err.contains("the largest is 2"), "{err}");
    assert!(config("all", 16).plan(&layers).is_ok());
    assert!(config("all", 17).plan(&layers).unwrap_err().to_string().contains("the largest is 16"));
    let err = LoraConfig { alpha: f32::NAN, ..config("all", 2) }.plan(&layers).unwrap_err().to_string();
    assert!(err.contains("α"), "{err}");
}

#[test]
fn adapter_params_count_a_and_b() {
    let layers = Network::conv_layers(&manifest(true)).unwrap();
    let plan = config("encoder.0.unit1.conv, encoder.1.unit2.conv", 2).plan(&layers).unwrap();
    // 1 → 4 channels with a 3³ kernel: A 2·1·27, B 4·2. The factorised
    // layer's core is 6 → 5: A 2·6·27, B 5·2.
    assert_eq!(adapter_params(&layers, &plan), (2 * 27 + 8) + (2 * 6 * 27 + 10));
    let device = Device::flex();
    let net = Network::build_adapted(&manifest(true), &plan, &device).unwrap();
    let plain = Network::build(&manifest(true), &device).unwrap();
    assert_eq!(net.num_params() - plain.num_params(), adapter_params(&layers, &plan));
}

#[test]
fn a_fresh_adapter_leaves_the_output_unchanged() {
    let device = Device::flex();
    for compressed in [false, true] {
        let m = manifest(compressed);
        let (plain, weights) = base(&m, &device);
        let plan = config("all", 4).plan(&Network::conv_layers(&m).unwrap()).unwrap();
        let net = adapted(&m, &plan, &weights, &device);
        let x = input(&device);
        let gap = max_gap(plain.forward(x.clone()), net.forward(x));
        assert!(gap < 1e-6, "compressed {compressed}: {gap}");
    }
}

#[test]
fn merged_weights_compute_what_the_adapted_network_does() {
    let device = Device::flex();
    for compressed in [false, true] {
        let m = manifest(compressed);
        let (plain, weights) = base(&m, &device);
        let plan = config("all", 3).plan(&Network::conv_layers(&m).unwrap()).unwrap();
        let net = with_random_adapters(adapted(&m, &plan, &weights, &device), &device);
        let x = input(&device);
        let adapted_out = net.forward(x.clone());
        // The adapter really changes the output …
        assert!(max_gap(plain.forward(x.clone()), adapted_out.clone()) > 1e-2);
        // … and the merged plain network computes the same.
        let merged_bytes = merge_weights(&net.to_safetensors().unwrap(), &plan, &device).unwrap();
        let mut merged = Network::build(&m, &device).unwrap();
        merged.load_safetensors(merged_bytes).unwrap();
        let gap = max_gap(adapted_out, merged.forward(x));
        assert!(gap < 1e-4, "compressed {compressed}: {gap}");
    }
}

#[test]
fn a_training_step_changes_the_adapters_only() {
    let plain_device = Device::flex();
    let device = plain_device.clone().autodiff();
    let m = manifest(true);
    let (_, weights) = base(&m, &device);
    let plan = config("all", 2).plan(&Network::conv_layers(&m).unwrap()).unwrap();
    let net = freeze_all_but(with_random_adapters(adapted(&m, &plan, &weights, &device), &device), Trainables::Adapters);
    let before = read_f32_tensors(&net.to_safetensors().unwrap()).unwrap();
    let mut optim = AdamConfig::new().init();
    let loss = net.forward(input(&device)).powf_scalar(2.0).mean();
    let grads = GradientsParams::from_grads(loss.backward(), &net);
    assert_eq!(grads.len(), 2 * plan.len(), "gradients for the adapters' A and B only");
    let net = optim.step(1e-2, net, grads);
    let after = read_f32_tensors(&net.to_safetensors().unwrap()).unwrap();
    let mut changed = Vec::new();
    for (name, (_, values)) in &before {
        if after[name].1 != *values {
            changed.push(name.clone());
        }
    }
    assert!(!changed.is_empty());
    let frozen_changed: Vec<_> = changed.iter().filter(|n| !is_adapter_tensor(n)).collect();
    assert!(frozen_changed.is_empty(), "base tensors changed: {frozen_changed:?}");
    assert!(changed.iter().any(|n| n.ends_with("lora_A.weight")) && changed.iter().any(|n| n.ends_with("lora_B.weight")));
}

#[test]
fn the_files_round_trip_and_refuse_another_base() {
    let device = Device::flex();
    let m = manifest(true);
    let (_, weights) = base(&m, &device);
    let layers = Network::conv_layers(&m).unwrap();
    let lora = config("bottleneck,head", 2);
    let plan = lora.plan(&layers).unwrap();
    let net = with_random_adapters(adapted(&m, &plan, &weights, &device), &device);
    let adapter = Adapter {
        config: AdapterConfig {
            peft_type: "LORA".into(),
            r: 2,
            lora_alpha: 4.0,
            target_modules: plan.keys().cloned().collect(),
            trainables: Trainables::Adapters,
            targets: lora.targets.clone(),
            base_model_name_or_path: m.id.clone(),
            base_model_sha256: sha256_hex(&weights),
            bedside_version: env!("CARGO_PKG_VERSION").into(),
            training: None,
        },
        weights: trained_tensors(&net.to_safetensors().unwrap(), Trainables::Adapters).unwrap(),
    };
    let names: Vec<String> = read_f32_tensors(&adapter.weights).unwrap().into_keys().collect();
    assert!(names.contains(&"head.lora_A.weight".to_string()) && names.contains(&"head.lora_B.weight".to_string()), "{names:?}");
    assert_eq!(names.len(), 2 * plan.len());
    let a = &read_f32_tensors(&adapter.weights).unwrap()["encoder.2.unit1.conv.lora_A.weight"];
    assert_eq!(a.0, [2, 16, 3, 3, 3]);
    // Round trip: the same config, the same plan, the same output.
    let back = Adapter::from_files(&adapter.config_json(), adapter.weights.clone()).unwrap();
    assert_eq!(back.config, adapter.config);
    assert_eq!(back.plan(), plan);
    let again = super::adapter::adapted_network(&m, &weights, &back, &device).unwrap();
    let x = input(&device);
    assert!(max_gap(net.forward(x.clone()), again.forward(x)) < 1e-6);
    // Its own base is accepted; another is refused, by hash.
    back.check_base(&m.id, &sha256_hex(&weights)).unwrap();
    let mut other = weights.clone();
    let n = other.len();
    other[n - 1] ^= 1;
    let err = back.check_base("student-m", &sha256_hex(&other)).unwrap_err();
    assert!(matches!(err, LoraError::Mismatch(_)));
    assert!(err.to_string().contains("not on \"student-m\""), "{err}");
    // Files that are not a usable adapter are refused with a reason.
    let bad_type = adapter.config_json().replace("\"LORA\"", "\"IA3\"");
    assert!(Adapter::from_files(&bad_type, adapter.weights.clone()).unwrap_err().to_string().contains("LoRA adapters only"));
    let wrong_rank = adapter.config_json().replace("\"r\": 2", "\"r\": 3");
    assert!(Adapter::from_files(&wrong_rank, adapter.weights.clone()).unwrap_err().to_string().contains("rank r = 3"));
    assert!(Adapter::from_files(&adapter.config_json(), b"not safetensors".to_vec()).is_err());
}

/// The toy teacher (a random unet3d) as a base, its package, and the toy
/// head with its bright ellipsoid as the "brain" mask.
struct Toy {
    base: crate::model::Model,
    json: String,
    weights: Vec<u8>,
    head: crate::volume::Volume,
    mask: Vec<u8>,
}

fn toy(device: &Device) -> Toy {
    use crate::distill::fixtures::{toy_head, toy_teacher};
    let base = toy_teacher(device);
    let json = serde_json::to_string(&base.manifest).unwrap();
    let weights = base.network.to_safetensors().unwrap();
    let head = toy_head();
    let mask_volume = crate::volume::Volume::from_array(head.dims, head.spacing, head.affine, head.data.iter().map(|&v| (v > 0.5) as u8 as f32).collect()).unwrap();
    let mask = super::train::mask_labels(&head, &mask_volume).unwrap();
    Toy { base, json, weights, head, mask }
}

/// The toy teacher (a random unet3d) adapted to the toy head's mask: the
/// loss falls, the Dice with the mask rises, the base weights stay as they
/// were, and the exported adapter reproduces the trained model.
#[test]
fn an_adaptation_learns_the_mask_and_touches_only_the_adapters() {
    use super::train::{mask_labels, Adaptation, TrainOptions};
    let device = Device::flex();
    // Measured: Dice 0.8311 -> 0.9818.
    let Toy { base, json, weights, head, mask } = toy(&device);
    let lora = LoraConfig { rank: 2, alpha: 4.0, targets: "all".into() };
    let steps = 80;
    let options = TrainOptions { steps, learning_rate: 1e-2, seed: 1, ..TrainOptions::default() };
    let mut run = pollster::block_on(Adaptation::new(&json, weights.clone(), lora, &[(head.clone(), mask.clone())], None, options, &device)).unwrap();
    assert_eq!(run.trainable, adapter_params(&Network::conv_layers(&base.manifest).unwrap(), &run.plan));
    assert!(run.trainable * 5 < run.total, "{} of {}", run.trainable, run.total);
    let before = pollster::block_on(run.validation_dice(&head, &mask, &device)).unwrap();
    let records = pollster::block_on(run.steps(steps)).unwrap();
    let after = pollster::block_on(run.validation_dice(&head, &mask, &device)).unwrap();
    let (first, last) = (records[..5].iter().map(|r| r.total).sum::<f64>(), records[steps - 5..].iter().map(|r| r.total).sum::<f64>());
    eprintln!("Dice {before:.4} -> {after:.4}; loss {first:.4} -> {last:.4} (sum of 5 steps)");
    assert!(last < first, "the loss falls: {first} -> {last}");
    assert!(after > before + 0.05, "the Dice with the mask rises: {before:.4} -> {after:.4}");
    // The base weights in the adapted network are the base's, bit for bit.
    let trained = read_f32_tensors(&run.model().network.to_safetensors().unwrap()).unwrap();
    let original = read_f32_tensors(&weights).unwrap();
    for (name, (_, values)) in &original {
        assert_eq!(&trained[name].1, values, "{name} changed");
    }
    // The adapter file, put back on the base, gives the trained model.
    let adapter = pollster::block_on(run.adapter()).unwrap();
    let back = Adapter::from_files(&adapter.config_json(), adapter.weights.clone()).unwrap();
    let restored = super::adapter::adapted_network(&base.manifest, &weights, &back, &device).unwrap();
    let x = Tensor::<5>::random([1, 1, 32, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    assert!(max_gap(run.model().network.forward(x.clone()), restored.forward(x)) < 1e-5);
    assert!(adapter.weights.len() * 5 < weights.len(), "{} bytes against the base's {}", adapter.weights.len(), weights.len());
    // A mask on another grid is refused with a message.
    let small = crate::volume::Volume::from_array([32, 32, 32], head.spacing, head.affine, vec![0.0; 32 * 32 * 32]).unwrap();
    assert!(mask_labels(&head, &small).unwrap_err().to_string().contains("differs from the image's"));
}

/// The comparisons train what they name: biases (and norms) only, LoRA with
/// them, or everything; the first two save as adapter files that rebuild the
/// trained model, a full fine-tuning as a package.
#[test]
fn each_choice_of_trainables_trains_what_it_names_and_saves_it() {
    use super::train::{Adaptation, TrainOptions};
    let device = Device::flex();
    let Toy { base, json, weights, head, mask } = toy(&device);
    let original = read_f32_tensors(&weights).unwrap();
    let x = Tensor::<5>::random([1, 1, 32, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    for trainables in [Trainables::NormsBiases, Trainables::AdaptersNormsBiases, Trainables::Full] {
        let lora = LoraConfig { rank: 2, alpha: 4.0, targets: "all".into() };
        let options = TrainOptions { steps: 3, learning_rate: 1e-2, seed: 1, trainables, kd: 0.0 };
        let mut run = pollster::block_on(Adaptation::new(&json, weights.clone(), lora, &[(head.clone(), mask.clone())], None, options, &device)).unwrap();
        pollster::block_on(run.steps(3)).unwrap();
        let trained = read_f32_tensors(&run.model().network.to_safetensors().unwrap()).unwrap();
        let changed: Vec<&String> = original.keys().filter(|n| trained[*n].1 != original[*n].1).collect();
        assert!(!changed.is_empty(), "{trainables:?}");
        assert!(changed.iter().all(|n| trainables.learns(n)), "{trainables:?} changed {changed:?}");
        let expected = original.keys().filter(|n| trainables.learns(n)).count();
        assert_eq!(changed.len(), expected, "{trainables:?}: every trainable tensor moved");
        let learnt: usize = original.iter().filter(|(n, _)| trainables.learns(n)).map(|(_, (s, _))| s.iter().product::<usize>()).sum();
        let lora_params = if trainables.adapters() { adapter_params(&Network::conv_layers(&base.manifest).unwrap(), &run.plan) } else { 0 };
        assert_eq!(run.trainable, learnt + lora_params, "{trainables:?}");
        let out = run.model().network.forward(x.clone());
        let (manifest, package) = pollster::block_on(run.package()).unwrap();
        let mut plain = Network::build(&manifest, &device).unwrap();
        plain.load_safetensors(package).unwrap();
        assert!(max_gap(out.clone(), plain.forward(x.clone())) < 1e-4, "{trainables:?}: the package computes the same");
        if trainables == Trainables::Full {
            assert!(pollster::block_on(run.adapter()).is_err());
            continue;
        }
        let adapter = pollster::block_on(run.adapter()).unwrap();
        let back = Adapter::from_files(&adapter.config_json(), adapter.weights.clone()).unwrap();
        assert_eq!(back.config.trainables, trainables);
        let rebuilt = super::adapter::adapted_network(&base.manifest, &weights, &back, &device).unwrap();
        assert!(max_gap(out, rebuilt.forward(x.clone())) < 1e-6, "{trainables:?}: the adapter file rebuilds it");
    }
}

/// A teacher fed another axis order (HD-BET's file order, against the
/// students' RAS) gives its logits on the model's grid: on a head stored
/// left-to-right (LAS), voxel x of the model's RAS grid is the teacher's
/// voxel n − 1 − x; the padding beyond the head takes the corner's value.
#[test]
fn a_teacher_with_another_axis_order_lands_on_the_models_grid() {
    use crate::distill::teacher::{run_teacher, teacher_logits_on};
    use crate::inference::preprocess::prepare;
    let device = Device::flex();
    let Toy { base: teacher, mut head, .. } = toy(&device);
    head.affine[0][0] = -head.affine[0][0];
    let mut student = teacher.manifest.clone();
    student.preprocessing.axis_order = "ras".into();
    let target = prepare(&head, &student.preprocessing).unwrap();
    let mapped = pollster::block_on(teacher_logits_on(&teacher, &head, &target, &device)).unwrap();
    let own = prepare(&head, &teacher.manifest.preprocessing).unwrap();
    let logits = run_teacher(&teacher.network, &own, &device).logits;
    assert_eq!(mapped.dims, target.padded_dims);
    let [n, _, _] = own.resampled_dims;
    let (pd, td) = (own.padded_dims, target.padded_dims);
    let at = |d: [usize; 3], c: usize, x: usize, y: usize, z: usize| c * d.iter().product::<usize>() + x + d[0] * (y + d[1] * z);
    for c in 0..logits.channels {
        for (x, y, z) in [(0, 0, 0), (3, 5, 7), (n - 1, 2, 9), (11, 13, 1)] {
            assert_eq!(mapped.data[at(td, c, x, y, z)], logits.data[at(pd, c, n - 1 - x, y, z)], "channel {c} at {x},{y},{z}");
        }
    }
    if td[0] > n {
        assert_eq!(mapped.data[at(td, 0, td[0] - 1, 0, 0)], mapped.data[at(td, 0, 0, 0, 0)], "the padding is the corner's value");
    }
}

/// With a teacher, the KD term trains too, and a volume without a mask
/// joins with the teacher's labels; a teacher with a KD weight of 0 is
/// refused, and without a teacher the term is off.
#[test]
fn an_adaptation_with_a_teacher_learns_from_its_outputs_too() {
    use super::train::{Adaptation, Teaching, TrainOptions};
    let device = Device::flex();
    let Toy { base, json, weights, head, mask } = toy(&device);
    let lora = LoraConfig { rank: 1, alpha: 2.0, targets: "decoder".into() };
    let unlabelled = [head.clone()];
    let teaching = || Some(Teaching { teacher: &base, unlabelled: &unlabelled });
    let options = TrainOptions { steps: 2, learning_rate: 1e-2, seed: 1, kd: 1.0, ..TrainOptions::default() };
    let mut run = pollster::block_on(Adaptation::new(&json, weights.clone(), lora.clone(), &[(head.clone(), mask.clone())], teaching(), options.clone(), &device)).unwrap();
    assert_eq!(run.cfg.volumes.len(), 2);
    assert!(run.cfg.volumes[1].mask.is_none() && run.cfg.volumes[1].image.starts_with("unlabelled"), "{:?}", run.cfg.volumes);
    let records = pollster::block_on(run.steps(2)).unwrap();
    assert!(records.iter().all(|r| r.kd > 0.0 && r.kd.is_finite()), "{:?}", records.iter().map(|r| r.kd).collect::<Vec<_>>());
    let zero = TrainOptions { kd: 0.0, ..options.clone() };
    let err = pollster::block_on(Adaptation::new(&json, weights.clone(), lora.clone(), &[(head.clone(), mask.clone())], teaching(), zero, &device)).err().unwrap();
    assert!(err.to_string().contains("KD weight must be above 0"), "{err}");
    let mut alone = pollster::block_on(Adaptation::new(&json, weights, lora, &[(head, mask)], None, options, &device)).unwrap();
    assert!(pollster::block_on(alone.steps(1)).unwrap().iter().all(|r| r.kd == 0.0), "no teacher: no KD term");
}
