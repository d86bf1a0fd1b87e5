//! Tucker-2 and EVBMF against independent references: tensorly's
//! `partial_tucker` (HOOI, SVD init) and an EVBMF computed with numpy and
//! scipy (`tests/reference/tucker_tensorly.py`), on random kernels and on real
//! HD-BET kernels. HOOI goes through the CLI (`bedside tucker --json`), as a
//! user would run it.
#![cfg(not(target_arch = "wasm32"))] // runs Python

mod common;

use bedside::tucker::evbmf::evbmf;
use bedside::tucker::hooi::channel_spectra;
use common::*;
use serde_json::Value;

fn hdbet_kernel(name: &str) -> String {
    format!("{}:{name}", hdbet_package().join("weights.safetensors").display())
}

fn ours(kernel: &str, ranks: &str) -> Value {
    let (ok, stdout, stderr) = run(&["tucker", kernel, "--ranks", ranks, "--json"]);
    assert!(ok, "bedside tucker {kernel} --ranks {ranks}: {stderr}");
    serde_json::from_str(&stdout).expect("JSON")
}

fn tensorly(pairs: &[(String, String)]) -> Vec<Value> {
    let mut args = vec![reference_script("tucker_tensorly.py"), "hooi".into()];
    for (kernel, ranks) in pairs {
        args.push(kernel.clone());
        args.push(ranks.clone());
    }
    serde_json::from_str(&run_python(&args)).expect("JSON from tensorly")
}

fn compare(pairs: Vec<(String, String)>) {
    let references = tensorly(&pairs);
    for ((kernel, ranks), reference) in pairs.iter().zip(&references) {
        let ours = ours(kernel, ranks);
        let (a, b) = (ours["rel_error"].as_f64().unwrap(), reference["rel_error"].as_f64().unwrap());
        assert!(a.is_finite() && (a - b).abs() <= 0.01 * b.max(1e-6), "{kernel} at {ranks}: ours {a}, tensorly {b}");
        let (sa, sb) = (ours["sweeps"].as_i64().unwrap(), reference["sweeps"].as_i64().unwrap());
        assert!((sa - sb).abs() <= 1, "{kernel} at {ranks}: {sa} sweeps, tensorly {sb}");
        eprintln!("{kernel} [{ranks}]: rel_error {a:.6} (tensorly {b:.6}), {sa} sweeps ({sb})");
    }
}

#[test]
fn hooi_error_matches_tensorly_on_random_kernels() {
    let dir = scratch_dir("tucker_random");
    let names = run_python(&[reference_script("tucker_tensorly.py"), "random".into(), dir.display().to_string()]);
    let path = |name: &str| dir.join(format!("{name}.npy")).display().to_string();
    let names: Vec<&str> = names.lines().collect();
    assert_eq!(names, ["conv3_16x8", "conv3_32x32", "pointwise_24x12", "conv2_20x10"]);
    let mut pairs = Vec::new();
    for ranks in ["16,8", "8,4", "4,2", "1,1"] {
        pairs.push((path("conv3_16x8"), ranks.to_string()));
    }
    for ranks in ["24,24", "16,16", "8,8"] {
        pairs.push((path("conv3_32x32"), ranks.to_string()));
    }
    // A rank above the other mode's size (18 > 12·1) takes the full SVD.
    for ranks in ["18,4", "6,6"] {
        pairs.push((path("pointwise_24x12"), ranks.to_string()));
    }
    for ranks in ["10,5", "5,3"] {
        pairs.push((path("conv2_20x10"), ranks.to_string()));
    }
    compare(pairs);
}

#[test]
fn hooi_error_matches_tensorly_on_hdbet_kernels() {
    let mut pairs = Vec::new();
    for (layer, rank_sets) in [
        ("init_conv.weight", &["6,1", "11,1"][..]),
        ("context3.conv1.weight", &["21,21", "42,42", "63,63"][..]),
        ("down2.downsample.weight", &["21,11", "42,21"][..]),
        ("up3.upsample_conv.weight", &["11,21", "21,42"][..]),
        ("loc2.conv2.weight", &["21,42", "42,84"][..]),
    ] {
        for ranks in rank_sets {
            pairs.push((hdbet_kernel(layer), ranks.to_string()));
        }
    }
    compare(pairs);
}

#[test]
fn evbmf_matches_the_reference_on_fixtures() {
    // (L, M, singular values): a clear gap, one spike in a wide matrix, no gap
    // at all (α = 1), a spectrum at the scale of conv weights, and a tall matrix.
    let fixtures: [(usize, usize, Vec<f64>); 5] = [
        (8, 20, vec![10.0, 5.0, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5]),
        (5, 50, vec![20.0, 1.1, 1.05, 1.0, 0.95]),
        (10, 10, (0..10).map(|h| 0.5f64.powi(h)).collect()),
        (8, 20, [1.0, 0.5, 0.3, 0.09, 0.08, 0.07, 0.06, 0.05].iter().map(|v| v * 0.01).collect()),
        (20, 8, vec![10.0, 5.0, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5]),
    ];
    for (l, m, s) in fixtures {
        let values = s.iter().map(|v| format!("{v:e}")).collect::<Vec<_>>().join(",");
        let reference: Value = serde_json::from_str(&run_python(&[
            reference_script("tucker_tensorly.py"),
            "evbmf-values".into(),
            l.to_string(),
            m.to_string(),
            values,
        ]))
        .unwrap();
        let e = evbmf(&s, l, m).expect("an estimate");
        let (rank, sigma2) = (reference["rank"].as_u64().unwrap() as usize, reference["noise_variance"].as_f64().unwrap());
        assert_eq!(e.rank, rank, "{l}x{m} {s:?}: {e:?} vs σ² {sigma2}");
        assert!((e.noise_variance / sigma2 - 1.0).abs() < 1e-3, "{l}x{m}: σ² {} vs {sigma2}", e.noise_variance);
    }
}

#[test]
fn evbmf_ranks_match_the_reference_on_hdbet_kernels() {
    let layers = ["init_conv.weight", "context2.conv1.weight", "down3.downsample.weight", "up2.upsample_conv.weight", "loc3.conv2.weight"];
    let mut args = vec![reference_script("tucker_tensorly.py"), "evbmf".into()];
    args.extend(layers.iter().map(|l| hdbet_kernel(l)));
    let references: Vec<Value> = serde_json::from_str(&run_python(&args)).unwrap();
    let weights = std::fs::read(hdbet_package().join("weights.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&weights).unwrap();
    for (layer, reference) in layers.iter().zip(&references) {
        let view = tensors.tensor(layer).unwrap();
        let values: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        let shape = view.shape().to_vec();
        let spectra = channel_spectra(&shape, &values).unwrap();
        let spatial: usize = shape[2..].iter().product();
        let dims = [(shape[0], shape[1] * spatial), (shape[1], shape[0] * spatial)];
        for mode in 0..2 {
            let e = evbmf(&spectra[mode], dims[mode].0, dims[mode].1).unwrap();
            let rank = reference["ranks"][mode].as_u64().unwrap() as usize;
            assert_eq!(e.rank, rank, "{layer} mode {mode}: {e:?}, reference {reference}");
        }
    }
}
