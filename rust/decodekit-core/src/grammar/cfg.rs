//! Context-free grammars over bytes: the tree every grammar front end (GBNF, the Lark subset, JSON Schema)
//! produces, and the checks every front end shares.
//!
//! A [`Cfg`] is a list of named [`Rule`]s, one of them the root; each rule's right-hand side is an
//! [`Expr`]. Terminals are byte strings and character classes over Unicode scalar values (matched as their
//! UTF-8 encodings). [`Cfg::new`] refuses references to undefined rules and rules that can derive no finite
//! string (cycles with no base case), naming the rule and where it was written.

use std::collections::HashMap;
use std::fmt;

use regex_syntax::hir::{Class, Hir, HirKind};

use crate::error::{CoreError, Result};

/// The largest repetition count (`{m,n}` in GBNF or a regex) a grammar may use: larger counts would
/// blow up any automaton built from them.
pub const MAX_REPEAT: u32 = 10_000;

/// A place in a grammar's source text (1-based line and column, the column counted in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourcePos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A right-hand side.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// The empty string.
    Empty,
    /// A literal byte string (the UTF-8 of the literal as written).
    Bytes(Vec<u8>),
    /// One Unicode scalar value inside (or, when `negated`, outside) the inclusive `ranges`.
    Class {
        /// Inclusive ranges, as written.
        ranges: Vec<(char, char)>,
        /// Match a character outside every range instead.
        negated: bool,
    },
    /// A reference to the rule with this index in [`Cfg::rules`].
    Rule(usize),
    /// The parts one after another.
    Seq(Vec<Expr>),
    /// Any one of the alternatives.
    Alt(Vec<Expr>),
    /// `expr` between `min` and `max` times (`None`: unbounded).
    Repeat {
        /// What is repeated.
        expr: Box<Expr>,
        /// Fewest repetitions.
        min: u32,
        /// Most repetitions, if bounded.
        max: Option<u32>,
    },
}

impl Expr {
    /// `expr` between `min` and `max` times.
    #[must_use]
    pub fn repeat(expr: Expr, min: u32, max: Option<u32>) -> Expr {
        Expr::Repeat {
            expr: Box::new(expr),
            min,
            max,
        }
    }

    /// The same language as the regular expression `pattern` (Rust `regex` syntax, as
    /// [`Grammar::regex`](super::Grammar::regex) reads it), for a terminal inside a grammar. Anchors are
    /// refused here: inside a grammar a terminal always matches a whole lexeme.
    pub fn from_regex(pattern: &str) -> Result<Self> {
        let hir = super::regex::parse(pattern)?;
        from_hir(&hir).map_err(|e| match e {
            CoreError::Grammar(message) => CoreError::Grammar(format!("regex {pattern:?}: {message}")),
            other => other,
        })
    }
}

/// How a regex's leaves become grammar expressions: plain terminals here, JSON-string-encoded characters
/// for a JSON Schema `pattern`.
pub(crate) trait RegexLeaves {
    /// A literal's bytes.
    fn literal(&self, bytes: &[u8]) -> Result<Expr>;
    /// One character in the scalar-value `ranges`.
    fn class(&self, ranges: &[(char, char)]) -> Expr;
    /// The error for what cannot be turned into an expression (`what` names it).
    fn refuse(&self, what: &str) -> CoreError;
}

/// Plain terminals: literal bytes and character classes.
struct Terminals;

impl RegexLeaves for Terminals {
    fn literal(&self, bytes: &[u8]) -> Result<Expr> {
        Ok(Expr::Bytes(bytes.to_vec()))
    }

    fn class(&self, ranges: &[(char, char)]) -> Expr {
        Expr::Class {
            ranges: ranges.to_vec(),
            negated: false,
        }
    }

    fn refuse(&self, what: &str) -> CoreError {
        CoreError::Grammar(format!("{what} have no meaning inside a grammar terminal"))
    }
}

fn from_hir(hir: &Hir) -> Result<Expr> {
    hir_to_expr(hir, &Terminals)
}

/// The expression of a parsed regex, its leaves made by `leaves`.
pub(crate) fn hir_to_expr(hir: &Hir, leaves: &impl RegexLeaves) -> Result<Expr> {
    let all = |parts: &[Hir]| {
        parts
            .iter()
            .map(|p| hir_to_expr(p, leaves))
            .collect::<Result<Vec<_>>>()
    };
    Ok(match hir.kind() {
        HirKind::Empty => Expr::Empty,
        HirKind::Literal(literal) => leaves.literal(&literal.0)?,
        HirKind::Class(Class::Unicode(class)) => {
            let ranges: Vec<(char, char)> = class.ranges().iter().map(|r| (r.start(), r.end())).collect();
            leaves.class(&ranges)
        }
        HirKind::Class(Class::Bytes(class)) => {
            if class.ranges().iter().any(|r| r.end() > 0x7F) {
                return Err(leaves.refuse("byte classes beyond ASCII ((?-u) with non-ASCII bytes)"));
            }
            let ranges: Vec<(char, char)> = class
                .ranges()
                .iter()
                .map(|r| (char::from(r.start()), char::from(r.end())))
                .collect();
            leaves.class(&ranges)
        }
        HirKind::Look(_) => return Err(leaves.refuse("anchors and assertions (^, $, \\b, ...)")),
        HirKind::Repetition(r) => {
            if r.min > MAX_REPEAT || r.max.is_some_and(|m| m > MAX_REPEAT) {
                return Err(leaves.refuse(&format!("repetition counts above {MAX_REPEAT}")));
            }
            Expr::repeat(hir_to_expr(&r.sub, leaves)?, r.min, r.max)
        }
        HirKind::Capture(c) => hir_to_expr(&c.sub, leaves)?,
        HirKind::Concat(parts) => Expr::Seq(all(parts)?),
        HirKind::Alternation(parts) => Expr::Alt(all(parts)?),
    })
}

/// A named rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The rule's name as written.
    pub name: String,
    /// Its right-hand side.
    pub expr: Expr,
    /// Where the rule is defined.
    pub defined_at: SourcePos,
}

/// A context-free grammar over bytes whose rules are all defined and all productive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cfg {
    rules: Vec<Rule>,
    root: usize,
}

impl Cfg {
    /// Check and wrap `rules` (references already resolved to indices; `undefined` lists the names that
    /// were referenced but never defined, with where each was first written).
    pub fn new(rules: Vec<Rule>, root: usize, undefined: &[(String, SourcePos)]) -> Result<Self> {
        if let Some((name, at)) = undefined.first() {
            return Err(CoreError::Grammar(format!(
                "{at}: reference to undefined rule {name:?}"
            )));
        }
        if root >= rules.len() {
            return Err(CoreError::Internal(format!(
                "root rule {root} out of range for {} rules",
                rules.len()
            )));
        }
        let cfg = Cfg { rules, root };
        cfg.check_productive()?;
        Ok(cfg)
    }

    /// The rules, indexed by [`Expr::Rule`].
    #[must_use]
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The index of the start rule.
    #[must_use]
    pub fn root(&self) -> usize {
        self.root
    }

    /// Refuse a rule reachable from the root that derives no finite string (e.g. `a ::= "x" a`).
    fn check_productive(&self) -> Result<()> {
        let mut productive = vec![false; self.rules.len()];
        loop {
            let mut changed = false;
            for (i, rule) in self.rules.iter().enumerate() {
                if !productive[i] && derives_finite(&rule.expr, &productive) {
                    productive[i] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut reachable = vec![false; self.rules.len()];
        let mut stack = vec![self.root];
        reachable[self.root] = true;
        while let Some(i) = stack.pop() {
            let mut refs = Vec::new();
            collect_refs(&self.rules[i].expr, &mut refs);
            for r in refs {
                if !reachable[r] {
                    reachable[r] = true;
                    stack.push(r);
                }
            }
        }
        match (0..self.rules.len()).find(|&i| reachable[i] && !productive[i]) {
            Some(i) => {
                let rule = &self.rules[i];
                Err(CoreError::Grammar(format!(
                    "{}: rule {:?} can never finish: every alternative refers back to itself (a cycle \
                     with no base case)",
                    rule.defined_at, rule.name
                )))
            }
            None => Ok(()),
        }
    }
}

/// Whether `expr` derives some finite string, given which rules are known to.
fn derives_finite(expr: &Expr, productive: &[bool]) -> bool {
    match expr {
        // a class always has a member: an empty positive class is refused by the front ends
        Expr::Empty | Expr::Bytes(_) | Expr::Class { .. } => true,
        Expr::Rule(i) => productive[*i],
        Expr::Seq(parts) => parts.iter().all(|p| derives_finite(p, productive)),
        Expr::Alt(alternatives) => alternatives.iter().any(|a| derives_finite(a, productive)),
        Expr::Repeat { expr, min, .. } => *min == 0 || derives_finite(expr, productive),
    }
}

/// The rule indices `expr` refers to (with repeats).
pub(crate) fn collect_refs(expr: &Expr, out: &mut Vec<usize>) {
    match expr {
        Expr::Empty | Expr::Bytes(_) | Expr::Class { .. } => {}
        Expr::Rule(i) => out.push(*i),
        Expr::Seq(parts) | Expr::Alt(parts) => parts.iter().for_each(|p| collect_refs(p, out)),
        Expr::Repeat { expr, .. } => collect_refs(expr, out),
    }
}

/// Names to rule indices while a front end reads a grammar: a name gets its index the first time it is
/// defined or referenced, and each definition and first unresolved reference is remembered.
#[derive(Debug, Default)]
pub(crate) struct RuleTable {
    index: HashMap<String, usize>,
    rules: Vec<Option<Rule>>,
    names: Vec<String>,
    first_use: Vec<SourcePos>,
}

impl RuleTable {
    /// The index of `name`, created on first use.
    pub(crate) fn reference(&mut self, name: &str, at: SourcePos) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.rules.len();
        self.index.insert(name.to_owned(), i);
        self.rules.push(None);
        self.names.push(name.to_owned());
        self.first_use.push(at);
        i
    }

    /// Define `name`; a second definition of the same name is refused.
    pub(crate) fn define(&mut self, name: &str, expr: Expr, at: SourcePos) -> Result<()> {
        let i = self.reference(name, at);
        if let Some(previous) = &self.rules[i] {
            return Err(CoreError::Grammar(format!(
                "{at}: rule {name:?} is defined twice (first at {})",
                previous.defined_at
            )));
        }
        self.rules[i] = Some(Rule {
            name: name.to_owned(),
            expr,
            defined_at: at,
        });
        Ok(())
    }

    /// The checked grammar rooted at `root`.
    pub(crate) fn finish(self, root: &str) -> Result<Cfg> {
        let Some(&root_index) = self.index.get(root) else {
            return Err(CoreError::Grammar(format!(
                "the grammar has no rule named {root:?}"
            )));
        };
        if self.rules[root_index].is_none() {
            return Err(CoreError::Grammar(format!(
                "the grammar has no rule named {root:?} (it is only referenced, at {})",
                self.first_use[root_index]
            )));
        }
        let mut undefined = Vec::new();
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.into_iter().enumerate() {
            match rule {
                Some(rule) => rules.push(rule),
                None => {
                    undefined.push((self.names[i].clone(), self.first_use[i]));
                    rules.push(Rule {
                        name: self.names[i].clone(),
                        expr: Expr::Empty,
                        defined_at: self.first_use[i],
                    });
                }
            }
        }
        undefined.sort_by_key(|(_, at)| (at.line, at.column));
        Cfg::new(rules, root_index, &undefined)
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::{Expr, RuleTable, SourcePos};

    /// A rule table whose only rule is `root ::= expr`.
    pub(crate) fn one_rule(expr: Expr) -> RuleTable {
        let mut rules = RuleTable::default();
        rules.define("root", expr, SourcePos::default()).unwrap();
        rules
    }
}
