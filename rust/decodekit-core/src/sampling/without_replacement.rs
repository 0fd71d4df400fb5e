//! Sampling without replacement: Gumbel-top-k and one step of Stochastic Beam Search.
//!
//! Both draw from a [`MassTable`]: the weights `exp(x - shift)` of one row with per-block sums. Drawing a
//! token in proportion to its weight, zeroing it and drawing again is sequential sampling without
//! replacement, which is exactly the distribution of the Gumbel-top-k trick (the order of
//! `argsort(x + Gumbel noise)`), at the cost of one exponential per token instead of two logarithms, and
//! with no sort. Stochastic Beam Search also needs the perturbed scores themselves; they follow from the
//! top-down construction of Gumbel maxima: the maximum of independent Gumbels with locations `x_j` is
//! Gumbel with location `logsumexp(x)`, independent of which `j` attains it.

use crate::error::Result;
use crate::invalid;
use crate::parallel::{for_each_row_mut, map_rows};
use crate::rng::Philox;
use crate::sampling::kernels::{exp_and_block_sums, scan_row, sum_f64, BLOCK};
use crate::sampling::threshold::kth_largest;
use crate::sampling::{check_seeds, check_temperature, Rows};

/// Below this remaining mass (relative to the current shift) the weights are recomputed around the
/// largest remaining value, so tokens whose weight underflowed get their true share back.
const REBASE_BELOW: f64 = 1.0 / (1u64 << 60) as f64;

/// After this many rebases (each costs a pass over the row) the rest of the draws switch to explicit
/// Gumbel noise, which costs one pass in all. Only rows whose values are spread over thousands of nats,
/// such as `-100 * i`, get here; for them sequential draws would be quadratic.
const MAX_REBASES: usize = 4;

/// The weights of one row for repeated draws without replacement.
struct MassTable<'a> {
    values: &'a [f32],
    scale: f32,
    shift: f32,
    weights: Vec<f32>,
    blocks: Vec<f64>,
    taken: Vec<usize>,
    is_taken: Vec<bool>,
    rebases: usize,
}

impl<'a> MassTable<'a> {
    /// Weights `exp((values - max) * scale)`.
    fn new(values: &'a [f32], max: f32, scale: f32) -> Self {
        let mut table = Self {
            values,
            scale,
            shift: max,
            weights: vec![0.0; values.len()],
            blocks: Vec::with_capacity(values.len().div_ceil(BLOCK)),
            taken: Vec::new(),
            is_taken: vec![false; values.len()],
            rebases: 0,
        };
        table.fill();
        table
    }

    fn fill(&mut self) {
        exp_and_block_sums(
            self.values,
            self.shift,
            self.scale,
            &mut self.weights,
            &mut self.blocks,
        );
        for &t in &self.taken {
            self.weights[t] = 0.0;
            let b = t / BLOCK;
            self.blocks[b] = block_sum(&self.weights, b);
        }
    }

    /// The remaining mass, after recomputing the weights around the largest remaining value if it has
    /// become so small that underflowed weights could matter. Zero once nothing finite remains.
    fn remaining(&mut self) -> f64 {
        let total: f64 = self.blocks.iter().sum();
        if total >= REBASE_BELOW {
            return total;
        }
        let mut best = f32::NEG_INFINITY;
        for (&v, &taken) in self.values.iter().zip(&self.is_taken) {
            if v > best && !taken {
                best = v;
            }
        }
        if best == f32::NEG_INFINITY || best == self.shift {
            return total;
        }
        self.rebases += 1;
        self.shift = best;
        self.fill();
        self.blocks.iter().sum()
    }

    /// Draw a token in proportion to its weight (`u` uniform in `[0, 1)`) and remove it.
    fn take(&mut self, u: f64, total: f64) -> Option<usize> {
        let weights = &self.weights;
        let i = super::kernels::locate(&self.blocks, u * total, |i| weights[i])?;
        self.weights[i] = 0.0;
        self.blocks[i / BLOCK] = block_sum(&self.weights, i / BLOCK);
        self.taken.push(i);
        self.is_taken[i] = true;
        Some(i)
    }

    /// `ln` of the remaining mass, `ln(sum of exp(value * scale))` over the tokens not yet taken.
    fn log_mass(&self, total: f64) -> f64 {
        f64::from(self.shift) * f64::from(self.scale) + libm::log(total)
    }

    /// Whether rebasing has happened so often that the remaining draws should use [`Self::draw_rest`].
    fn rebased_too_often(&self) -> bool {
        self.rebases > MAX_REBASES
    }

    /// The `count` best remaining tokens by `offset + value * scale + Gumbel noise`, best first, as
    /// `(key, token)`. By the Gumbel-top-k theorem this continues the sequence drawn so far with exactly
    /// the distribution of further sequential draws; one pass over the row whatever the spread of values.
    fn draw_rest(&self, rng: &mut Philox, count: usize, offset: f64) -> Vec<(f64, usize)> {
        let scale = f64::from(self.scale);
        let mut keyed: Vec<(f64, usize)> = self
            .values
            .iter()
            .zip(&self.is_taken)
            .enumerate()
            .filter(|(_, (v, taken))| !**taken && **v > f32::NEG_INFINITY)
            .map(|(i, (&v, _))| (offset + f64::from(v) * scale + rng.next_gumbel(), i))
            .collect();
        let by_key = |a: &(f64, usize), b: &(f64, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if count < keyed.len() {
            keyed.select_nth_unstable_by(count, by_key);
            keyed.truncate(count);
        }
        keyed.sort_by(by_key);
        keyed
    }
}

/// Draw `k` distinct tokens per row into `out` (`rows x k`, row-major), in the order they were drawn,
/// distributed exactly as sequential sampling without replacement from `softmax(logits / temperature)`
/// (the Gumbel-top-k distribution). Temperature `0` returns the `k` largest logits, ties to the lowest id.
pub fn gumbel_top_k(
    logits: Rows<'_>,
    k: usize,
    temperature: f32,
    seeds: &[u64],
    out: &mut [i32],
) -> Result<()> {
    check_temperature(temperature)?;
    if temperature > 0.0 {
        check_seeds(seeds, logits.rows())?;
    }
    if out.len() != logits.rows() * k {
        return invalid!(
            "out must hold rows x k = {} x {k} tokens, got {}",
            logits.rows(),
            out.len()
        );
    }
    if k == 0 {
        // Still validate every row, so bad logits never pass silently.
        return map_rows(logits.rows(), |i| logits.scan(i).map(|_| ())).map(|_| ());
    }
    for_each_row_mut(out, logits.rows(), |i, o| {
        let stats = logits.scan(i)?;
        if k > stats.finite {
            return invalid!(
                "k = {k} is larger than the number of finite logits ({}) in row {i} of {}",
                stats.finite,
                logits.name()
            );
        }
        let row = logits.row(i);
        if temperature == 0.0 {
            let mut scratch = Vec::new();
            let cut = kth_largest(row, k, &mut scratch);
            let mut top: Vec<(f32, usize)> = row
                .iter()
                .enumerate()
                .filter(|(_, &v)| v >= cut)
                .map(|(j, &v)| (v, j))
                .collect();
            top.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for (o, &(_, j)) in o.iter_mut().zip(&top) {
                *o = j as i32;
            }
            return Ok(());
        }
        let mut rng = Philox::new(seeds[i], 0);
        let mut table = MassTable::new(row, stats.max, 1.0 / temperature);
        for n in 0..k {
            let total = table.remaining();
            if table.rebased_too_often() {
                for (slot, (_, token)) in o[n..].iter_mut().zip(table.draw_rest(&mut rng, k - n, 0.0)) {
                    *slot = token as i32;
                }
                break;
            }
            let u = rng.next_f64();
            let Some(token) = table.take(u, total) else {
                return Err(crate::error::CoreError::Internal(
                    "ran out of tokens while sampling without replacement".into(),
                ));
            };
            o[n] = token as i32;
        }
        Ok(())
    })
}

/// The `k` new beams chosen by one step of Stochastic Beam Search, best first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BeamStep {
    /// Index of the parent beam of each new beam.
    pub parents: Vec<i32>,
    /// The token that extends the parent.
    pub tokens: Vec<i32>,
    /// Log probability of the extended sequence: parent log prob + child log prob.
    pub log_probs: Vec<f64>,
    /// Perturbed (Gumbel) score of the extended sequence, the `beam_gumbels` of the next step.
    pub scores: Vec<f64>,
}

/// One step of Stochastic Beam Search (Kool, van Hoof and Welling, 2019).
///
/// Beam `i` has log probability `phi_i = beam_log_probs[i]` and perturbed score `G_i =
/// beam_gumbels[i]`. Its child `j` has log probability `phi_ij = phi_i + child_log_probs[i, j]`. SBS gives
/// each child a Gumbel perturbation `G_ij ~ Gumbel(phi_ij)` conditioned on `max_j G_ij = G_i`, and keeps
/// the `k` children with the largest perturbed scores over all beams. Only the `k` best children of each
/// beam can be among them, and those are drawn top-down: the best child of beam `i` is distributed as
/// `softmax(child_log_probs[i])` and scores exactly `G_i`; after removing children `S`, the next child is
/// distributed as the softmax over the rest and its score is a Gumbel with location `logsumexp` of the
/// rest, truncated to lie below the previous score. Beams whose children are all `-inf` have none.
pub fn stochastic_beam_search_step(
    beam_log_probs: &[f64],
    beam_gumbels: &[f64],
    child_log_probs: Rows<'_>,
    k: usize,
    seed: u64,
) -> Result<BeamStep> {
    let width = child_log_probs.rows();
    if beam_log_probs.len() != width || beam_gumbels.len() != width {
        return invalid!(
            "beam_log_probs ({}), beam_gumbels ({}) and the rows of child_log_probs ({width}) must have the same length",
            beam_log_probs.len(),
            beam_gumbels.len()
        );
    }
    for (name, values) in [("beam_log_probs", beam_log_probs), ("beam_gumbels", beam_gumbels)] {
        if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return invalid!("{name}[{i}] is {v}; beam log probabilities and scores must be finite");
        }
    }
    let per_beam = map_rows(width, |i| {
        let row = child_log_probs.row(i);
        let stats = match scan_row(row, child_log_probs.name(), i) {
            Ok(stats) => stats,
            // A beam that cannot be extended (all children -inf) simply contributes nothing.
            Err(_) if !row.is_empty() && row.iter().all(|&v| v == f32::NEG_INFINITY) => {
                return Ok((0, Vec::new()))
            }
            Err(e) => return Err(e),
        };
        let mut rng = Philox::new(seed, i as u64);
        let mut table = MassTable::new(row, stats.max, 1.0);
        let mut children = Vec::with_capacity(k.min(stats.finite));
        let mut score = beam_gumbels[i];
        let wanted = k.min(stats.finite);
        for n in 0..wanted {
            let total = table.remaining();
            if table.rebased_too_often() {
                // The children not drawn yet are independent Gumbels truncated below the last score.
                let last = score;
                for (key, token) in table.draw_rest(&mut rng, wanted - n, beam_log_probs[i]) {
                    children.push((-log_add_exp(-last, -key), token));
                }
                break;
            }
            if n > 0 {
                // The maximum of the remaining perturbed scores: Gumbel(location) truncated below `score`.
                let location = beam_log_probs[i] + table.log_mass(total);
                let g = location + rng.next_gumbel();
                score = -log_add_exp(-score, -g);
            }
            let u = rng.next_f64();
            let Some(token) = table.take(u, total) else {
                break;
            };
            children.push((score, token));
        }
        Ok((stats.finite, children))
    })?;
    let available: usize = per_beam.iter().map(|(finite, _)| finite).sum();
    if k > available {
        return invalid!(
            "k = {k} is larger than the number of finite children ({available}) across all beams"
        );
    }
    let mut all: Vec<(f64, usize, usize)> = per_beam
        .iter()
        .enumerate()
        .flat_map(|(i, (_, children))| children.iter().map(move |&(score, token)| (score, i, token)))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    all.truncate(k);
    let mut step = BeamStep::default();
    for (score, parent, token) in all {
        step.parents.push(parent as i32);
        step.tokens.push(token as i32);
        step.log_probs
            .push(beam_log_probs[parent] + f64::from(child_log_probs.row(parent)[token]));
        step.scores.push(score);
    }
    Ok(step)
}

/// The sum of block `b` of `weights`.
fn block_sum(weights: &[f32], b: usize) -> f64 {
    sum_f64(&weights[b * BLOCK..((b + 1) * BLOCK).min(weights.len())])
}

/// `ln(e^a + e^b)` without overflow.
fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    hi + libm::log1p(libm::exp(lo - hi))
}
