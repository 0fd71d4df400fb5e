//! Numeric bounds as grammar expressions, exactly: the canonical integers, or the JSON numbers written
//! without an exponent, that lie in an interval with inclusive or exclusive decimal bounds.
//!
//! A number is split into its sign, its integer digits `I` (no leading zeros) and its fraction digits `F`.
//! Integer digit strings are compared by the classic digit-range construction; fractions by their
//! zero-padded digit strings, through the derivatives of a small language of comparisons (each step reads
//! one digit), which turns any bound into a chain of alternatives as long as the bound.

use std::cmp::Ordering;

use super::super::cfg::Expr;

/// A decimal number: sign, integer digits (ASCII, no leading zeros, `"0"` for zero) and fraction digits
/// (no trailing zeros).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    int: Vec<u8>,
    frac: Vec<u8>,
}

/// At most this many digits on either side of the point in a bound (larger ones are refused).
pub const MAX_BOUND_DIGITS: usize = 400;

impl Decimal {
    /// Read a JSON number (`-12.5`, `1e-7`, `2.5E+3`); `None` if it is not one or needs more than
    /// [`MAX_BOUND_DIGITS`] digits.
    #[must_use]
    pub fn parse(text: &str) -> Option<Decimal> {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
        // the point sits after `point` digits of `digits`
        let point = i64::try_from(int.len()).ok()?.checked_add(exponent)?;
        let max = MAX_BOUND_DIGITS as i64;
        if point > max || point < -max {
            return None;
        }
        let (int, frac): (Vec<u8>, Vec<u8>) = if point <= 0 {
            let zeros = usize::try_from(-point).ok()?;
            (
                Vec::new(),
                std::iter::repeat_n(b'0', zeros).chain(digits).collect(),
            )
        } else {
            let point = usize::try_from(point).ok()?;
            if point >= digits.len() {
                let mut int = digits;
                int.resize(point, b'0');
                (int, Vec::new())
            } else {
                (digits[..point].to_vec(), digits[point..].to_vec())
            }
        };
        Some(Decimal::new(negative, int, frac))
    }

    fn new(negative: bool, mut int: Vec<u8>, mut frac: Vec<u8>) -> Decimal {
        let leading = int.iter().take_while(|&&d| d == b'0').count();
        int.drain(..leading);
        if int.is_empty() {
            int.push(b'0');
        }
        while frac.last() == Some(&b'0') {
            frac.pop();
        }
        let zero = int == b"0" && frac.is_empty();
        Decimal {
            negative: negative && !zero,
            int,
            frac,
        }
    }

    fn zero() -> Decimal {
        Decimal::new(false, vec![b'0'], Vec::new())
    }

    fn is_integer(&self) -> bool {
        self.frac.is_empty()
    }

    fn negated(&self) -> Decimal {
        Decimal::new(!self.negative, self.int.clone(), self.frac.clone())
    }

    /// The largest integer at most `self`.
    fn floor(&self) -> Decimal {
        let truncated = Decimal::new(self.negative, self.int.clone(), Vec::new());
        if self.negative && !self.is_integer() {
            truncated.add_int(-1)
        } else {
            truncated
        }
    }

    /// The smallest integer at least `self`.
    fn ceil(&self) -> Decimal {
        let truncated = Decimal::new(self.negative, self.int.clone(), Vec::new());
        if !self.negative && !self.is_integer() {
            truncated.add_int(1)
        } else {
            truncated
        }
    }

    /// `self + step` for an integer `self` and `step` of 1 or -1.
    fn add_int(&self, step: i8) -> Decimal {
        // |x| grows when the step has x's sign (zero counts as positive)
        let grows = (step > 0) != self.negative;
        if grows {
            Decimal::new(self.negative, increment(&self.int), Vec::new())
        } else if self.int == b"0" {
            Decimal::new(step < 0, vec![b'1'], Vec::new())
        } else {
            Decimal::new(self.negative, decrement(&self.int), Vec::new())
        }
    }
}

fn increment(digits: &[u8]) -> Vec<u8> {
    let mut out = digits.to_vec();
    for d in out.iter_mut().rev() {
        if *d == b'9' {
            *d = b'0';
        } else {
            *d += 1;
            return out;
        }
    }
    out.insert(0, b'1');
    out
}

/// `digits - 1` for a positive canonical integer.
fn decrement(digits: &[u8]) -> Vec<u8> {
    let mut out = digits.to_vec();
    for d in out.iter_mut().rev() {
        if *d == b'0' {
            *d = b'9';
        } else {
            *d -= 1;
            break;
        }
    }
    out
}

fn cmp_uint(a: &[u8], b: &[u8]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let magnitude = cmp_uint(&self.int, &other.int).then_with(|| self.frac.cmp(&other.frac));
        match (self.negative, other.negative) {
            (false, false) => magnitude,
            (true, true) => magnitude.reverse(),
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
        }
    }
}

/// One end of an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// Where.
    pub value: Decimal,
    /// Whether the end itself is left out.
    pub exclusive: bool,
}

fn byte(b: u8) -> Expr {
    Expr::Bytes(vec![b])
}

fn digit_class(lo: u8, hi: u8) -> Expr {
    if lo == hi {
        return byte(lo);
    }
    Expr::Class {
        ranges: vec![(char::from(lo), char::from(hi))],
        negated: false,
    }
}

fn digits(count: usize) -> Expr {
    let n = u32::try_from(count).unwrap_or(u32::MAX);
    Expr::Repeat {
        expr: Box::new(digit_class(b'0', b'9')),
        min: n,
        max: Some(n),
    }
}

fn alt(mut options: Vec<Expr>) -> Option<Expr> {
    match options.len() {
        0 => None,
        1 => options.pop(),
        _ => Some(Expr::Alt(options)),
    }
}

/// Digit strings of `lo.len()` digits between `lo` and `hi` (inclusive, same length, `lo <= hi`).
fn same_length_range(lo: &[u8], hi: &[u8]) -> Expr {
    if lo.is_empty() {
        return Expr::Empty;
    }
    if lo.iter().all(|&d| d == b'0') && hi.iter().all(|&d| d == b'9') {
        return digits(lo.len());
    }
    if lo[0] == hi[0] {
        return Expr::Seq(vec![byte(lo[0]), same_length_range(&lo[1..], &hi[1..])]);
    }
    let rest = lo.len() - 1;
    let nines = vec![b'9'; rest];
    let zeros = vec![b'0'; rest];
    let mut options = vec![Expr::Seq(vec![byte(lo[0]), same_length_range(&lo[1..], &nines)])];
    if lo[0] + 1 < hi[0] {
        options.push(Expr::Seq(vec![digit_class(lo[0] + 1, hi[0] - 1), digits(rest)]));
    }
    options.push(Expr::Seq(vec![byte(hi[0]), same_length_range(&zeros, &hi[1..])]));
    Expr::Alt(options)
}

/// Canonical non-negative integers in `lo..=hi` (`hi` `None`: unbounded); `None` when there are none.
fn uint_range(lo: &[u8], hi: Option<&[u8]>) -> Option<Expr> {
    if hi.is_some_and(|hi| cmp_uint(lo, hi) == Ordering::Greater) {
        return None;
    }
    let la = lo.len();
    let nines = vec![b'9'; la];
    let Some(hi) = hi else {
        return alt(vec![
            same_length_range(lo, &nines),
            Expr::Seq(vec![
                digit_class(b'1', b'9'),
                Expr::Repeat {
                    expr: Box::new(digit_class(b'0', b'9')),
                    min: la as u32,
                    max: None,
                },
            ]),
        ]);
    };
    let lb = hi.len();
    if la == lb {
        return Some(same_length_range(lo, hi));
    }
    let mut options = vec![same_length_range(lo, &nines)];
    if lb - la >= 2 {
        options.push(Expr::Seq(vec![
            digit_class(b'1', b'9'),
            Expr::Repeat {
                expr: Box::new(digit_class(b'0', b'9')),
                min: la as u32,
                max: Some((lb - 2) as u32),
            },
        ]));
    }
    let mut smallest = vec![b'0'; lb];
    smallest[0] = b'1';
    options.push(same_length_range(&smallest, hi));
    alt(options)
}

/// Integers `n` (written canonically, `-0` excluded) with `lo <= n <= hi`; `None` when there are none.
#[must_use]
pub fn integer_range(lo: Option<&Bound>, hi: Option<&Bound>) -> Option<Expr> {
    let lo = lo.map(|b| {
        if b.exclusive {
            b.value.floor().add_int(1)
        } else {
            b.value.ceil()
        }
    });
    let hi = hi.map(|b| {
        if b.exclusive {
            b.value.ceil().add_int(-1)
        } else {
            b.value.floor()
        }
    });
    if let (Some(lo), Some(hi)) = (&lo, &hi) {
        if lo > hi {
            return None;
        }
    }
    let zero = Decimal::zero();
    let mut options = Vec::new();
    // negative part: -m with m in [max(1, -hi), -lo]
    if lo.as_ref().is_none_or(|lo| lo.negative) {
        let m_lo = match &hi {
            Some(hi) if hi.negative => hi.int.clone(),
            _ => vec![b'1'],
        };
        let m_hi = lo.as_ref().map(|lo| lo.int.clone());
        if let Some(m) = uint_range(&m_lo, m_hi.as_deref()) {
            options.push(Expr::Seq(vec![byte(b'-'), m]));
        }
    }
    // non-negative part: [max(0, lo), hi]
    if hi.as_ref().is_none_or(|hi| !hi.negative) {
        let n_lo = match &lo {
            Some(lo) if !lo.negative => lo.int.clone(),
            _ => zero.int.clone(),
        };
        let n_hi = hi.as_ref().map(|hi| hi.int.clone());
        options.extend(uint_range(&n_lo, n_hi.as_deref()));
    }
    alt(options)
}

/// How a fraction compares with a bound's fraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rel {
    Ge,
    Gt,
    Le,
    Lt,
}

/// A language of fraction digit strings (possibly empty, read as `0.<digits>` padded with zeros).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Frac {
    All,
    Nothing,
    /// Compared with the fraction digits `g` (no trailing zeros).
    Cmp(Vec<u8>, Rel),
    And(Box<Frac>, Box<Frac>),
}

impl Frac {
    fn cmp(g: &[u8], rel: Rel) -> Frac {
        match (g.is_empty(), rel) {
            (true, Rel::Ge) => Frac::All,
            (true, Rel::Lt) => Frac::Nothing,
            _ => Frac::Cmp(g.to_vec(), rel),
        }
    }

    fn and(a: Frac, b: Frac) -> Frac {
        match (a, b) {
            (Frac::Nothing, _) | (_, Frac::Nothing) => Frac::Nothing,
            (Frac::All, x) | (x, Frac::All) => x,
            // above zero and all zeros: nothing (the one pair whose derivative would be itself)
            (Frac::Cmp(g, Rel::Gt), Frac::Cmp(h, Rel::Le))
            | (Frac::Cmp(h, Rel::Le), Frac::Cmp(g, Rel::Gt))
                if g.is_empty() && h.is_empty() =>
            {
                Frac::Nothing
            }
            (a, b) => Frac::And(Box::new(a), Box::new(b)),
        }
    }

    /// Whether the empty string (a fraction of zero) is in the language.
    fn nullable(&self) -> bool {
        match self {
            Frac::All => true,
            Frac::Nothing => false,
            Frac::Cmp(g, rel) => match rel {
                Rel::Ge => g.is_empty(),
                Rel::Gt => false,
                Rel::Le => true,
                Rel::Lt => !g.is_empty(),
            },
            Frac::And(a, b) => a.nullable() && b.nullable(),
        }
    }

    /// The strings `s` such that `d s` is in the language.
    fn derivative(&self, d: u8) -> Frac {
        match self {
            Frac::All => Frac::All,
            Frac::Nothing => Frac::Nothing,
            Frac::Cmp(g, rel) => {
                let first = g.first().copied().unwrap_or(b'0');
                let above = matches!(rel, Rel::Ge | Rel::Gt);
                match d.cmp(&first) {
                    Ordering::Greater => {
                        if above {
                            Frac::All
                        } else {
                            Frac::Nothing
                        }
                    }
                    Ordering::Less => {
                        if above {
                            Frac::Nothing
                        } else {
                            Frac::All
                        }
                    }
                    Ordering::Equal => Frac::cmp(g.get(1..).unwrap_or(&[]), *rel),
                }
            }
            Frac::And(a, b) => Frac::and(a.derivative(d), b.derivative(d)),
        }
    }

    /// The language as an expression (possibly matching only the empty string).
    fn expr(&self) -> Option<Expr> {
        match self {
            Frac::All => Some(Expr::Repeat {
                expr: Box::new(digit_class(b'0', b'9')),
                min: 0,
                max: None,
            }),
            Frac::Nothing => None,
            // the two comparisons whose derivative by `0` is themselves
            Frac::Cmp(g, Rel::Le) if g.is_empty() => Some(Expr::Repeat {
                expr: Box::new(byte(b'0')),
                min: 0,
                max: None,
            }),
            Frac::Cmp(g, Rel::Gt) if g.is_empty() => Some(Expr::Seq(vec![
                Expr::Repeat {
                    expr: Box::new(byte(b'0')),
                    min: 0,
                    max: None,
                },
                digit_class(b'1', b'9'),
                Frac::All.expr()?,
            ])),
            _ => {
                let mut options = Vec::new();
                if self.nullable() {
                    options.push(Expr::Empty);
                }
                options.extend(self.nonempty());
                alt(options)
            }
        }
    }

    /// The non-empty strings of the language, grouping first digits with the same derivative.
    fn nonempty(&self) -> Option<Expr> {
        let mut options = Vec::new();
        let mut d = b'0';
        while d <= b'9' {
            let derivative = self.derivative(d);
            let mut end = d;
            while end < b'9' && self.derivative(end + 1) == derivative {
                end += 1;
            }
            if let Some(rest) = derivative.expr() {
                options.push(Expr::Seq(vec![digit_class(d, end), rest]));
            }
            d = end + 1;
        }
        alt(options)
    }
}

/// `.digits` for a fraction language: nothing when it is zero, else the point and at least one digit.
fn fraction(frac: &Frac) -> Option<Expr> {
    let mut options = Vec::new();
    if frac.nullable() {
        options.push(Expr::Empty);
    }
    if let Some(digits) = frac.nonempty() {
        options.push(Expr::Seq(vec![byte(b'.'), digits]));
    }
    alt(options)
}

/// Non-negative magnitudes `I(.F)?` between `lo` and `hi`.
fn magnitude_range(lo: &Bound, hi: Option<&Bound>) -> Option<Expr> {
    let lo_rel = if lo.exclusive { Rel::Gt } else { Rel::Ge };
    let lo_frac = Frac::cmp(&lo.value.frac, lo_rel);
    let int = |digits: &[u8]| Expr::Bytes(digits.to_vec());
    let Some(hi) = hi else {
        let mut options = Vec::new();
        if let Some(f) = fraction(&lo_frac) {
            options.push(Expr::Seq(vec![int(&lo.value.int), f]));
        }
        if let Some(above) = uint_range(&increment(&lo.value.int), None) {
            options.push(Expr::Seq(vec![above, fraction(&Frac::All)?]));
        }
        return alt(options);
    };
    let hi_rel = if hi.exclusive { Rel::Lt } else { Rel::Le };
    let hi_frac = Frac::cmp(&hi.value.frac, hi_rel);
    match cmp_uint(&lo.value.int, &hi.value.int) {
        Ordering::Greater => None,
        Ordering::Equal => {
            let f = fraction(&Frac::and(lo_frac, hi_frac))?;
            Some(Expr::Seq(vec![int(&lo.value.int), f]))
        }
        Ordering::Less => {
            let mut options = Vec::new();
            if let Some(f) = fraction(&lo_frac) {
                options.push(Expr::Seq(vec![int(&lo.value.int), f]));
            }
            let above = increment(&lo.value.int);
            if cmp_uint(&above, &hi.value.int) == Ordering::Less {
                let below = decrement(&hi.value.int);
                if let Some(middle) = uint_range(&above, Some(&below)) {
                    options.push(Expr::Seq(vec![middle, fraction(&Frac::All)?]));
                }
            }
            if let Some(f) = fraction(&hi_frac) {
                options.push(Expr::Seq(vec![int(&hi.value.int), f]));
            }
            alt(options)
        }
    }
}

/// JSON numbers without an exponent (`-0` and its forms excluded) between `lo` and `hi`; `None` when
/// there are none.
#[must_use]
pub fn number_range(lo: Option<&Bound>, hi: Option<&Bound>) -> Option<Expr> {
    if let (Some(lo), Some(hi)) = (lo, hi) {
        if lo.value > hi.value || (lo.value == hi.value && (lo.exclusive || hi.exclusive)) {
            return None;
        }
    }
    let zero = Bound {
        value: Decimal::zero(),
        exclusive: false,
    };
    let mut options = Vec::new();
    // negative numbers -m: m in [max(0+, -hi), -lo]
    if lo.is_none_or(|lo| lo.value.negative) {
        let m_lo = match hi {
            Some(hi) if hi.value.negative => Bound {
                value: hi.value.negated(),
                exclusive: hi.exclusive,
            },
            _ => Bound {
                value: Decimal::zero(),
                exclusive: true,
            },
        };
        let m_hi = lo.map(|lo| Bound {
            value: lo.value.negated(),
            exclusive: lo.exclusive,
        });
        if let Some(m) = magnitude_range(&m_lo, m_hi.as_ref()) {
            options.push(Expr::Seq(vec![byte(b'-'), m]));
        }
    }
    // non-negative numbers in [max(0, lo), hi]
    if hi.is_none_or(|hi| !(hi.value.negative || (hi.value == zero.value && hi.exclusive))) {
        let n_lo = match lo {
            Some(lo) if !lo.value.negative => lo.clone(),
            _ => zero,
        };
        options.extend(magnitude_range(&n_lo, hi));
    }
    alt(options)
}

#[cfg(test)]
mod tests {
    use super::super::super::lower::Bnf;
    use super::super::super::{cfg, earley::Recognizer};
    use super::*;
    use std::sync::Arc;

    fn recognizer(expr: Expr) -> Recognizer {
        let table = cfg::tests_support::one_rule(expr);
        Recognizer::new(Arc::new(Bnf::lower(&table.finish("root").unwrap()).unwrap()))
    }

    fn accepts(r: &Recognizer, text: &str) -> bool {
        let mut r = r.clone();
        r.push_all(text.as_bytes()).is_ok() && r.is_accepting()
    }

    fn bound(text: &str, exclusive: bool) -> Bound {
        Bound {
            value: Decimal::parse(text).unwrap(),
            exclusive,
        }
    }

    /// Number texts from 0 to 129 with up to 2 fraction digits (3 for a few integer parts), and their
    /// negatives, each with its value in thousandths.
    fn numbers(with_fraction: bool) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for i in 0..130i64 {
            out.push((i.to_string(), i * 1000));
            if with_fraction {
                let most = if [0, 5, 7, 12].contains(&i) { 3 } else { 2 };
                for digits in 1..=most {
                    for f in 0..10i64.pow(digits) {
                        let text = format!("{i}.{f:0width$}", width = digits as usize);
                        out.push((text, i * 1000 + f * 10i64.pow(3 - digits)));
                    }
                }
            }
        }
        let negatives: Vec<(String, i64)> = out
            .iter()
            .filter(|(_, v)| *v != 0)
            .map(|(t, v)| (format!("-{t}"), -v))
            .collect();
        out.extend(negatives);
        out
    }

    #[test]
    fn decimals_parse_round_and_step() {
        let d = |t: &str| Decimal::parse(t).unwrap();
        assert_eq!(d("1.50e1"), d("15"));
        assert_eq!(d("-0.0"), d("0"));
        assert_eq!(d("2.5E-3"), d("0.0025"));
        assert_eq!(d("-2.5").floor(), d("-3"));
        assert_eq!(d("-2.5").ceil(), d("-2"));
        assert_eq!(d("2.5").floor(), d("2"));
        assert_eq!(d("0").add_int(-1), d("-1"));
        assert_eq!(d("-1").add_int(1), d("0"));
        assert_eq!(d("999").add_int(1), d("1000"));
        assert_eq!(d("-1000").add_int(1), d("-999"));
        assert!(d("-0.5") < d("0.25") && d("10") > d("9.99"));
        assert!(Decimal::parse("1e999").is_none() && Decimal::parse("abc").is_none());
    }

    #[test]
    fn ranges_accept_exactly_the_numbers_inside() {
        let cases = [
            (Some(("-12.5", false)), Some(("7.25", true))),
            (Some(("0", true)), Some(("1", false))),
            (Some(("-0.125", false)), None),
            (None, Some(("-3.1", false))),
            (Some(("99.5", true)), Some(("101", true))),
            (Some(("5.05", false)), Some(("5.1", false))),
            (Some(("3", false)), Some(("3", false))),
        ];
        let ints = numbers(false);
        let all = numbers(true);
        for (lo, hi) in cases {
            let lo = lo.map(|(t, e)| bound(t, e));
            let hi = hi.map(|(t, e)| bound(t, e));
            let to_milli = |b: &Bound| (Decimal::parse(&b.value_text()).unwrap(), b.exclusive);
            let inside = |v: i64| {
                let value = Decimal::parse(&format!("{}", v as f64 / 1000.0)).unwrap();
                lo.as_ref().is_none_or(|b| {
                    let (x, e) = to_milli(b);
                    value > x || (!e && value == x)
                }) && hi.as_ref().is_none_or(|b| {
                    let (x, e) = to_milli(b);
                    value < x || (!e && value == x)
                })
            };
            for (numbers, expr) in [
                (&ints, integer_range(lo.as_ref(), hi.as_ref())),
                (&all, number_range(lo.as_ref(), hi.as_ref())),
            ] {
                let any_inside = numbers.iter().any(|(_, v)| inside(*v));
                assert_eq!(expr.is_some(), any_inside, "{lo:?} {hi:?}");
                let Some(expr) = expr else { continue };
                let r = recognizer(expr);
                for (text, value) in numbers {
                    assert_eq!(accepts(&r, text), inside(*value), "{lo:?} {hi:?} {text}");
                }
                assert!(!accepts(&r, "-0") && !accepts(&r, "01") && !accepts(&r, "1."));
            }
        }
        assert!(integer_range(Some(&bound("2.5", false)), Some(&bound("2.9", false))).is_none());
        assert!(number_range(Some(&bound("1", true)), Some(&bound("1", false))).is_none());
    }

    impl Bound {
        fn value_text(&self) -> String {
            let v = &self.value;
            let sign = if v.negative { "-" } else { "" };
            let int = String::from_utf8(v.int.clone()).unwrap();
            if v.frac.is_empty() {
                format!("{sign}{int}")
            } else {
                format!("{sign}{int}.{}", String::from_utf8(v.frac.clone()).unwrap())
            }
        }
    }
}
