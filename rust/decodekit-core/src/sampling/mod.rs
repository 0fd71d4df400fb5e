//! Samplers over rows of logits: softmax, keep-masks for top-k / top-p / min-p, sampling, Gumbel-top-k
//! (sampling without replacement) and one step of Stochastic Beam Search.
//!
//! Everything works on row-major `f32` buffers of `rows x vocab` values. Row results depend only on the
//! row's values, its parameters and its seed, never on the other rows or the number of threads. Nothing
//! sorts a whole row: cut-offs come from selection and radix histograms (see [`threshold`]) and sampled
//! tokens are located through per-block masses (see [`kernels`]).

pub mod kernels;
pub mod threshold;
pub mod without_replacement;

use std::cell::RefCell;

use crate::error::Result;
use crate::invalid;
use crate::parallel::{for_each_row_mut, map_rows};
use crate::rng::Philox;
use kernels::{argmax_first, exp_and_block_sums, kept_block_sums, locate, scan_row, RowStats};
use threshold::{kth_largest, top_p_cutoff};

pub use without_replacement::{gumbel_top_k, stochastic_beam_search_step, BeamStep};

/// A borrowed `rows x vocab` row-major matrix of logits, with the argument name used in messages.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    data: &'a [f32],
    row_count: usize,
    vocab: usize,
    name: &'a str,
}

impl<'a> Rows<'a> {
    /// Check that `data` holds `rows * vocab` values and that rows are not empty.
    pub fn new(data: &'a [f32], rows: usize, vocab: usize, name: &'a str) -> Result<Self> {
        if vocab == 0 {
            return invalid!("{name} has an empty last dimension; rows must hold at least one value");
        }
        if rows.checked_mul(vocab) != Some(data.len()) {
            return invalid!(
                "{name} holds {} values, not rows x vocab = {rows} x {vocab}",
                data.len()
            );
        }
        Ok(Self {
            data,
            row_count: rows,
            vocab,
            name,
        })
    }

    /// Number of rows.
    #[must_use]
    pub fn rows(&self) -> usize {
        self.row_count
    }

    /// Width of a row (the vocabulary size).
    #[must_use]
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Row `i`.
    #[must_use]
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.vocab..(i + 1) * self.vocab]
    }

    /// Rows `start..end` as a matrix of their own.
    #[must_use]
    pub fn slice_rows(&self, start: usize, end: usize) -> Rows<'a> {
        Rows {
            data: &self.data[start * self.vocab..end * self.vocab],
            row_count: end - start,
            vocab: self.vocab,
            name: self.name,
        }
    }

    /// The argument name used in error messages.
    #[must_use]
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Validate row `i` and return its statistics.
    pub fn scan(&self, i: usize) -> Result<RowStats> {
        scan_row(self.row(i), self.name, i)
    }
}

/// Per-thread buffers, so a 128k-token row costs no allocation (and no page faults) per call.
#[derive(Default)]
pub(crate) struct Scratch {
    pub(crate) weights: Vec<f32>,
    pub(crate) blocks: Vec<f64>,
    pub(crate) values: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

pub(crate) fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}

/// Check a temperature: finite and `>= 0` (`0` means greedy).
pub fn check_temperature(temperature: f32) -> Result<()> {
    if !(temperature >= 0.0 && temperature.is_finite()) {
        return invalid!("temperature must be a finite number >= 0 (0 means greedy), got {temperature}");
    }
    if temperature > 0.0 && !(1.0 / temperature).is_finite() {
        return invalid!(
            "temperature {temperature:e} is too small to divide by in float32; use 0 for greedy decoding"
        );
    }
    Ok(())
}

fn check_top_p(top_p: f64) -> Result<()> {
    if !(top_p > 0.0 && top_p <= 1.0) {
        return invalid!("top_p must be in (0, 1], got {top_p}");
    }
    Ok(())
}

fn check_min_p(min_p: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&min_p) {
        return invalid!("min_p must be in [0, 1], got {min_p}");
    }
    Ok(())
}

/// Check that there is one seed per row.
pub fn check_seeds(seeds: &[u64], rows: usize) -> Result<()> {
    if seeds.len() != rows {
        return invalid!(
            "seeds must hold one seed per row: got {} seeds for {rows} rows",
            seeds.len()
        );
    }
    Ok(())
}

fn check_out<T>(out: &[T], len: usize, what: &str) -> Result<()> {
    if out.len() != len {
        return invalid!("out must hold {len} {what}, got {}", out.len());
    }
    Ok(())
}

/// Settings of [`sample`], applied in the order temperature, top-k, top-p, min-p.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Divides the logits; `0` means greedy (argmax, ties to the lowest id).
    pub temperature: f32,
    /// Keep the `top_k` largest logits (ties at the cut-off kept); `0` disables.
    pub top_k: usize,
    /// Keep the smallest set of most probable tokens whose mass reaches `top_p`; `1` disables.
    pub top_p: f64,
    /// Keep tokens with probability at least `min_p` times the largest; `0` disables.
    pub min_p: f64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
        }
    }
}

impl SamplingParams {
    /// Check every setting's range.
    pub fn validate(&self) -> Result<()> {
        check_temperature(self.temperature)?;
        check_top_p(self.top_p)?;
        check_min_p(self.min_p)
    }
}

/// Write `softmax(logits / temperature)` row by row into `out` (same shape). With temperature `0` the
/// result is the limit: the argmax set shares the mass equally.
pub fn softmax(logits: Rows<'_>, temperature: f32, out: &mut [f32]) -> Result<()> {
    check_temperature(temperature)?;
    check_out(out, logits.rows() * logits.vocab, "probabilities")?;
    for_each_row_mut(out, logits.rows(), |i, o| {
        let stats = logits.scan(i)?;
        let row = logits.row(i);
        if temperature == 0.0 {
            let ties = row.iter().filter(|&&v| v == stats.max).count() as f32;
            for (o, &v) in o.iter_mut().zip(row) {
                *o = if v == stats.max { 1.0 / ties } else { 0.0 };
            }
            return Ok(());
        }
        let total = with_scratch(|s| exp_and_block_sums(row, stats.max, 1.0 / temperature, o, &mut s.blocks));
        let inv = (1.0 / total) as f32;
        for v in o.iter_mut() {
            *v *= inv;
        }
        Ok(())
    })
}

/// Write `log_softmax(logits / temperature)` row by row into `out`; masked (`-inf`) logits stay `-inf`.
/// With temperature `0` the argmax set gets `-ln(ties)` and every other token `-inf`.
pub fn log_softmax(logits: Rows<'_>, temperature: f32, out: &mut [f32]) -> Result<()> {
    check_temperature(temperature)?;
    check_out(out, logits.rows() * logits.vocab, "log-probabilities")?;
    for_each_row_mut(out, logits.rows(), |i, o| {
        let stats = logits.scan(i)?;
        let row = logits.row(i);
        if temperature == 0.0 {
            let ties = row.iter().filter(|&&v| v == stats.max).count() as f64;
            let value = -(libm::log(ties) as f32);
            for (o, &v) in o.iter_mut().zip(row) {
                *o = if v == stats.max { value } else { f32::NEG_INFINITY };
            }
            return Ok(());
        }
        let inv_t = 1.0 / temperature;
        let total = with_scratch(|s| {
            s.weights.resize(row.len(), 0.0);
            exp_and_block_sums(row, stats.max, inv_t, &mut s.weights, &mut s.blocks)
        });
        let log_total = libm::log(total) as f32;
        for (o, &v) in o.iter_mut().zip(row) {
            *o = (v - stats.max) * inv_t - log_total;
        }
        Ok(())
    })
}

/// Fill `out` with the top-k keep-mask: `true` for tokens whose logit is at least the k-th largest
/// finite logit (ties at the cut-off kept). `k == 0` or `k >=` the number of finite logits keeps every
/// finite logit. Masked (`-inf`) tokens are never kept.
pub fn top_k_mask(logits: Rows<'_>, k: usize, out: &mut [bool]) -> Result<()> {
    check_out(out, logits.rows() * logits.vocab, "flags")?;
    for_each_row_mut(out, logits.rows(), |i, o| {
        let stats = logits.scan(i)?;
        let row = logits.row(i);
        let cut = logit_cutoff(row, &stats, k);
        for (o, &v) in o.iter_mut().zip(row) {
            *o = v >= cut;
        }
        Ok(())
    })
}

/// The smallest logit kept by top-k. When top-k keeps everything this is `f32::MIN`, which every finite
/// logit passes and `-inf` does not.
fn logit_cutoff(row: &[f32], stats: &RowStats, k: usize) -> f32 {
    if k == 0 || k >= stats.finite {
        f32::MIN
    } else {
        with_scratch(|s| kth_largest(row, k, &mut s.values))
    }
}

/// Fill `out` with the top-p keep-mask of `softmax(logits / temperature)`: the smallest set of most
/// probable tokens whose probability reaches `top_p`; the token that crosses `top_p` and every token tied
/// with it are kept.
pub fn top_p_mask(logits: Rows<'_>, top_p: f64, temperature: f32, out: &mut [bool]) -> Result<()> {
    check_top_p(top_p)?;
    check_temperature(temperature)?;
    check_out(out, logits.rows() * logits.vocab, "flags")?;
    let params = SamplingParams {
        temperature,
        top_k: 0,
        top_p,
        min_p: 0.0,
    };
    for_each_row_mut(out, logits.rows(), |i, o| mask_row(logits, i, &params, o))
}

/// Fill `out` with the min-p keep-mask of `softmax(logits / temperature)`: tokens whose probability is
/// at least `min_p` times the largest probability.
pub fn min_p_mask(logits: Rows<'_>, min_p: f64, temperature: f32, out: &mut [bool]) -> Result<()> {
    check_min_p(min_p)?;
    check_temperature(temperature)?;
    check_out(out, logits.rows() * logits.vocab, "flags")?;
    let params = SamplingParams {
        temperature,
        top_k: 0,
        top_p: 1.0,
        min_p,
    };
    for_each_row_mut(out, logits.rows(), |i, o| mask_row(logits, i, &params, o))
}

/// Fill `out` with the combined keep-mask of `params` (what [`sample`] draws from).
pub fn sampling_mask(logits: Rows<'_>, params: &SamplingParams, out: &mut [bool]) -> Result<()> {
    params.validate()?;
    check_out(out, logits.rows() * logits.vocab, "flags")?;
    for_each_row_mut(out, logits.rows(), |i, o| mask_row(logits, i, params, o))
}

fn mask_row(logits: Rows<'_>, i: usize, params: &SamplingParams, out: &mut [bool]) -> Result<()> {
    let stats = logits.scan(i)?;
    let row = logits.row(i);
    if params.temperature == 0.0 {
        for (o, &v) in out.iter_mut().zip(row) {
            *o = v == stats.max;
        }
        return Ok(());
    }
    with_scratch(|s| {
        let mut weights = std::mem::take(&mut s.weights);
        weights.resize(row.len(), 0.0);
        let cut = cutoffs(row, &stats, params, &mut weights, s);
        for ((o, &w), &v) in out.iter_mut().zip(&weights).zip(row) {
            *o = w >= cut.weight && v >= cut.logit && v > f32::NEG_INFINITY;
        }
        s.weights = weights;
    });
    Ok(())
}

/// The cut-offs of one row: keep token `i` iff `weights[i] >= weight` and `logits[i] >= logit`.
#[derive(Debug, Clone, Copy)]
struct Cutoffs {
    weight: f32,
    logit: f32,
    /// Whether any filter is active (otherwise every token with positive weight is kept).
    active: bool,
}

/// Fill `weights` with `exp((l - max) / T)` (and `s.blocks` with their block sums) and compute the
/// cut-offs of `params` in the order top-k, top-p, min-p.
fn cutoffs(
    row: &[f32],
    stats: &RowStats,
    params: &SamplingParams,
    weights: &mut [f32],
    s: &mut Scratch,
) -> Cutoffs {
    let total = exp_and_block_sums(row, stats.max, 1.0 / params.temperature, weights, &mut s.blocks);
    let mut cut = Cutoffs {
        weight: 0.0,
        logit: f32::MIN,
        active: false,
    };
    if params.top_k > 0 && params.top_k < stats.finite {
        cut.logit = kth_largest(row, params.top_k, &mut s.values);
        cut.active = true;
    }
    if params.top_p < 1.0 {
        let p = params.top_p;
        let found = if cut.active {
            // Top-p acts on the distribution renormalized over the top-k survivors.
            let mut candidates = std::mem::take(&mut s.values);
            candidates.clear();
            candidates.extend(
                weights
                    .iter()
                    .zip(row)
                    .filter(|(_, &v)| v >= cut.logit)
                    .map(|(&w, _)| w),
            );
            let kept: f64 = candidates.iter().map(|&w| f64::from(w)).sum();
            let mut level = Vec::new();
            let found = top_p_cutoff(&candidates, p * kept, &mut level);
            s.values = candidates;
            found
        } else {
            top_p_cutoff(weights, p * total, &mut s.values)
        };
        if let Some(w) = found {
            cut.weight = cut.weight.max(w);
            cut.active = true;
        }
    }
    if params.min_p > 0.0 {
        // "p_i >= min_p * p_max" is "(l_i - max) / T >= ln(min_p)": a cut on the logits, computed in
        // double precision. (Comparing weights with min_p instead would fail for min_p below the float32
        // range, and for weights that underflow.)
        let cut_logit = f64::from(stats.max) + f64::from(params.temperature) * libm::log(params.min_p);
        cut.logit = cut.logit.max(cut_logit as f32);
        cut.active = true;
    }
    cut
}

/// Draw one token per row into `out`, with `seeds[i]` keying row `i`'s random stream.
///
/// The filters apply in the order temperature, top-k, top-p, min-p (see [`SamplingParams`]); the token is
/// then drawn from the kept tokens in proportion to `exp(logit / T)` by inverse transform with one
/// 53-bit uniform.
pub fn sample(logits: Rows<'_>, params: &SamplingParams, seeds: &[u64], out: &mut [i32]) -> Result<()> {
    params.validate()?;
    check_out(out, logits.rows(), "tokens (one per row)")?;
    if params.temperature > 0.0 {
        check_seeds(seeds, logits.rows())?;
    }
    let tokens = map_rows(logits.rows(), |i| {
        let seed = seeds.get(i).copied().unwrap_or(0);
        Ok(sample_row(logits.row(i), logits.scan(i)?, params, seed))
    })?;
    out.copy_from_slice(&tokens);
    Ok(())
}

/// Sample one row whose statistics are already known.
fn sample_row(row: &[f32], stats: RowStats, params: &SamplingParams, seed: u64) -> i32 {
    if params.temperature == 0.0 {
        return argmax_first(row, stats.max) as i32;
    }
    let u = Philox::new(seed, 0).next_f64();
    let token = with_scratch(|s| {
        let mut weights = std::mem::take(&mut s.weights);
        weights.resize(row.len(), 0.0);
        let cut = cutoffs(row, &stats, params, &mut weights, s);
        let total = if cut.active {
            kept_block_sums(&weights, row, cut.weight, cut.logit, &mut s.blocks)
        } else {
            s.blocks.iter().sum()
        };
        let token = locate(&s.blocks, u * total, |i| {
            if weights[i] >= cut.weight && row[i] >= cut.logit {
                weights[i]
            } else {
                0.0
            }
        });
        s.weights = weights;
        token
    });
    // The largest logit always has weight 1 and survives every filter, so a token is always found.
    token.unwrap_or_else(|| argmax_first(row, stats.max)) as i32
}
