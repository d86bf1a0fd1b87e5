//! The convolutions every family is built from: whole, or Tucker-2
//! factorised, decided by name when the network is built.
//!
//! Families ask a [`ConvBuilder`] for each convolution by its path in the
//! weights file ("context1.conv1"). A model package whose manifest carries a
//! compression lists the factorised layers and their ranks; the builder makes
//! those three convolutions instead of one, and records every layer's
//! geometry, so that FLOPs, parameters and the compression itself can be
//! worked out from one description of the network.
//!
//! The builder can also give listed layers a LoRA adapter
//! ([`crate::lora`]): the layer's kernel then becomes a [`LoraConv3d`],
//! whose tensors keep the kernel's names and add `lora_A` / `lora_B`.

use std::cell::RefCell;
use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::nn::PaddingConfig3d;
use burn::tensor::{Device, Tensor, TensorData};

use crate::kernels;
use crate::lora::{AdapterPlan, LoraConv3d};
use crate::tucker::ranks::ConvGeometry;
use crate::tucker::Tucker2;

/// Layer path → `[r_out, r_in]` of the layers that are factorised.
pub type Factorisation = BTreeMap<String, [usize; 2]>;

/// A convolution as the network uses it.
///
/// Stored with `skip_enum_variants`, so a whole layer's tensors keep their
/// plain names (`name.weight`, `name.bias`) and a factorised one's are
/// `name.first.weight`, `name.core.weight`, `name.last.weight`, `name.last.bias`.
#[derive(Module, Debug)]
pub enum Conv {
    Whole(Kernel),
    Tucker2(Tucker2Conv3d),
}

/// The one convolution of a layer that holds its spatial kernel: the whole
/// layer, or a factorised layer's core. Stored like `Conv`, so an adapted
/// kernel's base tensors keep their names.
#[derive(Module, Debug)]
pub enum Kernel {
    Plain(Conv3d),
    Adapted(LoraConv3d),
}

impl Kernel {
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        match self {
            Kernel::Plain(conv) => kernels::conv3d_forward(conv, x),
            Kernel::Adapted(lora) => lora.forward(x),
        }
    }

    /// `[out, in]` channels.
    fn channels(&self) -> [usize; 2] {
        let dims = match self {
            Kernel::Plain(c) => c.weight.dims(),
            Kernel::Adapted(l) => l.weight.dims(),
        };
        [dims[0], dims[1]]
    }
}

/// 1×1×1 (in → r_in), the kernel's core (r_in → r_out, with the original
/// stride and padding), 1×1×1 (r_out → out) with the original bias. The
/// composition is the convolution with the reconstructed kernel: the first
/// pointwise convolution has no bias, so it commutes with zero padding.
#[derive(Module, Debug)]
pub struct Tucker2Conv3d {
    first: Conv3d,
    core: Kernel,
    last: Conv3d,
}

impl Conv {
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        match self {
            Conv::Whole(kernel) => kernel.forward(x),
            Conv::Tucker2(t) => {
                kernels::conv3d_forward(&t.last, t.core.forward(kernels::conv3d_forward(&t.first, x)))
            }
        }
    }

    /// `[out, in]` channels.
    pub fn channels(&self) -> [usize; 2] {
        match self {
            Conv::Whole(kernel) => kernel.channels(),
            Conv::Tucker2(t) => [t.last.weight.dims()[0], t.first.weight.dims()[1]],
        }
    }
}

/// What a convolution is, before any weights: channels, kernel, stride,
/// bias. Padding keeps the size (`(k − 1) / 2` on each side), as in every
/// family here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConvSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub bias: bool,
}

impl ConvSpec {
    fn whole(&self, device: &Device) -> Conv3d {
        plain(self.in_channels, self.out_channels, self.kernel, self.stride, self.bias, device)
    }

    fn factorised(&self, [r_out, r_in]: [usize; 2], device: &Device) -> Tucker2Conv3d {
        Tucker2Conv3d {
            first: plain(self.in_channels, r_in, 1, 1, false, device),
            core: Kernel::Plain(self.core([r_out, r_in]).whole(device)),
            last: plain(r_out, self.out_channels, 1, 1, self.bias, device),
        }
    }

    /// The factorised layer's core, as a convolution of its own: r_in → r_out
    /// channels with this layer's kernel and stride, no bias.
    pub fn core(&self, [r_out, r_in]: [usize; 2]) -> ConvSpec {
        ConvSpec { in_channels: r_in, out_channels: r_out, kernel: self.kernel, stride: self.stride, bias: false }
    }

    /// Its size and voxel counts when its input has `in_voxels` voxels.
    pub fn geometry(&self, in_voxels: u64) -> ConvGeometry {
        ConvGeometry {
            out_channels: self.out_channels,
            in_channels: self.in_channels,
            kernel_volume: self.kernel.pow(3),
            in_voxels,
            out_voxels: in_voxels / (self.stride.pow(3) as u64),
        }
    }
}

pub(crate) fn plain(cin: usize, cout: usize, kernel: usize, stride: usize, bias: bool, device: &Device) -> Conv3d {
    let pad = (kernel - 1) / 2;
    // Burn's initialiser is lazy: weights that are loaded right after are
    // never drawn.
    Conv3dConfig::new([cin, cout], [kernel; 3])
        .with_stride([stride; 3])
        .with_padding(PaddingConfig3d::Explicit(pad, pad, pad))
        .with_bias(bias)
        .init(device)
}

/// One convolution of a network, as its family described it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConvLayer {
    /// Path of its tensors in the weights file, e.g. "context1.conv1".
    pub name: String,
    pub spec: ConvSpec,
    /// Its input is at 1/2^level of the network input's resolution.
    pub input_level: u32,
    /// False for layers that are in the weights but not run at inference
    /// (HD-BET's deep-supervision heads).
    pub runs: bool,
    /// Ranks, when it is factorised.
    pub ranks: Option<[usize; 2]>,
}

impl ConvLayer {
    /// Geometry on a `patch`-sized network input.
    pub fn geometry(&self, patch: [usize; 3]) -> ConvGeometry {
        let voxels = patch.iter().map(|&s| (s >> self.input_level) as u64).product();
        self.spec.geometry(voxels)
    }

    /// FLOPs of one pass on a `patch`-sized input (0 when it does not run).
    pub fn flops(&self, patch: [usize; 3]) -> u64 {
        let g = self.geometry(patch);
        match (self.runs, self.ranks) {
            (false, _) => 0,
            (true, None) => g.flops(),
            (true, Some(r)) => g.factorised_flops(r),
        }
    }
}

/// Builds a family's convolutions by name, factorising the ones the
/// manifest lists, and records them all.
pub struct ConvBuilder<'a> {
    factorisation: &'a Factorisation,
    adapters: &'a AdapterPlan,
    device: &'a Device,
    prefix: String,
    layers: &'a RefCell<Vec<ConvLayer>>,
}

impl<'a> ConvBuilder<'a> {
    pub fn new(factorisation: &'a Factorisation, device: &'a Device, layers: &'a RefCell<Vec<ConvLayer>>) -> Self {
        Self::with_adapters(factorisation, crate::lora::no_adapters(), device, layers)
    }

    /// A builder that also gives the layers `adapters` lists a LoRA adapter.
    pub fn with_adapters(
        factorisation: &'a Factorisation,
        adapters: &'a AdapterPlan,
        device: &'a Device,
        layers: &'a RefCell<Vec<ConvLayer>>,
    ) -> Self {
        Self { factorisation, adapters, device, prefix: String::new(), layers }
    }

    pub fn device(&self) -> &'a Device {
        self.device
    }

    /// A builder for a submodule's fields (`context1.` …).
    pub fn child(&self, name: &str) -> ConvBuilder<'a> {
        ConvBuilder {
            factorisation: self.factorisation,
            adapters: self.adapters,
            device: self.device,
            prefix: self.path(name),
            layers: self.layers,
        }
    }

    fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// The convolution `name` with input at `input_level`.
    pub fn conv(&self, name: &str, spec: ConvSpec, input_level: u32) -> Conv {
        self.build(name, spec, input_level, true)
    }

    /// A convolution kept in the weights but not run at inference.
    pub fn unused_conv(&self, name: &str, spec: ConvSpec, input_level: u32) -> Conv {
        self.build(name, spec, input_level, false)
    }

    fn build(&self, name: &str, spec: ConvSpec, input_level: u32, runs: bool) -> Conv {
        let name = self.path(name);
        let ranks = self.factorisation.get(&name).copied();
        let adapter = self.adapters.get(&name).copied();
        self.layers.borrow_mut().push(ConvLayer { name, spec, input_level, runs, ranks });
        // An adapter sits on the convolution that holds the spatial kernel:
        // the whole layer, or a factorised layer's core (see `crate::lora`).
        let kernel = |spec: ConvSpec, plain: Conv3d| match adapter {
            Some(a) => Kernel::Adapted(LoraConv3d::new(plain, spec.kernel, spec.stride, a, self.device)),
            None => Kernel::Plain(plain),
        };
        match ranks {
            Some(r) => {
                let mut t = spec.factorised(r, self.device);
                let core = spec.core(r);
                t.core = kernel(core, core.whole(self.device));
                Conv::Tucker2(t)
            }
            None => Conv::Whole(kernel(spec, spec.whole(self.device))),
        }
    }
}

/// The three factorised layers' tensors, named as a [`Conv::Tucker2`] stores
/// them under `name`: (path, shape, row-major f32 values). The bias is the
/// original layer's.
pub fn factorised_tensors(name: &str, t: &Tucker2, bias: Option<&[f32]>) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let [out, inp] = [t.shape[0], t.shape[1]];
    let [r_out, r_in] = t.ranks();
    let ones = vec![1usize; t.shape.len() - 2];
    let pointwise = |rows: usize, cols: usize| -> Vec<usize> { [rows, cols].into_iter().chain(ones.iter().copied()).collect() };
    // first: weight[r, i] = U_in[i, r]; last: weight[o, r] = U_out[o, r].
    let first: Vec<f32> = (0..r_in).flat_map(|r| (0..inp).map(move |i| (r, i))).map(|(r, i)| t.in_factor[(i, r)] as f32).collect();
    let last: Vec<f32> = (0..out).flat_map(|o| (0..r_out).map(move |r| (o, r))).map(|(o, r)| t.out_factor[(o, r)] as f32).collect();
    let mut tensors = vec![
        (format!("{name}.first.weight"), pointwise(r_in, inp), first),
        (format!("{name}.core.weight"), t.core_shape(), t.core.iter().map(|&v| v as f32).collect()),
        (format!("{name}.last.weight"), pointwise(out, r_out), last),
    ];
    if let Some(b) = bias {
        tensors.push((format!("{name}.last.bias"), vec![out], b.to_vec()));
    }
    tensors
}

/// A factorised layer with given weights (tests, and building without a file).
pub fn tucker_conv(spec: ConvSpec, t: &Tucker2, bias: Option<&[f32]>, device: &Device) -> Conv {
    let mut conv = spec.factorised(t.ranks(), device);
    let tensors = factorised_tensors("x", t, bias);
    let param = |i: usize| {
        let (_, shape, values) = &tensors[i];
        let shape: [usize; 5] = shape.clone().try_into().expect("a 3D kernel");
        Param::from_tensor(Tensor::<5>::from_data(TensorData::new(values.clone(), shape), device))
    };
    conv.first.weight = param(0);
    if let Kernel::Plain(core) = &mut conv.core {
        core.weight = param(1);
    }
    conv.last.weight = param(2);
    if let Some(b) = bias {
        conv.last.bias = Some(Param::from_tensor(Tensor::<1>::from_data(TensorData::new(b.to_vec(), [b.len()]), device)));
    }
    Conv::Tucker2(conv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tucker::{partial_tucker2, HooiOptions};
    use burn::tensor::Distribution;

    fn relative_gap(a: Tensor<5>, b: Tensor<5>) -> f32 {
        let diff = (a.clone() - b).powf_scalar(2.0).sum().sqrt().into_scalar::<f32>();
        diff / a.powf_scalar(2.0).sum().sqrt().into_scalar::<f32>()
    }

    /// The factorised layer computes the convolution with the reconstructed
    /// kernel (same stride, padding and bias), within float tolerance.
    #[test]
    fn factorised_layer_equals_conv_with_reconstructed_kernel() {
        let device = Device::flex();
        for (spec, ranks) in [
            (ConvSpec { in_channels: 6, out_channels: 8, kernel: 3, stride: 1, bias: true }, [5, 3]),
            (ConvSpec { in_channels: 6, out_channels: 8, kernel: 3, stride: 2, bias: true }, [4, 4]),
            (ConvSpec { in_channels: 12, out_channels: 4, kernel: 1, stride: 1, bias: false }, [4, 6]),
        ] {
            let whole = spec.whole(&device);
            let shape: Vec<usize> = whole.weight.dims().to_vec();
            let kernel: Vec<f32> = whole.weight.val().into_data().try_to_vec().unwrap();
            let bias: Option<Vec<f32>> = whole.bias.as_ref().map(|b| b.val().into_data().try_to_vec().unwrap());
            let t = partial_tucker2(&shape, &kernel, ranks, &HooiOptions::default()).unwrap();
            // The whole conv with Ŵ in place of W.
            let mut reconstructed = spec.whole(&device);
            let w_hat: Vec<f32> = t.reconstruct().iter().map(|&v| v as f32).collect();
            let dims: [usize; 5] = shape.clone().try_into().unwrap();
            reconstructed.weight = Param::from_tensor(Tensor::<5>::from_data(TensorData::new(w_hat, dims), &device));
            reconstructed.bias = whole.bias.clone();
            let factorised = tucker_conv(spec, &t, bias.as_deref(), &device);
            let x = Tensor::<5>::random([1, spec.in_channels, 8, 10, 6], Distribution::Normal(0.0, 1.0), &device);
            let gap = relative_gap(reconstructed.forward(x.clone()), factorised.forward(x.clone()));
            assert!(gap < 1e-5, "{spec:?} {ranks:?}: {gap}");
            // And at full rank, the original conv itself.
            let full = partial_tucker2(&shape, &kernel, [spec.out_channels, spec.in_channels], &HooiOptions::default()).unwrap();
            let exact = tucker_conv(spec, &full, bias.as_deref(), &device);
            let gap = relative_gap(whole.forward(x.clone()), exact.forward(x));
            assert!(gap < 1e-5, "{spec:?} full rank: {gap}");
        }
    }

    #[test]
    fn builder_factorises_by_name_and_records_layers() {
        let device = Device::flex();
        let mut f = Factorisation::new();
        f.insert("block.b".into(), [2, 3]);
        let layers = RefCell::new(Vec::new());
        let root = ConvBuilder::new(&f, &device, &layers);
        let spec = ConvSpec { in_channels: 4, out_channels: 6, kernel: 3, stride: 1, bias: true };
        let a = root.conv("a", spec, 0);
        let b = root.child("block").conv("b", spec, 1);
        assert!(matches!(a, Conv::Whole(_)));
        assert!(matches!(b, Conv::Tucker2(_)));
        assert_eq!(b.channels(), [6, 4]);
        let layers = layers.into_inner();
        assert_eq!(layers.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["a", "block.b"]);
        assert_eq!(layers[1].ranks, Some([2, 3]));
        assert_eq!(layers[1].flops([8, 8, 8]), spec.geometry(64).factorised_flops([2, 3]));
    }
}
