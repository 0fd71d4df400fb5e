//! Token Recycling (Luo et al., "Turning Trash into Treasure: Accelerating Inference of Large Language
//! Models with Token Recycling"): every candidate the target model scores is recycled into a `vocab x k`
//! matrix of likely successors, and each step's draft is a breadth-first fill of a static tree template
//! from that matrix.
//!
//! Matrix semantics: row `t` holds the top-k next tokens most recently seen after `t`, best first, `-1`
//! where nothing is known yet. An update writes rows in order, so when a token appears twice in one
//! update its later row wins. A template node with parent `p` and rank `r` takes `matrix[token(p), r]`;
//! a node whose slot is `-1` is dropped with its whole subtree.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::error::Result;
use crate::invalid;
use crate::persist::{self, Reader, Writer};
use crate::tree::{DraftTree, TreeTemplate};

/// Templates deeper than this are refused (drafts that deep are never accepted in practice, and the
/// limit keeps proposals cheap).
pub const MAX_TEMPLATE_DEPTH: usize = 64;
const MAGIC: &[u8; 8] = b"DKRECYC\0";
const VERSION: u32 = 1;

/// Figure 5 of the Token Recycling paper, layer by layer: how many children each node of a layer has
/// (breadth-first, left to right); a node's children take candidates `0..count` of its row. Levels 1-6
/// hold 8, 21, 25, 15, 8 and 3 nodes (80 draft nodes plus the root).
const TOKEN_RECYCLING_CHILD_COUNTS: [&[u8]; 6] = [
    &[8],
    &[8, 4, 3, 2, 1, 1, 1, 1],
    &[8, 3, 2, 1, 1, 1, 1, 1, 2, 1, 0, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0],
    &[
        5, 2, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0,
    ],
    &[3, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0],
    &[2, 0, 0, 1, 0, 0, 0, 0],
];

/// The static tree of the Token Recycling paper (81 nodes including the root, depth 6).
#[must_use]
pub fn token_recycling_template() -> TreeTemplate {
    let mut parents = vec![-1];
    let mut ranks = vec![0];
    let mut frontier = vec![0i32];
    for counts in TOKEN_RECYCLING_CHILD_COUNTS {
        let mut next = Vec::new();
        for (&parent, &count) in frontier.iter().zip(counts) {
            for rank in 0..i32::from(count) {
                next.push(parents.len() as i32);
                parents.push(parent);
                ranks.push(rank);
            }
        }
        frontier = next;
    }
    TreeTemplate::new(parents, ranks).expect("the paper's template is a valid tree")
}

/// A token-recycling adjacency matrix with its draft template.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecycler {
    vocab_size: usize,
    k: usize,
    template: TreeTemplate,
    matrix: Vec<i32>,
}

impl TokenRecycler {
    /// An empty matrix (every slot `-1`) for `vocab_size` tokens and `k` successors per token.
    pub fn new(vocab_size: usize, k: usize, template: TreeTemplate) -> Result<Self> {
        if vocab_size == 0 || vocab_size > i32::MAX as usize {
            return invalid!("vocab_size must be in 1..=2**31-1, got {vocab_size}");
        }
        if k == 0 || k > 1024 {
            return invalid!("k must be in 1..=1024, got {k}");
        }
        if template.num_candidates() > k {
            return invalid!(
                "the template uses candidate ranks up to {}, but each matrix row holds only k = {k}",
                template.num_candidates() - 1
            );
        }
        let depth = template.depth().iter().copied().max().unwrap_or(0) as usize;
        if depth > MAX_TEMPLATE_DEPTH {
            return invalid!(
                "the template is {depth} deep; templates may be at most {MAX_TEMPLATE_DEPTH} deep"
            );
        }
        let cells = vocab_size
            .checked_mul(k)
            .ok_or_else(|| crate::error::CoreError::ResourceLimit("vocab_size * k overflows".into()))?;
        Ok(Self {
            vocab_size,
            k,
            template,
            matrix: vec![-1; cells],
        })
    }

    /// Tokens per row.
    #[must_use]
    pub fn k(&self) -> usize {
        self.k
    }

    /// Rows.
    #[must_use]
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The draft template.
    #[must_use]
    pub fn template(&self) -> &TreeTemplate {
        &self.template
    }

    /// The matrix, row-major `[vocab_size, k]`.
    #[must_use]
    pub fn matrix(&self) -> &[i32] {
        &self.matrix
    }

    fn check_ids(&self, ids: &[i32], name: &str, allow_missing: bool) -> Result<()> {
        let v = self.vocab_size as i32;
        if let Some((i, &t)) = ids
            .iter()
            .enumerate()
            .find(|(_, &t)| !((0..v).contains(&t) || (allow_missing && t == -1)))
        {
            return invalid!("{name}[{i}] = {t} is outside [0, vocab_size = {v})");
        }
        Ok(())
    }

    /// Recycle the top-k successors the model just computed: row `tokens[i]` becomes `topk_ids[i]`
    /// (`[n, k]` row-major, best first; `-1` clears a slot). Later rows win when a token repeats. Nothing
    /// is written unless every id is valid.
    pub fn update(&mut self, tokens: &[i32], topk_ids: &[i32]) -> Result<()> {
        if topk_ids.len() != tokens.len() * self.k {
            return invalid!(
                "topk_ids must have shape [len(tokens), k] = [{}, {}], got {} values",
                tokens.len(),
                self.k,
                topk_ids.len()
            );
        }
        self.check_ids(tokens, "tokens", false)?;
        self.check_ids(topk_ids, "topk_ids", true)?;
        for (&t, row) in tokens.iter().zip(topk_ids.chunks_exact(self.k)) {
            let start = t as usize * self.k;
            self.matrix[start..start + self.k].copy_from_slice(row);
        }
        Ok(())
    }

    /// The breadth-first fill of the template from the matrix, rooted at `root_token`; nodes whose slot is
    /// `-1` are dropped with their subtrees.
    pub fn propose(&self, root_token: i32) -> Result<DraftTree> {
        self.check_ids(&[root_token], "root_token", false)?;
        let parents = self.template.parents();
        let ranks = self.template.ranks();
        let n = parents.len();
        // new_index[i]: position of template node i in the draft, or -1 when dropped.
        let mut new_index = vec![-1i32; n];
        let mut node_token = vec![-1i32; n];
        let mut tokens = Vec::with_capacity(n);
        let mut tree_parents = Vec::with_capacity(n);
        new_index[0] = 0;
        node_token[0] = root_token;
        tokens.push(root_token);
        tree_parents.push(-1);
        for i in 1..n {
            let p = parents[i] as usize;
            if new_index[p] < 0 {
                continue;
            }
            let t = self.matrix[node_token[p] as usize * self.k + ranks[i] as usize];
            if t < 0 {
                continue;
            }
            new_index[i] = tokens.len() as i32;
            node_token[i] = t;
            tokens.push(t);
            tree_parents.push(new_index[p]);
        }
        DraftTree::new(tokens, tree_parents)
    }

    /// Fill rows from the bigram successor counts of a corpus (most frequent first, ties to the smaller
    /// id), so the first drafts are useful before any update. Rows of tokens never followed by anything
    /// are left as they are.
    ///
    /// With `overwrite == false` only rows that are still empty are filled, so rows learned from the
    /// model are kept (warm-starting from each new prompt).
    pub fn warm_start(&mut self, corpus: &[Vec<i32>], overwrite: bool) -> Result<()> {
        for (i, seq) in corpus.iter().enumerate() {
            self.check_ids(seq, &format!("token_arrays[{i}]"), false)?;
        }
        let mut counts: FxHashMap<i32, FxHashMap<i32, u32>> = FxHashMap::default();
        for seq in corpus {
            for w in seq.windows(2) {
                *counts.entry(w[0]).or_default().entry(w[1]).or_insert(0) += 1;
            }
        }
        let ordered: BTreeMap<i32, FxHashMap<i32, u32>> = counts.into_iter().collect();
        for (t, next) in ordered {
            let mut ranked: Vec<(i32, u32)> = next.into_iter().collect();
            ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let start = t as usize * self.k;
            if !overwrite && self.matrix[start] >= 0 {
                continue;
            }
            for slot in 0..self.k {
                self.matrix[start + slot] = ranked.get(slot).map_or(-1, |&(tok, _)| tok);
            }
        }
        Ok(())
    }

    /// Save (envelope of [`crate::persist`]): sizes, template, matrix.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.vocab_size as u64);
        w.u32(self.k as u32);
        w.u64(self.template.num_nodes() as u64);
        for (&p, &r) in self.template.parents().iter().zip(self.template.ranks()) {
            w.u32(p as u32);
            w.u32(r as u32);
        }
        for &x in &self.matrix {
            w.u32(x as u32);
        }
        persist::seal(MAGIC, VERSION, &w.bytes)
    }

    /// Load bytes from [`Self::to_bytes`]; anything damaged raises `CorruptState`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let what = "TokenRecycler";
        let mut r = Reader::new(persist::open(bytes, MAGIC, VERSION, what)?, what);
        let vocab_size = usize::try_from(r.u64()?).map_err(|_| r.corrupt("vocab_size out of range"))?;
        let k = r.u32()? as usize;
        let nodes = r.count(8)?;
        let mut parents = Vec::with_capacity(nodes);
        let mut ranks = Vec::with_capacity(nodes);
        for _ in 0..nodes {
            parents.push(r.u32()? as i32);
            ranks.push(r.u32()? as i32);
        }
        let template = TreeTemplate::new(parents, ranks).map_err(|_| r.corrupt("the template is invalid"))?;
        // The matrix must be present in full before it is allocated, so crafted sizes cannot exhaust memory.
        if vocab_size.checked_mul(k).and_then(|c| c.checked_mul(4)) != Some(r.remaining()) {
            return Err(r.corrupt("the matrix size does not match the bytes present"));
        }
        let mut recycler = Self::new(vocab_size, k, template).map_err(|_| r.corrupt("bad sizes"))?;
        for cell in &mut recycler.matrix {
            let x = r.u32()? as i32;
            if x < -1 || x >= vocab_size as i32 {
                return Err(r.corrupt("a matrix entry is out of range"));
            }
            *cell = x;
        }
        r.finish()?;
        Ok(recycler)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_template_level_counts() {
        let t = token_recycling_template();
        assert_eq!(t.num_nodes(), 81);
        let mut levels = [0usize; 7];
        for &d in t.depth() {
            levels[d as usize] += 1;
        }
        assert_eq!(levels, [1, 8, 21, 25, 15, 8, 3]);
        assert_eq!(t.num_candidates(), 8);
    }

    #[test]
    fn empty_matrix_proposes_the_root_and_updates_fill_it() {
        let mut r = TokenRecycler::new(10, 2, TreeTemplate::balanced(7, 2, 2).unwrap()).unwrap();
        assert_eq!(r.propose(3).unwrap().num_nodes(), 1);
        r.update(&[3, 3], &[1, 2, 4, 5]).unwrap();
        assert_eq!(&r.matrix()[6..8], &[4, 5], "the later row wins");
        let tree = r.propose(3).unwrap();
        assert_eq!(tree.tokens(), &[3, 4, 5]);
        let back = TokenRecycler::from_bytes(&r.to_bytes()).unwrap();
        assert_eq!(back, r);
    }
}
