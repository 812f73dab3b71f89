//! all-MiniLM-L6-v2 ([`MiniLm`]) on the real files as shipped (`data/external/minilm-l6`,
//! `cargo xtask fetch minilm-l6`): token ids and sentence cosines equal an independent NumPy
//! reference (`scripts/reference/minilm.py`: its own WordPiece tokenizer from `vocab.txt` and a
//! float64 forward), batching under the attention mask changes nothing, the architecture
//! resolves by name, and broken model files are typed errors naming the culprit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use compress_zoo::{AnyModel, Arch, BertConfig, InputKind, MiniLm, TextTokenizer, ZooError};
use safetensors::tensor::{Dtype, TensorView};

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/external/minilm-l6")
}

fn load() -> (MiniLm, TextTokenizer) {
    let dir = model_dir();
    let model = MiniLm::load(&dir, &Device::flex()).unwrap();
    let tokenizer = MiniLm::tokenizer(&dir).unwrap();
    (model, tokenizer)
}

fn rows(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [n, d] = t.dims();
    let v = t.into_data().try_to_vec::<f32>().unwrap();
    (0..n).map(|i| v[i * d..(i + 1) * d].to_vec()).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn token_ids_equal_the_reference_wordpiece() {
    let tokenizer = MiniLm::tokenizer(&model_dir()).unwrap();
    // From scripts/reference/minilm.py (a WordPiece tokenizer written from vocab.txt).
    let cases: [(&str, &[u32]); 3] = [
        (
            "A man is eating food.",
            &[101, 1037, 2158, 2003, 5983, 2833, 1012, 102],
        ),
        (
            "Elizabeth's unaffected résumé: naïvely written, isn't it?",
            &[
                101, 3870, 1005, 1055, 24720, 13746, 1024, 15743, 2135, 2517, 1010, 3475, 1005,
                1056, 2009, 1029, 102,
            ],
        ),
        (
            "The quick-brown fox jumped over 1,234 lazy dogs!!",
            &[
                101, 1996, 4248, 1011, 2829, 4419, 5598, 2058, 1015, 1010, 22018, 13971, 6077, 999,
                999, 102,
            ],
        ),
    ];
    for (text, ids) in cases {
        // No padding to 128 (the shipped tokenizer.json pads): exactly the sentence's tokens.
        assert_eq!(tokenizer.encode(text).unwrap(), ids, "{text}");
    }
    assert_eq!(tokenizer.vocab_size(), 30522);
}

#[test]
fn cosines_of_the_reference_pairs_match_numpy() {
    let (model, tokenizer) = load();
    let sentences = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "A man is riding a horse.",
        "The new movie is awesome.",
    ];
    let e = rows(model.embed(&tokenizer, &sentences).unwrap());
    // scripts/reference/minilm.py (float64); the issue's acceptance values are 0.7553, 0.2474,
    // -0.0461 within 1e-3, we hold 1e-4.
    let expected = [0.755337f32, 0.247402, -0.046050];
    for (i, want) in expected.into_iter().enumerate() {
        let got = dot(&e[0], &e[i + 1]);
        assert!(
            (got - want).abs() < 1e-4,
            "cos({:?}, {:?}) = {got}, reference {want}",
            sentences[0],
            sentences[i + 1]
        );
    }
    // The first embedding values of "A man is eating food." (same script).
    let first = [
        0.033242f32,
        0.004406,
        -0.006277,
        0.048379,
        -0.138702,
        -0.033617,
        0.101128,
        -0.054385,
    ];
    for (j, want) in first.into_iter().enumerate() {
        assert!(
            (e[0][j] - want).abs() < 1e-5,
            "e[{j}] = {}, reference {want}",
            e[0][j]
        );
    }
    for row in &e {
        assert_eq!(row.len(), 384);
        assert!((dot(row, row) - 1.0).abs() < 1e-5);
    }
}

/// 100 sentences of 6 to 30 words (more than one `EMBED_BATCH`, of varied lengths).
fn sentences() -> Vec<String> {
    let subjects = [
        "Elizabeth",
        "Mr. Darcy",
        "The old housekeeper",
        "Her youngest sister",
        "Jane",
    ];
    let verbs = [
        "walked to",
        "wrote about",
        "could not forgive",
        "laughed at",
        "spoke of",
    ];
    let tails = [
        "Netherfield.",
        "the letter she had received that morning from London.",
        "the ball, the music, the dancing and the officers who had come from Meryton.",
        "his pride, which she believed to be the cause of every misfortune in the family, and of her own unhappiness as well.",
    ];
    (0..100)
        .map(|i| {
            format!(
                "{} {} {}",
                subjects[i % 5],
                verbs[(i / 5) % 5],
                tails[(i / 25 + i) % 4]
            )
        })
        .collect()
}

#[test]
fn batched_embeddings_equal_one_at_a_time() {
    let (model, tokenizer) = load();
    let owned = sentences();
    let sentences: Vec<&str> = owned.iter().map(String::as_str).collect();
    let start = Instant::now();
    let batched = rows(model.embed(&tokenizer, &sentences).unwrap());
    eprintln!(
        "minilm-l6: embedded {} sentences in {:.2?} (batches of {})",
        sentences.len(),
        start.elapsed(),
        MiniLm::EMBED_BATCH
    );
    assert_eq!(batched.len(), 100);
    let mut worst = 0f32;
    for (s, b) in sentences.iter().zip(&batched) {
        let alone = rows(model.embed(&tokenizer, &[s]).unwrap()).remove(0);
        for (x, y) in alone.iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
    }
    assert!(worst < 1e-5, "batched and one-at-a-time differ by {worst}");
    assert_eq!(model.embed(&tokenizer, &[]).unwrap().dims(), [0, 384]);
}

#[test]
fn the_architecture_resolves_and_loads_the_model_directory() {
    let arch: Arch = "minilm-l6".parse().unwrap();
    assert_eq!(arch, Arch::MiniLmL6);
    assert_eq!(arch.to_string(), "minilm-l6");
    assert!(arch.takes_tokens());
    assert_eq!(arch.token_shape(2), Some([2, 512]));
    assert_eq!(
        arch.input_kind(),
        InputKind::Tokens {
            max_len: 512,
            vocab: 30522
        }
    );
    let device = Device::flex();
    // The directory, or the safetensors file inside it.
    for path in [model_dir(), model_dir().join("model.safetensors")] {
        let model = AnyModel::load(arch, &path, &device).unwrap();
        assert_eq!(model.arch(), Arch::MiniLmL6);
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(
                vec![101i64, 1037, 2158, 2003, 5983, 2833, 1012, 102],
                [1, 8],
            ),
            &device,
        );
        let e = model.forward_tokens(ids).unwrap();
        assert_eq!(e.dims(), [1, 384]);
        // "A man is eating food." as ids: the reference's first value.
        let first = e.slice([0..1, 0..1]).into_scalar::<f32>();
        assert!((first - 0.033242).abs() < 1e-5, "{first}");
    }
    let random = AnyModel::init(arch, &device);
    let out = random.forward_example(&[2, 7], &device).unwrap();
    assert_eq!(out.dims(), [2, 384]);
    assert!(matches!(
        random.forward_example(&[2, 513], &device),
        Err(ZooError::InputShape { .. })
    ));
}

/// A config of a 2-layer BERT with hidden 8, written with `tensors` (HF names and layouts) into
/// a fresh directory; returns it.
fn tiny_model_dir(name: &str, config: &str, skip: Option<&str>) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("compress-zoo-minilm-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("embeddings.word_embeddings.weight".into(), vec![20, 8]),
        ("embeddings.position_embeddings.weight".into(), vec![10, 8]),
        ("embeddings.token_type_embeddings.weight".into(), vec![2, 8]),
        ("embeddings.LayerNorm.weight".into(), vec![8]),
        ("embeddings.LayerNorm.bias".into(), vec![8]),
    ];
    for l in 0..2 {
        let p = format!("encoder.layer.{l}.");
        for (key, shape) in [
            ("attention.self.query", [8, 8]),
            ("attention.self.key", [8, 8]),
            ("attention.self.value", [8, 8]),
            ("attention.output.dense", [8, 8]),
            ("intermediate.dense", [12, 8]),
            ("output.dense", [8, 12]),
        ] {
            shapes.push((format!("{p}{key}.weight"), shape.to_vec()));
            shapes.push((format!("{p}{key}.bias"), vec![shape[0]]));
        }
        for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
            shapes.push((format!("{p}{norm}.weight"), vec![8]));
            shapes.push((format!("{p}{norm}.bias"), vec![8]));
        }
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .filter(|(k, _)| Some(k.as_str()) != skip)
        .map(|(k, s)| {
            let n: usize = s.iter().product();
            let data = (0..n)
                .flat_map(|i| (i as f32 * 0.01).to_le_bytes())
                .collect();
            (k, s, data)
        })
        .collect();
    let views: HashMap<String, TensorView> = bytes
        .iter()
        .map(|(k, s, d)| {
            (
                k.clone(),
                TensorView::new(Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, &None, &dir.join("model.safetensors")).unwrap();
    dir
}

const TINY: &str = r#"{"vocab_size": 20, "hidden_size": 8, "num_hidden_layers": 2,
    "num_attention_heads": 2, "intermediate_size": 12, "max_position_embeddings": 10,
    "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu"}"#;

#[test]
fn a_bert_of_any_config_loads_and_a_missing_key_is_named() {
    let device = Device::flex();
    let dir = tiny_model_dir("whole", TINY, None);
    let model = MiniLm::load(&dir, &device).unwrap();
    assert_eq!(model.hidden_size(), 8);
    assert_eq!(model.encoder.layer.len(), 2);
    assert_eq!(model.encoder.layer[1].attention.self_attn.num_heads, 2);
    assert_eq!(model.encoder.layer[1].attention.self_attn.head_dim, 4);
    // The file's [out, in] = [12, 8] is Burn's [in, out] = [8, 12].
    assert_eq!(
        model.encoder.layer[0].intermediate.dense.weight.dims(),
        [8, 12]
    );

    let key = "encoder.layer.1.attention.self.key.weight";
    let dir = tiny_model_dir("broken", TINY, Some(key));
    let err = MiniLm::load(&dir, &device).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ZooError::Mismatch { .. }), "{message}");
    // burn-store's summary lists the missing tensor by its path (the HF key).
    assert!(message.contains(key), "{message}");
    assert!(
        message.contains(&dir.join("model.safetensors").display().to_string()),
        "{message}"
    );
}

#[test]
fn bad_model_directories_are_typed_errors_naming_the_culprit() {
    let device = Device::flex();
    let empty = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("compress-zoo-minilm-{}-empty", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let message = MiniLm::load(&empty, &device).unwrap_err().to_string();
    assert!(message.contains("config.json"), "{message}");
    assert!(message.contains("cargo xtask fetch minilm-l6"), "{message}");
    let message = MiniLm::tokenizer(&empty).unwrap_err().to_string();
    assert!(message.contains("tokenizer.json"), "{message}");
    assert!(message.contains("cargo xtask fetch minilm-l6"), "{message}");

    let relu = TINY.replace(r#""gelu""#, r#""relu""#);
    let dir = tiny_model_dir("relu", &relu, None);
    let message = MiniLm::load(&dir, &device).unwrap_err().to_string();
    assert!(
        message.contains(r#"key 'hidden_act' is "relu", only "gelu" is supported"#),
        "{message}"
    );
    let dir = tiny_model_dir("no-width", &TINY.replace(r#""hidden_size": 8,"#, ""), None);
    let message = MiniLm::load(&dir, &device).unwrap_err().to_string();
    assert!(message.contains("missing key 'hidden_size'"), "{message}");

    // A sentence longer than the position table.
    let (model, tokenizer) = load();
    let long = "word ".repeat(600);
    let err = model.embed(&tokenizer, &[&long]).unwrap_err();
    assert!(
        err.to_string().contains("sentences of at most 512 tokens"),
        "{err}"
    );
    assert_eq!(BertConfig::minilm_l6().hidden_size, 384);
}
