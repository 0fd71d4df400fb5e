//! An Earley recognizer for a [`Bnf`]: any context-free grammar (left recursion, ambiguity and empty
//! rules included, no depth limit), fed one byte at a time, with unlimited rollback.
//!
//! The chart keeps one Earley set per byte consumed, flat in one array, so `rollback(n)` is a truncation
//! and a copy of the whole parse is two memcpys. Empty rules follow Aycock and Horspool (a nullable
//! symbol is stepped over when predicted). A lexeme in progress is a single item whose "dot" is the state
//! of the lexeme's automaton: a byte inside a lexeme steps that automaton, and only where it accepts does
//! the lexeme complete and the parser predict what comes next.

use std::sync::Arc;

use rustc_hash::FxHashSet;

use super::lower::{Bnf, Symbol};
use super::regex::DEAD;
use super::vocab::Vocabulary;
use crate::error::{CoreError, Result};

/// An Earley item: production, dot position, origin set. For a lexeme in progress, `production` is
/// `productions.len() + lexeme` and `dot` is the state of the lexeme's automaton.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Item {
    production: u32,
    dot: u32,
    origin: u32,
}

/// A lexeme being matched in the current set: `(lexeme, automaton state, origin set)`.
pub type LexemeItem = (u32, u32, u32);

/// Follows one byte string through a [`Bnf`], byte by byte, with unlimited rollback.
#[derive(Debug)]
pub struct Recognizer {
    bnf: Arc<Bnf>,
    /// Every set's items, one set after another.
    items: Vec<Item>,
    /// `starts[k]` is where set `k` begins in `items`; the last set runs to the end.
    starts: Vec<u32>,
    /// Scratch for de-duplicating items while a set is closed.
    seen: FxHashSet<Item>,
}

impl Clone for Recognizer {
    fn clone(&self) -> Self {
        Recognizer {
            bnf: Arc::clone(&self.bnf),
            items: self.items.clone(),
            starts: self.starts.clone(),
            seen: FxHashSet::default(),
        }
    }
}

impl Recognizer {
    /// At the start of the text.
    #[must_use]
    pub fn new(bnf: Arc<Bnf>) -> Self {
        let start = Item {
            production: bnf.start,
            dot: 0,
            origin: 0,
        };
        let mut recognizer = Recognizer {
            bnf,
            items: vec![start],
            starts: vec![0],
            seen: FxHashSet::default(),
        };
        recognizer.close_last_set();
        recognizer
    }

    /// The grammar.
    #[must_use]
    pub fn bnf(&self) -> &Arc<Bnf> {
        &self.bnf
    }

    /// Bytes consumed so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// Whether no byte was consumed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn last_set(&self) -> &[Item] {
        &self.items[*self.starts.last().unwrap_or(&0) as usize..]
    }

    fn lexeme_base(&self) -> u32 {
        self.bnf.productions.len() as u32
    }

    /// Whether the text so far is a complete sentence of the grammar.
    #[must_use]
    pub fn is_accepting(&self) -> bool {
        let start = self.bnf.start;
        self.last_set()
            .iter()
            .any(|i| i.production == start && i.origin == 0 && i.dot == 1)
    }

    /// The lexemes in progress in the current set.
    pub fn frontier(&self) -> impl Iterator<Item = LexemeItem> + '_ {
        let base = self.lexeme_base();
        self.last_set()
            .iter()
            .filter(move |i| i.production >= base)
            .map(move |i| (i.production - base, i.dot, i.origin))
    }

    /// The bytes that can come next, as a 256-bit set (bit `b % 64` of word `b / 64`).
    #[must_use]
    pub fn allowed_bytes(&self) -> [u64; 4] {
        let mut allowed = [0u64; 4];
        let base = self.lexeme_base();
        for &item in self.last_set() {
            if item.production >= base {
                let dfa = self.bnf.lexeme(item.production - base);
                for b in 0..=255u8 {
                    if dfa.next(item.dot, b) != DEAD {
                        allowed[usize::from(b / 64)] |= 1 << (b % 64);
                    }
                }
            } else if let Some(&Symbol::Bytes(lo, hi)) = self.bnf.productions[item.production as usize]
                .rhs
                .get(item.dot as usize)
            {
                for b in lo..=hi {
                    allowed[usize::from(b / 64)] |= 1 << (b % 64);
                }
            }
        }
        allowed
    }

    /// Consume `byte` if the grammar allows it here; returns whether it did (a refused byte changes
    /// nothing).
    pub fn push(&mut self, byte: u8) -> bool {
        let last = *self.starts.last().unwrap_or(&0) as usize;
        let here = self.items.len();
        let base = self.lexeme_base();
        for j in last..here {
            let item = self.items[j];
            if item.production >= base {
                let next = self.bnf.lexeme(item.production - base).next(item.dot, byte);
                if next != DEAD {
                    self.items.push(Item { dot: next, ..item });
                }
            } else if let Some(&Symbol::Bytes(lo, hi)) = self.bnf.productions[item.production as usize]
                .rhs
                .get(item.dot as usize)
            {
                if lo <= byte && byte <= hi {
                    self.items.push(Item {
                        dot: item.dot + 1,
                        ..item
                    });
                }
            }
        }
        if self.items.len() == here {
            return false;
        }
        self.starts.push(here as u32);
        self.close_last_set();
        true
    }

    /// Complete the lexeme item `(lexeme, _, origin)` of the current set *now*, as if it were the only
    /// way forward: pushes a new set holding what follows the lexeme (and nothing that continues it or
    /// any other lexeme). Returns false, pushing nothing, when no item waits for that lexeme at `origin`.
    /// Used by mask computation to check what may follow a lexeme that ends inside a token.
    pub fn push_completion(&mut self, lexeme: u32, origin: u32) -> bool {
        let here = self.items.len();
        let (lo, hi) = self.set_range(origin as usize);
        for j in lo..hi {
            let parent = self.items[j];
            if self.waits_for(parent, Symbol::Lexeme(lexeme)) {
                self.items.push(Item {
                    dot: parent.dot + 1,
                    ..parent
                });
            }
        }
        if self.items.len() == here {
            return false;
        }
        self.starts.push(here as u32);
        self.close_last_set();
        true
    }

    /// Consume all of `bytes`, or none of them: returns how many were allowed before the first refused
    /// one (the state is then as before the call).
    pub fn push_all(&mut self, bytes: &[u8]) -> std::result::Result<(), usize> {
        for (i, &b) in bytes.iter().enumerate() {
            if !self.push(b) {
                self.truncate(self.len() - i);
                return Err(i);
            }
        }
        Ok(())
    }

    /// Forget the last `n` bytes.
    pub fn rollback(&mut self, n: usize) -> Result<()> {
        if n > self.len() {
            return Err(CoreError::InvalidInput(format!(
                "cannot roll back {n} bytes: only {} were consumed",
                self.len()
            )));
        }
        self.truncate(self.len() - n);
        Ok(())
    }

    /// Go back to where `len` bytes had been consumed (`len <= self.len()`).
    pub(crate) fn truncate(&mut self, len: usize) {
        if len < self.len() {
            self.items.truncate(self.starts[len + 1] as usize);
            self.starts.truncate(len + 1);
        }
    }

    /// The token mask by brute force: bit `id % 32` of word `id / 32` is set for every normal token of
    /// `vocab` whose bytes the grammar allows next, and for the EOS ids when the text so far is a sentence.
    /// Walks the whole token trie, pushing and rolling back one byte per node (the reference the cached
    /// lexeme masks are tested against).
    #[must_use]
    pub fn token_mask_reference(&self, vocab: &Vocabulary) -> Vec<u32> {
        let mut mask = vec![0u32; vocab.mask_words()];
        let mut walker = self.clone();
        let base = walker.len();
        vocab.trie().walk_nested(
            0,
            |depth, byte| {
                walker.truncate(base + depth);
                walker.push(byte)
            },
            |ids| {
                for &id in ids {
                    mask[id as usize >> 5] |= 1 << (id & 31);
                }
            },
        );
        if self.is_accepting() {
            for &id in vocab.eos_ids() {
                mask[id as usize >> 5] |= 1 << (id & 31);
            }
        }
        mask
    }

    fn set_range(&self, k: usize) -> (usize, usize) {
        let lo = self.starts[k] as usize;
        let hi = self.starts.get(k + 1).map_or(self.items.len(), |&s| s as usize);
        (lo, hi)
    }

    fn waits_for(&self, item: Item, symbol: Symbol) -> bool {
        item.production < self.lexeme_base()
            && self.bnf.productions[item.production as usize]
                .rhs
                .get(item.dot as usize)
                == Some(&symbol)
    }

    /// Close the last set (its seed items already in place) under prediction and completion.
    fn close_last_set(&mut self) {
        let here_index = self.starts.len() - 1;
        let here = here_index as u32;
        let start = self.starts[here_index] as usize;
        let base = self.lexeme_base();
        let bnf = Arc::clone(&self.bnf);
        self.seen.clear();
        for j in start..self.items.len() {
            self.seen.insert(self.items[j]);
        }
        let mut i = start;
        while i < self.items.len() {
            let item = self.items[i];
            i += 1;
            if item.production >= base {
                // a lexeme that can end here completes (one predicted here is nullable: handled below)
                let dfa = bnf.lexeme(item.production - base);
                if item.origin != here && dfa.is_accepting(item.dot) {
                    self.complete(Symbol::Lexeme(item.production - base), item.origin, start);
                }
                continue;
            }
            let production = &bnf.productions[item.production as usize];
            match production.rhs.get(item.dot as usize) {
                Some(&Symbol::Nonterminal(n)) => {
                    for &p in &bnf.by_lhs[n as usize] {
                        self.add(Item {
                            production: p,
                            dot: 0,
                            origin: here,
                        });
                    }
                    if bnf.nullable[n as usize] {
                        self.add(Item {
                            dot: item.dot + 1,
                            ..item
                        });
                    }
                }
                Some(&Symbol::Lexeme(l)) => {
                    let dfa = bnf.lexeme(l);
                    self.add(Item {
                        production: base + l,
                        dot: dfa.start(),
                        origin: here,
                    });
                    if dfa.is_accepting(dfa.start()) {
                        self.add(Item {
                            dot: item.dot + 1,
                            ..item
                        });
                    }
                }
                Some(Symbol::Bytes(..)) => {}
                None => self.complete(Symbol::Nonterminal(production.lhs), item.origin, start),
            }
        }
    }

    fn add(&mut self, item: Item) {
        if self.seen.insert(item) {
            self.items.push(item);
        }
    }

    /// Advance every item of set `origin` that waits for `symbol` (which just completed in the set that
    /// begins at `start`).
    fn complete(&mut self, symbol: Symbol, origin: u32, start: usize) {
        let (lo, hi) = if origin as usize == self.starts.len() - 1 {
            (start, self.items.len())
        } else {
            self.set_range(origin as usize)
        };
        for j in lo..hi {
            let parent = self.items[j];
            if self.waits_for(parent, symbol) {
                self.add(Item {
                    dot: parent.dot + 1,
                    ..parent
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::lower::Bnf;
    use super::super::{cfg::Expr, ebnf, regex};
    use super::*;

    fn recognizer(grammar: &str) -> Recognizer {
        Recognizer::new(Arc::new(Bnf::lower(&ebnf::parse(grammar).unwrap()).unwrap()))
    }

    fn byte_recognizer(grammar: &str) -> Recognizer {
        Recognizer::new(Arc::new(
            Bnf::lower_bytes(&ebnf::parse(grammar).unwrap()).unwrap(),
        ))
    }

    fn accepts(r: &Recognizer, text: &[u8]) -> bool {
        let mut r = r.clone();
        r.push_all(text).is_ok() && r.is_accepting()
    }

    /// Every string over `alphabet` up to `max_len` bytes.
    fn strings(alphabet: &[u8], max_len: usize) -> Vec<Vec<u8>> {
        let mut out = vec![Vec::new()];
        let mut frontier = vec![Vec::new()];
        for _ in 0..max_len {
            let mut next = Vec::new();
            for s in &frontier {
                for &c in alphabet {
                    let mut t: Vec<u8> = s.clone();
                    t.push(c);
                    next.push(t);
                }
            }
            out.extend(next.iter().cloned());
            frontier = next;
        }
        out
    }

    /// `r` accepts exactly the strings over `alphabet` (up to `max_len` bytes) that decodekit's regex DFA
    /// for `pattern` matches whole, and that is some of them but not all.
    fn assert_agrees_with_regex(r: &Recognizer, pattern: &str, alphabet: &[u8], max_len: usize) {
        let dfa = regex::compile(&regex::parse(pattern).unwrap(), regex::RegexLimits::default()).unwrap();
        let all = strings(alphabet, max_len);
        let mut accepted = 0;
        for s in &all {
            let mut state = dfa.start();
            for &b in s {
                if state != regex::DEAD {
                    state = dfa.next(state, b);
                }
            }
            let expected = state != regex::DEAD && dfa.is_accepting(state);
            assert_eq!(
                accepts(r, s),
                expected,
                "{pattern} on {:?}",
                String::from_utf8_lossy(s)
            );
            accepted += usize::from(expected);
        }
        assert!(
            accepted > 0 && accepted < all.len(),
            "{pattern}: {accepted} of {}",
            all.len()
        );
    }

    #[test]
    fn matched_pairs_exactly() {
        // a^n b^n, and balanced parentheses through left recursion and empty alternatives
        let pairs = recognizer("root ::= \"a\" root \"b\" | \"\"");
        let parens = recognizer("root ::= root item | \"\"\nitem ::= \"(\" root \")\"");
        for s in strings(b"ab", 8) {
            let n = s.len() / 2;
            let expected =
                s.len() % 2 == 0 && s[..n].iter().all(|&c| c == b'a') && s[n..].iter().all(|&c| c == b'b');
            assert_eq!(accepts(&pairs, &s), expected, "{:?}", String::from_utf8_lossy(&s));
        }
        for s in strings(b"()", 10) {
            let mut depth = 0i32;
            let balanced = s.iter().all(|&c| {
                depth += if c == b'(' { 1 } else { -1 };
                depth >= 0
            }) && depth == 0;
            assert_eq!(
                accepts(&parens, &s),
                balanced,
                "{:?}",
                String::from_utf8_lossy(&s)
            );
        }
    }

    #[test]
    fn regular_grammars_agree_with_the_regex_dfa() {
        let cases = [
            ("root ::= [a-c]{2,4} (\"-\" [ab]+)?", r"[a-c]{2,4}(-[ab]+)?"),
            ("root ::= (\"ab\" | \"a\")* \"c\"?", r"(ab|a)*c?"),
            ("root ::= [^a]{0,2} \"a\"", r"[^a]{0,2}a"),
            ("root ::= x x?\nx ::= \"-\" | [bc] x", r"([bc]*-)([bc]*-)?"),
        ];
        for (grammar, pattern) in cases {
            assert_agrees_with_regex(&recognizer(grammar), pattern, b"abc-", 6);
            assert_agrees_with_regex(&byte_recognizer(grammar), pattern, b"abc-", 6);
        }
    }

    #[test]
    fn regex_terminals_match_what_the_regex_dfa_matches() {
        let patterns = [
            r"[a-c]{2,4}(-[ab]+)?",
            r"(ab|a)*c?",
            r"(?i)AB|c+",
            r"[^a-b]-?\w{0,2}",
            r"(a|)(b{1,2}|-)*",
        ];
        for pattern in patterns {
            let rules = super::super::cfg::tests_support::one_rule(Expr::from_regex(pattern).unwrap());
            let cfg = rules.finish("root").unwrap();
            for bnf in [Bnf::lower(&cfg).unwrap(), Bnf::lower_bytes(&cfg).unwrap()] {
                assert_agrees_with_regex(&Recognizer::new(Arc::new(bnf)), pattern, b"abcAB-_", 4);
            }
        }
        for (pattern, message) in [
            ("^a", "anchors"),
            (r"a\b", "word-boundary"),
            ("a{20000}", "above"),
        ] {
            let error = Expr::from_regex(pattern).unwrap_err().to_string();
            assert!(error.contains(message), "{pattern}: {error}");
        }
    }

    #[test]
    fn unicode_classes_match_utf8_and_allowed_bytes_predict_pushes() {
        let r = recognizer("root ::= [é-ü]+ | [^\\x00-\\U0010FFFE]");
        assert!(accepts(&r, "éü".as_bytes()));
        assert!(accepts(&r, "\u{10FFFF}".as_bytes()));
        assert!(!accepts(&r, "e".as_bytes()));
        assert!(!accepts(&r, "ý".as_bytes()));
        // allowed_bytes is exactly the set of bytes push accepts, at every prefix of a sentence
        let mut walker = r.clone();
        for &b in "ëö".as_bytes() {
            let allowed = walker.allowed_bytes();
            for c in 0..=255u8 {
                let mut probe = walker.clone();
                assert_eq!(
                    probe.push(c),
                    allowed[usize::from(c / 64)] >> (c % 64) & 1 == 1,
                    "byte {c}"
                );
            }
            assert!(walker.push(b));
        }
        assert!(walker.is_accepting());
    }

    #[test]
    fn token_masks_equal_feeding_each_token_alone() {
        // a small JSON-like grammar (nesting, so not regular) and a vocabulary of multi-byte tokens
        let r = recognizer(
            "root ::= value\nvalue ::= \"[\" (value (\",\" value)*)? \"]\" | [0-9]+ | \"\\\"\" [a-z]* \"\\\"\"",
        );
        let words = [
            "[", "]", ",", "[[", "]]", "],", ",[", "1", "12", "3]", "\"", "\"a", "ab", "b\"", "\"]", "x",
            "[1", "1,", "\"\"", "é", "0",
        ];
        let mut list: Vec<Option<Vec<u8>>> = words.iter().map(|w| Some(w.as_bytes().to_vec())).collect();
        list.push(Some(b"</s>".to_vec()));
        let eos = (list.len() - 1) as u32;
        let vocab = Vocabulary::new(&list, &[], &[eos], None).unwrap();
        let mut walker = r.clone();
        let mut checked = 0;
        for text in [
            "",
            "[",
            "[1",
            "[12,",
            "[\"ab",
            "[\"ab\"",
            "[[1],[",
            "[[1],[\"x\"]]",
        ] {
            walker.rollback(walker.len()).unwrap();
            assert_eq!(walker.push_all(text.as_bytes()), Ok(()), "{text}");
            let mask = walker.token_mask_reference(&vocab);
            for (id, token) in list.iter().enumerate() {
                let expected = if id as u32 == eos {
                    walker.is_accepting()
                } else {
                    let mut probe = walker.clone();
                    probe.push_all(token.as_deref().unwrap()).is_ok()
                };
                assert_eq!(
                    mask[id >> 5] >> (id & 31) & 1 == 1,
                    expected,
                    "{text:?} + {:?}",
                    words.get(id)
                );
                checked += usize::from(expected);
            }
        }
        assert!(checked > 20, "the prefixes allow some tokens ({checked})");
    }

    #[test]
    fn rollback_restores_and_refusals_change_nothing() {
        let mut r = recognizer("root ::= \"ab\"+");
        assert_eq!(r.push_all(b"abab"), Ok(()));
        assert!(r.is_accepting());
        assert_eq!(r.push_all(b"ax"), Err(1));
        assert_eq!(r.len(), 4);
        r.rollback(3).unwrap();
        assert_eq!(r.len(), 1);
        assert!(!r.is_accepting());
        assert!(r.push(b'b'));
        assert!(r.is_accepting());
        assert!(r.rollback(3).is_err());
    }

    #[test]
    fn lexemes_parse_exactly_what_byte_terminals_parse() {
        // Lexemes that may end early or run on (`[a-b]+` next to `"b"`), nullable ones, a lexeme after a
        // recursive rule, and ambiguity: the lexeme form accepts exactly the byte form's strings and
        // allows exactly the same next bytes after every prefix.
        let grammars = [
            "root ::= [a-b]+ \"b\" [a-b]*",
            "root ::= x*\nx ::= \"(\" x* \")\" | [ab]? \"-\"",
            "root ::= (e \"+\")* e\ne ::= [a-b]+ | \"(\" root \")\"",
            "root ::= a b\na ::= \"a\"* \nb ::= (\"a\" | \"b\")* | \"-\" root",
        ];
        for grammar in grammars {
            let fast = recognizer(grammar);
            let reference = byte_recognizer(grammar);
            assert!(fast.bnf().num_lexemes() > 0, "{grammar}");
            let mut accepted = 0;
            for s in strings(b"ab()+-", 6) {
                let (mut f, mut r) = (fast.clone(), reference.clone());
                let (pf, pr) = (f.push_all(&s), r.push_all(&s));
                assert_eq!(pf, pr, "{grammar}: {:?}", String::from_utf8_lossy(&s));
                if pf.is_ok() {
                    assert_eq!(
                        f.is_accepting(),
                        r.is_accepting(),
                        "{grammar}: {:?}",
                        String::from_utf8_lossy(&s)
                    );
                    assert_eq!(
                        f.allowed_bytes(),
                        r.allowed_bytes(),
                        "{grammar}: {:?}",
                        String::from_utf8_lossy(&s)
                    );
                    accepted += usize::from(f.is_accepting());
                }
            }
            assert!(accepted > 3, "{grammar}: {accepted}");
        }
    }
}
