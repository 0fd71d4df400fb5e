//! The grammar of each JSON type under its keywords, and of `enum`/`const` values.

use serde_json::{Map, Value};

use super::numbers::{self, Bound, Decimal};
use super::{
    alt, at, json_integer, json_number, lit, opt, pointer, star, string_of, strings, Compiler, Expr, Result,
    MAX_REPEAT,
};
use crate::error::CoreError;

/// Property names this long cannot be excluded from the keys of additional properties (the exclusion
/// is one nested expression per character).
const MAX_EXCLUDED_NAME: usize = 1000;

/// A non-negative integer keyword (`minLength`, `maxItems`, ...), if present.
fn count(map: &Map<String, Value>, key: &str, ptr: &str) -> Result<Option<u64>> {
    match map.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64().or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e18)
                .map(|f| f as u64)
        }) {
            Some(n) => Ok(Some(n)),
            None => Err(CoreError::Grammar(format!(
                "{key:?} at {} must be a non-negative integer, got {v}",
                at(ptr)
            ))),
        },
    }
}

fn bound(map: &Map<String, Value>, key: &str, exclusive: bool, ptr: &str) -> Result<Option<Bound>> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => match Decimal::parse(&n.to_string()) {
            Some(value) => Ok(Some(Bound { value, exclusive })),
            None => Err(CoreError::UnsupportedSchema(format!(
                "{key:?} at {} is too large or too precise ({n})",
                at(ptr)
            ))),
        },
        Some(other) => Err(CoreError::Grammar(format!(
            "{key:?} at {} must be a number, got {other}",
            at(ptr)
        ))),
    }
}

/// The tighter of two lower (`lower`) or upper bounds.
fn tighter(a: Option<Bound>, b: Option<Bound>, lower: bool) -> Option<Bound> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let pick_a = match a.value.cmp(&b.value) {
                std::cmp::Ordering::Equal => a.exclusive,
                std::cmp::Ordering::Greater => lower,
                std::cmp::Ordering::Less => !lower,
            };
            Some(if pick_a { a } else { b })
        }
        (a, b) => a.or(b),
    }
}

impl Compiler<'_> {
    pub(super) fn number(
        &mut self,
        integer: bool,
        map: &Map<String, Value>,
        ptr: &str,
    ) -> Result<Option<Expr>> {
        if map.contains_key("multipleOf") {
            self.unsupported("\"multipleOf\"", &pointer(ptr, "multipleOf"))?;
        }
        let lo = tighter(
            bound(map, "minimum", false, ptr)?,
            bound(map, "exclusiveMinimum", true, ptr)?,
            true,
        );
        let hi = tighter(
            bound(map, "maximum", false, ptr)?,
            bound(map, "exclusiveMaximum", true, ptr)?,
            false,
        );
        if lo.is_none() && hi.is_none() {
            let expr = if integer { json_integer() } else { json_number() };
            let name = if integer { "integer" } else { "number" };
            return Ok(Some(self.shared_rule(name, expr)));
        }
        let expr = if integer {
            numbers::integer_range(lo.as_ref(), hi.as_ref())
        } else {
            numbers::number_range(lo.as_ref(), hi.as_ref())
        };
        Ok(expr.map(|e| self.shared_rule("bounded number", e)))
    }

    pub(super) fn string(&mut self, map: &Map<String, Value>, ptr: &str) -> Result<Option<Expr>> {
        let min = count(map, "minLength", ptr)?;
        let max = count(map, "maxLength", ptr)?;
        let mut content = None;
        if let Some(format) = map.get("format") {
            let Value::String(format) = format else {
                return Err(CoreError::Grammar(format!(
                    "\"format\" at {} must be a string",
                    at(ptr)
                )));
            };
            match strings::format_regex(format) {
                Some(regex) => content = Some(strings::pattern(&format!("^({regex})$"))?),
                None => self.unsupported(&format!("format {format:?}"), &pointer(ptr, "format"))?,
            }
        }
        if let Some(pattern) = map.get("pattern") {
            let Value::String(pattern) = pattern else {
                return Err(CoreError::Grammar(format!(
                    "\"pattern\" at {} must be a string",
                    at(ptr)
                )));
            };
            if content.is_some() {
                self.unsupported("\"pattern\" together with \"format\"", &pointer(ptr, "pattern"))?;
            } else {
                content = Some(strings::pattern(pattern)?);
            }
        }
        if min.is_some() || max.is_some() {
            if min.unwrap_or(0) > max.unwrap_or(u64::MAX) {
                return Ok(None);
            }
            if content.is_some() {
                self.unsupported(
                    "\"minLength\"/\"maxLength\" together with \"pattern\" or \"format\"",
                    ptr,
                )?;
                return Ok(content.map(|c| self.shared_rule("string", string_of(c))));
            }
            let too_long = |n: u64| n > u64::from(MAX_REPEAT);
            if min.is_some_and(too_long) || max.is_some_and(too_long) {
                return Err(CoreError::UnsupportedSchema(format!(
                    "string lengths above {MAX_REPEAT} at {} are not supported",
                    at(ptr)
                )));
            }
            content = Some(Expr::Repeat {
                expr: Box::new(strings::any_char()),
                min: min.unwrap_or(0) as u32,
                max: max.map(|m| m as u32),
            });
        }
        let content = content.unwrap_or_else(|| star(strings::any_char()));
        Ok(Some(self.shared_rule("string", string_of(content))))
    }

    pub(super) fn array(&mut self, map: &Map<String, Value>, ptr: &str) -> Result<Option<Expr>> {
        for keyword in ["contains", "minContains", "maxContains", "unevaluatedItems"] {
            if map.contains_key(keyword) {
                self.unsupported(&format!("{keyword:?}"), &pointer(ptr, keyword))?;
            }
        }
        match map.get("uniqueItems") {
            None | Some(Value::Bool(false)) => {}
            Some(_) => self.unsupported("\"uniqueItems\": true", &pointer(ptr, "uniqueItems"))?,
        }
        let mut prefix: Vec<Option<Expr>> = Vec::new();
        if let Some(list) = map.get("prefixItems") {
            let Value::Array(list) = list else {
                return Err(CoreError::Grammar(format!(
                    "\"prefixItems\" at {} must be a list",
                    at(ptr)
                )));
            };
            for (i, item) in list.iter().enumerate() {
                prefix.push(self.schema(item, &pointer(&pointer(ptr, "prefixItems"), &i.to_string()))?);
            }
        }
        let items = match map.get("items") {
            None => Some(self.any_value()),
            Some(Value::Array(_)) => {
                return Err(CoreError::UnsupportedSchema(format!(
                    "\"items\" as a list at {} is draft 2019-09 syntax; use \"prefixItems\"",
                    at(ptr)
                )))
            }
            Some(schema) => self
                .schema(schema, &pointer(ptr, "items"))?
                .map(|e| self.share("items", e)),
        };
        let min = count(map, "minItems", ptr)?.unwrap_or(0);
        let mut max = count(map, "maxItems", ptr)?;
        // the array cannot grow past an element that accepts nothing
        if let Some(j) = prefix.iter().position(Option::is_none) {
            max = Some(max.map_or(j as u64, |m| m.min(j as u64)));
        }
        if items.is_none() {
            max = Some(max.map_or(prefix.len() as u64, |m| m.min(prefix.len() as u64)));
        }
        if max.is_some_and(|m| min > m) {
            return Ok(None);
        }
        if min > u64::from(MAX_REPEAT) {
            return Err(CoreError::UnsupportedSchema(format!(
                "\"minItems\" above {MAX_REPEAT} at {} is not supported",
                at(ptr)
            )));
        }
        if max.is_some_and(|m| m > u64::from(MAX_REPEAT)) {
            self.unsupported(
                &format!("\"maxItems\" above {MAX_REPEAT}"),
                &pointer(ptr, "maxItems"),
            )?;
            max = None;
        }
        let Some(body) = self.elements(&prefix, items.as_ref(), min, max) else {
            return Ok(None);
        };
        Ok(Some(Expr::Seq(vec![
            lit("["),
            self.ws(),
            body,
            self.ws(),
            lit("]"),
        ])))
    }

    /// The elements between the brackets: `prefix` schemas first (`None`: accepts nothing), then `items`,
    /// between `min` and `max` of them; `None` when no array qualifies.
    fn elements(
        &self,
        prefix: &[Option<Expr>],
        items: Option<&Expr>,
        min: u64,
        max: Option<u64>,
    ) -> Option<Expr> {
        let repeat_items = |item: &Expr, least: u64, most: Option<u64>| {
            Expr::repeat(
                Expr::Seq(vec![self.comma(), item.clone()]),
                least as u32,
                most.map(|m| m as u32),
            )
        };
        // positions 0..k come from `prefixItems` (the array may stop after any of them once `min` is
        // reached); the rest repeat `items`, as a count rather than nested options
        let k = prefix.len().min(max.map_or(usize::MAX, |m| m as usize));
        if k == 0 {
            return Some(match items {
                Some(item) if max.is_none_or(|m| m > 0) => {
                    let all = Expr::Seq(vec![
                        item.clone(),
                        repeat_items(item, min.saturating_sub(1), max.map(|m| m - 1)),
                    ]);
                    if min == 0 {
                        opt(all)
                    } else {
                        all
                    }
                }
                _ => Expr::Empty,
            });
        }
        let mut rest = match items {
            Some(item) if max.is_none_or(|m| m > k as u64) => {
                repeat_items(item, min.saturating_sub(k as u64), max.map(|m| m - k as u64))
            }
            _ => Expr::Empty,
        };
        for j in (1..k).rev() {
            let next = Expr::Seq(vec![self.comma(), prefix[j].clone()?, rest]);
            rest = if j as u64 >= min { opt(next) } else { next };
        }
        let body = Expr::Seq(vec![prefix[0].clone()?, rest]);
        Some(if min == 0 { opt(body) } else { body })
    }

    pub(super) fn object(&mut self, map: &Map<String, Value>, ptr: &str) -> Result<Option<Expr>> {
        for keyword in [
            "patternProperties",
            "propertyNames",
            "dependentRequired",
            "dependentSchemas",
            "unevaluatedProperties",
        ] {
            if map.contains_key(keyword) {
                self.unsupported(&format!("{keyword:?}"), &pointer(ptr, keyword))?;
            }
        }
        let required: Vec<String> = match map.get("required") {
            None => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        CoreError::Grammar(format!("\"required\" at {} must list strings", at(ptr)))
                    })
                })
                .collect::<Result<_>>()?,
            Some(_) => {
                return Err(CoreError::Grammar(format!(
                    "\"required\" at {} must be a list",
                    at(ptr)
                )))
            }
        };
        let additional = match map.get("additionalProperties") {
            None => Some(self.any_value()),
            Some(schema) => self
                .schema(schema, &pointer(ptr, "additionalProperties"))?
                .map(|e| self.share("additional property", e)),
        };
        // (name, value grammar, required) in the schema's order, then required names it does not list
        let mut named: Vec<(String, Expr, bool)> = Vec::new();
        if let Some(properties) = map.get("properties") {
            let Value::Object(properties) = properties else {
                return Err(CoreError::Grammar(format!(
                    "\"properties\" at {} must be an object",
                    at(ptr)
                )));
            };
            let base = pointer(ptr, "properties");
            for (name, schema) in properties {
                let is_required = required.contains(name);
                match self.schema(schema, &pointer(&base, name))? {
                    Some(value) => named.push((name.clone(), self.share("property", value), is_required)),
                    None if is_required => return Ok(None),
                    None => {}
                }
            }
        }
        let listed: Vec<String> = match map.get("properties") {
            Some(Value::Object(p)) => p.keys().cloned().collect(),
            _ => Vec::new(),
        };
        for name in &required {
            if !listed.contains(name) {
                match &additional {
                    Some(value) => named.push((name.clone(), value.clone(), true)),
                    None => return Ok(None),
                }
            }
        }
        self.check_property_counts(map, &named, additional.is_some(), ptr)?;
        let names: Vec<&str> = listed.iter().map(String::as_str).collect();
        if additional.is_some() {
            if let Some(long) = names.iter().find(|n| n.chars().count() > MAX_EXCLUDED_NAME) {
                return Err(CoreError::UnsupportedSchema(format!(
                    "a property name of {} characters at {} next to additional properties is not supported \
                     (at most {MAX_EXCLUDED_NAME})",
                    long.chars().count(),
                    at(ptr)
                )));
            }
        }
        let member_of_additional = additional
            .map(|value| Expr::Seq(vec![string_of(strings::not_one_of(&names)), self.colon(), value]));
        Ok(Some(self.members(&named, member_of_additional.as_ref(), ptr)))
    }

    /// `minProperties`/`maxProperties` are enforced only where the rest of the schema already implies
    /// them.
    fn check_property_counts(
        &mut self,
        map: &Map<String, Value>,
        named: &[(String, Expr, bool)],
        open: bool,
        ptr: &str,
    ) -> Result<()> {
        let required = named.iter().filter(|p| p.2).count() as u64;
        if let Some(min) = count(map, "minProperties", ptr)? {
            if min > required {
                self.unsupported("\"minProperties\" above the number of required properties", ptr)?;
            }
        }
        if let Some(max) = count(map, "maxProperties", ptr)? {
            if open || max < named.len() as u64 {
                self.unsupported("\"maxProperties\" below the number of possible properties", ptr)?;
            }
        }
        Ok(())
    }

    /// `{ members }`: the named properties in order (optional ones may be left out), then any number of
    /// additional ones, with commas only between members that are present.
    fn members(&mut self, named: &[(String, Expr, bool)], additional: Option<&Expr>, ptr: &str) -> Expr {
        let member = |c: &Self, name: &str, value: &Expr| {
            Expr::Seq(vec![
                lit(&format!("\"{}\"", strings::encode(name))),
                c.colon(),
                value.clone(),
            ])
        };
        // after[i]: what may follow once something was written, from property i on;
        // first[i]: the same when nothing was written yet
        let mut after = match additional {
            Some(m) => star(Expr::Seq(vec![self.comma(), m.clone()])),
            None => Expr::Empty,
        };
        let mut first = match additional {
            Some(m) => opt(Expr::Seq(vec![m.clone(), after.clone()])),
            None => Expr::Empty,
        };
        // `first` only matters up to the first required property: nothing can be omitted before it
        let first_required = named.iter().position(|p| p.2).unwrap_or(named.len());
        for (i, (name, value, required)) in named.iter().enumerate().rev() {
            let m = member(self, name, value);
            if *required {
                if i == first_required {
                    if i > 0 {
                        // `after` is used twice from here on: share it as a rule
                        after = Expr::Rule(self.rule(&format!("members {i} at {}", at(ptr)), after));
                    }
                    first = Expr::Seq(vec![m.clone(), after.clone()]);
                }
                // a run of required properties stays one flat sequence, however long
                let mut parts = vec![self.comma(), m];
                match after {
                    Expr::Seq(tail) => parts.extend(tail),
                    tail => parts.push(tail),
                }
                after = Expr::Seq(parts);
            } else {
                // `after` is used twice from here on: share it as a rule
                let shared = Expr::Rule(self.rule(&format!("members {i} at {}", at(ptr)), after));
                first = Expr::Alt(vec![Expr::Seq(vec![m.clone(), shared.clone()]), first]);
                after = Expr::Alt(vec![Expr::Seq(vec![self.comma(), m, shared.clone()]), shared]);
            }
        }
        Expr::Seq(vec![lit("{"), self.ws(), first, self.ws(), lit("}")])
    }

    /// `enum` / `const`: the listed values that also satisfy the schema's `type`.
    pub(super) fn enumeration(&mut self, map: &Map<String, Value>, ptr: &str) -> Result<Option<Expr>> {
        let mut values: Vec<&Value> = match map.get("enum") {
            Some(Value::Array(list)) => list.iter().collect(),
            Some(_) => {
                return Err(CoreError::Grammar(format!(
                    "\"enum\" at {} must be a list",
                    at(ptr)
                )))
            }
            None => Vec::new(),
        };
        if let Some(c) = map.get("const") {
            if map.contains_key("enum") {
                values.retain(|v| json_equal(v, c));
            } else {
                values.push(c);
            }
        }
        let types = Self::types(map, ptr)?;
        values.retain(|v| types.iter().any(|t| has_type(v, t)));
        for key in map.keys() {
            let ok = matches!(key.as_str(), "enum" | "const" | "type" | "nullable")
                || super::ANNOTATIONS.contains(&key.as_str())
                || key.starts_with("x-");
            if !ok {
                self.unsupported(&format!("{key:?} next to \"enum\"/\"const\""), &pointer(ptr, key))?;
            }
        }
        let mut options = Vec::new();
        for v in values {
            options.push(self.literal(v));
        }
        Ok(alt(options))
    }

    /// `value` written as JSON (whitespace between tokens in the flexible layout).
    fn literal(&self, value: &Value) -> Expr {
        match value {
            Value::Null => lit("null"),
            Value::Bool(b) => lit(if *b { "true" } else { "false" }),
            // numbers compare by value: `1` also matches `1.0`
            Value::Number(n) => match Decimal::parse(&n.to_string()) {
                Some(value) => {
                    let exactly = Bound {
                        value,
                        exclusive: false,
                    };
                    numbers::number_range(Some(&exactly), Some(&exactly))
                        .unwrap_or_else(|| lit(&n.to_string()))
                }
                None => lit(&n.to_string()),
            },
            Value::String(s) => lit(&format!("\"{}\"", strings::encode(s))),
            Value::Array(items) => {
                let mut seq = vec![lit("["), self.ws()];
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        seq.push(self.comma());
                    }
                    seq.push(self.literal(item));
                }
                seq.extend([self.ws(), lit("]")]);
                Expr::Seq(seq)
            }
            Value::Object(members) => {
                let mut seq = vec![lit("{"), self.ws()];
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        seq.push(self.comma());
                    }
                    seq.extend([
                        lit(&format!("\"{}\"", strings::encode(k))),
                        self.colon(),
                        self.literal(v),
                    ]);
                }
                seq.extend([self.ws(), lit("}")]);
                Expr::Seq(seq)
            }
        }
    }
}

/// Whether `value` is of JSON Schema type `t` (`integer`: a number with no fraction).
pub(super) fn has_type(value: &Value, t: &str) -> bool {
    match (value, t) {
        (Value::Null, "null")
        | (Value::Bool(_), "boolean")
        | (Value::String(_), "string")
        | (Value::Array(_), "array")
        | (Value::Object(_), "object")
        | (Value::Number(_), "number") => true,
        (Value::Number(n), "integer") => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

/// JSON Schema equality: numbers by value, objects regardless of key order.
pub(super) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || matches!((x.as_f64(), y.as_f64()), (Some(p), Some(q)) if p == q)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}
