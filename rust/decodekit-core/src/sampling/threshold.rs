//! Cut-offs for top-k and top-p without sorting the row.
//!
//! Top-k: the k-th largest of the block maxima is a lower bound on the k-th largest value, so only the
//! (few) values above it need a selection. Top-p: a radix walk over the bits of the non-negative float
//! weights. Level by level (exponent, 12 high mantissa bits, 11 low mantissa bits) it histograms the mass
//! of the values still in play, finds the bucket where the running mass from the top crosses the target,
//! and keeps only that bucket's values. After three levels every bit of the cut-off is known, so the result
//! is exactly the value a full sort would find, in linear time.

use super::kernels::multiversion;

/// Values per block when bounding the k-th largest value from block maxima.
const BOUND_BLOCK: usize = 32;

/// The k-th largest of the finite values of `values` (1-based `k`, `1 <= k <= finite count`).
/// `scratch` is reused between calls to avoid allocation.
#[must_use]
pub fn kth_largest(values: &[f32], k: usize, scratch: &mut Vec<f32>) -> f32 {
    debug_assert!(k >= 1);
    scratch.clear();
    let blocks = values.len().div_ceil(BOUND_BLOCK);
    if k * 4 <= blocks {
        block_maxima(values, scratch);
        let (_, bound, _) = scratch.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        // At least k values (the maxima of k blocks) are >= bound, so the k-th largest is >= bound.
        let bound = *bound;
        scratch.clear();
        select_at_least(values, bound, scratch);
    } else {
        scratch.extend(values.iter().copied().filter(|&v| v > f32::NEG_INFINITY));
    }
    let (_, kth, _) = scratch.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    *kth
}

/// Find where the running mass from the top bucket down first reaches `target`. Returns the bucket and
/// the mass of all buckets above it. When rounding keeps the running mass below `target`, the lowest
/// non-empty bucket is returned if `fallback` is set.
fn crossing(hist: &[f64], target: f64, mut above: f64, fallback: bool) -> Option<(u32, f64)> {
    let mut last = None;
    for (b, &mass) in hist.iter().enumerate().rev() {
        if mass <= 0.0 {
            continue;
        }
        if above + mass >= target {
            return Some((b as u32, above));
        }
        last = Some((b as u32, above));
        above += mass;
    }
    if fallback {
        last
    } else {
        None
    }
}

/// The top-p cut-off of non-negative `weights`: the weight `w*` of the token at which the running mass
/// of the weights, taken from the largest down, first reaches `target` (`p` times their total). Every
/// token with weight `>= w*` is then kept (ties with the crossing token included). Returns `None` when
/// the running mass never reaches `target` (only possible through rounding when `p` is about 1), which
/// means "keep every token with positive weight".
#[must_use]
pub fn top_p_cutoff(weights: &[f32], target: f64, scratch: &mut Vec<f32>) -> Option<f32> {
    let merged = exponent_histogram(weights);
    let (exponent, above) = crossing(&merged, target, 0.0, false)?;
    select_exponent(weights, exponent, scratch);

    // Level 2: the 12 high mantissa bits.
    let mut hist = vec![0.0f64; 1 << 12];
    for &w in scratch.iter() {
        hist[((w.to_bits() >> 11) & 0xFFF) as usize] += f64::from(w);
    }
    let (high, above) = crossing(&hist, target, above, true)?;
    scratch.retain(|w| (w.to_bits() >> 11) & 0xFFF == high);

    // Level 3: the 11 low mantissa bits; every bucket now holds copies of a single value.
    let mut hist = vec![0.0f64; 1 << 11];
    for &w in scratch.iter() {
        hist[(w.to_bits() & 0x7FF) as usize] += f64::from(w);
    }
    let (low, _) = crossing(&hist, target, above, true)?;
    Some(f32::from_bits((exponent << 23) | (high << 11) | low))
}

multiversion! {
    /// Append the values `>= bound` to `out`. Few values pass, so whole groups of eight are tested with
    /// one vector comparison and only groups holding a survivor are looked at one by one.
    fn select_at_least(values: &[f32], bound: f32, out: &mut Vec<f32>) -> () {
        let chunks = values.chunks_exact(8);
        let tail = chunks.remainder();
        for c in chunks {
            let mut any = 0u32;
            for &v in c {
                any |= u32::from(v >= bound);
            }
            if any != 0 {
                out.extend(c.iter().copied().filter(|&v| v >= bound));
            }
        }
        out.extend(tail.iter().copied().filter(|&v| v >= bound));
    }
}

multiversion! {
    /// Append the maximum of every [`BOUND_BLOCK`] values to `out` (`-inf` for an all-`-inf` block).
    fn block_maxima(values: &[f32], out: &mut Vec<f32>) -> () {
        for block in values.chunks(BOUND_BLOCK) {
            let mut lanes = [f32::NEG_INFINITY; 8];
            let chunks = block.chunks_exact(8);
            let tail = chunks.remainder();
            for c in chunks {
                for j in 0..8 {
                    lanes[j] = if c[j] > lanes[j] { c[j] } else { lanes[j] };
                }
            }
            for (j, &v) in tail.iter().enumerate() {
                lanes[j] = if v > lanes[j] { v } else { lanes[j] };
            }
            out.push(lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        }
    }
}

multiversion! {
    /// Mass of the non-negative `weights` per exponent (the top 9 bits, sign included, are the bucket).
    fn exponent_histogram(weights: &[f32]) -> Vec<f64> {
        // Four interleaved histograms break the store-to-load dependency when neighbouring weights
        // share a bucket (they usually do).
        let mut hist = [[0.0f64; 256]; 4];
        let chunks = weights.chunks_exact(4);
        let tail = chunks.remainder();
        for c in chunks {
            for j in 0..4 {
                hist[j][(c[j].to_bits() >> 23) as usize & 0xFF] += f64::from(c[j]);
            }
        }
        for &w in tail {
            hist[0][(w.to_bits() >> 23) as usize & 0xFF] += f64::from(w);
        }
        (0..256).map(|b| hist[0][b] + hist[1][b] + hist[2][b] + hist[3][b]).collect()
    }
}

multiversion! {
    /// Copy the weights whose exponent is `exponent` into `out`, without a data-dependent branch (the
    /// survivors are a random-looking subset, which a branch would mispredict half the time).
    fn select_exponent(weights: &[f32], exponent: u32, out: &mut Vec<f32>) -> () {
        out.clear();
        out.resize(weights.len() + 1, 0.0);
        let mut len = 0;
        for &w in weights {
            out[len] = w;
            // `len` never exceeds the number of weights seen, so `out[len]` stays in bounds.
            len += usize::from(w.to_bits() >> 23 == exponent);
        }
        out.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sorted_cutoff(weights: &[f32], target: f64) -> Option<f32> {
        let mut sorted: Vec<f32> = weights.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let mut cum = 0.0;
        for &w in &sorted {
            cum += f64::from(w);
            if cum >= target && w > 0.0 {
                return Some(w);
            }
        }
        None
    }

    proptest! {
        #[test]
        fn top_p_matches_sorting(
            weights in prop::collection::vec(prop_oneof![Just(0.0f32), Just(0.5f32), 1e-30f32..1.0f32], 1..600),
            p in 0.01f64..0.99,
        ) {
            let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
            prop_assume!(total > 0.0);
            let target = p * total;
            // Away from rounding ties the two must agree exactly.
            let mut sorted: Vec<f32> = weights.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let mut cum = 0.0;
            let near_tie = sorted.iter().any(|&w| { cum += f64::from(w); (cum - target).abs() < 1e-9 * total });
            prop_assume!(!near_tie);
            let mut scratch = Vec::new();
            prop_assert_eq!(top_p_cutoff(&weights, target, &mut scratch), sorted_cutoff(&weights, target));
        }

        #[test]
        fn kth_largest_matches_sorting(
            values in prop::collection::vec(prop_oneof![Just(f32::NEG_INFINITY), Just(1.0f32), -5.0f32..5.0], 1..2000),
            k_frac in 0.0f64..1.0,
        ) {
            let mut finite: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
            prop_assume!(!finite.is_empty());
            finite.sort_by(|a, b| b.total_cmp(a));
            let k = 1 + ((finite.len() - 1) as f64 * k_frac * k_frac) as usize;
            let mut scratch = Vec::new();
            prop_assert_eq!(kth_largest(&values, k, &mut scratch), finite[k - 1]);
        }
    }
}
