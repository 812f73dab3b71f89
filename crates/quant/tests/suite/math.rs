//! Quantization math: parity with NNI v3's `PtqQuantizer` on the 7 oracle cases of
//! `nni_quant.json`, fake quantization and its gradients, observers, and the calibration config.

use std::sync::OnceLock;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};
use compress_core::testing::Nested;
use compress_core::testing::oracle::{json_dense as dense, nni_quant, transpose};
use compress_core::{
    CompressError, Dense, Granularity, ModuleIndex,
    config::{QuantDtype, QuantScheme},
    quantizer::QuantParams,
};
use compress_quant::{
    CalibrationConfig, CalibrationEntry, EmaObserver, FakeQuantGrad, MinMaxObserver, Observer,
    broadcast_qparam, fake_quant, fake_quant_dense, per_tensor_scaling, qparams_from_range,
    quant_bounds, quant_scaling, symmetric_zero_point,
};
use serde_json::{Value, json};

/// The oracle's model: `Linear(8, 4)` named `fc`.
#[derive(Module, Debug)]
struct Net {
    fc: Linear,
}

fn oracle() -> &'static Value {
    static ORACLE: OnceLock<Value> = OnceLock::new();
    ORACLE.get_or_init(nni_quant)
}

#[track_caller]
fn assert_close(found: &Dense<f32>, expected: &Dense<f32>, tol: f32, what: &str) {
    assert_eq!(found.shape(), expected.shape(), "{what}: shape");
    for (i, (a, b)) in found.data().iter().zip(expected.data()).enumerate() {
        assert!(
            (a - b).abs() <= tol,
            "{what}[{i}]: {a} vs NNI's {b} (|diff| {})",
            (a - b).abs()
        );
    }
}

fn net(device: &Device) -> (Net, Dense<f32>, Dense<f32>) {
    let o = oracle();
    let weight = transpose(&dense(&o["weight"])); // PyTorch [4, 8] -> Burn [8, 4]
    let bias = dense(&o["bias"]);
    let net = Net {
        fc: Linear {
            weight: Param::from_tensor(weight.to_tensor(device)),
            bias: Some(Param::from_tensor(bias.to_tensor(device))),
        },
    };
    (net, weight, bias)
}

fn linear(weight: &Dense<f32>, bias: &Dense<f32>, x: &Dense<f32>, device: &Device) -> Dense<f32> {
    let layer = Linear {
        weight: Param::from_tensor(weight.to_tensor(device)),
        bias: Some(Param::from_tensor(bias.to_tensor(device))),
    };
    Dense::from_tensor(layer.forward(x.to_tensor::<2>(device)), "fc").expect("f32 output")
}

fn rows(t: &Dense<f32>, from: usize, to: usize) -> Dense<f32> {
    let cols = t.shape()[1];
    Dense::new(
        vec![to - from, cols],
        t.data()[from * cols..to * cols].to_vec(),
    )
}

/// A keep-dim value of a rank-2 tensor as a rank-2 Burn tensor (`[]` is `[1, 1]`).
fn rank2(d: &Dense<f32>, device: &Device) -> Tensor<2> {
    let d = if d.shape().is_empty() {
        d.clone().reshape(vec![1, 1])
    } else {
        d.clone()
    };
    d.to_tensor(device)
}

/// Burn's `fake_quant` on the same values as the host version.
fn burn_fake_quant(x: &Dense<f32>, e: &CalibrationEntry, device: &Device) -> Dense<f32> {
    let (qmin, qmax) = e.bounds();
    let y = fake_quant(
        x.to_tensor::<2>(device),
        rank2(&e.scale, device),
        rank2(&e.zero_point, device),
        qmin,
        qmax,
        FakeQuantGrad::Ste,
    );
    Dense::from_tensor(y, "y").expect("f32")
}

fn scheme_of(v: &Value) -> Option<QuantScheme> {
    match v.as_str() {
        Some("affine") => Some(QuantScheme::Affine),
        Some("symmetric") => Some(QuantScheme::Symmetric),
        _ => None,
    }
}

fn granularity_of(v: &Value) -> Granularity {
    match v.as_str() {
        None => Granularity::Default,
        Some("out_channel") => Granularity::OutChannel,
        Some("in_channel") => Granularity::InChannel,
        Some("per_channel") => Granularity::PerChannel,
        Some(other) => panic!("unexpected granularity {other}"),
    }
}

/// One oracle case end to end: observe (in two calibration batches), compute scale and zero
/// point, export NNI's calibration config, fake-quantize weight, input and output, run the
/// quantized model.
fn nni_case(case: &str) {
    let o = oracle();
    let c = &o["cases"][case];
    let device = Device::flex();
    let (model, weight, bias) = net(&device);
    let index = ModuleIndex::from_module(&model);
    let input = dense(&o["calib_input"]);
    let float_out = linear(&weight, &bias, &input, &device);
    assert_close(&float_out, &dense(&o["float_output"]), 1e-5, "float output");

    let mut calibration = CalibrationConfig::new();
    for (target, nni_target) in [
        ("weight", "weight"),
        ("_input_", "_input_0"),
        ("_output_", "_output_0"),
    ] {
        let t = &c["targets"][nni_target];
        let dtype = QuantDtype::parse(t["quant_dtype"].as_str().unwrap()).unwrap();
        let scheme = scheme_of(&t["quant_scheme"]);
        let (qmin, qmax) = dtype.range();
        assert_eq!(
            (qmin as i64, qmax as i64),
            (t["qmin"].as_i64().unwrap(), t["qmax"].as_i64().unwrap()),
            "{case}/{target}: dtype range"
        );
        let path = format!("fc.{target}");
        let (out_axis, in_axis) = if target == "weight" {
            (Some(1), Some(0))
        } else {
            (None, None)
        };
        let scaling = quant_scaling(
            &granularity_of(&t["granularity"]),
            2,
            out_axis,
            in_axis,
            &path,
        )
        .unwrap();
        let mut observer = MinMaxObserver::new(scaling, &path);
        match target {
            "weight" => observer.observe(&weight).unwrap(),
            "_input_" => {
                observer.observe(&rows(&input, 0, 4)).unwrap();
                observer.observe(&rows(&input, 4, 6)).unwrap();
            }
            _ => {
                observer.observe(&rows(&float_out, 0, 2)).unwrap();
                observer.observe(&rows(&float_out, 2, 6)).unwrap();
            }
        }
        let params = observer.qparams(dtype, scheme).unwrap();
        calibration.insert("fc", target, CalibrationEntry::new(params, dtype, scheme));
    }

    // Scale, zero point and tracked range in NNI's layout and shapes.
    let exported = calibration.to_nni_value(&index).unwrap();
    for nni_target in ["weight", "_input_0", "_output_0"] {
        let ours = &exported["fc"][nni_target];
        let theirs = &c["targets"][nni_target];
        let what = format!("{case}/{nni_target}");
        for key in ["scale", "zero_point", "tracked_min", "tracked_max"] {
            assert_close(
                &dense(&ours[key]),
                &dense(&theirs[key]),
                1e-6,
                &format!("{what}.{key}"),
            );
        }
        let scale_shape: Vec<usize> = theirs["scale_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(
            dense(&ours["scale"]).shape(),
            scale_shape,
            "{what}: scale shape"
        );
        assert_eq!(ours["quant_dtype"], theirs["quant_dtype"], "{what}");
        assert_eq!(ours["quant_scheme"], theirs["quant_scheme"], "{what}");
        let bits = QuantDtype::parse(theirs["quant_dtype"].as_str().unwrap())
            .unwrap()
            .bits;
        assert_eq!(ours["quant_bits"], json!(bits), "{what}");
    }

    // The JSON round trip, and NNI's own entries read back, give the same parameters.
    let text = calibration.to_nni_json(&index).unwrap();
    assert_eq!(
        CalibrationConfig::from_nni_json(&text, &index).unwrap(),
        calibration
    );
    let nni_only = json!({ "fc": c["targets"] });
    let imported = CalibrationConfig::from_nni_value(&nni_only, &index, "oracle").unwrap();
    for (module, target, ours) in calibration.iter() {
        let theirs = imported.get(module, target).expect("imported");
        let what = format!("{case}/{target} imported");
        assert_close(&theirs.scale, &ours.scale, 1e-6, &what);
        assert_close(&theirs.zero_point, &ours.zero_point, 0.0, &what);
        assert_eq!(
            (theirs.quant_dtype, theirs.quant_scheme, theirs.quant_bits),
            (ours.quant_dtype, ours.quant_scheme, ours.quant_bits)
        );
    }

    // Fake quantization of weight and input, the quantized model, its quantized output.
    let entry = |t: &str| calibration.get("fc", t).unwrap();
    let fq_weight = entry("weight").fake_quant(&weight).unwrap();
    assert_close(
        &transpose(&fq_weight),
        &dense(&c["fake_quant_weight"]),
        1e-6,
        &format!("{case}: fake-quant weight"),
    );
    let fq_input = entry("_input_0").fake_quant(&input).unwrap();
    assert_close(
        &fq_input,
        &dense(&c["fake_quant_input"]),
        1e-6,
        &format!("{case}: fake-quant input"),
    );
    let out = linear(&fq_weight, &bias, &fq_input, &device);
    let fq_out = entry("_output_").fake_quant(&out).unwrap();
    assert_close(
        &fq_out,
        &dense(&c["model_output"]),
        1e-6,
        &format!("{case}: model output"),
    );
    assert_close(
        &fq_out,
        &dense(&c["fake_quant_output"]),
        1e-6,
        &format!("{case}: fake-quant output"),
    );

    // Burn's fake quantization agrees with the host version.
    for (t, x) in [("weight", &weight), ("_input_", &input), ("_output_", &out)] {
        let host = entry(t).fake_quant(x).unwrap();
        assert_close(
            &burn_fake_quant(x, entry(t), &device),
            &host,
            1e-6,
            &format!("{case}/{t}: Burn vs host"),
        );
    }
}

macro_rules! nni_cases {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                nni_case(stringify!($name));
            }
        )*
    };
}

mod nni_ptq {
    use super::nni_case;

    nni_cases!(
        int8_affine_per_tensor,
        int8_affine_per_channel,
        int8_symmetric_per_tensor,
        int8_symmetric_per_channel,
        uint8_affine_per_tensor,
        uint8_symmetric_per_tensor,
        int4_affine_per_channel,
    );
}

#[test]
fn the_new_error_variants_keep_compress_error_small() {
    // Results of CompressError are everywhere: a variant that grows the enum past 120 bytes
    // trips clippy's `result_large_err` in every crate that wraps it.
    assert!(
        std::mem::size_of::<CompressError>() <= 120,
        "{}",
        std::mem::size_of::<CompressError>()
    );
}

#[test]
fn every_oracle_case_is_covered() {
    let cases: Vec<&String> = oracle()["cases"].as_object().unwrap().keys().collect();
    assert_eq!(cases.len(), 7, "{cases:?}");
}

#[test]
fn dtype_ranges_are_nnis_narrow_ranges() {
    let p = |s| QuantDtype::parse(s).unwrap();
    assert_eq!(quant_bounds(p("int8")), (-127.0, 127.0));
    assert_eq!(quant_bounds(p("uint8")), (0.0, 255.0));
    assert_eq!(quant_bounds(p("int4")), (-7.0, 7.0));
    assert_eq!(quant_bounds(p("uint4")), (0.0, 15.0));
    assert_eq!(quant_bounds(p("int2")), (-1.0, 1.0));
    assert_eq!(symmetric_zero_point(p("int8")), 0.0);
    assert_eq!(symmetric_zero_point(p("uint8")), 128.0);
    assert_eq!(symmetric_zero_point(p("uint4")), 8.0);
    assert_eq!(symmetric_zero_point(p("int4")), 0.0);
}

#[test]
fn ranges_are_widened_to_zero_and_scales_floored_at_eps() {
    let int8 = QuantDtype::parse("int8").unwrap();
    let uint8 = QuantDtype::parse("uint8").unwrap();
    let d = |v: &[f32]| Dense::new(vec![v.len()], v.to_vec());
    // Blocks: all zero, all positive, all negative.
    let (mn, mx) = (d(&[0.0, 1.0, -4.0]), d(&[0.0, 2.0, -1.0]));

    let (scale, zp) = qparams_from_range(&mn, &mx, int8, QuantScheme::Affine);
    assert_eq!(scale.data(), &[f32::EPSILON, 2.0 / 254.0, 4.0 / 254.0]);
    // qmin - round(mn / scale): 0 -> -127; [0, 2] -> -127; [-4, 0] -> -127 + 254, clamped.
    assert_eq!(zp.data(), &[-127.0, -127.0, 127.0]);

    let (scale, zp) = qparams_from_range(&mn, &mx, uint8, QuantScheme::Symmetric);
    assert_eq!(scale.data(), &[f32::EPSILON, 2.0 / 127.5, 4.0 / 127.5]);
    assert_eq!(zp.data(), &[128.0; 3]);
}

#[test]
fn affine_zero_points_round_half_to_even_and_are_clamped() {
    let int8 = QuantDtype::parse("int8").unwrap();
    let affine = |mn: f32, mx: f32| {
        let scalar = |v: f32| Dense::new(vec![], vec![v]);
        qparams_from_range(&scalar(mn), &scalar(mx), int8, QuantScheme::Affine)
    };
    // [-1.5, 125.5] over 254 steps: scale 0.5, mn / scale = -3 exactly.
    let (scale, zp) = affine(-1.5, 125.5);
    assert_eq!(scale.data(), &[0.5]);
    assert_eq!(zp.data(), &[-124.0]);
    // Half-way zero points go to the even neighbour: mn / scale = -2.5 -> round -2.
    let (scale, zp) = affine(-1.25, 125.75);
    assert_eq!(scale.data(), &[0.5]);
    assert_eq!(zp.data(), &[-125.0]);
}

#[test]
fn fake_quant_rounds_half_to_even_and_clamps() {
    let int4 = QuantDtype::parse("int4").unwrap();
    let x = Dense::new(vec![1, 7], vec![0.5, 1.5, 2.5, -0.5, -2.5, 9.0, -100.0]);
    let one = Dense::new(vec![], vec![1.0f32]);
    let zero = Dense::new(vec![], vec![0.0f32]);
    let y = fake_quant_dense(&x, &one, &zero, int4).unwrap();
    assert_eq!(y.data(), &[0.0, 2.0, 2.0, -0.0, -2.0, 7.0, -7.0]);
    // A zero point shifts the integer grid: uint4 with zp 8 covers [-8, 7].
    let uint4 = QuantDtype::parse("uint4").unwrap();
    let y = fake_quant_dense(&x, &one, &Dense::new(vec![], vec![8.0f32]), uint4).unwrap();
    assert_eq!(y.data(), &[0.0, 2.0, 2.0, -0.0, -2.0, 7.0, -8.0]);
}

#[test]
fn block_scales_repeat_over_their_blocks_on_host_and_in_burn() {
    let device = Device::flex();
    let int8 = QuantDtype::parse("int8").unwrap();
    let x = Dense::new(vec![2, 4], (0..8).map(|i| i as f32 * 0.37 - 1.0).collect());
    // One scale per 2 columns and per row: kept-dim shape [2, 2].
    let scale = Dense::new(vec![2, 2], vec![0.01, 0.02, 0.03, 0.04]);
    let zp = Dense::new(vec![2, 1], vec![3.0, -2.0]);
    let expanded = broadcast_qparam(&scale, &[2, 4], "x", "scale").unwrap();
    assert_eq!(
        expanded.data(),
        &[0.01, 0.01, 0.02, 0.02, 0.03, 0.03, 0.04, 0.04]
    );
    let host = fake_quant_dense(&x, &scale, &zp, int8).unwrap();
    let (qmin, qmax) = quant_bounds(int8);
    let burn = fake_quant(
        x.to_tensor::<2>(&device),
        scale.to_tensor(&device),
        zp.to_tensor(&device),
        qmin,
        qmax,
        FakeQuantGrad::Clipped,
    );
    assert_close(&Dense::from_tensor(burn, "y").unwrap(), &host, 0.0, "block");

    let err = fake_quant_dense(&x, &Dense::new(vec![3], vec![1.0; 3]), &zp, int8).unwrap_err();
    assert!(matches!(
        err,
        CompressError::QuantShape { key: "scale", .. }
    ));
    assert!(err.to_string().contains("[3]"), "{err}");
}

/// `x`, with `scale = 0.5`, `zero_point = 1`, int4 (`[-7, 7]`): `zero_point + x / scale` is
/// -9 (out), -7 (on the bound), 1.6, 7 (on the bound), 7.4 (out).
fn grad_case(grad: FakeQuantGrad) -> (Vec<f32>, Vec<f32>) {
    let device = Device::flex().autodiff();
    let x = Tensor::<2>::from_data(
        TensorData::new(vec![-5.0f32, -4.0, 0.3, 3.0, 3.2], [1, 5]),
        &device,
    )
    .require_grad();
    let scale = Tensor::<2>::from_floats([[0.5]], &device);
    let zp = Tensor::<2>::from_floats([[1.0]], &device);
    let y = fake_quant(x.clone(), scale, zp, -7.0, 7.0, grad);
    let weights = Tensor::<2>::from_floats([[1.0, 2.0, 3.0, 4.0, 5.0]], &device);
    let grads = (y.clone() * weights).sum().backward();
    let g = x.grad(&grads).expect("x has a gradient");
    (
        Dense::from_tensor(y, "y").unwrap().into_data(),
        Dense::from_tensor(g, "g").unwrap().into_data(),
    )
}

#[test]
fn ste_forward_is_exact_and_passes_the_gradient_unchanged() {
    let (y, g) = grad_case(FakeQuantGrad::Ste);
    assert_eq!(y, vec![-4.0, -4.0, 0.5, 3.0, 3.0]);
    assert_eq!(g, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    // The forward equals the host version bit for bit.
    let int4 = QuantDtype::parse("int4").unwrap();
    let host = fake_quant_dense(
        &Dense::new(vec![1, 5], vec![-5.0, -4.0, 0.3, 3.0, 3.2]),
        &Dense::new(vec![], vec![0.5]),
        &Dense::new(vec![], vec![1.0]),
        int4,
    )
    .unwrap();
    assert_eq!(host.data(), y.as_slice());
}

#[test]
fn clipped_gradient_is_zero_outside_the_range_and_kept_on_its_bounds() {
    let (y, g) = grad_case(FakeQuantGrad::Clipped);
    assert_eq!(y, vec![-4.0, -4.0, 0.5, 3.0, 3.0]);
    assert_eq!(g, vec![0.0, 2.0, 3.0, 4.0, 0.0]);
}

#[test]
fn fake_quant_without_autodiff_is_the_plain_forward() {
    let device = Device::flex();
    let x = Tensor::<2>::from_floats([[-5.0, -4.0, 0.3, 3.0, 3.2]], &device);
    let y = fake_quant(
        x,
        Tensor::from_floats([[0.5]], &device),
        Tensor::from_floats([[1.0]], &device),
        -7.0,
        7.0,
        FakeQuantGrad::Clipped,
    );
    assert_eq!(
        Dense::from_tensor(y, "y").unwrap().data(),
        &[-4.0, -4.0, 0.5, 3.0, 3.0]
    );
}

#[test]
fn min_max_observer_keeps_running_extrema_per_block() {
    // Burn Linear weight [in = 3, out = 2]; in_channel = one block per row.
    let scaling = quant_scaling(&Granularity::InChannel, 2, Some(1), Some(0), "fc.weight").unwrap();
    let mut obs = MinMaxObserver::new(scaling, "fc.weight");
    assert!(obs.tracked().is_none());
    assert!(
        obs.qparams(QuantDtype::parse("int8").unwrap(), None)
            .is_none()
    );
    obs.observe(&Dense::new(vec![3, 2], vec![1.0, 2.0, -3.0, 0.5, 4.0, 4.0]))
        .unwrap();
    obs.observe(&Dense::new(
        vec![3, 2],
        vec![0.0, 5.0, -1.0, -1.0, 2.0, 3.0],
    ))
    .unwrap();
    let (min, max) = obs.tracked().unwrap();
    assert_eq!(min.shape(), &[3, 1]);
    assert_eq!(min.data(), &[0.0, -3.0, 2.0]);
    assert_eq!(max.data(), &[5.0, 0.5, 4.0]);
    // An unset scheme is symmetric, as in NNI.
    let int8 = QuantDtype::parse("int8").unwrap();
    let unset = obs.qparams(int8, None).unwrap();
    assert_eq!(
        unset,
        obs.qparams(int8, Some(QuantScheme::Symmetric)).unwrap()
    );
    obs.reset();
    assert!(obs.tracked().is_none());
}

#[test]
fn observers_refuse_empty_and_reshaped_observations() {
    let scaling = quant_scaling(&Granularity::PerChannel, 2, None, None, "fc._input_").unwrap();
    let mut obs = MinMaxObserver::new(scaling, "fc._input_");
    obs.observe(&Dense::new(vec![2, 3], vec![0.0; 6])).unwrap();
    // Another batch size is fine; another channel count is not.
    obs.observe(&Dense::new(vec![1, 3], vec![1.0; 3])).unwrap();
    let err = obs
        .observe(&Dense::new(vec![2, 2], vec![0.0; 4]))
        .unwrap_err();
    assert!(
        matches!(err, CompressError::InvalidObservation { ref path, .. } if path == "fc._input_"),
        "{err}"
    );
    let err = obs.observe(&Dense::new(vec![0, 3], vec![])).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    let bad_axis = quant_scaling(&Granularity::OutChannel, 2, None, None, "fc._input_");
    assert!(matches!(
        bad_axis,
        Err(CompressError::InvalidGranularity { .. })
    ));
}

#[test]
fn ema_observer_initialises_on_the_first_observation_then_decays() {
    let mut obs = EmaObserver::new(per_tensor_scaling(), "fc._output_");
    assert_eq!(obs.decay(), 0.99);
    obs.observe(&Dense::new(vec![1, 2], vec![-1.0, 2.0]))
        .unwrap();
    let (min, max) = obs.tracked().unwrap();
    assert_eq!((min.data(), max.data()), (&[-1.0f32][..], &[2.0f32][..]));
    obs.observe(&Dense::new(vec![1, 2], vec![-3.0, 4.0]))
        .unwrap();
    let (min, max) = obs.tracked().unwrap();
    // tracked * 0.99 + 0.01 * current, in f32 as torch computes it.
    let ema = |old: f32, current: f32| old * 0.99 + 0.01 * current;
    assert_eq!(min.data(), &[ema(-1.0, -3.0)]);
    assert_eq!(max.data(), &[ema(2.0, 4.0)]);
    assert!((min.data()[0] + 1.02).abs() < 1e-6 && (max.data()[0] - 2.02).abs() < 1e-6);
    assert!(matches!(
        EmaObserver::new(per_tensor_scaling(), "x").with_decay(1.5),
        Err(CompressError::OutOfRange { .. })
    ));
}

fn scaled(t: &Dense<f32>, by: f32) -> Dense<f32> {
    Dense::new(
        t.shape().to_vec(),
        t.data().iter().map(|x| x * by).collect(),
    )
}

fn entry(scale: Dense<f32>, zp: f32, dtype: &str) -> CalibrationEntry {
    let dtype = QuantDtype::parse(dtype).unwrap();
    let zero_point = Dense::full(scale.shape().to_vec(), zp);
    CalibrationEntry::new(
        QuantParams {
            tracked_min: scaled(&scale, -100.0),
            tracked_max: scaled(&scale, 100.0),
            scale,
            zero_point,
        },
        dtype,
        Some(QuantScheme::Affine),
    )
}

fn nested_model() -> (Nested, ModuleIndex) {
    let model = Nested::new(&Device::flex());
    let index = ModuleIndex::from_module(&model);
    (model, index)
}

/// `head` is `Linear(4 -> 3)` (Burn weight `[4, 3]`), `blocks.0.bn` a BatchNorm(4).
fn nested_calibration() -> CalibrationConfig {
    let mut c = CalibrationConfig::new();
    // in_channel on the Linear weight: Burn keep-dim [4, 1], NNI [1, 4].
    let head = Dense::new(vec![4, 1], vec![0.1, 0.2, 0.3, 0.4]);
    c.insert("head", "weight", entry(head, 0.0, "int8"));
    c.insert(
        "head",
        "_input_0",
        entry(Dense::new(vec![1, 1], vec![0.05]), 3.0, "uint8"),
    );
    c.insert(
        "blocks.0.bn",
        "gamma",
        entry(
            Dense::new(vec![4], vec![0.5, 0.25, 0.125, 1.0]),
            -1.0,
            "int4",
        ),
    );
    c
}

#[test]
fn nni_json_uses_pytorch_names_and_layout_and_round_trips() {
    let (_, index) = nested_model();
    let c = nested_calibration();
    c.validate(&index).unwrap();
    assert_eq!(c.len(), 3);
    assert!(c.get("head", "_input_").is_some());
    let v = c.to_nni_value(&index).unwrap();
    let head = dense(&v["head"]["weight"]["scale"]);
    assert_eq!(head, Dense::new(vec![1, 4], vec![0.1, 0.2, 0.3, 0.4]));
    assert_eq!(
        dense(&v["head"]["_input_0"]["scale"]),
        Dense::new(vec![], vec![0.05])
    );
    assert_eq!(v["head"]["_input_0"]["quant_dtype"], json!("uint8"));
    assert_eq!(v["blocks.0.bn"]["weight"]["quant_bits"], json!(4));
    assert_eq!(v["blocks.0.bn"]["weight"]["quant_scheme"], json!("affine"));
    assert!(v["blocks.0.bn"].get("gamma").is_none());

    let text = c.to_nni_json(&index).unwrap();
    assert_eq!(CalibrationConfig::from_nni_json(&text, &index).unwrap(), c);

    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("compress-quant-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("calibration.json");
    c.save_nni_json(&path, &index).unwrap();
    assert_eq!(CalibrationConfig::load_nni_json(&path, &index).unwrap(), c);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_nni_keys_take_nnis_defaults() {
    let (_, index) = nested_model();
    let v = json!({ "head": { "weight": { "scale": [[0.5, 0.5, 0.5, 0.5]], "zero_point": [[1.0, 1.0, 1.0, 1.0]] } } });
    let c = CalibrationConfig::from_nni_value(&v, &index, "test").unwrap();
    let e = c.get("head", "weight").unwrap();
    assert_eq!(e.quant_dtype, QuantDtype::parse("int8").unwrap());
    assert_eq!((e.quant_scheme, e.quant_bits), (None, 8));
    assert_eq!(e.scale.shape(), &[4, 1]);
    // tracked = scale * (q - zero_point).
    assert_eq!(e.tracked_min.data(), &[-64.0; 4]);
    assert_eq!(e.tracked_max.data(), &[63.0; 4]);
}

#[test]
fn safetensors_round_trip_keeps_burn_layout_and_metadata() {
    let c = nested_calibration();
    let bytes = c.to_bytes().unwrap();
    assert_eq!(CalibrationConfig::from_bytes(&bytes, "mem").unwrap(), c);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("compress-quant-st-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("calibration.safetensors");
    c.save(&path).unwrap();
    let loaded = CalibrationConfig::load(&path).unwrap();
    assert_eq!(loaded, c);
    assert_eq!(loaded.get("head", "weight").unwrap().scale.shape(), &[4, 1]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn validation_names_the_module_target_and_key() {
    let (_, index) = nested_model();
    let ok = || nested_calibration();
    // `ok()` with one entry added: the calibration and its validation error.
    let with = |module: &str, target: &str, e| {
        let mut c = ok();
        c.insert(module, target, e);
        let err = c.validate(&index).unwrap_err();
        (c, err)
    };
    let int8 = |scale| entry(scale, 0.0, "int8");

    let (_, err) = with("haed", "weight", int8(Dense::new(vec![], vec![0.1])));
    assert!(
        matches!(err, CompressError::UnknownCalibrationModule { ref module, ref suggestion }
            if module == "haed" && suggestion.as_deref() == Some("head")),
        "{err}"
    );

    let (_, err) = with("head", "weigth", int8(Dense::new(vec![], vec![0.1])));
    assert!(
        matches!(err, CompressError::UnknownCalibrationTarget { ref target, .. } if target == "weigth"),
        "{err}"
    );
    assert!(err.to_string().contains("_input_"), "{err}");

    // A scale with 3 rows does not divide the weight's 4 input channels.
    let (_, err) = with("head", "weight", int8(Dense::new(vec![3, 1], vec![0.1; 3])));
    assert!(
        matches!(err, CompressError::CalibrationShape { ref param, key, ref found, ref param_shape }
            if param == "head.weight" && key == "scale" && found == &[3, 1] && param_shape == &[4, 3]),
        "{err}"
    );

    let mut e = int8(Dense::new(vec![], vec![0.1]));
    e.quant_bits = 4;
    let (_, err) = with("head", "bias", e);
    assert!(
        matches!(err, CompressError::InvalidCalibration { ref key, ref target, .. }
            if key == "quant_bits" && target == "bias"),
        "{err}"
    );

    let (c, err) = with("head", "bias", int8(Dense::new(vec![], vec![-0.1])));
    assert!(err.to_string().contains("positive"), "{err}");
    // Exporting validates first.
    assert!(c.to_nni_json(&index).is_err());
}

#[test]
fn corrupt_calibration_files_are_typed_errors() {
    let (_, index) = nested_model();
    let file_err = |text: &str| match CalibrationConfig::from_nni_json(text, &index) {
        Err(CompressError::InvalidCalibrationFile { .. }) => {}
        other => panic!("expected InvalidCalibrationFile for {text}, got {other:?}"),
    };
    file_err("{ not json");
    file_err("[1, 2]");
    file_err(r#"{"head": 3}"#);
    file_err(r#"{"head": {"weight": [1]}}"#);

    let key_err = |v: Value, want: &str| match CalibrationConfig::from_nni_value(&v, &index, "t") {
        Err(CompressError::InvalidCalibration { key, .. }) => assert_eq!(key, want, "{v}"),
        other => panic!("expected InvalidCalibration for {v}, got {other:?}"),
    };
    key_err(
        json!({"head": {"weight": {"scale": [[0.1, 0.2], [0.3]], "zero_point": 0}}}),
        "scale",
    );
    key_err(
        json!({"head": {"weight": {"scale": [["a"]], "zero_point": 0}}}),
        "scale",
    );
    key_err(json!({"head": {"weight": {"scale": 0.1}}}), "zero_point");
    key_err(
        json!({"head": {"weight": {"scale": 0.1, "zero_point": 0, "quant_dtype": "int9"}}}),
        "quant_dtype",
    );
    key_err(
        json!({"head": {"weight": {"scale": 0.1, "zero_point": 0, "quant_scheme": "log"}}}),
        "quant_scheme",
    );
    key_err(
        json!({"head": {"weight": {"scale": [], "zero_point": []}}}),
        "scale",
    );
    assert!(matches!(
        CalibrationConfig::from_nni_value(
            &json!({"nope": {"weight": {"scale": 0.1, "zero_point": 0}}}),
            &index,
            "t"
        ),
        Err(CompressError::UnknownCalibrationModule { .. })
    ));
    // `running_mean` is a buffer, not a quantization target.
    assert!(matches!(
        CalibrationConfig::from_nni_value(
            &json!({"blocks.0.bn": {"running_mean": {"scale": 0.1, "zero_point": 0}}}),
            &index,
            "t"
        ),
        Err(CompressError::UnknownCalibrationTarget { .. })
    ));

    let bytes = nested_calibration().to_bytes().unwrap();
    for bad in [
        &bytes[..bytes.len() / 2],
        &bytes[..5],
        b"garbage bytes here".as_slice(),
    ] {
        assert!(
            matches!(
                CalibrationConfig::from_bytes(bad, "bad.safetensors"),
                Err(CompressError::InvalidCalibrationFile { .. })
            ),
            "{} bytes",
            bad.len()
        );
    }
    // A mask file is safetensors but not a calibration file.
    let mut masks = compress_core::MaskSet::default();
    masks.insert("head.weight".to_string(), Dense::new(vec![1], vec![1u8]));
    let err = CalibrationConfig::from_bytes(&masks.to_bytes().unwrap(), "masks").unwrap_err();
    assert!(err.to_string().contains("not a calibration file"), "{err}");
    assert!(matches!(
        CalibrationConfig::load("/nonexistent/calibration.safetensors"),
        Err(CompressError::Io { .. })
    ));
}
