//! Times an ONNX file on tract: `cargo run --release -p burn-compress-benches --example onnx_probe -- FILE d0,d1,..`
use std::time::Instant;
use tract_onnx::prelude::*;
fn main() -> TractResult<()> {
    let args: Vec<String> = std::env::args().collect();
    let shape: Vec<usize> = args[2].split(',').map(|s| s.parse().unwrap()).collect();
    let plan = tract_onnx::onnx()
        .model_for_path(&args[1])?
        .with_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape.clone()))?
        .into_optimized()?
        .into_runnable()?;
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|i| (i % 251) as f32 / 251.0).collect();
    let x: TValue = Tensor::from_shape(&shape, &data)?.into();
    for _ in 0..3 {
        plan.run(tvec!(x.clone()))?;
    }
    let k = 20;
    let t = Instant::now();
    for _ in 0..k {
        plan.run(tvec!(x.clone()))?;
    }
    println!(
        "{} {:.3} ms",
        args[1],
        t.elapsed().as_secs_f64() * 1e3 / k as f64
    );
    Ok(())
}
