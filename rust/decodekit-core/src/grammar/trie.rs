//! The token trie: every normal token's bytes in one prefix tree, stored as flat arrays in depth-first
//! order, so that walking it against an automaton visits a shared prefix once and skips a whole subtree
//! (every token that starts with a dead prefix) with one jump.
//!
//! Node 0 is the root (the empty prefix). Node `i` holds one byte; its subtree is `i..subtree_end[i]`
//! and its children follow it directly, so a depth-first walk is a forward scan that jumps to
//! `subtree_end[i]` to prune. The tokens spelled by the path to node `i` are
//! `token_ids[token_offsets[i]..token_offsets[i + 1]]` (several when two ids share bytes).

/// A prefix tree over the bytes of a vocabulary's normal tokens.
#[derive(Debug, Clone)]
pub struct TokenTrie {
    byte: Vec<u8>,
    depth: Vec<u32>,
    subtree_end: Vec<u32>,
    token_offsets: Vec<u32>,
    token_ids: Vec<u32>,
    max_depth: usize,
}

impl TokenTrie {
    /// Build the trie over ids `0..n`; `bytes_of(id)` is `None` for ids left out (special, unused) and
    /// empty tokens are left out too, since they cannot advance any automaton.
    pub fn build<'a>(n: usize, bytes_of: impl Fn(usize) -> Option<&'a [u8]>) -> Self {
        let mut ids: Vec<u32> = (0..n as u32)
            .filter(|&id| bytes_of(id as usize).is_some_and(|b| !b.is_empty()))
            .collect();
        // Sorting by bytes puts every prefix before its extensions, so creating nodes in this order is a
        // depth-first pre-order; the id breaks ties so equal tokens keep a stable order.
        ids.sort_unstable_by(|&a, &b| {
            bytes_of(a as usize)
                .unwrap()
                .cmp(bytes_of(b as usize).unwrap())
                .then(a.cmp(&b))
        });
        let mut byte = vec![0u8];
        let mut depth = vec![0u32];
        let mut subtree_end = vec![0u32];
        let mut token_offsets = vec![0u32];
        let mut path: Vec<u32> = vec![0]; // path[d] = the open node at depth d
        let mut previous: &[u8] = &[];
        let mut max_depth = 0;
        for &id in &ids {
            let token = bytes_of(id as usize).unwrap();
            let common = token.iter().zip(previous).take_while(|(a, b)| a == b).count();
            // Close the nodes of the previous token below the shared prefix.
            while path.len() > common + 1 {
                let node = path.pop().unwrap() as usize;
                subtree_end[node] = byte.len() as u32;
            }
            for (d, &b) in token.iter().enumerate().skip(common) {
                let node = byte.len() as u32;
                byte.push(b);
                depth.push(d as u32 + 1);
                subtree_end.push(0);
                // A new node has no tokens yet; its offset range starts where the previous node's ends.
                token_offsets.push(*token_offsets.last().unwrap());
                path.push(node);
            }
            *token_offsets.last_mut().unwrap() += 1;
            max_depth = max_depth.max(token.len());
            previous = token;
        }
        while let Some(node) = path.pop() {
            subtree_end[node as usize] = byte.len() as u32;
        }
        // token_offsets[i] so far counts the tokens up to and including node i; shift to CSR form.
        token_offsets.insert(0, 0);
        TokenTrie {
            byte,
            depth,
            subtree_end,
            token_offsets,
            token_ids: ids,
            max_depth,
        }
    }

    /// Number of nodes, the root included.
    #[must_use]
    pub fn num_nodes(&self) -> usize {
        self.byte.len()
    }

    /// The longest token, in bytes.
    #[must_use]
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// The token ids whose bytes are exactly the path to `node`.
    #[inline]
    #[must_use]
    pub fn tokens_at(&self, node: usize) -> &[u32] {
        &self.token_ids[self.token_offsets[node] as usize..self.token_offsets[node + 1] as usize]
    }

    /// The child of `node` labelled `b`, if any.
    #[must_use]
    pub fn child(&self, node: usize, b: u8) -> Option<usize> {
        let end = self.subtree_end[node] as usize;
        let mut i = node + 1;
        while i < end {
            if self.byte[i] == b {
                return Some(i);
            }
            i = self.subtree_end[i] as usize;
        }
        None
    }

    /// Depth-first walk of the subtree below `root` (not `root` itself), carrying an automaton state.
    ///
    /// `step(state, byte)` advances the state, returning `None` at a dead byte, which prunes the node's
    /// whole subtree. `visit(tokens, state)` is called at every live node that ends at least one token,
    /// with the state reached after its last byte. Returns the number of nodes stepped.
    #[inline]
    pub fn walk<S: Copy>(
        &self,
        root: usize,
        root_state: S,
        step: impl FnMut(S, u8) -> Option<S>,
        visit: impl FnMut(&[u32], S),
    ) -> usize {
        self.walk_from(root, root_state, step, visit, |_, _| {})
    }

    /// Like [`walk`](Self::walk) from the root, and also reports each pruned node: `dead(node, path)` is
    /// called where `step` refused node `node`'s byte, with `path[d]` the state after the first `d` bytes
    /// of the node's prefix (`path[0]` is `root_state`; the node's own byte is not in it).
    pub fn walk_reporting_dead<S: Copy>(
        &self,
        root_state: S,
        step: impl FnMut(S, u8) -> Option<S>,
        visit: impl FnMut(&[u32], S),
        dead: impl FnMut(usize, &[S]),
    ) {
        self.walk_from(0, root_state, step, visit, dead);
    }

    #[inline]
    fn walk_from<S: Copy>(
        &self,
        root: usize,
        root_state: S,
        mut step: impl FnMut(S, u8) -> Option<S>,
        mut visit: impl FnMut(&[u32], S),
        mut dead: impl FnMut(usize, &[S]),
    ) -> usize {
        let base = self.depth[root] as usize;
        let end = self.subtree_end[root] as usize;
        // states[d] is the state after the node at relative depth d on the current path.
        let mut states = vec![root_state; self.max_depth + 1 - base];
        let mut i = root + 1;
        let mut stepped = 0;
        while i < end {
            let d = self.depth[i] as usize - base;
            stepped += 1;
            match step(states[d - 1], self.byte[i]) {
                None => {
                    dead(i, &states[..d]);
                    i = self.subtree_end[i] as usize;
                }
                Some(s) => {
                    states[d] = s;
                    let (lo, hi) = (self.token_offsets[i] as usize, self.token_offsets[i + 1] as usize);
                    if lo != hi {
                        visit(&self.token_ids[lo..hi], s);
                    }
                    i += 1;
                }
            }
        }
        stepped
    }
}

impl TokenTrie {
    /// How many bytes node `node`'s prefix has.
    #[must_use]
    pub fn depth(&self, node: usize) -> usize {
        self.depth[node] as usize
    }

    /// Every token whose bytes start with node `node`'s prefix (the node's own tokens included).
    #[must_use]
    pub fn subtree_tokens(&self, node: usize) -> &[u32] {
        let lo = self.token_offsets[node] as usize;
        let hi = self.token_offsets[self.subtree_end[node] as usize] as usize;
        &self.token_ids[lo..hi]
    }
}

impl TokenTrie {
    /// Depth-first walk of the subtree below `root` for a matcher that keeps its own stack of states
    /// (a parser with rollback instead of a copyable automaton state).
    ///
    /// `step(depth, byte)` is called for every node reached, where `depth` is how many bytes below `root`
    /// its parent is: the matcher first returns to that depth, then tries `byte`, and returns whether it
    /// is still alive (a dead byte prunes the node's subtree). `visit(tokens)` is called at every live node
    /// that ends at least one token. Returns the number of nodes stepped.
    pub fn walk_nested(
        &self,
        root: usize,
        mut step: impl FnMut(usize, u8) -> bool,
        mut visit: impl FnMut(&[u32]),
    ) -> usize {
        let base = self.depth[root] as usize;
        let end = self.subtree_end[root] as usize;
        let mut i = root + 1;
        let mut stepped = 0;
        while i < end {
            stepped += 1;
            if step(self.depth[i] as usize - base - 1, self.byte[i]) {
                let (lo, hi) = (self.token_offsets[i] as usize, self.token_offsets[i + 1] as usize);
                if lo != hi {
                    visit(&self.token_ids[lo..hi]);
                }
                i += 1;
            } else {
                i = self.subtree_end[i] as usize;
            }
        }
        stepped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie(tokens: &[&[u8]]) -> TokenTrie {
        TokenTrie::build(tokens.len(), |i| Some(tokens[i]))
    }

    #[test]
    fn walk_visits_every_token_once() {
        let tokens: &[&[u8]] = &[b"ab", b"a", b"abc", b"b", b"", b"ab", b"ba"];
        let t = trie(tokens);
        let mut seen = Vec::new();
        t.walk(
            0,
            0usize,
            |len, _| Some(len + 1),
            |ids, len| seen.extend(ids.iter().map(|&i| (i, len))),
        );
        seen.sort_unstable();
        assert_eq!(seen, vec![(0, 2), (1, 1), (2, 3), (3, 1), (5, 2), (6, 2)]);
        // 1 root + a, ab, abc, b, ba
        assert_eq!(t.num_nodes(), 6);
        assert_eq!(t.max_depth(), 3);
    }

    #[test]
    fn pruning_skips_subtrees() {
        let t = trie(&[b"ab", b"abc", b"b", b"bc"]);
        let mut seen = Vec::new();
        let stepped = t.walk(
            0,
            (),
            |(), b| (b != b'a').then_some(()),
            |ids, ()| seen.extend_from_slice(ids),
        );
        seen.sort_unstable();
        assert_eq!(seen, vec![2, 3]);
        assert_eq!(stepped, 3); // a (dead), b, bc
        let a = t.child(0, b'a').unwrap();
        let ab = t.child(a, b'b').unwrap();
        assert_eq!(t.tokens_at(ab), &[0]);
        let mut below = Vec::new();
        t.walk(ab, (), |(), _| Some(()), |ids, ()| below.extend_from_slice(ids));
        assert_eq!(below, vec![1]);
        assert_eq!(t.child(0, b'z'), None);
    }
}
