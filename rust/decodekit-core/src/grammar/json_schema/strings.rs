//! JSON string contents as grammar expressions.
//!
//! Strings are generated in the canonical form `json.dumps(..., ensure_ascii=False)` writes: every
//! character as itself except `"` and `\` (escaped with a backslash) and the control characters below
//! U+0020 (`\b \f \n \r \t`, the others `\u00XX` with lowercase hex). Each character is one *unit*, so
//! `minLength`/`maxLength` count units and a `pattern` is matched against the decoded text: the regex's
//! characters are mapped to their encodings one by one.

use regex_syntax::hir::{Hir, HirKind, Look};

use super::super::cfg::{hir_to_expr, Expr, RegexLeaves};
use super::super::lower::class_ranges;
use crate::error::{CoreError, Result};

/// The canonical encoding of one character inside a JSON string.
fn escape(c: char) -> Option<&'static str> {
    const CONTROL: [&str; 32] = [
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007", "\\b", "\\t",
        "\\n", "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f", "\\u0010", "\\u0011", "\\u0012", "\\u0013",
        "\\u0014", "\\u0015", "\\u0016", "\\u0017", "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c",
        "\\u001d", "\\u001e", "\\u001f",
    ];
    match c {
        '"' => Some("\\\""),
        '\\' => Some("\\\\"),
        c if (c as u32) < 0x20 => Some(CONTROL[c as usize]),
        _ => None,
    }
}

/// The text of `s` inside a JSON string (without the quotes).
#[must_use]
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match escape(c) {
            Some(e) => out.push_str(e),
            None => out.push(c),
        }
    }
    out
}

/// The characters that need an escape: U+0000..U+001F, '"' and '\'.
const SPECIAL: [(u32, u32); 3] = [(0, 0x1F), (0x22, 0x22), (0x5C, 0x5C)];

/// One encoded character from the scalar-value ranges `ranges` (their complement when `negated`).
#[must_use]
pub fn char_class(ranges: &[(char, char)], negated: bool) -> Expr {
    let ranges = class_ranges(ranges, negated);
    let mut plain: Vec<(char, char)> = Vec::new();
    let mut options: Vec<Expr> = Vec::new();
    for (lo, hi) in ranges {
        let (lo, hi) = (lo as u32, hi as u32);
        for c in (lo..=hi.min(0x5C)).filter_map(char::from_u32) {
            if let Some(e) = escape(c) {
                options.push(Expr::Bytes(e.as_bytes().to_vec()));
            }
        }
        let mut start = lo;
        for (a, b) in SPECIAL {
            if b < start {
                continue;
            }
            if a > hi {
                break;
            }
            if a > start {
                push_range(&mut plain, start, (a - 1).min(hi));
            }
            start = start.max(b + 1);
        }
        if start <= hi {
            push_range(&mut plain, start, hi);
        }
    }
    if !plain.is_empty() {
        options.insert(
            0,
            Expr::Class {
                ranges: plain,
                negated: false,
            },
        );
    }
    match options.len() {
        1 => options.pop().unwrap_or(Expr::Empty),
        _ => Expr::Alt(options),
    }
}

fn push_range(out: &mut Vec<(char, char)>, lo: u32, hi: u32) {
    if let (Some(a), Some(b)) = (char::from_u32(lo), char::from_u32(hi)) {
        out.push((a, b));
    }
}

/// Any one encoded character.
#[must_use]
pub fn any_char() -> Expr {
    char_class(&[], true)
}

/// The encoded strings (contents between the quotes) whose decoded value is not one of `names`.
#[must_use]
pub fn not_one_of(names: &[&str]) -> Expr {
    let chars: Vec<Vec<char>> = names.iter().map(|n| n.chars().collect()).collect();
    let refs: Vec<&[char]> = chars.iter().map(Vec::as_slice).collect();
    not_one_of_chars(&refs)
}

fn not_one_of_chars(names: &[&[char]]) -> Expr {
    let any_tail = Expr::Repeat {
        expr: Box::new(any_char()),
        min: 0,
        max: None,
    };
    if names.is_empty() {
        return any_tail;
    }
    let mut options = Vec::new();
    if !names.iter().any(|n| n.is_empty()) {
        options.push(Expr::Empty);
    }
    let mut firsts: Vec<char> = names.iter().filter_map(|n| n.first().copied()).collect();
    firsts.sort_unstable();
    firsts.dedup();
    let ranges: Vec<(char, char)> = firsts.iter().map(|&c| (c, c)).collect();
    options.push(Expr::Seq(vec![char_class(&ranges, true), any_tail]));
    for c in firsts {
        let rest: Vec<&[char]> = names
            .iter()
            .filter(|n| n.first() == Some(&c))
            .map(|n| &n[1..])
            .collect();
        options.push(Expr::Seq(vec![
            char_class(&[(c, c)], false),
            not_one_of_chars(&rest),
        ]));
    }
    Expr::Alt(options)
}

/// A JSON Schema `pattern` (ECMA-262 syntax read as Rust `regex` syntax, with `\d` and `\w` ASCII as in
/// ECMA-262) as encoded string contents: a search, so unanchored ends match any text.
pub fn pattern(pattern: &str) -> Result<Expr> {
    let hir = super::super::regex::parse(&ecma_classes(pattern))
        .map_err(|e| CoreError::UnsupportedSchema(format!("pattern {pattern:?} cannot be enforced: {e}")))?;
    let any = Expr::Repeat {
        expr: Box::new(any_char()),
        min: 0,
        max: None,
    };
    let mut options = Vec::new();
    for (branch, anchored_start) in split_anchor(&hir, Look::Start) {
        for (body, anchored_end) in split_anchor(&branch, Look::End) {
            let mut seq = Vec::new();
            if !anchored_start {
                seq.push(any.clone());
            }
            seq.push(from_hir(&body)?);
            if !anchored_end {
                seq.push(any.clone());
            }
            options.push(Expr::Seq(seq));
        }
    }
    Ok(if options.len() == 1 {
        options.pop().unwrap_or(Expr::Empty)
    } else {
        Expr::Alt(options)
    })
}

/// Alternatives, each with whether it was anchored.
type Branches = Vec<(Hir, bool)>;

/// `hir` as alternatives that each either begin (`Look::Start`) or end (`Look::End`) with the anchor
/// `look`, which is removed (`true`), or do not (`false`).
fn split_anchor(hir: &Hir, look: Look) -> Branches {
    match hir.kind() {
        HirKind::Look(l) if *l == look => vec![(Hir::empty(), true)],
        HirKind::Capture(c) => split_anchor(&c.sub, look),
        HirKind::Concat(parts) if !parts.is_empty() => {
            let edge = if look == Look::Start { 0 } else { parts.len() - 1 };
            split_anchor(&parts[edge], look)
                .into_iter()
                .map(|(h, anchored)| {
                    let mut parts = parts.clone();
                    parts[edge] = h;
                    (Hir::concat(parts), anchored)
                })
                .collect()
        }
        HirKind::Alternation(branches) => {
            let split: Vec<(Hir, bool)> = branches.iter().flat_map(|b| split_anchor(b, look)).collect();
            let (anchored, free): (Branches, Branches) = split.into_iter().partition(|b| b.1);
            let mut out = Vec::new();
            for (group, flag) in [(anchored, true), (free, false)] {
                if !group.is_empty() {
                    out.push((Hir::alternation(group.into_iter().map(|b| b.0).collect()), flag));
                }
            }
            out
        }
        _ => vec![(hir.clone(), false)],
    }
}

/// `\d`, `\D`, `\w`, `\W` as ECMA-262 reads them (ASCII), spelled as classes Rust's parser keeps ASCII.
fn ecma_classes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str("[0-9]"),
            Some('D') => out.push_str("[^0-9]"),
            Some('w') => out.push_str("[0-9A-Za-z_]"),
            Some('W') => out.push_str("[^0-9A-Za-z_]"),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// A regex's leaves as JSON-string-encoded characters.
struct Encoded;

impl RegexLeaves for Encoded {
    fn literal(&self, bytes: &[u8]) -> Result<Expr> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| CoreError::UnsupportedSchema("a pattern literal that is not valid UTF-8".into()))?;
        Ok(Expr::Bytes(encode(text).into_bytes()))
    }

    fn class(&self, ranges: &[(char, char)]) -> Expr {
        char_class(ranges, false)
    }

    fn refuse(&self, what: &str) -> CoreError {
        CoreError::UnsupportedSchema(format!(
            "a pattern with {what} (other than a leading ^ and a trailing $) is not supported"
        ))
    }
}

/// A regex (already stripped of its end anchors) over encoded characters.
fn from_hir(hir: &Hir) -> Result<Expr> {
    hir_to_expr(hir, &Encoded)
}

const DATE: &str =
    "[0-9]{4}-(0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|[0-9]{4}-(0[469]|11)-(0[1-9]|[12][0-9]|30)\
                    |[0-9]{4}-02-(0[1-9]|1[0-9]|2[0-8])\
                    |([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)-02-29";
const TIME: &str =
    "([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])";
const IPV4_PART: &str = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";

/// The regular expression of a supported `format` (matched whole), or `None` for other formats.
#[must_use]
pub fn format_regex(format: &str) -> Option<String> {
    let h16 = "[0-9A-Fa-f]{1,4}";
    let ipv4 = format!("{IPV4_PART}(\\.{IPV4_PART}){{3}}");
    Some(match format {
        "date" => format!("({DATE})"),
        "time" => TIME.to_string(),
        "date-time" => format!("({DATE})[Tt]{TIME}"),
        "email" => "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\
                    @[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+"
            .to_string(),
        "uuid" => "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}".to_string(),
        "uri" => "[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9\\-._~:/?#\\[\\]@!$&'()*+,;=%]*".to_string(),
        "ipv4" => ipv4,
        "ipv6" => {
            // the nine text forms of RFC 4291 section 2.2 (RFC 3986's IPv6address)
            let ls32 = format!("({h16}:{h16}|{ipv4})");
            let head = |most: usize| format!("(({h16}:){{0,{most}}}{h16})?");
            let forms = [
                format!("({h16}:){{6}}{ls32}"),
                format!("::({h16}:){{5}}{ls32}"),
                format!("({h16})?::({h16}:){{4}}{ls32}"),
                format!("{}::({h16}:){{3}}{ls32}", head(1)),
                format!("{}::({h16}:){{2}}{ls32}", head(2)),
                format!("{}::{h16}:{ls32}", head(3)),
                format!("{}::{ls32}", head(4)),
                format!("{}::{h16}", head(5)),
                format!("{}::", head(6)),
            ];
            format!("({})", forms.join("|"))
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::super::lower::Bnf;
    use super::super::super::{cfg, earley::Recognizer};
    use super::*;
    use std::sync::Arc;

    fn accepts(expr: &Expr, text: &str) -> bool {
        let table = cfg::tests_support::one_rule(expr.clone());
        let mut r = Recognizer::new(Arc::new(Bnf::lower(&table.finish("root").unwrap()).unwrap()));
        r.push_all(text.as_bytes()).is_ok() && r.is_accepting()
    }

    #[test]
    fn characters_are_encoded_canonically() {
        let any = any_char();
        for (text, ok) in [
            ("a", true),
            ("é", true),
            ("\\\"", true),
            ("\\\\", true),
            ("\\n", true),
            ("\\u0001", true),
            ("\"", false),
            ("\\", false),
            ("\n", false),
            ("\\u0041", false),
            ("\\/", false),
        ] {
            assert_eq!(accepts(&any, text), ok, "{text:?}");
        }
        assert_eq!(encode("a\"b\\c\n\u{1}é"), "a\\\"b\\\\c\\n\\u0001é");
        let not_quote = char_class(&[('"', '"'), ('\n', '\n')], true);
        assert!(accepts(&not_quote, "\\\\") && !accepts(&not_quote, "\\\"") && !accepts(&not_quote, "\\n"));
    }

    #[test]
    fn keys_other_than_the_named_ones() {
        let e = not_one_of(&["a", "ab", "b\"c"]);
        for (text, ok) in [
            ("", true),
            ("a", false),
            ("ab", false),
            ("b\\\"c", false),
            ("abc", true),
            ("b", true),
            ("b\\\"", true),
            ("x", true),
        ] {
            assert_eq!(accepts(&e, text), ok, "{text:?}");
        }
    }

    #[test]
    fn patterns_search_unless_anchored() {
        let p = pattern("a[0-9]+").unwrap();
        assert!(accepts(&p, "xa1y") && accepts(&p, "a12") && !accepts(&p, "ab"));
        let p = pattern("^a\\d$|^b").unwrap();
        assert!(accepts(&p, "a1") && !accepts(&p, "a1x") && accepts(&p, "bxyz") && !accepts(&p, "xb"));
        assert!(!accepts(&p, "a١"), "\\d is ASCII as in ECMA-262");
        let p = pattern("^\"\\\\$").unwrap();
        assert!(accepts(&p, "\\\"\\\\"));
        assert!(pattern("a\\bc").is_err());
        let date = pattern(&format!("^({})$", format_regex("date").unwrap())).unwrap();
        for (text, ok) in [
            ("2024-02-29", true),
            ("2023-02-29", false),
            ("2000-02-29", true),
            ("1900-02-29", false),
            ("2023-04-31", false),
            ("2023-12-31", true),
        ] {
            assert_eq!(accepts(&date, text), ok, "{text}");
        }
        let ipv6 = pattern(&format!("^({})$", format_regex("ipv6").unwrap())).unwrap();
        for (text, ok) in [
            ("::", true),
            ("::1", true),
            ("1::", true),
            ("fe80::1:2", true),
            ("1:2:3:4:5:6:7:8", true),
            ("1:2:3:4:5:6:7::", true),
            ("::ffff:192.0.2.1", true),
            ("1:2:3:4:5:6:7:8:9", false),
            ("1::2::3", false),
            ("12345::", false),
        ] {
            assert_eq!(accepts(&ipv6, text), ok, "{text}");
        }
    }
}
