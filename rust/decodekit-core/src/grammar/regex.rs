//! Regular languages as byte automata: a pattern is parsed with `regex-syntax`, determinized with
//! `regex-automata` (a dense DFA under explicit size limits) and copied into a compact table of *live*
//! states only, that is, states from which some accepting state is still reachable.
//!
//! Keeping only live states is what makes masks sound: a byte is allowed exactly when the text stays a
//! prefix of some string of the language. A determinized DFA alone is not enough for that, since a state
//! may be non-dead yet unable to ever match (`a$b`, or an anchor that can no longer hold). The pattern
//! matches the whole text (full-match semantics); `^` and `$` at its ends are accepted and redundant.

use std::collections::{HashMap, VecDeque};

use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};
use regex_syntax::hir::{Hir, HirKind, Look};

use crate::error::{CoreError, Result};

/// Size limits on compiling one pattern.
#[derive(Clone, Copy, Debug)]
pub struct RegexLimits {
    /// Bytes of the NFA, of regex-automata's dense DFA and of its determinization working memory.
    pub max_automaton_bytes: usize,
    /// Live states of the final automaton.
    pub max_states: usize,
}

impl Default for RegexLimits {
    fn default() -> Self {
        RegexLimits {
            max_automaton_bytes: 64 << 20,
            max_states: 100_000,
        }
    }
}

/// The dead state; every transition out of it leads back to it.
pub const DEAD: u32 = 0;

/// A byte DFA with only live states. State ids are premultiplied by the alphabet stride, so a step is
/// one table load: `table[state + class[byte]]`.
#[derive(Debug, Clone)]
pub struct ByteDfa {
    classes: [u8; 256],
    /// Number of bytes in each class.
    class_sizes: Vec<u16>,
    stride: usize,
    table: Vec<u32>,
    accepting: Vec<bool>,
    start: u32,
}

impl ByteDfa {
    /// The start state (never [`DEAD`]: a pattern that matches nothing is refused at compile time).
    #[inline]
    #[must_use]
    pub fn start(&self) -> u32 {
        self.start
    }

    /// The state after `byte`, or [`DEAD`].
    #[inline(always)]
    #[must_use]
    pub fn next(&self, state: u32, byte: u8) -> u32 {
        self.table[state as usize + self.classes[byte as usize] as usize]
    }

    /// The state after all of `bytes`, or [`DEAD`] as soon as one byte is dead.
    #[must_use]
    pub fn run(&self, mut state: u32, bytes: &[u8]) -> u32 {
        for &b in bytes {
            state = self.next(state, b);
            if state == DEAD {
                break;
            }
        }
        state
    }

    /// Whether the text read so far is in the language.
    #[inline]
    #[must_use]
    pub fn is_accepting(&self, state: u32) -> bool {
        self.accepting[state as usize / self.stride]
    }

    /// Number of live states (the dead state not counted).
    #[must_use]
    pub fn num_states(&self) -> usize {
        self.accepting.len() - 1
    }

    /// Every live state.
    pub fn live_states(&self) -> impl Iterator<Item = u32> + '_ {
        (1..self.accepting.len()).map(|row| (row * self.stride) as u32)
    }

    /// The dense index `0..=num_states()` of a state (0 is dead), for per-state caches.
    #[inline]
    #[must_use]
    pub fn index(&self, state: u32) -> usize {
        state as usize / self.stride
    }

    /// The automaton of one literal byte string, built directly (no NFA, no determinization): grammar
    /// keys and punctuation are most lexemes, and this is much cheaper than compiling them as regexes.
    #[must_use]
    pub fn literal(text: &[u8]) -> ByteDfa {
        // one class per distinct byte of the literal, and class 0 for every other byte
        let mut classes = [0u8; 256];
        let mut class_sizes = vec![256u16];
        for &b in text {
            if classes[b as usize] == 0 {
                classes[b as usize] = class_sizes.len() as u8;
                class_sizes[0] -= 1;
                class_sizes.push(1);
            }
        }
        let stride = class_sizes.len();
        // row 0 is dead; row k + 1 is the state after the first k bytes
        let rows = text.len() + 2;
        let mut table = vec![DEAD; rows * stride];
        for (k, &b) in text.iter().enumerate() {
            table[(k + 1) * stride + classes[b as usize] as usize] = ((k + 2) * stride) as u32;
        }
        let mut accepting = vec![false; rows];
        accepting[rows - 1] = true;
        ByteDfa {
            classes,
            class_sizes,
            stride,
            table,
            accepting,
            start: stride as u32,
        }
    }

    /// One byte of every byte class that occurs in `lo..=hi` (bytes of one class step alike).
    #[must_use]
    pub fn class_representatives(&self, lo: u8, hi: u8) -> Vec<u8> {
        let mut seen = [false; 256];
        let mut out = Vec::new();
        for b in lo..=hi {
            let class = self.classes[b as usize] as usize;
            if !seen[class] {
                seen[class] = true;
                out.push(b);
            }
        }
        out
    }

    /// The only byte that can follow `state`, if exactly one can (and the text cannot end here either).
    #[must_use]
    pub fn forced_byte(&self, state: u32) -> Option<u8> {
        if self.is_accepting(state) {
            return None;
        }
        let row = &self.table[state as usize..state as usize + self.stride];
        let mut live = row.iter().enumerate().filter(|(_, &t)| t != DEAD);
        let (class, _) = live.next()?;
        if live.next().is_some() || self.class_sizes[class] != 1 {
            return None;
        }
        (0..=255u8).find(|&b| self.classes[b as usize] as usize == class)
    }
}

/// Parse `pattern`, refusing what a byte automaton cannot enforce with an error that names it.
pub fn parse(pattern: &str) -> Result<Hir> {
    let hir = regex_syntax::ParserBuilder::new()
        .utf8(true)
        .build()
        .parse(pattern)
        .map_err(|e| syntax_error(pattern, &e))?;
    check_supported(&hir)?;
    Ok(hir)
}

fn syntax_error(pattern: &str, error: &regex_syntax::Error) -> CoreError {
    use regex_syntax::ast::ErrorKind as A;
    let (span, what) = match error {
        regex_syntax::Error::Parse(e) => {
            let what = match e.kind() {
                A::UnsupportedLookAround => {
                    "look-around ((?=...), (?!...), (?<=...), (?<!...)) is not supported".to_string()
                }
                A::UnsupportedBackreference => {
                    "backreferences (\\1, \\k<name>) are not supported".to_string()
                }
                kind => kind.to_string(),
            };
            (*e.span(), what)
        }
        regex_syntax::Error::Translate(e) => (*e.span(), e.kind().to_string()),
        other => return CoreError::Grammar(format!("invalid regex {pattern:?}: {other}")),
    };
    CoreError::Grammar(format!(
        "invalid regex at line {}, column {} (offset {}): {what}",
        span.start.line, span.start.column, span.start.offset
    ))
}

fn check_supported(hir: &Hir) -> Result<()> {
    match hir.kind() {
        HirKind::Look(look) => match look {
            Look::Start | Look::End => Ok(()),
            Look::StartLF | Look::EndLF | Look::StartCRLF | Look::EndCRLF => Err(CoreError::Grammar(
                "multi-line anchors ((?m)^ and (?m)$) are not supported; the pattern always matches the whole text"
                    .into(),
            )),
            _ => Err(CoreError::Grammar(
                "word-boundary assertions (\\b, \\B, \\<, \\>) are not supported".into(),
            )),
        },
        HirKind::Repetition(r) => check_supported(&r.sub),
        HirKind::Capture(c) => check_supported(&c.sub),
        HirKind::Concat(list) | HirKind::Alternation(list) => list.iter().try_for_each(check_supported),
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) => Ok(()),
    }
}

/// Compile a parsed pattern into a live-state byte DFA under `limits`.
pub fn compile(hir: &Hir, limits: RegexLimits) -> Result<ByteDfa> {
    let too_big = |what: &str| {
        CoreError::ResourceLimit(format!(
            "the regex's {what} exceeds the limit of {} bytes (max_automaton_bytes)",
            limits.max_automaton_bytes
        ))
    };
    let nfa = thompson::Compiler::new()
        .configure(
            thompson::Config::new()
                .nfa_size_limit(Some(limits.max_automaton_bytes))
                .which_captures(thompson::WhichCaptures::None)
                .shrink(true),
        )
        .build_from_hir(hir)
        .map_err(|e| {
            if e.size_limit().is_some() {
                too_big("NFA")
            } else {
                CoreError::Grammar(format!("cannot compile the regex: {e}"))
            }
        })?;
    let dfa = dense::Builder::new()
        .configure(
            dense::Config::new()
                .match_kind(MatchKind::All)
                .start_kind(StartKind::Anchored)
                .byte_classes(true)
                .dfa_size_limit(Some(limits.max_automaton_bytes))
                .determinize_size_limit(Some(limits.max_automaton_bytes)),
        )
        .build_from_nfa(&nfa)
        .map_err(|e| {
            if e.is_size_limit_exceeded() {
                too_big("DFA")
            } else {
                CoreError::Grammar(format!("cannot compile the regex: {e}"))
            }
        })?;
    let start = dfa
        .start_state(&start::Config::new().anchored(Anchored::Yes))
        .map_err(|e| CoreError::Internal(format!("no anchored start state: {e}")))?;

    // One representative byte per equivalence class.
    let byte_classes = dfa.byte_classes();
    let mut classes = [0u8; 256];
    let mut representative: Vec<u8> = Vec::new();
    let mut class_sizes: Vec<u16> = Vec::new();
    for b in 0..=255u8 {
        let c = byte_classes.get(b);
        classes[b as usize] = c;
        if c as usize >= representative.len() {
            representative.resize(c as usize + 1, b);
            class_sizes.resize(c as usize + 1, 0);
            representative[c as usize] = b;
        }
        class_sizes[c as usize] += 1;
    }
    let stride = representative.len();

    let (edges, accepting) = explore(&dfa, start, &representative, limits)?;
    let (table, accepting, start) = keep_live(&edges, &accepting, stride, limits)?;
    Ok(ByteDfa {
        classes,
        class_sizes,
        stride,
        table,
        accepting,
        start,
    })
}

/// Every state reachable from `start`, as dense indices from 0 (the start): the target of each
/// (state, class) edge (`None` = dead) and whether the text may end in the state.
fn explore(
    dfa: &dense::DFA<Vec<u32>>,
    start: StateID,
    representative: &[u8],
    limits: RegexLimits,
) -> Result<(Vec<Option<usize>>, Vec<bool>)> {
    let mut index_of: HashMap<StateID, usize> = HashMap::new();
    let mut order: Vec<StateID> = Vec::new();
    let mut edges: Vec<Option<usize>> = Vec::new(); // [state * stride + class]
    let mut accepting: Vec<bool> = Vec::new();
    let mut queue = VecDeque::new();
    let dead_or_quit = |id: StateID| dfa.is_dead_state(id) || dfa.is_quit_state(id);
    if !dead_or_quit(start) {
        index_of.insert(start, 0);
        order.push(start);
        queue.push_back(start);
    }
    // The determinized automaton can be far larger than its live part; bound the exploration too.
    let explore_limit = limits.max_states.saturating_mul(4).max(1024);
    while let Some(id) = queue.pop_front() {
        accepting.push(dfa.is_match_state(dfa.next_eoi_state(id)));
        for &b in representative {
            let next = dfa.next_state(id, b);
            if dead_or_quit(next) {
                edges.push(None);
                continue;
            }
            let n = order.len();
            let target = *index_of.entry(next).or_insert_with(|| {
                order.push(next);
                queue.push_back(next);
                n
            });
            edges.push(Some(target));
        }
        if order.len() > explore_limit {
            return Err(CoreError::ResourceLimit(format!(
                "the regex needs more than {explore_limit} automaton states (max_states={})",
                limits.max_states
            )));
        }
    }

    Ok((edges, accepting))
}

/// Keep the states from which an accepting state is reachable, renumbered from row 1 (row 0 is dead)
/// and premultiplied by the stride: `(table, accepting by row, start)`.
fn keep_live(
    edges: &[Option<usize>],
    accepting: &[bool],
    stride: usize,
    limits: RegexLimits,
) -> Result<(Vec<u32>, Vec<bool>, u32)> {
    let n = accepting.len();
    // Live = can reach an accepting state: propagate backwards from the accepting states.
    let mut reverse: Vec<Vec<usize>> = vec![Vec::new(); n];
    for s in 0..n {
        for t in edges[s * stride..(s + 1) * stride].iter().flatten() {
            reverse[*t].push(s);
        }
    }
    let mut live = accepting.to_vec();
    let mut stack: Vec<usize> = (0..n).filter(|&s| accepting[s]).collect();
    while let Some(t) = stack.pop() {
        for &s in &reverse[t] {
            if !live[s] {
                live[s] = true;
                stack.push(s);
            }
        }
    }
    if n == 0 || !live[0] {
        return Err(CoreError::Grammar("the regex matches no string at all".into()));
    }
    // Renumber: dead = row 0, live states from row 1, premultiplied by the stride.
    let mut row_of = vec![0u32; n];
    let mut next_row = 1u32;
    for s in 0..n {
        if live[s] {
            row_of[s] = next_row;
            next_row += 1;
        }
    }
    let rows = next_row as usize;
    if rows - 1 > limits.max_states {
        return Err(CoreError::ResourceLimit(format!(
            "the regex needs {} live automaton states, more than max_states={}",
            rows - 1,
            limits.max_states
        )));
    }
    let mut table = vec![DEAD; rows * stride];
    let mut final_accepting = vec![false; rows];
    for s in (0..n).filter(|&s| live[s]) {
        let row = row_of[s] as usize;
        final_accepting[row] = accepting[s];
        for (c, t) in edges[s * stride..(s + 1) * stride].iter().enumerate() {
            if let Some(t) = *t {
                if live[t] {
                    table[row * stride + c] = row_of[t] * stride as u32;
                }
            }
        }
    }
    Ok((table, final_accepting, row_of[0] * stride as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dfa(pattern: &str) -> ByteDfa {
        compile(&parse(pattern).unwrap(), RegexLimits::default()).unwrap()
    }

    fn full_match(d: &ByteDfa, text: &str) -> bool {
        let s = d.run(d.start(), text.as_bytes());
        s != DEAD && d.is_accepting(s)
    }

    #[test]
    fn full_match_semantics() {
        let d = dfa(r"-?(0|[1-9][0-9]*)");
        assert!(full_match(&d, "-120"));
        assert!(full_match(&d, "0"));
        assert!(!full_match(&d, "01"));
        assert!(!full_match(&d, "-"));
        assert_ne!(d.run(d.start(), b"-"), DEAD);
        assert_eq!(d.run(d.start(), b"x"), DEAD);
        // Alternatives that share a prefix both survive (no leftmost-first pruning).
        let d = dfa("a|ab");
        assert!(full_match(&d, "a") && full_match(&d, "ab"));
    }

    #[test]
    fn unreachable_matches_are_dead() {
        let d = dfa("a$b|c");
        assert_eq!(d.run(d.start(), b"a"), DEAD);
        assert!(full_match(&d, "c"));
        assert!(full_match(&dfa("^abc$"), "abc"));
        assert!(parse(r"a^b").is_ok());
        assert!(matches!(
            compile(&parse("a^b").unwrap(), RegexLimits::default()),
            Err(CoreError::Grammar(_))
        ));
    }

    #[test]
    fn unicode_is_utf8_bytes() {
        let d = dfa("é+");
        assert!(full_match(&d, "éé"));
        let half = d.run(d.start(), &"é".as_bytes()[..1]);
        assert_ne!(half, DEAD);
        assert!(!d.is_accepting(half));
    }

    #[test]
    fn forced_bytes() {
        let d = dfa(r#"\{"name": [a-z]+\}"#);
        let mut s = d.start();
        let mut forced = Vec::new();
        while let Some(b) = d.forced_byte(s) {
            forced.push(b);
            s = d.next(s, b);
        }
        assert_eq!(forced, br#"{"name": "#);
    }

    #[test]
    fn errors_name_the_problem() {
        let msg = |p: &str| match parse(p) {
            Err(CoreError::Grammar(m)) => m,
            other => panic!("{p}: {other:?}"),
        };
        assert!(msg("a(?=b)").contains("look-around"));
        assert!(msg(r"(a)\1").contains("backreferences"));
        assert!(msg(r"\bfoo").contains("word-boundary"));
        assert!(msg("ab(").contains("column 3"), "{}", msg("ab("));
        let limits = RegexLimits {
            max_automaton_bytes: 1 << 20,
            max_states: 100,
        };
        assert!(matches!(
            compile(&parse("[a-z]{1,500}").unwrap(), limits),
            Err(CoreError::ResourceLimit(_))
        ));
        assert!(matches!(
            compile(
                &parse(r"\w{50}").unwrap(),
                RegexLimits {
                    max_automaton_bytes: 1 << 16,
                    max_states: 10
                }
            ),
            Err(CoreError::ResourceLimit(_))
        ));
    }

    #[test]
    fn literal_automata_match_the_compiled_ones() {
        for text in ["", "a", "abcab", "{\"name\":", "é\u{0}\u{ff}"] {
            let built = ByteDfa::literal(text.as_bytes());
            let compiled = dfa(&regex_syntax::escape(text));
            assert_eq!(built.num_states(), compiled.num_states(), "{text:?}");
            for probe in [
                "",
                "a",
                "ab",
                "abcab",
                "abcabc",
                "{\"name\":",
                "{\"n",
                "é",
                "é\u{0}\u{ff}",
                "x",
            ] {
                let run = |d: &ByteDfa| {
                    let s = d.run(d.start(), probe.as_bytes());
                    (s != DEAD, s != DEAD && d.is_accepting(s))
                };
                assert_eq!(run(&built), run(&compiled), "{text:?} on {probe:?}");
            }
        }
    }
}
