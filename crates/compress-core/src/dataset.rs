//! The bundled image datasets (MNIST-5k, UCI digits) and their deterministic split.

use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::{CompressError, Result};

/// Grayscale images with labels, in memory, pixels scaled to `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDataset {
    /// `len * height * width` pixels, row-major.
    pub pixels: Vec<f32>,
    /// One label per image.
    pub labels: Vec<u8>,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
}

impl ImageDataset {
    /// Load a safetensors file with `images` (u8 `[N, H, W]`) and `labels` (u8 `[N]`), dividing
    /// pixels by `max_pixel` (255 for MNIST, 16 for UCI digits).
    ///
    /// # Errors
    /// [`CompressError::Io`] or [`CompressError::InvalidDataset`] naming what is missing.
    pub fn load(path: impl AsRef<Path>, max_pixel: f32) -> Result<Self> {
        let path = path.as_ref();
        let bytes = crate::error::fs::read(path)?;
        let invalid = |message: String| CompressError::InvalidDataset {
            path: path.to_path_buf(),
            message,
        };
        let file = SafeTensors::deserialize(&bytes).map_err(|e| invalid(e.to_string()))?;
        let images = file
            .tensor("images")
            .map_err(|e| invalid(format!("'images': {e}")))?;
        let labels = file
            .tensor("labels")
            .map_err(|e| invalid(format!("'labels': {e}")))?;
        if images.dtype() != Dtype::U8 || labels.dtype() != Dtype::U8 {
            return Err(invalid("'images' and 'labels' must be u8".into()));
        }
        let (n, height, width) = match images.shape() {
            [n, h, w] => (*n, *h, *w),
            other => {
                return Err(invalid(format!(
                    "'images' must be [N, H, W], found {other:?}"
                )));
            }
        };
        if labels.shape() != [n] {
            return Err(invalid(format!(
                "'labels' must be [{n}], found {:?}",
                labels.shape()
            )));
        }
        Ok(Self {
            pixels: images
                .data()
                .iter()
                .map(|&p| p as f32 / max_pixel)
                .collect(),
            labels: labels.data().to_vec(),
            height,
            width,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images whose index `i` satisfies `keep(i)`.
    pub fn filter(&self, keep: impl Fn(usize) -> bool) -> Self {
        let size = self.height * self.width;
        let mut out = Self {
            pixels: Vec::new(),
            labels: Vec::new(),
            height: self.height,
            width: self.width,
        };
        for i in (0..self.len()).filter(|&i| keep(i)) {
            out.pixels
                .extend_from_slice(&self.pixels[i * size..(i + 1) * size]);
            out.labels.push(self.labels[i]);
        }
        out
    }

    /// The images in the given order (indices may repeat or be a subset).
    pub fn filter_ordered(&self, order: &[usize]) -> Self {
        let size = self.height * self.width;
        let mut out = Self {
            pixels: Vec::with_capacity(order.len() * size),
            labels: Vec::with_capacity(order.len()),
            height: self.height,
            width: self.width,
        };
        for &i in order {
            out.pixels
                .extend_from_slice(&self.pixels[i * size..(i + 1) * size]);
            out.labels.push(self.labels[i]);
        }
        out
    }

    /// The project's split: test = `index % 5 == 4`, train = the rest (4000 / 1000 for MNIST-5k).
    pub fn split(&self) -> (Self, Self) {
        (self.filter(|i| i % 5 != 4), self.filter(|i| i % 5 == 4))
    }

    /// Images `[start, end)` as a `[B, 1, H, W]` tensor and their labels as `[B]`.
    ///
    /// # Panics
    /// If `start > end` or `end > len()` (a programmer error).
    pub fn batch(&self, start: usize, end: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let size = self.height * self.width;
        let images = TensorData::new(
            self.pixels[start * size..end * size].to_vec(),
            [end - start, 1, self.height, self.width],
        );
        let labels: Vec<i64> = self.labels[start..end].iter().map(|&l| l as i64).collect();
        (
            Tensor::from_data(images, device),
            Tensor::from_data(TensorData::new(labels, [end - start]), device),
        )
    }
}
