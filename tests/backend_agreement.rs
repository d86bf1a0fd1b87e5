//! The full-width HD-BET network gives the same output on wgpu and on the CPU
//! (Burn flex), with identical weights moved through a safetensors package:
//! - in headless Chromium (wasm-bindgen-test): WebGPU against flex in wasm;
//! - natively: wgpu (lavapipe on a machine without a GPU) against flex.
//!
//! Both on Burn's own GPU convolution and on bedside's tiled one
//! (`kernels::gpu_conv`). Tolerance: softmax probabilities within 2e-3 everywhere, and the argmax
//! equal on ≥ 99.9% of voxels. The two backends sum in different orders, so
//! float32 results differ in the last bits; STACK.md measured ~1e-5 for one
//! conv, and 20-odd layers with instance norms compound it.

use bedside::kernels::{set_gpu_conv, GpuConv};
use bedside::model::hdbet::HdBetConfig;
use bedside::model::Network;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// A smooth, deterministic 3D test image (a blob plus a ramp).
fn phantom(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n * n * n);
    let c = n as f32 / 2.0;
    for z in 0..n {
        for y in 0..n {
            for x in 0..n {
                let (fx, fy, fz) = (x as f32 - c, y as f32 - c * 0.8, z as f32 - c * 1.1);
                let r2 = fx * fx + fy * fy + fz * fz;
                v.push((-r2 / (n * n) as f32 * 8.0).exp() * 2.0 + x as f32 / n as f32 - 0.5);
            }
        }
    }
    v
}

async fn probabilities(net: &Network, device: &Device, n: usize) -> Vec<f32> {
    let x = Tensor::<5>::from_data(TensorData::new(phantom(n), [1, 1, n, n, n]), device);
    let p = softmax(net.forward(x), 1);
    p.into_data_async().await.expect("readback").try_into_vec::<f32>().expect("f32")
}

async fn network_agrees_on_wgpu_and_cpu() {
    let cpu = Device::flex();
    let gpu = Device::wgpu_options()
        .init_async()
        .await
        .expect("wgpu adapter (Chromium needs --enable-unsafe-webgpu without a GPU; natively, lavapipe)");
    let cfg = HdBetConfig::new();
    let net_cpu = Network::HdBet(cfg.init(&cpu));
    let weights = net_cpu.to_safetensors().expect("weights serialise");
    let mut net_gpu = Network::HdBet(cfg.init(&gpu));
    net_gpu.load_safetensors(weights).expect("weights load on wgpu");

    let n = 32;
    let a = probabilities(&net_cpu, &cpu, n).await;
    // On Burn's own GPU convolution (the default), then on bedside's tiled one.
    for choice in [GpuConv::Burn, GpuConv::Tiled] {
        set_gpu_conv(choice);
        let b = probabilities(&net_gpu, &gpu, n).await;
        set_gpu_conv(GpuConv::Burn);
        assert_eq!(a.len(), b.len());
        let max_diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        let voxels = n * n * n;
        let agree = (0..voxels).filter(|&i| (a[i] > a[voxels + i]) == (b[i] > b[voxels + i])).count();
        let report = format!("{} GPU convolution: max |p_cpu - p_wgpu| = {max_diff:e}, argmax agreement {agree}/{voxels}", choice.name());
        #[cfg(target_arch = "wasm32")]
        web_sys::console::log_1(&report.clone().into());
        #[cfg(not(target_arch = "wasm32"))]
        eprintln!("{report}");
        assert!(max_diff < 2e-3, "{report}");
        assert!(agree as f64 >= 0.999 * voxels as f64, "{report}");
    }
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen_test::wasm_bindgen_test]
async fn hdbet_network_agrees_on_webgpu_and_cpu_in_the_browser() {
    network_agrees_on_wgpu_and_cpu().await;
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn hdbet_network_agrees_on_wgpu_and_cpu_natively() {
    pollster::block_on(network_agrees_on_wgpu_and_cpu());
}
