//! The *plain-text slice* of a vocabulary: the tokens made only of characters that stand for themselves
//! inside a JSON string (no `"`, `\`, control characters or DEL; whole UTF-8 characters), grouped by their
//! length in characters.
//!
//! Inside a string most lexeme states treat every plain character alike, so whether a plain-text token
//! is allowed depends only on how many characters it has. For such a state the mask of the slice is a
//! precomputed row, and only the other tokens (a few percent of a real vocabulary) are walked in the
//! token trie. Computed once per vocabulary, on first use.

use regex_syntax::utf8::Utf8Sequences;

use super::regex::{ByteDfa, DEAD};
use super::trie::TokenTrie;
use super::vocab::{TokenKind, Vocabulary};

/// Tokens with more plain characters than this are left out of the slice (and walked like the rest).
pub const MAX_SLICE_CHARS: usize = 32;

fn is_plain(c: char) -> bool {
    c >= ' ' && c != '"' && c != '\\' && c != '\u{7f}'
}

/// The number of characters of `bytes` if it is whole UTF-8 characters that are all plain.
fn plain_chars(bytes: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.chars().all(is_plain).then(|| text.chars().count())
}

/// The plain-text slice of one vocabulary.
#[derive(Debug)]
pub struct PlainText {
    /// `rows[c]`: the slice's tokens of at most `c` characters, as a bitmask row.
    rows: Vec<Box<[u32]>>,
    /// Every other normal token.
    rest: TokenTrie,
}

impl PlainText {
    /// The slice of `vocab`.
    #[must_use]
    pub fn build(vocab: &Vocabulary) -> Self {
        let words = vocab.mask_words();
        let mut by_count: Vec<Vec<u32>> = vec![Vec::new(); MAX_SLICE_CHARS + 1];
        let mut in_slice = vec![false; vocab.num_tokens()];
        for (id, slot) in in_slice.iter_mut().enumerate() {
            let bytes = vocab.token_bytes(id);
            if vocab.kind(id) != TokenKind::Normal || bytes.is_empty() {
                continue;
            }
            if let Some(n) = plain_chars(bytes).filter(|&n| n <= MAX_SLICE_CHARS) {
                by_count[n].push(id as u32);
                *slot = true;
            }
        }
        let mut rows = Vec::with_capacity(MAX_SLICE_CHARS + 1);
        let mut row = vec![0u32; words];
        for ids in &by_count {
            for &id in ids {
                row[id as usize >> 5] |= 1 << (id & 31);
            }
            rows.push(row.clone().into_boxed_slice());
        }
        let rest = TokenTrie::build(vocab.num_tokens(), |id| {
            (vocab.kind(id) == TokenKind::Normal && !in_slice[id]).then(|| vocab.token_bytes(id))
        });
        PlainText { rows, rest }
    }

    /// The slice's tokens of at most `chars` characters.
    #[must_use]
    pub fn row(&self, chars: usize) -> &[u32] {
        &self.rows[chars.min(MAX_SLICE_CHARS)]
    }

    /// The normal tokens outside the slice.
    #[must_use]
    pub fn rest(&self) -> &TokenTrie {
        &self.rest
    }
}

/// One plain ASCII byte of every byte class that has one.
fn plain_ascii_representatives(dfa: &ByteDfa) -> Vec<u8> {
    let mut out = dfa.class_representatives(0x20, b'"' - 1);
    out.extend(dfa.class_representatives(b'"' + 1, b'\\' - 1));
    out.extend(dfa.class_representatives(b'\\' + 1, 0x7e));
    out
}

/// The states the non-ASCII characters lead to from `state` (each state once).
fn non_ascii_targets(dfa: &ByteDfa, state: u32) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    for seq in Utf8Sequences::new('\u{80}', '\u{10FFFF}') {
        let mut states = vec![state];
        for range in seq.as_slice() {
            let mut next: Vec<u32> = Vec::new();
            let bytes = dfa.class_representatives(range.start, range.end);
            for &s in &states {
                for &b in &bytes {
                    let t = dfa.next(s, b);
                    if !next.contains(&t) {
                        next.push(t);
                    }
                }
            }
            states = next;
        }
        for t in states {
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// The state every plain character leads to from `state` ([`DEAD`] when none is allowed), or `None` when
/// different plain characters lead to different states.
fn uniform_plain_step(dfa: &ByteDfa, state: u32) -> Option<u32> {
    let mut common: Option<u32> = None;
    let mut agree = |t: u32| match common {
        None => {
            common = Some(t);
            true
        }
        Some(c) => c == t,
    };
    for b in plain_ascii_representatives(dfa) {
        if !agree(dfa.next(state, b)) {
            return None;
        }
    }
    for t in non_ascii_targets(dfa, state) {
        if !agree(t) {
            return None;
        }
    }
    common
}

/// How many plain characters any plain-text token may have from `state`, when that alone decides it:
/// every plain character leads to one same next state, again and again, no state on the way accepts
/// (so the lexeme cannot end inside such a token), and the run ends where no plain character is allowed,
/// or loops, or exceeds [`MAX_SLICE_CHARS`]. `None` when that is not so.
#[must_use]
pub fn plain_run(dfa: &ByteDfa, state: u32) -> Option<usize> {
    let mut current = state;
    for run in 0..MAX_SLICE_CHARS {
        let next = uniform_plain_step(dfa, current)?;
        if next == DEAD {
            return Some(run);
        }
        if dfa.is_accepting(next) {
            return None;
        }
        if next == current {
            return Some(MAX_SLICE_CHARS);
        }
        current = next;
    }
    Some(MAX_SLICE_CHARS)
}

/// At most this many ASCII characters may be exceptions in a [`PlainPlan`].
const MAX_EXCEPTIONS: usize = 16;

/// How the plain-text slice decides a state's mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainPlan {
    /// The slice's tokens of at most this many characters are allowed (`None`: none are)...
    pub chars: Option<usize>,
    /// ...except those whose first character is one of these ASCII bytes, which must be walked.
    pub exceptions: Vec<u8>,
}

/// The [`PlainPlan`] of `state`, when there is one: every plain character but a few ASCII ones (at most
/// [`MAX_EXCEPTIONS`]) leads to one same state, from which [`plain_run`] decides the rest of the token,
/// and that state does not accept (so the lexeme cannot end after the first character).
#[must_use]
pub fn plain_plan(dfa: &ByteDfa, state: u32) -> Option<PlainPlan> {
    // every non-ASCII plain character must lead to one state: the plan's "majority"
    let targets = non_ascii_targets(dfa, state);
    let majority = *targets.first()?;
    if targets.iter().any(|&t| t != majority) {
        return None;
    }
    let exceptions: Vec<u8> = (0x20u8..0x7f)
        .filter(|&b| b != b'"' && b != b'\\' && dfa.next(state, b) != majority)
        .collect();
    if exceptions.len() > MAX_EXCEPTIONS {
        return None;
    }
    if majority == DEAD {
        return Some(PlainPlan {
            chars: None,
            exceptions,
        });
    }
    if dfa.is_accepting(majority) {
        return None;
    }
    let rest = if majority == state && exceptions.is_empty() {
        MAX_SLICE_CHARS
    } else {
        plain_run(dfa, majority)?
    };
    Some(PlainPlan {
        chars: Some((rest + 1).min(MAX_SLICE_CHARS)),
        exceptions,
    })
}

#[cfg(test)]
mod tests {
    use super::super::regex::{self, RegexLimits};
    use super::*;

    fn dfa(pattern: &str) -> ByteDfa {
        regex::compile(&regex::parse(pattern).unwrap(), RegexLimits::default()).unwrap()
    }

    #[test]
    fn runs_of_plain_characters() {
        let plain = r#"[^"\\\x00-\x1f\x7f]"#;
        let open = dfa(&format!("\"{plain}*\""));
        assert_eq!(
            plain_run(&open, open.start()),
            Some(0),
            "before the quote no plain character"
        );
        assert_eq!(
            plain_run(&open, open.run(open.start(), b"\"ab")),
            Some(MAX_SLICE_CHARS)
        );
        let bounded = dfa(&format!("\"{plain}{{0,3}}\""));
        assert_eq!(plain_run(&bounded, bounded.run(bounded.start(), b"\"")), Some(3));
        assert_eq!(
            plain_run(&bounded, bounded.run(bounded.start(), "\"é".as_bytes())),
            Some(2)
        );
        assert_eq!(
            plain_run(&bounded, bounded.run(bounded.start(), b"\"abc")),
            Some(0)
        );
        // a lexeme that may end after any character, and one that treats letters differently
        let words = dfa(&format!("{plain}+"));
        assert_eq!(plain_run(&words, words.start()), None);
        let letters = dfa("\"[a-z]*\"");
        assert_eq!(plain_run(&letters, letters.run(letters.start(), b"\"")), None);
        // escapes do not matter: only plain characters are compared
        let escaped = dfa(&format!(r#""({plain}|\\n)*""#));
        assert_eq!(
            plain_run(&escaped, escaped.run(escaped.start(), b"\"")),
            Some(MAX_SLICE_CHARS)
        );
    }

    #[test]
    fn plans_with_exceptional_first_characters() {
        let plain = r#"[^"\\\x00-\x1f\x7f]"#;
        // a key other than "ab" or "x": after the quote, `a` and `x` lead elsewhere
        let keys = dfa(&format!("\"(|[^\"\\\\\\x00-\\x1f\\x7fax]{plain}*|a|a[^\"\\\\\\x00-\\x1f\\x7fb]{plain}*|ab{plain}+|x{plain}+)\""));
        let after_quote = keys.run(keys.start(), b"\"");
        let plan = plain_plan(&keys, after_quote).unwrap();
        assert_eq!(plan.exceptions, vec![b'a', b'x']);
        assert_eq!(plan.chars, Some(MAX_SLICE_CHARS));
        let bounded = dfa(&format!("\"{plain}{{0,3}}\""));
        let plan = plain_plan(&bounded, bounded.run(bounded.start(), b"\"")).unwrap();
        assert_eq!((plan.chars, plan.exceptions.len()), (Some(3), 0));
        let done = plain_plan(&bounded, bounded.run(bounded.start(), b"\"abc")).unwrap();
        assert_eq!(done.chars, None);
        let letters = dfa("\"[a-z]*\"");
        assert!(plain_plan(&letters, letters.run(letters.start(), b"\"")).is_none());
    }

    #[test]
    fn the_slice_splits_the_vocabulary() {
        let words: [&[u8]; 8] = [
            b"ab",
            "日本".as_bytes(),
            b"a\"",
            b"\\n",
            b"\x7f",
            b"",
            b"\xe6\x97",
            b"abcd",
        ];
        let list: Vec<Option<Vec<u8>>> = words.iter().map(|w| Some(w.to_vec())).collect();
        let vocab = Vocabulary::new(&list, &[], &[], None).unwrap();
        let slice = PlainText::build(&vocab);
        let ids = |row: &[u32]| super::super::bitmask::allowed_ids(row);
        assert_eq!(ids(slice.row(0)), Vec::<u32>::new());
        assert_eq!(ids(slice.row(2)), vec![0, 1]);
        assert_eq!(ids(slice.row(100)), vec![0, 1, 7]);
        let mut rest = Vec::new();
        slice
            .rest()
            .walk(0, (), |(), _| Some(()), |t, ()| rest.extend_from_slice(t));
        rest.sort_unstable();
        assert_eq!(
            rest,
            vec![2, 3, 4, 6],
            "quote, escape, DEL and a partial character are walked"
        );
    }
}
