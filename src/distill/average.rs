//! An exponential moving average of the student's weights (Polyak averaging,
//! as in "mean teacher" and SWA-style training): the package a run writes can
//! be the average of the weights over its last few hundred steps rather than
//! the last step's, which with batch-1 patches and four training volumes moves
//! from step to step more than the loss curve suggests.
//!
//! Burn has no weight-averaging helper for modules, so this walks the module
//! twice: once to read the current weights (`transfer::flat_params`), once
//! with a mapper to blend them into the average (both visit parameters in the
//! same order).

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;
#[cfg(not(target_arch = "wasm32"))]
use burn_store::{BurnpackStore, ModuleSnapshot};
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

#[cfg(not(target_arch = "wasm32"))]
use super::DistillError;
use crate::model::transfer::flat_params;
use crate::model::Network;

/// The running average; `decay` is the weight of the old average per step.
#[derive(Clone)]
pub struct WeightAverage {
    decay: f64,
    average: Network,
}

impl WeightAverage {
    /// Starts the average at `start` (a network without autodiff).
    pub fn new(decay: f64, start: Network) -> Self {
        Self { decay, average: start }
    }

    /// average ← decay · average + (1 − decay) · current, parameter by parameter.
    pub fn update(&mut self, current: &Network) {
        let mut blend = Blend { decay: self.decay, current: flat_params(current).into_iter() };
        self.average = self.average.clone().map(&mut blend);
        assert!(blend.current.next().is_none(), "the average and the student have the same parameters");
    }

    pub fn network(&self) -> &Network {
        &self.average
    }

    /// Kept with the run's checkpoint, so a resumed run averages on.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save(&self, path: &Path) -> Result<(), DistillError> {
        self.average.save_into(&mut BurnpackStore::from_file(path).overwrite(true)).map_err(|e| DistillError::cache(path, e))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(&mut self, path: &Path) -> Result<(), DistillError> {
        self.average.load_from(&mut BurnpackStore::from_file(path)).map(|_| ()).map_err(|e| DistillError::cache(path, e))
    }
}

/// Every float weight of a network, in visiting order.
#[cfg(test)]
pub fn flat_weights(network: &Network) -> Vec<f32> {
    flat_params(network).into_iter().flat_map(|t| t.into_data().try_to_vec::<f32>().expect("float weights")).collect()
}

struct Blend<I: Iterator<Item = Tensor<1>>> {
    decay: f64,
    current: I,
}

impl<I: Iterator<Item = Tensor<1>>> ModuleMapper for Blend<I> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let current = self.current.next().expect("the average and the student have the same parameters");
        let decay = self.decay;
        param.map(|average| {
            let dims = average.dims();
            average.mul_scalar(decay).add(current.reshape(dims).mul_scalar(1.0 - decay))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::unet3d::Unet3dConfig;
    use burn::tensor::Device;

    #[test]
    fn the_average_blends_each_weight_by_the_decay() {
        let device = Device::default();
        let config = Unet3dConfig::new().with_base_filters(2).with_depth(2);
        let a = Network::Unet3d(config.init(&device));
        let b = Network::Unet3d(config.init(&device));
        let (wa, wb) = (flat_weights(&a), flat_weights(&b));
        assert_eq!(wa.len(), b.num_params());
        assert!(wa.iter().zip(&wb).any(|(x, y)| x != y), "two initialisations differ");

        // Two updates with decay 0.75: 0.75² a + (0.25·0.75 + 0.25) b.
        let mut average = WeightAverage::new(0.75, a);
        average.update(&b);
        average.update(&b);
        let got = flat_weights(average.network());
        for ((x, y), g) in wa.iter().zip(&wb).zip(&got) {
            let want = 0.5625 * x + 0.4375 * y;
            assert!((g - want).abs() < 1e-6, "{g} against {want}");
        }
        // Decay 0 is the current weights.
        let mut last = WeightAverage::new(0.0, average.network().clone());
        last.update(&b);
        assert_eq!(flat_weights(last.network()), wb);
    }
}
