//! `burn_compress::oneshot`'s calibration data and method lookup (the facade has no unit-test
//! binary: its tests live here).

use burn::prelude::*;
use burn_compress::eval::LabelledImages;
use burn_compress::oneshot::{OneShotError, calibration_images, calibration_windows, method};

#[test]
fn calibration_windows_are_seeded_and_refuse_a_short_text() {
    let ids: Vec<u32> = (0..100).collect();
    let a = calibration_windows(&ids, 4, 10, 0).unwrap();
    assert_eq!(a, calibration_windows(&ids, 4, 10, 0).unwrap());
    assert_ne!(a, calibration_windows(&ids, 4, 10, 1).unwrap());
    for w in &a {
        assert_eq!(w.len(), 10);
        assert!(w.windows(2).all(|p| p[1] == p[0] + 1));
        assert!(w[9] < 100);
    }
    let err = calibration_windows(&ids[..10], 2, 10, 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the calibration text has 10 tokens, shorter than one sample of 11 (--calib-seqlen 10 plus one)"
    );
    assert!(matches!(
        calibration_windows(&ids, 0, 10, 0),
        Err(OneShotError::Empty { .. })
    ));
}

#[test]
fn calibration_images_are_seeded_distinct_batched_and_refuse_too_many() {
    // Image i is filled with the value i.
    let images = LabelledImages {
        names: (0..10).map(|i| format!("#{i}")).collect(),
        labels: vec![0; 10],
        shape: [1, 2, 2],
        pixels: (0..10).flat_map(|i| [i as f32; 4]).collect(),
    };
    let device = Device::flex();
    let picked = |seed| -> Vec<f32> {
        let batches = calibration_images(&images, 7, 3, seed, &device).unwrap();
        let sizes: Vec<usize> = batches.iter().map(|b| b.dims()[0]).collect();
        assert_eq!(sizes, [3, 3, 1]);
        batches
            .into_iter()
            .flat_map(|b| b.into_data().iter::<f32>().step_by(4).collect::<Vec<_>>())
            .collect()
    };
    let a = picked(0);
    assert_eq!(a, picked(0));
    assert_ne!(a, picked(1));
    assert!(
        a.windows(2).all(|w| w[0] < w[1]),
        "distinct, ascending: {a:?}"
    );
    let err = calibration_images(&images, 11, 3, 0, &device).unwrap_err();
    assert_eq!(
        err.to_string(),
        "11 calibration images asked for (--calib-samples), the data set holds 10"
    );
    assert!(matches!(
        calibration_images(&images, 0, 3, 0, &device),
        Err(OneShotError::Empty { .. })
    ));
}

#[test]
fn method_refuses_algorithms_that_are_not_one_shot() {
    let err = method("l1-norm", &Default::default()).err().unwrap();
    assert!(err.to_string().contains("one-shot"), "{err}");
    assert!(method("sparsegpt", &Default::default()).is_ok());
}
