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
mod cursor;
pub mod earley;
pub mod ebnf;
pub mod json_schema;
pub mod lark;
pub mod lexeme_masks;
pub mod lower;
pub mod matcher;
pub mod regex;
pub mod slices;
pub mod trie;
pub mod vocab;

use std::sync::{Arc, OnceLock};

pub use matcher::{fill_next_token_bitmask_batch, Matcher, Position};
pub use regex::RegexLimits;
pub use vocab::{EosChoice, TokenKind, Vocabulary};

use crate::error::Result;
use cfg::Cfg;
use earley::Recognizer;
use lexeme_masks::LexemeMasks;
use lower::Bnf;
use regex::{ByteDfa, DEAD};

/// Masks of all states are precomputed at compile time when they fit in this many bytes (a 128k-token
/// vocabulary has 16 KiB masks, so about two thousand states).
pub const AUTO_PRECOMPUTE_BYTES: usize = 32 << 20;

/// A language over bytes that generated text must stay inside.
#[derive(Debug, Clone)]
pub struct Grammar {
    description: String,
    kind: GrammarKind,
}

#[derive(Debug, Clone)]
enum GrammarKind {
    /// A regular language, as one automaton.
    Regex(Arc<ByteDfa>),
    /// A context-free grammar, for the Earley parser over lexemes.
    Cfg(Arc<Bnf>),
}

impl Grammar {
    /// A regular language: the whole generated text must match `pattern` (Rust `regex` syntax, Unicode
    /// aware, `.` does not match `\n`). Look-around, backreferences and word boundaries are refused.
    pub fn regex(pattern: &str, limits: RegexLimits) -> Result<Self> {
        let hir = regex::parse(pattern)?;
        let dfa = regex::compile(&hir, limits)?;
        Ok(Grammar {
            description: format!("regex {pattern:?}"),
            kind: GrammarKind::Regex(Arc::new(dfa)),
        })
    }

    /// A context-free grammar (see [`cfg::Cfg`]); `description` is what [`description`](Self::description)
    /// reports.
    pub fn cfg(cfg: &Cfg, description: String) -> Result<Self> {
        Ok(Grammar {
            description,
            kind: GrammarKind::Cfg(Arc::new(Bnf::lower(cfg)?)),
        })
    }

    /// A grammar in GBNF, llama.cpp's format (see [`ebnf`]); the start rule is `root`.
    pub fn ebnf(text: &str) -> Result<Self> {
        let cfg = ebnf::parse(text)?;
        Self::cfg(&cfg, format!("GBNF grammar of {} rules", cfg.rules().len()))
    }

    /// A grammar in the Lark subset of [`lark`]; the start rule is `start`.
    pub fn lark(text: &str) -> Result<Self> {
        let cfg = lark::parse(text)?;
        Self::cfg(&cfg, format!("Lark grammar of {} rules", cfg.rules().len()))
    }

    /// The JSON texts a JSON Schema accepts (see [`json_schema`]), and the keywords that were not
    /// enforced (only with `options.strict == false`).
    pub fn json_schema(schema: &str, options: &json_schema::SchemaOptions) -> Result<(Self, Vec<String>)> {
        let compiled = json_schema::compile(schema, options)?;
        let grammar = Self::cfg(&compiled.cfg, "JSON schema".to_owned())?;
        Ok((grammar, compiled.ignored))
    }

    /// A short human-readable description (`regex "..."`).
    #[must_use]
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Whether this is a context-free grammar (parsed) rather than a regular one (one automaton).
    #[must_use]
    pub fn is_context_free(&self) -> bool {
        matches!(self.kind, GrammarKind::Cfg(_))
    }

    /// Number of live automaton states: of the regex automaton, or of all lexeme automata of a
    /// context-free grammar.
    #[must_use]
    pub fn num_states(&self) -> usize {
        match &self.kind {
            GrammarKind::Regex(dfa) => dfa.num_states(),
            GrammarKind::Cfg(bnf) => (0..bnf.num_lexemes() as u32)
                .map(|l| bnf.lexeme(l).num_states())
                .sum(),
        }
    }

    /// Whether [`compile`](Self::compile) precomputes every mask when not told: for a regular grammar
    /// when they take at most [`AUTO_PRECOMPUTE_BYTES`] together; never for a context-free one, whose
    /// caches fill as sequences reach lexeme states.
    #[must_use]
    pub fn precompute_by_default(&self, vocab: &Vocabulary) -> bool {
        match &self.kind {
            GrammarKind::Regex(dfa) => {
                dfa.num_states().saturating_mul(vocab.mask_words() * 4) <= AUTO_PRECOMPUTE_BYTES
            }
            GrammarKind::Cfg(_) => false,
        }
    }

    /// Pair the grammar with a vocabulary. With `precompute`, every state's token mask is computed now
    /// (on the library's thread pool), so no later mask costs more than a copy; otherwise each state's mask
    /// is computed the first time a sequence reaches it. `None` chooses by
    /// [`precompute_by_default`](Self::precompute_by_default). For a context-free grammar `precompute`
    /// fills the cache of every lexeme state.
    pub fn compile(&self, vocab: Arc<Vocabulary>, precompute: Option<bool>) -> Result<CompiledGrammar> {
        let precompute = precompute.unwrap_or_else(|| self.precompute_by_default(&vocab));
        let engine = match &self.kind {
            GrammarKind::Regex(dfa) => Engine::Regex {
                dfa: Arc::clone(dfa),
                masks: (0..=dfa.num_states()).map(|_| OnceLock::new()).collect(),
            },
            GrammarKind::Cfg(bnf) => Engine::Cfg(LexemeMasks::new(Arc::clone(bnf), Arc::clone(&vocab))),
        };
        let compiled = CompiledGrammar { vocab, engine };
        if precompute {
            match &compiled.engine {
                Engine::Regex { dfa, .. } => {
                    let states: Vec<u32> = dfa.live_states().collect();
                    crate::parallel::map_rows(states.len(), |i| {
                        let _ = compiled.state_mask(states[i]);
                        Ok(())
                    })?;
                }
                Engine::Cfg(masks) => masks.precompute()?,
            }
        }
        Ok(compiled)
    }
}

/// A grammar paired with a vocabulary: frozen, thread-safe, with token masks cached.
#[derive(Debug)]
pub struct CompiledGrammar {
    vocab: Arc<Vocabulary>,
    engine: Engine,
}

#[derive(Debug)]
enum Engine {
    Regex {
        dfa: Arc<ByteDfa>,
        /// Normal-token masks by dense state index; EOS bits are added when a row is filled.
        masks: Vec<OnceLock<StateMask>>,
    },
    Cfg(LexemeMasks),
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

    /// The automaton of a regular grammar (`None` for a context-free one).
    #[must_use]
    pub fn dfa(&self) -> Option<&ByteDfa> {
        match &self.engine {
            Engine::Regex { dfa, .. } => Some(dfa),
            Engine::Cfg(_) => None,
        }
    }

    /// The productions and lexemes of a context-free grammar (`None` for a regular one).
    #[must_use]
    pub fn bnf(&self) -> Option<&Arc<Bnf>> {
        match &self.engine {
            Engine::Regex { .. } => None,
            Engine::Cfg(masks) => Some(masks.bnf()),
        }
    }

    /// Total automaton states (as [`Grammar::num_states`]).
    #[must_use]
    pub fn num_states(&self) -> usize {
        match &self.engine {
            Engine::Regex { dfa, .. } => dfa.num_states(),
            Engine::Cfg(masks) => masks.num_states(),
        }
    }

    /// Number of states whose mask has been computed so far.
    #[must_use]
    pub fn num_cached_masks(&self) -> usize {
        match &self.engine {
            Engine::Regex { masks, .. } => masks.iter().filter(|m| m.get().is_some()).count(),
            Engine::Cfg(masks) => masks.num_cached(),
        }
    }

    /// Whether the mask of regex `state` is already computed (filling it is then a copy).
    #[must_use]
    pub fn is_cached(&self, state: u32) -> bool {
        match &self.engine {
            Engine::Regex { dfa, masks } => state == DEAD || masks[dfa.index(state)].get().is_some(),
            Engine::Cfg(_) => false,
        }
    }

    /// The masks of a context-free grammar.
    pub(crate) fn lexeme_masks(&self) -> Option<&LexemeMasks> {
        match &self.engine {
            Engine::Regex { .. } => None,
            Engine::Cfg(masks) => Some(masks),
        }
    }

    /// The regex automaton and its mask cache; callers only reach here for a regular grammar.
    fn regex_parts(&self) -> (&ByteDfa, &[OnceLock<StateMask>]) {
        match &self.engine {
            Engine::Regex { dfa, masks } => (dfa, masks),
            Engine::Cfg(_) => unreachable!("a regex state of a context-free grammar"),
        }
    }

    /// The normal tokens allowed in `state`, computed once and cached.
    fn state_mask(&self, state: u32) -> &StateMask {
        let (dfa, masks) = self.regex_parts();
        masks[dfa.index(state)].get_or_init(|| StateMask::from_row(self.compute_mask(state)))
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
        let (dfa, _) = self.regex_parts();
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

    /// Write the mask of a context-free grammar's parser into `row`, as [`fill_row`](Self::fill_row).
    pub(crate) fn fill_row_cfg(&self, parser: &mut Recognizer, terminated: bool, row: &mut [u32]) {
        let words = self.vocab.mask_words();
        if terminated {
            row.fill(0);
        } else {
            if let Some(masks) = self.lexeme_masks() {
                masks.fill(parser, row);
            }
            row[words..].fill(0);
        }
        if terminated || parser.is_accepting() {
            for &id in self.vocab.eos_ids() {
                row[id as usize >> 5] |= 1 << (id & 31);
            }
        }
    }

    /// Write the mask of regex `state` into `row` (at least `vocab.mask_words()` words; the rest are cleared).
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
        if terminated || (state != DEAD && self.regex_parts().0.is_accepting(state)) {
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
            c.fill_row(c.dfa().unwrap().start(), false, &mut row);
            assert_eq!(allowed(&row), vec![0, 1, 5]);
            let s = c.dfa().unwrap().run(c.dfa().unwrap().start(), b"1");
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
            let start = c.dfa().unwrap().start();
            let mut row = vec![u32::MAX; vocab.mask_words() + 1];
            c.fill_row(start, false, &mut row);
            let ids = allowed(&row);
            let normal: Vec<u32> = ids.iter().copied().filter(|&i| i != eos).collect();
            assert_eq!(normal.len(), expected_count, "{pattern}");
            for id in 0..eos {
                let viable = c.dfa().unwrap().run(start, vocab.token_bytes(id as usize)) != DEAD;
                assert_eq!(normal.contains(&id), viable, "{pattern}: token {id}");
            }
            assert_eq!(ids.contains(&eos), c.dfa().unwrap().is_accepting(start));
            assert_eq!(*row.last().unwrap(), 0);
        }
    }
}
