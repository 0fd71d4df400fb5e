//! Lowering a [`Cfg`] to plain productions for the Earley parser.
//!
//! [`Bnf::lower`] makes *lexemes*: every maximal piece of a right-hand side that refers to no recursive
//! rule (rules that are not recursive are inlined first) becomes one terminal matched by a byte DFA, so the
//! parser only has work to do where a lexeme can end, and a token mask inside a lexeme is a walk of the
//! token trie through one automaton. The language is exactly the grammar's: a lexeme may end at any point
//! where its automaton accepts (there is no longest-match rule), so lowering never changes what parses.
//!
//! [`Bnf::lower_bytes`] keeps every terminal as a byte range instead (a character class becomes the UTF-8
//! byte sequences of its scalar values). It is slower and is kept as the reference the lexeme form is
//! tested against.

use std::collections::{HashMap, HashSet};

use regex_syntax::hir::{Class, ClassUnicode, ClassUnicodeRange, Hir, Repetition};
use regex_syntax::utf8::Utf8Sequences;

use super::cfg::{collect_refs, Cfg, Expr};
use super::regex::{self, ByteDfa, RegexLimits};
use crate::error::{CoreError, Result};

/// A grammar symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Symbol {
    /// A nonterminal (rule or helper).
    Nonterminal(u32),
    /// One byte in `lo..=hi`.
    Bytes(u8, u8),
    /// A lexeme: a string its automaton ([`Bnf::lexeme`]) matches whole.
    Lexeme(u32),
}

/// One production `lhs -> rhs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Production {
    /// The nonterminal it defines.
    pub lhs: u32,
    /// What it expands to (empty: the empty string).
    pub rhs: Vec<Symbol>,
}

/// A grammar in plain productions, ready for Earley parsing.
#[derive(Debug, Clone)]
pub struct Bnf {
    pub(crate) productions: Vec<Production>,
    pub(crate) by_lhs: Vec<Vec<u32>>,
    /// Per nonterminal: whether it derives the empty string.
    pub(crate) nullable: Vec<bool>,
    pub(crate) lexemes: Vec<ByteDfa>,
    /// The augmented start production `S' -> root` (its index).
    pub(crate) start: u32,
}

/// At most this many productions come out of lowering one grammar.
pub const MAX_PRODUCTIONS: usize = 1 << 20;

/// A non-recursive rule is inlined into the lexemes that use it while its expansion stays below this many
/// expression nodes; a larger one stays a nonterminal.
const MAX_INLINED_NODES: usize = 4096;

/// At most this many automaton states over all lexemes of one grammar.
pub const MAX_LEXEME_STATES: usize = 1 << 20;

/// Size limits on one lexeme's automaton. A lexeme that exceeds them is split into smaller lexemes.
const LEXEME_LIMITS: RegexLimits = RegexLimits {
    max_automaton_bytes: 32 << 20,
    max_states: 50_000,
};

impl Bnf {
    /// Lower `cfg` with lexemes (rules keep their indices as nonterminals; helpers come after them).
    pub fn lower(cfg: &Cfg) -> Result<Self> {
        Self::lower_with(cfg, true)
    }

    /// Lower `cfg` with byte-range terminals only (the reference form).
    pub fn lower_bytes(cfg: &Cfg) -> Result<Self> {
        Self::lower_with(cfg, false)
    }

    fn lower_with(cfg: &Cfg, lexemes: bool) -> Result<Self> {
        let mut lowering = Lowering {
            productions: Vec::new(),
            next_nonterminal: u32::try_from(cfg.rules().len() + 1)
                .map_err(|_| CoreError::ResourceLimit("too many grammar rules".into()))?,
            use_lexemes: lexemes,
            inlined: if lexemes {
                inline_rules(cfg)
            } else {
                vec![None; cfg.rules().len()]
            },
            lexemes: Vec::new(),
            lexeme_index: HashMap::new(),
            too_large: HashSet::new(),
            lexeme_states: 0,
        };
        for (i, rule) in cfg.rules().iter().enumerate() {
            // inlinable references are replaced once per rule body, before it is cut into lexemes
            let body = match &lowering.inlined[i] {
                Some(expr) => expr.clone(),
                None if lexemes => lowering.resolve(&rule.expr),
                None => rule.expr.clone(),
            };
            let rhs = lowering.sequence(&body)?;
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
        let nullable = nullable_set(&lowering.productions, &lowering.lexemes, count);
        Ok(Bnf {
            productions: lowering.productions,
            by_lhs,
            nullable,
            lexemes: lowering.lexemes,
            start,
        })
    }

    /// The productions (the last one is the augmented start).
    #[must_use]
    pub fn productions(&self) -> &[Production] {
        &self.productions
    }

    /// The automaton of lexeme `l`.
    #[must_use]
    pub fn lexeme(&self, l: u32) -> &ByteDfa {
        &self.lexemes[l as usize]
    }

    /// Number of lexemes.
    #[must_use]
    pub fn num_lexemes(&self) -> usize {
        self.lexemes.len()
    }
}

fn nullable_set(productions: &[Production], lexemes: &[ByteDfa], count: usize) -> Vec<bool> {
    let mut nullable = vec![false; count];
    loop {
        let mut changed = false;
        for p in productions {
            if !nullable[p.lhs as usize]
                && p.rhs.iter().all(|s| match *s {
                    Symbol::Nonterminal(n) => nullable[n as usize],
                    Symbol::Lexeme(l) => {
                        let dfa = &lexemes[l as usize];
                        dfa.is_accepting(dfa.start())
                    }
                    Symbol::Bytes(..) => false,
                })
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

/// For each rule, its expansion with every rule reference inlined, when the rule is not recursive (it
/// reaches no cycle), the expansion is small enough and it has no unbounded repetition; `None` otherwise.
///
/// Rules with an unbounded repetition (strings, numbers, identifiers, whitespace) stay nonterminals, each
/// its own lexeme: merged into the lexemes around every use they would get separate automaton states per
/// use, and every one of those states would need its own token-mask walk.
fn inline_rules(cfg: &Cfg) -> Vec<Option<Expr>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Visiting,
        Done,
    }
    let rules = cfg.rules();
    let mut mark = vec![Mark::New; rules.len()];
    let mut inlined: Vec<Option<Expr>> = vec![None; rules.len()];
    // Depth-first over rule references with an explicit stack (rule chains can be long): a rule is
    // finished once every rule it refers to is.
    for top in 0..rules.len() {
        if mark[top] != Mark::New {
            continue;
        }
        let mut stack = vec![top];
        mark[top] = Mark::Visiting;
        while let Some(&i) = stack.last() {
            let mut refs = Vec::new();
            collect_refs(&rules[i].expr, &mut refs);
            if let Some(&next) = refs.iter().find(|&&r| mark[r] == Mark::New) {
                mark[next] = Mark::Visiting;
                stack.push(next);
                continue;
            }
            stack.pop();
            mark[i] = Mark::Done;
            // A reference to a rule still being visited closes a cycle: `i` is recursive.
            let recursive = refs
                .iter()
                .any(|&r| r == i || stack.contains(&r) || inlined[r].is_none());
            if !recursive {
                let mut budget = MAX_INLINED_NODES;
                inlined[i] = substitute(&rules[i].expr, &inlined, &mut budget)
                    .filter(|expr| !has_unbounded_repeat(expr));
            }
        }
    }
    inlined
}

/// `expr` with every rule replaced by its inlined expansion, or `None` when some rule has none or the
/// result would exceed `budget` nodes.
fn substitute(expr: &Expr, inlined: &[Option<Expr>], budget: &mut usize) -> Option<Expr> {
    *budget = budget.checked_sub(1)?;
    Some(match expr {
        Expr::Rule(i) => {
            let body = inlined[*i].as_ref()?;
            *budget = budget.checked_sub(node_count(body))?;
            body.clone()
        }
        Expr::Seq(parts) => Expr::Seq(
            parts
                .iter()
                .map(|p| substitute(p, inlined, budget))
                .collect::<Option<_>>()?,
        ),
        Expr::Alt(parts) => Expr::Alt(
            parts
                .iter()
                .map(|p| substitute(p, inlined, budget))
                .collect::<Option<_>>()?,
        ),
        Expr::Repeat { expr, min, max } => Expr::Repeat {
            expr: Box::new(substitute(expr, inlined, budget)?),
            min: *min,
            max: *max,
        },
        other => other.clone(),
    })
}

fn has_unbounded_repeat(expr: &Expr) -> bool {
    match expr {
        Expr::Repeat { max: None, .. } => true,
        Expr::Repeat { expr, .. } => has_unbounded_repeat(expr),
        Expr::Seq(parts) | Expr::Alt(parts) => parts.iter().any(has_unbounded_repeat),
        _ => false,
    }
}

fn node_count(expr: &Expr) -> usize {
    1 + match expr {
        Expr::Seq(parts) | Expr::Alt(parts) => parts.iter().map(node_count).sum(),
        Expr::Repeat { expr, .. } => node_count(expr),
        _ => 0,
    }
}

/// The bytes of an expression that is one literal string.
fn literal_bytes(expr: &Expr) -> Option<Vec<u8>> {
    match expr {
        Expr::Empty => Some(Vec::new()),
        Expr::Bytes(b) => Some(b.clone()),
        Expr::Seq(parts) => {
            let mut out = Vec::new();
            for part in parts {
                out.extend(literal_bytes(part)?);
            }
            Some(out)
        }
        _ => None,
    }
}

fn is_rule_free(expr: &Expr) -> bool {
    match expr {
        Expr::Rule(_) => false,
        Expr::Seq(parts) | Expr::Alt(parts) => parts.iter().all(is_rule_free),
        Expr::Repeat { expr, .. } => is_rule_free(expr),
        _ => true,
    }
}

/// The regular expression a rule-free expression denotes.
fn to_hir(expr: &Expr) -> Hir {
    match expr {
        Expr::Empty | Expr::Rule(_) => Hir::empty(),
        Expr::Bytes(bytes) => Hir::literal(bytes.clone()),
        Expr::Class { ranges, negated } => {
            let ranges = class_ranges(ranges, *negated)
                .into_iter()
                .map(|(lo, hi)| ClassUnicodeRange::new(lo, hi));
            Hir::class(Class::Unicode(ClassUnicode::new(ranges)))
        }
        Expr::Seq(parts) => Hir::concat(parts.iter().map(to_hir).collect()),
        Expr::Alt(parts) => Hir::alternation(parts.iter().map(to_hir).collect()),
        Expr::Repeat { expr, min, max } => Hir::repetition(Repetition {
            min: *min,
            max: *max,
            greedy: true,
            sub: Box::new(to_hir(expr)),
        }),
    }
}

struct Lowering {
    productions: Vec<Production>,
    next_nonterminal: u32,
    use_lexemes: bool,
    inlined: Vec<Option<Expr>>,
    lexemes: Vec<ByteDfa>,
    lexeme_index: HashMap<Expr, u32>,
    /// Expressions whose automaton exceeded the limits.
    too_large: HashSet<Expr>,
    lexeme_states: usize,
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

    /// The rule-free `expr` as one lexeme, or `None` when its automaton is too large (the caller then
    /// splits it).
    fn lexeme(&mut self, expr: &Expr) -> Result<Option<Symbol>> {
        if let Some(&l) = self.lexeme_index.get(expr) {
            return Ok(Some(Symbol::Lexeme(l)));
        }
        if self.too_large.contains(expr) {
            return Ok(None);
        }
        let compiled = match literal_bytes(expr) {
            Some(text) => Ok(ByteDfa::literal(&text)),
            None => regex::compile(&to_hir(expr), LEXEME_LIMITS),
        };
        let dfa = match compiled {
            Ok(dfa) => dfa,
            Err(CoreError::ResourceLimit(_)) => {
                self.too_large.insert(expr.clone());
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        self.lexeme_states += dfa.num_states();
        if self.lexeme_states > MAX_LEXEME_STATES {
            return Err(CoreError::ResourceLimit(format!(
                "the grammar's lexemes need more than {MAX_LEXEME_STATES} automaton states"
            )));
        }
        let l = u32::try_from(self.lexemes.len())
            .map_err(|_| CoreError::ResourceLimit("too many lexemes".into()))?;
        self.lexemes.push(dfa);
        self.lexeme_index.insert(expr.clone(), l);
        Ok(Some(Symbol::Lexeme(l)))
    }

    /// `expr` with inlinable rule references replaced by their expansions.
    fn resolve(&self, expr: &Expr) -> Expr {
        match expr {
            Expr::Rule(i) => self.inlined[*i].clone().unwrap_or_else(|| expr.clone()),
            Expr::Seq(parts) => Expr::Seq(parts.iter().map(|p| self.resolve(p)).collect()),
            Expr::Alt(parts) => Expr::Alt(parts.iter().map(|p| self.resolve(p)).collect()),
            Expr::Repeat { expr, min, max } => Expr::Repeat {
                expr: Box::new(self.resolve(expr)),
                min: *min,
                max: *max,
            },
            other => other.clone(),
        }
    }

    /// The symbols of `expr` as one sequence (helpers and lexemes made as needed).
    fn sequence(&mut self, expr: &Expr) -> Result<Vec<Symbol>> {
        if !self.use_lexemes {
            return self.structure(expr);
        }
        if matches!(expr, Expr::Empty) {
            return Ok(Vec::new());
        }
        let free = is_rule_free(expr);
        if free {
            if let Some(symbol) = self.lexeme(expr)? {
                return Ok(vec![symbol]);
            }
        }
        match expr {
            // a rule-free expression whose automaton was too large: split it
            Expr::Seq(_) | Expr::Alt(_) if free => self.structure(expr),
            Expr::Seq(parts) => {
                // consecutive rule-free parts make one lexeme
                let mut out = Vec::new();
                let mut run: Vec<Expr> = Vec::new();
                for part in parts {
                    if is_rule_free(part) {
                        run.push(part.clone());
                        continue;
                    }
                    out.extend(self.flush_run(&mut run)?);
                    out.extend(self.sequence(part)?);
                }
                out.extend(self.flush_run(&mut run)?);
                Ok(out)
            }
            Expr::Alt(alternatives) => {
                // the rule-free alternatives make one lexeme
                let (free, other): (Vec<&Expr>, Vec<&Expr>) =
                    alternatives.iter().partition(|a| is_rule_free(a));
                let mut lowered = Vec::new();
                if free.len() > 1 {
                    lowered.push(self.sequence(&Expr::Alt(free.into_iter().cloned().collect()))?);
                } else {
                    for a in free {
                        lowered.push(self.sequence(a)?);
                    }
                }
                for a in other {
                    lowered.push(self.sequence(a)?);
                }
                Ok(vec![self.helper(lowered)?])
            }
            _ => self.structure(expr),
        }
    }

    fn flush_run(&mut self, run: &mut Vec<Expr>) -> Result<Vec<Symbol>> {
        match run.len() {
            0 => Ok(Vec::new()),
            1 => self.sequence(&run.pop().unwrap_or(Expr::Empty)),
            _ => {
                let parts = std::mem::take(run);
                let seq = Expr::Seq(parts);
                if let Some(symbol) = self.lexeme(&seq)? {
                    return Ok(vec![symbol]);
                }
                let Expr::Seq(parts) = seq else { unreachable!() };
                let mut out = Vec::new();
                for part in &parts {
                    out.extend(self.sequence(part)?);
                }
                Ok(out)
            }
        }
    }

    /// `expr` lowered by its structure: byte ranges for terminals, helpers for alternatives and
    /// repetitions (with lexemes on, the parts become lexemes where they can).
    fn structure(&mut self, expr: &Expr) -> Result<Vec<Symbol>> {
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
pub(crate) fn class_ranges(ranges: &[(char, char)], negated: bool) -> Vec<(char, char)> {
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
