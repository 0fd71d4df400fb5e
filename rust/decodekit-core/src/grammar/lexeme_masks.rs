//! Token masks for a context-free grammar, computed from per-lexeme-state caches instead of a parse of
//! every token.
//!
//! After the Earley closure, everything that can read the next byte is a lexeme in progress (the
//! parser's *frontier*). A token is allowed exactly when, for some frontier item, either
//! 1. all its bytes keep that lexeme's automaton alive (the lexeme goes on past the token), or
//! 2. the lexeme can end after its first `k` bytes and the parser accepts the rest of the token from the
//!    state that ending leaves.
//!
//! Both parts depend only on the lexeme and its automaton state, not on the rest of the parse, so they are
//! computed once per `(lexeme, state)` by one walk of the token trie and cached: (1) as a bitmask, (2) as a
//! small trie of the token *suffixes* that follow a possible end. A mask is then the union of the cached
//! bitmasks of the frontier, plus a walk of each suffix trie through the real parser, which is short
//! because a suffix usually dies at its first byte.

use std::sync::{Arc, OnceLock};

use super::earley::Recognizer;
use super::lower::Bnf;
use super::regex::DEAD;
use super::trie::TokenTrie;
use super::vocab::Vocabulary;
use super::StateMask;

/// What is cached for one `(lexeme, state)`.
#[derive(Debug)]
struct LexemeStateMask {
    /// Tokens that stay inside the lexeme.
    inside: StateMask,
    /// Tokens in which the lexeme can end before the token does, by the bytes that follow the end.
    after: Option<Suffixes>,
}

/// Token suffixes in a trie; entry `e` of the trie is a suffix of token `ids[e]`.
#[derive(Debug)]
struct Suffixes {
    trie: TokenTrie,
    ids: Vec<u32>,
}

/// Per-`(lexeme, state)` mask caches of one grammar for one vocabulary: frozen and shareable, filled
/// lazily (each entry once, whichever thread gets there first).
#[derive(Debug)]
pub struct LexemeMasks {
    vocab: Arc<Vocabulary>,
    bnf: Arc<Bnf>,
    /// `cells[l][dfa.index(state)]`.
    cells: Vec<Vec<OnceLock<Box<LexemeStateMask>>>>,
}

impl LexemeMasks {
    /// Empty caches for `bnf` over `vocab`.
    #[must_use]
    pub fn new(bnf: Arc<Bnf>, vocab: Arc<Vocabulary>) -> Self {
        let cells = (0..bnf.num_lexemes() as u32)
            .map(|l| {
                (0..=bnf.lexeme(l).num_states())
                    .map(|_| OnceLock::new())
                    .collect()
            })
            .collect();
        LexemeMasks { vocab, bnf, cells }
    }

    /// The grammar.
    #[must_use]
    pub fn bnf(&self) -> &Arc<Bnf> {
        &self.bnf
    }

    /// Number of `(lexeme, state)` entries computed so far.
    #[must_use]
    pub fn num_cached(&self) -> usize {
        self.cells.iter().flatten().filter(|c| c.get().is_some()).count()
    }

    /// Total automaton states over all lexemes.
    #[must_use]
    pub fn num_states(&self) -> usize {
        self.cells.iter().map(|c| c.len() - 1).sum()
    }

    /// Compute every `(lexeme, state)` entry now, on the library's thread pool.
    pub fn precompute(&self) -> crate::error::Result<()> {
        let all: Vec<(u32, u32)> = (0..self.bnf.num_lexemes() as u32)
            .flat_map(|l| self.bnf.lexeme(l).live_states().map(move |s| (l, s)))
            .collect();
        crate::parallel::map_rows(all.len(), |i| {
            let _ = self.cell(all[i].0, all[i].1);
            Ok(())
        })?;
        Ok(())
    }

    fn cell(&self, lexeme: u32, state: u32) -> &LexemeStateMask {
        let dfa = self.bnf.lexeme(lexeme);
        self.cells[lexeme as usize][dfa.index(state)].get_or_init(|| Box::new(self.compute(lexeme, state)))
    }

    fn compute(&self, lexeme: u32, state: u32) -> LexemeStateMask {
        let dfa = self.bnf.lexeme(lexeme);
        let trie = self.vocab.trie();
        let mut inside = vec![0u32; self.vocab.mask_words()];
        let mut ends: Vec<(u32, u32)> = Vec::new(); // (token, bytes before the lexeme's end)
        trie.walk_reporting_dead(
            state,
            |s, b| {
                let t = dfa.next(s, b);
                (t != DEAD).then_some(t)
            },
            |ids, _| {
                for &id in ids {
                    inside[id as usize >> 5] |= 1 << (id & 31);
                }
            },
            |node, path| {
                // Every token below `node` leaves the lexeme at `node`; it can still be allowed if the
                // lexeme could end at an earlier point of the path.
                for (k, &s) in path.iter().enumerate().skip(1) {
                    if dfa.is_accepting(s) {
                        ends.extend(trie.subtree_tokens(node).iter().map(|&id| (id, k as u32)));
                    }
                }
            },
        );
        let after = (!ends.is_empty()).then(|| {
            let vocab = &self.vocab;
            let suffix = |e: usize| {
                let (id, k) = ends[e];
                Some(&vocab.token_bytes(id as usize)[k as usize..])
            };
            Suffixes {
                trie: TokenTrie::build(ends.len(), suffix),
                ids: ends.iter().map(|&(id, _)| id).collect(),
            }
        });
        LexemeStateMask {
            inside: StateMask::from_row(inside),
            after,
        }
    }

    /// Write the normal tokens the parser allows next into the first `vocab.mask_words()` words of `row`
    /// (EOS is the caller's business).
    pub fn fill(&self, parser: &Recognizer, row: &mut [u32]) {
        let row = &mut row[..self.vocab.mask_words()];
        row.fill(0);
        let mut walker: Option<Recognizer> = None;
        for (lexeme, state, origin) in parser.frontier() {
            let cell = self.cell(lexeme, state);
            cell.inside.or_into(row);
            let Some(after) = &cell.after else { continue };
            let walker = walker.get_or_insert_with(|| parser.clone());
            let base = walker.len();
            if walker.push_completion(lexeme, origin) {
                after.trie.walk_nested(
                    0,
                    |depth, byte| {
                        walker.truncate(base + 1 + depth);
                        walker.push(byte)
                    },
                    |entries| {
                        for &e in entries {
                            let id = after.ids[e as usize];
                            row[id as usize >> 5] |= 1 << (id & 31);
                        }
                    },
                );
            }
            walker.truncate(base);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ebnf;
    use super::*;

    fn vocab(words: &[&str]) -> Arc<Vocabulary> {
        let mut list: Vec<Option<Vec<u8>>> = words.iter().map(|w| Some(w.as_bytes().to_vec())).collect();
        list.push(Some(b"</s>".to_vec()));
        let eos = (list.len() - 1) as u32;
        Arc::new(Vocabulary::new(&list, &[], &[eos], None).unwrap())
    }

    /// At every prefix of every sentence, the cached masks equal the brute-force parse of each token.
    fn assert_masks_match_reference(grammar: &str, sentences: &[&str], vocab: &Arc<Vocabulary>) {
        let bnf = Arc::new(Bnf::lower(&ebnf::parse(grammar).unwrap()).unwrap());
        let masks = LexemeMasks::new(Arc::clone(&bnf), Arc::clone(vocab));
        let eos = vocab.eos_ids()[0];
        let mut allowed_somewhere = 0;
        for sentence in sentences {
            let mut parser = Recognizer::new(Arc::clone(&bnf));
            for (i, &b) in sentence.as_bytes().iter().enumerate() {
                let mut row = vec![u32::MAX; vocab.mask_words()];
                masks.fill(&parser, &mut row);
                let mut expected = parser.token_mask_reference(vocab);
                expected[eos as usize >> 5] &= !(1 << (eos & 31));
                assert_eq!(row, expected, "{grammar:?} after {:?}", &sentence[..i]);
                allowed_somewhere += row.iter().map(|w| w.count_ones()).sum::<u32>();
                assert!(parser.push(b), "{sentence:?} is a sentence of {grammar:?}");
            }
            assert!(parser.is_accepting(), "{sentence:?}");
        }
        assert!(allowed_somewhere > 0);
    }

    #[test]
    fn cached_masks_equal_parsing_each_token() {
        let json = "root ::= value\nvalue ::= obj | arr | str | num | \"true\"\n\
                    obj ::= \"{\" ws (str ws \":\" ws value ws (\",\" ws str ws \":\" ws value ws)*)? \"}\"\n\
                    arr ::= \"[\" ws (value ws (\",\" ws value ws)*)? \"]\"\n\
                    str ::= \"\\\"\" [a-z ]* \"\\\"\"\nnum ::= \"-\"? [0-9]+ (\".\" [0-9]+)?\nws ::= [ \\n]*";
        let words = [
            "{", "}", "[", "]", ",", ":", "\"", " ", "\n", "{\"", "\":", "\",", "\"}", "\"]", "},", "],",
            "1", "12", "0.", ".5", "-", "-1", "a", "ab", "a b", "true", "tr", "ue", "e}", "1,", "1]", "[1",
            "[]", "{}", " \"", ", ", ": ", "\"a\"", "ab\":", "é", "\"\"",
        ];
        let v = vocab(&words);
        assert_masks_match_reference(
            json,
            &[
                "{\"ab\": [1, -2.5, true], \"c\": {}}",
                "[ \"a b\",{\"x\":[[]]} ,12]",
                "true",
            ],
            &v,
        );
        // expressions with a lexeme that runs on into the next one (`[a-z]+` then `"x"`)
        let expr =
            "root ::= e\ne ::= t (\"+\" t)*\nt ::= f (\"*\" f)*\nf ::= [a-z]+ | [0-9]+ | \"(\" e \")\"";
        let words = [
            "a", "ab", "b+", "+", "*", "(", ")", "(a", "1", "12", "2)", ")*", "b*c", "+(", "x",
        ];
        assert_masks_match_reference(expr, &["ab+1*(ba+2)", "(((x)))*12"], &vocab(&words));
    }
}
