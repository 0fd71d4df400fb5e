//! One sequence's position in a compiled grammar: the automaton state after every accepted token, so
//! rolling back any number of tokens (rejected speculative drafts) is a truncation.

use std::sync::Arc;

use super::regex::DEAD;
use super::{CompiledGrammar, TokenKind};
use crate::error::Result;

/// Marks the position after EOS was accepted.
const TERMINATED: u32 = u32::MAX;

/// Follows one sequence through a [`CompiledGrammar`]. Mutable and not thread-safe (one per sequence);
/// `clone` gives an independent copy.
#[derive(Debug, Clone)]
pub struct Matcher {
    grammar: Arc<CompiledGrammar>,
    /// `states[k]` is the state after `k` accepted tokens; the last one is the current state.
    states: Vec<u32>,
}

impl Matcher {
    /// A matcher at the start of the grammar.
    #[must_use]
    pub fn new(grammar: Arc<CompiledGrammar>) -> Self {
        let start = grammar.dfa().start();
        Matcher {
            grammar,
            states: vec![start],
        }
    }

    /// The compiled grammar this matcher follows.
    #[must_use]
    pub fn grammar(&self) -> &Arc<CompiledGrammar> {
        &self.grammar
    }

    fn current(&self) -> u32 {
        *self.states.last().expect("a matcher always has its start state")
    }

    /// Whether EOS has been accepted (only EOS is allowed from now on, and accepting it again fails).
    #[must_use]
    pub fn is_terminated(&self) -> bool {
        self.current() == TERMINATED
    }

    /// Whether the text so far is in the language (true after termination too).
    #[must_use]
    pub fn is_accepting(&self) -> bool {
        let s = self.current();
        s == TERMINATED || self.grammar.dfa().is_accepting(s)
    }

    /// How many tokens have been accepted since the start (what `rollback` can undo).
    #[must_use]
    pub fn num_tokens(&self) -> usize {
        self.states.len() - 1
    }

    /// The state after `id`, `None` when the token is not allowed; `TERMINATED` for EOS.
    fn advance(&self, id: u32) -> Result<Option<u32>> {
        let vocab = self.grammar.vocab();
        if id as usize >= vocab.size() {
            return crate::invalid!(
                "token id {id} is out of range for a vocabulary of size {}",
                vocab.size()
            );
        }
        let state = self.current();
        if state == TERMINATED {
            return Ok(None);
        }
        if vocab.is_eos(id) {
            return Ok(self.grammar.dfa().is_accepting(state).then_some(TERMINATED));
        }
        if vocab.kind(id as usize) != TokenKind::Normal {
            return Ok(None);
        }
        let bytes = vocab.token_bytes(id as usize);
        if bytes.is_empty() {
            return Ok(None);
        }
        let next = self.grammar.dfa().run(state, bytes);
        Ok((next != DEAD).then_some(next))
    }

    /// Whether `id` would be accepted now, without accepting it.
    pub fn is_allowed(&self, id: u32) -> Result<bool> {
        Ok(self.advance(id)?.is_some())
    }

    /// Accept `id` if the grammar allows it; `false` (and no change) if not.
    pub fn accept_token(&mut self, id: u32) -> Result<bool> {
        Ok(match self.advance(id)? {
            Some(next) => {
                self.states.push(next);
                true
            }
            None => false,
        })
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
        self.states.truncate(self.states.len() - n);
        Ok(())
    }

    /// Back to the start of the grammar.
    pub fn reset(&mut self) {
        self.states.truncate(1);
    }

    /// `(state, terminated)` now.
    fn state(&self) -> (u32, bool) {
        match self.current() {
            TERMINATED => (DEAD, true),
            s => (s, false),
        }
    }

    /// A snapshot of where the matcher is, without its history: enough to fill a mask elsewhere (batch
    /// fills hand these to the thread pool).
    #[must_use]
    pub fn position(&self) -> Position {
        let (state, terminated) = self.state();
        Position {
            grammar: Arc::clone(&self.grammar),
            state,
            terminated,
        }
    }

    /// Write the allowed next tokens into one bitmask row (at least `ceil(size/32)` words).
    pub fn fill_next_token_bitmask(&self, row: &mut [u32]) {
        let (state, terminated) = self.state();
        self.grammar.fill_row(state, terminated, row);
    }

    /// The bytes the grammar forces next: the longest run where exactly one byte can follow and the
    /// text cannot end (empty when the next step is a real choice).
    #[must_use]
    pub fn forced_bytes(&self) -> Vec<u8> {
        let dfa = self.grammar.dfa();
        let mut out = Vec::new();
        let (mut state, terminated) = self.state();
        if terminated {
            return out;
        }
        // A forced run cannot revisit a state (that would be a cycle no accepting state is reachable
        // from, and such states are not live), so it is at most one byte per state.
        while out.len() <= dfa.num_states() {
            let Some(b) = dfa.forced_byte(state) else { break };
            out.push(b);
            state = dfa.next(state, b);
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
        let dfa = self.grammar.dfa();
        let trie = self.grammar.vocab().trie();
        let mut out = Vec::new();
        let (mut state, _) = self.state();
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
            if end == forced.len() {
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
                if reaches_past {
                    break;
                }
            }
            let Some((id, end)) = longest else { break };
            out.push(id);
            state = dfa.run(state, &forced[pos..end]);
            pos = end;
        }
        out
    }
}

/// Where a [`Matcher`] is, detached from its history.
#[derive(Debug, Clone)]
pub struct Position {
    grammar: Arc<CompiledGrammar>,
    state: u32,
    terminated: bool,
}

impl Position {
    /// Whether filling this position's mask is a copy of a cached row (no trie walk).
    #[must_use]
    pub fn is_cached(&self) -> bool {
        self.terminated || self.grammar.is_cached(self.state)
    }

    /// Write the allowed next tokens into one bitmask row, as [`Matcher::fill_next_token_bitmask`].
    pub fn fill_next_token_bitmask(&self, row: &mut [u32]) {
        self.grammar.fill_row(self.state, self.terminated, row);
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
}
