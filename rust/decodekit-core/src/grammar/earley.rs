//! A byte-level Earley recognizer for a [`Cfg`]: any context-free grammar (left recursion, ambiguity and
//! empty rules included, no depth limit), one byte at a time, with unlimited rollback.
//!
//! [`Bnf::lower`] turns the grammar tree into plain productions whose terminals are byte ranges: a
//! character class becomes the UTF-8 byte sequences of its scalar values, a repetition a left-recursive
//! (unbounded) or nested-optional (bounded) helper rule. [`Recognizer`] keeps one Earley set per byte
//! consumed (the empty-rule handling of Aycock and Horspool), so `rollback(n)` just drops sets.
//!
//! It is meant as the reference that a faster lexer-driven parser will be checked against; it is not
//! yet reachable from Python.

use std::sync::Arc;

use regex_syntax::utf8::Utf8Sequences;
use rustc_hash::FxHashSet;

use super::cfg::{Cfg, Expr};
use super::vocab::Vocabulary;
use crate::error::{CoreError, Result};

/// A grammar symbol: a nonterminal or an inclusive byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Symbol {
    /// A nonterminal (rule or helper).
    Nonterminal(u32),
    /// One byte in `lo..=hi`.
    Bytes(u8, u8),
}

/// One production `lhs -> rhs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Production {
    /// The nonterminal it defines.
    pub lhs: u32,
    /// What it expands to (empty: the empty string).
    pub rhs: Vec<Symbol>,
}

/// A grammar in plain productions over byte ranges, ready for Earley parsing.
#[derive(Debug, Clone)]
pub struct Bnf {
    productions: Vec<Production>,
    by_lhs: Vec<Vec<u32>>,
    nullable: Vec<bool>,
    /// The augmented start production `S' -> root` (its index).
    start: u32,
}

/// At most this many productions come out of lowering one grammar.
pub const MAX_PRODUCTIONS: usize = 1 << 20;

impl Bnf {
    /// Lower `cfg` (rules keep their indices as nonterminals; helpers are numbered after them).
    pub fn lower(cfg: &Cfg) -> Result<Self> {
        let mut lowering = Lowering {
            productions: Vec::new(),
            next_nonterminal: u32::try_from(cfg.rules().len() + 1)
                .map_err(|_| CoreError::ResourceLimit("too many grammar rules".into()))?,
        };
        for (i, rule) in cfg.rules().iter().enumerate() {
            let rhs = lowering.sequence(&rule.expr)?;
            lowering.add(i as u32, rhs)?;
        }
        let start_symbol = cfg.rules().len() as u32;
        lowering.add(start_symbol, vec![Symbol::Nonterminal(cfg.root() as u32)])?;
        let start = (lowering.productions.len() - 1) as u32;
        let count = lowering.next_nonterminal as usize;
        let mut by_lhs = vec![Vec::new(); count];
        for (i, p) in lowering.productions.iter().enumerate() {
            by_lhs[p.lhs as usize].push(i as u32);
        }
        let nullable = nullable_set(&lowering.productions, count);
        Ok(Bnf {
            productions: lowering.productions,
            by_lhs,
            nullable,
            start,
        })
    }

    /// The productions (the last one is the augmented start).
    #[must_use]
    pub fn productions(&self) -> &[Production] {
        &self.productions
    }
}

fn nullable_set(productions: &[Production], count: usize) -> Vec<bool> {
    let mut nullable = vec![false; count];
    loop {
        let mut changed = false;
        for p in productions {
            if !nullable[p.lhs as usize]
                && p.rhs
                    .iter()
                    .all(|s| matches!(s, Symbol::Nonterminal(n) if nullable[*n as usize]))
            {
                nullable[p.lhs as usize] = true;
                changed = true;
            }
        }
        if !changed {
            return nullable;
        }
    }
}

struct Lowering {
    productions: Vec<Production>,
    next_nonterminal: u32,
}

impl Lowering {
    fn add(&mut self, lhs: u32, rhs: Vec<Symbol>) -> Result<()> {
        if self.productions.len() >= MAX_PRODUCTIONS {
            return Err(CoreError::ResourceLimit(format!(
                "the grammar expands to more than {MAX_PRODUCTIONS} productions"
            )));
        }
        self.productions.push(Production { lhs, rhs });
        Ok(())
    }

    fn fresh(&mut self) -> Result<u32> {
        let n = self.next_nonterminal;
        self.next_nonterminal = n
            .checked_add(1)
            .ok_or_else(|| CoreError::ResourceLimit("too many grammar symbols".into()))?;
        Ok(n)
    }

    /// A helper nonterminal with one production per alternative.
    fn helper(&mut self, alternatives: Vec<Vec<Symbol>>) -> Result<Symbol> {
        let n = self.fresh()?;
        for rhs in alternatives {
            self.add(n, rhs)?;
        }
        Ok(Symbol::Nonterminal(n))
    }

    /// The symbols of `expr` as one sequence (helpers made as needed).
    fn sequence(&mut self, expr: &Expr) -> Result<Vec<Symbol>> {
        Ok(match expr {
            Expr::Empty => Vec::new(),
            Expr::Bytes(bytes) => bytes.iter().map(|&b| Symbol::Bytes(b, b)).collect(),
            Expr::Class { ranges, negated } => {
                let mut alternatives: Vec<Vec<Symbol>> = class_ranges(ranges, *negated)
                    .into_iter()
                    .flat_map(|(lo, hi)| Utf8Sequences::new(lo, hi))
                    .map(|seq| {
                        seq.as_slice()
                            .iter()
                            .map(|r| Symbol::Bytes(r.start, r.end))
                            .collect()
                    })
                    .collect();
                if alternatives.len() == 1 {
                    alternatives.pop().unwrap_or_default()
                } else {
                    vec![self.helper(alternatives)?]
                }
            }
            Expr::Rule(i) => vec![Symbol::Nonterminal(*i as u32)],
            Expr::Seq(parts) => {
                let mut out = Vec::new();
                for part in parts {
                    out.extend(self.sequence(part)?);
                }
                out
            }
            Expr::Alt(alternatives) => {
                let lowered = alternatives
                    .iter()
                    .map(|a| self.sequence(a))
                    .collect::<Result<Vec<_>>>()?;
                vec![self.helper(lowered)?]
            }
            Expr::Repeat { expr, min, max } => self.repeat(expr, *min, *max)?,
        })
    }

    fn repeat(&mut self, expr: &Expr, min: u32, max: Option<u32>) -> Result<Vec<Symbol>> {
        let body = self.sequence(expr)?;
        let item = if body.len() == 1 {
            body[0]
        } else {
            self.helper(vec![body])?
        };
        let mut out = vec![item; min as usize];
        match max {
            None => {
                // star -> ε | star item (left recursion suits Earley)
                let star = self.fresh()?;
                self.add(star, Vec::new())?;
                self.add(star, vec![Symbol::Nonterminal(star), item])?;
                out.push(Symbol::Nonterminal(star));
            }
            Some(max) if max > min => {
                // opt_1 -> ε | item; opt_k -> ε | item opt_(k-1)
                let mut inner: Option<Symbol> = None;
                for _ in min..max {
                    let tail = match inner {
                        Some(s) => vec![item, s],
                        None => vec![item],
                    };
                    inner = Some(self.helper(vec![Vec::new(), tail])?);
                }
                out.extend(inner);
            }
            Some(_) => {}
        }
        Ok(out)
    }
}

/// The inclusive scalar-value ranges a class matches (the complement for a negated one), surrogates
/// excluded.
fn class_ranges(ranges: &[(char, char)], negated: bool) -> Vec<(char, char)> {
    let mut sorted: Vec<(u32, u32)> = ranges.iter().map(|&(a, b)| (a as u32, b as u32)).collect();
    sorted.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::new();
    for (lo, hi) in sorted {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    if negated {
        let mut complement = Vec::new();
        let mut next = 0u32;
        for (lo, hi) in merged {
            if lo > next {
                complement.push((next, lo - 1));
            }
            next = hi + 1;
        }
        if next <= 0x0010_FFFF {
            complement.push((next, 0x0010_FFFF));
        }
        merged = complement;
    }
    // split around the surrogates, which are not scalar values
    let mut out = Vec::new();
    for (lo, hi) in merged {
        for (a, b) in [(lo, hi.min(0xD7FF)), (lo.max(0xE000), hi)] {
            if let (Some(a), Some(b)) = (char::from_u32(a), char::from_u32(b)) {
                if a <= b {
                    out.push((a, b));
                }
            }
        }
    }
    out
}

/// An Earley item: production, dot position, origin set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Item {
    production: u32,
    dot: u32,
    origin: u32,
}

/// Follows one byte string through a [`Bnf`], byte by byte, with unlimited rollback.
#[derive(Debug, Clone)]
pub struct Recognizer {
    bnf: Arc<Bnf>,
    sets: Vec<Vec<Item>>,
}

impl Recognizer {
    /// At the start of the text.
    #[must_use]
    pub fn new(bnf: Arc<Bnf>) -> Self {
        let mut recognizer = Recognizer {
            bnf,
            sets: Vec::new(),
        };
        let start = Item {
            production: recognizer.bnf.start,
            dot: 0,
            origin: 0,
        };
        let set = recognizer.close(vec![start]);
        recognizer.sets.push(set);
        recognizer
    }

    /// Bytes consumed so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.sets.len() - 1
    }

    /// Whether no byte was consumed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn next_symbol(&self, item: Item) -> Option<Symbol> {
        self.bnf.productions[item.production as usize]
            .rhs
            .get(item.dot as usize)
            .copied()
    }

    /// Whether the text so far is a complete sentence of the grammar.
    #[must_use]
    pub fn is_accepting(&self) -> bool {
        let start = self.bnf.start;
        self.sets.last().is_some_and(|set| {
            set.iter()
                .any(|i| i.production == start && i.origin == 0 && i.dot == 1)
        })
    }

    /// The bytes that can come next, as a 256-bit set (bit `b % 64` of word `b / 64`).
    #[must_use]
    pub fn allowed_bytes(&self) -> [u64; 4] {
        let mut allowed = [0u64; 4];
        for &item in self.sets.last().into_iter().flatten() {
            if let Some(Symbol::Bytes(lo, hi)) = self.next_symbol(item) {
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
        let Some(current) = self.sets.last() else {
            return false;
        };
        let scanned: Vec<Item> = current
            .iter()
            .filter(|&&item| matches!(self.next_symbol(item), Some(Symbol::Bytes(lo, hi)) if lo <= byte && byte <= hi))
            .map(|&item| Item {
                dot: item.dot + 1,
                ..item
            })
            .collect();
        if scanned.is_empty() {
            return false;
        }
        let set = self.close(scanned);
        self.sets.push(set);
        true
    }

    /// Consume all of `bytes`, or none of them: returns how many were allowed before the first refused
    /// one (the state is then as before the call).
    pub fn push_all(&mut self, bytes: &[u8]) -> std::result::Result<(), usize> {
        for (i, &b) in bytes.iter().enumerate() {
            if !self.push(b) {
                self.sets.truncate(self.sets.len() - i);
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
        self.sets.truncate(self.sets.len() - n);
        Ok(())
    }

    /// The token mask here: bit `id % 32` of word `id / 32` is set for every normal token of `vocab`
    /// whose bytes the grammar allows next, and for the EOS ids when the text so far is a sentence.
    /// Walks the vocabulary's token trie, pushing and rolling back one byte per node.
    #[must_use]
    pub fn token_mask(&self, vocab: &Vocabulary) -> Vec<u32> {
        let mut mask = vec![0u32; vocab.mask_words()];
        let mut walker = self.clone();
        let base = walker.sets.len();
        vocab.trie().walk_nested(
            0,
            |depth, byte| {
                walker.sets.truncate(base + depth);
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

    /// The Earley closure (prediction and completion) of `seed` as the set at position `self.sets.len()`.
    fn close(&self, seed: Vec<Item>) -> Vec<Item> {
        let here = self.sets.len() as u32;
        let bnf = &*self.bnf;
        let mut seen: FxHashSet<Item> = seed.iter().copied().collect();
        let mut set = seed;
        let mut i = 0;
        while i < set.len() {
            let item = set[i];
            i += 1;
            let production = &bnf.productions[item.production as usize];
            let mut add = |new: Item, set: &mut Vec<Item>| {
                if seen.insert(new) {
                    set.push(new);
                }
            };
            match production.rhs.get(item.dot as usize) {
                Some(&Symbol::Nonterminal(n)) => {
                    for &p in &bnf.by_lhs[n as usize] {
                        add(
                            Item {
                                production: p,
                                dot: 0,
                                origin: here,
                            },
                            &mut set,
                        );
                    }
                    if bnf.nullable[n as usize] {
                        add(
                            Item {
                                dot: item.dot + 1,
                                ..item
                            },
                            &mut set,
                        );
                    }
                }
                Some(Symbol::Bytes(..)) => {}
                None => {
                    // complete: advance every item at the origin waiting for this production's lhs
                    let lhs = production.lhs;
                    let waiting: Vec<Item> = if item.origin == here {
                        set.clone()
                    } else {
                        self.sets[item.origin as usize].clone()
                    };
                    for parent in waiting {
                        if bnf.productions[parent.production as usize]
                            .rhs
                            .get(parent.dot as usize)
                            == Some(&Symbol::Nonterminal(lhs))
                        {
                            add(
                                Item {
                                    dot: parent.dot + 1,
                                    ..parent
                                },
                                &mut set,
                            );
                        }
                    }
                }
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ebnf, regex};
    use super::*;

    fn recognizer(grammar: &str) -> Recognizer {
        Recognizer::new(Arc::new(Bnf::lower(&ebnf::parse(grammar).unwrap()).unwrap()))
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
            let r = recognizer(grammar);
            assert_agrees_with_regex(&r, pattern, b"abc-", 6);
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
            let r = Recognizer::new(Arc::new(Bnf::lower(&cfg).unwrap()));
            assert_agrees_with_regex(&r, pattern, b"abcAB-_", 4);
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
            let mask = walker.token_mask(&vocab);
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
}
