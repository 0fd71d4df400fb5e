//! Constrained decoding: the set of tokens that keep the output inside a language, as a token bitmask.
//!
//! A [`Grammar`] is a language over bytes, independent of any tokenizer. [`Grammar::compile`] pairs it
//! with a [`Vocabulary`] into a [`CompiledGrammar`], frozen and shareable, whose per-state token masks are
//! computed by walking the vocabulary's token trie against the automaton (a whole subtree is pruned at its
//! first dead byte) and cached, so a state's mask is computed once however many sequences reach it. A
//! [`Matcher`] follows one sequence through the grammar, token by token, with unlimited rollback.
//!
//! Bitmask layout (shared with xgrammar, llguidance and vLLM): `int32[batch, ceil(V/32)]`, bit `j` of word
//! `w` set means token `32*w + j` is allowed.

pub mod bitmask;
pub mod cfg;
pub mod earley;
pub mod ebnf;
pub mod lexeme_masks;
pub mod lower;
pub mod matcher;
pub mod regex;
pub mod trie;
pub mod vocab;

use std::sync::{Arc, OnceLock};

pub use matcher::{fill_next_token_bitmask_batch, Matcher, Position};
pub use regex::RegexLimits;
pub use vocab::{EosChoice, TokenKind, Vocabulary};

use crate::error::Result;
use regex::{ByteDfa, DEAD};

/// Masks of all states are precomputed at compile time when they fit in this many bytes (a 128k-token
/// vocabulary has 16 KiB masks, so about two thousand states).
pub const AUTO_PRECOMPUTE_BYTES: usize = 32 << 20;

/// A language over bytes that generated text must stay inside.
#[derive(Debug, Clone)]
pub struct Grammar {
    description: String,
    dfa: Arc<ByteDfa>,
}

impl Grammar {
    /// A regular language: the whole generated text must match `pattern` (Rust `regex` syntax, Unicode
    /// aware, `.` does not match `\n`). Look-around, backreferences and word boundaries are refused.
    pub fn regex(pattern: &str, limits: RegexLimits) -> Result<Self> {
        let hir = regex::parse(pattern)?;
        let dfa = regex::compile(&hir, limits)?;
        Ok(Grammar {
            description: format!("regex {pattern:?}"),
            dfa: Arc::new(dfa),
        })
    }

    /// A short human-readable description (`regex "..."`).
    #[must_use]
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Number of live automaton states.
    #[must_use]
    pub fn num_states(&self) -> usize {
        self.dfa.num_states()
    }

    /// Whether [`compile`](Self::compile) precomputes every mask when not told: when they take at most
    /// [`AUTO_PRECOMPUTE_BYTES`] together.
    #[must_use]
    pub fn precompute_by_default(&self, vocab: &Vocabulary) -> bool {
        self.dfa.num_states().saturating_mul(vocab.mask_words() * 4) <= AUTO_PRECOMPUTE_BYTES
    }

    /// Pair the grammar with a vocabulary. With `precompute`, every state's token mask is computed now
    /// (on the library's thread pool), so no later mask costs more than a copy; otherwise each state's mask
    /// is computed the first time a sequence reaches it. `None` chooses by
    /// [`precompute_by_default`](Self::precompute_by_default).
    pub fn compile(&self, vocab: Arc<Vocabulary>, precompute: Option<bool>) -> Result<CompiledGrammar> {
        let precompute = precompute.unwrap_or_else(|| self.precompute_by_default(&vocab));
        let masks = (0..=self.dfa.num_states()).map(|_| OnceLock::new()).collect();
        let compiled = CompiledGrammar {
            vocab,
            dfa: Arc::clone(&self.dfa),
            masks,
        };
        if precompute {
            let states: Vec<u32> = compiled.dfa.live_states().collect();
            crate::parallel::map_rows(states.len(), |i| {
                let _ = compiled.state_mask(states[i]);
                Ok(())
            })?;
        }
        Ok(compiled)
    }
}

/// A grammar paired with a vocabulary: frozen, thread-safe, with per-state token masks cached.
#[derive(Debug)]
pub struct CompiledGrammar {
    vocab: Arc<Vocabulary>,
    dfa: Arc<ByteDfa>,
    /// Normal-token masks by dense state index; EOS bits are added when a row is filled.
    masks: Vec<OnceLock<StateMask>>,
}

/// States that allow at most this many tokens keep their ids instead of a row: clearing a row and
/// setting a few bits is cheaper than copying 16 KiB, and takes less memory.
const SPARSE_MASK_MAX_IDS: usize = 128;

/// One state's cached mask of normal tokens.
#[derive(Debug)]
pub(crate) enum StateMask {
    /// The whole bitmask row.
    Dense(Box<[u32]>),
    /// The allowed ids, when there are few (the row is zero elsewhere).
    Sparse(Box<[u32]>),
}

impl StateMask {
    pub(crate) fn from_row(row: Vec<u32>) -> Self {
        let ones: u32 = row.iter().map(|w| w.count_ones()).sum();
        if ones as usize <= SPARSE_MASK_MAX_IDS {
            StateMask::Sparse(bitmask::allowed_ids(&row).into_boxed_slice())
        } else {
            StateMask::Dense(row.into_boxed_slice())
        }
    }

    /// Add the mask's tokens to `row`.
    pub(crate) fn or_into(&self, row: &mut [u32]) {
        match self {
            StateMask::Dense(mask) => {
                for (w, &m) in row.iter_mut().zip(mask.iter()) {
                    *w |= m;
                }
            }
            StateMask::Sparse(ids) => {
                for &id in ids {
                    row[id as usize >> 5] |= 1 << (id & 31);
                }
            }
        }
    }

    /// Write the mask into the first `words` words of `row` (the rest are left alone).
    fn write(&self, row: &mut [u32]) {
        match self {
            StateMask::Dense(mask) => row[..mask.len()].copy_from_slice(mask),
            StateMask::Sparse(ids) => {
                row.fill(0);
                for &id in ids {
                    row[id as usize >> 5] |= 1 << (id & 31);
                }
            }
        }
    }
}

impl CompiledGrammar {
    /// The vocabulary the grammar was compiled for.
    #[must_use]
    pub fn vocab(&self) -> &Arc<Vocabulary> {
        &self.vocab
    }

    /// The automaton.
    #[must_use]
    pub fn dfa(&self) -> &ByteDfa {
        &self.dfa
    }

    /// Number of states whose mask has been computed so far.
    #[must_use]
    pub fn num_cached_masks(&self) -> usize {
        self.masks.iter().filter(|m| m.get().is_some()).count()
    }

    /// Whether the mask of `state` is already computed (filling it is then a copy).
    #[must_use]
    pub fn is_cached(&self, state: u32) -> bool {
        state == DEAD || self.masks[self.dfa.index(state)].get().is_some()
    }

    /// The normal tokens allowed in `state`, computed once and cached.
    fn state_mask(&self, state: u32) -> &StateMask {
        self.masks[self.dfa.index(state)].get_or_init(|| StateMask::from_row(self.compute_mask(state)))
    }

    /// The normal tokens allowed in `state` as one bitmask row without EOS (`ceil(size/32)` words).
    #[must_use]
    pub fn token_mask(&self, state: u32) -> Vec<u32> {
        let mut row = vec![0u32; self.vocab.mask_words()];
        self.state_mask(state).write(&mut row);
        row
    }

    fn compute_mask(&self, state: u32) -> Vec<u32> {
        let mut mask = vec![0u32; self.vocab.mask_words()];
        if state == DEAD {
            return mask;
        }
        let dfa = &*self.dfa;
        self.vocab.trie().walk(
            0,
            state,
            |s, b| {
                let t = dfa.next(s, b);
                (t != DEAD).then_some(t)
            },
            |ids, _| {
                for &id in ids {
                    mask[id as usize >> 5] |= 1 << (id & 31);
                }
            },
        );
        mask
    }

    /// Write the mask of `state` into `row` (at least `vocab.mask_words()` words; the rest are cleared).
    /// EOS is allowed at accepting states; when `terminated`, only EOS is allowed.
    pub fn fill_row(&self, state: u32, terminated: bool, row: &mut [u32]) {
        let words = self.vocab.mask_words();
        debug_assert!(row.len() >= words);
        if terminated {
            row.fill(0);
        } else {
            self.state_mask(state).write(&mut row[..words]);
            row[words..].fill(0);
        }
        if terminated || (state != DEAD && self.dfa.is_accepting(state)) {
            for &id in self.vocab.eos_ids() {
                row[id as usize >> 5] |= 1 << (id & 31);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(tokens: &[&str]) -> Arc<Vocabulary> {
        let mut list: Vec<Option<Vec<u8>>> = tokens.iter().map(|t| Some(t.as_bytes().to_vec())).collect();
        list.push(Some(b"<eos>".to_vec()));
        let eos = list.len() as u32 - 1;
        Arc::new(Vocabulary::new(&list, &[], &[eos], Some(70)).unwrap())
    }

    fn allowed(row: &[u32]) -> Vec<u32> {
        (0..row.len() as u32 * 32)
            .filter(|&i| row[i as usize >> 5] >> (i & 31) & 1 == 1)
            .collect()
    }

    #[test]
    fn masks_follow_the_language() {
        let v = vocab(&["1", "12", "a", "1a", "", "2", "<eos>"]);
        let g = Grammar::regex("[0-9]+", RegexLimits::default()).unwrap();
        for precompute in [false, true] {
            let c = g.compile(Arc::clone(&v), Some(precompute)).unwrap();
            let mut row = vec![u32::MAX; 3];
            c.fill_row(c.dfa().start(), false, &mut row);
            assert_eq!(allowed(&row), vec![0, 1, 5]);
            let s = c.dfa().run(c.dfa().start(), b"1");
            c.fill_row(s, false, &mut row);
            // After a digit the text matches: EOS (id 7) too; the literal "<eos>" text (6) never.
            assert_eq!(allowed(&row), vec![0, 1, 5, 7]);
            c.fill_row(s, true, &mut row);
            assert_eq!(allowed(&row), vec![7]);
        }
    }

    #[test]
    fn dense_and_sparse_masks_agree_with_the_automaton() {
        // 18 single letters and 324 pairs: `[0-9]+` allows 110 tokens and `a[0-9]` 11 (stored sparse),
        // `[0-9a-h]*` all 342 (dense).
        let alphabet = b"0123456789abcdefgh";
        let mut list: Vec<Option<Vec<u8>>> = alphabet.iter().map(|&b| Some(vec![b])).collect();
        for &a in alphabet {
            for &b in alphabet {
                list.push(Some(vec![a, b]));
            }
        }
        list.push(Some(b"<eos>".to_vec()));
        let eos = list.len() as u32 - 1;
        let vocab = Arc::new(Vocabulary::new(&list, &[], &[eos], None).unwrap());
        for (pattern, expected_count) in [("[0-9]+", 110), ("[0-9a-h]*", 342), ("a[0-9]", 11)] {
            let g = Grammar::regex(pattern, RegexLimits::default()).unwrap();
            let c = g.compile(Arc::clone(&vocab), Some(true)).unwrap();
            let start = c.dfa().start();
            let mut row = vec![u32::MAX; vocab.mask_words() + 1];
            c.fill_row(start, false, &mut row);
            let ids = allowed(&row);
            let normal: Vec<u32> = ids.iter().copied().filter(|&i| i != eos).collect();
            assert_eq!(normal.len(), expected_count, "{pattern}");
            for id in 0..eos {
                let viable = c.dfa().run(start, vocab.token_bytes(id as usize)) != DEAD;
                assert_eq!(normal.contains(&id), viable, "{pattern}: token {id}");
            }
            assert_eq!(ids.contains(&eos), c.dfa().is_accepting(start));
            assert_eq!(*row.last().unwrap(), 0);
        }
    }
}
