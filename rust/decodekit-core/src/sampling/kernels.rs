//! Row kernels shared by the samplers: a validating scan, a portable vectorizable `exp`, and per-block
//! probability masses.
//!
//! Results must be bit-identical on every platform and thread count, so nothing here calls the platform
//! `libm` or relies on fused multiply-add: the exponential is a fixed polynomial built from IEEE additions
//! and multiplications (which every vector width evaluates identically), and sums run over a fixed number
//! of lanes in a fixed order.

use crate::error::Result;
use crate::invalid;

/// Define a function whose body is compiled twice, for the baseline target and with AVX2 enabled, and
/// picked at run time. Both copies perform the same IEEE operations in the same order (Rust never fuses
/// multiply-add on its own, and FMA is not enabled), so they return identical bits; AVX2 only makes the
/// vectorized loops twice as wide.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$meta])* $vis fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn generic($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) -> $ret {
                    generic($($arg),*)
                }
                if $crate::sampling::kernels::use_avx2() {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// Whether the AVX2 copies of the kernels run: the CPU has AVX2 and `DECODEKIT_DISABLE_AVX2` is not set
/// (tests set it to prove that both copies give identical results).
#[must_use]
pub fn use_avx2() -> bool {
    static USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        let detected = std::is_x86_feature_detected!("avx2");
        #[cfg(not(target_arch = "x86_64"))]
        let detected = false;
        detected && std::env::var_os("DECODEKIT_DISABLE_AVX2").is_none()
    })
}

/// Tokens per block of the block-sum tables used to locate a sampled token without a full prefix sum.
pub const BLOCK: usize = 256;
const LANES: usize = 8;

/// What a validating scan of one row found.
#[derive(Debug, Clone, Copy)]
pub struct RowStats {
    /// The largest logit (finite, since a row must hold at least one finite value).
    pub max: f32,
    /// How many logits are finite (not `-inf`).
    pub finite: usize,
}

/// Scan one row: its maximum and finite count, refusing NaN, `+inf`, empty rows and rows that are all
/// `-inf`. `name` and `row` only shape the error message.
pub fn scan_row(values: &[f32], name: &str, row: usize) -> Result<RowStats> {
    if values.is_empty() {
        return invalid!("{name} has an empty row; rows must hold at least one value");
    }
    let (max, finite, bad) = scan_lanes(values);
    if bad {
        let (index, value) = values
            .iter()
            .enumerate()
            .find(|(_, x)| x.is_nan() || **x == f32::INFINITY)
            .expect("a bad value was seen");
        return invalid!(
            "{name} holds {value} at row {row}, index {index}; values must be finite or -inf (masked)"
        );
    }
    if finite == 0 {
        return invalid!("{name} row {row} is all -inf; at least one token must stay possible");
    }
    Ok(RowStats { max, finite })
}

multiversion! {
    /// Maximum, number of finite values and whether any value is NaN or `+inf`, in one branch-free pass.
    fn scan_lanes(values: &[f32]) -> (f32, usize, bool) {
        // Counters are f32 lanes (a compare, a blend and an add vectorize far better than bool-to-int
        // conversions); a lane counts exactly up to 2^24, so they are flushed every 2^26 values.
        let mut max = [f32::NEG_INFINITY; LANES];
        let mut counted = 0usize;
        let mut bad = false;
        for part in values.chunks(1 << 26) {
            let mut finite = [0.0f32; LANES];
            let mut bad_lanes = [0.0f32; LANES];
            let chunks = part.chunks_exact(LANES);
            let tail = chunks.remainder();
            for chunk in chunks {
                for j in 0..LANES {
                    let x = chunk[j];
                    max[j] = if x > max[j] { x } else { max[j] };
                    finite[j] += if x > f32::NEG_INFINITY { 1.0 } else { 0.0 };
                    // NaN and +inf both fail `x < inf`.
                    bad_lanes[j] += if x < f32::INFINITY { 0.0 } else { 1.0 };
                }
            }
            for (j, &x) in tail.iter().enumerate() {
                max[j] = if x > max[j] { x } else { max[j] };
                finite[j] += if x > f32::NEG_INFINITY { 1.0 } else { 0.0 };
                bad_lanes[j] += if x < f32::INFINITY { 0.0 } else { 1.0 };
            }
            counted += finite.iter().map(|&c| c as usize).sum::<usize>();
            bad |= bad_lanes.iter().any(|&b| b != 0.0);
        }
        let max = max.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        (max, counted, bad)
    }
}

/// `e^x` in single precision, for `x <= 88`, with relative error below `2e-7`; results under the smallest
/// normal float (`x < -87.33`) are flushed to zero. Written in plain multiply/add so that loops over it
/// vectorize and every platform computes the same bits.
#[inline(always)]
#[must_use]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Adding 1.5 * 2^23 rounds to the nearest integer and leaves that integer in the low mantissa bits.
    const ROUNDER: f32 = 12_582_912.0;
    // ln 2 split in a part with few mantissa bits (exact products with n) and a correction (Cody-Waite).
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.clamp(-87.5, 88.0);
    let t = xc * LOG2E + ROUNDER;
    let n = t - ROUNDER;
    let r = xc - n * LN2_HI - n * LN2_LO;
    // Minimax polynomial for e^r on [-ln2/2, ln2/2] (the Cephes single-precision coefficients).
    let mut p = 1.987_569e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    let n_int = t.to_bits() as i32 - ROUNDER.to_bits() as i32;
    let scale = f32::from_bits(((n_int + 127) as u32) << 23);
    let v = y * scale;
    if x < -87.33 {
        0.0
    } else {
        v
    }
}

multiversion! {
/// Write `e_i = exp((x_i - shift) * inv_temperature)` into `e` and the per-[`BLOCK`] sums of `e` (in
/// double precision) into `blocks`. Returns the total mass.
pub fn exp_and_block_sums(
    x: &[f32],
    shift: f32,
    inv_temperature: f32,
    e: &mut [f32],
    blocks: &mut Vec<f64>,
) -> f64 {
    debug_assert_eq!(x.len(), e.len());
    blocks.clear();
    let mut total = 0.0;
    for (xb, eb) in x.chunks(BLOCK).zip(e.chunks_mut(BLOCK)) {
        for (o, &v) in eb.iter_mut().zip(xb) {
            *o = exp_f32((v - shift) * inv_temperature);
        }
        let s = sum_lanes(eb);
        blocks.push(s);
        total += s;
    }
    total
}
}

multiversion! {
/// The sum of `values` in double precision, in a fixed lane order.
#[must_use]
pub fn sum_f64(values: &[f32]) -> f64 {
    sum_lanes(values)
}
}

/// [`sum_f64`] for callers that are themselves multiversioned (it must inline into them).
#[inline(always)]
pub(crate) fn sum_lanes(values: &[f32]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for j in 0..LANES {
            acc[j] += f64::from(c[j]);
        }
    }
    for (j, &v) in tail.iter().enumerate() {
        acc[j] += f64::from(v);
    }
    acc.iter().sum()
}

multiversion! {
/// Per-[`BLOCK`] sums of the weights that are at least `cut` and whose logits are at least `logit_cut`
/// (the mass that survives the sampling filters), written into `blocks`. Returns their total.
pub fn kept_block_sums(weights: &[f32], logits: &[f32], cut: f32, logit_cut: f32, blocks: &mut Vec<f64>) -> f64 {
    blocks.clear();
    let mut total = 0.0;
    for (wb, lb) in weights.chunks(BLOCK).zip(logits.chunks(BLOCK)) {
        let mut acc = [0.0f64; LANES];
        let chunks = wb.chunks_exact(LANES).zip(lb.chunks_exact(LANES));
        for (w, l) in chunks {
            for j in 0..LANES {
                acc[j] += f64::from(keep_or_zero(w[j], l[j], cut, logit_cut));
            }
        }
        let start = wb.len() / LANES * LANES;
        for (j, (&w, &l)) in wb[start..].iter().zip(&lb[start..]).enumerate() {
            acc[j] += f64::from(keep_or_zero(w, l, cut, logit_cut));
        }
        let s: f64 = acc.iter().sum();
        blocks.push(s);
        total += s;
    }
    total
}
}

/// `w` if the token survives the cut-offs, else `0`, through a bit mask rather than a branch: about half
/// of the tokens near a top-p cut-off survive, in no predictable pattern.
#[inline(always)]
fn keep_or_zero(w: f32, logit: f32, cut: f32, logit_cut: f32) -> f32 {
    let keep = u32::from(w >= cut) & u32::from(logit >= logit_cut);
    f32::from_bits(w.to_bits() & keep.wrapping_neg())
}

/// Index of the first maximum of a row (ties go to the lowest id).
#[must_use]
pub fn argmax_first(values: &[f32], max: f32) -> usize {
    values.iter().position(|&v| v == max).unwrap_or(0)
}

/// Find the token whose cumulative mass first exceeds `target` among the tokens for which `weight`
/// is positive, given per-block sums of those weights. Rounding can leave `target` at or beyond the
/// summed mass; the last token with positive weight is then returned, so the result is always a token
/// with positive probability. Returns `None` only when every weight is zero.
pub fn locate(blocks: &[f64], target: f64, weight: impl Fn(usize) -> f32) -> Option<usize> {
    let mut cum = 0.0;
    let mut last_positive_block = None;
    for (b, &s) in blocks.iter().enumerate() {
        if s <= 0.0 {
            continue;
        }
        last_positive_block = Some(b);
        if cum + s > target {
            return locate_in_block(b, cum, target, &weight);
        }
        cum += s;
    }
    let b = last_positive_block?;
    let start = b * BLOCK;
    (start..start + BLOCK).rev().find(|&i| weight(i) > 0.0)
}

/// The token inside block `b` where the running mass, starting at `cum`, first exceeds `target` (the
/// last token with positive weight when rounding keeps it below).
pub fn locate_in_block(b: usize, mut cum: f64, target: f64, weight: &impl Fn(usize) -> f32) -> Option<usize> {
    let start = b * BLOCK;
    let mut last = None;
    for i in start..start + BLOCK {
        let w = weight(i);
        if w > 0.0 {
            cum += f64::from(w);
            last = Some(i);
            if cum > target {
                return last;
            }
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_double_precision() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 10.0 {
            let want = f64::from(x).exp();
            let got = f64::from(exp_f32(x));
            worst = worst.max(((got - want) / want).abs());
            x += 0.000_97;
        }
        assert!(worst < 2e-7, "worst relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-100.0), 0.0);
    }

    #[test]
    fn scan_rejects_bad_rows() {
        assert!(scan_row(&[], "logits", 0).is_err());
        assert!(scan_row(&[f32::NEG_INFINITY; 3], "logits", 0).is_err());
        assert!(scan_row(&[0.0, f32::NAN], "logits", 0).is_err());
        assert!(scan_row(&[0.0, f32::INFINITY], "logits", 0).is_err());
        let s = scan_row(
            &[1.0, f32::NEG_INFINITY, 3.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0],
            "logits",
            0,
        )
        .unwrap();
        assert_eq!(s.max, 3.0);
        assert_eq!(s.finite, 9);
    }
}
