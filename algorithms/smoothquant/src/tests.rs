//! quant-smoothquant's tests: the scales against a NumPy port of `smooth.py`
//! (`scripts/reference/smoothquant.py`) and the folding on a host-matrix RMSNorm -> Linear block.

use std::collections::BTreeMap;

use compress_core::oneshot::{BlockOps, InputStats, SmoothKind, SmoothMapping};
use compress_core::{AlgorithmEntry, AlgorithmKind, CompressError, Dense, Result};

use super::*;

/// Printed by `python3 scripts/reference/smoothquant.py` (seed 11).
#[allow(clippy::excessive_precision, clippy::unreadable_literal)]
mod reference {
    pub const HAND_A050: [f32; 4] = [
        1.154700517654419,
        0.7071067690849304,
        0.7071067690849304,
        9.999999747378752e-06,
    ];
    pub const HAND_A080: [f32; 4] = [
        2.433457374572754,
        0.8705505728721619,
        0.37892913818359375,
        9.999999747378752e-06,
    ];
    pub const HAND_A000: [f32; 4] = [0.3333333432674408, 0.5, 2.0, 100000.0];
    pub const HAND_A100: [f32; 4] = [4.0, 1.0, 0.25, 9.999999747378752e-06];
    pub const R: [f32; 60] = [
        0.0341927669942379,
        27.194950103759766,
        1.224721074104309,
        -0.2551535367965698,
        -2.383756160736084,
        -0.5273842215538025,
        0.5697263479232788,
        -1.121288776397705,
        0.7468855977058411,
        -0.9236624240875244,
        12.532390594482422,
        -0.0964321568608284,
        0.6803784370422363,
        -2.7313265800476074,
        -0.3790985643863678,
        0.23155507445335388,
        6.596108436584473,
        -0.2025298774242401,
        -0.15278618037700653,
        13.713972091674805,
        -0.8703406453132629,
        -0.7571917772293091,
        3.1598548889160156,
        -0.6705658435821533,
        -1.9203405380249023,
        -16.28107261657715,
        -0.4675975441932678,
        -0.5966012477874756,
        -11.93971061706543,
        0.03663782775402069,
        0.8972492814064026,
        -4.662641525268555,
        -0.7435960173606873,
        0.1924969106912613,
        5.737886428833008,
        -0.3000105917453766,
        0.5446677803993225,
        20.85750961303711,
        -0.2069564312696457,
        -0.40675777196884155,
        2.7812047004699707,
        0.2475457340478897,
        1.0988128185272217,
        -25.69161605834961,
        -0.6616129279136658,
        -0.41908347606658936,
        -13.872118949890137,
        0.1264345496892929,
        0.5278041958808899,
        -14.775800704956055,
        1.3856470584869385,
        0.41096216440200806,
        5.019011974334717,
        0.40170708298683167,
        0.9556695818901062,
        -26.639596939086914,
        0.6139296293258667,
        0.3013884127140045,
        -14.141748428344727,
        0.3470301032066345,
    ];
    pub const GAMMA: [f32; 6] = [
        0.9499157071113586,
        1.1563045978546143,
        0.9121875762939453,
        0.9963518381118774,
        1.0685702562332153,
        0.8247476816177368,
    ];
    pub const WQ: [f32; 24] = [
        0.23943865299224854,
        -0.04198527708649635,
        0.19699305295944214,
        -0.20873500406742096,
        0.43448060750961304,
        0.24208079278469086,
        -0.07121001183986664,
        0.2527828514575958,
        0.5039020776748657,
        0.7164701819419861,
        -0.6294305324554443,
        0.35325273871421814,
        0.1860274076461792,
        -0.037544313818216324,
        -0.40266597270965576,
        0.5028754472732544,
        -0.5046951770782471,
        0.22677817940711975,
        0.520747184753418,
        -0.6398677229881287,
        -0.12100713700056076,
        -0.5236867070198059,
        0.09762164205312729,
        0.6057500243186951,
    ];
    pub const WV: [f32; 18] = [
        0.8094224333763123,
        -0.7112457752227783,
        -0.22997960448265076,
        0.2814180254936218,
        0.6317490339279175,
        0.16848425567150116,
        -0.29846081137657166,
        0.11885260045528412,
        -0.0066476804204285145,
        -0.08149629086256027,
        -0.29378843307495117,
        0.15490390360355377,
        0.12315185368061066,
        -0.037193652242422104,
        -0.08867517858743668,
        -0.5139666199684143,
        -0.19447027146816254,
        0.4825798571109772,
    ];
    pub const ACT_MAX: [f32; 6] = [
        0.2786148488521576,
        2.8180527687072754,
        0.22173143923282623,
        0.17817886173725128,
        2.5927889347076416,
        0.09582383185625076,
    ];
    pub const SCALES: [f32; 6] = [
        0.5866978764533997,
        1.9905115365982056,
        0.6633467078208923,
        0.49868813157081604,
        2.0258686542510986,
        0.3977315425872803,
    ];
    pub const SMOOTHED_ACT_MAX: [f64; 6] = [
        0.47488641334944537,
        1.4157429137619804,
        0.33426176547546516,
        0.3572951684006824,
        1.2798406779658047,
        0.24092591161537255,
    ];
}
use reference::*;

fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs().max(1e-12)
}

const Q: &str = "self_attn.q_proj";
const V: &str = "self_attn.v_proj";
const O: &str = "self_attn.o_proj";

/// `h = rmsnorm(r) * gamma` feeding `q_proj` and `v_proj`; `v_proj -> o_proj` is a Linear
/// mapping SmoothQuant must leave alone.
struct HostBlock {
    r: Vec<f32>,
    d: usize,
    gamma: Vec<f32>,
    linears: BTreeMap<String, Dense<f32>>,
    mappings: Vec<SmoothMapping>,
    stats: BTreeMap<String, InputStats>,
}

impl HostBlock {
    fn new() -> Self {
        let linears = BTreeMap::from([
            (Q.to_string(), Dense::new(vec![4, 6], WQ.to_vec())),
            (V.to_string(), Dense::new(vec![3, 6], WV.to_vec())),
            (
                O.to_string(),
                Dense::new(vec![2, 3], vec![0.5, -1.0, 2.0, 1.5, 0.25, -0.75]),
            ),
        ]);
        let mappings = vec![
            SmoothMapping {
                smooth: "input_layernorm".into(),
                kind: SmoothKind::Norm,
                balance: vec![Q.into(), V.into()],
                inspect: "self_attn".into(),
            },
            SmoothMapping {
                smooth: V.into(),
                kind: SmoothKind::Linear,
                balance: vec![O.into()],
                inspect: O.into(),
            },
        ];
        let mut block = Self {
            r: R.to_vec(),
            d: 6,
            gamma: GAMMA.to_vec(),
            linears,
            mappings,
            stats: BTreeMap::new(),
        };
        let h = block.h();
        let act_max: Vec<f32> = (0..6)
            .map(|j| {
                h.iter()
                    .skip(j)
                    .step_by(6)
                    .fold(0.0f64, |m, v| m.max(v.abs())) as f32
            })
            .collect();
        for name in [Q, V] {
            let stats = InputStats {
                abs_max: Some(act_max.clone()),
                ..InputStats::default()
            };
            block.stats.insert(name.into(), stats);
        }
        block.stats.insert(
            O.into(),
            InputStats {
                abs_max: Some(vec![1.0; 3]),
                ..InputStats::default()
            },
        );
        block
    }

    /// `rmsnorm(r) * gamma` in f64.
    fn h(&self) -> Vec<f64> {
        self.r
            .chunks(self.d)
            .flat_map(|row| {
                let ms = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / self.d as f64;
                let inv = 1.0 / (ms + 1e-6).sqrt();
                row.iter()
                    .zip(&self.gamma)
                    .map(move |(&v, &g)| f64::from(v) * inv * f64::from(g))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// A Linear reading `h`: `h W^T`, f64.
    fn out(&self, linear: &str) -> Vec<f64> {
        let w = &self.linears[linear];
        let (out, d) = (w.shape()[0], w.shape()[1]);
        self.h()
            .chunks(d)
            .flat_map(|row| {
                (0..out).map(move |o| {
                    row.iter()
                        .zip(&w.data()[o * d..(o + 1) * d])
                        .map(|(a, &b)| a * f64::from(b))
                        .sum::<f64>()
                })
            })
            .collect()
    }
}

fn unsupported(what: &str) -> CompressError {
    CompressError::Algorithm {
        algorithm: "test".into(),
        message: format!("{what} is not needed by smoothquant"),
    }
}

impl BlockOps for HostBlock {
    fn index(&self) -> usize {
        2
    }
    fn path(&self) -> &str {
        "model.layers.2"
    }
    fn mappings(&self) -> &[SmoothMapping] {
        &self.mappings
    }
    fn linears(&self) -> Vec<String> {
        self.mappings
            .iter()
            .flat_map(|m| m.balance.iter().cloned())
            .collect()
    }
    fn stats(&self, linear: &str) -> Result<&InputStats> {
        self.stats.get(linear).ok_or_else(|| unsupported(linear))
    }
    fn weight(&self, linear: &str) -> Result<Dense<f32>> {
        self.linears
            .get(linear)
            .cloned()
            .ok_or_else(|| unsupported(linear))
    }
    fn set_weight(&mut self, _linear: &str, _weight: Dense<f32>) -> Result<()> {
        Err(unsupported("set_weight"))
    }
    fn fold_scales(&mut self, mapping: &SmoothMapping, scales: &[f32]) -> Result<()> {
        assert_eq!(
            mapping.kind,
            SmoothKind::Norm,
            "only norm mappings are smoothed"
        );
        self.gamma.iter_mut().zip(scales).for_each(|(g, s)| *g /= s);
        for b in &mapping.balance {
            let w = self.linears.get_mut(b).unwrap();
            for row in w.data_mut().chunks_mut(scales.len()) {
                row.iter_mut().zip(scales).for_each(|(v, s)| *v *= s);
            }
        }
        Ok(())
    }
    fn inspect_error(&mut self, _scope: &str, _overrides: &[(String, Dense<f32>)]) -> Result<f64> {
        Err(unsupported("inspect_error"))
    }
    fn input_tokens(&self, _linear: &str, _max_tokens: usize) -> Result<Dense<f32>> {
        Err(unsupported("input_tokens"))
    }
}

/// By hand for alpha 0.5: weight maxima over both Linears `[3, 2, 0.5, 0 -> 1e-5]`, so
/// `sqrt([4/3, 1/2, 0.25/0.5])` and `0^0.5 / ...` clamped to 1e-5; alpha 0 is `1 / w_max`,
/// alpha 1 is `act_max` (0 clamped).
#[test]
fn smoothing_scales_follow_smooth_ln_fcs() {
    let w1 = Dense::new(vec![1, 4], vec![1.0, -2.0, 0.5, 0.0]);
    let w2 = Dense::new(vec![1, 4], vec![-3.0, 0.5, 0.25, 0.0]);
    let act = [4.0, 1.0, 0.25, 0.0];
    let weights = [w1, w2];
    let half = smooth_scales(&act, &weights, 0.5);
    assert!((half[0] - (4.0f32 / 3.0).sqrt()).abs() < 1e-6, "{half:?}");
    assert!((half[1] - 0.5f32.sqrt()).abs() < 1e-6 && (half[2] - 0.5f32.sqrt()).abs() < 1e-6);
    for (alpha, want) in [
        (0.5, HAND_A050),
        (0.8, HAND_A080),
        (0.0, HAND_A000),
        (1.0, HAND_A100),
    ] {
        let got = smooth_scales(&act, &weights, alpha);
        for (g, w) in got.iter().zip(want) {
            assert!(
                close(f64::from(*g), f64::from(w), 1e-6),
                "alpha {alpha}: {got:?}"
            );
        }
    }
    assert_eq!(smooth_scales(&act, &weights, 1.0), [4.0, 1.0, 0.25, 1e-5]);
}

#[test]
fn smoothing_folds_into_the_norm_and_keeps_the_float_output() {
    let mut block = HostBlock::new();
    for (got, want) in block.stats[Q].abs_max.as_ref().unwrap().iter().zip(ACT_MAX) {
        assert!(close(f64::from(*got), f64::from(want), 1e-6));
    }
    let before_q = block.out(Q);
    let before_v = block.out(V);
    let o_before = block.linears[O].clone();
    let sq = SmoothQuantQuantizer::default();
    let report = sq.transform_block(&mut block).unwrap();
    assert_eq!(
        report.notes.len(),
        1,
        "the Linear mapping is not smoothed: {:?}",
        report.notes
    );
    assert!(
        report.notes[0].starts_with(
            "input_layernorm -> self_attn.q_proj, self_attn.v_proj: scales in [3.977e-1, 2.026e0]"
        ),
        "{:?}",
        report.notes
    );
    // gamma / s and W * s, as the script computes them.
    for ((g, g0), s) in block.gamma.iter().zip(GAMMA).zip(SCALES) {
        assert!(
            close(f64::from(*g), f64::from(g0 / s), 1e-6),
            "{:?}",
            block.gamma
        );
    }
    for (i, (w, w0)) in block.linears[Q].data().iter().zip(WQ).enumerate() {
        assert!(close(f64::from(*w), f64::from(w0 * SCALES[i % 6]), 1e-6));
    }
    assert_eq!(block.linears[O], o_before);
    // The float output is unchanged ...
    for (a, b) in block
        .out(Q)
        .iter()
        .zip(&before_q)
        .chain(block.out(V).iter().zip(&before_v))
    {
        assert!((a - b).abs() < 1e-5 * b.abs().max(1.0), "{a} vs {b}");
    }
    // ... while the activation outliers shrank to the script's values.
    let h = block.h();
    for (j, want) in SMOOTHED_ACT_MAX.iter().enumerate() {
        let got = h
            .iter()
            .skip(j)
            .step_by(6)
            .fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(close(got, *want, 1e-5), "channel {j}: {got} vs {want}");
    }
}

#[test]
fn a_mapping_without_abs_max_is_an_error_naming_it() {
    let mut block = HostBlock::new();
    block.stats.get_mut(Q).unwrap().abs_max = None;
    let err = SmoothQuantQuantizer::default()
        .transform_block(&mut block)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "algorithm 'smoothquant': model.layers.2: input_layernorm -> self_attn.q_proj, \
         self_attn.v_proj: no abs_max statistic for 'self_attn.q_proj'"
    );
}

fn build_err(src: &str) -> String {
    let table: toml::Table = src.parse().unwrap();
    match AlgorithmEntry::find("smoothquant")
        .unwrap()
        .build_oneshot(&table)
    {
        Ok(_) => panic!("'{src}' must be refused"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn smoothquant_registers_as_w8a8_and_refuses_an_alpha_outside_zero_one() {
    let entry = AlgorithmEntry::find("smoothquant").unwrap();
    assert_eq!(entry.kind, AlgorithmKind::OneShotQuantizer);
    let config = SmoothQuantConfig::from_table(&toml::Table::new()).unwrap();
    assert_eq!(config, SmoothQuantConfig::default());
    assert_eq!(config.smoothing_strength, 0.5);
    assert_eq!(
        config.scheme.weights,
        compress_quant::rtn::WeightScheme::w8_channel()
    );
    let one = SmoothQuantConfig::from_table(&"smoothing_strength = 1".parse().unwrap()).unwrap();
    assert_eq!(one.smoothing_strength, 1.0);
    assert_eq!(
        build_err("smoothing_strength = 1.5"),
        "key 'smoothing_strength' in [algorithm] of 'smoothquant': 1.5 is outside [0, 1]"
    );
    assert_eq!(
        build_err("smoothing_strength = -0.1"),
        "key 'smoothing_strength' in [algorithm] of 'smoothquant': -0.1 is outside [0, 1]"
    );
    assert_eq!(
        build_err("smoothing_strength = \"high\""),
        "key 'smoothing_strength' in [algorithm] of 'smoothquant': expected a number, found \
         string \"high\""
    );
    assert!(
        build_err("alpha = 0.5").starts_with("unknown key 'alpha' in [algorithm] of 'smoothquant'")
    );
}

/// By hand: row [1, -0.5, 0.3]: symmetric 8-bit, max 1, scale 2 / 255, zero 128; 0.3 * 127.5 =
/// 38.25 -> 38 -> 38 * 2 / 255; -0.5 -> -63.75 -> -64; 1 -> 127.5 -> 128 (half to even) + 128
/// = 256 -> clamped 255 -> 127 * 2 / 255.
#[test]
fn compress_linear_quantizes_int8_per_channel() {
    let mut w = Dense::new(vec![1, 3], vec![1.0, -0.5, 0.3]);
    let stats = InputStats::default();
    let mut slot = LinearSlot {
        path: "fc",
        weight: &mut w,
        bias: None,
        stats: &stats,
        sparsity: 0.0,
    };
    SmoothQuantQuantizer::default()
        .compress_linear(&mut slot)
        .unwrap();
    let want = [254.0 / 255.0, -128.0 / 255.0, 76.0 / 255.0];
    for (g, w) in w.data().iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{:?}", w);
    }
}
