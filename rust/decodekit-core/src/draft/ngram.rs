//! Prompt lookup: propose what followed an earlier occurrence of the context's suffix.
//!
//! [`PromptLookup`] keeps, for every n in `min_n..=max_n`, a hash map from each n-gram of the sequence to
//! the (increasing) list of positions where it starts. Appending a token adds one entry per n and
//! removing one pops one entry per n, so `extend` and `rollback` cost O(max_n) per token whatever the
//! context length, and `propose` costs O(max_n + max_depth) in chain mode instead of a scan of the whole
//! context.
//!
//! Matching semantics (the same as vLLM's n-gram proposer): the match length `L` is the largest `n` in
//! `min_n..=max_n` such that the last `n` tokens occurred earlier, ending before the last token (an
//! occurrence may overlap the suffix); among those occurrences the *earliest* wins, and the proposal is
//! the up to `max_depth` tokens that followed it (fewer when the context ends first). With
//! [`PromptLookupConfig::latest`] the *most recent* occurrence wins instead, which tracks text that is
//! being repeated right now (a list, a table, a quoted passage) more closely.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::store::NGramStore;

use crate::error::Result;
use crate::invalid;
use crate::tree::DraftTree;

/// The longest n-gram a [`PromptLookup`] can match.
pub const MAX_NGRAM: usize = 8;

/// At most this many of the most recent occurrences are merged into a tree proposal.
pub const MAX_TREE_OCCURRENCES: usize = 64;

type Key = [u32; MAX_NGRAM];

fn key(gram: &[u32]) -> Key {
    let mut k = [u32::MAX; MAX_NGRAM];
    k[..gram.len()].copy_from_slice(gram);
    k
}

/// Settings of a [`PromptLookup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptLookupConfig {
    /// Shortest suffix n-gram worth matching.
    pub min_n: usize,
    /// Longest suffix n-gram tried first (at most [`MAX_NGRAM`]).
    pub max_n: usize,
    /// Longest proposed path.
    pub max_depth: usize,
    /// Most draft nodes (root excluded). Above `max_depth`, continuations of several occurrences are
    /// merged into a tree.
    pub max_nodes: usize,
    /// In chain mode, follow the most recent occurrence of the match instead of the earliest.
    pub latest: bool,
}

impl PromptLookupConfig {
    /// Check the ranges.
    pub fn validate(&self) -> Result<()> {
        if self.min_n == 0 || self.min_n > self.max_n {
            return invalid!(
                "need 1 <= min_n <= max_n, got min_n = {} and max_n = {}",
                self.min_n,
                self.max_n
            );
        }
        if self.max_n > MAX_NGRAM {
            return invalid!("max_n may be at most {MAX_NGRAM}, got {}", self.max_n);
        }
        if self.max_depth == 0 || self.max_nodes == 0 {
            return invalid!(
                "max_depth and max_nodes must be >= 1, got {} and {}",
                self.max_depth,
                self.max_nodes
            );
        }
        Ok(())
    }
}

/// Incremental prompt lookup over one sequence. Not thread-safe for writes (one per sequence).
#[derive(Debug, Clone)]
pub struct PromptLookup {
    config: PromptLookupConfig,
    vocab_size: Option<u32>,
    tokens: Vec<u32>,
    /// `starts[n - min_n]`: n-gram -> increasing start positions.
    starts: Vec<FxHashMap<Key, Vec<u32>>>,
    /// Consulted when the sequence itself has no match.
    fallback: Option<Arc<NGramStore>>,
}

impl PromptLookup {
    /// An empty lookup.
    pub fn new(config: PromptLookupConfig, vocab_size: Option<u32>) -> Result<Self> {
        config.validate()?;
        if vocab_size == Some(0) {
            return invalid!("vocab_size must be >= 1");
        }
        let maps = config.max_n - config.min_n + 1;
        Ok(Self {
            config,
            vocab_size,
            tokens: Vec::new(),
            starts: vec![FxHashMap::default(); maps],
            fallback: None,
        })
    }

    /// Consult `store` (with the sequence's last tokens as context) whenever the sequence has no match.
    pub fn set_fallback(&mut self, store: Option<Arc<NGramStore>>) {
        self.fallback = store;
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> PromptLookupConfig {
        self.config
    }

    /// The tokens seen so far.
    #[must_use]
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Append tokens (prompt or generated). Refuses negative ids and ids outside the vocabulary.
    pub fn extend(&mut self, tokens: &[i32]) -> Result<()> {
        super::check_tokens(tokens, self.vocab_size, "tokens")?;
        if self.tokens.len() + tokens.len() > u32::MAX as usize {
            return invalid!("a PromptLookup holds at most {} tokens", u32::MAX);
        }
        for &t in tokens {
            self.tokens.push(t as u32);
            let end = self.tokens.len();
            for n in self.config.min_n..=self.config.max_n.min(end) {
                let start = end - n;
                self.starts[n - self.config.min_n]
                    .entry(key(&self.tokens[start..end]))
                    .or_default()
                    .push(start as u32);
            }
        }
        Ok(())
    }

    /// Remove the last `count` tokens (for drafts that were appended optimistically and then rejected).
    pub fn rollback(&mut self, count: usize) -> Result<()> {
        if count > self.tokens.len() {
            return invalid!(
                "cannot roll back {count} tokens: only {} were added",
                self.tokens.len()
            );
        }
        for _ in 0..count {
            let end = self.tokens.len();
            for n in self.config.min_n..=self.config.max_n.min(end) {
                let start = end - n;
                let k = key(&self.tokens[start..end]);
                let map = &mut self.starts[n - self.config.min_n];
                if let Some(list) = map.get_mut(&k) {
                    debug_assert_eq!(list.last(), Some(&(start as u32)));
                    list.pop();
                    if list.is_empty() {
                        map.remove(&k);
                    }
                }
            }
            self.tokens.pop();
        }
        Ok(())
    }

    /// Forget every token.
    pub fn reset(&mut self) {
        self.tokens.clear();
        for map in &mut self.starts {
            map.clear();
        }
    }

    /// The length of the longest suffix n-gram that occurred before (the `n` a [`Self::propose`] would
    /// follow now), or 0 when nothing matches (a proposal then comes from the fallback store, if any).
    #[must_use]
    pub fn match_length(&self) -> usize {
        self.longest_match().map_or(0, |(n, _)| n)
    }

    /// The match: `(length, earliest start, all starts)` of the longest suffix n-gram that occurred
    /// before, ending before the last token.
    fn longest_match(&self) -> Option<(usize, &[u32])> {
        let total = self.tokens.len();
        for n in (self.config.min_n..=self.config.max_n).rev() {
            if total < n + 1 {
                continue;
            }
            let Some(list) = self.starts[n - self.config.min_n].get(&key(&self.tokens[total - n..])) else {
                continue;
            };
            // The list ends with the suffix itself; every start s with s + n <= total - 1 is earlier.
            let usable = list.partition_point(|&s| s as usize + n < total);
            if usable > 0 {
                return Some((n, &list[..usable]));
            }
        }
        None
    }

    /// Propose a draft tree rooted at the last token (a root-only tree when nothing matches). Refuses an
    /// empty lookup: the root must be a real token.
    pub fn propose(&self) -> Result<DraftTree> {
        let Some(&last) = self.tokens.last() else {
            return invalid!("the PromptLookup is empty: extend it with the prompt before proposing");
        };
        let root = last as i32;
        let Some((n, starts)) = self.longest_match() else {
            return match &self.fallback {
                Some(store) => {
                    let context: Vec<i32> = self.tokens[self.tokens.len().saturating_sub(store.max_n())..]
                        .iter()
                        .map(|&t| t as i32)
                        .collect();
                    store.propose(&context, self.config.max_nodes, self.config.max_depth)
                }
                None => DraftTree::chain(root, &[]),
            };
        };
        let total = self.tokens.len();
        let continuation = |s: u32| {
            let from = s as usize + n;
            &self.tokens[from..(from + self.config.max_depth).min(total)]
        };
        if self.config.max_nodes <= self.config.max_depth {
            let start = if self.config.latest {
                starts[starts.len() - 1]
            } else {
                starts[0]
            };
            let chain: Vec<i32> = continuation(start)
                .iter()
                .take(self.config.max_nodes)
                .map(|&t| t as i32)
                .collect();
            return DraftTree::chain(root, &chain);
        }
        let recent = &starts[starts.len().saturating_sub(MAX_TREE_OCCURRENCES)..];
        let paths = recent.iter().map(|&s| (continuation(s), s));
        ranked_tree(root, paths, self.config.max_nodes)
    }
}

/// Merge token paths into a trie and keep the `max_nodes` best nodes, best first by how many paths pass
/// through them, then by the latest `recency` among those paths; a node is only kept after its parent.
pub fn ranked_tree<'p>(
    root: i32,
    paths: impl Iterator<Item = (&'p [u32], u32)>,
    max_nodes: usize,
) -> Result<DraftTree> {
    // Trie nodes: (parent, token, count, recency); children found by linear scan (few per node).
    let mut nodes: Vec<(usize, u32, u32, u32)> = vec![(usize::MAX, 0, 0, 0)];
    let mut children: Vec<Vec<usize>> = vec![Vec::new()];
    for (path, recency) in paths {
        let mut at = 0;
        for &token in path {
            let found = children[at].iter().copied().find(|&c| nodes[c].1 == token);
            at = match found {
                Some(c) => c,
                None => {
                    let c = nodes.len();
                    nodes.push((at, token, 0, 0));
                    children.push(Vec::new());
                    children[at].push(c);
                    c
                }
            };
            nodes[at].2 += 1;
            nodes[at].3 = nodes[at].3.max(recency);
        }
    }
    // Best-first selection from the root's children.
    let mut heap = std::collections::BinaryHeap::new();
    for &c in &children[0] {
        heap.push((nodes[c].2, nodes[c].3, std::cmp::Reverse(c)));
    }
    let mut chosen: Vec<usize> = Vec::new();
    let mut new_index = vec![usize::MAX; nodes.len()];
    new_index[0] = 0;
    while chosen.len() < max_nodes {
        let Some((_, _, std::cmp::Reverse(c))) = heap.pop() else {
            break;
        };
        chosen.push(c);
        for &g in &children[c] {
            heap.push((nodes[g].2, nodes[g].3, std::cmp::Reverse(g)));
        }
    }
    // Selection order is topological (a node only after its parent); number breadth-first from it.
    let mut new_index = vec![0i32; nodes.len()];
    let mut tokens = vec![root];
    let mut parents = vec![-1];
    for (i, &c) in chosen.iter().enumerate() {
        new_index[c] = i as i32 + 1;
        tokens.push(nodes[c].1 as i32);
        parents.push(new_index[nodes[c].0]);
    }
    DraftTree::from_topological(&tokens, &parents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(min_n: usize, max_n: usize, depth: usize, nodes: usize) -> PromptLookup {
        PromptLookup::new(
            PromptLookupConfig {
                min_n,
                max_n,
                max_depth: depth,
                max_nodes: nodes,
                latest: false,
            },
            None,
        )
        .unwrap()
    }

    #[test]
    fn latest_follows_the_most_recent_occurrence() {
        let tokens = [1, 2, 7, 1, 2, 8, 1, 2];
        let mut earliest = lookup(1, 2, 1, 1);
        earliest.extend(&tokens).unwrap();
        assert_eq!(earliest.propose().unwrap().tokens(), &[2, 7]);
        assert_eq!(earliest.match_length(), 2);
        let mut latest = PromptLookup::new(
            PromptLookupConfig {
                latest: true,
                ..earliest.config()
            },
            None,
        )
        .unwrap();
        latest.extend(&tokens).unwrap();
        assert_eq!(latest.propose().unwrap().tokens(), &[2, 8]);
        latest.extend(&[9]).unwrap();
        assert_eq!(latest.match_length(), 0);
        assert_eq!(latest.propose().unwrap().tokens(), &[9]);
    }

    #[test]
    fn vllm_docstring_example() {
        // [1,2,3,4,2,3], min_n = 2, max_n = 3, k = 4 -> [4, 2, 3].
        let mut p = lookup(2, 3, 4, 4);
        p.extend(&[1, 2, 3, 4, 2, 3]).unwrap();
        let tree = p.propose().unwrap();
        assert_eq!(tree.tokens(), &[3, 4, 2, 3]);
    }

    #[test]
    fn rollback_restores_the_index() {
        let mut a = lookup(1, 3, 5, 5);
        a.extend(&[5, 6, 7, 5, 6]).unwrap();
        let before = a.propose().unwrap();
        a.extend(&[7, 8, 9]).unwrap();
        a.rollback(3).unwrap();
        assert_eq!(a.propose().unwrap(), before);
        assert!(a.rollback(6).is_err());
    }
}
