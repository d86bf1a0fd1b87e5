//! Training data for distillation: each volume on the teacher's grid with
//! its hard labels and the teacher's cached outputs, and random patches cut
//! from them.

use rand::rngs::StdRng;
use rand::RngExt;

use super::augment::{Background, Grid, Sample};
use super::teacher::TeacherTargets;
#[cfg(not(target_arch = "wasm32"))]
pub use files::prepare_volumes;

/// One training volume, ready to cut patches from.
pub struct PreparedVolume {
    pub name: String,
    /// Padded teacher-grid dims (x fastest), multiples of 16.
    pub dims: [usize; 3],
    pub image: Vec<f32>,
    /// Hard label per voxel: the independent mask, else the teacher's argmax.
    pub labels: Vec<u8>,
    pub has_mask: bool,
    pub teacher: TeacherTargets,
    /// Indices of foreground voxels, for foreground-centred patches.
    foreground: Vec<usize>,
    /// The image's air and statistics, for the field-of-view augmentation.
    pub background: Background,
}

/// Reading the training volumes of a recipe from files (native: the CLI).
#[cfg(not(target_arch = "wasm32"))]
mod files {
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use sha2::{Digest, Sha256};

use super::{argmax, PreparedVolume};
use crate::distill::config::{expand_data_path, TrainingVolume};
use crate::distill::teacher::{run_teacher, TeacherTargets};
use crate::distill::DistillError;
use crate::inference::preprocess::{labels_to_model, prepare_each, Prepared};
use crate::model::manifest::Preprocessing;
use crate::model::Model;
use crate::volume::{read_nifti, read_nifti_file};

/// What a cached teacher output is keyed by: the volume's and the teacher's
/// bytes, and the axis order (HD-BET's own "zyx" adds nothing, so caches made
/// before other orders existed stay valid).
fn cache_key(volume: &[u8], teacher_weights: &[u8], axis_order: &str) -> String {
    let mut h = Sha256::new();
    h.update(volume);
    h.update(Sha256::digest(teacher_weights));
    if axis_order != "zyx" {
        h.update(axis_order.as_bytes());
    }
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Prepares every training volume in the student's `axis_order` (the teacher
/// sees it the same way round) and `normalisation` (the teacher keeps its
/// own); the teacher runs only for volumes whose outputs are not in
/// `cache_dir` yet. `log` hears about each volume.
pub fn prepare_volumes(
    volumes: &[TrainingVolume],
    axis_order: &str,
    normalisation: &str,
    teacher: &Model,
    teacher_dir: &Path,
    cache_dir: &Path,
    device: &Device,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<PreparedVolume>, DistillError> {
    std::fs::create_dir_all(cache_dir).map_err(|e| DistillError::io(cache_dir, e))?;
    let weights_path = teacher_dir.join("weights.safetensors");
    let weights = std::fs::read(&weights_path).map_err(|e| DistillError::io(&weights_path, e))?;
    let network = teacher.networks().next().expect("a model has a network");
    let pre = &Preprocessing { axis_order: axis_order.to_string(), ..teacher.manifest.preprocessing.clone() };
    let mut out = Vec::with_capacity(volumes.len());
    for v in volumes {
        let path = expand_data_path(&v.image);
        let bytes = std::fs::read(&path).map_err(|e| DistillError::io(&path, e))?;
        // Parse the bytes already read for the cache key, not the file a second time.
        let volume = read_nifti(&bytes).map_err(|e| DistillError::Volume(format!("{}: {e}", path.display())))?;
        // The teacher's view and the student's share the grid (spacing, axis
        // order, padding); only the intensities may differ.
        let [prepared, student_view]: [Prepared; 2] = prepare_each(&volume, pre, &[&pre.normalisation, normalisation])
            .map_err(|e| DistillError::Volume(format!("{}: {e}", path.display())))?
            .try_into()
            .expect("one view per normalisation");
        let cache = cache_dir.join(format!("{}.safetensors", cache_key(&bytes, &weights, axis_order)));
        let name = file_stem(&path);
        let teacher_out = if cache.is_file() {
            log(&format!("{name}: teacher outputs from cache {}", cache.display()));
            TeacherTargets::load(&cache)?
        } else {
            let t0 = std::time::Instant::now();
            let t = run_teacher(network, &prepared, device);
            t.save(&cache)?;
            log(&format!("{name}: teacher ran in {:.1} s, cached", t0.elapsed().as_secs_f64()));
            t
        };
        if teacher_out.logits.dims != prepared.padded_dims {
            return Err(DistillError::cache(&cache, "cached grid does not match the volume"));
        }
        let (labels, has_mask) = match &v.mask {
            Some(mask) => (mask_on_grid(&expand_data_path(mask), &volume.dims, &prepared)?, true),
            None => (argmax(&teacher_out.logits), false),
        };
        out.push(PreparedVolume::new(name, prepared.padded_dims, student_view.data, labels, has_mask, teacher_out));
    }
    Ok(out)
}

fn file_stem(p: &Path) -> String {
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.trim_end_matches(".gz").trim_end_matches(".nii").to_string()
}

/// An independent mask (> 0 is brain), brought to the teacher's padded grid
/// the way HD-BET brings labels (order 0).
fn mask_on_grid(path: &PathBuf, native_dims: &[usize; 3], prepared: &Prepared) -> Result<Vec<u8>, DistillError> {
    let mask = read_nifti_file(path).map_err(|e| DistillError::Volume(format!("{}: {e}", path.display())))?;
    if &mask.dims != native_dims {
        return Err(DistillError::Volume(format!(
            "{}: mask grid {:?} differs from the image's {:?}",
            path.display(),
            mask.dims,
            native_dims
        )));
    }
    let binary: Vec<u8> = mask.data.iter().map(|&v| (v > 0.0) as u8).collect();
    Ok(labels_to_model(&binary, mask.dims, prepared))
}

}

/// Most probable class per voxel of channel-major logits.
pub fn argmax(logits: &Grid) -> Vec<u8> {
    let n: usize = logits.dims.iter().product();
    (0..n)
        .map(|i| {
            let mut best = 0;
            for c in 1..logits.channels {
                if logits.data[c * n + i] > logits.data[best * n + i] {
                    best = c;
                }
            }
            best as u8
        })
        .collect()
}

/// Copies the box `start .. start + size` of each of `channels` volumes of
/// `dims` stored back to back (x fastest).
pub fn crop<T: Copy>(data: &[T], dims: [usize; 3], channels: usize, start: [usize; 3], size: [usize; 3]) -> Vec<T> {
    let [nx, ny, nz] = dims;
    let n = nx * ny * nz;
    let mut out = Vec::with_capacity(channels * size.iter().product::<usize>());
    for c in 0..channels {
        for z in start[2]..start[2] + size[2] {
            for y in start[1]..start[1] + size[1] {
                let row = c * n + (z * ny + y) * nx + start[0];
                out.extend_from_slice(&data[row..row + size[0]]);
            }
        }
    }
    out
}

fn crop_grid(g: &Grid, start: [usize; 3], size: [usize; 3]) -> Grid {
    Grid { dims: size, channels: g.channels, data: crop(&g.data, g.dims, g.channels, start, size) }
}

/// Indices of the voxels labelled other than background.
fn foreground_of(labels: &[u8]) -> Vec<usize> {
    labels.iter().enumerate().filter(|(_, &l)| l > 0).map(|(i, _)| i).collect()
}

impl PreparedVolume {
    pub fn new(name: String, dims: [usize; 3], image: Vec<f32>, labels: Vec<u8>, has_mask: bool, teacher: TeacherTargets) -> Self {
        let foreground = foreground_of(&labels);
        let background = Background::measure(&image, &labels);
        Self { name, dims, image, labels, has_mask, teacher, foreground, background }
    }

    /// Another teacher's logits (on this grid) become the soft targets; a
    /// volume without a mask takes that teacher's argmax as its hard labels.
    pub fn teach(&mut self, logits: Grid) {
        assert_eq!(logits.dims, self.dims, "the teacher's logits on this volume's grid");
        if !self.has_mask {
            self.labels = argmax(&logits);
            self.foreground = foreground_of(&self.labels);
            self.background = Background::measure(&self.image, &self.labels);
        }
        self.teacher.logits = logits;
    }

    /// A random patch of `size` (storage order), starting on multiples of 16
    /// so the teacher's coarse grids tile it; centred on a foreground voxel
    /// with probability `foreground_fraction`. Target channels: the teacher's
    /// logits, then the one-hot hard labels.
    pub fn random_patch(&self, size: [usize; 3], foreground_fraction: f64, rng: &mut StdRng) -> Sample {
        let centre: [usize; 3] = if !self.foreground.is_empty() && rng.random_bool(foreground_fraction) {
            let i = self.foreground[rng.random_range(0..self.foreground.len())];
            [i % self.dims[0], (i / self.dims[0]) % self.dims[1], i / (self.dims[0] * self.dims[1])]
        } else {
            std::array::from_fn(|a| rng.random_range(0..self.dims[a]))
        };
        let start: [usize; 3] = std::array::from_fn(|a| {
            let max = self.dims[a].saturating_sub(size[a]);
            let s = centre[a].saturating_sub(size[a] / 2).min(max);
            (s / 16) * 16
        });
        self.patch_at(start, size)
    }

    /// The first storage axis's columns where the held-out part starts when
    /// `fraction` of the volume is kept out of training (a multiple of 16,
    /// leaving at least `min_train` columns to train on).
    pub fn hold_out_start(&self, fraction: f64, min_train: usize) -> usize {
        let keep = (self.dims[0] as f64 * (1.0 - fraction.clamp(0.0, 1.0))).round() as usize;
        (keep / 16 * 16).max(min_train.div_ceil(16) * 16).min(self.dims[0])
    }

    /// The part of the volume before column `split` of the first storage
    /// axis (a multiple of 16): what trains when the rest is held out.
    pub fn training_part(&self, split: usize) -> PreparedVolume {
        let size = [split, self.dims[1], self.dims[2]];
        let image = crop(&self.image, self.dims, 1, [0; 3], size);
        let labels = crop(&self.labels, self.dims, 1, [0; 3], size);
        let part = |g: &Grid| {
            let stride = self.dims[0] / g.dims[0];
            crop_grid(g, [0; 3], size.map(|s| s / stride))
        };
        let t = &self.teacher;
        let teacher = TeacherTargets { logits: part(&t.logits), encoder: part(&t.encoder), bottleneck: part(&t.bottleneck), decoder: part(&t.decoder) };
        PreparedVolume::new(self.name.clone(), size, image, labels, self.has_mask, teacher)
    }

    /// The patch at `start` (multiples of 16) of `size`.
    pub fn patch_at(&self, start: [usize; 3], size: [usize; 3]) -> Sample {
        let image = crop(&self.image, self.dims, 1, start, size);
        let labels = crop(&self.labels, self.dims, 1, start, size);
        let logits = crop_grid(&self.teacher.logits, start, size);
        let classes = logits.channels;
        let mut target = logits.data;
        for c in 0..classes {
            target.extend(labels.iter().map(|&l| (l as usize == c) as u8 as f32));
        }
        let coarse = [&self.teacher.encoder, &self.teacher.bottleneck, &self.teacher.decoder]
            .iter()
            .map(|g| {
                let stride = self.dims[0] / g.dims[0];
                crop_grid(g, start.map(|s| s / stride), size.map(|s| s / stride))
            })
            .collect();
        Sample { dims: size, image, channels: 2 * classes, target, coarse }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_takes_the_right_box_in_every_channel() {
        let data: Vec<u32> = (0..48).collect();
        let c = crop(&data, [4, 3, 2], 2, [1, 1, 1], [2, 2, 1]);
        // Channel 0: z = 1 → base 12; rows y = 1, 2 → 16, 20; x = 1, 2.
        assert_eq!(c, vec![17, 18, 21, 22, 41, 42, 45, 46]);
    }

    #[test]
    fn argmax_picks_the_larger_logit() {
        let g = Grid { dims: [3, 1, 1], channels: 2, data: vec![1.0, -1.0, 0.0, 0.0, 2.0, 0.5] };
        assert_eq!(argmax(&g), vec![0, 1, 1]);
    }
}
