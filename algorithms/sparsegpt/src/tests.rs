use super::*;
use compress_core::Dense;
use compress_core::oneshot::InputStats;

/// `scripts/reference/sparsegpt.py`, "# fasterprune 4 x 8, block 4": W and H.
const W: [f32; 32] = [
    -1.9, -0.11, -0.8, 1.08, -0.29, 0.08, -0.85, -0.51, -0.01, -1.49, 0.3, -0.11, -1.19, -2.4,
    0.51, -0.3, -0.53, -0.24, 1.82, -0.05, 0.09, -1.49, 1.65, 0.92, 1.07, 0.05, 0.92, 0.37, 0.61,
    -0.15, -1.47, 1.03,
];

/// 2/16 X^T X of the script's X (16 tokens x 8 inputs).
fn x() -> Vec<f64> {
    vec![
        0.41, 1.04, -0.39, 1.37, -0.67, 0.35, 0.9, 0.09, -0.74, -0.92, -1.38, 0.22, -1.01, -0.21,
        -0.16, 0.54, 0.21, 0.36, -1.95, -0.13, 0.78, 1.49, -1.26, 1.51, 1.35, 0.78, 0.78, -0.31,
        1.46, 1.96, 1.8, 1.32, 0.36, -1.21, -0.0, 0.66, -1.29, 0.4, 0.43, 0.7, -1.18, -0.66, -1.32,
        -1.17, 1.74, -0.5, 0.33, -0.26, 1.58, 1.32, 1.89, -2.2, 0.05, 0.68, 1.0, -0.62, 1.82,
        -1.32, -1.98, 0.94, 0.05, 2.0, 0.19, -0.63, -0.38, -1.09, -3.84, 0.63, 0.58, 1.29, -0.75,
        1.69, -0.29, 1.57, -1.29, -0.74, 0.25, 1.03, 0.16, -0.59, -1.34, -1.4, 1.5, 0.99, -0.16,
        -1.07, 0.87, -1.28, -0.71, 0.62, -6.75, 0.39, -0.58, 0.11, -0.08, 0.2, 0.69, -0.76, 4.26,
        0.73, 0.84, 1.16, 0.79, 0.84, 0.08, -1.43, -0.42, -0.77, -1.42, 0.26, -0.57, -1.03, -1.04,
        0.27, 1.08, 1.32, -0.01, 1.04, 1.4, 1.15, -2.37, 1.23, 1.02, 0.42, 0.37, 0.38, 0.32, -0.36,
    ]
}

fn hessian_of(x: &[f64], d: usize) -> Dense<f64> {
    let n = x.len() / d;
    let mut h = vec![0.0; d * d];
    for t in x.chunks(d) {
        for i in 0..d {
            for j in 0..d {
                h[i * d + j] += 2.0 / n as f64 * t[i] * t[j];
            }
        }
    }
    Dense::new(vec![d, d], h)
}

fn stats(h: Dense<f64>) -> InputStats {
    InputStats {
        samples: 1,
        tokens: h.shape()[0],
        hessian: Some(h),
        ..InputStats::default()
    }
}

fn run(
    options: &str,
    weight: &mut Dense<f32>,
    stats: &InputStats,
    sparsity: f64,
) -> Result<LinearReport> {
    let table = options.parse().unwrap();
    let pruner = AlgorithmEntry::find(NAME).unwrap().build_oneshot(&table)?;
    pruner.compress_linear(&mut LinearSlot {
        path: "model.layers.0.mlp.up_proj",
        weight,
        bias: None,
        stats,
        sparsity,
    })
}

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        // Zeros are exact: a pruned weight is set to 0, not updated towards it.
        if w == 0.0 {
            assert_eq!(g, 0.0, "entry {i}: {got:?}");
        } else {
            assert!(
                (f64::from(g) - w).abs() < tol,
                "entry {i}: {g} vs {w}\n{got:?}"
            );
        }
    }
}

/// `scripts/reference/sparsegpt.py`, "# column step": H from a 6 x 3 X, U its damped inverse
/// factor; row 0 pruned at column 0: err = w / U_00, w[1..] -= err U[0, 1..].
#[test]
fn one_column_step_is_the_obs_update() {
    let h = Dense::new(
        vec![3, 3],
        vec![
            3.0972000000000004,
            0.9527666666666665,
            0.7681666666666666,
            0.9527666666666667,
            0.6451333333333332,
            -0.17319999999999994,
            0.7681666666666666,
            -0.17319999999999997,
            0.8985666666666666,
        ],
    );
    let Prepared::Factor(f) = hessian::prepare(NAME, &h, 0.01, None).unwrap() else {
        panic!("definite")
    };
    let u_ref = [
        1.353900972298026,
        -2.3686902012338087,
        -1.5866751537673691,
        0.0,
        1.2621037606901355,
        0.2391550131867822,
        0.0,
        0.0,
        1.0459676921879617,
    ];
    for (g, w) in f.u.data().iter().zip(u_ref) {
        assert!((g - w).abs() < 1e-12);
    }
    let u: Vec<f32> = f.u.data()[..3].iter().map(|&v| v as f32).collect();
    let mut row0 = [0.5f32, -1.0, 2.0];
    let err = column_step(&mut row0, &u, true);
    assert!((f64::from(err) - 0.36930322839737056).abs() < 1e-6);
    assert_close(&row0, &[0.0, -0.12523506161113707, 2.585964256704184], 1e-6);
    // A kept weight leaves the row as it is.
    let mut row1 = [1.5f32, 0.25, -0.75];
    assert_eq!(column_step(&mut row1, &u, false), 0.0);
    assert_eq!(row1, [1.5, 0.25, -0.75]);
}

/// `scripts/reference/sparsegpt.py`: the whole fasterprune, 50 % unstructured, block 4.
#[test]
fn fasterprune_unstructured_matches_the_reference_port() {
    let mut w = Dense::new(vec![4, 8], W.to_vec());
    let st = stats(hessian_of(&x(), 8));
    let report = run("block_size = 4", &mut w, &st, 0.5).unwrap();
    let want = [
        -1.9,
        0.0,
        -0.7945596304314959,
        1.1217302617312799,
        0.0,
        0.0,
        -0.9267865897582205,
        0.0,
        0.0,
        -1.4886442758584433,
        0.2989424842213718,
        0.0,
        -1.1438339493167553,
        -2.4031341617511695,
        0.0,
        0.0,
        0.0,
        0.0,
        1.77226784334363,
        0.0,
        0.0,
        -1.8144413842798741,
        1.6759326021877259,
        1.0385742771480808,
        1.07,
        0.0,
        0.917527104741589,
        0.0,
        0.0,
        0.0,
        -1.3183904504236497,
        1.2277055520542257,
    ];
    assert_close(w.data(), &want, 2e-5);
    assert_eq!(report.zeros, 16);
    assert_eq!((report.dead_columns, report.damping_retries), (0, 0));
    assert!(report.fallback.is_none());
    assert!((report.loss.unwrap() - 1.1796534802019247).abs() < 1e-5);
}

/// `scripts/reference/sparsegpt.py`: the whole fasterprune, 2:4, block 4.
#[test]
fn fasterprune_two_of_four_matches_the_reference_port() {
    let mut w = Dense::new(vec![4, 8], W.to_vec());
    let st = stats(hessian_of(&x(), 8));
    let report = run("block_size = 4\nmask_structure = \"2:4\"", &mut w, &st, 0.5).unwrap();
    let want = [
        -1.9,
        0.0,
        -0.7945596304314959,
        0.0,
        -0.758893431088203,
        0.0,
        -0.5960904852771319,
        0.0,
        0.0,
        -1.4886442758584433,
        0.2989424842213718,
        0.0,
        -1.1438339493167553,
        -2.4031341617511695,
        0.0,
        0.0,
        -0.53,
        0.0,
        1.8318698972403729,
        0.0,
        0.0,
        -1.4846540189531732,
        1.5780892881598736,
        0.0,
        1.07,
        0.0,
        0.917527104741589,
        0.0,
        0.0,
        0.0,
        -1.3183904504236497,
        1.2277055520542257,
    ];
    assert_close(w.data(), &want, 2e-5);
    assert_eq!(report.zeros, 16);
    assert!((report.loss.unwrap() - 2.255968545797254).abs() < 1e-5);
}

/// `scripts/reference/sparsegpt.py`, "# dead column": input 5 never fires; its weights are
/// zeroed and it is counted.
#[test]
fn a_dead_column_is_zeroed_and_counted() {
    let mut x = x();
    for t in x.chunks_mut(8) {
        t[5] = 0.0;
    }
    let mut w = Dense::new(vec![4, 8], W.to_vec());
    let st = stats(hessian_of(&x, 8));
    let report = run("block_size = 4", &mut w, &st, 0.5).unwrap();
    let want = [
        -1.9,
        0.0,
        -0.7945754553190127,
        1.121772081733824,
        0.0,
        0.0,
        -0.9513579598702715,
        -0.6049462232595149,
        0.0,
        -1.488629019519437,
        0.2995039836841075,
        0.0,
        -1.1443741943707275,
        0.0,
        0.48205020023235523,
        0.0,
        0.0,
        0.0,
        1.801963250213494,
        0.0,
        0.0,
        0.0,
        1.5385347504102214,
        0.8639584715177332,
        1.07,
        0.0,
        0.9175342978722786,
        0.0,
        0.0,
        0.0,
        -1.2722965390426273,
        1.3151627289855816,
    ];
    assert_close(w.data(), &want, 2e-5);
    assert_eq!(report.dead_columns, 1);
    assert!((0..4).all(|r| w.data()[r * 8 + 5] == 0.0));
    assert!((report.loss.unwrap() - 0.8097148868004872).abs() < 1e-5);
}

/// A Hessian with eigenvalue -100 stays indefinite up to damping 10: the layer falls back to
/// whole-layer magnitude selection, weights otherwise untouched, and the report says so.
#[test]
fn an_indefinite_hessian_falls_back_to_magnitude_selection() {
    let mut h = vec![0.0; 16];
    for j in 0..4 {
        h[j * 4 + j] = 1.0;
    }
    h[1] = 101.0;
    h[4] = 101.0;
    let st = stats(Dense::new(vec![4, 4], h));
    let original = [0.5f32, -3.0, 0.25, 2.0, -1.0, 0.1, 4.0, -0.2];
    let mut w = Dense::new(vec![2, 4], original.to_vec());
    let report = run("", &mut w, &st, 0.5).unwrap();
    assert_eq!(w.data(), &[0.0, -3.0, 0.0, 2.0, -1.0, 0.0, 4.0, 0.0]);
    assert_eq!(report.damping_retries, 3);
    assert_eq!(report.zeros, 4);
    assert_eq!(report.loss, None);
    assert_eq!(
        report.fallback.as_deref(),
        Some(
            "the Hessian stayed indefinite up to damping 1e1 (3 retries): magnitude selection without weight update"
        )
    );
    // 2:4: each row keeps its two largest |w|.
    let mut w = Dense::new(vec![2, 4], original.to_vec());
    run("mask_structure = \"2:4\"", &mut w, &st, 0.5).unwrap();
    assert_eq!(w.data(), &[0.0, -3.0, 0.0, 2.0, -1.0, 0.0, 4.0, 0.0]);
}

/// A small seeded generator (xorshift), values in (-1, 1).
pub(crate) fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

#[test]
fn two_of_four_zeroes_exactly_two_of_every_aligned_four() {
    let (rows, cols) = (12, 32);
    let x: Vec<f64> = noise(64 * cols, 3).into_iter().map(f64::from).collect();
    let st = stats(hessian_of(&x, cols));
    let mut w = Dense::new(vec![rows, cols], noise(rows * cols, 4));
    let report = run("mask_structure = \"2:4\"\nblock_size = 8", &mut w, &st, 0.5).unwrap();
    for group in w.data().chunks(4) {
        assert_eq!(group.iter().filter(|&&v| v == 0.0).count(), 2, "{group:?}");
    }
    assert_eq!(report.zeros, rows * cols / 2);
    // Unstructured at 30 %: int(0.3 * rows * 8) per block of 8 columns.
    let mut w = Dense::new(vec![rows, cols], noise(rows * cols, 4));
    let report = run("block_size = 8", &mut w, &st, 0.3).unwrap();
    assert_eq!(report.zeros, 4 * 28);
}

#[test]
fn bad_layers_and_options_are_named() {
    let st = stats(hessian_of(&x(), 8));
    let mut w = Dense::new(vec![2, 6], vec![1.0; 12]);
    let err = run("mask_structure = \"2:4\"", &mut w, &st, 0.5).unwrap_err();
    assert_eq!(
        err.to_string(),
        "algorithm 'sparsegpt': layer 'model.layers.0.mlp.up_proj': mask_structure \"2:4\" needs an input width divisible by 4, found 6"
    );
    let err = run("", &mut w, &st, 0.5).unwrap_err();
    assert_eq!(
        err.to_string(),
        "algorithm 'sparsegpt': layer 'model.layers.0.mlp.up_proj': the Hessian has shape [8, 8], the weight 6 inputs"
    );
    let err = run("", &mut w, &InputStats::default(), 0.5).unwrap_err();
    assert_eq!(
        err.to_string(),
        "algorithm 'sparsegpt': layer 'model.layers.0.mlp.up_proj': no Hessian of its input was collected (StatNeeds::hessian)"
    );
    let err = run("blocksize = 64", &mut w, &st, 0.5).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown key 'blocksize' in [algorithm] of 'sparsegpt' (did you mean 'block_size'?)"
    );
    let err = run("sparsity = 1.2", &mut w, &st, 0.5).unwrap_err();
    assert_eq!(
        err.to_string(),
        "key 'sparsity' in [algorithm] of 'sparsegpt': 1.2 is outside [0, 1)"
    );
}

#[test]
fn it_registers_as_a_one_shot_pruner_asking_for_the_hessian() {
    let entry = AlgorithmEntry::find(NAME).unwrap();
    assert_eq!(entry.kind, AlgorithmKind::OneShotPruner);
    let p = entry
        .build_oneshot(
            &"sparsity = 0.6\nsparsity_profile = \"owl\""
                .parse()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(p.name(), "sparsegpt");
    assert_eq!(
        p.needs(),
        StatNeeds {
            hessian: true,
            sq_norm: true,
            ..StatNeeds::default()
        }
    );
    assert_eq!(
        p.sparsity(),
        Some(SparsitySpec {
            sparsity: 0.6,
            profile: SparsityProfile::Owl {
                m: 5.0,
                lambda: 0.08
            }
        })
    );
    assert!(p.activation_quant().is_none());
}

/// Release timing of one Linear of SmolLM2's shapes (`cargo test --release -p prune-sparsegpt
/// -- --ignored --nocapture per_linear`): the Hessian of 2048 random tokens, then
/// `compress_linear` (factor + fasterprune) timed.
#[test]
#[ignore = "timing; run in release"]
fn per_linear_time_for_smollm2_shapes() {
    for (rows, cols) in [(1536, 576), (576, 1536)] {
        let tokens = 2048;
        let x: Vec<f64> = noise(tokens * cols, 7).into_iter().map(f64::from).collect();
        let mut h = vec![0.0f64; cols * cols];
        // SAFETY: x is [tokens, cols] and h [cols, cols], both row-major and disjoint.
        unsafe {
            matrixmultiply::dgemm(
                cols,
                tokens,
                cols,
                2.0 / tokens as f64,
                x.as_ptr(),
                1,
                cols as isize,
                x.as_ptr(),
                cols as isize,
                1,
                0.0,
                h.as_mut_ptr(),
                cols as isize,
                1,
            );
        }
        let st = stats(Dense::new(vec![cols, cols], h));
        for options in ["", "mask_structure = \"2:4\""] {
            let mut w = Dense::new(vec![rows, cols], noise(rows * cols, 8));
            let t = std::time::Instant::now();
            let report = run(options, &mut w, &st, 0.5).unwrap();
            let total = t.elapsed();
            let t = std::time::Instant::now();
            hessian::prepare(NAME, st.hessian.as_ref().unwrap(), 0.01, None).unwrap();
            let factor = t.elapsed();
            println!(
                "sparsegpt {rows}x{cols} [{}] {} threads: compress_linear {:.3} s (of which the factor {:.3} s), zeros {}",
                if options.is_empty() { "50%" } else { "2:4" },
                rayon::current_num_threads(),
                total.as_secs_f64(),
                factor.as_secs_f64(),
                report.zeros
            );
        }
    }
}
