//! One sequence's position in a compiled grammar, with unlimited rollback (rejected speculative drafts).
//!
//! For a regular grammar the matcher keeps the automaton state after every accepted token, so rolling
//! back is a truncation. For a context-free grammar it keeps the Earley parser (whose chart has one set
//! per byte) and how many bytes each token added, so rolling back tokens truncates the chart.

use std::sync::{Arc, Mutex};

use super::earley::Recognizer;
use super::regex::DEAD;
use super::trie::TokenTrie;
use super::{CompiledGrammar, TokenKind};
use crate::error::Result;

/// Marks the position after EOS was accepted (regular grammars).
const TERMINATED: u32 = u32::MAX;

/// A forced run is cut after this many bytes (a grammar can force a long literal, never an endless one).
const MAX_FORCED_BYTES: usize = 1 << 16;

/// Follows one sequence through a [`CompiledGrammar`]. Mutable and not thread-safe (one per sequence);
/// `clone` gives an independent copy.
#[derive(Debug, Clone)]
pub struct Matcher {
    grammar: Arc<CompiledGrammar>,
    track: Track,
}

#[derive(Debug, Clone)]
enum Track {
    /// `states[k]` is the automaton state after `k` accepted tokens ([`TERMINATED`] after EOS).
    Regex(Vec<u32>),
    /// The parser; `ends[k]` is how many bytes it had consumed after `k` accepted tokens; `terminated`
    /// when the last accepted token was EOS.
    Cfg {
        parser: Recognizer,
        ends: Vec<u32>,
        terminated: bool,
    },
}

impl Matcher {
    /// A matcher at the start of the grammar.
    #[must_use]
    pub fn new(grammar: Arc<CompiledGrammar>) -> Self {
        let track = match (grammar.dfa(), grammar.bnf()) {
            (Some(dfa), _) => Track::Regex(vec![dfa.start()]),
            (None, Some(bnf)) => Track::Cfg {
                parser: Recognizer::new(Arc::clone(bnf)),
                ends: vec![0],
                terminated: false,
            },
            (None, None) => unreachable!("a compiled grammar is regular or context-free"),
        };
        Matcher { grammar, track }
    }

    /// The compiled grammar this matcher follows.
    #[must_use]
    pub fn grammar(&self) -> &Arc<CompiledGrammar> {
        &self.grammar
    }

    fn regex_state(states: &[u32]) -> u32 {
        *states.last().expect("a matcher always has its start state")
    }

    /// Whether EOS has been accepted (only EOS is allowed from now on, and accepting it again fails).
    #[must_use]
    pub fn is_terminated(&self) -> bool {
        match &self.track {
            Track::Regex(states) => Self::regex_state(states) == TERMINATED,
            Track::Cfg { terminated, .. } => *terminated,
        }
    }

    /// Whether the text so far is in the language (true after termination too).
    #[must_use]
    pub fn is_accepting(&self) -> bool {
        match &self.track {
            Track::Regex(states) => {
                let s = Self::regex_state(states);
                s == TERMINATED || self.grammar.dfa().is_some_and(|d| d.is_accepting(s))
            }
            Track::Cfg {
                parser, terminated, ..
            } => *terminated || parser.is_accepting(),
        }
    }

    /// How many tokens have been accepted since the start (what `rollback` can undo).
    #[must_use]
    pub fn num_tokens(&self) -> usize {
        match &self.track {
            Track::Regex(states) => states.len() - 1,
            Track::Cfg { ends, .. } => ends.len() - 1,
        }
    }

    /// What `id` is to the grammar: EOS, bytes to match, or a token no grammar allows (special or empty);
    /// an error when it is out of range.
    fn token_class(&self, id: u32) -> Result<TokenClass<'_>> {
        let vocab = self.grammar.vocab();
        if id as usize >= vocab.size() {
            return crate::invalid!(
                "token id {id} is out of range for a vocabulary of size {}",
                vocab.size()
            );
        }
        if vocab.is_eos(id) {
            return Ok(TokenClass::Eos);
        }
        let bytes = vocab.token_bytes(id as usize);
        if vocab.kind(id as usize) != TokenKind::Normal || bytes.is_empty() {
            return Ok(TokenClass::Refused);
        }
        Ok(TokenClass::Bytes(bytes))
    }

    /// Accept `id` if the grammar allows it; `false` (and no change) if not.
    pub fn accept_token(&mut self, id: u32) -> Result<bool> {
        if self.is_terminated() {
            self.token_class(id)?;
            return Ok(false);
        }
        let accepting = self.is_accepting();
        let class = match self.token_class(id)? {
            TokenClass::Eos => None,
            TokenClass::Refused => return Ok(false),
            TokenClass::Bytes(bytes) => Some(bytes.to_vec()),
        };
        match (&mut self.track, class) {
            (Track::Regex(states), None) => {
                if !accepting {
                    return Ok(false);
                }
                states.push(TERMINATED);
            }
            (Track::Regex(states), Some(bytes)) => {
                let dfa = self.grammar.dfa().expect("a regex track has an automaton");
                let next = dfa.run(Self::regex_state(states), &bytes);
                if next == DEAD {
                    return Ok(false);
                }
                states.push(next);
            }
            (
                Track::Cfg {
                    parser,
                    ends,
                    terminated,
                },
                class,
            ) => {
                match class {
                    None if accepting => *terminated = true,
                    None => return Ok(false),
                    Some(bytes) => {
                        if parser.push_all(&bytes).is_err() {
                            return Ok(false);
                        }
                    }
                }
                ends.push(parser.len() as u32);
            }
        }
        Ok(true)
    }

    /// Whether `id` would be accepted now, without accepting it.
    pub fn is_allowed(&mut self, id: u32) -> Result<bool> {
        let accepted = self.accept_token(id)?;
        if accepted {
            self.rollback(1)?;
        }
        Ok(accepted)
    }

    /// Accept tokens until the first one that is not allowed; returns how many were accepted.
    pub fn accept_tokens(&mut self, ids: &[u32]) -> Result<usize> {
        for (i, &id) in ids.iter().enumerate() {
            if !self.accept_token(id)? {
                return Ok(i);
            }
        }
        Ok(ids.len())
    }

    /// Undo the last `n` accepted tokens.
    pub fn rollback(&mut self, n: usize) -> Result<()> {
        if n > self.num_tokens() {
            return crate::invalid!(
                "cannot roll back {n} tokens: only {} have been accepted",
                self.num_tokens()
            );
        }
        match &mut self.track {
            Track::Regex(states) => states.truncate(states.len() - n),
            Track::Cfg {
                parser,
                ends,
                terminated,
            } => {
                if n > 0 {
                    *terminated = false;
                    ends.truncate(ends.len() - n);
                    parser.truncate(*ends.last().unwrap_or(&0) as usize);
                }
            }
        }
        Ok(())
    }

    /// Back to the start of the grammar.
    pub fn reset(&mut self) {
        let n = self.num_tokens();
        // rolling back everything that was accepted cannot fail
        let _ = self.rollback(n);
    }

    /// A snapshot of where the matcher is, without its history: enough to fill a mask elsewhere (batch
    /// fills hand these to the thread pool).
    #[must_use]
    pub fn position(&self) -> Position {
        let at = match &self.track {
            Track::Regex(states) => match Self::regex_state(states) {
                TERMINATED => At::Regex(DEAD, true),
                s => At::Regex(s, false),
            },
            Track::Cfg {
                parser, terminated, ..
            } => At::Cfg(Arc::new(Mutex::new(parser.clone())), *terminated),
        };
        Position {
            grammar: Arc::clone(&self.grammar),
            at,
        }
    }

    /// Whether filling the mask now is a copy of a cached row (no trie walk, no parse).
    #[must_use]
    pub fn is_mask_cached(&self) -> bool {
        match &self.track {
            Track::Regex(states) => match Self::regex_state(states) {
                TERMINATED => true,
                s => self.grammar.is_cached(s),
            },
            Track::Cfg { terminated, .. } => *terminated,
        }
    }

    /// Write the allowed next tokens into one bitmask row (at least `ceil(size/32)` words). A context-free
    /// grammar's parser is stepped and rolled back while the mask is computed, hence `&mut`; the matcher
    /// ends where it was.
    pub fn fill_next_token_bitmask(&mut self, row: &mut [u32]) {
        match &mut self.track {
            Track::Regex(states) => match Self::regex_state(states) {
                TERMINATED => self.grammar.fill_row(DEAD, true, row),
                s => self.grammar.fill_row(s, false, row),
            },
            Track::Cfg {
                parser, terminated, ..
            } => self.grammar.fill_row_cfg(parser, *terminated, row),
        }
    }

    /// The bytes the grammar forces next: the longest run where exactly one byte can follow and the
    /// text cannot end (empty when the next step is a real choice).
    #[must_use]
    pub fn forced_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.is_terminated() {
            return out;
        }
        match &self.track {
            Track::Regex(states) => {
                let dfa = self.grammar.dfa().expect("a regex track has an automaton");
                let mut state = Self::regex_state(states);
                // A forced run cannot revisit a state (that would be a cycle no accepting state is
                // reachable from, and such states are not live), so it is at most one byte per state.
                while out.len() <= dfa.num_states() {
                    let Some(b) = dfa.forced_byte(state) else { break };
                    out.push(b);
                    state = dfa.next(state, b);
                }
            }
            Track::Cfg { parser, .. } => {
                let mut parser = parser.clone();
                while out.len() < MAX_FORCED_BYTES && !parser.is_accepting() {
                    let Some(b) = only_byte(parser.allowed_bytes()) else {
                        break;
                    };
                    if !parser.push(b) {
                        break;
                    }
                    out.push(b);
                }
            }
        }
        out
    }

    /// Tokens that spell a prefix of [`forced_bytes`](Self::forced_bytes) and that decoding can commit to
    /// without asking the model (jump-forward). Each is the longest vocabulary token matching the forced
    /// bytes at its position; the run stops before a position where some allowed token would reach past
    /// the forced bytes, since the model might prefer that longer token.
    #[must_use]
    pub fn forced_tokens(&self) -> Vec<u32> {
        let forced = self.forced_bytes();
        let trie = self.grammar.vocab().trie();
        match &self.track {
            Track::Regex(states) => {
                let dfa = self.grammar.dfa().expect("a regex track has an automaton");
                let mut state = Self::regex_state(states);
                forced_token_run(&forced, trie, |pos, end, node| {
                    if let Some(node) = node {
                        let after = dfa.run(state, &forced[pos..]);
                        let mut reaches_past = false;
                        trie.walk(
                            node,
                            after,
                            |s, b| {
                                let t = dfa.next(s, b);
                                (t != DEAD).then_some(t)
                            },
                            |_, _| reaches_past = true,
                        );
                        return reaches_past;
                    }
                    state = dfa.run(state, &forced[pos..end]);
                    false
                })
            }
            Track::Cfg { parser, .. } => {
                let mut parser = parser.clone();
                forced_token_run(&forced, trie, |pos, end, node| {
                    if let Some(node) = node {
                        let mut probe = parser.clone();
                        if probe.push_all(&forced[pos..]).is_err() {
                            return false;
                        }
                        let base = probe.len();
                        let mut reaches_past = false;
                        trie.walk_nested(
                            node,
                            |depth, b| {
                                probe.truncate(base + depth);
                                probe.push(b)
                            },
                            |_| reaches_past = true,
                        );
                        return reaches_past;
                    }
                    // forced bytes are always allowed
                    let _ = parser.push_all(&forced[pos..end]);
                    false
                })
            }
        }
    }

    /// Fill one bitmask row per node of a draft tree and say which nodes are grammatical.
    ///
    /// `tokens[i]` and `parents[i]` describe the tree in BFS order (`parents[0] = -1`,
    /// `0 <= parents[i] < i`); node 0 is the root, the position the matcher is at now (its token is already
    /// accepted and is not read). Row `i` of `out` (rows of `out.len() / n` words) receives the mask after
    /// the path from the root to node `i`; a node is grammatical when every token on its path is allowed,
    /// and the rows of the others are all zero. The matcher ends where it started.
    pub fn fill_draft_tree_bitmasks(
        &mut self,
        tokens: &[u32],
        parents: &[i32],
        out: &mut [u32],
    ) -> Result<Vec<bool>> {
        let n = tokens.len();
        let children = tree_children(tokens, parents)?;
        let words = self.grammar.vocab().mask_words();
        if out.len() % n != 0 || out.len() / n < words {
            return crate::invalid!(
                "the bitmask needs {n} rows of at least {words} words for {n} tree nodes, got {} words",
                out.len()
            );
        }
        let width = out.len() / n;
        let mut grammatical = vec![false; n];
        out.fill(0);
        grammatical[0] = true;
        self.fill_next_token_bitmask(&mut out[..width]);
        // depth-first, accepting a node's token on the way down and rolling it back on the way up
        let mut stack: Vec<(usize, usize)> = vec![(0, 0)];
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            if let Some(&child) = children[node].get(next) {
                top.1 += 1;
                if self.accept_token(tokens[child])? {
                    grammatical[child] = true;
                    self.fill_next_token_bitmask(&mut out[child * width..(child + 1) * width]);
                    stack.push((child, 0));
                }
            } else {
                stack.pop();
                if node != 0 {
                    self.rollback(1)?;
                }
            }
        }
        Ok(grammatical)
    }
}

enum TokenClass<'a> {
    Eos,
    Refused,
    Bytes(&'a [u8]),
}

/// The one byte set in `allowed`, if exactly one is.
fn only_byte(allowed: [u64; 4]) -> Option<u8> {
    let count: u32 = allowed.iter().map(|w| w.count_ones()).sum();
    if count != 1 {
        return None;
    }
    let (word, bits) = allowed.iter().enumerate().find(|(_, w)| **w != 0)?;
    u8::try_from(word * 64 + bits.trailing_zeros() as usize).ok()
}

/// Children lists of a draft tree, after checking its shape.
fn tree_children(tokens: &[u32], parents: &[i32]) -> Result<Vec<Vec<usize>>> {
    let n = tokens.len();
    if n == 0 || parents.len() != n {
        return crate::invalid!(
            "a draft tree needs at least one node and as many parents as tokens, got {n} tokens and {} parents",
            parents.len()
        );
    }
    if parents[0] != -1 {
        return crate::invalid!("parents[0] must be -1 (node 0 is the root), got {}", parents[0]);
    }
    let mut children = vec![Vec::new(); n];
    for (i, &p) in parents.iter().enumerate().skip(1) {
        if p < 0 || p as usize >= i {
            return crate::invalid!(
                "parents[{i}] = {p}, but a parent must come before its child (0 <= parent < {i})"
            );
        }
        children[p as usize].push(i);
    }
    Ok(children)
}

/// The jump-forward token run over `forced` bytes. `at(pos, end, node)` is told either to check whether
/// a token continuing trie node `node` (which spells `forced[pos..]`) reaches past the forced bytes
/// (`node` is `Some`, returns the answer), or to advance over `forced[pos..end]` (`node` is `None`).
fn forced_token_run(
    forced: &[u8],
    trie: &TokenTrie,
    mut at: impl FnMut(usize, usize, Option<usize>) -> bool,
) -> Vec<u32> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < forced.len() {
        let (mut node, mut end) = (0, pos);
        let mut longest: Option<(u32, usize)> = None;
        while end < forced.len() {
            let Some(child) = trie.child(node, forced[end]) else {
                break;
            };
            node = child;
            end += 1;
            if let Some(&id) = trie.tokens_at(node).first() {
                longest = Some((id, end));
            }
        }
        if end == forced.len() && at(pos, end, Some(node)) {
            break;
        }
        let Some((id, end)) = longest else { break };
        out.push(id);
        at(pos, end, None);
        pos = end;
    }
    out
}

/// Where a [`Matcher`] is, detached from its history.
#[derive(Debug, Clone)]
pub struct Position {
    grammar: Arc<CompiledGrammar>,
    at: At,
}

#[derive(Debug, Clone)]
enum At {
    /// Automaton state, terminated.
    Regex(u32, bool),
    /// The parser (locked while a mask is filled, which steps it and rolls it back), terminated.
    Cfg(Arc<Mutex<Recognizer>>, bool),
}

impl Position {
    /// Whether filling this position's mask is a copy of a cached row (no trie walk).
    #[must_use]
    pub fn is_cached(&self) -> bool {
        match &self.at {
            At::Regex(state, terminated) => *terminated || self.grammar.is_cached(*state),
            At::Cfg(_, terminated) => *terminated,
        }
    }

    /// Write the allowed next tokens into one bitmask row, as [`Matcher::fill_next_token_bitmask`].
    pub fn fill_next_token_bitmask(&self, row: &mut [u32]) {
        match &self.at {
            At::Regex(state, terminated) => self.grammar.fill_row(*state, *terminated, row),
            At::Cfg(parser, terminated) => {
                let mut parser = parser.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                self.grammar.fill_row_cfg(&mut parser, *terminated, row);
            }
        }
    }
}

/// Fill row `i` of `out` (`positions.len()` rows of equal width) for `positions[i]`.
///
/// Rows whose masks still have to be computed run on the library's thread pool; when every mask is
/// already cached each row is a 16 KiB copy at 128k tokens, which the calling thread does faster than a
/// hand-off to the pool would, so it does them itself.
pub fn fill_next_token_bitmask_batch(positions: &[Position], out: &mut [u32]) -> crate::error::Result<()> {
    if positions.is_empty() {
        return Ok(());
    }
    let width = out.len() / positions.len();
    if positions.iter().all(Position::is_cached) {
        for (position, row) in positions.iter().zip(out.chunks_mut(width)) {
            position.fill_next_token_bitmask(row);
        }
        return Ok(());
    }
    crate::parallel::for_each_row_mut(out, positions.len(), |i, row| {
        positions[i].fill_next_token_bitmask(row);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Grammar, RegexLimits, Vocabulary};
    use super::*;

    fn matcher(pattern: &str, tokens: &[&str]) -> Matcher {
        let mut list: Vec<Option<Vec<u8>>> = tokens.iter().map(|t| Some(t.as_bytes().to_vec())).collect();
        list.push(Some(b"</s>".to_vec()));
        let eos = list.len() as u32 - 1;
        let vocab = Arc::new(Vocabulary::new(&list, &[], &[eos], None).unwrap());
        let g = Grammar::regex(pattern, RegexLimits::default()).unwrap();
        Matcher::new(Arc::new(g.compile(vocab, None).unwrap()))
    }

    #[test]
    fn accept_rollback_terminate() {
        // ids: 0 "a", 1 "b", 2 "ab", 3 "c", 4 EOS
        let mut m = matcher("(ab)+c?", &["a", "b", "ab", "c"]);
        assert!(!m.accept_token(1).unwrap());
        assert_eq!(m.accept_tokens(&[0, 1, 2, 1]).unwrap(), 3);
        assert!(m.is_accepting());
        assert!(m.accept_token(3).unwrap());
        assert!(!m.accept_token(0).unwrap());
        assert!(m.accept_token(4).unwrap());
        assert!(m.is_terminated() && m.is_accepting());
        assert!(!m.accept_token(4).unwrap());
        assert_eq!(m.num_tokens(), 5);
        m.rollback(2).unwrap();
        assert!(!m.is_terminated());
        assert!(m.is_accepting());
        assert!(m.rollback(4).is_err());
        assert!(m.accept_token(5).is_err());
        m.reset();
        assert_eq!(m.num_tokens(), 0);
        assert!(!m.is_accepting());
    }

    #[test]
    fn forced_tokens_stop_where_the_model_has_a_choice() {
        // ids: 0 "{", 1 "\"", 2 "{\"", 3 "na", 4 "me", 5 "name", 6 "\":", 7 "x", 8 "name\"", 9 EOS
        let m = matcher(
            r#"\{"name": [a-z]+\}"#,
            &["{", "\"", "{\"", "na", "me", "name", "\":", "x", "name\""],
        );
        assert_eq!(m.forced_bytes(), br#"{"name": "#);
        // `{"` then `name"`; the vocabulary has no token for the `: ` that follows, so the run stops there.
        assert_eq!(m.forced_tokens(), vec![2, 8]);
        // A token that reaches past the forced bytes stops the run before it.
        let m = matcher("abc[a-z]", &["a", "ab", "abc", "abcd", "c", "b"]);
        assert_eq!(m.forced_bytes(), b"abc");
        assert_eq!(m.forced_tokens(), Vec::<u32>::new());
        let m = matcher("abcd[0-9]", &["a", "ab", "abc", "cd", "c", "d"]);
        assert_eq!(m.forced_tokens(), vec![2, 5]);
    }

    fn cfg_matcher(grammar: &str, tokens: &[&str]) -> Matcher {
        let mut list: Vec<Option<Vec<u8>>> = tokens.iter().map(|t| Some(t.as_bytes().to_vec())).collect();
        list.push(Some(b"</s>".to_vec()));
        let eos = list.len() as u32 - 1;
        let vocab = Arc::new(Vocabulary::new(&list, &[], &[eos], None).unwrap());
        let g = Grammar::ebnf(grammar).unwrap();
        Matcher::new(Arc::new(g.compile(vocab, None).unwrap()))
    }

    fn allowed(m: &Matcher) -> Vec<u32> {
        let mut row = vec![0u32; m.grammar().vocab().mask_words()];
        m.clone().fill_next_token_bitmask(&mut row);
        super::super::bitmask::allowed_ids(&row)
    }

    #[test]
    fn context_free_accept_rollback_terminate() {
        // ids: 0 "(", 1 ")", 2 "()", 3 "x", 4 "(x", 5 EOS
        let mut m = cfg_matcher("root ::= \"(\" root \")\" | \"x\"", &["(", ")", "()", "x", "(x"]);
        assert_eq!(allowed(&m), vec![0, 3, 4]);
        assert!(!m.accept_token(1).unwrap());
        assert_eq!(m.accept_tokens(&[0, 4, 2]).unwrap(), 2);
        assert_eq!(allowed(&m), vec![1]);
        assert!(!m.is_accepting());
        assert!(m.is_allowed(1).unwrap());
        assert_eq!(m.num_tokens(), 2);
        assert_eq!(m.forced_bytes(), b"))");
        assert_eq!(m.forced_tokens(), vec![1, 1]);
        assert!(m.accept_tokens(&[1, 1]).is_ok());
        assert!(m.is_accepting());
        assert_eq!(allowed(&m), vec![5]);
        assert!(m.accept_token(5).unwrap());
        assert!(m.is_terminated());
        assert!(!m.accept_token(5).unwrap());
        assert_eq!(allowed(&m), vec![5]);
        m.rollback(3).unwrap();
        assert!(!m.is_terminated());
        assert_eq!(m.num_tokens(), 2);
        assert_eq!(allowed(&m), vec![1]);
        assert!(m.rollback(3).is_err());
        assert!(m.accept_token(6).is_err());
        m.reset();
        assert_eq!(allowed(&m), vec![0, 3, 4]);
    }

    #[test]
    fn draft_tree_rows_are_the_masks_after_each_path() {
        let tokens = ["[", "]", "1", ",", "1,", "[1", "]]", "x"];
        let grammar = "root ::= \"[\" (item (\",\" item)*)? \"]\"\nitem ::= [0-9] | root";
        let mut m = cfg_matcher(grammar, &tokens);
        assert!(m.accept_token(0).unwrap());
        //            root  "1"  ","  "]"  "x"  "["  "1,"  "]"  "]]"
        let tree = [0, 2, 3, 1, 7, 0, 4, 1, 6];
        let parents = [-1, 0, 1, 2, 0, 0, 5, 5, 1];
        let words = m.grammar().vocab().mask_words();
        let mut out = vec![u32::MAX; tree.len() * words];
        let grammatical = m.fill_draft_tree_bitmasks(&tree, &parents, &mut out).unwrap();
        assert_eq!(
            grammatical,
            vec![true, true, true, false, false, true, true, true, false]
        );
        assert_eq!(m.num_tokens(), 1, "the matcher ends where it started");
        for node in 0..tree.len() {
            let row = &out[node * words..(node + 1) * words];
            if !grammatical[node] {
                assert!(row.iter().all(|&w| w == 0), "node {node}");
                continue;
            }
            let mut path = Vec::new();
            let mut i = node;
            while i != 0 {
                path.push(tree[i]);
                i = parents[i] as usize;
            }
            path.reverse();
            let mut fresh = m.clone();
            assert_eq!(fresh.accept_tokens(&path).unwrap(), path.len());
            assert_eq!(
                super::super::bitmask::allowed_ids(row),
                allowed(&fresh),
                "node {node}"
            );
        }
        for (tokens, parents) in [
            (&[0u32, 1][..], &[0, 0][..]),
            (&[0, 1], &[-1, 1]),
            (&[0], &[-1, 0]),
        ] {
            let mut out = vec![0u32; tokens.len() * words];
            assert!(m.fill_draft_tree_bitmasks(tokens, parents, &mut out).is_err());
        }
    }
}
