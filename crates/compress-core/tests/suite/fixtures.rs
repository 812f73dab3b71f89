//! Fixture loading shared by the tests.

use std::collections::BTreeMap;
use std::path::PathBuf;

use compress_core::{CompressConfig, Dense};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Every tensor of a safetensors fixture as f32 (u8 masks converted).
pub fn load_tensors(name: &str) -> BTreeMap<String, Dense<f32>> {
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
                safetensors::Dtype::U8 => v.data().iter().map(|&x| x as f32).collect(),
                other => panic!("unexpected dtype {other:?} in {name}"),
            };
            (k, Dense::new(v.shape().to_vec(), data))
        })
        .collect()
}

/// An NNI config_list (JSON) as our TOML config.
pub fn config_from_json(list: &serde_json::Value) -> CompressConfig {
    let toml_list: toml::Value = serde_json::from_value(list.clone()).expect("json -> toml");
    let mut table = toml::Table::new();
    table.insert("config_list".into(), toml_list);
    CompressConfig::from_table(&table).expect("oracle config is valid")
}

/// Transpose a 2-D tensor (PyTorch Linear layout <-> Burn's).
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
