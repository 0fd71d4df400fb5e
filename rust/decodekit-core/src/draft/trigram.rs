//! ADED's adaptive tri-gram table (Liu et al., "Adaptive Draft-Verification for Efficient Large Language
//! Model Decoding") with Monte-Carlo tree search drafts.
//!
//! For every pair of tokens `(a, b)` the table keeps up to `top_k` next tokens with weights (initially
//! their corpus probabilities). Tables live in flat arrays indexed through one `FxHashMap` from the pair;
//! the search tree is an arena of plain structs.
//!
//! Adaptation (ADED's online rule): every trigram `(a, b, c)` seen by [`TrigramTable::adapt`] adds
//! [`ADAPT_STEP`] (0.04) to the weight of `c` after `(a, b)`, capped at [`ADAPT_CAP`] (3.0). A `c` not yet
//! listed enters with weight [`ADAPT_STEP`], taking a free slot or replacing the lowest-weighted token if
//! that weighs less. Weights act as unnormalised priors: the search divides by their sum per pair.
//!
//! Search: from the root `(a, b)`, each iteration descends by the pUCT rule `Q + c_puct * P * sqrt(N) /
//! (1 + n)`, expands the leaf with its table entry, rolls out `rollout_depth` tokens by sampling the
//! table, and backs up the rollout's value `mean over d of prod_{i<=d} P_i` (the expected fraction of the
//! path a verifier would accept if each token were accepted with its prior). The proposal keeps the
//! `max_nodes` most visited nodes (a node only with its parent), best first.

use rustc_hash::FxHashMap;

use crate::error::Result;
use crate::invalid;
use crate::persist::{self, Reader, Writer};
use crate::rng::Philox;
use crate::tree::DraftTree;

/// What [`TrigramTable::adapt`] adds to a seen trigram's weight.
pub const ADAPT_STEP: f32 = 0.04;
/// The largest weight adaptation can reach.
pub const ADAPT_CAP: f32 = 3.0;
const MAGIC: &[u8; 8] = b"DKTRIGR\0";
const VERSION: u32 = 1;

fn pair(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

/// No known entry for a slot's continuation pair (yet): look it up in the index.
const NO_LINK: u32 = u32::MAX;

/// A tri-gram table: for each token pair, the `top_k` likeliest next tokens with weights.
#[derive(Debug, Clone)]
pub struct TrigramTable {
    top_k: usize,
    index: FxHashMap<u64, u32>,
    /// The token pair of each entry.
    keys: Vec<u64>,
    /// Entry `e` holds `lens[e]` tokens at `tokens[e * top_k..]`, weights alongside, best first.
    tokens: Vec<u32>,
    weights: Vec<f32>,
    lens: Vec<u8>,
    /// For each slot `(e, i)`, the entry of the pair `(b, tokens[i])` that follows it (`b` being the
    /// second token of `e`), so searches walk arrays instead of probing the hash map at every step. A
    /// derived cache: [`NO_LINK`] when the pair had no entry when the link was made (it may have one
    /// since, so the index is consulted then).
    links: Vec<u32>,
}

impl PartialEq for TrigramTable {
    fn eq(&self, other: &Self) -> bool {
        // `links` is a cache and is left out.
        self.top_k == other.top_k
            && self.index == other.index
            && self.keys == other.keys
            && self.tokens == other.tokens
            && self.weights == other.weights
            && self.lens == other.lens
    }
}

/// Settings of one [`TrigramTable::propose`] search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchParams {
    /// Most draft nodes in the proposal.
    pub max_nodes: usize,
    /// Search iterations.
    pub iterations: usize,
    /// Tokens sampled past the expanded leaf to value it.
    pub rollout_depth: usize,
    /// Exploration weight of the pUCT rule.
    pub c_puct: f32,
}

impl SearchParams {
    fn validate(&self) -> Result<()> {
        if self.max_nodes == 0 || self.iterations == 0 {
            return invalid!(
                "max_nodes and iterations must be >= 1, got {} and {}",
                self.max_nodes,
                self.iterations
            );
        }
        if !(self.c_puct >= 0.0 && self.c_puct.is_finite()) {
            return invalid!("c_puct must be a finite number >= 0, got {}", self.c_puct);
        }
        Ok(())
    }
}

impl TrigramTable {
    /// Count every trigram of every sequence and keep the `top_k` likeliest continuations per pair, with
    /// their probabilities (count over the pair's total); ties go to the smaller token id.
    pub fn from_corpus(corpus: &[Vec<i32>], top_k: usize, vocab_size: Option<u32>) -> Result<Self> {
        if top_k == 0 || top_k > 255 {
            return invalid!("top_k must be in 1..=255, got {top_k}");
        }
        for (i, seq) in corpus.iter().enumerate() {
            super::check_tokens(seq, vocab_size, &format!("corpus[{i}]"))?;
        }
        let mut counts: FxHashMap<u64, FxHashMap<u32, u32>> = FxHashMap::default();
        for seq in corpus {
            for w in seq.windows(3) {
                *counts
                    .entry(pair(w[0] as u32, w[1] as u32))
                    .or_default()
                    .entry(w[2] as u32)
                    .or_insert(0) += 1;
            }
        }
        if counts.is_empty() {
            return invalid!("the corpus holds no trigram (every sequence is shorter than 3 tokens)");
        }
        let mut pairs: Vec<u64> = counts.keys().copied().collect();
        pairs.sort_unstable();
        let mut table = Self::empty(top_k);
        for p in pairs {
            let next = &counts[&p];
            let total: u64 = next.values().map(|&c| u64::from(c)).sum();
            let mut ranked: Vec<(u32, u32)> = next.iter().map(|(&t, &c)| (t, c)).collect();
            ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            ranked.truncate(top_k);
            let entry = table.push_entry(p);
            for (slot, (t, c)) in ranked.into_iter().enumerate() {
                table.tokens[entry * top_k + slot] = t;
                table.weights[entry * top_k + slot] = (f64::from(c) / total as f64) as f32;
            }
            table.lens[entry] = u8::try_from(next.len().min(top_k)).expect("top_k <= 255");
        }
        table.relink();
        Ok(table)
    }

    /// Recompute every slot's link.
    fn relink(&mut self) {
        for e in 0..self.lens.len() {
            for slot in 0..self.lens[e] as usize {
                self.links[e * self.top_k + slot] = self.find_link(e, slot);
            }
        }
    }

    /// The entry that follows slot `slot` of entry `e`, from the index.
    fn find_link(&self, e: usize, slot: usize) -> u32 {
        let b = self.keys[e] as u32;
        self.index
            .get(&pair(b, self.tokens[e * self.top_k + slot]))
            .copied()
            .unwrap_or(NO_LINK)
    }

    /// The entry that follows slot `slot` of entry `e`, if any.
    fn follow(&self, e: usize, slot: usize) -> Option<usize> {
        match self.links[e * self.top_k + slot] {
            NO_LINK => match self.find_link(e, slot) {
                NO_LINK => None,
                found => Some(found as usize),
            },
            link => Some(link as usize),
        }
    }

    fn empty(top_k: usize) -> Self {
        Self {
            top_k,
            index: FxHashMap::default(),
            keys: Vec::new(),
            tokens: Vec::new(),
            weights: Vec::new(),
            lens: Vec::new(),
            links: Vec::new(),
        }
    }

    fn push_entry(&mut self, key: u64) -> usize {
        let entry = self.lens.len();
        self.index.insert(key, entry as u32);
        self.keys.push(key);
        self.tokens.resize((entry + 1) * self.top_k, 0);
        self.weights.resize((entry + 1) * self.top_k, 0.0);
        self.links.resize((entry + 1) * self.top_k, NO_LINK);
        self.lens.push(0);
        entry
    }

    /// Continuations kept per pair.
    #[must_use]
    pub fn top_k(&self) -> usize {
        self.top_k
    }

    /// Number of token pairs with an entry.
    #[must_use]
    pub fn num_pairs(&self) -> usize {
        self.lens.len()
    }

    /// The continuations of `(a, b)`, best first: `(tokens, weights)`.
    #[must_use]
    pub fn lookup(&self, a: u32, b: u32) -> (&[u32], &[f32]) {
        self.entry(a, b).map_or((&[], &[]), |e| self.entry_items(e))
    }

    /// ADED's online adaptation over `tokens` (see the module docs for the rule).
    pub fn adapt(&mut self, tokens: &[i32]) -> Result<()> {
        super::check_tokens(tokens, None, "tokens")?;
        for w in tokens.windows(3) {
            let key = pair(w[0] as u32, w[1] as u32);
            let c = w[2] as u32;
            let entry = match self.index.get(&key) {
                Some(&e) => e as usize,
                None => self.push_entry(key),
            };
            let start = entry * self.top_k;
            let len = self.lens[entry] as usize;
            let slots = &mut self.weights[start..start + len];
            if let Some(pos) = self.tokens[start..start + len].iter().position(|&t| t == c) {
                slots[pos] = (slots[pos] + ADAPT_STEP).min(ADAPT_CAP);
            } else if len < self.top_k {
                self.tokens[start + len] = c;
                self.weights[start + len] = ADAPT_STEP;
                self.lens[entry] += 1;
                self.links[start + len] = self.find_link(entry, len);
            } else if let Some((low, &weight)) = slots
                .iter()
                .enumerate()
                .min_by(|x, y| x.1.total_cmp(y.1).then(y.0.cmp(&x.0)))
            {
                if weight < ADAPT_STEP {
                    self.tokens[start + low] = c;
                    self.weights[start + low] = ADAPT_STEP;
                    self.links[start + low] = self.find_link(entry, low);
                }
            }
            self.sort_entry(entry);
        }
        Ok(())
    }

    /// Keep an entry's tokens best first (weight descending, then token id).
    fn sort_entry(&mut self, entry: usize) {
        let start = entry * self.top_k;
        let len = self.lens[entry] as usize;
        let mut items: Vec<(u32, f32, u32)> = (start..start + len)
            .map(|i| (self.tokens[i], self.weights[i], self.links[i]))
            .collect();
        items.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        for (slot, (t, w, l)) in items.into_iter().enumerate() {
            self.tokens[start + slot] = t;
            self.weights[start + slot] = w;
            self.links[start + slot] = l;
        }
    }

    /// The table entry of `(a, b)`, if any.
    fn entry(&self, a: u32, b: u32) -> Option<usize> {
        self.index.get(&pair(a, b)).map(|&e| e as usize)
    }

    /// The tokens and weights of an entry.
    fn entry_items(&self, entry: usize) -> (&[u32], &[f32]) {
        let (start, len) = (entry * self.top_k, self.lens[entry] as usize);
        (
            &self.tokens[start..start + len],
            &self.weights[start..start + len],
        )
    }

    /// A draft tree after the context ending in `(a, b)` (the root token is `b`), by Monte-Carlo tree
    /// search with the pUCT rule; deterministic for a given `seed`.
    pub fn propose(&self, a: i32, b: i32, params: &SearchParams, seed: u64) -> Result<DraftTree> {
        params.validate()?;
        super::check_tokens(&[a, b], None, "last_two_tokens")?;
        let mut rng = Philox::new(seed, 0);
        let c_puct = f64::from(params.c_puct);
        // Nodes live in one arena; a node's children are created together, so they are contiguous.
        let mut nodes = Vec::with_capacity(params.iterations * self.top_k + 1);
        nodes.push(SearchNode::new(usize::MAX, b as u32, a as u32, 1.0));
        let mut path = Vec::with_capacity(16);
        for _ in 0..params.iterations {
            // Selection.
            let mut at = 0;
            path.clear();
            path.push(0);
            while nodes[at].expanded && nodes[at].num_children > 0 {
                let parent_visits = f64::from(nodes[at].visits).max(1.0).sqrt();
                let first = nodes[at].first_child;
                let mut best = first;
                let mut best_score = f64::NEG_INFINITY;
                for (c, n) in nodes[nodes[at].children()].iter().enumerate() {
                    let score =
                        n.mean() + c_puct * f64::from(n.prior) * parent_visits / (1.0 + f64::from(n.visits));
                    // Strictly greater: among equal scores the first (best-ranked) child wins.
                    if score > best_score {
                        best_score = score;
                        best = first + c;
                    }
                }
                at = best;
                path.push(at);
            }
            // Expansion (the leaf's table entry is looked up once and kept on the node).
            if !nodes[at].expanded {
                nodes[at].expanded = true;
                if at == 0 {
                    nodes[0].entry = self.entry(nodes[0].prev, nodes[0].token);
                }
                if let Some(e) = nodes[at].entry {
                    let (tokens, weights) = self.entry_items(e);
                    let total: f32 = weights.iter().sum();
                    let first = nodes.len();
                    let prev = nodes[at].token;
                    for (slot, (&t, &w)) in tokens.iter().zip(weights).enumerate() {
                        let prior = if total > 0.0 { w / total } else { 0.0 };
                        let mut child = SearchNode::new(at, t, prev, prior);
                        child.entry = self.follow(e, slot);
                        nodes.push(child);
                    }
                    nodes[at].first_child = first;
                    nodes[at].num_children = tokens.len() as u8;
                }
            }
            let leaf_entry = nodes[at].entry;
            // Rollout from the leaf, valued by the expected accepted fraction.
            let value = self.rollout(leaf_entry, params.rollout_depth, &mut rng);
            for &n in &path {
                nodes[n].visits += 1;
                nodes[n].value += value;
            }
        }
        Ok(best_visited(&nodes, params.max_nodes))
    }

    /// Sample `depth` tokens after a node whose own table entry is `entry` and return
    /// the mean over prefixes of their probability products.
    fn rollout(&self, mut entry: Option<usize>, depth: usize, rng: &mut Philox) -> f64 {
        if depth == 0 {
            return 0.0;
        }
        let mut prob = 1.0;
        let mut sum = 0.0;
        for step in 0..depth {
            let Some(e) = entry else { break };
            let (tokens, weights) = self.entry_items(e);
            let total: f32 = weights.iter().sum();
            if tokens.is_empty() || total <= 0.0 {
                break;
            }
            let mut u = (rng.next_f64() * f64::from(total)) as f32;
            let mut pick = tokens.len() - 1;
            for (i, &w) in weights.iter().enumerate() {
                if u < w {
                    pick = i;
                    break;
                }
                u -= w;
            }
            prob *= f64::from(weights[pick] / total);
            sum += prob;
            if step + 1 < depth {
                entry = self.follow(e, pick);
            }
        }
        sum / depth as f64
    }

    /// Save (canonical: pairs sorted), in the envelope of [`crate::persist`].
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u32(self.top_k as u32);
        let mut keys: Vec<(u64, u32)> = self.index.iter().map(|(&k, &e)| (k, e)).collect();
        keys.sort_unstable();
        w.u64(keys.len() as u64);
        for (k, e) in keys {
            w.u64(k);
            let (tokens, weights) = self.lookup((k >> 32) as u32, k as u32);
            debug_assert_eq!(tokens.len(), self.lens[e as usize] as usize);
            w.u32(tokens.len() as u32);
            for (&t, &x) in tokens.iter().zip(weights) {
                w.u32(t);
                w.f32(x);
            }
        }
        persist::seal(MAGIC, VERSION, &w.bytes)
    }

    /// Load bytes written by [`Self::to_bytes`]; anything damaged raises `CorruptState`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let what = "TrigramTable";
        let mut r = Reader::new(persist::open(bytes, MAGIC, VERSION, what)?, what);
        let top_k = r.u32()? as usize;
        if top_k == 0 || top_k > 255 {
            return Err(r.corrupt("top_k out of range"));
        }
        let mut table = Self::empty(top_k);
        let mut last = None;
        for _ in 0..r.count(12)? {
            let key = r.u64()?;
            if last.is_some_and(|l| l >= key)
                || (key >> 32) > i32::MAX as u64
                || (key & 0xFFFF_FFFF) > i32::MAX as u64
            {
                return Err(r.corrupt("token pairs are out of order or out of range"));
            }
            last = Some(key);
            let len = r.u32()? as usize;
            if len == 0 || len > top_k {
                return Err(r.corrupt("an entry length is out of range"));
            }
            let entry = table.push_entry(key);
            for slot in 0..len {
                let t = r.u32()?;
                let w = r.f32()?;
                if t > i32::MAX as u32 || !(w.is_finite() && w >= 0.0) {
                    return Err(r.corrupt("an entry holds an invalid token or weight"));
                }
                table.tokens[entry * top_k + slot] = t;
                table.weights[entry * top_k + slot] = w;
            }
            table.lens[entry] = len as u8;
        }
        r.finish()?;
        table.relink();
        Ok(table)
    }
}

#[derive(Debug, Clone)]
struct SearchNode {
    parent: usize,
    token: u32,
    prev: u32,
    prior: f32,
    visits: u32,
    value: f64,
    expanded: bool,
    /// The table entry of `(prev, token)`, set on expansion.
    entry: Option<usize>,
    first_child: usize,
    num_children: u8,
}

impl SearchNode {
    fn new(parent: usize, token: u32, prev: u32, prior: f32) -> Self {
        Self {
            parent,
            token,
            prev,
            prior,
            visits: 0,
            value: 0.0,
            expanded: false,
            entry: None,
            first_child: 0,
            num_children: 0,
        }
    }

    fn mean(&self) -> f64 {
        if self.visits == 0 {
            0.0
        } else {
            self.value / f64::from(self.visits)
        }
    }

    fn children(&self) -> std::ops::Range<usize> {
        self.first_child..self.first_child + self.num_children as usize
    }
}

/// Keep the `max_nodes` most visited nodes best-first (a node only after its parent), numbered
/// breadth-first; ties by prior, then creation order.
fn best_visited(nodes: &[SearchNode], max_nodes: usize) -> DraftTree {
    let key = |n: usize| (nodes[n].visits, nodes[n].prior.to_bits(), std::cmp::Reverse(n));
    let mut heap: std::collections::BinaryHeap<_> = nodes[0]
        .children()
        .filter(|&c| nodes[c].visits > 0)
        .map(|c| (key(c), c))
        .collect();
    let mut chosen = Vec::new();
    while chosen.len() < max_nodes {
        let Some((_, c)) = heap.pop() else { break };
        chosen.push(c);
        heap.extend(
            nodes[c]
                .children()
                .filter(|&g| nodes[g].visits > 0)
                .map(|g| (key(g), g)),
        );
    }
    // Selection order is topological (a node only after its parent); number breadth-first from it.
    let mut new_index = vec![0i32; nodes.len()];
    let mut tokens = vec![nodes[0].token as i32];
    let mut parents = vec![-1];
    for (i, &c) in chosen.iter().enumerate() {
        new_index[c] = i as i32 + 1;
        tokens.push(nodes[c].token as i32);
        parents.push(new_index[nodes[c].parent]);
    }
    DraftTree::from_topological(&tokens, &parents).expect("selected nodes form a tree")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SearchParams {
        SearchParams {
            max_nodes: 8,
            iterations: 150,
            rollout_depth: 4,
            c_puct: 1.0,
        }
    }

    #[test]
    fn corpus_probabilities_and_proposals() {
        let corpus = vec![vec![1, 2, 3, 4, 1, 2, 3, 5, 1, 2, 6]];
        let table = TrigramTable::from_corpus(&corpus, 2, None).unwrap();
        let (tokens, weights) = table.lookup(1, 2);
        assert_eq!(tokens, &[3, 6]);
        assert!((weights[0] - 2.0 / 3.0).abs() < 1e-6);
        let tree = table.propose(1, 2, &params(), 7).unwrap();
        assert_eq!(tree.tokens()[0], 2);
        assert_eq!(tree.tokens()[1], 3, "the likeliest continuation is explored most");
        assert!(tree.num_nodes() <= 9);
        assert_eq!(table.propose(1, 2, &params(), 7).unwrap(), tree);
    }

    #[test]
    fn adaptation_boosts_and_caps() {
        let mut table = TrigramTable::from_corpus(&[vec![1, 2, 3, 1, 2, 4]], 2, None).unwrap();
        for _ in 0..200 {
            table.adapt(&[1, 2, 4]).unwrap();
        }
        let (tokens, weights) = table.lookup(1, 2);
        assert_eq!(tokens[0], 4);
        assert_eq!(weights[0], ADAPT_CAP);
        table.adapt(&[7, 8, 9]).unwrap();
        assert_eq!(table.lookup(7, 8), (&[9u32][..], &[ADAPT_STEP][..]));
        let bytes = table.to_bytes();
        assert_eq!(TrigramTable::from_bytes(&bytes).unwrap(), table);
    }
}
