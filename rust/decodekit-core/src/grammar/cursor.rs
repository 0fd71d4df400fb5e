//! A position in a grammar's source text, by characters, with the line and column that errors report;
//! shared by the text front ends (GBNF, Lark).

use super::cfg::SourcePos;

/// Characters of a source text and where the reader is.
#[derive(Debug)]
pub(crate) struct Cursor {
    chars: Vec<char>,
    at: usize,
    line: usize,
    column: usize,
}

/// A saved [`Cursor`] position.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark(usize, usize, usize);

impl Cursor {
    /// At the start of `text`.
    pub(crate) fn new(text: &str) -> Self {
        Cursor {
            chars: text.chars().collect(),
            at: 0,
            line: 1,
            column: 1,
        }
    }

    /// Line and column of the next character.
    pub(crate) fn pos(&self) -> SourcePos {
        SourcePos {
            line: self.line,
            column: self.column,
        }
    }

    /// The next character.
    pub(crate) fn peek(&self) -> Option<char> {
        self.peek_at(0)
    }

    /// The character `ahead` places after the next one.
    pub(crate) fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    /// Read the next character.
    pub(crate) fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    /// Read a postfix `?`, `*` or `+` if one comes next: its `(min, max)` repetition counts.
    pub(crate) fn repetition_operator(&mut self) -> Option<(u32, Option<u32>)> {
        let counts = match self.peek()? {
            '?' => (0, Some(1)),
            '*' => (0, None),
            '+' => (1, None),
            _ => return None,
        };
        self.bump();
        Some(counts)
    }

    /// Where the reader is, to come back to with [`reset`](Self::reset).
    pub(crate) fn mark(&self) -> Mark {
        Mark(self.at, self.line, self.column)
    }

    /// Back to `mark`.
    pub(crate) fn reset(&mut self, mark: Mark) {
        (self.at, self.line, self.column) = (mark.0, mark.1, mark.2);
    }
}
