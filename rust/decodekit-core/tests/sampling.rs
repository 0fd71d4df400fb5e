//! Properties of the public sampling API that hold for every input: sampled tokens survive the
//! filters, draws without replacement are distinct, results are reproducible, and bad rows are refused.

use decodekit_core::sampling::{
    gumbel_top_k, sample, sampling_mask, stochastic_beam_search_step, Rows, SamplingParams,
};
use decodekit_core::CoreError;
use proptest::prelude::*;

fn logits_strategy() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(
        prop_oneof![
            Just(f32::NEG_INFINITY),
            Just(0.0f32),
            Just(2.0f32),
            -30.0f32..30.0
        ],
        1..300,
    )
    .prop_filter("one finite logit", |v| v.iter().any(|x| x.is_finite()))
}

proptest! {
    #[test]
    fn sampled_tokens_survive_the_filters(
        logits in logits_strategy(),
        temperature in prop_oneof![Just(0.0f32), 0.05f32..3.0],
        top_k in 0usize..20,
        top_p in 0.05f64..=1.0,
        min_p in prop_oneof![Just(0.0f64), Just(1e-300f64), 0.0f64..0.5],
        seed in any::<u64>(),
    ) {
        let rows = Rows::new(&logits, 1, logits.len(), "logits").unwrap();
        let params = SamplingParams { temperature, top_k, top_p, min_p };
        let mut mask = vec![false; logits.len()];
        sampling_mask(rows, &params, &mut mask).unwrap();
        let mut token = [0i32];
        sample(rows, &params, &[seed], &mut token).unwrap();
        prop_assert!(mask[token[0] as usize], "token {} is masked out", token[0]);
        let mut again = [0i32];
        sample(rows, &params, &[seed], &mut again).unwrap();
        prop_assert_eq!(token, again);
    }

    #[test]
    fn gumbel_top_k_draws_distinct_finite_tokens(logits in logits_strategy(), seed in any::<u64>(), k_frac in 0.0f64..=1.0) {
        let finite = logits.iter().filter(|x| x.is_finite()).count();
        let k = ((finite as f64 * k_frac) as usize).max(1);
        let rows = Rows::new(&logits, 1, logits.len(), "logits").unwrap();
        let mut out = vec![0i32; k];
        gumbel_top_k(rows, k, 0.7, &[seed], &mut out).unwrap();
        let mut seen = out.clone();
        seen.sort_unstable();
        seen.dedup();
        prop_assert_eq!(seen.len(), k);
        prop_assert!(out.iter().all(|&t| logits[t as usize].is_finite()));
    }

    #[test]
    fn beam_step_scores_are_ordered_and_bounded(
        logits in prop::collection::vec(-10.0f32..0.0, 12),
        gumbels in prop::collection::vec(-3.0f64..3.0, 3),
        seed in any::<u64>(),
    ) {
        let rows = Rows::new(&logits, 3, 4, "child_log_probs").unwrap();
        let step = stochastic_beam_search_step(&[-1.0, -2.0, -0.5], &gumbels, rows, 5, seed).unwrap();
        prop_assert_eq!(step.tokens.len(), 5);
        prop_assert!(step.scores.windows(2).all(|w| w[0] >= w[1]));
        for (&parent, &score) in step.parents.iter().zip(&step.scores) {
            // A child never outranks its parent.
            prop_assert!(score <= gumbels[parent as usize]);
        }
        let best = gumbels.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        prop_assert_eq!(step.scores[0], best);
    }
}

#[test]
fn bad_rows_are_refused_with_the_argument_name() {
    let nan = [0.0, f32::NAN];
    let rows = Rows::new(&nan, 1, 2, "logits").unwrap();
    let err = sample(rows, &SamplingParams::default(), &[1], &mut [0]).unwrap_err();
    assert!(matches!(&err, CoreError::InvalidInput(m) if m.contains("logits") && m.contains("index 1")));
    assert!(Rows::new(&[0.0; 5], 2, 3, "logits").is_err());
    let ok = [0.0, 1.0];
    let rows = Rows::new(&ok, 1, 2, "logits").unwrap();
    assert!(gumbel_top_k(rows, 3, 1.0, &[1], &mut [0; 3]).is_err());
    assert!(sample(rows, &SamplingParams::default(), &[], &mut [0]).is_err());
}

#[test]
fn widely_spread_rows_stay_linear_and_ordered() {
    // Each value is 100 nats below the previous one: every draw would need a fresh rebase, so the
    // sampler switches to explicit Gumbel noise; the order is then certain up to e^-100.
    let logits: Vec<f32> = (0..20_000).map(|i| -100.0 * i as f32).collect();
    let rows = Rows::new(&logits, 1, logits.len(), "logits").unwrap();
    let mut out = vec![0i32; logits.len()];
    let start = std::time::Instant::now();
    gumbel_top_k(rows, logits.len(), 1.0, &[3], &mut out).unwrap();
    assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());
    assert!(out.iter().enumerate().all(|(i, &t)| t == i as i32));

    let children = Rows::new(&logits[..4000], 1, 4000, "child_log_probs").unwrap();
    let step = stochastic_beam_search_step(&[0.0], &[1.5], children, 4000, 9).unwrap();
    assert!(step.tokens.iter().enumerate().all(|(i, &t)| t == i as i32));
    assert_eq!(step.scores[0], 1.5);
    assert!(step.scores.windows(2).all(|w| w[0] >= w[1]));
}
