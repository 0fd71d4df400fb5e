//! Rough per-stage timings of one 128k-vocabulary row (a development aid: `cargo run --release --example profile_rows`).
use std::time::Instant;

use decodekit_core::sampling::{self, kernels, threshold, Rows, SamplingParams};

fn time<T>(label: &str, reps: u32, mut f: impl FnMut() -> T) {
    let _ = f();
    let start = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(f());
    }
    println!(
        "{label:<28} {:>9.1} us",
        start.elapsed().as_secs_f64() * 1e6 / f64::from(reps)
    );
}

fn main() {
    let v = 128_256;
    let mut rng = decodekit_core::Philox::new(1, 0);
    let logits: Vec<f32> = (0..v)
        .map(|_| {
            let (a, b) = (rng.next_open_f64(), rng.next_f64());
            ((-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
        })
        .collect();
    let mut e = vec![0.0f32; v];
    let mut blocks = Vec::new();
    time("scan", 200, || kernels::scan_row(&logits, "x", 0).unwrap().max);
    time("exp+block sums", 200, || {
        kernels::exp_and_block_sums(
            &logits,
            logits.iter().copied().fold(f32::MIN, f32::max),
            1.25,
            &mut e,
            &mut blocks,
        )
    });
    let total: f64 = blocks.iter().sum();
    let mut scratch = Vec::new();
    time("top_p cutoff", 200, || {
        threshold::top_p_cutoff(&e, 0.9 * total, &mut scratch)
    });
    time("kth_largest(50)", 200, || {
        threshold::kth_largest(&logits, 50, &mut scratch)
    });
    time("kept sums", 200, || {
        kernels::kept_block_sums(&e, &logits, 0.1, f32::MIN, &mut blocks)
    });
    let rows = Rows::new(&logits, 1, v, "logits").unwrap();
    let params = SamplingParams {
        temperature: 0.8,
        top_p: 0.9,
        ..SamplingParams::default()
    };
    let mut out = [0i32];
    time("sample top_p", 200, || {
        sampling::sample(rows, &params, &[7], &mut out)
    });
    let mut out8 = [0i32; 8];
    time("gumbel_top_k 8", 200, || {
        sampling::gumbel_top_k(rows, 8, 1.0, &[7], &mut out8)
    });
}
