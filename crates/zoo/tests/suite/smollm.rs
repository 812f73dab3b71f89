//! SmolLM2-135M from its GGUF: the tokenizer and the float forward agree with an independent
//! NumPy implementation (`scripts/reference/smollm2.py`: its own GGUF reader, dequantization,
//! BPE and forward), perplexity and greedy decoding work, and bad input is refused by name.
//!
//! The real-model tests need `data/external/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf`
//! (`cargo xtask fetch smollm2-135m`); the text is the fixture
//! `tests/fixtures/pride-and-prejudice-ch1.txt`, the first 3000 bytes of Pride and Prejudice
//! from "Chapter 1", decoded from janeaustenr's R database by the same script (`--fixture`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use burn::prelude::*;
use compress_zoo::gguf::write::{RawTensor, gguf_bytes};
use compress_zoo::gguf::{GgmlType, GgufFile, GgufValue};
use compress_zoo::{Llama, LlamaError, LlamaTokenizer, SmolLm, perplexity};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn gguf_path() -> PathBuf {
    root().join("data/external/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn pride_and_prejudice() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pride-and-prejudice-ch1.txt"),
    )
    .unwrap()
}

/// The real model and tokenizer, loaded once for the suite.
fn smollm() -> &'static (Llama, LlamaTokenizer) {
    static MODEL: OnceLock<(Llama, LlamaTokenizer)> = OnceLock::new();
    MODEL.get_or_init(|| {
        let start = Instant::now();
        let file = GgufFile::open(&gguf_path()).unwrap_or_else(|e| panic!("{e}"));
        let model = Llama::from_gguf(&file, &Device::flex()).unwrap();
        let tokenizer = LlamaTokenizer::from_gguf(&file).unwrap();
        eprintln!("SmolLM2-135M loaded in {:.2?}", start.elapsed());
        (model, tokenizer)
    })
}

// Values printed by `python3 scripts/reference/smollm2.py` (NumPy 2.4, float32 forward).
const SENTENCE: &str =
    "It is a truth universally acknowledged, that 1813's Mr. Darcy  owns 10,000 acres!\n";
const SENTENCE_IDS: [u32; 30] = [
    1589, 314, 253, 4569, 21902, 14494, 28, 338, 216, 33, 40, 33, 35, 506, 4994, 30, 9117, 873,
    216, 22247, 216, 33, 32, 28, 32, 32, 32, 9590, 17, 198,
];
const FIXTURE_FIRST_IDS: [u32; 16] = [
    7176, 216, 33, 1116, 198, 1589, 314, 253, 4569, 21902, 14494, 28, 338, 253, 2244, 555,
];
const FIXTURE_TOKENS: usize = 813;
const PPL_256: f64 = 17.343926304408225;
const LOGITS_FIRST: [f32; 5] = [15.309635, 6.038535, 9.577412, 4.380846, 5.814512];
const LOGITS_LAST: [f32; 5] = [7.607261, -7.17581, -4.30722, -8.409695, -9.32247];
const PROMPT: &str = "The capital of France is";
const PROMPT_IDS: [u32; 5] = [504, 3575, 282, 4649, 314];
const GREEDY: [u32; 8] = [7042, 30, 198, 198, 504, 2988, 314, 42];

#[test]
fn smollm2_tokenizer_matches_the_independent_python_bpe() {
    let (_, tok) = smollm();
    assert_eq!(tok.encode(SENTENCE).unwrap(), SENTENCE_IDS);
    assert_eq!(tok.decode(&SENTENCE_IDS).unwrap(), SENTENCE);
    assert_eq!(tok.encode(PROMPT).unwrap(), PROMPT_IDS);
    let text = pride_and_prejudice();
    let ids = tok.encode(&text).unwrap();
    assert_eq!(ids.len(), FIXTURE_TOKENS);
    assert_eq!(ids[..16], FIXTURE_FIRST_IDS);
    assert_eq!(tok.decode(&ids).unwrap(), text);
    assert_eq!(
        (tok.bos_id(), tok.eos_id(), tok.vocab_size()),
        (Some(1), Some(2), 49152)
    );
    // Control tokens match whole instead of being split into bytes.
    assert_eq!(tok.encode("<|im_start|>user").unwrap(), [1, 4093]);
}

#[test]
fn smollm2_perplexity_on_pride_and_prejudice_matches_the_numpy_reference_within_1_percent() {
    let (model, tok) = smollm();
    let ids = tok.encode(&pride_and_prejudice()).unwrap();
    let device = Device::flex();
    let start = Instant::now();
    let logits = model.forward(
        Tensor::<1, Int>::from_data(
            TensorData::new(ids[..256].iter().map(|&i| i as i64).collect(), [256]),
            &device,
        )
        .reshape([1, 256]),
    );
    let logits = logits.into_data().try_to_vec::<f32>().unwrap();
    eprintln!("forward of 256 tokens: {:.2?}", start.elapsed());
    let vocab = 49152;
    for (got, want) in [
        (&logits[..5], LOGITS_FIRST),
        (&logits[255 * vocab..255 * vocab + 5], LOGITS_LAST),
    ] {
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() < 2e-3 * w.abs().max(1.0),
                "logit {g} vs NumPy {w}"
            );
        }
    }
    let p = perplexity(model, &ids, 256, Some(256)).unwrap();
    eprintln!("perplexity {:.4} (NumPy {PPL_256:.4})", p.perplexity);
    assert_eq!((p.scored, p.window_nll.len()), (255, 1));
    assert!(
        (p.perplexity / PPL_256 - 1.0).abs() < 0.01,
        "perplexity {} vs NumPy {PPL_256}",
        p.perplexity
    );
    assert!((p.mean_nll.exp() - p.perplexity).abs() < 1e-9);
}

#[test]
fn smollm2_greedy_continuation_matches_the_numpy_reference() {
    let (model, tok) = smollm();
    let out = model
        .generate_greedy(&PROMPT_IDS, 8, &Device::flex())
        .unwrap();
    assert_eq!(out, GREEDY);
    assert_eq!(tok.decode(&out).unwrap(), " Paris.\n\nThe answer is:");
}

#[test]
fn smollm2_parameter_paths_read_like_hugging_face_llama() {
    use burn::module::{Module, ModuleVisitor, Param};
    #[derive(Default)]
    struct Paths(Vec<String>, Vec<String>);
    impl ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.1.push(format!(
                "{} {:?}",
                self.0.join("."),
                p.lazy_shape().dims::<D>()
            ));
        }
    }
    let (model, _) = smollm();
    let mut paths = Paths::default();
    model.visit(&mut paths);
    assert_eq!(paths.1.len(), 1 + 30 * 9 + 1);
    assert_eq!(
        paths.1[..10],
        [
            "model.embed_tokens.weight [49152, 576]",
            "model.layers.0.self_attn.q_proj.weight [576, 576]",
            "model.layers.0.self_attn.k_proj.weight [576, 192]",
            "model.layers.0.self_attn.v_proj.weight [576, 192]",
            "model.layers.0.self_attn.o_proj.weight [576, 576]",
            "model.layers.0.mlp.gate_proj.weight [576, 1536]",
            "model.layers.0.mlp.up_proj.weight [576, 1536]",
            "model.layers.0.mlp.down_proj.weight [1536, 576]",
            "model.layers.0.input_layernorm.gamma [576]",
            "model.layers.0.post_attention_layernorm.gamma [576]",
        ]
    );
    assert_eq!(paths.1.last().unwrap(), "model.norm.gamma [576]");
    let attn = &model.model.layers[29].self_attn;
    assert_eq!((attn.heads, attn.kv_heads, attn.head_dim), (9, 3, 64));
    assert_eq!(attn.rope_base, 100_000.0);
    assert!(
        model.lm_head.is_none(),
        "SmolLM2 ties its output head to the embeddings"
    );
}

/// Deterministic small weights.
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// A tiny random Llama GGUF (2 layers, hidden 8, 2 query / 1 KV heads, FFN 12, vocab 16) with
/// `blk.1.ffn_up.weight` of type `up_type` (raw zero bytes when it is not F32).
fn tiny_llama(up_type: GgmlType) -> Vec<u8> {
    let (d, ffn, vocab) = (8, 12, 16);
    let mut tensors = vec![RawTensor::f32(
        "token_embd.weight",
        &[vocab, d],
        &values(vocab * d, 1),
    )];
    for l in 0..2 {
        let mut add = |name: &str, shape: &[usize]| {
            let n = shape.iter().product();
            let seed = tensors.len() as u32;
            tensors.push(RawTensor::f32(
                &format!("blk.{l}.{name}.weight"),
                shape,
                &values(n, seed),
            ));
        };
        add("attn_norm", &[d]);
        add("attn_q", &[d, d]);
        add("attn_k", &[4, d]);
        add("attn_v", &[4, d]);
        add("attn_output", &[d, d]);
        add("ffn_norm", &[d]);
        add("ffn_gate", &[ffn, d]);
        add("ffn_up", &[ffn, d]);
        add("ffn_down", &[d, ffn]);
    }
    tensors.push(RawTensor::f32("output_norm.weight", &[d], &[1.0; 8]));
    if up_type != GgmlType::F32 {
        let up = tensors
            .iter_mut()
            .find(|t| t.name == "blk.1.ffn_up.weight")
            .unwrap();
        up.ty = up_type;
        up.data = vec![0; 2 * 144];
    }
    gguf_bytes(
        &[
            ("general.architecture", GgufValue::String("llama".into())),
            ("llama.block_count", GgufValue::U32(2)),
            ("llama.embedding_length", GgufValue::U32(8)),
            ("llama.feed_forward_length", GgufValue::U32(12)),
            ("llama.attention.head_count", GgufValue::U32(2)),
            ("llama.attention.head_count_kv", GgufValue::U32(1)),
            ("llama.rope.freq_base", GgufValue::F32(10000.0)),
            (
                "llama.attention.layer_norm_rms_epsilon",
                GgufValue::F32(1e-5),
            ),
        ],
        &tensors,
    )
}

fn write_temp(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("compress-zoo-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_gguf_with_an_unsupported_tensor_type_is_refused_naming_the_tensor() {
    let path = write_temp("q4k.gguf", &tiny_llama(GgmlType(12)));
    let err = Llama::load(&path, &Device::flex()).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        err.to_string(),
        "tensor 'blk.1.ffn_up.weight' has GGML type Q4_K, which is not supported \
         (supported: F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q6_K)"
    );
}

#[test]
fn a_missing_gguf_names_the_path_and_the_fetch_command() {
    let err = SmolLm::load(Path::new("no/such/smollm.gguf"), &Device::flex()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "GGUF 'no/such/smollm.gguf' not found (SmolLM2-135M comes from `cargo xtask fetch smollm2-135m`)"
    );
}

#[test]
fn text_shorter_than_one_window_is_refused() {
    let path = write_temp("tiny.gguf", &tiny_llama(GgmlType::F32));
    let model = Llama::load(&path, &Device::flex()).unwrap();
    std::fs::remove_file(&path).unwrap();
    let ids: Vec<u32> = (0..100).map(|i| i % 16).collect();
    let err = perplexity(&model, &ids, 256, None).unwrap_err();
    assert!(matches!(
        err,
        LlamaError::TooShort {
            tokens: 100,
            window: 256
        }
    ));
    assert_eq!(
        err.to_string(),
        "text of 100 tokens is shorter than one window of 256 tokens"
    );
    // max_tokens cuts the text before the windows are counted.
    let err = perplexity(&model, &ids, 64, Some(50)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "text of 50 tokens is shorter than one window of 64 tokens"
    );
    let err = perplexity(&model, &[3, 16, 2], 2, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "token 1 has id 16, outside the vocabulary of 16"
    );
    // Two whole windows of 40; the last 20 tokens are dropped.
    let p = perplexity(&model, &ids, 40, None).unwrap();
    assert_eq!((p.window_nll.len(), p.scored), (2, 78));
    assert!(p.perplexity.is_finite() && p.perplexity > 1.0);
}

#[test]
fn the_tiny_llama_is_causal_and_its_heads_follow_pruning() {
    use compress_core::FixStructure;
    let path = write_temp("causal.gguf", &tiny_llama(GgmlType::F32));
    let device = Device::flex();
    let mut model = Llama::load(&path, &device).unwrap();
    std::fs::remove_file(&path).unwrap();
    let ids =
        |v: &[i64]| Tensor::<2, Int>::from_data(TensorData::new(v.to_vec(), [1, v.len()]), &device);
    let a = model.forward(ids(&[1, 2, 3, 4]));
    let b = model.forward(ids(&[1, 2, 3, 9]));
    // Changing the last token changes only the last position's logits.
    let diff = (a.clone() - b.clone())
        .abs()
        .sum_dim(2)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(&diff[..3], &[0.0; 3]);
    assert!(diff[3] > 1e-3);
    assert_eq!(a.dims(), [1, 4, 16]);
    // Drop one query head (4 of q_proj's outputs, 4 of o_proj's inputs): heads follow.
    let attn = &mut model.model.layers[0].self_attn;
    let keep = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 3], [4]), &device);
    attn.q_proj.weight = attn
        .q_proj
        .weight
        .clone()
        .map(|w| w.select(1, keep.clone()));
    attn.o_proj.weight = attn.o_proj.weight.clone().map(|w| w.select(0, keep));
    model.fix_structure();
    let attn = &model.model.layers[0].self_attn;
    assert_eq!((attn.heads, attn.kv_heads, attn.head_dim), (1, 1, 4));
    assert_eq!(model.forward(ids(&[1, 2, 3, 4])).dims(), [1, 4, 16]);
}
