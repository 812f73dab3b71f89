//! GPTQ against a NumPy port of the reference (`scripts/reference/gptq.py`) and by hand.
#![allow(clippy::excessive_precision)]

use std::time::Instant;

use compress_core::oneshot::{InputStats, LinearSlot, OneShot};
use compress_core::{AlgorithmEntry, AlgorithmKind, Dense, toml};
use compress_quant::rtn::{Quantizer, Strategy, WeightScheme, rtn_quantize};

use super::*;

// Copied from the output of `python3 scripts/reference/gptq.py`: a 4 x 8 weight, the Hessian of
// 6 tokens of 2 sequences (input 5 never fires: a dead column), and fasterquant's output and
// loss under each configuration (4 bits, dampening 0.01).
const W: [f32; 32] = [
    -0.59375, 0.625, 1.046875, 1.03125, 1.8125, -0.390625, 0.546875, -0.359375, -1.421875,
    -0.703125, 0.140625, -0.921875, -0.1875, 1.125, 0.578125, 0.578125, 0.34375, -0.171875, -1.875,
    0.984375, -1.5, 0.21875, -0.109375, 0.140625, 0.25, -0.328125, 0.90625, -1.28125, 0.796875,
    -1.6875, 1.1875, -0.515625,
];
const H: [f64; 64] = [
    35.0, -20.0, 4.0, 6.0, 0.0, 0.0, -7.0, -20.0, -20.0, 28.0, 15.0, -6.0, 5.0, 0.0, 2.0, -4.0,
    4.0, 15.0, 34.0, -5.0, 1.0, 0.0, 12.0, -19.0, 6.0, -6.0, -5.0, 13.0, -3.0, 0.0, -15.0, -1.0,
    0.0, 5.0, 1.0, -3.0, 23.0, 0.0, -2.0, -15.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -7.0, 2.0,
    12.0, -15.0, -2.0, 0.0, 32.0, -1.0, -20.0, -4.0, -19.0, -1.0, -15.0, 0.0, -1.0, 41.0,
];
const CHANNEL_ASYM_BLOCK4_Q: [f32; 32] = [
    -0.6416666507720947,
    0.6416666507720947,
    0.9624999761581421,
    0.9624999761581421,
    1.7645833492279053,
    0.0,
    0.48124998807907104,
    -0.48124998807907104,
    -1.3583333492279053,
    -0.6791666746139526,
    0.16979166865348816,
    -0.8489583730697632,
    -0.16979166865348816,
    0.0,
    0.6791666746139526,
    0.6791666746139526,
    0.3812499940395355,
    -0.19062499701976776,
    -1.90625,
    0.953125,
    -1.524999976158142,
    0.0,
    -0.19062499701976776,
    0.19062499701976776,
    0.19166666269302368,
    -0.38333332538604736,
    0.9583333134651184,
    -1.3416666984558105,
    0.7666666507720947,
    0.0,
    1.149999976158142,
    -0.574999988079071,
];
const CHANNEL_ASYM_BLOCK4_LOSS: f64 = 0.6087848357637995;
const GROUP4_SYM_BLOCK4_Q: [f32; 32] = [
    -0.5583333373069763,
    0.6979166865348816,
    0.9770833253860474,
    0.9770833253860474,
    1.6606009006500244,
    0.0,
    0.47445738315582275,
    -0.47445738315582275,
    -1.5166666507720947,
    -0.7583333253860474,
    0.18958333134651184,
    -0.9479166269302368,
    -0.21565821766853333,
    0.0,
    0.503202497959137,
    0.503202497959137,
    0.25,
    -0.25,
    -1.75,
    1.0,
    -1.5844377279281616,
    0.0,
    -0.1980547159910202,
    0.1980547159910202,
    0.17083333432674408,
    -0.34166666865348816,
    0.8541666865348816,
    -1.3666666746139526,
    0.7624673843383789,
    0.0,
    1.0674543380737305,
    -0.6099739074707031,
];
const GROUP4_SYM_BLOCK4_LOSS: f64 = 0.8956295272510033;
const GROUP4_SYM_BLOCK4_ACTORDER_Q: [f32; 32] = [
    -0.6979166865348816,
    0.5958539843559265,
    0.9770833253860474,
    0.834195613861084,
    0.834195613861084,
    0.0,
    0.5583333373069763,
    -0.41874998807907104,
    -1.5166666507720947,
    -0.8506494760513306,
    0.18958333134651184,
    -0.9721708297729492,
    -0.12152135372161865,
    0.0,
    0.5687500238418579,
    0.5687500238418579,
    0.5,
    0.0,
    -2.0,
    1.153925895690918,
    -1.3462468385696411,
    0.0,
    0.0,
    0.25,
    0.3166666626930237,
    -0.3664054274559021,
    0.949999988079071,
    -1.4656217098236084,
    0.7328108549118042,
    0.0,
    1.1083333492279053,
    -0.4749999940395355,
];
const GROUP4_SYM_BLOCK4_ACTORDER_LOSS: f64 = 10.900889981159708;
const GROUP4_SYM_BLOCK4_ACTORDER_STATIC_Q: [f32; 32] = [
    -0.41874998807907104,
    0.8374999761581421,
    0.9770833253860474,
    0.9770833253860474,
    1.691666603088379,
    0.0,
    0.7249999642372131,
    -0.24166665971279144,
    -1.5166666507720947,
    -0.7583333253860474,
    0.18958333134651184,
    -0.9479166269302368,
    -0.23125000298023224,
    0.0,
    0.5395833253860474,
    0.5395833253860474,
    0.5,
    0.0,
    -2.0,
    1.0,
    -1.399999976158142,
    0.0,
    0.0,
    0.20000000298023224,
    0.34166666865348816,
    -0.17083333432674408,
    0.8541666865348816,
    -1.3666666746139526,
    0.7916666269302368,
    0.0,
    1.1083333492279053,
    -0.4749999940395355,
];
const GROUP4_SYM_BLOCK4_ACTORDER_STATIC_LOSS: f64 = 1.2591909261909677;
const GROUP4_SYM_BLOCK4_STATIC_Q: [f32; 32] = [
    -0.5583333373069763,
    0.6979166865348816,
    0.9770833253860474,
    0.9770833253860474,
    1.691666603088379,
    0.0,
    0.4833333194255829,
    -0.4833333194255829,
    -1.5166666507720947,
    -0.7583333253860474,
    0.18958333134651184,
    -0.9479166269302368,
    -0.23125000298023224,
    0.0,
    0.5395833253860474,
    0.5395833253860474,
    0.25,
    -0.25,
    -1.75,
    1.0,
    -1.399999976158142,
    0.0,
    -0.20000000298023224,
    0.20000000298023224,
    0.17083333432674408,
    -0.34166666865348816,
    0.8541666865348816,
    -1.3666666746139526,
    0.7916666269302368,
    0.0,
    1.1083333492279053,
    -0.6333333253860474,
];
const GROUP4_SYM_BLOCK4_STATIC_LOSS: f64 = 0.6996557763486635;
const GROUP2_SYM_BLOCK4_Q: [f32; 32] = [
    -0.5833333730697632,
    0.5833333730697632,
    0.4885416626930237,
    0.4885416626930237,
    0.7131202816963196,
    0.0,
    0.39130690693855286,
    -0.7826138138771057,
    -1.5166666507720947,
    -0.7583333253860474,
    0.12291666865348816,
    -0.9833333492279053,
    -0.25455912947654724,
    0.0,
    0.24888162314891815,
    0.24888162314891815,
    0.32083332538604736,
    -0.18333333730697632,
    -1.75,
    1.0,
    -1.5657910108566284,
    0.0,
    -0.157634899020195,
    0.157634899020195,
    0.26249998807907104,
    -0.3062500059604645,
    0.8541666865348816,
    -1.1958333253860474,
    0.37544581294059753,
    0.0,
    1.164920449256897,
    -0.6656688451766968,
];
const GROUP2_SYM_BLOCK4_LOSS: f64 = 15.290451984048559;
const TENSOR_SYM_BLOCK3_Q: [f32; 32] = [
    -0.5, 0.75, 1.0, 1.0, 1.75, 0.0, 0.5, -0.25, -1.5, -0.75, 0.25, -1.0, -0.25, 0.0, 0.5, 0.5,
    0.25, -0.25, -1.75, 1.0, -1.5, 0.0, -0.25, 0.25, 0.25, -0.25, 0.75, -1.25, 0.75, 0.0, 1.25,
    -0.5,
];
const TENSOR_SYM_BLOCK3_LOSS: f64 = 1.3661809924803734;

fn config(
    quantizer: Quantizer,
    strategy: Strategy,
    block: usize,
    actorder: ActOrder,
    static_groups: bool,
) -> GptqConfig {
    GptqConfig {
        weights: WeightScheme {
            quantizer,
            strategy,
        },
        block_size: block,
        dampening_frac: 0.01,
        actorder,
        static_groups,
    }
}

fn run(config: &GptqConfig) -> (Vec<f32>, LinearReport) {
    let mut w = Dense::new(vec![4, 8], W.to_vec());
    let h = Dense::new(vec![8, 8], H.to_vec());
    let report = fasterquant(&mut w, &h, config, "layers.0.fc").unwrap();
    (w.into_data(), report)
}

fn assert_close(label: &str, got: &[f32], want: &[f32]) {
    for (k, (g, e)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - e).abs() < 1e-5,
            "{label}: entry {k}: {g} vs {e}\n{got:?}"
        );
    }
}

fn check(label: &str, config: &GptqConfig, want: &[f32], loss: f64) {
    let (q, report) = run(config);
    assert_close(label, &q, want);
    let got = report.loss.unwrap();
    assert!(
        (got - loss).abs() < 1e-4 * loss,
        "{label}: loss {got} vs {loss}"
    );
    assert_eq!(report.dead_columns, 1, "{label}");
    assert_eq!(
        (report.damping_retries, report.fallback),
        (0, None),
        "{label}"
    );
    assert!(
        (0..4).all(|r| q[r * 8 + 5] == 0.0),
        "{label}: the dead column is zeroed"
    );
}

#[test]
fn per_channel_asymmetric_gptq_matches_the_reference() {
    let c = config(
        Quantizer::new(4, false),
        Strategy::Channel,
        4,
        ActOrder::Off,
        false,
    );
    check(
        "channel asym",
        &c,
        &CHANNEL_ASYM_BLOCK4_Q,
        CHANNEL_ASYM_BLOCK4_LOSS,
    );
}

#[test]
fn per_tensor_gptq_with_a_block_not_dividing_the_width_matches_the_reference() {
    let c = config(
        Quantizer::new(4, true),
        Strategy::Tensor,
        3,
        ActOrder::Off,
        false,
    );
    check(
        "tensor sym",
        &c,
        &TENSOR_SYM_BLOCK3_Q,
        TENSOR_SYM_BLOCK3_LOSS,
    );
}

#[test]
fn dynamic_groups_match_the_reference_in_natural_and_activation_order() {
    let sym = Quantizer::new(4, true);
    let c = config(sym, Strategy::Group(4), 4, ActOrder::Off, false);
    check("group4", &c, &GROUP4_SYM_BLOCK4_Q, GROUP4_SYM_BLOCK4_LOSS);
    let c = config(sym, Strategy::Group(4), 4, ActOrder::Group, false);
    check(
        "group4 actorder",
        &c,
        &GROUP4_SYM_BLOCK4_ACTORDER_Q,
        GROUP4_SYM_BLOCK4_ACTORDER_LOSS,
    );
    // Groups of 2 inside blocks of 4: the reference fits a group starting mid-block on the weight
    // as it was at the block's start (its `W`, not the block copy `W1`).
    let c = config(sym, Strategy::Group(2), 4, ActOrder::Off, false);
    check("group2", &c, &GROUP2_SYM_BLOCK4_Q, GROUP2_SYM_BLOCK4_LOSS);
}

#[test]
fn static_groups_match_the_reference_with_and_without_activation_order() {
    let sym = Quantizer::new(4, true);
    let c = config(sym, Strategy::Group(4), 4, ActOrder::Off, true);
    check(
        "group4 static",
        &c,
        &GROUP4_SYM_BLOCK4_STATIC_Q,
        GROUP4_SYM_BLOCK4_STATIC_LOSS,
    );
    let c = config(sym, Strategy::Group(4), 4, ActOrder::Weight, true);
    check(
        "group4 actorder static",
        &c,
        &GROUP4_SYM_BLOCK4_ACTORDER_STATIC_Q,
        GROUP4_SYM_BLOCK4_ACTORDER_STATIC_LOSS,
    );
}

#[test]
fn many_rows_split_over_tiles_give_each_row_its_own_result() {
    // 40 rows (3 tiles of 16) built from the 4 reference rows: every row must come out as its
    // reference row does alone.
    let c = config(
        Quantizer::new(4, true),
        Strategy::Group(4),
        4,
        ActOrder::Weight,
        true,
    );
    let mut w = Dense::new(vec![40, 8], W.iter().copied().cycle().take(320).collect());
    let h = Dense::new(vec![8, 8], H.to_vec());
    fasterquant(&mut w, &h, &c, "fc").unwrap();
    for r in 0..40 {
        let k = r % 4;
        assert_close(
            &format!("row {r}"),
            &w.data()[r * 8..r * 8 + 8],
            &GROUP4_SYM_BLOCK4_ACTORDER_STATIC_Q[k * 8..k * 8 + 8],
        );
    }
}

/// By hand, no damping: `H = [[4, 2], [2, 2]]`, `H^-1 = [[0.5, -0.5], [-0.5, 1]]`, `U = [[1/r2,
/// -1/r2], [0, 1/r2]]`. The row `[-0.3, 0.5]`, 2-bit asymmetric per channel: scale 0.8 / 3,
/// zero round(1.125) = 1, grid {-4, 0, 4, 8} / 15. Column 0: q = -4/15, err = (-0.3 + 4/15) *
/// r2 = -r2 / 30; column 1 becomes 0.5 - err * U01 = 0.5 - 1/30 = 7/15, q = 8/15 (7/15 / (4/15)
/// = 1.75 -> 2), err = (7/15 - 8/15) * r2. Loss = (1/450 + 2/225) / 2 = 1/180 (without the
/// feedback it would be 1/450).
#[test]
fn one_column_pushes_its_error_onto_the_next_through_the_inverse_hessian() {
    let mut c = config(
        Quantizer::new(2, false),
        Strategy::Channel,
        128,
        ActOrder::Off,
        false,
    );
    c.dampening_frac = 0.0;
    let mut w = Dense::new(vec![1, 2], vec![-0.3, 0.5]);
    let h = Dense::new(vec![2, 2], vec![4.0, 2.0, 2.0, 2.0]);
    let report = fasterquant(&mut w, &h, &c, "fc").unwrap();
    assert_close("by hand", w.data(), &[-4.0 / 15.0, 8.0 / 15.0]);
    let loss = report.loss.unwrap();
    assert!((loss - 1.0 / 180.0).abs() < 1e-6, "{loss}");
}

#[test]
fn an_indefinite_hessian_falls_back_to_round_to_nearest_and_says_so() {
    let scheme = WeightScheme {
        quantizer: Quantizer::new(4, true),
        strategy: Strategy::Channel,
    };
    let c = GptqConfig {
        weights: scheme,
        ..config(
            Quantizer::new(4, true),
            Strategy::Channel,
            128,
            ActOrder::Off,
            false,
        )
    };
    let original = vec![0.3, -0.7, 0.1, 0.9];
    let mut w = Dense::new(vec![2, 2], original.clone());
    // Eigenvalue -100: damping 0.01 .. 10 all fail.
    let h = Dense::new(vec![2, 2], vec![1.0, 101.0, 101.0, 1.0]);
    let report = fasterquant(&mut w, &h, &c, "fc").unwrap();
    let mut expected = Dense::new(vec![2, 2], original);
    rtn_quantize(&mut expected, &scheme, "fc").unwrap();
    assert_eq!(w, expected);
    assert_eq!(report.damping_retries, 3);
    let why = report.fallback.unwrap();
    assert!(
        why.contains("indefinite") && why.contains("round-to-nearest"),
        "{why}"
    );
    assert_eq!(report.loss, None);
}

#[test]
fn bad_input_is_a_typed_error_naming_the_layer() {
    let c = config(
        Quantizer::new(4, true),
        Strategy::Group(3),
        4,
        ActOrder::Off,
        false,
    );
    let mut w = Dense::new(vec![4, 8], W.to_vec());
    let h = Dense::new(vec![8, 8], H.to_vec());
    let err = fasterquant(&mut w, &h, &c, "model.layers.2.mlp.down_proj").unwrap_err();
    assert_eq!(
        err.to_string(),
        "granularity kernel [1, 3] does not fit 'model.layers.2.mlp.down_proj' of shape [4, 8]: \
         group_size 3 does not divide the input width 8 (2 does)"
    );
    let c = config(
        Quantizer::new(4, true),
        Strategy::Group(4),
        4,
        ActOrder::Off,
        false,
    );
    let h3 = Dense::new(vec![3, 3], vec![1.0; 9]);
    let err = fasterquant(&mut w, &h3, &c, "model.layers.2.mlp.up_proj").unwrap_err();
    assert_eq!(
        err.to_string(),
        "algorithm 'gptq': 'model.layers.2.mlp.up_proj': the Hessian has shape [3, 3], expected \
         [8, 8] for the weight [4, 8]"
    );
    assert_eq!(w.data(), &W, "a refused layer is left as it was");
    let mut nan = H.to_vec();
    nan[9] = f64::NAN;
    let err = fasterquant(
        &mut w,
        &Dense::new(vec![8, 8], nan),
        &c,
        "model.layers.2.mlp.up_proj",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "algorithm 'gptq': 'model.layers.2.mlp.up_proj': the Hessian has a non-finite entry"
    );
    assert_eq!(w.data(), &W);
    // Through the trait: no Hessian collected.
    let gptq = Gptq::from_table(&toml::Table::new()).unwrap();
    let stats = InputStats::default();
    let mut slot = LinearSlot {
        path: "model.layers.0.self_attn.q_proj",
        weight: &mut w,
        bias: None,
        stats: &stats,
        sparsity: 0.0,
    };
    let err = gptq.compress_linear(&mut slot).unwrap_err();
    assert_eq!(
        err.to_string(),
        "algorithm 'gptq': 'model.layers.0.self_attn.q_proj': no Hessian was collected for this layer"
    );
}

#[test]
fn options_parse_with_llm_compressor_names_and_defaults() {
    let parse = |src: &str| Gptq::from_table(&src.parse::<toml::Table>().unwrap());
    let d = parse("").unwrap();
    assert_eq!(d.config, GptqConfig::default());
    assert_eq!(d.config.weights.strategy, Strategy::Group(128));
    assert_eq!(
        (d.config.actorder, d.config.static_groups),
        (ActOrder::Weight, true)
    );
    assert_eq!(d.activations, None);
    let g =
        parse("scheme = \"W8A8\"\nactorder = true\nblock_size = 64\ndampening_frac = 0.1").unwrap();
    assert_eq!(g.config.weights, WeightScheme::w8_channel());
    assert_eq!(
        (g.config.actorder, g.config.static_groups),
        (ActOrder::Group, false)
    );
    assert_eq!((g.config.block_size, g.config.dampening_frac), (64, 0.1));
    assert!(g.activations.is_some());
    assert_eq!(
        parse("actorder = \"dynamic\"").unwrap().config.actorder,
        ActOrder::Group
    );
    let n = parse("actorder = false\nstatic_groups = true")
        .unwrap()
        .config;
    assert_eq!((n.actorder, n.static_groups), (ActOrder::Off, true));
    let err = |src: &str| parse(src).unwrap_err().to_string();
    assert_eq!(
        err("actorder = \"columns\""),
        "algorithm 'gptq': 'actorder' must be \"static\", \"weight\", \"group\", \"dynamic\", \
         \"none\", true or false, found \"columns\""
    );
    assert_eq!(
        err("actorder = \"group\"\nstatic_groups = true"),
        "keys 'static_groups = true' and 'actorder = \"group\"' in [algorithm] of 'gptq' cannot be set together"
    );
    assert_eq!(
        err("block_size = 0"),
        "algorithm 'gptq': 'block_size' must be an integer >= 1, found 0"
    );
    assert_eq!(
        err("dampening_frac = -1"),
        "algorithm 'gptq': 'dampening_frac' must be a number >= 0, found -1"
    );
    assert_eq!(
        err("weights = { num_bits = 12 }"),
        "key 'num_bits' in [algorithm] of 'gptq'.weights: 12 is outside 2..=8"
    );
}

#[test]
fn compress_linear_runs_fasterquant_on_the_slot_with_the_configured_options() {
    let table: toml::Table = "weights = { group_size = 4 }\nactorder = \"static\"\nblock_size = 4"
        .parse()
        .unwrap();
    let algo = AlgorithmEntry::find("gptq")
        .unwrap()
        .build_oneshot(&table)
        .unwrap();
    let stats = InputStats {
        samples: 2,
        tokens: 6,
        hessian: Some(Dense::new(vec![8, 8], H.to_vec())),
        ..InputStats::default()
    };
    let mut w = Dense::new(vec![4, 8], W.to_vec());
    let mut bias = vec![0.5f32; 4];
    let mut slot = LinearSlot {
        path: "model.layers.0.mlp.up_proj",
        weight: &mut w,
        bias: Some(&mut bias),
        stats: &stats,
        sparsity: 0.0,
    };
    let report = algo.compress_linear(&mut slot).unwrap();
    assert_close("slot", w.data(), &GROUP4_SYM_BLOCK4_ACTORDER_STATIC_Q);
    assert_eq!(report.dead_columns, 1);
    assert_eq!(bias, [0.5; 4], "the bias is left alone");
}

#[test]
fn gptq_registers_as_a_one_shot_quantizer_that_needs_the_hessian() {
    let entry = AlgorithmEntry::find("gptq").unwrap();
    assert_eq!(entry.kind, AlgorithmKind::OneShotQuantizer);
    let table: toml::Table = "scheme = \"W8A8\"".parse().unwrap();
    let algo = entry.build_oneshot(&table).unwrap();
    assert_eq!(algo.name(), "gptq");
    assert!(algo.needs().hessian && !algo.needs().sq_norm);
    assert_eq!(
        algo.activation_quant(),
        Some(compress_core::oneshot::ActivationQuant::PerTokenDynamic { bits: 8 })
    );
    let bad: toml::Table = "group_size = 64".parse().unwrap();
    let err = entry.build_oneshot(&bad).err().unwrap().to_string();
    assert!(
        err.starts_with("unknown key 'group_size' in [algorithm] of 'gptq'"),
        "{err}"
    );
}

/// GPTQ lowers the layer's output error below round-to-nearest's on the Hessian's own inputs:
/// `tr((W - Q) H (W - Q)^T)`.
#[test]
fn gptq_beats_round_to_nearest_on_the_calibration_objective() {
    let (rows, cols, tokens) = (24, 64, 256);
    let mut rng = Lcg(7);
    let w: Vec<f32> = (0..rows * cols).map(|_| rng.normal()).collect();
    let h = random_hessian(&mut rng, cols, tokens);
    let objective = |q: &[f32]| -> f64 {
        let mut total = 0.0;
        for r in 0..rows {
            let d: Vec<f64> = (0..cols)
                .map(|j| f64::from(w[r * cols + j] - q[r * cols + j]))
                .collect();
            for i in 0..cols {
                for j in 0..cols {
                    total += d[i] * h.data()[i * cols + j] * d[j];
                }
            }
        }
        total
    };
    let scheme = WeightScheme {
        quantizer: Quantizer::new(4, true),
        strategy: Strategy::Group(16),
    };
    let mut rtn = Dense::new(vec![rows, cols], w.clone());
    rtn_quantize(&mut rtn, &scheme, "fc").unwrap();
    for actorder in [ActOrder::Off, ActOrder::Group, ActOrder::Weight] {
        let c = GptqConfig {
            weights: scheme,
            actorder,
            static_groups: actorder == ActOrder::Weight,
            ..GptqConfig::default()
        };
        let mut q = Dense::new(vec![rows, cols], w.clone());
        fasterquant(&mut q, &h, &c, "fc").unwrap();
        let (g, r) = (objective(q.data()), objective(rtn.data()));
        assert!(g < 0.8 * r, "{actorder:?}: gptq {g} vs rtn {r}");
    }
}

/// A small deterministic generator (no rand dependency).
struct Lcg(u64);

impl Lcg {
    fn uniform(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

/// `H = 2 / samples * sum x x^T` of correlated random tokens (one sequence per 32 tokens).
fn random_hessian(rng: &mut Lcg, d: usize, tokens: usize) -> Dense<f64> {
    let mix: Vec<f32> = (0..d).map(|_| rng.normal()).collect();
    let mut h = vec![0.0f64; d * d];
    let mut x = vec![0.0f64; d];
    for _ in 0..tokens {
        let shared = rng.normal();
        for (j, v) in x.iter_mut().enumerate() {
            *v = f64::from(rng.normal() + shared * mix[j]) * if j % 7 == 0 { 3.0 } else { 1.0 };
        }
        for i in 0..d {
            for j in 0..d {
                h[i * d + j] += x[i] * x[j];
            }
        }
    }
    let samples = (tokens / 32).max(1) as f64;
    Dense::new(
        vec![d, d],
        h.into_iter().map(|v| v * 2.0 / samples).collect(),
    )
}

/// Per-Linear time on SmolLM2-135M's MLP shapes (run with `--release --ignored
/// --nocapture`): W4A16 with groups of 64 (128 does not divide 576), and the share of the
/// inverse-Hessian factor.
#[test]
#[ignore]
fn time_per_linear_on_smollm2_mlp_shapes() {
    let mut rng = Lcg(11);
    for (rows, cols) in [(576, 1536), (1536, 576)] {
        let h = random_hessian(&mut rng, cols, 512);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.normal() * 0.02).collect();
        let t = Instant::now();
        compress_core::oneshot::hessian::prepare("gptq", &h, 0.01, None).unwrap();
        let prepare = t.elapsed().as_secs_f64();
        for actorder in [ActOrder::Off, ActOrder::Weight] {
            let weights = WeightScheme {
                quantizer: Quantizer::new(4, true),
                strategy: Strategy::Group(64),
            };
            let c = GptqConfig {
                weights,
                actorder,
                static_groups: actorder == ActOrder::Weight,
                ..GptqConfig::default()
            };
            let mut q = Dense::new(vec![rows, cols], w.clone());
            let t = Instant::now();
            let report = fasterquant(&mut q, &h, &c, "fc").unwrap();
            println!(
                "gptq [{rows}, {cols}] int4 sym group 64 actorder {actorder:?}: {:.3} s on {} threads \
                 (hessian::prepare alone {prepare:.3} s; loss {:.4e})",
                t.elapsed().as_secs_f64(),
                rayon::current_num_threads(),
                report.loss.unwrap()
            );
        }
    }
}
