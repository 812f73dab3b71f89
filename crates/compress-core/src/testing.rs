//! Tiny seeded models and a test device, for tests of this and other crates
//! (feature `testing`).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

/// The CPU device tests run on.
pub fn test_device() -> Device {
    Device::flex()
}

/// A user-defined layer type with a parameter of its own.
#[derive(Module, Debug)]
pub struct Scale {
    /// One factor per channel, `[channels]`.
    pub factor: Param<Tensor<1>>,
}

/// A conv-bn block, used in a `Vec`.
#[derive(Module, Debug)]
pub struct Block {
    /// `Conv2d(4 -> 4, k3, pad 1)`.
    pub conv: Conv2d,
    /// BatchNorm(4).
    pub bn: BatchNorm,
}

/// Nested structs, a `Vec` of blocks, an `Option` layer and a user-defined layer type.
#[derive(Module, Debug)]
pub struct Nested {
    /// `Conv2d(1 -> 4, k3, pad 1)`.
    pub stem: Conv2d,
    /// Two blocks: paths `blocks.0.conv`, `blocks.1.bn`, ...
    pub blocks: Vec<Block>,
    /// Present: `Linear(4 -> 3)`.
    pub head: Option<Linear>,
    /// Absent.
    pub aux: Option<Linear>,
    /// A user type.
    pub scale: Scale,
}

impl Nested {
    /// Random weights on `device`.
    pub fn new(device: &Device) -> Self {
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Self {
            stem: conv(1, 4),
            blocks: (0..2)
                .map(|_| Block {
                    conv: conv(4, 4),
                    bn: BatchNormConfig::new(4).init(device),
                })
                .collect(),
            head: Some(LinearConfig::new(4, 3).init(device)),
            aux: None,
            scale: Scale {
                factor: Param::from_tensor(Tensor::ones([4], device)),
            },
        }
    }

    /// `[N, 1, H, W]` -> `[N, 3]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = self.stem.forward(x);
        for b in &self.blocks {
            x = burn::tensor::activation::relu(b.bn.forward(b.conv.forward(x)));
        }
        let pooled = x.mean_dim(3).mean_dim(2).flatten::<2>(1, 3);
        let scaled = pooled * self.scale.factor.val().unsqueeze::<2>();
        match &self.head {
            Some(h) => h.forward(scaled),
            None => scaled,
        }
    }
}

/// Max |a - b| of two tensors of the same shape (e.g. logits).
pub fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

/// The shared oracle fixtures in the workspace's `tests/fixtures` (outputs of the real NNI 3.0
/// and Torch-Pruning on fixed weights; see the README there).
pub mod oracle {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use crate::{CompressConfig, Dense};

    /// Path of a fixture file.
    pub fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures")
            .join(name)
    }

    /// Every tensor of a safetensors fixture as `f32` (u8 and i64 converted).
    ///
    /// # Panics
    /// If the fixture is missing or unreadable (a broken checkout).
    pub fn tensors(name: &str) -> BTreeMap<String, Dense<f32>> {
        let bytes = std::fs::read(fixture(name)).expect("fixture exists");
        let file = safetensors::SafeTensors::deserialize(&bytes).expect("fixture parses");
        file.tensors()
            .into_iter()
            .map(|(k, v)| {
                let data: Vec<f32> = match v.dtype() {
                    safetensors::Dtype::F32 => v
                        .data()
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                    safetensors::Dtype::I64 => v
                        .data()
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                        .collect(),
                    safetensors::Dtype::U8 => v.data().iter().map(|&x| x as f32).collect(),
                    other => panic!("unexpected dtype {other:?} in {name}"),
                };
                (k, Dense::new(v.shape().to_vec(), data))
            })
            .collect()
    }

    /// Every float parameter (and running statistic) of a module by path, as host tensors.
    pub fn module_tensors<M: burn::module::Module>(module: &M) -> BTreeMap<String, Dense<f32>> {
        crate::index::param_handles(module, |_| true)
            .into_iter()
            .map(|(path, (t, shape))| {
                let d = crate::index::read_flat(&path, &t, &shape).expect("f32 parameters");
                (path, d)
            })
            .collect()
    }

    /// NNI's masks of one oracle case (`cnn`/`l1`), as a MaskSet in Burn's names and layout.
    pub fn nni_masks(model: &str, case: &str) -> crate::MaskSet {
        let prefix = format!("{model}/{case}/");
        let mut masks = crate::MaskSet::default();
        for (key, m) in tensors("nni_masks.safetensors")
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
        {
            let (path, linear) = burn_path(&key[prefix.len()..]);
            let m = if linear { transpose(m) } else { m.clone() };
            masks.insert(
                path,
                Dense::new(
                    m.shape().to_vec(),
                    m.data().iter().map(|&x| x as u8).collect(),
                ),
            );
        }
        masks
    }

    /// `nni_pruning.json`.
    ///
    /// # Panics
    /// If the fixture is missing or unreadable.
    pub fn nni_pruning() -> serde_json::Value {
        let text = std::fs::read_to_string(fixture("nni_pruning.json")).expect("fixture exists");
        serde_json::from_str(&text).expect("fixture parses")
    }

    /// `nni_quant.json`.
    ///
    /// # Panics
    /// If the fixture is missing or unreadable.
    pub fn nni_quant() -> serde_json::Value {
        let text = std::fs::read_to_string(fixture("nni_quant.json")).expect("fixture exists");
        serde_json::from_str(&text).expect("fixture parses")
    }

    /// Nested JSON lists (or a number) as a host tensor.
    ///
    /// # Panics
    /// If a leaf is not a number, or the lists are ragged.
    pub fn json_dense(v: &serde_json::Value) -> Dense<f32> {
        use serde_json::Value;
        fn shape(v: &Value) -> Vec<usize> {
            match v {
                Value::Array(a) => std::iter::once(a.len()).chain(shape(&a[0])).collect(),
                _ => Vec::new(),
            }
        }
        fn flat(v: &Value, out: &mut Vec<f32>) {
            match v {
                Value::Array(a) => a.iter().for_each(|x| flat(x, out)),
                x => out.push(x.as_f64().expect("a number") as f32),
            }
        }
        let mut data = Vec::new();
        flat(v, &mut data);
        let d = Dense::new(shape(v), data);
        assert_eq!(
            d.numel(),
            d.shape().iter().product::<usize>(),
            "ragged lists"
        );
        d
    }

    /// An NNI `config_list` (JSON) as our config.
    ///
    /// # Panics
    /// If the oracle's config is not valid for us (that would be a bug to fix).
    pub fn config_from_json(list: &serde_json::Value) -> CompressConfig {
        let toml_list: toml::Value = serde_json::from_value(list.clone()).expect("json -> toml");
        let mut table = toml::Table::new();
        table.insert("config_list".into(), toml_list);
        CompressConfig::from_table(&table).expect("oracle config is valid")
    }

    /// Transpose a 2-D tensor (PyTorch's Linear layout <-> Burn's).
    pub fn transpose(t: &Dense<f32>) -> Dense<f32> {
        let (r, c) = (t.shape()[0], t.shape()[1]);
        let mut out = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                out[j * r + i] = t.data()[i * c + j];
            }
        }
        Dense::new(vec![c, r], out)
    }

    /// An NNI `module.target` key as a Burn parameter path, and whether the tensor is a 2-D
    /// Linear weight to transpose (`bn1.weight` -> `bn1.gamma`, `fc.weight` -> transposed).
    pub fn burn_path(nni_key: &str) -> (String, bool) {
        let (layer, target) = nni_key.rsplit_once('.').unwrap_or(("", nni_key));
        let name = match (layer.starts_with("bn"), target) {
            (true, "weight") => "gamma",
            (true, "bias") => "beta",
            (_, t) => t,
        };
        (
            format!("{layer}.{name}"),
            layer.starts_with("fc") && target == "weight",
        )
    }
}
