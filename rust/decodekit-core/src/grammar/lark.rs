//! A subset of [Lark](https://lark-parser.readthedocs.io/en/latest/grammar.html)'s grammar language, read
//! into a [`Cfg`] whose start rule is `start`.
//!
//! ```text
//! start: pair ("," pair)*
//! pair: KEY "=" value                 // a comment
//! ?value: SIGNED_NUMBER | "true"i | "false"i
//!       | "'" /[^'\n]*/ "'"           -> string
//! KEY: ("a".."z" | "_")+
//! %import common.SIGNED_NUMBER
//! %import common.WS_INLINE
//! %ignore WS_INLINE
//! ```
//!
//! # What is read
//!
//! * Rules `name: alternatives` (names `_?[a-z][_a-z0-9]*`), with the modifiers `?name`, `!name` and a
//!   priority `name.2`, all accepted and ignored. Terminals `NAME: alternatives` (names `_?[A-Z][_A-Z0-9]*`),
//!   with a priority `NAME.2`, accepted and ignored. A definition ends with its line unless the next
//!   non-blank line starts with `|`; a `\` at the end of a line continues it; `//` starts a comment.
//! * `|` separates alternatives (an alternative may be empty); juxtaposition is sequence.
//! * `"literal"`, with Lark's escapes `\n \t \r \f \\ \" \xHH \uHHHH \UHHHHHHHH`; any other backslash is
//!   kept together with the character after it, as Lark does (`"\d"` is a backslash and a `d`).
//! * `"literal"i`: case-insensitive, each character matching its Unicode simple case folds (as a regex's
//!   `(?i)`).
//! * `/regex/flags`, with the flags `i`, `s`, `x` and `u` (the same inline flags of the Rust `regex`
//!   crate; `u` changes nothing, as both dialects are Unicode-aware). `\/` is a slash.
//! * `"a".."z"`: one character in the range; both ends are one character each.
//! * Rule and terminal names; `( ... )` groups; `[ ... ]` optional; the postfix `?`, `*`, `+`, `~ n` and
//!   `~ n..m` (counts at most [`MAX_REPEAT`]); `-> alias` at the end of a rule's alternative (ignored).
//! * `%ignore` followed by terminals, literals or regexes (alternatives and groups allowed), any number of
//!   times: see below.
//! * `%import common.NAME`, `%import common.NAME -> ALIAS` and `%import common (NAME1, NAME2)` for the
//!   terminals of Lark's `common` module, which are built in (no file is read): DIGIT, HEXDIGIT, INT,
//!   SIGNED_INT, DECIMAL, _EXP, FLOAT, SIGNED_FLOAT, NUMBER, SIGNED_NUMBER, ESCAPED_STRING, LETTER,
//!   UCASE_LETTER, LCASE_LETTER, WORD, CNAME, WS_INLINE, WS, CR, LF, NEWLINE, SH_COMMENT, CPP_COMMENT,
//!   C_COMMENT, SQL_COMMENT.
//!
//! # What is refused
//!
//! Each with a [`CoreError::Grammar`] that gives the line and column: templates (`name{a, b}: ...` and
//! `name{x}` in a body); the directives `%declare`, `%override`, `%extend` and any unknown one; relative
//! imports, imports from any module but `common`, and names `common` does not define; rules inside
//! terminals or `%ignore`; a terminal that refers to itself (directly or through other terminals); an alias
//! anywhere but at the end of a rule's alternative; empty literals `""` and empty terminals; modifiers on
//! terminals; the regex flags `m` and `l` (a terminal has no lines, and no locale), and regexes the Rust
//! `regex` crate does not read or a grammar cannot enforce (look-around, backreferences, anchors); a
//! missing `start` rule, undefined names, names defined twice, groups nested more than 200 deep.
//!
//! # How the language differs from Lark's
//!
//! There is no lexer: a text is accepted iff the start rule derives it, each terminal being a regular
//! language of its own. Lark first cuts the text into tokens (longest match, terminal priorities, the
//! contextual lexer's choice, a lazy `*?` stopping at its first chance) and may therefore reject texts
//! this grammar accepts; priorities of rules and terminals never restrict the language here. Terminals
//! that can match the empty string are allowed (Lark's lexers refuse them).
//!
//! The ignored strings may appear, any number of times, between any two tokens of a rule (a token is a
//! literal, regex, range or terminal written in a rule, so never inside a terminal) and at the start and
//! end of the text: every token of a rule is followed by a helper rule `IGNORED*`, and `start` begins with
//! it.
//!
//! Regexes are read in the Rust `regex` dialect, not Python's `re`: most patterns mean the same, but those
//! only Python reads (look-behind, `\Z`, an unescaped `{`) are refused with an error.

use std::collections::HashMap;
use std::fmt;

use regex_syntax::hir::{ClassUnicode, ClassUnicodeRange};

use super::cfg::{Cfg, Expr, RuleTable, SourcePos, MAX_REPEAT};
use super::cursor::Cursor;
use crate::error::{CoreError, Result};

/// The rule a text must derive.
const START_RULE: &str = "start";

/// The helper rule for the ignored strings; the `%` keeps it apart from every name a grammar can write.
const IGNORED_RULE: &str = "%ignore";

/// Groups nest at most this deep: the readers of the grammar tree are recursive, and a stack is finite.
const MAX_NESTING: usize = 200;

/// The terminals of Lark's `common` module, as Rust regexes meaning what Lark's definitions mean (with
/// the lexer's lazy matches written out: an escaped string ends at its first unescaped quote, a C comment
/// at its first `*/`).
const COMMON: [(&str, &str); 25] = [
    ("DIGIT", "[0-9]"),
    ("HEXDIGIT", "[0-9a-fA-F]"),
    ("INT", "[0-9]+"),
    ("SIGNED_INT", "[+-]?[0-9]+"),
    // INT "." INT? | "." INT
    ("DECIMAL", r"[0-9]+\.[0-9]*|\.[0-9]+"),
    ("_EXP", "[eE][+-]?[0-9]+"),
    // INT _EXP | DECIMAL _EXP?
    (
        "FLOAT",
        r"[0-9]+[eE][+-]?[0-9]+|(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?",
    ),
    (
        "SIGNED_FLOAT",
        r"[+-]?(?:[0-9]+[eE][+-]?[0-9]+|(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)",
    ),
    // FLOAT | INT
    (
        "NUMBER",
        r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?",
    ),
    (
        "SIGNED_NUMBER",
        r"[+-]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)",
    ),
    // a backslash escapes any character but a newline; no raw newline inside
    ("ESCAPED_STRING", r#""(?:[^"\\\n]|\\[^\n])*""#),
    ("LETTER", "[A-Za-z]"),
    ("UCASE_LETTER", "[A-Z]"),
    ("LCASE_LETTER", "[a-z]"),
    ("WORD", "[A-Za-z]+"),
    ("CNAME", "[_A-Za-z][_A-Za-z0-9]*"),
    ("WS_INLINE", "[ \t]+"),
    ("WS", "[ \t\x0C\r\n]+"),
    ("CR", "\r"),
    ("LF", "\n"),
    ("NEWLINE", "(?:\r?\n)+"),
    ("SH_COMMENT", "#[^\n]*"),
    ("CPP_COMMENT", "//[^\n]*"),
    ("C_COMMENT", r"/\*[^*]*\*+(?:[^/*][^*]*\*+)*/"),
    ("SQL_COMMENT", "--[^\n]*"),
];

/// Parse the Lark grammar `text` into a checked grammar rooted at its rule `start`.
pub fn parse(text: &str) -> Result<Cfg> {
    let mut parser = Parser {
        cursor: Cursor::new(text),
        depth: 0,
        rules: RuleTable::default(),
        ignored: None,
        ignored_alternatives: Vec::new(),
        ignored_at: SourcePos::default(),
        terminals: Vec::new(),
        references: Vec::new(),
        imported: HashMap::new(),
    };
    // Rules are built as they are read, so whether their tokens are followed by the ignored strings must
    // be known before the first one. A directive is always the first thing on its line.
    if has_ignore_directive(text) {
        let ignored = parser.rules.reference(IGNORED_RULE, SourcePos::default());
        parser.ignored = Some(ignored);
    }
    parser.grammar()?;
    parser.finish()
}

fn has_ignore_directive(text: &str) -> bool {
    text.lines().any(|line| {
        line.trim_start()
            .strip_prefix("%ignore")
            .is_some_and(|rest| !rest.starts_with(is_name_char))
    })
}

/// Whether a name is a rule's or a terminal's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rule,
    Terminal,
}

/// What the alternatives being read belong to.
#[derive(Debug, Clone, Copy)]
enum Body<'a> {
    Rule,
    /// The definition of the named terminal.
    Terminal(&'a str),
    Ignore,
}

/// A terminal's definition and the terminals it refers to, for the recursion check.
struct TerminalReferences {
    name: String,
    references: Vec<(String, SourcePos)>,
}

struct Parser {
    cursor: Cursor,
    /// Open groups.
    depth: usize,
    rules: RuleTable,
    /// The helper rule `IGNORED*` that follows every token of a rule, when the grammar has `%ignore`.
    ignored: Option<usize>,
    /// The ignored languages, one per `%ignore`.
    ignored_alternatives: Vec<Expr>,
    /// Where the first `%ignore` is.
    ignored_at: SourcePos,
    terminals: Vec<TerminalReferences>,
    /// Terminals referred to by the terminal being read.
    references: Vec<(String, SourcePos)>,
    /// Names defined by `%import`, with the `common` terminal each stands for (an import may repeat).
    imported: HashMap<String, &'static str>,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A rule name is `_?[a-z][_a-z0-9]*`, a terminal name `_?[A-Z][_A-Z0-9]*`.
fn name_kind(name: &str) -> Option<Kind> {
    let rest = name.strip_prefix('_').unwrap_or(name);
    let first = rest.chars().next()?;
    let all = |case: fn(&char) -> bool| rest.chars().all(|c| c == '_' || c.is_ascii_digit() || case(&c));
    if first.is_ascii_lowercase() && all(char::is_ascii_lowercase) {
        Some(Kind::Rule)
    } else if first.is_ascii_uppercase() && all(char::is_ascii_uppercase) {
        Some(Kind::Terminal)
    } else {
        None
    }
}

fn bad_name(name: &str) -> String {
    format!("{name:?} is neither a rule name (_?[a-z][_a-z0-9]*) nor a terminal name (_?[A-Z][_A-Z0-9]*)")
}

impl Parser {
    /// Skip spaces, tabs, comments and `\`-continued line ends; newlines too when `newlines`.
    fn space(&mut self, newlines: bool) {
        while let Some(c) = self.cursor.peek() {
            match c {
                ' ' | '\t' | '\r' => {}
                '\n' if newlines => {}
                '/' if self.cursor.peek_at(1) == Some('/') => {
                    while self.cursor.peek().is_some_and(|c| c != '\n') {
                        self.cursor.bump();
                    }
                    continue;
                }
                '\\' => {
                    let mut ahead = 1;
                    while matches!(self.cursor.peek_at(ahead), Some(' ' | '\t' | '\r')) {
                        ahead += 1;
                    }
                    if self.cursor.peek_at(ahead) != Some('\n') {
                        return;
                    }
                    for _ in 0..ahead {
                        self.cursor.bump();
                    }
                }
                _ => return,
            }
            self.cursor.bump();
        }
    }

    /// Whether the rest of the current line is blank and the next non-blank line starts with `|`; if so,
    /// move to that `|`.
    fn continuation(&mut self) -> bool {
        let saved = self.cursor.mark();
        self.space(true);
        if self.cursor.peek() == Some('|') {
            return true;
        }
        self.cursor.reset(saved);
        false
    }

    fn grammar(&mut self) -> Result<()> {
        loop {
            self.space(true);
            match self.cursor.peek() {
                None => return Ok(()),
                Some('%') => self.directive()?,
                Some(_) => self.definition()?,
            }
            self.space(false);
            match self.cursor.peek() {
                None | Some('\n') => {}
                Some(c @ (')' | ']')) => return error(self.cursor.pos(), format!("unbalanced {c:?}")),
                Some(c) => return error(self.cursor.pos(), format!("unexpected {c:?}")),
            }
        }
    }

    fn name(&mut self, what: &str) -> Result<String> {
        let at = self.cursor.pos();
        let mut name = String::new();
        while let Some(c) = self.cursor.peek().filter(|&c| is_name_char(c)) {
            name.push(c);
            self.cursor.bump();
        }
        if name.is_empty() {
            return match self.cursor.peek() {
                Some(c) => error(at, format!("expected {what}, found {c:?}")),
                None => error(at, format!("expected {what}, found the end of the grammar")),
            };
        }
        Ok(name)
    }

    /// A rule or terminal definition.
    fn definition(&mut self) -> Result<()> {
        let at = self.cursor.pos();
        let mut modifiers = false;
        while matches!(self.cursor.peek(), Some('?' | '!')) {
            self.cursor.bump();
            modifiers = true;
        }
        let name_at = self.cursor.pos();
        let name = self.name("a rule or terminal definition")?;
        let Some(kind) = name_kind(&name) else {
            return error(name_at, bad_name(&name));
        };
        if modifiers && kind == Kind::Terminal {
            return error(
                at,
                format!("the modifiers ? and ! apply to rules, not to the terminal {name}"),
            );
        }
        self.space(false);
        if self.cursor.peek() == Some('{') {
            return error(
                self.cursor.pos(),
                format!("templates ({name}{{...}}) are not supported"),
            );
        }
        if self.cursor.peek() == Some('.') {
            self.priority()?;
        }
        if self.cursor.peek() != Some(':') {
            let noun = if kind == Kind::Rule { "rule" } else { "terminal" };
            return error(
                self.cursor.pos(),
                format!("expected \":\" after the {noun} name {name:?}"),
            );
        }
        self.cursor.bump();
        self.space(false);
        let expr = if kind == Kind::Rule {
            let expr = self.alternatives(Body::Rule)?;
            match self.ignored {
                Some(ignored) if name == START_RULE => Expr::Seq(vec![Expr::Rule(ignored), expr]),
                _ => expr,
            }
        } else {
            self.references.clear();
            let expr = self.alternatives(Body::Terminal(&name))?;
            if expr == Expr::Empty {
                return error(name_at, format!("terminal {name} is empty"));
            }
            self.terminals.push(TerminalReferences {
                name: name.clone(),
                references: std::mem::take(&mut self.references),
            });
            expr
        };
        self.rules.define(&name, expr, at)
    }

    /// `.2` after a definition's name (read and ignored).
    fn priority(&mut self) -> Result<()> {
        let at = self.cursor.pos();
        self.cursor.bump();
        self.space(false);
        if matches!(self.cursor.peek(), Some('+' | '-')) {
            self.cursor.bump();
        }
        if !self.cursor.peek().is_some_and(|c| c.is_ascii_digit()) {
            return error(at, "expected a priority number after \".\" (as in name.2: ...)");
        }
        while self.cursor.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.cursor.bump();
        }
        self.space(false);
        Ok(())
    }

    fn directive(&mut self) -> Result<()> {
        let at = self.cursor.pos();
        self.cursor.bump();
        let mut word = String::new();
        while let Some(c) = self.cursor.peek().filter(|&c| is_name_char(c)) {
            word.push(c);
            self.cursor.bump();
        }
        match word.as_str() {
            "ignore" => self.ignore(at),
            "import" => self.import(at),
            "declare" | "override" | "extend" => error(at, format!("%{word} is not supported")),
            _ => error(
                at,
                format!("unknown directive %{word} (the supported ones are %ignore and %import)"),
            ),
        }
    }

    fn ignore(&mut self, at: SourcePos) -> Result<()> {
        self.space(false);
        let expr = self.alternatives(Body::Ignore)?;
        if expr == Expr::Empty {
            return error(at, "%ignore expects a terminal, a literal or a regex");
        }
        if self.ignored_alternatives.is_empty() {
            self.ignored_at = at;
        }
        self.ignored_alternatives.push(expr);
        Ok(())
    }

    fn import(&mut self, at: SourcePos) -> Result<()> {
        self.space(false);
        if self.cursor.peek() == Some('.') {
            return error(
                self.cursor.pos(),
                "relative imports are not supported: only the built-in module common can be imported",
            );
        }
        let mut path = vec![(self.cursor.pos(), self.name("a module name after %import")?)];
        while self.cursor.peek() == Some('.') {
            self.cursor.bump();
            path.push((self.cursor.pos(), self.name("a name after \".\"")?));
        }
        self.space(false);
        let names = if self.cursor.peek() == Some('(') {
            self.cursor.bump();
            self.name_list()?
        } else {
            let (name_at, name) = path.pop().unwrap_or_default();
            if path.is_empty() {
                return error(at, format!("nothing is imported from {name} (write {name}.NAME)"));
            }
            let alias = if self.cursor.peek() == Some('-') && self.cursor.peek_at(1) == Some('>') {
                self.cursor.bump();
                self.cursor.bump();
                self.space(false);
                self.name("a name after \"->\"")?
            } else {
                name.clone()
            };
            vec![(name_at, name, alias)]
        };
        let module: Vec<&str> = path.iter().map(|(_, part)| part.as_str()).collect();
        if module != ["common"] {
            return error(
                path[0].0,
                format!(
                    "cannot import from {}: only the built-in module common can be imported",
                    module.join(".")
                ),
            );
        }
        for (name_at, name, alias) in names {
            self.import_common(name_at, &name, &alias)?;
        }
        Ok(())
    }

    /// `(NAME1, NAME2)` after the opening parenthesis: each name with itself as its alias.
    fn name_list(&mut self) -> Result<Vec<(SourcePos, String, String)>> {
        let mut names = Vec::new();
        loop {
            self.space(false);
            let at = self.cursor.pos();
            let name = self.name("a name to import")?;
            names.push((at, name.clone(), name));
            self.space(false);
            match self.cursor.peek() {
                Some(',') => {
                    self.cursor.bump();
                }
                Some(')') => {
                    self.cursor.bump();
                    return Ok(names);
                }
                _ => {
                    return error(
                        self.cursor.pos(),
                        "expected \",\" or \")\" in the list of imported names",
                    )
                }
            }
        }
    }

    fn import_common(&mut self, at: SourcePos, name: &str, alias: &str) -> Result<()> {
        let Some(&(common_name, pattern)) = COMMON.iter().find(|(n, _)| *n == name) else {
            let known: Vec<&str> = COMMON.iter().map(|(n, _)| *n).collect();
            return error(
                at,
                format!("common has no terminal {name} (it has {})", known.join(", ")),
            );
        };
        if name_kind(alias) != Some(Kind::Terminal) {
            return error(
                at,
                format!("{name} is a terminal: it must be imported under a terminal name, not {alias:?}"),
            );
        }
        if self.imported.get(alias) == Some(&common_name) {
            return Ok(());
        }
        self.imported.insert(alias.to_owned(), common_name);
        let expr = Expr::from_regex(pattern)?;
        self.rules.define(alias, expr, at)
    }

    /// `|`-separated alternatives, up to the end of the definition or of the group.
    fn alternatives(&mut self, body: Body<'_>) -> Result<Expr> {
        let mut alternatives = vec![self.alternative(body)?];
        loop {
            if self.cursor.peek() == Some('\n') && !self.continuation() {
                break;
            }
            if self.cursor.peek() != Some('|') {
                break;
            }
            self.cursor.bump();
            self.space(false);
            alternatives.push(self.alternative(body)?);
        }
        Ok(one_or_many(alternatives, Expr::Alt))
    }

    fn alternative(&mut self, body: Body<'_>) -> Result<Expr> {
        let mut items = Vec::new();
        loop {
            match self.cursor.peek() {
                None | Some('|' | ')' | ']' | '\n') => break,
                Some('-') if self.cursor.peek_at(1) == Some('>') => {
                    self.alias(body)?;
                    break;
                }
                Some(_) => {
                    items.push(self.item(body)?);
                    self.space(false);
                }
            }
        }
        Ok(one_or_many(items, Expr::Seq))
    }

    /// `-> name` (read and ignored).
    fn alias(&mut self, body: Body<'_>) -> Result<()> {
        let at = self.cursor.pos();
        match body {
            Body::Rule if self.depth == 0 => {}
            Body::Rule => {
                return error(
                    at,
                    "an alias (->) can only end an alternative of a rule, not one inside ( ) or [ ]",
                )
            }
            Body::Terminal(_) | Body::Ignore => return error(at, "aliases (->) are only allowed in rules"),
        }
        self.cursor.bump();
        self.cursor.bump();
        self.space(false);
        let name_at = self.cursor.pos();
        let name = self.name("an alias name after \"->\"")?;
        if name_kind(&name) != Some(Kind::Rule) {
            return error(
                name_at,
                format!("an alias must be a lowercase rule name, not {name:?}"),
            );
        }
        self.space(false);
        Ok(())
    }

    /// An atom with its repetition, if any.
    fn item(&mut self, body: Body<'_>) -> Result<Expr> {
        let atom = self.atom(body)?;
        self.space(false);
        let at = self.cursor.pos();
        if let Some((min, max)) = self.cursor.repetition_operator() {
            return Ok(Expr::repeat(atom, min, max));
        }
        if self.cursor.peek() == Some('~') {
            self.cursor.bump();
            return self.counted(atom, at);
        }
        Ok(atom)
    }

    /// `~ n` or `~ n..m` after the tilde.
    fn counted(&mut self, atom: Expr, at: SourcePos) -> Result<Expr> {
        self.space(false);
        let min = self.count()?;
        self.space(false);
        let max = if self.cursor.peek() == Some('.') && self.cursor.peek_at(1) == Some('.') {
            self.cursor.bump();
            self.cursor.bump();
            self.space(false);
            self.count()?
        } else {
            min
        };
        if max < min {
            return error(
                at,
                format!("repetition ~ {min}..{max} has its maximum below its minimum"),
            );
        }
        if max > MAX_REPEAT {
            return error(
                at,
                format!("repetition counts above {MAX_REPEAT} are not supported"),
            );
        }
        Ok(Expr::repeat(atom, min, Some(max)))
    }

    fn count(&mut self) -> Result<u32> {
        let at = self.cursor.pos();
        let mut digits = String::new();
        while let Some(c) = self.cursor.peek().filter(char::is_ascii_digit) {
            digits.push(c);
            self.cursor.bump();
        }
        if digits.is_empty() {
            return error(at, "expected a repetition count after \"~\"");
        }
        digits.parse::<u32>().or_else(|_| {
            error(
                at,
                format!("repetition counts above {MAX_REPEAT} are not supported"),
            )
        })
    }

    fn atom(&mut self, body: Body<'_>) -> Result<Expr> {
        let at = self.cursor.pos();
        match self.cursor.peek() {
            Some('"') => self.literal_or_range(body, at),
            Some('/') => {
                let regex = self.regex(at)?;
                Ok(self.token(regex, body))
            }
            Some(open @ ('(' | '[')) => self.group(body, open, at),
            Some(c) if is_name_char(c) => self.reference(body, at),
            Some(c @ ('?' | '*' | '+' | '~')) => error(at, format!("{c:?} must follow an item")),
            Some(c) => error(at, format!("unexpected {c:?}")),
            None => error(at, "unexpected end of the grammar"),
        }
    }

    /// `( ... )` or `[ ... ]`.
    fn group(&mut self, body: Body<'_>, open: char, at: SourcePos) -> Result<Expr> {
        if self.depth >= MAX_NESTING {
            return error(
                at,
                format!("groups nested more than {MAX_NESTING} deep are not supported"),
            );
        }
        self.cursor.bump();
        self.depth += 1;
        self.space(false);
        let inner = self.alternatives(body)?;
        let close = if open == '(' { ')' } else { ']' };
        if self.cursor.peek() != Some(close) {
            return error(at, format!("unclosed {open:?}"));
        }
        self.cursor.bump();
        self.depth -= 1;
        Ok(if open == '[' {
            Expr::repeat(inner, 0, Some(1))
        } else {
            inner
        })
    }

    /// A rule or terminal name in a body.
    fn reference(&mut self, body: Body<'_>, at: SourcePos) -> Result<Expr> {
        let name = self.name("a name")?;
        if self.cursor.peek() == Some('{') {
            return error(at, format!("templates ({name}{{...}}) are not supported"));
        }
        match (name_kind(&name), body) {
            (None, _) => error(at, bad_name(&name)),
            (Some(Kind::Rule), Body::Rule) => Ok(Expr::Rule(self.rules.reference(&name, at))),
            (Some(Kind::Rule), Body::Terminal(terminal)) => error(
                at,
                format!("rules aren't allowed inside terminals ({name} in {terminal})"),
            ),
            (Some(Kind::Rule), Body::Ignore) => error(
                at,
                format!("%ignore takes terminals, literals and regexes, not the rule {name}"),
            ),
            (Some(Kind::Terminal), _) => {
                let index = self.rules.reference(&name, at);
                if let Body::Terminal(_) = body {
                    self.references.push((name, at));
                }
                Ok(self.token(Expr::Rule(index), body))
            }
        }
    }

    /// A token of a rule is followed by the ignored strings; terminals and `%ignore` are left alone.
    fn token(&self, expr: Expr, body: Body<'_>) -> Expr {
        match (self.ignored, body) {
            (Some(ignored), Body::Rule) => Expr::Seq(vec![expr, Expr::Rule(ignored)]),
            _ => expr,
        }
    }

    /// `"literal"`, `"literal"i` or `"a".."z"`.
    fn literal_or_range(&mut self, body: Body<'_>, at: SourcePos) -> Result<Expr> {
        let (text, insensitive) = self.string(at)?;
        self.space(false);
        let expr = if self.cursor.peek() == Some('.') && self.cursor.peek_at(1) == Some('.') {
            self.cursor.bump();
            self.cursor.bump();
            self.space(false);
            let end_at = self.cursor.pos();
            if self.cursor.peek() != Some('"') {
                return error(end_at, "expected a string after \"..\" (as in \"a\"..\"z\")");
            }
            let (end, end_insensitive) = self.string(end_at)?;
            character_range(&text, &end, insensitive || end_insensitive, at)?
        } else if text.is_empty() {
            return error(at, "empty literals \"\" are not allowed");
        } else if insensitive {
            case_insensitive(&text)?
        } else {
            Expr::Bytes(text.into_bytes())
        };
        Ok(self.token(expr, body))
    }

    /// A `"..."` literal's text, and whether the `i` flag follows it.
    fn string(&mut self, at: SourcePos) -> Result<(String, bool)> {
        self.cursor.bump();
        let mut text = String::new();
        loop {
            match self.cursor.bump() {
                None | Some('\n') => return error(at, "unterminated string literal"),
                Some('"') => break,
                Some('\\') => self.escape(&mut text, at)?,
                Some(c) => text.push(c),
            }
        }
        let insensitive = self.cursor.peek() == Some('i');
        if insensitive {
            self.cursor.bump();
        }
        Ok((text, insensitive))
    }

    /// The escape after a backslash in a literal, as Lark reads it.
    fn escape(&mut self, text: &mut String, literal_at: SourcePos) -> Result<()> {
        let at = self.cursor.pos();
        let hex_digits = match self.cursor.bump() {
            None | Some('\n') => return error(literal_at, "unterminated string literal"),
            Some('x') => 2,
            Some('u') => 4,
            Some('U') => 8,
            Some(c) => {
                match c {
                    'n' => text.push('\n'),
                    't' => text.push('\t'),
                    'r' => text.push('\r'),
                    'f' => text.push('\x0C'),
                    '\\' | '"' => text.push(c),
                    _ => {
                        text.push('\\');
                        text.push(c);
                    }
                }
                return Ok(());
            }
        };
        let mut value = 0u32;
        for _ in 0..hex_digits {
            let Some(digit) = self.cursor.peek().and_then(|c| c.to_digit(16)) else {
                return error(at, format!("expected {hex_digits} hex digits in the escape"));
            };
            self.cursor.bump();
            value = value * 16 + digit;
        }
        match char::from_u32(value) {
            Some(c) => {
                text.push(c);
                Ok(())
            }
            None => error(at, format!("escape U+{value:X} is not a Unicode scalar value")),
        }
    }

    /// `/regex/flags`.
    fn regex(&mut self, at: SourcePos) -> Result<Expr> {
        self.cursor.bump();
        let mut pattern = String::new();
        loop {
            match self.cursor.bump() {
                None | Some('\n') => return error(at, "unterminated regular expression"),
                Some('/') => break,
                Some('\\') => match self.cursor.bump() {
                    None | Some('\n') => return error(at, "unterminated regular expression"),
                    Some('/') => pattern.push('/'),
                    Some(c) => {
                        pattern.push('\\');
                        pattern.push(c);
                    }
                },
                Some(c) => pattern.push(c),
            }
        }
        let mut flags = String::new();
        while let Some(flag) = self.cursor.peek().filter(char::is_ascii_alphabetic) {
            match flag {
                'i' | 's' | 'x' | 'u' => {
                    if !flags.contains(flag) {
                        flags.push(flag);
                    }
                }
                'm' => {
                    return error(
                        self.cursor.pos(),
                        "the regex flag m is not supported: a terminal has no lines, anchors have no \
                         meaning inside a grammar",
                    )
                }
                _ => {
                    return error(
                        self.cursor.pos(),
                        format!("unsupported regex flag {flag:?} (the supported ones are i, s, x and u)"),
                    )
                }
            }
            self.cursor.bump();
        }
        let pattern = if flags.is_empty() {
            pattern
        } else {
            format!("(?{flags}){pattern}")
        };
        Expr::from_regex(&pattern).map_err(|e| match e {
            CoreError::Grammar(message) => CoreError::Grammar(format!("Lark {at}: {message}")),
            other => other,
        })
    }

    /// Refuse a terminal that refers to itself, directly or through other terminals: Lark's terminals are
    /// regular.
    fn check_terminal_recursion(&self) -> Result<()> {
        const UNSEEN: u8 = 0;
        const ON_PATH: u8 = 1;
        const DONE: u8 = 2;
        let index: HashMap<&str, usize> = self
            .terminals
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect();
        let mut state = vec![UNSEEN; self.terminals.len()];
        for root in 0..self.terminals.len() {
            if state[root] != UNSEEN {
                continue;
            }
            // depth-first, with the next reference to follow from each terminal on the path
            let mut path = vec![(root, 0usize)];
            state[root] = ON_PATH;
            while let Some((terminal, next)) = path.last_mut() {
                let references = &self.terminals[*terminal].references;
                let Some((target, at)) = references.get(*next) else {
                    state[*terminal] = DONE;
                    path.pop();
                    continue;
                };
                *next += 1;
                let Some(&t) = index.get(target.as_str()) else {
                    continue;
                };
                match state[t] {
                    UNSEEN => {
                        state[t] = ON_PATH;
                        path.push((t, 0));
                    }
                    ON_PATH => {
                        let start = path.iter().position(|&(p, _)| p == t).unwrap_or(0);
                        let cycle: Vec<&str> = path[start..]
                            .iter()
                            .map(|&(p, _)| self.terminals[p].name.as_str())
                            .chain([target.as_str()])
                            .collect();
                        return error(
                            *at,
                            format!(
                                "terminal {target} refers to itself ({}); recursion is only allowed \
                                 in rules",
                                cycle.join(" -> ")
                            ),
                        );
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Cfg> {
        self.check_terminal_recursion()?;
        if self.ignored.is_some() {
            let alternatives = std::mem::take(&mut self.ignored_alternatives);
            let expr = if alternatives.is_empty() {
                Expr::Empty
            } else {
                Expr::repeat(one_or_many(alternatives, Expr::Alt), 0, None)
            };
            self.rules.define(IGNORED_RULE, expr, self.ignored_at)?;
        }
        self.rules.finish(START_RULE)
    }
}

/// `"a".."z"`.
fn character_range(start: &str, end: &str, insensitive: bool, at: SourcePos) -> Result<Expr> {
    if insensitive {
        return error(at, "the ends of a range cannot take the i flag");
    }
    let single = |s: &str| {
        let mut chars = s.chars();
        chars.next().filter(|_| chars.next().is_none())
    };
    let (Some(low), Some(high)) = (single(start), single(end)) else {
        return error(
            at,
            format!("the ends of a range must be one character each, not {start:?}..{end:?}"),
        );
    };
    if high < low {
        return error(at, format!("range {low:?}..{high:?} is reversed"));
    }
    Ok(Expr::Class {
        ranges: vec![(low, high)],
        negated: false,
    })
}

/// `text` with each character matching its Unicode simple case folds; runs of characters without case
/// stay literal.
fn case_insensitive(text: &str) -> Result<Expr> {
    let mut parts = Vec::new();
    let mut run = String::new();
    for c in text.chars() {
        let mut class = ClassUnicode::new([ClassUnicodeRange::new(c, c)]);
        class
            .try_case_fold_simple()
            .map_err(|e| CoreError::Internal(format!("case folding is unavailable: {e}")))?;
        if class.ranges().len() == 1 && class.ranges()[0] == ClassUnicodeRange::new(c, c) {
            run.push(c);
            continue;
        }
        if !run.is_empty() {
            parts.push(Expr::Bytes(std::mem::take(&mut run).into_bytes()));
        }
        parts.push(Expr::Class {
            ranges: class.ranges().iter().map(|r| (r.start(), r.end())).collect(),
            negated: false,
        });
    }
    if !run.is_empty() {
        parts.push(Expr::Bytes(run.into_bytes()));
    }
    Ok(one_or_many(parts, Expr::Seq))
}

/// Nothing is the empty string, one part itself, more parts `many(parts)`.
fn one_or_many(mut parts: Vec<Expr>, many: fn(Vec<Expr>) -> Expr) -> Expr {
    match parts.len() {
        0 => Expr::Empty,
        1 => parts.pop().unwrap_or(Expr::Empty),
        _ => many(parts),
    }
}

fn error<T>(at: SourcePos, message: impl fmt::Display) -> Result<T> {
    Err(CoreError::Grammar(format!("Lark {at}: {message}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::earley::Recognizer;
    use super::super::lower::Bnf;
    use super::*;

    /// A grammar's language, asked through the Earley recognizer.
    struct Language(Arc<Bnf>);

    impl Language {
        fn new(grammar: &str) -> Self {
            let cfg = parse(grammar).unwrap_or_else(|e| panic!("{e} in\n{grammar}"));
            Language(Arc::new(Bnf::lower(&cfg).unwrap()))
        }

        fn accepts(&self, text: &str) -> bool {
            let mut recognizer = Recognizer::new(Arc::clone(&self.0));
            recognizer.push_all(text.as_bytes()).is_ok() && recognizer.is_accepting()
        }

        fn check(&self, accepted: &[&str], rejected: &[&str]) {
            for text in accepted {
                assert!(self.accepts(text), "should accept {text:?}");
            }
            for text in rejected {
                assert!(!self.accepts(text), "should reject {text:?}");
            }
        }
    }

    fn grammar_error(text: &str) -> String {
        match parse(text) {
            Err(CoreError::Grammar(message)) => message,
            other => panic!("expected a grammar error for {text:?}, got {other:?}"),
        }
    }

    /// The error for `text` says `expected` at `line, column`.
    fn assert_error(text: &str, line: usize, column: usize, expected: &str) {
        let message = grammar_error(text);
        assert!(
            message.contains(&format!("line {line}, column {column}")) && message.contains(expected),
            "for {text:?}: {message}"
        );
    }

    const JSON: &str = r#"
?start: value

?value: object
      | array
      | string
      | SIGNED_NUMBER      -> number
      | "true"             -> true
      | "false"            -> false
      | "null"             -> null

array  : "[" [value ("," value)*] "]"
object : "{" [pair ("," pair)*] "}"
pair   : string ":" value

string : ESCAPED_STRING

%import common.ESCAPED_STRING
%import common.SIGNED_NUMBER
%import common.WS
%ignore WS
"#;

    #[test]
    fn json() {
        Language::new(JSON).check(
            &[
                r#"{"a": [1, 2.5e3, -3], "b": {"c": null}}"#,
                " [ true , false ]\n",
                r#""x\"y""#,
                "[]",
                "{ }",
                "\n\t[1]\r\n",
                "-0.5E-7",
            ],
            &[
                "[1,]",
                r#"{"a" 1}"#,
                "tr ue",
                "\"a\nb\"",
                "[1 2]",
                "nul",
                "-",
                "1.5.5",
                r#""a"""#,
                "",
            ],
        );
    }

    #[test]
    fn reads_the_documented_example() {
        Language::new(
            "start: pair (\",\" pair)*\n\
             pair: KEY \"=\" value                 // a comment\n\
             ?value: SIGNED_NUMBER | \"true\"i | \"false\"i\n\
             \x20     | \"'\" /[^'\\n]*/ \"'\"           -> string\n\
             KEY: (\"a\"..\"z\" | \"_\")+\n\
             %import common.SIGNED_NUMBER\n\
             %import common.WS_INLINE\n\
             %ignore WS_INLINE\n",
        )
        .check(
            &["a=1", "a = -2.5, b_c=TRUE ,d='x y'", "x=''"],
            &["a=1,", "A=1", "a b=1", "a='x\ny'", "a=tru"],
        );
    }

    #[test]
    fn calculator() {
        let calculator = Language::new(
            r#"
?start: sum
      | NAME "=" sum    -> assign_var

?sum: product
    | sum "+" product   -> add
    | sum "-" product   -> sub

?product: atom
    | product "*" atom  -> mul
    | product "/" atom  -> div

?atom: NUMBER           -> number
     | "-" atom         -> neg
     | NAME             -> var
     | "(" sum ")"

%import common.CNAME -> NAME
%import common.NUMBER
%import common.WS_INLINE

%ignore WS_INLINE
"#,
        );
        calculator.check(
            &["1+2*3", "x = (1 + 2) * -3", "a/b", " 2 ", "--1", "_x1=.5e2/y"],
            &["1+", "(1", "1 2", "x = ", "1\n+2", "x = y = 1", "1x"],
        );
    }

    #[test]
    fn case_insensitive_literals() {
        let sql = Language::new("start: \"select\"i \" \" NAME\nNAME: /[a-z]+/\n");
        sql.check(
            &["SELECT abc", "SeLeCt x", "select y"],
            &["SELECT ABC", "selec x", "SELECTx"],
        );
        // non-ASCII letters fold too, as in a regex's (?i); characters without case stay literal
        Language::new("start: \"é-1\"i").check(&["é-1", "É-1"], &["e-1", "É_1"]);
        assert_eq!(
            parse("start: \"a1\"i").unwrap().rules()[0].expr,
            Expr::Seq(vec![
                Expr::Class {
                    ranges: vec![('A', 'A'), ('a', 'a')],
                    negated: false
                },
                Expr::Bytes(b"1".to_vec()),
            ])
        );
    }

    #[test]
    fn ranges_and_escapes() {
        Language::new("start: (\"a\"..\"c\" | \"x\" .. \"z\")+ HEX\nHEX: \"\\x41\"..\"\\u0046\"")
            .check(&["abxA", "zF"], &["dA", "aG", "a", "A"]);
        // an unknown escape keeps its backslash, as in Lark
        Language::new(r#"start: "\n\t\r\f\\\"\x41\u00e9\U0001F600\d\'""#).check(
            &["\n\t\r\x0C\\\"A\u{e9}\u{1F600}\\d\\'"],
            &["\n\t\r\x0C\\\"A\u{e9}\u{1F600}d'"],
        );
    }

    #[test]
    fn counted_repetition() {
        Language::new("start: \"ab\"~2 \"c\" ~ 1..3 CODE?\nCODE: \"#\" HEXDIGIT~4\n%import common.HEXDIGIT")
            .check(
                &["ababc", "ababccc", "ababc#00fF"],
                &["abc", "ababcccc", "abababc", "ababc#00f", "ababc#00fff"],
            );
    }

    #[test]
    fn regexes_and_flags() {
        Language::new("start: /ab+/i \"-\" /a.b/s \"-\" /a.b/ \"-\" / a b  # a comment/x \"-\" /\\/\\d/")
            .check(
                &["ABbB-a\nb-a b-ab-/7", "ab-axb-a.b-ab-/0"],
                &["ABbB-a\nb-a\nb-ab-/7", "ab-axb-a.b-a b-/0", "a-axb-a.b-ab-/0"],
            );
        Language::new("start: /é+/u /[a-z]/iu").check(&["ééK"], &["é"]);
    }

    #[test]
    fn ignored_strings_go_between_tokens_of_rules_only() {
        let language = Language::new(
            "start: \"ab\" \"c\" WORD item*\nWORD: \"x\" \"y\"\nitem: \"i\"\n%ignore \" \"\n%ignore COMMENT\n\
             COMMENT: \"//\" /[^\\n]/* \"\\n\"\n",
        );
        language.check(
            &["abcxy", "  ab c xy ", "ab// note\nc xy i  i i// end\n"],
            &["a bcxy", "abcx y", "ab// no newline c xy"],
        );
        Language::new("start: \"a\"*\n%ignore \" \"").check(&["", "  ", " a a  a ", "aa"], &["b"]);
        // `start` inside itself: the strings around it are ignored as around any other rule
        Language::new("start: \"(\" start \")\" | \"x\"\n%ignore \" \"")
            .check(&["( ( x ) )", " (x) ", "x"], &["(x", "( )"]);
        // without %ignore, nothing is skipped, and no helper rule is made
        Language::new("start: \"a\" \"b\"").check(&["ab"], &["a b", " ab"]);
        assert_eq!(parse("start: \"a\" \"b\"").unwrap().rules().len(), 1);
    }

    #[test]
    fn modifiers_priorities_aliases_comments_and_continuations() {
        let language = Language::new(
            "// a grammar\n\n?start.2: a | _b -> bee\n  // between alternatives\n\n  | \"c\" \\\n    \"d\"\n\
             !a: \"a\" |\n_b.-1: B\nB.3: \"b\" // a comment\n",
        );
        language.check(&["a", "", "b", "cd"], &["c", "d", "ab"]);
    }

    #[test]
    fn common_terminals_mean_what_lark_means() {
        let names: Vec<&str> = COMMON.iter().map(|(n, _)| *n).collect();
        let grammar = format!(
            "start: {}\n%import common ({})\n",
            names
                .iter()
                .map(|n| format!("\"{n} \" {n}"))
                .collect::<Vec<_>>()
                .join(" | "),
            names.join(", ")
        );
        let language = Language::new(&grammar);
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("DIGIT", &["7"], &["a", "12"]),
            ("HEXDIGIT", &["f", "C", "0"], &["g"]),
            ("INT", &["0", "0123"], &["", "-1"]),
            ("SIGNED_INT", &["+1", "-20", "3"], &["+-1"]),
            ("DECIMAL", &["1.", "1.5", ".5"], &["1", "."]),
            ("_EXP", &["e5", "E-10"], &["e"]),
            ("FLOAT", &["1e5", "1.", ".5e-3", "2.5E+1"], &["1", "e5"]),
            ("SIGNED_FLOAT", &["-1.5", "+.5"], &["-1"]),
            ("NUMBER", &["1", "1.5", "1e3"], &["-1", "."]),
            ("SIGNED_NUMBER", &["-1", "+2.5e3", "3"], &["--1"]),
            (
                "ESCAPED_STRING",
                &[r#""""#, r#""a\"b""#, r#""\\""#, r#""é""#],
                &[r#""a"b""#, r#""\""#, "\"a\nb\""],
            ),
            ("LETTER", &["a", "Z"], &["1", "é"]),
            ("UCASE_LETTER", &["Q"], &["q"]),
            ("LCASE_LETTER", &["q"], &["Q"]),
            ("WORD", &["Hello"], &["he11o", ""]),
            ("CNAME", &["_a1", "x"], &["1a"]),
            ("WS_INLINE", &[" \t "], &["\n"]),
            ("WS", &[" \t\x0C\r\n"], &[""]),
            ("CR", &["\r"], &["\n"]),
            ("LF", &["\n"], &["\r"]),
            ("NEWLINE", &["\n", "\r\n\n"], &["\r"]),
            ("SH_COMMENT", &["#", "# x"], &["# x\n"]),
            ("CPP_COMMENT", &["// x"], &["/ x"]),
            (
                "C_COMMENT",
                &["/**/", "/* a * b **/", "/*\n*/"],
                &["/* */ */", "/*/"],
            ),
            ("SQL_COMMENT", &["-- x"], &["- x"]),
        ];
        assert_eq!(cases.len(), COMMON.len());
        for (name, accepted, rejected) in cases {
            let with_name =
                |texts: &[&str]| -> Vec<String> { texts.iter().map(|t| format!("{name} {t}")).collect() };
            let accepted = with_name(accepted);
            let rejected = with_name(rejected);
            language.check(
                &accepted.iter().map(String::as_str).collect::<Vec<_>>(),
                &rejected.iter().map(String::as_str).collect::<Vec<_>>(),
            );
        }
    }

    #[test]
    fn imports_alias_and_repeat() {
        Language::new(
            "start: N \",\" INT\n%import common.INT -> N\n%import common.INT\n%import common.INT\n",
        )
        .check(&["1,2"], &["1,a"]);
    }

    #[test]
    fn unsupported_features_are_refused_with_their_position() {
        assert_error("start: x\nx{a, b}: a", 2, 2, "templates");
        assert_error("start: x{\"a\"}", 1, 8, "templates");
        assert_error("start: \"a\"\n%declare A", 2, 1, "%declare is not supported");
        assert_error("start: \"a\"\n %override start: \"b\"", 2, 2, "%override");
        assert_error("%extend start: \"b\"", 1, 1, "%extend");
        assert_error("%foo", 1, 1, "unknown directive %foo");
        assert_error("%import python.NAME", 1, 9, "cannot import from python");
        assert_error("%import common.NAME", 1, 16, "common has no terminal NAME");
        assert_error("%import common (INT, FOO)", 1, 22, "common has no terminal FOO");
        assert_error("%import common", 1, 1, "nothing is imported from common");
        assert_error("%import .grammar.A", 1, 9, "relative imports");
        assert_error("%import common.WS -> ws", 1, 16, "terminal name");
        assert_error("start: /a/m", 1, 11, "flag m");
        assert_error("start: /a/q", 1, 11, "flag 'q'");
        assert_error("start: /(?<=a)b/", 1, 8, "look-around");
        assert_error("start: /^a/", 1, 8, "anchors");
        // Python-only regex syntax
        assert_error("start: /a\\Z/", 1, 8, "invalid regex");
        assert_error("start: /a{/", 1, 8, "invalid regex");
    }

    #[test]
    fn malformed_grammars_are_refused_with_their_position() {
        assert_error("start: \"abc", 1, 8, "unterminated string");
        assert_error("start: /abc", 1, 8, "unterminated regular");
        assert_error("start: (\"a\"\n", 1, 8, "unclosed '('");
        assert_error("start: [\"a\" )", 1, 8, "unclosed '['");
        assert_error("start: \"a\" )", 1, 12, "unbalanced ')'");
        assert_error(
            "start: \"a\"\n  \"b\"",
            2,
            3,
            "expected a rule or terminal definition",
        );
        assert_error(
            "start \"a\"",
            1,
            7,
            "expected \":\" after the rule name \"start\"",
        );
        assert_error("start: \"ab\"..\"z\"", 1, 8, "one character each");
        assert_error("start: \"z\"..\"a\"", 1, 8, "reversed");
        assert_error("start: \"a\"i..\"z\"", 1, 8, "cannot take the i flag");
        assert_error("start: \"a\" ~ 3..1", 1, 12, "maximum below");
        assert_error("start: \"a\"~99999", 1, 11, "above");
        assert_error("start: \"a\"~", 1, 12, "repetition count");
        assert_error("start: \"a\"**", 1, 12, "'*' must follow an item");
        assert_error("start: \"\"", 1, 8, "empty literals");
        assert_error("start: A\nA:\n", 2, 1, "terminal A is empty");
        assert_error("Ab: \"x\"", 1, 1, "neither a rule name");
        assert_error("start: #", 1, 8, "unexpected '#'");
        assert_error("?A: \"a\"", 1, 1, "modifiers");
        assert_error("start: \"\\x4\"", 1, 10, "2 hex digits");
        assert_error("start: \"\\uD800\"", 1, 10, "not a Unicode scalar");
        assert_error("start.x: \"a\"", 1, 6, "priority number");
        assert_error(
            &format!("start: {}\"a\"{}", "(".repeat(300), ")".repeat(300)),
            1,
            208,
            "nested",
        );
    }

    #[test]
    fn misplaced_rules_and_aliases_are_refused() {
        assert_error(
            "start: A\nA: \"a\" b\nb: \"b\"",
            2,
            8,
            "rules aren't allowed inside terminals (b in A)",
        );
        assert_error("start: \"a\"\n%ignore b\nb: \"b\"", 2, 9, "not the rule b");
        assert_error("start: A\nA: \"a\" -> x", 2, 8, "only allowed in rules");
        assert_error("start: (\"a\" -> x)", 1, 13, "inside ( ) or [ ]");
        assert_error("start: \"a\" -> X", 1, 15, "lowercase rule name");
        assert_error(
            "start: A\nA: \"a\" B\nB: \"b\" C?\nC: A",
            4,
            4,
            "terminal A refers to itself (A -> B -> C -> A)",
        );
        assert_error("start: A\nA: \"a\" A?", 2, 8, "(A -> A)");
        assert_error("start: \"a\"\n%ignore", 2, 1, "%ignore expects");
    }

    #[test]
    fn missing_undefined_and_duplicate_names_are_refused() {
        assert!(grammar_error("value: \"a\"").contains("no rule named \"start\""));
        let message = grammar_error("start: a B\na: \"a\"");
        assert!(
            message.contains("undefined rule \"B\"") && message.contains("line 1, column 10"),
            "{message}"
        );
        assert_error("start: \"a\"\nstart: \"b\"", 2, 1, "defined twice");
        assert_error("start: WS\nWS: \" \"\n%import common.WS", 3, 16, "defined twice");
        assert_error("start: \"x\" start", 1, 1, "can never finish");
    }

    /// A class of the characters that mean something in a grammar, as a proptest regex.
    macro_rules! alphabet {
        () => {
            "[a-cA-C_:|()\\[\\]?*+~.!\"/\\\\ix0-9 \n%>{},-]"
        };
    }

    proptest::proptest! {
        /// Any text, however broken, parses or gets a grammar error: no panic, no internal error.
        #[test]
        fn arbitrary_text_never_panics(text in concat!(alphabet!(), "{0,40}")) {
            let prefixed = format!("start: {text}");
            for input in [text.as_str(), prefixed.as_str()] {
                match parse(input) {
                    Ok(cfg) => proptest::prop_assert_eq!(&cfg.rules()[cfg.root()].name, "start"),
                    Err(CoreError::Grammar(_)) => {}
                    Err(other) => proptest::prop_assert!(false, "unexpected error {other:?}"),
                }
            }
        }

        /// Random edits of a valid grammar parse or get a grammar error, and what parses can be lowered.
        #[test]
        fn mutated_grammars_never_panic(
            edits in proptest::collection::vec(
                (0.0..1.0f64, 0usize..4, concat!(alphabet!(), "{0,3}")),
                1..4,
            )
        ) {
            let mut text: Vec<char> = JSON.chars().collect();
            for (place, removed, inserted) in edits {
                let at = (place * text.len() as f64) as usize;
                let end = (at + removed).min(text.len());
                text.splice(at..end, inserted.chars());
            }
            let text: String = text.into_iter().collect();
            match parse(&text) {
                Ok(cfg) => {
                    proptest::prop_assert_eq!(&cfg.rules()[cfg.root()].name, "start");
                    let _ = Bnf::lower(&cfg);
                }
                Err(CoreError::Grammar(_)) => {}
                Err(other) => proptest::prop_assert!(false, "unexpected error {other:?}"),
            }
        }
    }
}
