//! Training on the hand-written kernels gives Burn's numbers: the weight
//! gradient kernel against Burn's autodiff, a convolution layer's output
//! and its input, weight and bias gradients through the custom autodiff
//! node (`kernels::tracked`) against Burn's conv3d, on every lane type, the
//! trilinear upsampling's node against Burn's differentiable version,
//! and (natively) the teach room's first steps on the toy head against the
//! losses recorded with Burn's kernels. In Chromium, `tests/wasm_trainer.rs`
//! checks the same losses with the browser's default (these kernels).

use std::sync::Mutex;

use bedside::kernels::{self, weight_grad, CpuConv, Geometry, Lanes};
use burn::nn::conv::Conv3dConfig;
use burn::nn::PaddingConfig3d;
use burn::tensor::module::conv3d as burn_conv3d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_dedicated_worker);

mod kernel_cases;
use kernel_cases::{case_geometry, relative_error};

/// Relative tolerance (largest difference over the reference's largest
/// magnitude). A weight gradient sums up to 2 × 15³ products per entry, in
/// another order than Burn's; measured ≤ 1e-6 on these cases.
const TOLERANCE: f32 = 2e-5;

/// `[c_in, c_out, size, kernel, stride, padding]`, with a batch of two.
const CASES: &[[usize; 6]] = &[
    [1, 4, 10, 3, 1, 1],  // the students' first layer
    [4, 8, 9, 3, 1, 1],   // students, odd size
    [8, 8, 12, 3, 1, 1],  // students, Winograd's smallest
    [16, 32, 6, 3, 1, 1], // students, deeper
    [21, 21, 7, 3, 1, 1], // HD-BET's width
    [4, 8, 9, 3, 2, 1],   // stride 2: Burn's transposed convolution for dx, Burn's weight gradient
    [8, 2, 7, 1, 1, 0],   // a segmentation head: 1×1×1
    [5, 7, 8, 3, 1, 2],   // odd channels, padding beyond the kernel's reach (Burn's dx)
    [3, 6, 7, 3, 1, 0],   // no padding
];

/// The process-wide convolution choice and flex's seeded random generator,
/// taken by one test at a time.
static CHOICE: Mutex<()> = Mutex::new(());

fn geometry(case: &[usize; 6]) -> Geometry {
    Geometry { batch: 2, ..case_geometry(case) }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32")
}

fn check_weight_gradient() {
    let _choice = CHOICE.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    for case in CASES.iter().filter(|c| c[4] == 1) {
        let g = geometry(case);
        let [d, h, w] = g.size;
        let x = Tensor::<5>::random([2, g.in_channels, d, h, w], Distribution::Normal(0.0, 1.0), &device);
        let k = g.kernel;
        let wt = Tensor::<5>::random([g.out_channels, g.in_channels, k[0], k[1], k[2]], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let y = burn_conv3d(x.clone(), wt.clone(), None, ConvOptions::new(g.stride, g.padding, [1; 3], 1));
        let dy = Tensor::<5>::random(y.dims(), Distribution::Normal(0.0, 1.0), &device);
        let grads = (y * dy.clone()).sum().backward();
        let want = values(wt.grad(&grads).expect("a weight gradient"));
        let (x, dy) = (values(x.inner()), values(dy.inner()));
        for &lanes in Lanes::available() {
            let got = weight_grad::weight_gradient(&x, &dy, &g, lanes);
            let err = relative_error(&got, &want);
            assert!(err <= TOLERANCE, "{} on {case:?}: relative error {err:e} > {TOLERANCE:e}", lanes.name());
        }
    }
}

/// One layer's output and gradients (x, weight, bias) under the current choice.
fn layer_outputs(case: &[usize; 6], seed: u64) -> [Vec<f32>; 4] {
    let device = Device::flex().autodiff();
    let g = geometry(case);
    device.seed(seed);
    let conv = Conv3dConfig::new([g.in_channels, g.out_channels], g.kernel)
        .with_stride(g.stride)
        .with_padding(PaddingConfig3d::Explicit(g.padding[0], g.padding[1], g.padding[2]))
        .init(&device);
    let [d, h, w] = g.size;
    let x = Tensor::<5>::random([2, g.in_channels, d, h, w], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let y = kernels::conv3d_forward(&conv, x.clone());
    let dy = Tensor::<5>::random(y.dims(), Distribution::Normal(0.0, 1.0), &device);
    let grads = (y.clone() * dy).sum().backward();
    let bias = conv.bias.as_ref().expect("a bias").val();
    [
        values(y.inner()),
        values(x.grad(&grads).expect("dx")),
        values(conv.weight.val().grad(&grads).expect("dW")),
        values(bias.grad(&grads).expect("db")),
    ]
}

fn check_layers() {
    let _choice = CHOICE.lock().unwrap_or_else(|e| e.into_inner());
    for (i, case) in CASES.iter().enumerate() {
        kernels::set_cpu_conv(CpuConv::Burn);
        let want = layer_outputs(case, i as u64);
        for &lanes in Lanes::available() {
            for choice in [CpuConv::Fast(lanes), CpuConv::Direct(lanes)] {
                kernels::set_cpu_conv(choice);
                let before = kernels::tracked::nodes_run();
                let got = layer_outputs(case, i as u64);
                assert_eq!(kernels::tracked::nodes_run(), before + 1, "{} on {case:?} fell back to Burn", choice.name());
                for (what, (a, b)) in ["output", "dx", "dW", "db"].iter().zip(got.iter().zip(&want)) {
                    let err = relative_error(a, b);
                    assert!(err <= TOLERANCE, "{} {what} on {case:?}: relative error {err:e} > {TOLERANCE:e}", choice.name());
                }
            }
        }
    }
    kernels::reset_cpu_conv();
}

/// The trilinear ×2 upsampling's output and input gradient through its
/// custom node against Burn's differentiable version.
fn check_upsample() {
    let _choice = CHOICE.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    for (i, dims) in [[2, 3, 5, 6, 7], [1, 8, 4, 4, 4], [1, 1, 1, 2, 3]].into_iter().enumerate() {
        let run = |choice: CpuConv| {
            kernels::set_cpu_conv(choice);
            device.seed(i as u64);
            let x = Tensor::<5>::random(dims, Distribution::Normal(0.0, 1.0), &device).require_grad();
            let before = kernels::tracked::nodes_run();
            let y = bedside::model::upsample::upsample_trilinear_x2(x.clone());
            let ran = kernels::tracked::nodes_run() - before;
            let dy = Tensor::<5>::random(y.dims(), Distribution::Normal(0.0, 1.0), &device);
            let grads = (y.clone() * dy).sum().backward();
            (ran, values(y.inner()), values(x.grad(&grads).expect("dx")))
        };
        let (ran, y_burn, dx_burn) = run(CpuConv::Burn);
        assert_eq!(ran, 0, "Burn's upsampling recorded a custom node");
        for &lanes in Lanes::available() {
            let (ran, y, dx) = run(CpuConv::Fast(lanes));
            assert_eq!(ran, 1, "{dims:?}: the upsampling node did not run");
            assert_eq!(y, y_burn, "{dims:?}: the slice upsampling gives Burn's bits");
            let err = relative_error(&dx, &dx_burn);
            assert!(err <= TOLERANCE, "{dims:?} dx on {}: relative error {err:e} > {TOLERANCE:e}", lanes.name());
        }
    }
    kernels::reset_cpu_conv();
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn the_upsampling_node_gives_burns_output_and_gradient() {
    check_upsample();
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn the_weight_gradient_kernel_matches_burns_autodiff() {
    check_weight_gradient();
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn a_layer_on_the_fast_kernels_gives_burns_output_and_gradients() {
    check_layers();
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen_test::wasm_bindgen_test]
fn the_gradient_kernels_match_burn_in_the_browser() {
    check_weight_gradient();
    check_layers();
    check_upsample();
}

/// The teach room's first steps on the toy head, trained on the fast
/// kernels natively, give the losses recorded with Burn's (and Burn's own,
/// first, that this process reproduces them); with nothing chosen, training
/// takes the fast kernels.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn the_teach_room_learns_the_same_on_the_fast_kernels() {
    use bedside::distill::fixtures::{toy_room_volume, toy_setup, EXPECTED_TOTALS, LOSS_TOLERANCE};
    use bedside::distill::lockstep::Room;
    let _choice = CHOICE.lock().unwrap_or_else(|e| e.into_inner());
    for choice in [Some(CpuConv::Burn), Some(CpuConv::Fast(Lanes::Portable)), Some(CpuConv::Direct(Lanes::Portable)), None] {
        match choice {
            Some(choice) => kernels::set_cpu_conv(choice),
            None => kernels::reset_cpu_conv(),
        }
        let name = choice.map_or("the default", |c| c.name());
        let device = Device::flex();
        let data = pollster::block_on(toy_room_volume(&device));
        let mut room = Room::new(toy_setup(), data, &device).expect("the room opens");
        let before = kernels::tracked::nodes_run();
        let records = pollster::block_on(room.steps(EXPECTED_TOTALS.len())).expect("steps run").expect("finite losses");
        for (r, e) in records.iter().zip(EXPECTED_TOTALS) {
            for k in 0..2 {
                let got = r[k].total;
                assert!((got - e[k]).abs() <= LOSS_TOLERANCE * e[k].abs(), "{name} step {}: {got} vs Burn's {}", r[k].step, e[k]);
            }
        }
        let ran = kernels::tracked::nodes_run() - before;
        assert_eq!(ran > 0, choice != Some(CpuConv::Burn), "{name}: {ran} training convolutions on the hand-written kernels");
    }
}
