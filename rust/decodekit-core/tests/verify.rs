//! Verification invariants that hold for any seed: certain drafts are always accepted, impossible ones
//! never are, recovered tokens avoid rejected ones, and greedy verification matches a direct walk.

use decodekit_core::sampling::Rows;
use decodekit_core::tree::DraftTree;
use decodekit_core::verify::{verify_greedy, verify_tree, TreeProbs, Validation};
use proptest::prelude::*;

const V: usize = 6;

fn one_hot_rows(tokens: &[usize]) -> Vec<f32> {
    let mut rows = vec![0.0; tokens.len() * V];
    for (i, &t) in tokens.iter().enumerate() {
        rows[i * V + t] = 1.0;
    }
    rows
}

proptest! {
    #[test]
    fn certain_chains_are_accepted_whole(drafts in prop::collection::vec(0i32..V as i32, 1..8), last in 0usize..V, seed in any::<u64>()) {
        let tree = DraftTree::chain(0, &drafts).unwrap();
        // Row i puts all mass on draft token i (the next node); the last row on `last`.
        let mut next: Vec<usize> = drafts.iter().map(|&t| t as usize).collect();
        next.push(last);
        let rows = one_hot_rows(&next);
        let probs = TreeProbs { target: Rows::new(&rows, next.len(), V, "target_probs").unwrap(), draft: None };
        let v = verify_tree(&tree, &probs, Validation::Full, seed).unwrap();
        prop_assert_eq!(v.accepted_nodes.len(), drafts.len() + 1);
        let mut want = drafts.clone();
        want.push(last as i32);
        prop_assert_eq!(v.tokens, want);
    }

    #[test]
    fn impossible_children_are_rejected_and_avoided(children in prop::collection::vec(0i32..3, 1..5), seed in any::<u64>()) {
        // The target puts no mass on tokens 0..3, so every child is rejected and the recovered token is
        // drawn from 3..6.
        let parents: Vec<i32> = std::iter::once(-1).chain(children.iter().map(|_| 0)).collect();
        let tokens: Vec<i32> = std::iter::once(9).chain(children.iter().copied()).collect();
        let tree = DraftTree::new(tokens, parents).unwrap();
        let mut rows = vec![0.0f32; tree.num_nodes() * V];
        for r in 0..tree.num_nodes() {
            rows[r * V + 3..r * V + 6].copy_from_slice(&[0.5, 0.25, 0.25]);
        }
        let probs = TreeProbs { target: Rows::new(&rows, tree.num_nodes(), V, "target_probs").unwrap(), draft: None };
        let v = verify_tree(&tree, &probs, Validation::Full, seed).unwrap();
        prop_assert_eq!(v.accepted_nodes, vec![0]);
        prop_assert!(v.tokens[0] >= 3);
    }

    #[test]
    fn greedy_follows_matching_children(depth in 1usize..6, seed in any::<u64>()) {
        let mut rng = decodekit_core::Philox::new(seed, 0);
        let drafts: Vec<i32> = (0..depth).map(|_| (rng.next_u32() % 3) as i32).collect();
        let tree = DraftTree::chain(0, &drafts).unwrap();
        let mut targets: Vec<i32> = drafts.clone();
        targets.push(2);
        let v = verify_greedy(&tree, &targets).unwrap();
        prop_assert_eq!(v.tokens, targets);
    }
}
