//! A module's weights, read back asynchronously onto another device.
//!
//! Burn's `Module::to_device` and the safetensors store read a tensor back
//! synchronously, which WebGPU in the browser refuses (a teach room trained
//! on WebGPU could then neither export nor fall back to the CPU). Reading
//! each weight with `into_data_async` and rebuilding it on the target device
//! works on every backend; Burn has no async module transfer, hence this
//! visitor and mapper (both walk the parameters in the same order).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};
use super::package::module_to_safetensors;
use super::{ModelError, Network};

/// A copy of `module` whose weights live on `device`.
pub async fn copy_to<M: Module>(module: &M, device: &Device) -> Result<M, ModelError> {
    let params = flat_params(module);
    let mut data = Vec::with_capacity(params.len());
    for t in params {
        data.push(t.into_data_async().await.map_err(|e| ModelError::Weights(format!("reading the weights back: {e:?}")))?);
    }
    let mut put = Put { device, data: data.into_iter() };
    let copy = module.clone().map(&mut put);
    debug_assert!(put.data.next().is_none(), "every weight was put back");
    Ok(copy)
}

/// The weights as safetensors bytes, read back asynchronously first.
pub async fn to_safetensors_async(network: &Network) -> Result<Vec<u8>, ModelError> {
    copy_to(network, &Device::flex()).await?.to_safetensors()
}

/// Any module's weights as safetensors bytes (named by their module path),
/// read back asynchronously first.
pub async fn module_to_safetensors_async<M: Module>(module: &M) -> Result<Vec<u8>, ModelError> {
    module_to_safetensors(&copy_to(module, &Device::flex()).await?)
}

/// Every float parameter of `module`, flattened, in visiting order (the
/// order a `ModuleMapper` walks them in).
pub fn flat_params<M: Module>(module: &M) -> Vec<Tensor<1>> {
    let mut read = Read(Vec::new());
    module.visit(&mut read);
    read.0
}

struct Read(Vec<Tensor<1>>);

impl ModuleVisitor for Read {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        self.0.push(value.reshape([n]));
    }
}

struct Put<'a, I: Iterator<Item = TensorData>> {
    device: &'a Device,
    data: I,
}

impl<I: Iterator<Item = TensorData>> ModuleMapper for Put<'_, I> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let data = self.data.next().expect("the copy has the network's parameters");
        let device = self.device;
        param.map(|t| Tensor::<1>::from_data(data, device).reshape(t.dims()))
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::model::unet3d::Unet3dConfig;

    /// The copy holds the same weights: every tensor has the same name,
    /// shape and bytes.
    #[test]
    fn an_async_copy_keeps_every_weight() {
        let device = Device::flex();
        let network = Network::Unet3d(Unet3dConfig::new().with_base_filters(2).with_depth(2).init(&device));
        let (copied, direct) = (pollster::block_on(to_safetensors_async(&network)).unwrap(), network.to_safetensors().unwrap());
        let (a, b) = (safetensors::SafeTensors::deserialize(&copied).unwrap(), safetensors::SafeTensors::deserialize(&direct).unwrap());
        let mut names = a.names();
        names.sort();
        let mut want = b.names();
        want.sort();
        assert_eq!(names, want);
        for name in names {
            let (x, y) = (a.tensor(name).unwrap(), b.tensor(name).unwrap());
            assert_eq!((x.shape(), x.data()), (y.shape(), y.data()), "{name}");
        }
    }
}
