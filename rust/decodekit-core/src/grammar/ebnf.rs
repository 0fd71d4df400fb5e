//! GBNF, llama.cpp's grammar format, read into a [`Cfg`].
//!
//! ```text
//! root   ::= greeting (", " name)* "!"
//! greeting ::= "hello" | "hi"      # a comment
//! name   ::= [A-Z] [a-z]{1,15}
//! ```
//!
//! * A rule is `name ::= alternatives`; names are letters, digits, `-` and `_`. The start rule is `root`.
//! * Terminals: `"literal"` and character classes `[a-z0-9_]`, `[^"\\]`, with the escapes `\n \r \t \\
//!   \" \[ \] \- \^ \xHH \uHHHH \UHHHHHHHH`; `.` is any character.
//! * `|` separates alternatives, juxtaposition is sequence, `( ... )` groups, and `*`, `+`, `?`, `{m}`,
//!   `{m,}`, `{m,n}`, `{,n}` repeat the element before them.
//! * `#` starts a comment. A rule ends at the end of its line unless a `(` is still open, the line ends
//!   right after `::=` or `|`, or the next line starts with `|` (a continuation llama.cpp does not accept
//!   but handwritten grammars often use).
//!
//! Errors are [`CoreError::Grammar`] with the line and column.

use std::fmt;

use super::cfg::{Cfg, Expr, RuleTable, SourcePos, MAX_REPEAT};
use super::cursor::Cursor;
use crate::error::{CoreError, Result};

/// Groups may nest this deep (deeper ones are refused rather than risking the stack).
const MAX_NESTING: usize = 200;

/// Parse GBNF `text` into a checked grammar rooted at `root`.
pub fn parse(text: &str) -> Result<Cfg> {
    let mut parser = Parser {
        cursor: Cursor::new(text),
        depth: 0,
        rules: RuleTable::default(),
    };
    parser.grammar()?;
    parser.rules.finish("root")
}

struct Parser {
    cursor: Cursor,
    /// Open parentheses: newlines are plain whitespace inside them.
    depth: usize,
    rules: RuleTable,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

impl Parser {
    /// Skip spaces, tabs and comments; newlines too when `newlines` (or inside parentheses).
    fn space(&mut self, newlines: bool) {
        while let Some(c) = self.cursor.peek() {
            match c {
                ' ' | '\t' | '\r' => {
                    self.cursor.bump();
                }
                '\n' if newlines || self.depth > 0 => {
                    self.cursor.bump();
                }
                '#' => {
                    while self.cursor.peek().is_some_and(|c| c != '\n') {
                        self.cursor.bump();
                    }
                }
                _ => break,
            }
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
            if self.cursor.peek().is_none() {
                return Ok(());
            }
            self.rule()?;
        }
    }

    fn rule(&mut self) -> Result<()> {
        let at = self.cursor.pos();
        let name = self.name()?;
        self.space(false);
        for expected in [':', ':', '='] {
            if self.cursor.peek() != Some(expected) {
                return error(
                    self.cursor.pos(),
                    format!("expected \"::=\" after the rule name {name:?}"),
                );
            }
            self.cursor.bump();
        }
        self.space(true);
        let expr = self.alternatives()?;
        match self.cursor.peek() {
            None | Some('\n') => {}
            Some(')') => return error(self.cursor.pos(), "unbalanced \")\""),
            Some(c) => return error(self.cursor.pos(), format!("unexpected {c:?}")),
        }
        self.rules.define(&name, expr, at)
    }

    fn name(&mut self) -> Result<String> {
        let at = self.cursor.pos();
        let mut name = String::new();
        while let Some(c) = self.cursor.peek().filter(|&c| is_name_char(c)) {
            name.push(c);
            self.cursor.bump();
        }
        if name.is_empty() {
            return match self.cursor.peek() {
                Some(c) => error(at, format!("expected a rule name, found {c:?}")),
                None => error(at, "expected a rule name, found the end of the grammar"),
            };
        }
        Ok(name)
    }

    fn alternatives(&mut self) -> Result<Expr> {
        let mut alternatives = vec![self.sequence()?];
        loop {
            if self.cursor.peek() == Some('\n') && self.depth == 0 && !self.continuation() {
                break;
            }
            if self.cursor.peek() != Some('|') {
                break;
            }
            self.cursor.bump();
            self.space(true);
            alternatives.push(self.sequence()?);
        }
        Ok(if alternatives.len() == 1 {
            alternatives.pop().unwrap_or(Expr::Empty)
        } else {
            Expr::Alt(alternatives)
        })
    }

    fn sequence(&mut self) -> Result<Expr> {
        let mut parts = Vec::new();
        while let Some(c) = self.cursor.peek() {
            if matches!(c, '|' | ')' | '\n') {
                break;
            }
            let element = self.element()?;
            parts.push(self.repetition(element)?);
            self.space(false);
        }
        Ok(match parts.len() {
            0 => Expr::Empty,
            1 => parts.pop().unwrap_or(Expr::Empty),
            _ => Expr::Seq(parts),
        })
    }

    fn element(&mut self) -> Result<Expr> {
        let at = self.cursor.pos();
        match self.cursor.peek() {
            Some('"') => {
                self.cursor.bump();
                self.literal(at)
            }
            Some('[') => {
                self.cursor.bump();
                self.class(at)
            }
            Some('.') => {
                self.cursor.bump();
                Ok(Expr::Class {
                    ranges: Vec::new(),
                    negated: true,
                })
            }
            Some('(') => {
                if self.depth >= MAX_NESTING {
                    return error(
                        at,
                        format!("groups nested more than {MAX_NESTING} deep are not supported"),
                    );
                }
                self.cursor.bump();
                self.depth += 1;
                self.space(true);
                let inner = self.alternatives()?;
                if self.cursor.peek() != Some(')') {
                    return error(at, "unclosed \"(\"");
                }
                self.cursor.bump();
                self.depth -= 1;
                Ok(inner)
            }
            Some(c) if is_name_char(c) => {
                let name = self.name()?;
                Ok(Expr::Rule(self.rules.reference(&name, at)))
            }
            Some(c) => error(at, format!("unexpected {c:?}")),
            None => error(at, "unexpected end of the grammar"),
        }
    }

    fn repetition(&mut self, element: Expr) -> Result<Expr> {
        let at = self.cursor.pos();
        if let Some((min, max)) = self.cursor.repetition_operator() {
            return Ok(Expr::repeat(element, min, max));
        }
        if self.cursor.peek() == Some('{') {
            self.cursor.bump();
            return self.braces(element, at);
        }
        Ok(element)
    }

    fn braces(&mut self, element: Expr, at: SourcePos) -> Result<Expr> {
        self.space(false);
        let min = self.number()?;
        self.space(false);
        let max = if self.cursor.peek() == Some(',') {
            self.cursor.bump();
            self.space(false);
            self.number()?
        } else {
            Some(min.unwrap_or(0))
        };
        self.space(false);
        if self.cursor.peek() != Some('}') {
            return error(self.cursor.pos(), "expected \"}\" to close the repetition");
        }
        self.cursor.bump();
        let min = min.unwrap_or(0);
        if let Some(max) = max {
            if max < min {
                return error(
                    at,
                    format!("repetition {{{min},{max}}} has its maximum below its minimum"),
                );
            }
        }
        if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT) {
            return error(
                at,
                format!("repetition counts above {MAX_REPEAT} are not supported"),
            );
        }
        Ok(Expr::repeat(element, min, max))
    }

    fn number(&mut self) -> Result<Option<u32>> {
        let at = self.cursor.pos();
        let mut digits = String::new();
        while let Some(c) = self.cursor.peek().filter(char::is_ascii_digit) {
            digits.push(c);
            self.cursor.bump();
        }
        if digits.is_empty() {
            return Ok(None);
        }
        match digits.parse::<u32>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => error(at, format!("repetition count {digits} is too large")),
        }
    }

    fn literal(&mut self, at: SourcePos) -> Result<Expr> {
        let mut text = String::new();
        loop {
            match self.cursor.bump() {
                None | Some('\n') => return error(at, "unterminated string literal"),
                Some('"') => break,
                Some('\\') => text.push(self.escape()?),
                Some(c) => text.push(c),
            }
        }
        Ok(if text.is_empty() {
            Expr::Empty
        } else {
            Expr::Bytes(text.into_bytes())
        })
    }

    fn class(&mut self, at: SourcePos) -> Result<Expr> {
        let negated = self.cursor.peek() == Some('^');
        if negated {
            self.cursor.bump();
        }
        let mut ranges = Vec::new();
        loop {
            let low = match self.cursor.bump() {
                None | Some('\n') => return error(at, "unterminated character class"),
                Some(']') => break,
                Some('\\') => self.escape()?,
                Some(c) => c,
            };
            let mut high = low;
            if self.cursor.peek() == Some('-') && self.cursor.peek_at(1).is_some_and(|c| c != ']') {
                self.cursor.bump();
                high = match self.cursor.bump() {
                    Some('\\') => self.escape()?,
                    Some(c) => c,
                    None => return error(at, "unterminated character class"),
                };
                if high < low {
                    return error(at, format!("character range {low:?}-{high:?} is reversed"));
                }
            }
            ranges.push((low, high));
        }
        if ranges.is_empty() && !negated {
            return error(at, "empty character class \"[]\" matches nothing");
        }
        Ok(Expr::Class { ranges, negated })
    }

    /// The character after a backslash.
    fn escape(&mut self) -> Result<char> {
        let at = self.cursor.pos();
        let hex_digits = match self.cursor.bump() {
            Some('n') => return Ok('\n'),
            Some('r') => return Ok('\r'),
            Some('t') => return Ok('\t'),
            Some(c @ ('\\' | '"' | '[' | ']' | '-' | '^' | '/')) => return Ok(c),
            Some('x') => 2,
            Some('u') => 4,
            Some('U') => 8,
            Some(c) => return error(at, format!("unknown escape \\{c}")),
            None => return error(at, "unexpected end of the grammar after \"\\\""),
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
            Some(c) => Ok(c),
            None => error(at, format!("escape U+{value:X} is not a Unicode scalar value")),
        }
    }
}

fn error<T>(at: SourcePos, message: impl fmt::Display) -> Result<T> {
    Err(CoreError::Grammar(format!("GBNF {at}: {message}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule<'a>(cfg: &'a Cfg, name: &str) -> &'a Expr {
        &cfg.rules().iter().find(|r| r.name == name).unwrap().expr
    }

    fn grammar_error(text: &str) -> String {
        match parse(text) {
            Err(CoreError::Grammar(message)) => message,
            other => panic!("expected a grammar error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn reads_the_documented_example() {
        let cfg = parse(
            "root   ::= greeting (\", \" name)* \"!\"\n\
             greeting ::= \"hello\" | \"hi\"      # a comment\n\
             name   ::= [A-Z] [a-z]{1,15}\n",
        )
        .unwrap();
        assert_eq!(cfg.rules()[cfg.root()].name, "root");
        assert_eq!(
            rule(&cfg, "greeting"),
            &Expr::Alt(vec![Expr::Bytes(b"hello".to_vec()), Expr::Bytes(b"hi".to_vec())])
        );
        assert_eq!(
            rule(&cfg, "name"),
            &Expr::Seq(vec![
                Expr::Class {
                    ranges: vec![('A', 'Z')],
                    negated: false
                },
                Expr::repeat(
                    Expr::Class {
                        ranges: vec![('a', 'z')],
                        negated: false
                    },
                    1,
                    Some(15)
                ),
            ])
        );
        let Expr::Seq(parts) = rule(&cfg, "root") else {
            panic!("a sequence")
        };
        assert_eq!(parts.len(), 3);
        assert!(matches!(
            &parts[1],
            Expr::Repeat {
                min: 0,
                max: None,
                ..
            }
        ));
    }

    #[test]
    fn escapes_classes_and_repetitions() {
        let cfg = parse(
            "root ::= \"a\\n\\\"\\x41\\u00e9\\U0001F600\" [^\"\\\\] [a-] . x? x+ x{2} x{2,} x{,3}\nx ::= \"x\"",
        )
        .unwrap();
        let Expr::Seq(parts) = rule(&cfg, "root") else {
            panic!("a sequence")
        };
        assert_eq!(parts[0], Expr::Bytes("a\n\"A\u{e9}\u{1F600}".as_bytes().to_vec()));
        assert_eq!(
            parts[1],
            Expr::Class {
                ranges: vec![('"', '"'), ('\\', '\\')],
                negated: true
            }
        );
        assert_eq!(
            parts[2],
            Expr::Class {
                ranges: vec![('a', 'a'), ('-', '-')],
                negated: false
            }
        );
        assert_eq!(
            parts[3],
            Expr::Class {
                ranges: vec![],
                negated: true
            }
        );
        let bounds: Vec<(u32, Option<u32>)> = parts[4..]
            .iter()
            .map(|p| match p {
                Expr::Repeat { min, max, .. } => (*min, *max),
                other => panic!("a repetition, got {other:?}"),
            })
            .collect();
        assert_eq!(
            bounds,
            [(0, Some(1)), (1, None), (2, Some(2)), (2, None), (0, Some(3))]
        );
    }

    #[test]
    fn rules_span_lines_inside_parentheses_and_after_bars() {
        let cfg = parse(
            "root ::=\n  \"{\" (\n    a\n    | b\n  ) \"}\"\n  | c\nc ::= \"c\" |\n  \"d\"\na ::= \"a\"\nb ::= \"b\"\n",
        )
        .unwrap();
        let Expr::Alt(alternatives) = rule(&cfg, "root") else {
            panic!("alternatives")
        };
        assert_eq!(alternatives.len(), 2);
        assert!(matches!(rule(&cfg, "c"), Expr::Alt(v) if v.len() == 2));
    }

    #[test]
    fn errors_name_line_and_column() {
        assert!(grammar_error("root ::= \"a\"\nx ::= [b-a]").contains("line 2, column 7"));
        assert!(grammar_error("root ::= \"abc").contains("unterminated string"));
        assert!(grammar_error("root ::= (\"a\"").contains("unclosed"));
        assert!(grammar_error("root ::= \"a\" )").contains("unbalanced"));
        assert!(grammar_error("root = \"a\"").contains("::="));
        assert!(grammar_error("root ::= x{3,1}").contains("maximum below"));
        assert!(grammar_error("root ::= x{99999}").contains("above"));
        assert!(grammar_error("root ::= []").contains("empty character class"));
        assert!(grammar_error("root ::= \"\\q\"").contains("unknown escape"));
        assert!(grammar_error("root ::= \"\\uD800\"").contains("not a Unicode scalar"));
    }

    proptest::proptest! {
        /// Any text, however broken, parses or gets a grammar error: no panic, no internal error.
        #[test]
        fn arbitrary_text_never_panics(text in "[a-c:=|()\\[\\]^.*+?{},0-9\"\\\\ \n#x-]{0,40}") {
            let prefixed = format!("root ::= {text}");
            for input in [text.as_str(), prefixed.as_str()] {
                match parse(input) {
                    Ok(cfg) => proptest::prop_assert_eq!(&cfg.rules()[cfg.root()].name, "root"),
                    Err(CoreError::Grammar(_)) => {}
                    Err(other) => proptest::prop_assert!(false, "unexpected error {other:?}"),
                }
            }
        }
    }

    #[test]
    fn undefined_duplicate_missing_root_and_unproductive_rules_are_refused() {
        let message = grammar_error("root ::= a b\na ::= \"a\"");
        assert!(
            message.contains("undefined rule \"b\"") && message.contains("line 1, column 12"),
            "{message}"
        );
        assert!(grammar_error("root ::= \"a\"\nroot ::= \"b\"").contains("defined twice"));
        assert!(grammar_error("start ::= \"a\"").contains("no rule named \"root\""));
        assert!(grammar_error("start ::= root").contains("only referenced"));
        let message = grammar_error("root ::= a\na ::= \"x\" a");
        assert!(message.contains("rule \"a\" can never finish"), "{message}");
        // a cycle with a base case, and an unproductive rule nobody reaches, are fine
        parse("root ::= a\na ::= \"x\" a | \"y\"\nb ::= b").unwrap();
    }
}
