//! Lossless verification of draft trees and chains.
//!
//! The target model has scored every node of a [`DraftTree`] in one pass: `target[i]` is its next-token
//! distribution after the path to node `i`. A verifier walks down from the root, deciding at each node
//! which child (if any) to accept, and ends by emitting one token drawn by the target itself (the bonus
//! token after an accepted leaf, or the recovered token when every child of a node is rejected).
//!
//! * Greedy: accept the child equal to the target's argmax; the output equals greedy decoding.
//! * Speculative sampling (Leviathan et al. 2023; Chen et al. 2023) generalised to trees by recursive
//!   rejection sampling (SpecInfer, Miao et al. 2024; RSD, Jeon et al. 2024): children are tried in order
//!   against a residual target distribution; the emitted tokens are distributed exactly as sampling from
//!   the target model, whatever the drafts are.
//! * Typical acceptance (Medusa, Cai et al. 2024): a heuristic that is **not** lossless.

use crate::error::Result;
use crate::invalid;
use crate::parallel::map_rows;
use crate::rng::Philox;
use crate::sampling::kernels::{locate, locate_in_block, BLOCK};
use crate::sampling::Rows;
use crate::tree::DraftTree;

/// Rows may deviate from summing to one by this much.
pub const SUM_TOLERANCE: f64 = 1e-3;

/// What a verifier decided for one tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verification {
    /// The accepted root-to-node path (node indices, the root first). These are also the tree's KV-cache
    /// slots to keep.
    pub accepted_nodes: Vec<i32>,
    /// The emitted tokens: the accepted draft tokens, then the bonus or recovered token.
    pub tokens: Vec<i32>,
}

impl Verification {
    fn new() -> Self {
        Self {
            accepted_nodes: vec![0],
            tokens: Vec::new(),
        }
    }

    fn accept(&mut self, node: usize, token: i32) {
        self.accepted_nodes.push(node as i32);
        self.tokens.push(token);
    }
}

/// Accept the longest root path whose every node's token equals the target's choice after its parent
/// (`target_tokens[i]`, the target's argmax after node `i`), then emit the target's token after the
/// last accepted node. Among accepted paths of equal length the one ending at the lowest node index wins
/// (this only matters when siblings repeat a token).
pub fn verify_greedy(tree: &DraftTree, target_tokens: &[i32]) -> Result<Verification> {
    if target_tokens.len() != tree.num_nodes() {
        return invalid!(
            "target_tokens must hold one token per tree node ({}), got {}",
            tree.num_nodes(),
            target_tokens.len()
        );
    }
    if let Some((i, &t)) = target_tokens.iter().enumerate().find(|(_, &t)| t < 0) {
        return invalid!("target_tokens[{i}] = {t} is not a token id (ids are >= 0)");
    }
    // Parents come first, so one pass marks every node whose whole path matches the target.
    let mut matches = vec![false; tree.num_nodes()];
    matches[0] = true;
    let mut best = 0usize;
    for i in 1..tree.num_nodes() {
        let parent = tree.parents()[i] as usize;
        if matches[parent] && tree.tokens()[i] == target_tokens[parent] {
            matches[i] = true;
            if tree.depth()[i] > tree.depth()[best] {
                best = i;
            }
        }
    }
    let mut result = Verification::new();
    for &node in &tree.path_to(best)[1..] {
        result.accept(node as usize, tree.tokens()[node as usize]);
    }
    result.tokens.push(target_tokens[best]);
    Ok(result)
}

/// How much checking the probability rows get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// Every row the verifier reads is checked in full: no NaN, no negative value, sum within
    /// [`SUM_TOLERANCE`] of one (and the exact sum is used as the normaliser).
    Full,
    /// Only the values read are checked (finite, in `[0, 1 + tolerance]`) and rows are trusted to sum to
    /// one: the final token is drawn by scanning its row only up to the sampled position. A row found to
    /// hold less mass than the draw needs is checked in full (and refused if it is off by more than the
    /// tolerance).
    ReadValues,
}

/// The target (and optional draft) probability rows of one tree, `[num_nodes, vocab]`.
#[derive(Debug, Clone, Copy)]
pub struct TreeProbs<'a> {
    /// Target distribution after each node.
    pub target: Rows<'a>,
    /// Draft distribution each node's children were drawn from (without replacement), if the drafts
    /// are stochastic; `None` for deterministic drafts (n-gram, token recycling, argmax drafts).
    pub draft: Option<Rows<'a>>,
}

impl TreeProbs<'_> {
    fn check(&self, tree: &DraftTree) -> Result<()> {
        let n = tree.num_nodes();
        let vocab = self.target.vocab();
        if self.target.rows() != n {
            return invalid!(
                "target_probs must have one row per tree node ({n}), got {} rows",
                self.target.rows()
            );
        }
        if let Some(draft) = self.draft {
            if draft.rows() != n || draft.vocab() != vocab {
                return invalid!(
                    "draft_probs must have the shape of target_probs ({n} x {vocab}), got {} x {}",
                    draft.rows(),
                    draft.vocab()
                );
            }
        }
        if let Some((i, &t)) = tree
            .tokens()
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, &t)| t as usize >= vocab)
        {
            return invalid!(
                "tree node {i} has token {t}, outside the vocabulary of target_probs (width {vocab})"
            );
        }
        Ok(())
    }
}

/// Per-[`BLOCK`] sums of a probability row, refusing NaN, negative values and totals further than the
/// tolerance from one. One pass: the sums also serve to draw from the row.
fn checked_blocks(row: &[f32], name: &str, index: usize) -> Result<Vec<f64>> {
    let mut blocks = Vec::with_capacity(row.len().div_ceil(BLOCK));
    if row_block_sums(row, &mut blocks) {
        return Err(bad_value(row, name, index));
    }
    let total: f64 = blocks.iter().sum();
    if (total - 1.0).abs() > SUM_TOLERANCE {
        return invalid!("{name} row {index} sums to {total:.6}, not 1 (within {SUM_TOLERANCE})");
    }
    Ok(blocks)
}

fn bad_value(row: &[f32], name: &str, index: usize) -> crate::error::CoreError {
    let (j, v) = row
        .iter()
        .enumerate()
        .find(|(_, v)| !(**v >= 0.0 && v.is_finite()))
        .expect("seen");
    crate::error::CoreError::InvalidInput(format!(
        "{name} row {index} holds {v} at token {j}; probabilities must be finite and >= 0"
    ))
}

fn checked_total(row: &[f32], name: &str, index: usize) -> Result<f64> {
    Ok(checked_blocks(row, name, index)?.iter().sum())
}

crate::sampling::kernels::multiversion! {
    /// Append the f64 sum of every [`BLOCK`] values of `row` to `blocks`; returns whether any value is
    /// NaN, negative or infinite. One pass, one dispatch for the whole row.
    fn row_block_sums(row: &[f32], blocks: &mut Vec<f64>) -> bool {
        // Min and max lanes find negative and infinite values; a NaN poisons its block's sum. (Range
        // checks per value compile to far slower code.)
        let mut low = [f32::INFINITY; 8];
        let mut high = [0.0f32; 8];
        let mut nan = false;
        for block in row.chunks(BLOCK) {
            // Two simple passes over a block that sits in L1 vectorize far better than one fused loop.
            let sum = crate::sampling::kernels::sum_lanes(block);
            let chunks = block.chunks_exact(8);
            let tail = chunks.remainder();
            for c in chunks {
                for j in 0..8 {
                    low[j] = low[j].min(c[j]);
                    high[j] = high[j].max(c[j]);
                }
            }
            for (j, &v) in tail.iter().enumerate() {
                low[j] = low[j].min(v);
                high[j] = high[j].max(v);
            }
            nan |= sum.is_nan();
            blocks.push(sum);
        }
        nan || low.iter().any(|&v| v < 0.0) || high.contains(&f32::INFINITY)
    }
}

/// Tokens per step of the early-exit scan of [`NodeState::recover_trusting`].
const SCAN_STEP: usize = 16 * BLOCK;

/// A probability read from a row, checked for range.
fn read(row: &[f32], token: usize, name: &str, index: usize) -> Result<f64> {
    let v = row[token];
    if !(v >= 0.0 && f64::from(v) <= 1.0 + SUM_TOLERANCE) {
        return invalid!("{name} row {index} holds {v} at token {token}; probabilities must be in [0, 1]");
    }
    Ok(f64::from(v))
}

/// The residual distribution at one node while its children are tried: either the target row with
/// some tokens removed (deterministic drafts), or explicit residual and draft vectors (stochastic drafts).
struct NodeState<'a> {
    target: &'a [f32],
    /// Normaliser of `target` (its sum, or 1 when rows are trusted).
    target_total: f64,
    /// Block sums of `target` when it was checked in full, kept for drawing the final token.
    target_blocks: Option<Vec<f64>>,
    /// Tokens removed from the target (deterministic drafts), with the mass they held.
    removed: Vec<usize>,
    removed_mass: f64,
    /// Stochastic drafts: the current residual `p_i` and proposal `q_i`, normalised, once a child has
    /// been rejected (before that they are the rows themselves).
    residual: Option<(Vec<f32>, Vec<f32>)>,
    draft: Option<&'a [f32]>,
    draft_total: f64,
    validation: Validation,
}

impl<'a> NodeState<'a> {
    fn new(probs: &TreeProbs<'a>, node: usize, has_children: bool, validation: Validation) -> Result<Self> {
        let target = probs.target.row(node);
        // A leaf's draft row is never read (and a chain's draft matrix has no row for its last node).
        let draft = probs.draft.filter(|_| has_children).map(|d| d.row(node));
        let (target_blocks, draft_total) = match validation {
            Validation::Full => (
                Some(checked_blocks(target, "target_probs", node)?),
                match draft {
                    Some(d) => checked_total(d, "draft_probs", node)?,
                    None => 1.0,
                },
            ),
            Validation::ReadValues => (None, 1.0),
        };
        Ok(Self {
            target,
            target_total: target_blocks.as_ref().map_or(1.0, |b| b.iter().sum()),
            target_blocks,
            removed: Vec::new(),
            removed_mass: 0.0,
            residual: None,
            draft,
            draft_total,
            validation,
        })
    }

    /// Try child token `x`: accept with the recursive rejection sampling probability, or update the
    /// residual for the next sibling. `node` only names rows in messages.
    fn try_child(&mut self, x: usize, u: f64, node: usize) -> Result<bool> {
        match self.draft {
            None => {
                // q is a point mass on x: accept with p'(x), where p' is the target without the rejected
                // siblings; on rejection x's mass leaves the residual.
                let already = self.removed.contains(&x);
                let px = if already {
                    0.0
                } else {
                    read(self.target, x, "target_probs", node)? / self.target_total
                };
                let left = 1.0 - self.removed_mass;
                if left > 0.0 && u * left < px {
                    return Ok(true);
                }
                if !already {
                    self.removed.push(x);
                    self.removed_mass += px;
                }
                Ok(false)
            }
            Some(draft) => {
                let (p, q) = match &self.residual {
                    Some((p, q)) => (f64::from(p[x]), f64::from(q[x])),
                    None => (
                        read(self.target, x, "target_probs", node)? / self.target_total,
                        read(draft, x, "draft_probs", node)? / self.draft_total,
                    ),
                };
                if q <= 0.0 {
                    return invalid!(
                        "draft token {x} under node {node} has draft probability 0 (after removing earlier \
                         siblings), so it cannot have been drawn from draft_probs"
                    );
                }
                if u * q < p {
                    return Ok(true);
                }
                self.reject_stochastic(x);
                Ok(false)
            }
        }
    }

    /// `p <- norm(max(0, p - q))`, `q <- q without x, renormalised`.
    fn reject_stochastic(&mut self, x: usize) {
        let (mut p, mut q) = self.residual.take().unwrap_or_else(|| {
            let draft = self.draft.expect("stochastic drafts");
            let pt = (1.0 / self.target_total) as f32;
            let qt = (1.0 / self.draft_total) as f32;
            (
                self.target.iter().map(|&v| v * pt).collect(),
                draft.iter().map(|&v| v * qt).collect(),
            )
        });
        let mut p_total = 0.0f64;
        for (pv, &qv) in p.iter_mut().zip(&q) {
            *pv = (*pv - qv).max(0.0);
            p_total += f64::from(*pv);
        }
        if p_total > 0.0 {
            let inv = (1.0 / p_total) as f32;
            for v in &mut p {
                *v *= inv;
            }
        }
        let q_left = 1.0 - f64::from(q[x]);
        q[x] = 0.0;
        if q_left > 0.0 {
            let inv = (1.0 / q_left) as f32;
            for v in &mut q {
                *v *= inv;
            }
        }
        self.residual = Some((p, q));
    }

    /// Draw the recovered token from the final residual (or the bonus token when nothing was tried).
    fn recover(&self, u: f64, node: usize) -> Result<i32> {
        let token = match &self.residual {
            Some((p, _)) => {
                let blocks: Vec<f64> = p.chunks(BLOCK).map(crate::sampling::kernels::sum_f64).collect();
                let total: f64 = blocks.iter().sum();
                locate(&blocks, u * total, |i| p[i])
            }
            None if self.validation == Validation::ReadValues => return self.recover_trusting(u, node),
            None => {
                // Checked in full when the node was entered; every value of it matters.
                let blocks = match &self.target_blocks {
                    Some(blocks) => blocks.clone(),
                    None => checked_blocks(self.target, "target_probs", node)?,
                };
                draw_excluding(self.target, blocks, &self.sorted_removed(), u)
            }
        };
        token.map(|t| t as i32).ok_or_else(|| no_mass(node))
    }

    /// [`Self::recover`] for rows trusted to sum to one: scan block by block only until the sampled
    /// token, checking the values scanned. A row found to hold less mass than assumed is checked in full
    /// and sampled exactly after all.
    fn recover_trusting(&self, u: f64, node: usize) -> Result<i32> {
        let removed = self.sorted_removed();
        let row = self.target;
        let goal = u * (1.0 - self.removed_mass);
        let mut cum = 0.0;
        let mut next_removed = 0;
        let mut blocks = Vec::with_capacity(SCAN_STEP / BLOCK);
        for (step, part) in row.chunks(SCAN_STEP).enumerate() {
            blocks.clear();
            if row_block_sums(part, &mut blocks) {
                return Err(bad_value(row, "target_probs", node));
            }
            for (k, &block_mass) in blocks.iter().enumerate() {
                let b = step * (SCAN_STEP / BLOCK) + k;
                let mut mass = block_mass;
                while next_removed < removed.len() && removed[next_removed] < (b + 1) * BLOCK {
                    mass -= f64::from(row[removed[next_removed]]);
                    next_removed += 1;
                }
                if mass > 0.0 && cum + mass > goal {
                    let token = locate_in_block(b, cum, goal, &excluding(row, &removed));
                    return token.map(|t| t as i32).ok_or_else(|| no_mass(node));
                }
                cum += mass;
            }
        }
        // Less mass than assumed: check the whole row and draw exactly against its true total.
        let blocks = checked_blocks(row, "target_probs", node)?;
        draw_excluding(row, blocks, &removed, u)
            .map(|t| t as i32)
            .ok_or_else(|| no_mass(node))
    }

    fn sorted_removed(&self) -> Vec<usize> {
        let mut removed = self.removed.clone();
        removed.sort_unstable();
        removed
    }
}

/// The weight of token `i` in `row` with the (sorted) `removed` tokens taken out.
fn excluding<'r>(row: &'r [f32], removed: &'r [usize]) -> impl Fn(usize) -> f32 + 'r {
    move |i| {
        if removed.binary_search(&i).is_ok() {
            0.0
        } else {
            row[i]
        }
    }
}

/// Draw from `row` without the (sorted) `removed` tokens, given the row's block sums.
fn draw_excluding(row: &[f32], mut blocks: Vec<f64>, removed: &[usize], u: f64) -> Option<usize> {
    for &x in removed {
        blocks[x / BLOCK] -= f64::from(row[x]);
    }
    let total: f64 = blocks.iter().sum();
    locate(&blocks, u * total, excluding(row, removed))
}

fn no_mass(node: usize) -> crate::error::CoreError {
    crate::error::CoreError::InvalidInput(format!(
        "target_probs row {node} has no probability mass left to sample from"
    ))
}

/// Lossless verification of a draft tree by recursive rejection sampling.
///
/// At node `u` the children are tried in node order. Deterministic drafts (`probs.draft` is `None`):
/// child `x` is accepted with probability `p'(x)`, where `p'` is `target[u]` with the already rejected
/// siblings removed and renormalised. Stochastic drafts (children drawn without replacement from
/// `draft[u]`): child `x_i` is accepted with probability `min(1, p_i(x_i) / q_i(x_i))`, with `p_1 =
/// target[u]`, `q_1 = draft[u]`, and after a rejection `p_{i+1} = norm(max(0, p_i - q_i))`, `q_{i+1} =
/// q_i` without `x_i`, renormalised. If every child is rejected the recovered token is drawn from the
/// final residual; after an accepted leaf the bonus token is drawn from its target row. Either way the
/// emitted tokens are distributed exactly as sampling from the target model.
pub fn verify_tree(
    tree: &DraftTree,
    probs: &TreeProbs<'_>,
    validation: Validation,
    seed: u64,
) -> Result<Verification> {
    probs.check(tree)?;
    walk(tree, probs, validation, seed)
}

/// The verification walk of [`verify_tree`], for probabilities already checked against the tree.
fn walk(tree: &DraftTree, probs: &TreeProbs<'_>, validation: Validation, seed: u64) -> Result<Verification> {
    let mut rng = Philox::new(seed, 0);
    let mut result = Verification::new();
    let mut at = 0usize;
    loop {
        let mut state = NodeState::new(probs, at, !tree.children(at).is_empty(), validation)?;
        if probs.draft.is_some() {
            check_distinct_siblings(tree, at)?;
        }
        let mut accepted = None;
        for &child in tree.children(at) {
            let x = tree.tokens()[child as usize] as usize;
            if state.try_child(x, rng.next_f64(), at)? {
                accepted = Some(child as usize);
                break;
            }
        }
        match accepted {
            Some(child) => {
                at = child;
                result.accept(at, tree.tokens()[at]);
            }
            None => {
                result.tokens.push(state.recover(rng.next_f64(), at)?);
                return Ok(result);
            }
        }
    }
}

fn check_distinct_siblings(tree: &DraftTree, node: usize) -> Result<()> {
    let kids = tree.children(node);
    for (k, &a) in kids.iter().enumerate() {
        for &b in &kids[..k] {
            if tree.tokens()[a as usize] == tree.tokens()[b as usize] {
                return invalid!(
                    "nodes {b} and {a} repeat token {} under node {node}; with draft_probs the siblings must \
                     be drawn without replacement",
                    tree.tokens()[a as usize]
                );
            }
        }
    }
    Ok(())
}

/// Medusa's typical acceptance (Cai et al. 2024), which is **lossy**: a child `x` of node `u` is accepted
/// when `target[u][x] > min(epsilon, alpha * exp(-H(target[u])))`; the longest accepted root path wins
/// (the first in node order among equals) and the final token is the target's argmax after it.
pub fn verify_typical(tree: &DraftTree, target: Rows<'_>, epsilon: f64, alpha: f64) -> Result<Verification> {
    if !(epsilon >= 0.0 && alpha >= 0.0 && epsilon.is_finite() && alpha.is_finite()) {
        return invalid!("epsilon and alpha must be finite and >= 0, got {epsilon} and {alpha}");
    }
    TreeProbs { target, draft: None }.check(tree)?;
    let n = tree.num_nodes();
    // accepted_len[i]: depth of i if the whole path to i is accepted, else -1.
    let mut reachable = vec![false; n];
    reachable[0] = true;
    let mut threshold = vec![f64::NAN; n];
    let mut best = 0usize;
    for i in 1..n {
        let parent = tree.parents()[i] as usize;
        if !reachable[parent] {
            continue;
        }
        if threshold[parent].is_nan() {
            let row = target.row(parent);
            checked_total(row, "target_probs", parent)?;
            let entropy: f64 = row
                .iter()
                .filter(|&&p| p > 0.0)
                .map(|&p| -f64::from(p) * f64::from(p).ln())
                .sum();
            threshold[parent] = epsilon.min(alpha * (-entropy).exp());
        }
        let p = f64::from(target.row(parent)[tree.tokens()[i] as usize]);
        if p > threshold[parent] {
            reachable[i] = true;
            if tree.depth()[i] > tree.depth()[best] {
                best = i;
            }
        }
    }
    let mut result = Verification::new();
    for &node in &tree.path_to(best)[1..] {
        result.accept(node as usize, tree.tokens()[node as usize]);
    }
    let last = target.row(best);
    let argmax = last
        .iter()
        .enumerate()
        .fold(0, |b, (j, &v)| if v > last[b] { j } else { b });
    result.tokens.push(argmax as i32);
    Ok(result)
}

/// Verify a ragged batch: tree `b` owns rows `cu_nodes[b]..cu_nodes[b+1]` of the probability matrices.
pub fn verify_tree_batch(
    trees: &[&DraftTree],
    target: Rows<'_>,
    draft: Option<Rows<'_>>,
    validation: Validation,
    seeds: &[u64],
) -> Result<Vec<Verification>> {
    let offsets = node_offsets(trees, target.rows(), "target_probs")?;
    if let Some(d) = draft {
        if d.rows() != target.rows() || d.vocab() != target.vocab() {
            return invalid!("draft_probs must have the shape of target_probs");
        }
    }
    crate::sampling::check_seeds(seeds, trees.len())?;
    map_rows(trees.len(), |b| {
        let probs = TreeProbs {
            target: target.slice_rows(offsets[b], offsets[b + 1]),
            draft: draft.map(|d| d.slice_rows(offsets[b], offsets[b + 1])),
        };
        verify_tree(trees[b], &probs, validation, seeds[b])
    })
}

/// Greedy verification of a ragged batch; `target_tokens` holds `cu_nodes[b]..cu_nodes[b+1]` for tree `b`.
pub fn verify_greedy_batch(trees: &[&DraftTree], target_tokens: &[i32]) -> Result<Vec<Verification>> {
    let offsets = node_offsets(trees, target_tokens.len(), "target_tokens")?;
    map_rows(trees.len(), |b| {
        verify_greedy(trees[b], &target_tokens[offsets[b]..offsets[b + 1]])
    })
}

/// `cu_nodes` of a list of trees, checked against the number of rows supplied.
pub fn node_offsets(trees: &[&DraftTree], rows: usize, name: &str) -> Result<Vec<usize>> {
    let mut offsets = Vec::with_capacity(trees.len() + 1);
    offsets.push(0);
    for t in trees {
        offsets.push(offsets.last().expect("not empty") + t.num_nodes());
    }
    let total = *offsets.last().expect("not empty");
    if total != rows {
        return invalid!("{name} must have one row per node of all trees ({total}), got {rows}");
    }
    Ok(offsets)
}

/// Standard speculative sampling over a batch of chains in vLLM's ragged layout: request `b` drafted
/// `draft_tokens[cu[b]..cu[b+1]]`, and has target rows `cu[b] + b ..= cu[b+1] + b` (one per draft token
/// plus one for the bonus token) and draft rows `cu[b]..cu[b+1]`. Each chain is verified as a tree with
/// one child per node, which is exactly Leviathan et al.'s rule.
pub fn verify_chain_batch(
    draft_tokens: &[i32],
    cu_num_draft_tokens: &[i32],
    target: Rows<'_>,
    draft: Option<Rows<'_>>,
    validation: Validation,
    seeds: &[u64],
) -> Result<Vec<Verification>> {
    if cu_num_draft_tokens.is_empty() || cu_num_draft_tokens[0] != 0 {
        return invalid!("cu_num_draft_tokens must start with 0 (length batch + 1)");
    }
    if cu_num_draft_tokens.windows(2).any(|w| w[1] < w[0]) {
        return invalid!("cu_num_draft_tokens must be non-decreasing");
    }
    let batch = cu_num_draft_tokens.len() - 1;
    let total = *cu_num_draft_tokens.last().expect("not empty") as usize;
    if draft_tokens.len() != total {
        return invalid!(
            "draft_tokens holds {} tokens but cu_num_draft_tokens ends at {total}",
            draft_tokens.len()
        );
    }
    if target.rows() != total + batch {
        return invalid!(
            "target_probs must have num_draft_tokens + batch = {} rows (one per draft token plus a bonus row per request), got {}",
            total + batch,
            target.rows()
        );
    }
    if let Some(d) = draft {
        if d.rows() != total || d.vocab() != target.vocab() {
            return invalid!(
                "draft_probs must have shape [num_draft_tokens, vocab] = [{total}, {}]",
                target.vocab()
            );
        }
    }
    crate::sampling::check_seeds(seeds, batch)?;
    map_rows(batch, |b| {
        let (start, end) = (
            cu_num_draft_tokens[b] as usize,
            cu_num_draft_tokens[b + 1] as usize,
        );
        // The root token is irrelevant to verification; 0 stands in for it.
        let tree = DraftTree::chain(0, &draft_tokens[start..end])?;
        let probs = TreeProbs {
            target: target.slice_rows(start + b, end + b + 1),
            draft: draft.map(|d| d.slice_rows(start, end)),
        };
        if let Some((i, &t)) = tree
            .tokens()
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, &t)| t < 0 || t as usize >= target.vocab())
        {
            return invalid!(
                "draft_tokens[{}] = {t} is outside the vocabulary of target_probs (width {})",
                start + i - 1,
                target.vocab()
            );
        }
        walk(&tree, &probs, validation, seeds[b])
    })
}
