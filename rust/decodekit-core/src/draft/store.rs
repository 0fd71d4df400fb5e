//! A cross-request n-gram store (in the spirit of SuffixDecoding's global tree and SGLang's n-gram
//! cache): finished outputs are fed in, and for every context of 1..=max_n tokens the store counts which
//! token came next. Proposals grow a tree best-first by path probability, each node predicted from the
//! longest stored context ending at it.
//!
//! Memory is bounded by `capacity`, the number of `(context, next token)` entries. Eviction rule: when an
//! `add` leaves more entries than that, every count is halved (rounding down) and entries whose count
//! reaches zero are dropped, repeatedly until the store fits. Counts therefore decay geometrically with
//! each eviction round, so recent and frequent continuations survive.

use std::collections::BinaryHeap;
use std::sync::RwLock;

use rustc_hash::FxHashMap;

use crate::error::{CoreError, Result};
use crate::invalid;
use crate::persist::{self, Reader, Writer};
use crate::tree::DraftTree;

/// The longest context a store keeps.
pub const MAX_CONTEXT: usize = 8;
const MAGIC: &[u8; 8] = b"DKNGRAM\0";
const VERSION: u32 = 1;

type Key = [u32; MAX_CONTEXT];

fn key(context: &[u32]) -> Key {
    let mut k = [u32::MAX; MAX_CONTEXT];
    k[..context.len()].copy_from_slice(context);
    k
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Tables {
    /// context -> (next token -> count)
    next: FxHashMap<Key, FxHashMap<u32, u32>>,
    entries: usize,
}

/// A thread-safe n-gram continuation store shared across requests.
#[derive(Debug)]
pub struct NGramStore {
    max_n: usize,
    capacity: usize,
    tables: RwLock<Tables>,
}

fn poisoned() -> CoreError {
    CoreError::Internal("the n-gram store lock was poisoned by an earlier panic".into())
}

impl NGramStore {
    /// An empty store of contexts up to `max_n` tokens holding at most `capacity` entries.
    pub fn new(max_n: usize, capacity: usize) -> Result<Self> {
        if max_n == 0 || max_n > MAX_CONTEXT {
            return invalid!("max_n must be in 1..={MAX_CONTEXT}, got {max_n}");
        }
        if capacity == 0 {
            return invalid!("capacity_tokens must be >= 1");
        }
        Ok(Self {
            max_n,
            capacity,
            tables: RwLock::new(Tables::default()),
        })
    }

    /// The longest context kept.
    #[must_use]
    pub fn max_n(&self) -> usize {
        self.max_n
    }

    /// The entry budget.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many `(context, next token)` entries are stored.
    pub fn len(&self) -> Result<usize> {
        Ok(self.tables.read().map_err(|_| poisoned())?.entries)
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Count every continuation of `tokens` (a finished output, or any text) and evict if over budget.
    pub fn add(&self, tokens: &[i32]) -> Result<()> {
        super::check_tokens(tokens, None, "tokens")?;
        let tokens: Vec<u32> = tokens.iter().map(|&t| t as u32).collect();
        let mut t = self.tables.write().map_err(|_| poisoned())?;
        let Tables { next, entries } = &mut *t;
        for i in 1..tokens.len() {
            for n in 1..=self.max_n.min(i) {
                let count = next
                    .entry(key(&tokens[i - n..i]))
                    .or_default()
                    .entry(tokens[i])
                    .or_insert(0);
                *entries += usize::from(*count == 0);
                *count = count.saturating_add(1);
            }
        }
        while t.entries > self.capacity {
            let mut entries = 0;
            t.next.retain(|_, counts| {
                counts.retain(|_, c| {
                    *c /= 2;
                    *c > 0
                });
                entries += counts.len();
                !counts.is_empty()
            });
            t.entries = entries;
        }
        Ok(())
    }

    /// Grow a draft tree of at most `max_nodes` draft nodes (and depth at most `max_depth`) after
    /// `context` (its last token is the root): best-first by path probability, where each node's children
    /// come from the longest stored context (up to `max_n` tokens) ending at that node.
    pub fn propose(&self, context: &[i32], max_nodes: usize, max_depth: usize) -> Result<DraftTree> {
        super::check_tokens(context, None, "context")?;
        let Some(&root) = context.last() else {
            return invalid!("context must hold at least one token (the root)");
        };
        if max_nodes == 0 || max_depth == 0 {
            return invalid!("max_nodes and max_depth must be >= 1");
        }
        let t = self.tables.read().map_err(|_| poisoned())?;
        let tail: Vec<u32> = context[context.len().saturating_sub(self.max_n)..]
            .iter()
            .map(|&x| x as u32)
            .collect();
        // Candidates: (path probability, push order, parent node, token, depth).
        let mut heap: BinaryHeap<(Ordered, std::cmp::Reverse<usize>, usize, u32, usize)> = BinaryHeap::new();
        let mut pushed = 0usize;
        let mut tokens = vec![root];
        let mut parents = vec![-1i32];
        let mut paths: Vec<Vec<u32>> = vec![Vec::new()];
        let mut expand = |heap: &mut BinaryHeap<_>, node: usize, prob: f64, path: &[u32], depth: usize| {
            if depth >= max_depth {
                return;
            }
            let mut ctx = tail.clone();
            ctx.extend_from_slice(path);
            let ctx = &ctx[ctx.len().saturating_sub(self.max_n)..];
            for n in (1..=ctx.len()).rev() {
                if let Some(counts) = t.next.get(&key(&ctx[ctx.len() - n..])) {
                    let total: u64 = counts.values().map(|&c| u64::from(c)).sum();
                    let mut sorted: Vec<(u32, u32)> = counts.iter().map(|(&tok, &c)| (tok, c)).collect();
                    sorted.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                    for (tok, c) in sorted.into_iter().take(max_nodes) {
                        let p = prob * f64::from(c) / total as f64;
                        heap.push((Ordered(p), std::cmp::Reverse(pushed), node, tok, depth + 1));
                        pushed += 1;
                    }
                    return;
                }
            }
        };
        expand(&mut heap, 0, 1.0, &[], 0);
        while tokens.len() <= max_nodes {
            let Some((Ordered(p), _, parent, tok, d)) = heap.pop() else {
                break;
            };
            let node = tokens.len();
            tokens.push(tok as i32);
            parents.push(parent as i32);
            let mut path = paths[parent].clone();
            path.push(tok);
            expand(&mut heap, node, p, &path, d);
            paths.push(path);
        }
        // Numbered breadth-first, best first within a depth.
        DraftTree::from_topological(&tokens, &parents)
    }

    /// Save: the envelope of [`crate::persist`] around a canonical (sorted) listing of every entry, so
    /// equal stores give equal bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let t = self.tables.read().map_err(|_| poisoned())?;
        let mut w = Writer::default();
        w.u32(self.max_n as u32);
        w.u64(self.capacity as u64);
        let mut contexts: Vec<(&Key, &FxHashMap<u32, u32>)> = t.next.iter().collect();
        contexts.sort_unstable_by_key(|(k, _)| **k);
        w.u64(contexts.len() as u64);
        for (k, counts) in contexts {
            let len = k.iter().position(|&x| x == u32::MAX).unwrap_or(MAX_CONTEXT);
            w.u32(len as u32);
            for &x in &k[..len] {
                w.u32(x);
            }
            let mut sorted: Vec<(u32, u32)> = counts.iter().map(|(&a, &b)| (a, b)).collect();
            sorted.sort_unstable();
            w.u64(sorted.len() as u64);
            for (tok, c) in sorted {
                w.u32(tok);
                w.u32(c);
            }
        }
        Ok(persist::seal(MAGIC, VERSION, &w.bytes))
    }

    /// Load bytes written by [`Self::to_bytes`]; anything damaged raises `CorruptState`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let what = "NGramStore";
        let payload = persist::open(bytes, MAGIC, VERSION, what)?;
        let mut r = Reader::new(payload, what);
        let max_n = r.u32()? as usize;
        let capacity = r.u64()?;
        let store = Self::new(
            max_n,
            usize::try_from(capacity).map_err(|_| r.corrupt("capacity out of range"))?,
        )
        .map_err(|_| r.corrupt("bad settings"))?;
        let mut tables = Tables::default();
        for _ in 0..r.count(12)? {
            let len = r.u32()? as usize;
            if len == 0 || len > max_n {
                return Err(r.corrupt("a context length is out of range"));
            }
            let mut ctx = Vec::with_capacity(len);
            for _ in 0..len {
                ctx.push(r.u32()?);
            }
            if ctx.iter().any(|&x| x > i32::MAX as u32) {
                return Err(r.corrupt("a token id is out of range"));
            }
            let mut counts = FxHashMap::default();
            for _ in 0..r.count(8)? {
                let tok = r.u32()?;
                let c = r.u32()?;
                if tok > i32::MAX as u32 || c == 0 || counts.insert(tok, c).is_some() {
                    return Err(r.corrupt("a continuation entry is invalid"));
                }
            }
            if counts.is_empty() {
                return Err(r.corrupt("a context has no continuations"));
            }
            tables.entries += counts.len();
            if tables.next.insert(key(&ctx), counts).is_some() {
                return Err(r.corrupt("a context appears twice"));
            }
        }
        r.finish()?;
        *store.tables.write().map_err(|_| poisoned())? = tables;
        Ok(store)
    }
}

/// An `f64` with a total order, for the proposal heap.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ordered(f64);

impl Eq for Ordered {}

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_proposes_the_most_frequent_continuation() {
        let store = NGramStore::new(2, 1000).unwrap();
        store.add(&[1, 2, 3, 1, 2, 3, 1, 2, 4]).unwrap();
        let tree = store.propose(&[9, 1, 2], 3, 3).unwrap();
        // After (1, 2): 3 twice, 4 once -> 3 first; then after (2, 3): 1 twice.
        assert_eq!(tree.tokens()[1], 3);
        let bytes = store.to_bytes().unwrap();
        let back = NGramStore::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes().unwrap(), bytes);
        assert_eq!(back.propose(&[9, 1, 2], 3, 3).unwrap(), tree);
    }

    #[test]
    fn eviction_keeps_the_store_within_capacity() {
        let store = NGramStore::new(3, 50).unwrap();
        let stream: Vec<i32> = (0..2000).map(|i: i32| i * 7919 % 101).collect();
        store.add(&stream).unwrap();
        assert!(store.len().unwrap() <= 50);
    }
}
