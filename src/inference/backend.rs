//! Which compute device runs the network: WebGPU/Vulkan through burn-wgpu, or
//! the CPU through Burn's flex backend. The choice is made at run time, by
//! measuring ([`probe`]) or by the user, never assumed: on a PC without a GPU
//! the browser's WebGPU is a CPU emulation and flex is several times faster.

use burn::nn::conv::Conv3dConfig;
use burn::nn::PaddingConfig3d;
use burn::tensor::{Device, Distribution, Tensor};

use super::clock::now_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn-wgpu: WebGPU in the browser, Vulkan/Metal/DX12 natively.
    Wgpu,
    /// Burn's flex CPU backend.
    Cpu,
}

impl Backend {
    pub fn parse(name: &str) -> Result<Self, BackendError> {
        match name {
            "wgpu" | "webgpu" | "gpu" => Ok(Backend::Wgpu),
            "cpu" | "flex" => Ok(Backend::Cpu),
            other => Err(BackendError::Unknown(other.to_string())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Wgpu => "wgpu",
            Backend::Cpu => "cpu",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("unknown backend \"{0}\" (use cpu or wgpu)")]
    Unknown(String),
    #[error("WebGPU is not available: {0}")]
    GpuUnavailable(String),
}

/// A device ready for work, with what the inference needs to know about it.
#[derive(Debug, Clone)]
pub struct OpenedDevice {
    pub backend: Backend,
    pub device: Device,
    /// The largest single buffer the device can bind, in bytes (wgpu only).
    /// Lavapipe allows 128 MiB, browsers 256 MiB to a few GiB: the sliding
    /// window shrinks its patch so that no activation exceeds it.
    pub max_buffer_bytes: Option<u64>,
    /// Adapter name and driver, for the device panel and diagnostics.
    pub adapter: Option<String>,
}

impl OpenedDevice {
    /// Burn's flex CPU backend: always available, no buffer limit to respect.
    pub fn cpu() -> Self {
        OpenedDevice { backend: Backend::Cpu, device: Device::flex(), max_buffer_bytes: None, adapter: None }
    }
}

/// Opens the device for `backend`. wgpu may fail (no adapter, blocked by the
/// browser); the error says why so the caller can fall back to the CPU.
pub async fn open_device(backend: Backend) -> Result<OpenedDevice, BackendError> {
    match backend {
        Backend::Cpu => Ok(OpenedDevice::cpu()),
        Backend::Wgpu => {
            let (device, setup) = Device::wgpu_options()
                .init_with_setup_async()
                .await
                .map_err(|e| BackendError::GpuUnavailable(e.to_string()))?;
            let limits = setup.device.limits();
            let info = setup.adapter.get_info();
            Ok(OpenedDevice {
                backend,
                device,
                max_buffer_bytes: Some(limits.max_storage_buffer_binding_size.min(limits.max_buffer_size)),
                adapter: Some(format!("{} ({:?}, {})", info.name, info.backend, info.driver).trim().to_string()),
            })
        }
    }
}

/// Milliseconds for one small 3D convolution (1×8×32³ → 8 channels, k = 3)
/// on `device`, after one warm-up run (which compiles the kernels on wgpu).
/// Each run uses fresh random input: wgpu may return a cached result for a
/// repeated identical computation.
pub async fn probe(device: &Device) -> Result<f64, String> {
    let conv = Conv3dConfig::new([8, 8], [3, 3, 3])
        .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
        .init(device);
    let mut best = f64::INFINITY;
    for run in 0..3 {
        let x = Tensor::<5>::random([1, 8, 32, 32, 32], Distribution::Default, device);
        let start = now_ms();
        let y = conv.forward(x).sum();
        y.into_data_async().await.map_err(|e| e.to_string())?;
        if run > 0 {
            best = best.min(now_ms() - start);
        }
    }
    Ok(best)
}
