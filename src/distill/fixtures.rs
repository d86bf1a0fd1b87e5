//! A synthetic head and a small random teacher, for tests of the trainer on
//! every target: the native unit tests and the wasm tests in Chromium train
//! on exactly this, from the same seed, and must log the same losses.

use burn::tensor::Device;

use super::lockstep::{prepare_volume, RoomVolume};
use super::teach_setup::TeachSetup;
use crate::model::unet3d::Unet3dConfig;
use crate::model::{Manifest, Model, Network};
use crate::volume::Volume;

/// Grid of the toy head (x, y, z), at the teacher's 1.5 mm so nothing is resampled.
pub const DIMS: [usize; 3] = [64, 32, 32];

/// A bright ellipsoid (the brain) in a darker shell, with a fixed pattern of noise.
pub fn toy_head() -> Volume {
    let [nx, ny, nz] = DIMS;
    let mut data = Vec::with_capacity(nx * ny * nz);
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let d = [(x as f64 - 31.5) / 2.0, y as f64 - 15.5, z as f64 - 15.5];
                let r = d.iter().map(|c| c * c).sum::<f64>().sqrt();
                let noise = (((x * 7919 + y * 104729 + z * 1299709) % 1000) as f32 / 1000.0 - 0.5) * 0.3;
                data.push(if r < 9.0 { 1.0 } else if r < 13.0 { -0.5 } else { -1.0 } + noise);
            }
        }
    }
    let affine = [[1.5, 0.0, 0.0, 0.0], [0.0, 1.5, 0.0, 0.0], [0.0, 0.0, 1.5, 0.0], [0.0, 0.0, 0.0, 1.0]];
    Volume::from_array(DIMS, [1.5; 3], affine, data).expect("consistent toy volume")
}

/// A random, seeded unet3d as teacher, packaged as student-s is (stored
/// order "zyx"), four levels deep so its bottleneck lies at 1/16 like
/// HD-BET's. Its normalisation is pinned to HD-BET's plain z-score rather
/// than taken from student-s, so retraining a shipped student does not move
/// the recorded losses below.
pub fn toy_teacher(device: &Device) -> Model {
    let mut manifest: Manifest =
        serde_json::from_str(include_str!("../../models/student-s/model.json")).expect("student-s's manifest parses");
    let cfg = Unet3dConfig::new().with_base_filters(2).with_depth(4).with_instance_norm(false);
    manifest.id = "toy-teacher".into();
    manifest.name = "toy teacher (random weights)".into();
    manifest.hyperparameters = serde_json::to_value(&cfg).expect("config serialises");
    manifest.preprocessing.axis_order = "zyx".into();
    manifest.preprocessing.normalisation = "zscore".into();
    // Windows no larger than the head, so the grid is not padded out to 128³.
    manifest.preprocessing.patch_size = [32, 32, 32];
    manifest.training = None;
    device.seed(3);
    let network = Network::Unet3d(cfg.init(device));
    manifest.params = network.num_params() as u64;
    Model { manifest, network, members: Vec::new(), weights_sha256: None }
}

/// The room's data for the toy head and teacher, on `device`.
pub async fn toy_room_volume(device: &Device) -> RoomVolume {
    let teacher = toy_teacher(device);
    prepare_volume(&toy_head(), &teacher, None, device).await.expect("the toy head prepares")
}

/// The setup the cross-target test trains with.
pub fn toy_setup() -> TeachSetup {
    TeachSetup { teacher: "toy-teacher".into(), student: "lecture".into(), seed: 5, steps: 40, ..TeachSetup::default() }
}

/// The KD student's total loss and the twin's over the first steps of
/// [`toy_setup`] on flex, as measured natively (`cargo test --lib
/// lockstep`); the wasm test in Chromium must give the same, within
/// [`LOSS_TOLERANCE`] (relative).
pub const EXPECTED_TOTALS: [[f64; 2]; 4] = [
    [1.997_927_904, 0.926_958_203],
    [1.977_589_369, 0.900_214_076],
    [1.935_671_806, 0.812_683_344],
    [1.904_563_427, 0.757_444_263],
];

/// Float sums in another order (wasm's SIMD128 against x86's AVX kernels)
/// move the fifth or sixth digit.
pub const LOSS_TOLERANCE: f64 = 1e-4;
