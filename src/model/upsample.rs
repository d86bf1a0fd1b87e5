//! Trilinear ×2 upsampling with `align_corners = True`, as PyTorch's
//! `F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=True)`.
//!
//! Burn 0.22 ships only 1D/2D interpolation, so the 3D case is written here.
//! Trilinear interpolation is separable: it is three 1D linear interpolations,
//! one per spatial axis. Each is two `select`s (the left and right neighbour)
//! blended by a per-position weight, which works on every backend and keeps
//! memory to a few copies of the (growing) tensor.

use burn::tensor::{Int, Tensor, TensorData};

/// Upsamples the three spatial axes of `[batch, channels, d, h, w]` by two.
/// Inference on the CPU takes the slice version (`kernels::upsample`), the
/// same arithmetic in fewer passes; training on the CPU takes it too, with
/// its adjoint as backward pass, unless Burn's convolution is chosen for
/// training; WebGPU takes [`burn_trilinear_x2`].
pub fn upsample_trilinear_x2(x: Tensor<5>) -> Tensor<5> {
    if crate::kernels::untracked_cpu_f32(&x) {
        return crate::kernels::upsample_trilinear_x2(x);
    }
    crate::kernels::tracked::upsample_trilinear_x2(&x).unwrap_or_else(|| burn_trilinear_x2(x))
}

/// The same in Burn operations: differentiable, and on any backend.
pub fn burn_trilinear_x2(x: Tensor<5>) -> Tensor<5> {
    let x = upsample_axis_x2(x, 2);
    let x = upsample_axis_x2(x, 3);
    upsample_axis_x2(x, 4)
}

/// Linear ×2 interpolation along one axis with corner alignment: output index
/// `i` samples input position `i * (n - 1) / (2n - 1)`.
fn upsample_axis_x2(x: Tensor<5>, axis: usize) -> Tensor<5> {
    let n = x.dims()[axis];
    let m = 2 * n;
    let device = x.device();
    let (left, right, weight) = align_corners_taps(n, m);

    let left = Tensor::<1, Int>::from_data(TensorData::new(left, [m]), &device);
    let right = Tensor::<1, Int>::from_data(TensorData::new(right, [m]), &device);
    let mut shape = [1usize; 5];
    shape[axis] = m;
    let weight = Tensor::<1>::from_data(TensorData::new(weight, [m]), &device).reshape(shape);

    let a = x.clone().select(axis, left);
    let b = x.select(axis, right);
    // a + (b - a) * w: one fewer full-size temporary than a*(1-w) + b*w.
    a.clone() + (b - a) * weight
}

/// Left tap, right tap and right weight for each of `m` outputs over `n` inputs.
pub(crate) fn align_corners_taps(n: usize, m: usize) -> (Vec<i64>, Vec<i64>, Vec<f32>) {
    let mut left = Vec::with_capacity(m);
    let mut right = Vec::with_capacity(m);
    let mut weight = Vec::with_capacity(m);
    let scale = if m > 1 { (n - 1) as f64 / (m - 1) as f64 } else { 0.0 };
    for i in 0..m {
        let src = i as f64 * scale;
        let l = (src.floor() as usize).min(n - 1);
        let r = (l + 1).min(n - 1);
        left.push(l as i64);
        right.push(r as i64);
        weight.push((src - l as f64) as f32);
    }
    (left, right, weight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn taps_hit_both_corners_exactly() {
        let (l, r, w) = align_corners_taps(4, 8);
        assert_eq!((l[0], w[0]), (0, 0.0));
        assert_eq!(l[7] as usize + (w[7] > 0.0) as usize, 3);
        assert!(r.iter().all(|&i| i < 4));
        // position 1 samples 3/7 of the way from input 0 to input 1
        assert!((w[1] - 3.0 / 7.0).abs() < 1e-6);
    }

    #[test]
    fn matches_pytorch_on_a_ramp() {
        // A linear ramp stays a linear ramp under align_corners interpolation:
        // value at output i of a 0..n-1 ramp is i*(n-1)/(2n-1).
        let device = Device::flex();
        let data: Vec<f32> = (0..3).map(|v| v as f32).collect();
        let x = Tensor::<1>::from_data(TensorData::new(data, [3]), &device).reshape([1, 1, 1, 1, 3]);
        let y = upsample_trilinear_x2(x);
        assert_eq!(y.dims(), [1, 1, 2, 2, 6]);
        let v: Vec<f32> = y.into_data().try_into_vec().unwrap();
        for (i, got) in v[..6].iter().enumerate() {
            let want = i as f32 * 2.0 / 5.0;
            assert!((got - want).abs() < 1e-6, "{i}: {got} vs {want}");
        }
    }
}
