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

use super::earley::{LexemeItem, Recognizer};
use super::lower::Bnf;
use super::regex::{ByteDfa, DEAD};
use super::slices;
use super::trie::TokenTrie;
use super::vocab::Vocabulary;
use super::StateMask;

/// What is cached for one `(lexeme, state)`.
#[derive(Debug)]
struct LexemeStateMask {
    /// Tokens that stay inside the lexeme.
    inside: StateMask,
    /// Tokens in which the lexeme can end before the token does.
    after: Option<Ends>,
}

/// Where the lexeme can end inside tokens: each group `(_, k, node)` stands for the tokens below trie node
/// `node` (which leave the lexeme at `node`'s byte), in which the lexeme can end after their first `k`
/// bytes. The groups come out of the walk already grouped by subtree, so nothing is sorted or copied.
#[derive(Debug)]
struct Ends {
    /// `(in_rest, k, node)`: `node` is in the plain-text slice's rest trie when `in_rest`, else in the
    /// vocabulary's trie.
    groups: Vec<(bool, u32, u32)>,
}

/// Per-`(lexeme, state)` mask caches of one grammar for one vocabulary: frozen and shareable, filled
/// lazily (each entry once, whichever thread gets there first).
#[derive(Debug)]
pub struct LexemeMasks {
    vocab: Arc<Vocabulary>,
    bnf: Arc<Bnf>,
    /// `cells[l][dfa.index(state)]`.
    cells: Vec<Vec<OnceLock<Box<LexemeStateMask>>>>,
    /// Take the plain-text slice's row where it decides (off only to test it against the full walk).
    use_slices: bool,
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
        LexemeMasks {
            vocab,
            bnf,
            cells,
            use_slices: true,
        }
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
        let main = self.vocab.trie();
        let mut groups: Vec<(bool, u32, u32)> = Vec::new();
        // Where plain characters are treated alike (inside a string), the plain-text tokens are decided
        // by their length alone: a precomputed row. Only the other tokens, and the plain-text tokens that
        // start with one of the plan's exceptional characters, are walked.
        let plan = if self.use_slices {
            slices::plain_plan(dfa, state)
        } else {
            None
        };
        let inside = match plan {
            Some(plan) => {
                let slice = self.vocab.plain_text();
                let mut inside = match plan.chars {
                    Some(chars) => slice.row(chars).to_vec(),
                    None => vec![0u32; self.vocab.mask_words()],
                };
                for &b in &plan.exceptions {
                    if let Some(child) = main.child(0, b) {
                        for &id in main.subtree_tokens(child) {
                            inside[id as usize >> 5] &= !(1 << (id & 31));
                        }
                    }
                }
                walk(dfa, state, slice.rest(), None, &mut inside, &mut |k, node| {
                    groups.push((true, k, node));
                });
                if !plan.exceptions.is_empty() {
                    let first = Some(plan.exceptions.as_slice());
                    walk(dfa, state, main, first, &mut inside, &mut |k, node| {
                        groups.push((false, k, node));
                    });
                }
                inside
            }
            None => {
                let mut inside = vec![0u32; self.vocab.mask_words()];
                walk(dfa, state, main, None, &mut inside, &mut |k, node| {
                    groups.push((false, k, node));
                });
                inside
            }
        };
        LexemeStateMask {
            inside: StateMask::from_row(inside),
            after: (!groups.is_empty()).then_some(Ends { groups }),
        }
    }

    /// Write the normal tokens the parser allows next into the first `vocab.mask_words()` words of `row`
    /// (EOS is the caller's business). The parser is pushed to and rolled back to where it was (so the
    /// chart is never copied).
    pub fn fill(&self, parser: &mut Recognizer, row: &mut [u32]) {
        let row = &mut row[..self.vocab.mask_words()];
        row.fill(0);
        let frontier: Vec<LexemeItem> = parser.frontier().collect();
        let base = parser.len();
        let walker = parser;
        for (lexeme, state, origin) in frontier {
            let cell = self.cell(lexeme, state);
            cell.inside.or_into(row);
            let Some(after) = &cell.after else { continue };
            if walker.push_completion(lexeme, origin) {
                let ended = base + 1;
                // most groups die at their first byte: test it against the completion's allowed bytes
                let first_bytes = walker.allowed_bytes();
                let mut mark = |ids: &[u32]| {
                    for &id in ids {
                        row[id as usize >> 5] |= 1 << (id & 31);
                    }
                };
                for &(in_rest, k, node) in &after.groups {
                    let trie = if in_rest {
                        self.vocab.plain_text().rest()
                    } else {
                        self.vocab.trie()
                    };
                    let node = node as usize;
                    walker.truncate(ended);
                    // the bytes from the lexeme's end to `node`, spelled by any token below it
                    let Some(&token) = trie.subtree_tokens(node).first() else {
                        continue;
                    };
                    let bytes = &self.vocab.token_bytes(token as usize)[k as usize..trie.depth(node)];
                    let first = bytes[0];
                    if first_bytes[usize::from(first / 64)] >> (first % 64) & 1 == 0
                        || walker.push_all(bytes).is_err()
                    {
                        continue;
                    }
                    mark(trie.tokens_at(node));
                    let here = walker.len();
                    trie.walk_nested(
                        node,
                        |depth, byte| {
                            walker.truncate(here + depth);
                            walker.push(byte)
                        },
                        &mut mark,
                    );
                }
            }
            walker.truncate(base);
        }
    }
}

/// The root of a walk restricted to some first bytes (never an automaton state: those are table offsets).
const ROOT: u32 = u32::MAX;

/// Walk `trie` through the lexeme automaton from `state`, setting the bits of the tokens that stay inside
/// the lexeme and reporting `(k, node)` for every pruned node below a point `k` bytes deep where the
/// lexeme could end. With `first`, only tokens starting with one of those bytes are walked.
fn walk(
    dfa: &ByteDfa,
    state: u32,
    trie: &TokenTrie,
    first: Option<&[u8]>,
    inside: &mut [u32],
    report: &mut impl FnMut(u32, u32),
) {
    let root = if first.is_some() { ROOT } else { state };
    trie.walk_reporting_dead(
        root,
        |s, b| {
            let t = if s == ROOT {
                if !first.is_some_and(|f| f.contains(&b)) {
                    return None;
                }
                dfa.next(state, b)
            } else {
                dfa.next(s, b)
            };
            (t != DEAD).then_some(t)
        },
        |ids, _| {
            for &id in ids {
                inside[id as usize >> 5] |= 1 << (id & 31);
            }
        },
        |node, path| {
            // Every token below `node` leaves the lexeme at `node`; it can still be allowed if the lexeme
            // could end at an earlier point of the path.
            for (k, &s) in path.iter().enumerate().skip(1) {
                if dfa.is_accepting(s) {
                    report(k as u32, node as u32);
                }
            }
        },
    );
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
        assert_bnf_masks_match_reference(&ebnf::parse(grammar).unwrap(), grammar, sentences, vocab);
    }

    fn assert_bnf_masks_match_reference(
        cfg: &super::super::cfg::Cfg,
        grammar: &str,
        sentences: &[&str],
        vocab: &Arc<Vocabulary>,
    ) {
        let bnf = Arc::new(Bnf::lower(cfg).unwrap());
        let masks = LexemeMasks::new(Arc::clone(&bnf), Arc::clone(vocab));
        let eos = vocab.eos_ids()[0];
        let mut allowed_somewhere = 0;
        for sentence in sentences {
            let mut parser = Recognizer::new(Arc::clone(&bnf));
            for (i, &b) in sentence.as_bytes().iter().enumerate() {
                let mut row = vec![u32::MAX; vocab.mask_words()];
                masks.fill(&mut parser, &mut row);
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

    #[test]
    fn the_plain_text_slice_gives_the_same_masks() {
        // strings of any plain character, bounded and not, where the slice's rows decide most tokens
        let strings = r#"root ::= "[" (s ("," s)*)? "]"
s ::= short | long
short ::= "<" [^"\\\x00-\x1f\x7f]{0,3} ">"
long ::= "\"" ([^"\\\x00-\x1f\x7f] | "\\n")* "\"""#;
        let words = [
            "[", "]", ",", "<", ">", "\"", "a", "ab", "abc", "abcd", "é", "日本", "a>", "ab>,", "\",", "\"]",
            "x\"", "\\n", "\\", "\u{7f}", "<a", "\"a", ">]", "\"\"", "abcdefgh", " ", "b c",
        ];
        assert_masks_match_reference(
            strings,
            &["[<ab>,\"x é\\n\",<>,\"\"]", "[<日本a>,\"abcdefgh\",\"b c\"]"],
            &vocab(&words),
        );
    }

    #[test]
    fn keys_other_than_the_named_ones_walk_only_their_exceptional_first_characters() {
        let schema = r#"{"properties":{"ab":{"type":"integer"},"x":{"type":"null"}},
                        "additionalProperties":{"type":"string","maxLength":3}}"#;
        let compiled =
            super::super::json_schema::compile(schema, &super::super::json_schema::SchemaOptions::default())
                .unwrap();
        let words = [
            "{", "}", ",", ":", "\"", "\"a", "\"ab", "\"x", "ab", "a", "x", "xy", "y", "b c", "é", "1",
            "null", "\":", "\":\"", "\",\"", "\"}", "ab\":", "x\":", "abc", "\"b",
        ];
        assert_bnf_masks_match_reference(
            &compiled.cfg,
            schema,
            &[
                r#"{"ab":1,"x":null,"a":"é","xy":"ab","b c":""}"#,
                r#"{"abc":"x","y":"","a":"a"}"#,
            ],
            &vocab(&words),
        );
    }

    #[test]
    fn exceptional_first_characters_are_walked() {
        // after the quote, `a` allows only digits while every other plain character allows anything
        let grammar = r#"root ::= "\"" ("a" [0-9]* | [^"\\\x00-\x1f\x7fa] [^"\\\x00-\x1f\x7f]*) "\"""#;
        let words = ["\"", "a", "ab", "a1", "a12", "ba", "é", "b", "1", "a\"", "b\""];
        assert_masks_match_reference(grammar, &["\"a12\"", "\"bé1a\""], &vocab(&words));
    }
}
