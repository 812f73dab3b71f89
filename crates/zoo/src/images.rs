//! Labelled image folders (foolbox's samples: `imagenet_00_243.jpg` is an ImageNet image of class
//! 243), decoded with the pure-Rust `image` crate.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use image::imageops::FilterType;

use crate::ZooError;
use crate::load::missing;

/// The images of a folder whose names start with a prefix, decoded to RGB, resized to
/// `size x size` and scaled to `[0, 1]`, with the label each file name ends with.
///
/// The resize is bilinear (`image`'s `FilterType::Triangle`, whose support widens when
/// shrinking, as PIL's `BILINEAR` does) on the 8-bit RGB image, straight to `size x size`
/// without keeping the aspect ratio, as foolbox's `samples` resizes (its ImageNet images are
/// square but one, 1024x683). Normalisation belongs to the model
/// ([`crate::EfficientNetLite0::preprocess`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFolder {
    /// The file names, sorted.
    pub names: Vec<String>,
    /// The label of each image, from its file name (`imagenet_00_243.jpg` -> 243).
    pub labels: Vec<usize>,
    /// The side of every image.
    pub size: usize,
    /// `[N, 3, size, size]`, row-major, in `[0, 1]`.
    pixels: Vec<f32>,
}

impl ImageFolder {
    /// Decode every `.jpg`, `.jpeg` or `.png` file of `dir` whose name is
    /// `{prefix}_{anything}_{label}.{ext}` (`prefix` `imagenet` selects foolbox's ImageNet
    /// images, `cifar10` its CIFAR-10 ones), in name order.
    ///
    /// # Errors
    /// - [`ZooError::MissingData`] (naming `cargo xtask fetch NAME`) when `dir` is a missing
    ///   `data/external/NAME/` folder, [`ZooError::Read`] when another `dir` cannot be listed or
    ///   holds no such file;
    /// - [`ZooError::Image`] naming a file that does not decode or whose name ends without a
    ///   label.
    ///
    /// # Panics
    /// If `size` is 0 (a programmer error).
    pub fn load(dir: &Path, size: usize, prefix: &str) -> Result<Self, ZooError> {
        assert!(size > 0, "image size must be positive");
        if !dir.exists() {
            return Err(missing(dir));
        }
        let read = |message: String| ZooError::Read {
            path: dir.to_path_buf(),
            message,
        };
        let start = format!("{prefix}_");
        let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
            .map_err(|e| read(e.to_string()))?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let ext = Path::new(&name).extension()?.to_str()?.to_ascii_lowercase();
                (name.starts_with(&start) && matches!(ext.as_str(), "jpg" | "jpeg" | "png"))
                    .then(|| (name, entry.path()))
            })
            .collect();
        if files.is_empty() {
            return Err(read(format!(
                "no image named '{start}*' (.jpg, .jpeg or .png)"
            )));
        }
        files.sort();
        let mut folder = Self {
            names: Vec::with_capacity(files.len()),
            labels: Vec::with_capacity(files.len()),
            size,
            pixels: Vec::with_capacity(files.len() * 3 * size * size),
        };
        for (name, path) in files {
            let label = label(&path)?;
            folder.pixels.extend(decode_image(&path, size)?);
            folder.names.push(name);
            folder.labels.push(label);
        }
        Ok(folder)
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none (never, for a loaded folder).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels, `[N, 3, size, size]` row-major, in `[0, 1]`.
    pub fn pixels(&self) -> &[f32] {
        &self.pixels
    }

    /// The images as a batch.
    ///
    /// # Shapes
    /// - output `[N, 3, size, size]`, in `[0, 1]`
    pub fn images(&self, device: &Device) -> Tensor<4> {
        Tensor::from_data(
            TensorData::new(self.pixels.clone(), [self.len(), 3, self.size, self.size]),
            device,
        )
    }

    /// The same images mirrored left to right (the same labels and names).
    pub fn flip(&self) -> Self {
        let size = self.size;
        let mut pixels = self.pixels.clone();
        for row in pixels.chunks_exact_mut(size) {
            row.reverse();
        }
        Self {
            names: self.names.clone(),
            labels: self.labels.clone(),
            size,
            pixels,
        }
    }
}

/// The label a file name ends with: `imagenet_00_243.jpg` -> 243.
fn label(path: &Path) -> Result<usize, ZooError> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    stem.rsplit_once('_')
        .and_then(|(_, label)| label.parse().ok())
        .ok_or_else(|| ZooError::Image {
            path: path.to_path_buf(),
            message: "the file name does not end with '_<label>'".into(),
        })
}

/// Decode one image file (JPEG or PNG, any colour type) to RGB, resize it bilinearly to
/// `size x size` (as [`ImageFolder`] does) and scale it to `[0, 1]`: `[3, size, size]`
/// row-major.
///
/// # Errors
/// [`ZooError::MissingData`] / [`ZooError::Read`] for a missing file (as [`ImageFolder::load`]),
/// [`ZooError::Image`] naming a file that cannot be read or decoded.
pub fn decode_image(path: &Path, size: usize) -> Result<Vec<f32>, ZooError> {
    if !path.exists() {
        return Err(missing(path));
    }
    let image_error = |message: String| ZooError::Image {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| image_error(e.to_string()))?;
    let format =
        image::guess_format(&bytes).map_err(|e| image_error(format!("does not decode: {e}")))?;
    // zune-jpeg (through `image`) decodes a truncated JPEG into a partly grey picture without
    // an error; PIL refuses it ("image file is truncated"), and so do we.
    if format == image::ImageFormat::Jpeg && !jpeg_is_complete(&bytes) {
        return Err(image_error(
            "does not decode: truncated JPEG (no end-of-image marker after the last scan)".into(),
        ));
    }
    let image = image::load_from_memory_with_format(&bytes, format)
        .map_err(|e| image_error(format!("does not decode: {e}")))?
        .into_rgb8();
    let side = u32::try_from(size).map_err(|_| image_error(format!("size {size} too large")))?;
    let image = if image.dimensions() == (side, side) {
        image
    } else {
        image::imageops::resize(&image, side, side, FilterType::Triangle)
    };
    let plane = size * size;
    let mut out = vec![0.0f32; 3 * plane];
    for (i, pixel) in image.pixels().enumerate() {
        for (c, &v) in pixel.0.iter().enumerate() {
            out[c * plane + i] = f32::from(v) / 255.0;
        }
    }
    Ok(out)
}

/// Whether a JPEG stream has its end-of-image marker (`FF D9`) after its last start-of-scan
/// (`FF DA`). Inside entropy-coded data a literal `FF` is stuffed as `FF 00`, so both markers
/// are found only where they are markers (an EXIF thumbnail's EOI comes before the first scan).
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xFF, marker]);
    matches!((last(0xDA), last(0xD9)), (Some(sos), Some(eoi)) if eoi > sos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_is_the_last_underscore_field_of_the_name() {
        assert_eq!(label(Path::new("d/imagenet_00_243.jpg")).unwrap(), 243);
        assert_eq!(label(Path::new("cifar10_19_6.png")).unwrap(), 6);
        let err = label(Path::new("d/imagenet_00_cat.jpg")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image 'd/imagenet_00_cat.jpg': the file name does not end with '_<label>'"
        );
    }

    #[test]
    fn a_jpeg_is_complete_when_its_end_marker_follows_its_last_scan() {
        assert!(jpeg_is_complete(&[
            0xFF, 0xD8, 0xFF, 0xDA, 1, 0xFF, 0, 2, 0xFF, 0xD9
        ]));
        assert!(!jpeg_is_complete(&[0xFF, 0xD8, 0xFF, 0xDA, 1, 0xFF, 0, 2]));
        // A thumbnail's end marker before the main scan does not count.
        assert!(!jpeg_is_complete(&[
            0xFF, 0xD8, 0xFF, 0xD9, 0xFF, 0xDA, 1, 2
        ]));
    }

    #[test]
    fn flip_mirrors_each_row() {
        let folder = ImageFolder {
            names: vec!["a_0_1.png".into()],
            labels: vec![1],
            size: 2,
            pixels: (0..12).map(|v| v as f32).collect(),
        };
        assert_eq!(
            folder.flip().pixels,
            [1., 0., 3., 2., 5., 4., 7., 6., 9., 8., 11., 10.]
        );
    }
}
