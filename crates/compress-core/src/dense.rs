//! A small host-side tensor used for metrics and masks.

use burn::tensor::{Tensor, TensorData};

use crate::{CompressError, Result};

/// A dense, row-major tensor on the host.
///
/// Metrics and masks are small next to the model and every rule that turns metrics into masks is
/// a sort, a sum or a comparison: doing them on the host keeps allocation exact and deterministic
/// on every backend. Conversions to and from Burn tensors are explicit.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense<T> {
    shape: Vec<usize>,
    data: Vec<T>,
}

impl<T> Dense<T> {
    /// Build a tensor from its shape and row-major values.
    ///
    /// # Panics
    /// If `data.len()` is not the product of `shape` (a programmer error).
    pub fn new(shape: Vec<usize>, data: Vec<T>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "Dense::new: {} values do not fill shape {shape:?}",
            data.len()
        );
        Self { shape, data }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values, row-major.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The values, row-major, mutable.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Take the values.
    pub fn into_data(self) -> Vec<T> {
        self.data
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The same values under another shape with as many elements.
    ///
    /// # Panics
    /// If the element counts differ (a programmer error).
    pub fn reshape(self, shape: Vec<usize>) -> Self {
        Self::new(shape, self.data)
    }

    /// A tensor of the same shape with `f` applied to every element.
    pub fn map<U>(&self, f: impl Fn(&T) -> U) -> Dense<U> {
        Dense::new(self.shape.clone(), self.data.iter().map(f).collect())
    }
}

impl<T: Clone> Dense<T> {
    /// A tensor filled with one value.
    pub fn full(shape: Vec<usize>, value: T) -> Self {
        let n = shape.iter().product();
        Self {
            shape,
            data: vec![value; n],
        }
    }
}

impl Dense<f32> {
    /// Read a Burn float tensor (of any float dtype) to the host.
    pub fn from_tensor<const D: usize>(tensor: Tensor<D>, path: &str) -> Result<Self> {
        Self::from_data(tensor.into_data(), path)
    }

    /// Convert Burn tensor data to `f32` values.
    pub fn from_data(data: TensorData, path: &str) -> Result<Self> {
        let shape = data.shape().to_vec();
        let values = data
            .try_into_vec_as::<f32>()
            .map_err(|e| CompressError::TensorData {
                path: path.to_string(),
                message: format!("{e:?}"),
            })?;
        Ok(Self::new(shape, values))
    }

    /// Move the values into a Burn tensor of rank `D` on `device`.
    ///
    /// # Panics
    /// If the rank is not `D` (a programmer error).
    pub fn to_tensor<const D: usize>(&self, device: &burn::tensor::Device) -> Tensor<D> {
        assert_eq!(self.shape.len(), D, "Dense::to_tensor: rank mismatch");
        Tensor::from_data(
            TensorData::new(self.data.clone(), self.shape.clone()),
            device,
        )
    }
}

/// Row-major strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}
