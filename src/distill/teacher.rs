//! The teacher's outputs for one training volume, computed once and cached:
//! the teacher is the expensive part of distillation (HD-BET: ~2 TFLOP per
//! volume), the students are cheap.
//!
//! The teacher sees the whole preprocessed volume in one pass, as HD-BET's
//! own code runs it (its instance norms take per-volume statistics). The
//! cache is a safetensors file: logits in f32, features in f16 (they feed a
//! contrastive loss through a projection, where f16's 3 digits are plenty,
//! and they are most of the bytes).

#[cfg(not(target_arch = "wasm32"))]
use std::{collections::HashMap, path::Path};

use burn::tensor::{Device, Tensor, TensorData};
#[cfg(not(target_arch = "wasm32"))]
use half::f16;
#[cfg(not(target_arch = "wasm32"))]
use safetensors::{tensor::{Dtype, TensorView}, SafeTensors};

use super::augment::Grid;
use super::DistillError;
use crate::inference::preprocess::Prepared;
use crate::model::Network;

/// Teacher logits at full resolution and its three feature taps.
#[derive(Debug, Clone, PartialEq)]
pub struct TeacherTargets {
    pub logits: Grid,
    pub encoder: Grid,
    pub bottleneck: Grid,
    pub decoder: Grid,
}

/// `[1, C, d, h, w]` → a channel-major, x-fastest grid of dims (w, h, d).
pub fn grid_from_tensor(t: Tensor<5>) -> Grid {
    let [_, c, d, h, w] = t.dims();
    let data = t.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 data");
    Grid { dims: [w, h, d], channels: c, data }
}

/// The same, read back asynchronously: WebGPU in a browser can only read
/// back that way (a sync read panics there).
pub async fn grid_from_tensor_async(t: Tensor<5>) -> Result<Grid, DistillError> {
    let [_, c, d, h, w] = t.dims();
    let data = t.into_data_async().await.map_err(|e| DistillError::Model(format!("reading back: {e:?}")))?;
    let data = data.convert::<f32>().try_to_vec::<f32>().map_err(|e| DistillError::Model(format!("reading back: {e:?}")))?;
    Ok(Grid { dims: [w, h, d], channels: c, data })
}

/// A grid as `[1, C, d, h, w]`.
pub fn tensor_from_grid(g: &Grid, device: &Device) -> Tensor<5> {
    let [w, h, d] = g.dims;
    Tensor::from_data(TensorData::new(g.data.clone(), [1, g.channels, d, h, w]), device)
}

/// Runs the teacher once on a whole preprocessed (padded) volume.
pub fn run_teacher(teacher: &Network, prepared: &Prepared, device: &Device) -> TeacherTargets {
    let image = Grid { dims: prepared.padded_dims, channels: 1, data: prepared.data.clone() };
    let taps = teacher.forward_taps(tensor_from_grid(&image, device));
    TeacherTargets {
        logits: grid_from_tensor(taps.logits),
        encoder: grid_from_tensor(taps.encoder),
        bottleneck: grid_from_tensor(taps.bottleneck),
        decoder: grid_from_tensor(taps.decoder),
    }
}

/// [`run_teacher`] on any device: in the tab the teacher may run on WebGPU.
pub async fn run_teacher_async(teacher: &Network, prepared: &Prepared, device: &Device) -> Result<TeacherTargets, DistillError> {
    let image = Grid { dims: prepared.padded_dims, channels: 1, data: prepared.data.clone() };
    let taps = teacher.forward_taps(tensor_from_grid(&image, device));
    Ok(TeacherTargets {
        logits: grid_from_tensor_async(taps.logits).await?,
        encoder: grid_from_tensor_async(taps.encoder).await?,
        bottleneck: grid_from_tensor_async(taps.bottleneck).await?,
        decoder: grid_from_tensor_async(taps.decoder).await?,
    })
}

/// `teacher`'s logits for `volume` on `target`'s grid (another model's
/// preparation of the same volume), so that a model can learn from a teacher
/// whose preprocessing differs: HD-BET is fed the file's axes reversed, the
/// students the closest-canonical RAS order. Both must resample to one
/// spacing; the two grids then differ by axis order and flips only, which
/// move voxels without interpolating logits (a flip commutes with the
/// resampling). The target's padding takes each channel's value at the
/// first corner of the volume: air, where the teacher is sure of background.
pub async fn teacher_logits_on(teacher: &crate::model::Model, volume: &crate::volume::Volume, target: &Prepared, device: &Device) -> Result<Grid, DistillError> {
    use crate::inference::preprocess::prepare;
    use crate::volume::{resample, Reorientation};
    let own = prepare(volume, &teacher.manifest.preprocessing).map_err(|e| DistillError::Volume(e.to_string()))?;
    if own.spacing != target.spacing {
        return Err(DistillError::Config(format!(
            "the teacher resamples to {:?} mm and the model to {:?} mm: a teacher for this model must work at its spacing",
            own.spacing, target.spacing
        )));
    }
    let reorient = |dims| Reorientation::to_ras(&volume.affine, dims).ok_or_else(|| DistillError::Volume("the image's affine gives no orientation".into()));
    // The teacher's storage order to the target's: RAS from the file's, or back.
    let mapping = match (own.reorientation.is_some(), target.reorientation.is_some()) {
        (false, true) => Some((reorient(own.resampled_dims)?, true)),
        (true, false) => Some((reorient(target.resampled_dims)?, false)),
        _ => None,
    };
    // The teacher's grid, moved, must be the target's (same spacing: it is, up to rounding).
    let fits = match &mapping {
        Some((r, true)) => r.dims() == target.resampled_dims,
        Some((r, false)) => r.dims() == own.resampled_dims,
        None => own.resampled_dims == target.resampled_dims,
    };
    if !fits {
        return Err(DistillError::Volume(format!("the teacher's grid {:?} does not map onto the model's {:?}", own.resampled_dims, target.resampled_dims)));
    }
    // Logits only: the feature taps would be read back for nothing (HD-BET's are large).
    let image = Grid { dims: own.padded_dims, channels: 1, data: own.data.clone() };
    let logits = grid_from_tensor_async(teacher.network.forward(tensor_from_grid(&image, device))).await?;
    let n = own.padded_dims.iter().product::<usize>();
    let mut data = Vec::with_capacity(logits.channels * target.padded_dims.iter().product::<usize>());
    for channel in logits.data.chunks_exact(n) {
        let values = resample::pad_or_crop(channel, own.padded_dims, own.resampled_dims, 0.0);
        let values = match &mapping {
            Some((r, true)) => r.apply(&values),
            Some((r, false)) => r.undo(&values),
            None => values,
        };
        let air = values[0];
        data.extend(resample::pad_upper(&values, target.resampled_dims, target.padded_dims, air));
    }
    Ok(Grid { dims: target.padded_dims, channels: logits.channels, data })
}

#[cfg(not(target_arch = "wasm32"))]
const NAMES: [&str; 4] = ["logits", "encoder", "bottleneck", "decoder"];

#[cfg(not(target_arch = "wasm32"))]
impl TeacherTargets {
    fn grids(&self) -> [&Grid; 4] {
        [&self.logits, &self.encoder, &self.bottleneck, &self.decoder]
    }

    pub fn save(&self, path: &Path) -> Result<(), DistillError> {
        let bytes: Vec<Vec<u8>> = self
            .grids()
            .iter()
            .enumerate()
            .map(|(i, g)| {
                if i == 0 {
                    g.data.iter().flat_map(|v| v.to_le_bytes()).collect()
                } else {
                    g.data.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect()
                }
            })
            .collect();
        let views: Vec<(&str, TensorView)> = self
            .grids()
            .iter()
            .zip(&bytes)
            .enumerate()
            .map(|(i, (g, b))| {
                let [w, h, d] = g.dims;
                let dtype = if i == 0 { Dtype::F32 } else { Dtype::F16 };
                let view = TensorView::new(dtype, vec![g.channels, d, h, w], b).expect("consistent shape");
                (NAMES[i], view)
            })
            .collect();
        let out = safetensors::serialize(views, None::<HashMap<String, String>>)
            .map_err(|e| DistillError::cache(path, e))?;
        // Write then rename, so an interrupted run never leaves a half cache.
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, out).and_then(|_| std::fs::rename(&tmp, path)).map_err(|e| DistillError::io(path, e))
    }

    pub fn load(path: &Path) -> Result<Self, DistillError> {
        let bytes = std::fs::read(path).map_err(|e| DistillError::io(path, e))?;
        let bad = |m: String| DistillError::cache(path, m);
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let grid = |name: &str| -> Result<Grid, DistillError> {
            let t = st.tensor(name).map_err(|e| bad(e.to_string()))?;
            let &[c, d, h, w] = t.shape() else { return Err(bad(format!("{name} is not [C, d, h, w]"))) };
            let data: Vec<f32> = match t.dtype() {
                Dtype::F32 => t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
                Dtype::F16 => t.data().chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
                other => return Err(bad(format!("{name} has dtype {other:?}"))),
            };
            Ok(Grid { dims: [w, h, d], channels: c, data })
        };
        Ok(Self { logits: grid("logits")?, encoder: grid("encoder")?, bottleneck: grid("bottleneck")?, decoder: grid("decoder")? })
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::model::unet3d::Unet3dConfig;

    #[test]
    fn cache_round_trips_with_f16_features() {
        let device = Device::flex();
        let net = Network::Unet3d(Unet3dConfig::new().with_base_filters(2).with_depth(2).init(&device));
        let prepared = Prepared {
            reorientation: None,
            resampled_dims: [8, 8, 4],
            padded_dims: [8, 8, 4],
            spacing: [1.5; 3],
            data: (0..256).map(|i| ((i * 37) % 11) as f32 / 5.0 - 1.0).collect(),
        };
        let targets = run_teacher(&net, &prepared, &device);
        assert_eq!(targets.logits.dims, [8, 8, 4]);
        assert_eq!(targets.logits.channels, 2);
        assert_eq!(targets.encoder.dims, [4, 4, 2]);
        assert_eq!(targets.bottleneck.dims, [2, 2, 1]);
        let dir = std::env::temp_dir().join(format!("bedside-teacher-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.safetensors");
        targets.save(&path).unwrap();
        let back = TeacherTargets::load(&path).unwrap();
        assert_eq!(back.logits, targets.logits, "logits are kept exactly");
        for (a, b) in [(&back.encoder, &targets.encoder), (&back.decoder, &targets.decoder)] {
            assert_eq!((a.dims, a.channels), (b.dims, b.channels));
            assert!(a.data.iter().zip(&b.data).all(|(x, y)| (x - y).abs() <= 1e-3 * y.abs().max(1.0)));
        }
        std::fs::write(&path, b"not a cache").unwrap();
        assert!(matches!(TeacherTargets::load(&path), Err(DistillError::Cache(_))));
        std::fs::remove_dir_all(&dir).ok();
    }
}
