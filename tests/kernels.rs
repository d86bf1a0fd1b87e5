//! The direct CPU convolution against Burn's own conv3d (flex), on random
//! shapes: odd sizes, strides 1 and 2, 1×1×1 kernels, padding 0–2, and the
//! channel counts of HD-BET (21·2^k) and the students (4·2^k). Natively the
//! portable lanes run; in the browser (headless Chromium, a dedicated
//! worker, as the page computes) the relaxed-SIMD and SIMD128 lanes run and
//! are also checked against each other. Whole models through the kernel:
//! `tests/kernel_models.rs` (natively) and `tests/e2e/bench.test.mjs` (HD-BET
//! and student-s in Chromium, on two workers). The fused instance norm + leaky ReLU against
//! Burn's `InstanceNorm` and `leaky_relu`, and both against an f64 reference.

use bedside::kernels::{conv3d::conv3d, winograd, Geometry, Lanes};
use burn::tensor::module::conv3d as burn_conv3d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor, TensorData};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_dedicated_worker);

mod kernel_cases;
use kernel_cases::{case_geometry, relative_error};

/// Relative tolerance: the largest difference over the largest magnitude of
/// the reference. Sums of up to 27 × 336 products in another order differ
/// by a few ulps of the largest partial sums; Winograd's transforms (adds
/// and halvings around the products) measured ≤ 8.4e-7 on these cases.
const TOLERANCE: f32 = 2e-5;

/// `[c_in, c_out, size, kernel, stride, padding]`.
const CASES: &[[usize; 6]] = &[
    [1, 21, 13, 3, 1, 1],   // HD-BET's first layer, odd size
    [21, 21, 11, 3, 1, 1],  // HD-BET level 0
    [21, 42, 12, 3, 2, 1],  // HD-BET downsampling, stride 2
    [84, 168, 7, 3, 1, 1],  // HD-BET level 3, odd size
    [336, 168, 4, 3, 1, 1], // HD-BET bottleneck width
    [42, 2, 9, 1, 1, 0],    // a segmentation head: 1×1×1, two classes
    [1, 4, 10, 3, 1, 1],    // the students' first layer
    [4, 8, 9, 3, 2, 1],     // students, stride 2, odd size
    [16, 32, 6, 3, 1, 1],   // students, deeper
    [32, 64, 5, 1, 1, 0],   // pointwise, Tucker-2 style
    [5, 7, 8, 3, 1, 2],     // odd channels, padding larger than the reach
    [3, 6, 7, 3, 2, 0],     // no padding, stride 2
];

fn random(shape: &[usize], device: &Device) -> (Tensor<1>, Vec<f32>) {
    let n = shape.iter().product::<usize>();
    let t = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), device);
    let v = t.clone().into_data().try_to_vec::<f32>().expect("f32");
    (t, v)
}

fn burn_reference(x: &[f32], w: &[f32], b: &[f32], g: &Geometry, device: &Device) -> Vec<f32> {
    let [d, h, wd] = g.size;
    let [k0, k1, k2] = g.kernel;
    let x = Tensor::<5>::from_data(TensorData::new(x.to_vec(), [g.batch, g.in_channels, d, h, wd]), device);
    let w = Tensor::<5>::from_data(TensorData::new(w.to_vec(), [g.out_channels, g.in_channels, k0, k1, k2]), device);
    let b = Tensor::<1>::from_data(TensorData::new(b.to_vec(), [g.out_channels]), device);
    let y = burn_conv3d(x, w, Some(b), ConvOptions::new(g.stride, g.padding, [1; 3], 1));
    y.into_data().try_to_vec::<f32>().expect("f32")
}

/// Every case, on every lane type this build has, against Burn; and the
/// lane types against each other.
fn check_every_case() {
    let device = Device::flex();
    for case in CASES {
        let g = case_geometry(case);
        let [k0, k1, k2] = g.kernel;
        let (_, x) = random(&[g.batch, g.in_channels, g.size[0], g.size[1], g.size[2]], &device);
        let (_, w) = random(&[g.out_channels, g.in_channels, k0, k1, k2], &device);
        let (_, b) = random(&[g.out_channels], &device);
        let want = burn_reference(&x, &w, &b, &g, &device);
        let mut outputs = Vec::new();
        for &lanes in Lanes::available() {
            let got = conv3d(&x, &w, Some(&b), &g, lanes);
            let err = relative_error(&got, &want);
            assert!(err <= TOLERANCE, "{} on {case:?}: relative error {err:e} > {TOLERANCE:e}", lanes.name());
            outputs.push((lanes.name().to_string(), got));
            if winograd::applies(&g) {
                let got = winograd::conv3d(&x, &w, Some(&b), &g, lanes);
                let err = relative_error(&got, &want);
                assert!(err <= TOLERANCE, "Winograd {} on {case:?}: relative error {err:e} > {TOLERANCE:e}", lanes.name());
                outputs.push((format!("Winograd {}", lanes.name()), got));
            }
        }
        for pair in outputs.windows(2) {
            let err = relative_error(&pair[1].1, &pair[0].1);
            assert!(err <= TOLERANCE, "{} vs {} on {case:?}: {err:e}", pair[1].0, pair[0].0);
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn the_direct_kernel_matches_burn_conv3d() {
    check_every_case();
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen_test::wasm_bindgen_test]
fn the_simd_kernels_match_burn_conv3d_in_the_browser() {
    check_every_case();
}

/// The tiled WebGPU kernel against Burn's conv3d on the CPU, on every case
/// and a batch of two, on the machine's wgpu adapter (lavapipe here, a real
/// GPU elsewhere). In the browser it runs in the WebGPU e2e checks.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn the_tiled_gpu_kernel_matches_burn_conv3d() {
    use bedside::kernels::gpu_conv::conv3d_tiled;
    use burn::tensor::DeviceKind;
    let cpu = Device::flex();
    let gpu = Device::wgpu(DeviceKind::DefaultDevice);
    let on_gpu5 = |v: &[f32], shape: [usize; 5]| Tensor::<5>::from_data(TensorData::new(v.to_vec(), shape), &gpu);
    let mut cases: Vec<Geometry> = CASES.iter().map(case_geometry).collect();
    cases.push(Geometry { batch: 2, ..case_geometry(&[3, 8, 6, 3, 1, 1]) });
    for g in cases {
        let [d, h, w] = g.size;
        let k = g.kernel[0];
        let (_, x) = random(&[g.batch, g.in_channels, d, h, w], &cpu);
        let (_, wt) = random(&[g.out_channels, g.in_channels, k, k, k], &cpu);
        let (_, b) = random(&[g.out_channels], &cpu);
        let want = burn_reference(&x, &wt, &b, &g, &cpu);
        let xg = on_gpu5(&x, [g.batch, g.in_channels, d, h, w]);
        let wg = on_gpu5(&wt, [g.out_channels, g.in_channels, k, k, k]);
        let bg = Tensor::<1>::from_data(TensorData::new(b.clone(), [g.out_channels]), &gpu);
        let got = conv3d_tiled(&xg, &wg, Some(&bg), g.stride[0], g.padding[0]).expect("a wgpu tensor");
        let got = got.into_data().try_to_vec::<f32>().expect("f32");
        let err = relative_error(&got, &want);
        assert!(err <= TOLERANCE, "tiled GPU kernel on {g:?}: relative error {err:e} > {TOLERANCE:e}");
    }
    // Off a cubecl device there is nothing to tile.
    let (xt, _) = random(&[8], &cpu);
    let (wt, _) = random(&[8], &cpu);
    let (xt, wt): (Tensor<5>, Tensor<5>) = (xt.reshape([1, 1, 2, 2, 2]), wt.reshape([1, 1, 2, 2, 2]));
    assert!(conv3d_tiled(&xt, &wt, None, 1, 0).is_none());
}

/// A batch of two gives each item's own convolution, and no bias is no bias.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn batches_and_missing_bias() {
    let device = Device::flex();
    let g = Geometry { batch: 2, ..case_geometry(&[3, 8, 6, 3, 1, 1]) };
    let (_, x) = random(&[2, 3, 6, 7, 8], &device);
    let (_, w) = random(&[8, 3, 3, 3, 3], &device);
    let want = burn_reference(&x, &w, &[0.0; 8], &g, &device);
    for &lanes in Lanes::available() {
        let got = conv3d(&x, &w, None, &g, lanes);
        assert!(relative_error(&got, &want) <= TOLERANCE, "{}", lanes.name());
        let got = winograd::conv3d(&x, &w, None, &g, lanes);
        assert!(relative_error(&got, &want) <= TOLERANCE, "Winograd {}", lanes.name());
    }
}

/// The fused instance norm + leaky ReLU against Burn's `InstanceNorm` then
/// `leaky_relu`: HD-BET's and the students' channel counts, odd sizes, a
/// batch of two, affine and not, both slopes the networks use, and inputs
/// whose mean is far from zero (where a one-pass variance in f32 would lose
/// digits).
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn the_fused_norm_matches_burn_instance_norm_and_leaky_relu() {
    use bedside::kernels::norm::instance_norm_leaky_relu;
    use burn::module::Param;
    use burn::nn::InstanceNormConfig;
    use burn::tensor::activation::leaky_relu;
    let device = Device::flex();
    // [batch, channels, size, affine, slope ×100, offset]
    for &[batch, channels, size, affine, slope, offset] in
        &[[1, 21, 9, 1, 1, 0], [2, 4, 7, 1, 10, 0], [1, 42, 5, 0, 1, 0], [1, 8, 11, 1, 1, 50], [1, 2, 3, 1, 10, 0]]
    {
        let dims = [batch, channels, size, size + 1, size + 2];
        let (_, x) = random(&dims, &device);
        let x: Vec<f32> = x.iter().enumerate().map(|(i, v)| v * (1.0 + (i % 3) as f32) + offset as f32).collect();
        let mut norm = InstanceNormConfig::new(channels).with_affine(affine == 1).with_epsilon(1e-5).init(&device);
        let (gamma, g) = random(&[channels], &device);
        let (beta, b) = random(&[channels], &device);
        if affine == 1 {
            norm.gamma = Some(Param::from_tensor(gamma));
            norm.beta = Some(Param::from_tensor(beta));
        }
        let slope = slope as f64 / 100.0;
        let input = Tensor::<5>::from_data(TensorData::new(x.clone(), dims), &device);
        let want = leaky_relu(norm.forward(input), slope).into_data().try_to_vec::<f32>().expect("f32");
        let got_input = x.clone();
        let mut got = x;
        let spatial = dims[2..].iter().product();
        let params = (affine == 1).then_some((g.as_slice(), b.as_slice()));
        instance_norm_leaky_relu(&mut got, channels, spatial, params, 1e-5, slope as f32);
        let exact = exact_norm_leaky_relu(&got_input, channels, spatial, params, 1e-5, slope);
        let err = relative_error(&got, &exact);
        // Both within a few f32 ulps of the exact result (measured: ≤ 6e-7
        // each), and so of each other.
        let context = format!("{dims:?} affine {affine} slope {slope} offset {offset}");
        assert!(err <= 2e-6, "{context}: fused, relative error {err:e} against f64");
        let burn_err = relative_error(&got, &want);
        assert!(burn_err <= 2e-6, "{context}: fused against Burn, relative error {burn_err:e}");
    }
}

/// The same in f64, plane by plane, two passes: the reference for both.
fn exact_norm_leaky_relu(x: &[f32], channels: usize, spatial: usize, affine: Option<(&[f32], &[f32])>, eps: f64, slope: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for (i, plane) in x.chunks(spatial).enumerate() {
        let c = i % channels;
        let n = plane.len() as f64;
        let mean = plane.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = plane.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let (g, b) = affine.map_or((1.0, 0.0), |(g, b)| (g[c] as f64, b[c] as f64));
        for &v in plane {
            let y = (v as f64 - mean) / (var + eps).sqrt() * g + b;
            out.push((if y < 0.0 { y * slope } else { y }) as f32);
        }
    }
    out
}

/// The slice upsampling against the model's Burn version (which training
/// and WebGPU take): the same arithmetic in the same axis order,
/// so the same bits, on odd and even sizes, HD-BET's 21·2^k channels, a
/// batch of two, and an axis of one voxel.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn the_slice_upsampling_gives_burns_trilinear_bit_for_bit() {
    use bedside::kernels::upsample::trilinear_x2;
    use bedside::model::upsample::burn_trilinear_x2;
    let device = Device::flex();
    for dims in [[1, 21, 4, 5, 6], [2, 3, 7, 2, 9], [1, 8, 1, 3, 4], [1, 1, 16, 16, 16]] {
        let (t, x) = random(&dims, &device);
        let want = burn_trilinear_x2(t.reshape(dims)).into_data().try_to_vec::<f32>().expect("f32");
        let got = trilinear_x2(&x, dims);
        assert_eq!(got.len(), want.len(), "{dims:?}");
        let differing = got.iter().zip(&want).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differing, 0, "{dims:?}: {differing} of {} values differ", want.len());
    }
}
