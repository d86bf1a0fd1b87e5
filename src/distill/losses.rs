//! The distillation losses, as plain tensor functions (so they differentiate
//! under Burn's autodiff and can be checked against hand-computed values).
//!
//! Shapes: logits and probabilities are `[batch, classes, d, h, w]`; feature
//! samples for the contrastive loss are `[samples, dim]`. Every loss returns a
//! one-element tensor.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::Tensor;

/// Hinton's response distillation: `T² · KL(softmax(z_t/T) ‖ softmax(z_s/T))`,
/// summed over classes and averaged over voxels (and the batch). The `T²`
/// keeps the gradient's size independent of the temperature.
pub fn kd_kl(student_logits: Tensor<5>, teacher_logits: Tensor<5>, temperature: f64) -> Tensor<1> {
    kd_kl_per_voxel(student_logits, teacher_logits, temperature).mean()
}

/// The same term before the mean: `[batch, 1, d, h, w]`, each voxel's
/// `T² · KL`. The teach room draws it to show where a student still disagrees.
pub fn kd_kl_per_voxel(student_logits: Tensor<5>, teacher_logits: Tensor<5>, temperature: f64) -> Tensor<5> {
    let t = temperature;
    let log_ps = log_softmax(student_logits / t, 1);
    let log_pt = log_softmax(teacher_logits / t, 1);
    let pt = log_pt.clone().exp();
    (pt * (log_pt - log_ps)).sum_dim(1).mul_scalar(t * t)
}

/// Cross-entropy against a one-hot (or soft) target, averaged over voxels.
pub fn cross_entropy(logits: Tensor<5>, target: Tensor<5>) -> Tensor<1> {
    let per_voxel = (target * log_softmax(logits, 1)).sum_dim(1).neg();
    per_voxel.mean()
}

/// Soft Dice loss: `1 − mean over classes of 2·Σ p·g / (Σ p + Σ g)`, each sum
/// over the whole batch (nnU-Net's batch Dice). `include_background` keeps
/// class 0 in the mean. `epsilon` keeps an absent class from dividing by zero.
pub fn dice_loss(logits: Tensor<5>, target: Tensor<5>, include_background: bool, epsilon: f64) -> Tensor<1> {
    let probs = softmax(logits, 1);
    let [b, c, d, h, w] = probs.dims();
    let first = if include_background { 0 } else { 1 };
    let flat = |x: Tensor<5>| x.swap_dims(0, 1).reshape([c, b * d * h * w]).slice([first..c]);
    let (p, g) = (flat(probs), flat(target));
    let intersection = (p.clone() * g.clone()).sum_dim(1);
    let sizes = p.sum_dim(1) + g.sum_dim(1);
    let dice = (intersection * 2.0 + epsilon) / (sizes + epsilon);
    dice.mean().neg() + 1.0
}

/// InfoNCE between paired feature samples: row `i` of `student` should be most
/// similar (cosine, divided by `temperature`) to row `i` of `teacher` among all
/// teacher rows. The mean over rows of `−log softmax(similarities)[i, i]`.
pub fn info_nce(student: Tensor<2>, teacher: Tensor<2>, temperature: f64) -> Tensor<1> {
    let n = student.dims()[0];
    let unit = |x: Tensor<2>| {
        let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
        x / norm
    };
    let similarities = unit(student).matmul(unit(teacher).transpose()) / temperature;
    let log_p = log_softmax(similarities, 1);
    let device = log_p.device();
    let identity = Tensor::<2>::eye(n, &device);
    (log_p * identity).sum().neg() / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn device() -> Device {
        Device::flex()
    }

    /// `[1, classes, voxels, 1, 1]` from per-voxel class vectors.
    fn voxels(values: &[&[f32]]) -> Tensor<5> {
        let (n, c) = (values.len(), values[0].len());
        let mut data = vec![0.0; n * c];
        for (v, classes) in values.iter().enumerate() {
            for (k, x) in classes.iter().enumerate() {
                data[k * n + v] = *x;
            }
        }
        Tensor::from_data(TensorData::new(data, [1, c, n, 1, 1]), &device())
    }

    fn scalar(t: Tensor<1>) -> f64 {
        t.into_scalar::<f32>() as f64
    }

    // Reference values computed by hand with numpy (softmax, log, sums).

    #[test]
    fn kd_kl_matches_hand_values_including_t_squared() {
        let ln3 = 3f32.ln();
        let s = voxels(&[&[0.0, 0.0]]);
        let t = voxels(&[&[ln3, 0.0]]);
        // T = 1: 0.75·ln(1.5) + 0.25·ln(0.5)
        assert!((scalar(kd_kl(s.clone(), t.clone(), 1.0)) - 0.130_812_036).abs() < 1e-6);
        // T = 2: KL at T = 2 is 0.036 341, times T² = 4
        assert!((scalar(kd_kl(s, t, 2.0)) - 0.145_363_131).abs() < 1e-6);
        // Three classes, and the mean over two voxels (the second agrees exactly: KL 0).
        let s = voxels(&[&[1.0, -1.0, 0.5], &[0.3, 0.1, 0.2]]);
        let t = voxels(&[&[0.2, 0.3, -0.4], &[0.3, 0.1, 0.2]]);
        assert!((scalar(kd_kl(s, t, 2.0)) - 0.476_838_472 / 2.0).abs() < 1e-6);
    }

    #[test]
    fn kd_kl_per_voxel_matches_hand_values() {
        // Voxel 0: student [0, 0], teacher [ln 3, 0]; at T = 2 the teacher's
        // soft targets are softmax([ln 3 / 2, 0]) = [√3/(1+√3), 1/(1+√3)]
        // = [0.633975, 0.366025] and the student's [0.5, 0.5]:
        // KL = 0.633975·ln(1.267949) + 0.366025·ln(0.732051) = 0.036341, × T² = 0.145363.
        // Voxel 1 agrees exactly: 0.
        let s = voxels(&[&[0.0, 0.0], &[0.3, -0.2]]);
        let t = voxels(&[&[3f32.ln(), 0.0], &[0.3, -0.2]]);
        let map = kd_kl_per_voxel(s, t, 2.0);
        assert_eq!(map.dims(), [1, 1, 2, 1, 1]);
        let v = map.into_data().try_to_vec::<f32>().unwrap();
        let hand = 0.633_975f64 * (0.633_975f64 / 0.5).ln() + 0.366_025f64 * (0.366_025f64 / 0.5).ln();
        assert!((v[0] as f64 - 4.0 * hand).abs() < 1e-5, "{} vs {}", v[0], 4.0 * hand);
        assert!(v[1].abs() < 1e-7);
    }

    #[test]
    fn cross_entropy_matches_hand_values() {
        // −ln softmax([ln 3, 0])[0] = ln(4/3); −ln softmax([0, 0])[1] = ln 2
        let logits = voxels(&[&[3f32.ln(), 0.0], &[0.0, 0.0]]);
        let target = voxels(&[&[1.0, 0.0], &[0.0, 1.0]]);
        let expected = ((4.0f64 / 3.0).ln() + 2f64.ln()) / 2.0;
        assert!((scalar(cross_entropy(logits, target)) - expected).abs() < 1e-6);
    }

    #[test]
    fn dice_loss_matches_hand_values() {
        // Foreground probabilities 0.9, 0.2, 0.6, 0.1 against labels 1, 0, 1, 0.
        let fg = [0.9f32, 0.2, 0.6, 0.1];
        let logits: Vec<[f32; 2]> = fg.iter().map(|&p| [0.0, (p / (1.0 - p)).ln()]).collect();
        let rows: Vec<&[f32]> = logits.iter().map(|r| r.as_slice()).collect();
        let target = voxels(&[&[0.0, 1.0], &[1.0, 0.0], &[0.0, 1.0], &[1.0, 0.0]]);
        let x = voxels(&rows);
        // 1 − 2·1.5 / (1.8 + 2) = 0.210 526
        assert!((scalar(dice_loss(x.clone(), target.clone(), false, 0.0)) - 0.210_526_316).abs() < 1e-6);
        // with the background class too: 0.200 501
        assert!((scalar(dice_loss(x, target, true, 0.0)) - 0.200_501_253).abs() < 1e-6);
    }

    #[test]
    fn info_nce_matches_hand_values() {
        let d = device();
        let s = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0], [2, 2]), &d);
        let t = Tensor::<2>::from_data(TensorData::new(vec![2.0f32, 0.0, 1.0, 1.0], [2, 2]), &d);
        // cosines [[1, 0.7071], [0, 0.7071]] / 0.5, then −log of the diagonal's softmax share
        assert!((scalar(info_nce(s, t, 0.5)) - 0.330_084_650).abs() < 1e-5);
    }
}
