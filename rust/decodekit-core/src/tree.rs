//! Draft trees and the buffers a target model needs to verify them in one forward pass.
//!
//! A [`DraftTree`] stores nodes in topological (normally BFS) order: node 0 is the root, the last verified
//! token, and every other node's parent comes before it. From that one parent array come every layout
//! engines use: positions, the dense ancestor mask, the bit-packed mask (TensorRT-LLM), root-to-leaf
//! retrieve indices (Medusa), first-child/next-sibling links (SGLang), the additive mask over
//! `prefix + tree` (HF) and, for ragged batches, FlashInfer's flattened custom mask. A [`TreeTemplate`] is
//! the shape of a tree before tokens are known: each node names the rank of the candidate it takes from
//! its parent's candidate list.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

use crate::error::Result;
use crate::invalid;

/// A tree of draft tokens. Immutable once built; every check happens in [`DraftTree::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftTree {
    tokens: Vec<i32>,
    parents: Vec<i32>,
    depth: Vec<i32>,
    /// Children of each node in node order, as a compressed adjacency list.
    child_offsets: Vec<u32>,
    children: Vec<u32>,
}

impl DraftTree {
    /// Build a tree from node tokens and parent indices. `parents[0]` must be `-1` (the root) and every
    /// other parent must be an earlier node, which also rules out cycles and second roots.
    pub fn new(tokens: Vec<i32>, parents: Vec<i32>) -> Result<Self> {
        if tokens.is_empty() {
            return invalid!("a draft tree needs at least the root node; tokens is empty");
        }
        if tokens.len() != parents.len() {
            return invalid!(
                "tokens ({}) and parents ({}) must have the same length",
                tokens.len(),
                parents.len()
            );
        }
        if let Some((i, &t)) = tokens.iter().enumerate().find(|(_, &t)| t < 0) {
            return invalid!("tokens[{i}] = {t} is not a token id (ids are >= 0)");
        }
        let depth = depths(&parents)?;
        let mut counts = vec![0u32; tokens.len() + 1];
        for &p in &parents[1..] {
            counts[p as usize + 1] += 1;
        }
        for i in 0..tokens.len() {
            counts[i + 1] += counts[i];
        }
        let mut next = counts.clone();
        let mut children = vec![0u32; tokens.len() - 1];
        for (i, &p) in parents.iter().enumerate().skip(1) {
            let slot = &mut next[p as usize];
            children[*slot as usize] = i as u32;
            *slot += 1;
        }
        Ok(Self {
            tokens,
            parents,
            depth,
            child_offsets: counts,
            children,
        })
    }

    /// A chain: the root followed by `tokens`, each the child of the previous one.
    pub fn chain(root_token: i32, tokens: &[i32]) -> Result<Self> {
        let mut all = Vec::with_capacity(tokens.len() + 1);
        all.push(root_token);
        all.extend_from_slice(tokens);
        let parents = (0..all.len() as i32).map(|i| i - 1).collect();
        Self::new(all, parents)
    }

    /// Merge token paths (each a list of tokens after the root) into one tree, sharing common prefixes,
    /// in BFS order (by depth, then by first appearance).
    pub fn from_paths(root_token: i32, paths: &[Vec<i32>]) -> Result<Self> {
        // Map (parent node, token) -> node while walking the paths (creation order is topological), then
        // renumber breadth-first.
        let mut nodes: Vec<(i32, i32)> = vec![(-1, root_token)]; // (parent, token)
        let mut lookup: BTreeMap<(usize, i32), usize> = BTreeMap::new();
        for path in paths {
            let mut at = 0usize;
            for &token in path {
                at = if let Some(&node) = lookup.get(&(at, token)) {
                    node
                } else {
                    let node = nodes.len();
                    nodes.push((at as i32, token));
                    lookup.insert((at, token), node);
                    node
                };
            }
        }
        let tokens: Vec<i32> = nodes.iter().map(|n| n.1).collect();
        let parents: Vec<i32> = nodes.iter().map(|n| n.0).collect();
        Self::from_topological(&tokens, &parents)
    }

    /// Number of nodes, root included.
    #[must_use]
    pub fn num_nodes(&self) -> usize {
        self.tokens.len()
    }

    /// Token of each node.
    #[must_use]
    pub fn tokens(&self) -> &[i32] {
        &self.tokens
    }

    /// Parent of each node (`-1` for the root).
    #[must_use]
    pub fn parents(&self) -> &[i32] {
        &self.parents
    }

    /// Depth of each node (the root has depth 0).
    #[must_use]
    pub fn depth(&self) -> &[i32] {
        &self.depth
    }

    /// The largest depth.
    #[must_use]
    pub fn max_depth(&self) -> usize {
        self.depth.iter().copied().max().unwrap_or(0) as usize
    }

    /// Children of `node`, in node order.
    #[must_use]
    pub fn children(&self, node: usize) -> &[u32] {
        &self.children[self.child_offsets[node] as usize..self.child_offsets[node + 1] as usize]
    }

    /// Nodes without children, in node order.
    #[must_use]
    pub fn leaves(&self) -> Vec<i32> {
        (0..self.num_nodes())
            .filter(|&i| self.children(i).is_empty())
            .map(|i| i as i32)
            .collect()
    }

    /// The path from the root to `node`, both included.
    #[must_use]
    pub fn path_to(&self, node: usize) -> Vec<i32> {
        let mut path = Vec::with_capacity(self.depth[node] as usize + 1);
        let mut at = node as i32;
        while at >= 0 {
            path.push(at);
            at = self.parents[at as usize];
        }
        path.reverse();
        path
    }

    /// Words per row of the packed mask.
    #[must_use]
    pub fn packed_width(&self) -> usize {
        self.num_nodes().div_ceil(32)
    }

    /// `prefix_len + depth` for every node.
    pub fn positions_into(&self, prefix_len: i64, out: &mut [i32]) -> Result<()> {
        check_len(out.len(), self.num_nodes(), "positions")?;
        let base = prefix_position(prefix_len, self.max_depth())?;
        for (o, &d) in out.iter_mut().zip(&self.depth) {
            *o = base + d;
        }
        Ok(())
    }

    /// Dense ancestor mask `[n, n]`, row-major: row `i` may attend `j` iff `j` is `i` or an ancestor.
    pub fn attention_mask_into(&self, out: &mut [bool]) -> Result<()> {
        let n = self.num_nodes();
        check_len(out.len(), n * n, "attention mask")?;
        out.fill(false);
        for i in 0..n {
            // A node's row is its parent's row plus itself (parents come first).
            if i > 0 {
                let p = self.parents[i] as usize;
                out.copy_within(p * n..=p * n + p, i * n);
            }
            out[i * n + i] = true;
        }
        Ok(())
    }

    /// Bit-packed ancestor mask `[n, ceil(n/32)]`: bit `j % 32` of word `j / 32` in row `i` (little-endian
    /// bit order) is set iff row `i` may attend `j`.
    pub fn packed_mask_into(&self, out: &mut [i32]) -> Result<()> {
        let n = self.num_nodes();
        let w = self.packed_width();
        check_len(out.len(), n * w, "packed mask")?;
        out.fill(0);
        for i in 0..n {
            if i > 0 {
                let p = self.parents[i] as usize;
                out.copy_within(p * w..(p + 1) * w, i * w);
            }
            out[i * w + i / 32] |= (1u32 << (i % 32)) as i32;
        }
        Ok(())
    }

    /// Root-to-leaf node paths `[leaves, max_depth + 1]`, one row per leaf in node order, padded with -1.
    pub fn retrieve_indices_into(&self, out: &mut [i32]) -> Result<()> {
        let width = self.max_depth() + 1;
        let leaves = self.leaves();
        check_len(out.len(), leaves.len() * width, "retrieve indices")?;
        out.fill(-1);
        for (row, &leaf) in leaves.iter().enumerate() {
            let mut at = leaf;
            while at >= 0 {
                out[row * width + self.depth[at as usize] as usize] = at;
                at = self.parents[at as usize];
            }
        }
        Ok(())
    }

    /// First child and next sibling of every node (`-1` for none), siblings in node order.
    pub fn first_child_next_sibling_into(
        &self,
        first_child: &mut [i32],
        next_sibling: &mut [i32],
    ) -> Result<()> {
        let n = self.num_nodes();
        check_len(first_child.len(), n, "first_child")?;
        check_len(next_sibling.len(), n, "next_sibling")?;
        first_child.fill(-1);
        next_sibling.fill(-1);
        for (i, first) in first_child.iter_mut().enumerate() {
            let kids = self.children(i);
            if let Some(&head) = kids.first() {
                *first = head as i32;
            }
            for pair in kids.windows(2) {
                next_sibling[pair[0] as usize] = pair[1] as i32;
            }
        }
        Ok(())
    }

    /// The mask over the cached prefix followed by the tree, `[n, prefix_len + n]` row-major, with
    /// `allowed` where row `i` may attend (every prefix column, and `i` and its ancestors among the tree
    /// columns) and `blocked` elsewhere. `bool` gives FlashInfer's custom mask, `0.0 / -inf` the additive
    /// mask HF-style models take.
    pub fn prefix_mask_into<T: Copy>(
        &self,
        prefix_len: usize,
        allowed: T,
        blocked: T,
        out: &mut [T],
    ) -> Result<()> {
        let n = self.num_nodes();
        let width = prefix_len + n;
        check_len(out.len(), n * width, "prefix mask")?;
        for i in 0..n {
            let row = &mut out[i * width..(i + 1) * width];
            if i > 0 {
                // Same as the parent's row, plus the node itself (parents come first).
                let p = self.parents[i] as usize;
                let (before, current) = out.split_at_mut(i * width);
                current[..width].copy_from_slice(&before[p * width..(p + 1) * width]);
            } else {
                row[..prefix_len].fill(allowed);
                row[prefix_len..].fill(blocked);
            }
            out[i * width + prefix_len + i] = allowed;
        }
        Ok(())
    }
}

/// Check a parent array (one root at node 0, every other parent an earlier node) and return the depth of
/// every node. Shared by [`DraftTree`] and [`TreeTemplate`].
fn depths(parents: &[i32]) -> Result<Vec<i32>> {
    if parents.is_empty() {
        return invalid!("a tree needs at least the root node; parents is empty");
    }
    if parents.len() > i32::MAX as usize {
        return invalid!("a tree may hold at most {} nodes", i32::MAX);
    }
    if parents[0] != -1 {
        return invalid!("parents[0] must be -1 (node 0 is the root), got {}", parents[0]);
    }
    let mut depth = vec![0i32; parents.len()];
    for (i, &p) in parents.iter().enumerate().skip(1) {
        if p == -1 {
            return invalid!("node {i} has parent -1: a tree has one root, node 0");
        }
        if p < 0 || p as usize >= i {
            return invalid!(
                "node {i} has parent {p}; a parent must be an earlier node (0 <= parent < {i}), \
                 which also rules out cycles"
            );
        }
        depth[i] = depth[p as usize] + 1;
    }
    Ok(depth)
}

/// Renumber a tree given in any topological order (every parent before its children, node 0 the root)
/// breadth-first: by depth, keeping the given order within a depth. Returns the new parent array and, for
/// each new position, the old index (to carry tokens, ranks or any other payload along).
pub fn breadth_first(parents: &[i32]) -> Result<(Vec<i32>, Vec<usize>)> {
    let depth = depths(parents)?;
    let mut order: Vec<usize> = (0..parents.len()).collect();
    order.sort_by_key(|&i| (depth[i], i));
    let mut new_index = vec![0i32; parents.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new as i32;
    }
    let renumbered = order
        .iter()
        .map(|&old| {
            if old == 0 {
                -1
            } else {
                new_index[parents[old] as usize]
            }
        })
        .collect();
    Ok((renumbered, order))
}

impl DraftTree {
    /// A tree from nodes in any topological order (see [`breadth_first`]), numbered breadth-first.
    pub fn from_topological(tokens: &[i32], parents: &[i32]) -> Result<Self> {
        if tokens.len() != parents.len() {
            return invalid!(
                "tokens ({}) and parents ({}) must have the same length",
                tokens.len(),
                parents.len()
            );
        }
        let (parents, order) = breadth_first(parents)?;
        Self::new(order.iter().map(|&i| tokens[i]).collect(), parents)
    }
}

fn check_len(got: usize, want: usize, what: &str) -> Result<()> {
    if got != want {
        return invalid!("out for the {what} must hold {want} values, got {got}");
    }
    Ok(())
}

fn prefix_position(prefix_len: i64, max_depth: usize) -> Result<i32> {
    if prefix_len < 0 || prefix_len + max_depth as i64 > i64::from(i32::MAX) {
        return invalid!("prefix_len must be in [0, 2**31 - 1 - max_depth], got {prefix_len}");
    }
    Ok(prefix_len as i32)
}

/// A node that could join a template in [`TreeTemplate::from_acceptance`], keyed by path probability.
#[derive(PartialEq)]
struct Candidate {
    value: f64,
    order: usize,
    parent: usize,
    rank: usize,
    depth: usize,
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        // Largest value first; among equals the one pushed first (parents before children).
        self.value
            .total_cmp(&other.value)
            .then(other.order.cmp(&self.order))
    }
}

/// The shape of a draft tree without tokens: node `i` takes candidate number `ranks[i]` (0 = the most
/// likely) from the candidate list of its parent. Node 0 is the root (rank 0 by convention).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeTemplate {
    parents: Vec<i32>,
    ranks: Vec<i32>,
    depth: Vec<i32>,
}

impl TreeTemplate {
    /// Build from Medusa-style index paths: each path lists candidate ranks from the root, e.g. `[0, 1]`
    /// is the second candidate after the first candidate. Missing prefixes are added; duplicates merged.
    /// Nodes are numbered by depth, then lexicographically by path (Medusa's order).
    pub fn from_paths(paths: &[Vec<i32>], max_nodes: usize) -> Result<Self> {
        // Insert every path into a trie keyed by (parent, rank): prefixes come for free, duplicates
        // merge. Visiting each level's nodes in order and their children by rank then numbers the
        // nodes by depth and lexicographically, without materialising any prefix.
        let mut children: Vec<Vec<(i32, u32)>> = vec![Vec::new()];
        for path in paths {
            let mut at = 0usize;
            for &rank in path {
                if rank < 0 {
                    return invalid!("candidate ranks must be >= 0, got {rank} in path {path:?}");
                }
                at = match children[at].iter().find(|(r, _)| *r == rank) {
                    Some(&(_, node)) => node as usize,
                    None => {
                        let node = children.len();
                        if node + 1 > max_nodes {
                            return invalid!("the template has more than max_nodes = {max_nodes} nodes");
                        }
                        children[at].push((rank, node as u32));
                        children.push(Vec::new());
                        node
                    }
                };
            }
        }
        let mut parents = Vec::with_capacity(children.len());
        let mut ranks = Vec::with_capacity(children.len());
        let mut queue = std::collections::VecDeque::from([(0usize, -1i32, 0i32)]);
        while let Some((node, parent, rank)) = queue.pop_front() {
            let index = parents.len() as i32;
            parents.push(parent);
            ranks.push(rank);
            let mut kids = std::mem::take(&mut children[node]);
            kids.sort_unstable();
            queue.extend(kids.into_iter().map(|(r, child)| (child as usize, index, r)));
        }
        Self::new(parents, ranks)
    }

    /// Check and build from a parent array and candidate ranks (same rules as [`DraftTree::new`]; the
    /// children of one node must take distinct ranks).
    pub fn new(parents: Vec<i32>, ranks: Vec<i32>) -> Result<Self> {
        if parents.len() != ranks.len() {
            return invalid!(
                "parents ({}) and ranks ({}) must have the same length",
                parents.len(),
                ranks.len()
            );
        }
        if let Some((i, &r)) = ranks.iter().enumerate().find(|(_, &r)| r < 0) {
            return invalid!("ranks[{i}] = {r}; candidate ranks are >= 0");
        }
        let depth = depths(&parents)?;
        // Siblings take distinct ranks: sort the (parent, rank) pairs and look for neighbours.
        let mut pairs: Vec<(i32, i32, usize)> = parents
            .iter()
            .zip(&ranks)
            .enumerate()
            .skip(1)
            .map(|(i, (&p, &r))| (p, r, i))
            .collect();
        pairs.sort_unstable();
        if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0 && w[0].1 == w[1].1) {
            let (p, r, i) = w[1];
            return invalid!("node {i} repeats rank {r} under parent {p}; siblings take distinct ranks");
        }
        Ok(Self {
            parents,
            ranks,
            depth,
        })
    }

    /// A full tree filled breadth-first: every node gets children of ranks `0..max_branching` until there
    /// are `num_nodes` nodes (root included) or `max_depth` is reached.
    pub fn balanced(num_nodes: usize, max_depth: usize, max_branching: usize) -> Result<Self> {
        if num_nodes == 0 {
            return invalid!("num_nodes must be >= 1 (the root)");
        }
        if num_nodes > 1 && (max_depth == 0 || max_branching == 0) {
            return invalid!("num_nodes = {num_nodes} needs max_depth >= 1 and max_branching >= 1");
        }
        let mut parents = vec![-1];
        let mut ranks = vec![0];
        let mut depth = vec![0usize];
        let mut at = 0;
        while parents.len() < num_nodes && at < parents.len() {
            if depth[at] < max_depth {
                for r in 0..max_branching {
                    if parents.len() == num_nodes {
                        break;
                    }
                    parents.push(at as i32);
                    ranks.push(r as i32);
                    depth.push(depth[at] + 1);
                }
            }
            at += 1;
        }
        if parents.len() < num_nodes {
            return invalid!(
                "a tree of depth <= {max_depth} with <= {max_branching} children per node holds only {} nodes, \
                 fewer than num_nodes = {num_nodes}",
                parents.len()
            );
        }
        Self::new(parents, ranks)
    }

    /// The `num_nodes`-node template (root included) that maximizes the expected accepted length when the
    /// candidate of rank `r` at depth `d` is accepted with probability `acceptance[d][r]` (rows beyond the
    /// last reuse the last row; `max_depth` is the number of rows when `per_depth` is set, else
    /// unlimited). A node's value is the product of acceptance probabilities along its path; values only
    /// shrink down a path, so taking the largest values greedily yields a tree, and the optimal one.
    pub fn from_acceptance(acceptance: &[Vec<f64>], per_depth: bool, num_nodes: usize) -> Result<Self> {
        if num_nodes == 0 {
            return invalid!("num_nodes must be >= 1 (the root)");
        }
        if acceptance.is_empty() || acceptance.iter().any(Vec::is_empty) {
            return invalid!("acceptance probabilities must not be empty");
        }
        if let Some(p) = acceptance.iter().flatten().find(|p| !(0.0..=1.0).contains(*p)) {
            return invalid!("acceptance probabilities must be in [0, 1], got {p}");
        }
        let row = |d: usize| &acceptance[d.min(acceptance.len() - 1)];
        let max_depth = if per_depth { acceptance.len() } else { usize::MAX };
        let mut heap = BinaryHeap::new();
        let mut pushed = 0usize;
        let mut push_children = |heap: &mut BinaryHeap<Candidate>, node: usize, value: f64, depth: usize| {
            if depth >= max_depth {
                return;
            }
            for (rank, &p) in row(depth).iter().enumerate() {
                heap.push(Candidate {
                    value: value * p,
                    order: pushed,
                    parent: node,
                    rank,
                    depth: depth + 1,
                });
                pushed += 1;
            }
        };
        push_children(&mut heap, 0, 1.0, 0);
        let mut parents = vec![-1];
        let mut ranks = vec![0];
        while parents.len() < num_nodes {
            let Some(c) = heap.pop() else {
                return invalid!(
                    "only {} nodes fit in {} depth rows of acceptance probabilities, fewer than num_nodes = {num_nodes}",
                    parents.len(),
                    acceptance.len()
                );
            };
            let node = parents.len();
            parents.push(c.parent as i32);
            ranks.push(c.rank as i32);
            push_children(&mut heap, node, c.value, c.depth);
        }
        // Greedy order is by value, not by depth: renumber breadth-first (stable within a depth).
        let unordered = Self::new(parents, ranks)?;
        Ok(unordered.breadth_first())
    }

    fn breadth_first(&self) -> Self {
        let (parents, order) = breadth_first(&self.parents).expect("a valid template's parents");
        let ranks = order.iter().map(|&old| self.ranks[old]).collect();
        Self::new(parents, ranks).expect("a renumbered valid template stays valid")
    }

    /// Parent of each node.
    #[must_use]
    pub fn parents(&self) -> &[i32] {
        &self.parents
    }

    /// Candidate rank of each node (0 for the root).
    #[must_use]
    pub fn ranks(&self) -> &[i32] {
        &self.ranks
    }

    /// Depth of each node.
    #[must_use]
    pub fn depth(&self) -> &[i32] {
        &self.depth
    }

    /// Number of nodes, root included.
    #[must_use]
    pub fn num_nodes(&self) -> usize {
        self.parents.len()
    }

    /// The largest candidate rank any node uses plus one: how many candidates per node must be supplied.
    #[must_use]
    pub fn num_candidates(&self) -> usize {
        self.ranks
            .iter()
            .skip(1)
            .map(|&r| r as usize + 1)
            .max()
            .unwrap_or(0)
    }

    /// Fill the template with tokens: node `i` gets `candidates[parent(i)][rank(i)]`, where
    /// `candidates` is `[num_nodes, width]` row-major (row `j`: candidate tokens after node `j`).
    pub fn instantiate(&self, root_token: i32, candidates: &[i32], width: usize) -> Result<DraftTree> {
        let n = self.num_nodes();
        if candidates.len() != n * width {
            return invalid!(
                "candidates must have shape [num_nodes, width] = [{n}, {width}], got {} values",
                candidates.len()
            );
        }
        if width < self.num_candidates() {
            return invalid!(
                "the template uses ranks up to {}, but candidates rows hold only {width}",
                self.num_candidates() - 1
            );
        }
        let mut tokens = Vec::with_capacity(n);
        tokens.push(root_token);
        for i in 1..n {
            tokens.push(candidates[self.parents[i] as usize * width + self.ranks[i] as usize]);
        }
        DraftTree::new(tokens, self.parents.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_paths_merges_prefixes_breadth_first() {
        let tree = DraftTree::from_paths(7, &[vec![1, 2], vec![1, 3], vec![4]]).unwrap();
        assert_eq!(tree.tokens(), &[7, 1, 4, 2, 3]);
        assert_eq!(tree.parents(), &[-1, 0, 0, 1, 1]);
        assert_eq!(tree.leaves(), vec![2, 3, 4]);
        let mut retrieve = vec![0; 9];
        tree.retrieve_indices_into(&mut retrieve).unwrap();
        assert_eq!(retrieve, vec![0, 2, -1, 0, 1, 3, 0, 1, 4]);
    }

    #[test]
    fn bad_parents_are_refused() {
        assert!(DraftTree::new(vec![1, 2], vec![0, 0]).is_err());
        assert!(DraftTree::new(vec![1, 2, 3], vec![-1, 2, 0]).is_err());
        assert!(DraftTree::new(vec![1, 2], vec![-1, -1]).is_err());
        assert!(DraftTree::new(vec![1, -2], vec![-1, 0]).is_err());
    }

    #[test]
    fn acceptance_template_is_greedy_optimal() {
        let t = TreeTemplate::from_acceptance(&[vec![0.8, 0.1]], false, 4).unwrap();
        // Values: rank0 0.8, rank0-rank0 0.64, rank0^3 0.512, rank1 0.1 -> a chain of three.
        assert_eq!(t.parents(), &[-1, 0, 1, 2]);
        assert_eq!(t.ranks(), &[0, 0, 0, 0]);
        let t = TreeTemplate::from_acceptance(&[vec![0.5, 0.45]], false, 4).unwrap();
        assert_eq!(t.parents(), &[-1, 0, 0, 1]);
        assert_eq!(t.ranks(), &[0, 0, 1, 0]);
    }
}
