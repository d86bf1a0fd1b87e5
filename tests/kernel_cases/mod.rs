//! What the kernel tests share (natively and in Chromium): a test case's
//! geometry and the relative error they are judged by.
#![allow(dead_code)]

use bedside::kernels::Geometry;

/// `[c_in, c_out, size, kernel, stride, padding]` as a geometry of one
/// batch item, with uneven extents so that axis mix-ups show.
pub fn case_geometry(&[c_in, c_out, size, kernel, stride, padding]: &[usize; 6]) -> Geometry {
    Geometry {
        batch: 1,
        in_channels: c_in,
        out_channels: c_out,
        size: [size, size + 1, size + 2],
        kernel: [kernel; 3],
        stride: [stride; 3],
        padding: [padding; 3],
    }
}

/// The largest difference over the largest magnitude of the reference.
pub fn relative_error(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "sizes differ");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    got.iter().zip(want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}
