//! The hand-written CPU kernels inside an autodiff graph, so that training
//! (the teach room, recovery, LoRA, `bedside distill`) runs on the same
//! kernels as inference while Burn's autodiff still owns the graph: the
//! convolution and the trilinear ×2 upsampling.
//!
//! For a convolution Burn records a custom node: its forward runs [`super::winograd`] or
//! [`super::conv3d`] on the flex primitives; its backward gives
//! - the input gradient on the same kernels where it is itself a
//!   convolution (stride 1: the output gradient convolved with the weights
//!   flipped in space and transposed in channels, padded by `k − 1 − p`),
//!   and by Burn's transposed convolution elsewhere (stride 2);
//! - the weight gradient by [`super::weight_grad`] (stride 1) or Burn's own
//!   `conv3d_weight_backward` (stride 2).
//!
//! Bias is added outside the node by Burn's broadcast add, which gives its
//! gradient for free. Only the autodiff-over-flex backend without gradient
//! checkpointing (what bedside's trainers open) is covered; any other
//! tensor stays on Burn's `conv3d`.

use std::sync::atomic::{AtomicU64, Ordering};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex};
use burn::nn::conv::Conv3d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, Tensor, TensorData};

use super::{conv3d, upsample, weight_grad, winograd, Geometry, Lanes};

/// Custom nodes this process recorded ([`forward`], [`upsample_trilinear_x2`]):
/// tests check that training took the hand-written kernels rather than
/// falling back to Burn's.
static NODES: AtomicU64 = AtomicU64::new(0);

pub fn nodes_run() -> u64 {
    NODES.load(Ordering::Relaxed)
}

/// Autodiff over flex with no checkpointing: `Device::flex().autodiff()`.
type Tracked = Autodiff<Flex>;

/// Whether [`forward`] takes `x`: f32 on the autodiff-over-flex device.
pub fn covers(x: &Tensor<5>) -> bool {
    let device = x.device();
    device.is_autodiff() && device.inner() == Device::flex() && x.dtype() == DType::F32
}

/// `conv.forward(x)` as a custom autodiff node on the hand-written kernels,
/// or `None` when the tensors are not autodiff-over-flex primitives (then
/// the caller runs Burn's convolution).
pub fn forward(conv: &Conv3d, x: &Tensor<5>, g: &Geometry, lanes: Lanes, by_winograd: bool) -> Option<Tensor<5>> {
    let x_ad = x.clone().try_into_primitive::<Tracked>().ok()?;
    let w_ad = conv.weight.val().try_into_primitive::<Tracked>().ok()?;
    let out = match ConvNode.prepare::<NoCheckpointing>([x_ad.node(), w_ad.node()]).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(&x_ad);
            let w_state = prep.checkpoint(&w_ad);
            let y = run(x_ad.primitive().clone(), w_ad.primitive().clone(), g, lanes, by_winograd);
            prep.finish(State { x: x_state, weight: w_state, geometry: *g, lanes, by_winograd }, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(run(x_ad.into_primitive(), w_ad.into_primitive(), g, lanes, by_winograd)),
    };
    NODES.fetch_add(1, Ordering::Relaxed);
    let y = Tensor::<5>::from_primitive::<Tracked>(out);
    Some(match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, g.out_channels, 1, 1, 1]),
        None => y,
    })
}

#[derive(Debug)]
struct ConvNode;

#[derive(Debug, Clone)]
struct State {
    x: NodeId,
    weight: NodeId,
    geometry: Geometry,
    lanes: Lanes,
    by_winograd: bool,
}

impl Backward<Flex, 2> for ConvNode {
    type State = State;

    fn backward(self, ops: Ops<State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let s = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<Flex>>(s.x);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<Flex>>(s.weight);
        let g = s.geometry;
        let options = ConvOptions::new(g.stride, g.padding, [1; 3], 1);
        // The output gradient's values, read out of the tensor once for
        // whichever of the two gradients runs on the kernels.
        let dy = std::cell::OnceCell::new();
        let dy = || dy.get_or_init(|| values(grad.clone()));
        if let Some(node) = node_x {
            let dx = match input_gradient_geometry(&g) {
                Some(gt) => {
                    let flipped = flipped_transposed(&values(weight.clone()), &g);
                    let by_winograd = s.by_winograd && winograd::pays(&gt);
                    let dx = convolve(dy(), &flipped, &gt, s.lanes, by_winograd);
                    primitive(dx, [g.batch, g.in_channels, g.size[0], g.size[1], g.size[2]])
                }
                None => Flex::conv3d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone()),
            };
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = node_weight {
            let dw = if weight_grad::applies(&g) {
                let [k0, k1, k2] = g.kernel;
                primitive(weight_grad::weight_gradient(&values(x), dy(), &g, s.lanes), [g.out_channels, g.in_channels, k0, k1, k2])
            } else {
                Flex::conv3d_weight_backward(x, weight, grad.clone(), options)
            };
            grads.register::<Flex>(node.id, dw);
        }
    }
}

/// The convolution that gives a stride-1 layer's input gradient: over the
/// output gradient, from the layer's output channels to its input channels,
/// padded so that the result has the input's size. `None` for strides above
/// 1 (their gradient scatters; Burn's transposed convolution computes it) or
/// padding beyond the kernel's reach.
fn input_gradient_geometry(g: &Geometry) -> Option<Geometry> {
    if g.stride != [1; 3] || (0..3).any(|i| g.padding[i] + 1 > g.kernel[i]) {
        return None;
    }
    let out = g.out_size();
    let gt = Geometry {
        batch: g.batch,
        in_channels: g.out_channels,
        out_channels: g.in_channels,
        size: out,
        kernel: g.kernel,
        stride: [1; 3],
        padding: [0, 1, 2].map(|i| g.kernel[i] - 1 - g.padding[i]),
    };
    (gt.valid() && gt.out_size() == g.size).then_some(gt)
}

/// `[c_out, c_in, k0, k1, k2]` weights as `[c_in, c_out, k0, k1, k2]`, each
/// kernel reversed along every axis.
fn flipped_transposed(w: &[f32], g: &Geometry) -> Vec<f32> {
    let [k0, k1, k2] = g.kernel;
    let taps = k0 * k1 * k2;
    let mut out = vec![0.0; w.len()];
    for o in 0..g.out_channels {
        for i in 0..g.in_channels {
            let from = &w[(o * g.in_channels + i) * taps..][..taps];
            let to = &mut out[(i * g.out_channels + o) * taps..][..taps];
            for (t, v) in from.iter().enumerate() {
                to[taps - 1 - t] = *v;
            }
        }
    }
    out
}

fn run(x: FloatTensor<Flex>, weight: FloatTensor<Flex>, g: &Geometry, lanes: Lanes, by_winograd: bool) -> FloatTensor<Flex> {
    let y = convolve(&values(x), &values(weight), g, lanes, by_winograd);
    let [od, oh, ow] = g.out_size();
    primitive(y, [g.batch, g.out_channels, od, oh, ow])
}

fn convolve(x: &[f32], w: &[f32], g: &Geometry, lanes: Lanes, by_winograd: bool) -> Vec<f32> {
    if by_winograd {
        winograd::conv3d(x, w, None, g, lanes)
    } else {
        conv3d::conv3d(x, w, None, g, lanes)
    }
}

fn values(t: FloatTensor<Flex>) -> Vec<f32> {
    Tensor::<5>::from_primitive::<Flex>(t).into_data().try_into_vec::<f32>().expect("covers admitted only f32")
}

fn primitive(data: Vec<f32>, shape: [usize; 5]) -> FloatTensor<Flex> {
    Tensor::<5>::from_data(TensorData::new(data, shape), &Device::flex())
        .try_into_primitive::<Flex>()
        .expect("a flex tensor is a flex primitive")
}

/// Trilinear ×2 of `x` (autodiff over flex, f32: [`covers`]) as a custom
/// node: forward by the slice kernel (Burn's bits), backward by its adjoint
/// ([`upsample::trilinear_x2_adjoint`]) instead of Burn's scatter-adds.
/// `None` when `x` is not such a tensor, or when Burn's convolution is
/// chosen for training (then training keeps Burn's arithmetic throughout).
pub fn upsample_trilinear_x2(x: &Tensor<5>) -> Option<Tensor<5>> {
    if !covers(x) || super::cpu_conv_for_training().lanes().is_none() {
        return None;
    }
    let x_ad = x.clone().try_into_primitive::<Tracked>().ok()?;
    let dims @ [n, c, d, h, w] = x.dims();
    let up = |p: FloatTensor<Flex>| primitive(upsample::trilinear_x2(&values(p), dims), [n, c, 2 * d, 2 * h, 2 * w]);
    let out = match UpsampleNode.prepare::<NoCheckpointing>([x_ad.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let y = up(x_ad.primitive().clone());
            prep.finish(dims, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(up(x_ad.into_primitive())),
    };
    NODES.fetch_add(1, Ordering::Relaxed);
    Some(Tensor::<5>::from_primitive::<Tracked>(out))
}

#[derive(Debug)]
struct UpsampleNode;

impl Backward<Flex, 1> for UpsampleNode {
    /// The input's dims: all the adjoint needs.
    type State = [usize; 5];

    fn backward(self, ops: Ops<[usize; 5], 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node {
            let dims = ops.state;
            grads.register::<Flex>(node.id, primitive(upsample::trilinear_x2_adjoint(&values(grad), dims), dims));
        }
    }
}
