//! `$ref`, `allOf` (by merging the subschemas where that is sound), `anyOf` and `oneOf` (as alternatives
//! when the branches are provably disjoint).

use serde_json::{Map, Value};

use super::types::{has_type, json_equal};
use super::{alt, at, pointer, Compiler, Expr, Result, ANNOTATIONS};
use crate::error::CoreError;

/// At most this many subschema combinations come out of distributing one `anyOf`/`oneOf` over another.
const MAX_COMBINATIONS: usize = 64;

/// A chain of `$ref`s to `$ref`s longer than this is refused (it is most likely a cycle).
const MAX_REF_HOPS: usize = 32;

fn is_annotation(key: &str) -> bool {
    ANNOTATIONS.contains(&key) || key.starts_with("x-")
}

/// Decode a URI fragment's JSON pointer (`%25` escapes; `~0`/`~1` stay for `Value::pointer`).
fn percent_decode(fragment: &str) -> Option<String> {
    let bytes = fragment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl<'a> Compiler<'a> {
    /// The pointer and subschema a local `$ref` names.
    fn resolve(&self, target: &Value, ptr: &str) -> Result<(String, &'a Value)> {
        let Value::String(target) = target else {
            return Err(CoreError::Grammar(format!(
                "\"$ref\" at {} must be a string",
                at(ptr)
            )));
        };
        let Some(fragment) = target.strip_prefix('#') else {
            return Err(CoreError::UnsupportedSchema(format!(
                "\"$ref\": {target:?} at {} is not supported: only references inside the schema (\"#/...\") are",
                at(ptr)
            )));
        };
        if !fragment.is_empty() && !fragment.starts_with('/') {
            return Err(CoreError::UnsupportedSchema(format!(
                "\"$ref\": {target:?} at {} is not supported: anchors (\"#name\") are not resolved",
                at(ptr)
            )));
        }
        let decoded = percent_decode(fragment).ok_or_else(|| {
            CoreError::Grammar(format!(
                "\"$ref\": {target:?} at {} is not a valid URI fragment",
                at(ptr)
            ))
        })?;
        let root: &'a Value = self.root;
        let value = root.pointer(&decoded).ok_or_else(|| {
            CoreError::Grammar(format!(
                "\"$ref\": {target:?} at {} points to nothing in the schema",
                at(ptr)
            ))
        })?;
        Ok((decoded, value))
    }

    pub(super) fn reference(
        &mut self,
        map: &Map<String, Value>,
        target: &Value,
        ptr: &str,
    ) -> Result<Option<Expr>> {
        for key in map.keys() {
            if key != "$ref" && !is_annotation(key) {
                self.unsupported(&format!("{key:?} next to \"$ref\""), &pointer(ptr, key))?;
            }
        }
        let (target_ptr, schema) = self.resolve(target, ptr)?;
        if let Some(&rule) = self.ref_rules.get(&target_ptr) {
            return Ok(Some(Expr::Rule(rule)));
        }
        match schema {
            Value::Bool(false) => return Ok(None),
            Value::Bool(true) => return Ok(Some(self.any_value())),
            _ => {}
        }
        let rule = self.rule(&format!("$ref {target_ptr}"), Expr::Empty);
        self.ref_rules.insert(target_ptr.clone(), rule);
        match self.schema(schema, &target_ptr)? {
            Some(body) => {
                self.rules[rule].expr = body;
                Ok(Some(Expr::Rule(rule)))
            }
            None => Err(CoreError::UnsupportedSchema(format!(
                "the schema at {} (referenced from {}) accepts no value",
                at(&target_ptr),
                at(ptr)
            ))),
        }
    }

    /// `map` without `$ref`: the referenced schema merged with the keywords next to the `$ref`.
    /// `None` when it accepts nothing.
    fn inline_refs(&mut self, map: &Map<String, Value>, ptr: &str) -> Result<Option<Map<String, Value>>> {
        let mut current = map.clone();
        for _ in 0..MAX_REF_HOPS {
            let Some(target) = current.remove("$ref") else {
                return Ok(Some(current));
            };
            let (_, schema) = self.resolve(&target, ptr)?;
            current = match schema {
                Value::Bool(false) => return Ok(None),
                Value::Bool(true) => current,
                Value::Object(target) => self.merge(target.clone(), current, ptr)?,
                other => {
                    return Err(CoreError::Grammar(format!(
                        "\"$ref\" at {} points to {other}, which is not a schema",
                        at(ptr)
                    )))
                }
            };
        }
        Err(CoreError::UnsupportedSchema(format!(
            "\"$ref\" at {} goes through more than {MAX_REF_HOPS} references without reaching a schema",
            at(ptr)
        )))
    }

    /// `map` with its `allOf` merged in; `None` when the result accepts nothing.
    pub(super) fn merge_all_of(
        &mut self,
        map: &Map<String, Value>,
        all: &Value,
        ptr: &str,
    ) -> Result<Option<Map<String, Value>>> {
        let Value::Array(all) = all else {
            return Err(CoreError::Grammar(format!(
                "\"allOf\" at {} must be a list",
                at(ptr)
            )));
        };
        let mut merged = map.clone();
        merged.remove("allOf");
        for (i, sub) in all.iter().enumerate() {
            let sub_ptr = pointer(&pointer(ptr, "allOf"), &i.to_string());
            match sub {
                Value::Bool(true) => {}
                Value::Bool(false) => return Ok(None),
                Value::Object(sub) => {
                    let Some(sub) = self.inline_refs(sub, &sub_ptr)? else {
                        return Ok(None);
                    };
                    merged = self.merge(merged, sub, &sub_ptr)?;
                }
                other => {
                    return Err(CoreError::Grammar(format!(
                        "the schema at {sub_ptr} must be an object or a boolean, got {other}"
                    )))
                }
            }
        }
        Ok(Some(merged))
    }

    /// Both `a` and `b` as one schema, where that is sound; otherwise the keywords that cannot be merged
    /// are unsupported.
    fn merge(
        &mut self,
        a: Map<String, Value>,
        b: Map<String, Value>,
        ptr: &str,
    ) -> Result<Map<String, Value>> {
        for (x, y) in [(&a, &b), (&b, &a)] {
            let closed = x
                .get("additionalProperties")
                .is_some_and(|v| v != &Value::Bool(true));
            let x_props = x.get("properties").and_then(Value::as_object);
            let y_props = y.get("properties").and_then(Value::as_object);
            if closed
                && y_props.is_some_and(|y| y.keys().any(|k| !x_props.is_some_and(|x| x.contains_key(k))))
            {
                self.unsupported(
                    "\"allOf\" whose \"additionalProperties\" would apply to another branch's properties",
                    ptr,
                )?;
            }
        }
        // `items` applies after the `prefixItems` of its own schema only
        let has = |m: &Map<String, Value>, k: &str| m.contains_key(k);
        if (has(&a, "items") && has(&b, "prefixItems") && !has(&a, "prefixItems"))
            || (has(&b, "items") && has(&a, "prefixItems") && !has(&b, "prefixItems"))
        {
            self.unsupported(
                "\"allOf\" whose \"items\" would apply after another branch's \"prefixItems\"",
                ptr,
            )?;
        }
        let mut out = a;
        for (key, vb) in b {
            let Some(va) = out.get(&key) else {
                out.insert(key, vb);
                continue;
            };
            if json_equal(va, &vb) || is_annotation(&key) {
                continue;
            }
            if key == "const" {
                // two different constants: nothing matches both
                out.insert("enum".to_owned(), Value::Array(Vec::new()));
                continue;
            }
            let combined = self.combine(&key, va, &vb, ptr)?;
            out.insert(key, combined);
        }
        Ok(out)
    }

    /// One keyword present in both schemas of a merge with different values.
    fn combine(&mut self, key: &str, a: &Value, b: &Value, ptr: &str) -> Result<Value> {
        let both = |a: &Value, b: &Value| {
            Value::Object(Map::from_iter([(
                "allOf".to_owned(),
                Value::Array(vec![a.clone(), b.clone()]),
            )]))
        };
        Ok(match key {
            "type" => Value::Array(intersect_types(a, b).into_iter().map(Value::from).collect()),
            "properties" => match (a, b) {
                (Value::Object(pa), Value::Object(pb)) => {
                    let mut out = pa.clone();
                    for (name, sb) in pb {
                        let merged = match out.get(name) {
                            Some(sa) => both(sa, sb),
                            None => sb.clone(),
                        };
                        out.insert(name.clone(), merged);
                    }
                    Value::Object(out)
                }
                _ => {
                    return Err(CoreError::Grammar(format!(
                        "\"properties\" at {} must be an object",
                        at(ptr)
                    )))
                }
            },
            "required" => {
                let mut out: Vec<Value> = a.as_array().cloned().unwrap_or_default();
                for v in b.as_array().into_iter().flatten() {
                    if !out.contains(v) {
                        out.push(v.clone());
                    }
                }
                Value::Array(out)
            }
            "minimum" | "exclusiveMinimum" | "minLength" | "minItems" | "minProperties" => {
                pick_number(a, b, true)
            }
            "maximum" | "exclusiveMaximum" | "maxLength" | "maxItems" | "maxProperties" => {
                pick_number(a, b, false)
            }
            "enum" => Value::Array(
                a.as_array()
                    .into_iter()
                    .flatten()
                    .filter(|v| {
                        b.as_array()
                            .is_some_and(|list| list.iter().any(|w| json_equal(v, w)))
                    })
                    .cloned()
                    .collect(),
            ),
            "allOf" => {
                let mut out = a.as_array().cloned().unwrap_or_default();
                out.extend(b.as_array().cloned().unwrap_or_default());
                Value::Array(out)
            }
            "anyOf" | "oneOf" => {
                let (la, lb) = (
                    a.as_array().cloned().unwrap_or_default(),
                    b.as_array().cloned().unwrap_or_default(),
                );
                if la.len() * lb.len() > MAX_COMBINATIONS {
                    self.unsupported(&format!("\"allOf\" over two large {key:?} lists"), ptr)?;
                    return Ok(a.clone());
                }
                Value::Array(la.iter().flat_map(|x| lb.iter().map(|y| both(x, y))).collect())
            }
            "items" | "additionalProperties" => both(a, b),
            "nullable" => Value::Bool(a == &Value::Bool(true) && b == &Value::Bool(true)),
            _ => {
                self.unsupported(&format!("\"allOf\" with two different {key:?} values"), ptr)?;
                a.clone()
            }
        })
    }

    /// `anyOf` / `oneOf`: each branch together with the keywords next to it.
    pub(super) fn branches(
        &mut self,
        map: &Map<String, Value>,
        keyword: &str,
        branches: &Value,
        ptr: &str,
    ) -> Result<Option<Expr>> {
        let Value::Array(list) = branches else {
            return Err(CoreError::Grammar(format!(
                "{keyword:?} at {} must be a list",
                at(ptr)
            )));
        };
        let mut rest = map.clone();
        rest.remove(keyword);
        let constrained = rest.keys().any(|k| !is_annotation(k));
        let mut combined: Vec<(Value, String)> = Vec::new();
        for (i, branch) in list.iter().enumerate() {
            let branch_ptr = pointer(&pointer(ptr, keyword), &i.to_string());
            let schema = match branch {
                Value::Bool(false) => continue,
                Value::Bool(true) => Value::Object(rest.clone()),
                Value::Object(b) if constrained => {
                    let Some(b) = self.inline_refs(b, &branch_ptr)? else {
                        continue;
                    };
                    Value::Object(self.merge(rest.clone(), b, &branch_ptr)?)
                }
                other => other.clone(),
            };
            combined.push((schema, branch_ptr));
        }
        if keyword == "oneOf" {
            for i in 0..combined.len() {
                for j in i + 1..combined.len() {
                    if !self.disjoint(&combined[i].0, &combined[j].0, ptr) {
                        self.unsupported(
                            &format!("\"oneOf\" whose branches {i} and {j} may both match (only disjoint branches are enforced)"),
                            ptr,
                        )?;
                    }
                }
            }
        }
        let mut options = Vec::new();
        for (schema, branch_ptr) in &combined {
            if let Some(e) = self.schema(schema, branch_ptr)? {
                options.push(e);
            }
        }
        Ok(alt(options))
    }

    /// Whether no value can match both schemas (a sufficient test: different types, different constants,
    /// or a required property whose schemas are disjoint).
    fn disjoint(&mut self, a: &Value, b: &Value, ptr: &str) -> bool {
        let (Value::Object(a), Value::Object(b)) = (a, b) else {
            return false;
        };
        let (Ok(Some(a)), Ok(Some(b))) = (self.inline_refs(a, ptr), self.inline_refs(b, ptr)) else {
            return true;
        };
        let (ta, tb) = (possible_types(&a), possible_types(&b));
        if ta.iter().all(|t| !tb.contains(t)) {
            return true;
        }
        if let (Some(va), Some(vb)) = (constants(&a), constants(&b)) {
            return va.iter().all(|x| vb.iter().all(|y| !json_equal(x, y)));
        }
        let required = |m: &Map<String, Value>| -> Vec<String> {
            m.get("required")
                .and_then(Value::as_array)
                .map(|l| l.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let property = |m: &Map<String, Value>, k: &str| m.get("properties").and_then(|p| p.get(k)).cloned();
        let rb = required(&b);
        required(&a)
            .iter()
            .filter(|k| rb.contains(k))
            .any(|k| match (property(&a, k), property(&b, k)) {
                (Some(pa), Some(pb)) => self.disjoint(&pa, &pb, ptr),
                _ => false,
            })
    }
}

/// The JSON types a schema can match, with integers counted as numbers.
fn possible_types(map: &Map<String, Value>) -> Vec<&'static str> {
    const ALL: [&str; 6] = ["null", "boolean", "object", "array", "string", "number"];
    if let Some(values) = constants(map) {
        return ALL
            .iter()
            .copied()
            .filter(|t| values.iter().any(|v| has_type(v, t)))
            .collect();
    }
    let mut types: Vec<&'static str> = match map.get("type") {
        Some(Value::String(t)) => ALL
            .iter()
            .copied()
            .filter(|k| k == t || (*k == "number" && t == "integer"))
            .collect(),
        Some(Value::Array(list)) => ALL
            .iter()
            .copied()
            .filter(|k| list.iter().any(|t| t == k || (*k == "number" && t == "integer")))
            .collect(),
        _ => ALL.to_vec(),
    };
    if map.get("nullable") == Some(&Value::Bool(true)) && !types.contains(&"null") {
        types.push("null");
    }
    types
}

/// The values a schema's `const` / `enum` allow, if it has either.
fn constants(map: &Map<String, Value>) -> Option<Vec<Value>> {
    match (map.get("const"), map.get("enum")) {
        (Some(c), _) => Some(vec![c.clone()]),
        (None, Some(Value::Array(list))) => Some(list.clone()),
        _ => None,
    }
}

fn intersect_types(a: &Value, b: &Value) -> Vec<String> {
    let list = |v: &Value| -> Vec<String> {
        match v {
            Value::String(t) => vec![t.clone()],
            Value::Array(l) => l.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        }
    };
    let (la, lb) = (list(a), list(b));
    let mut out = Vec::new();
    for t in &la {
        if lb.contains(t) {
            out.push(t.clone());
        } else if t == "integer" && lb.iter().any(|u| u == "number") {
            out.push("integer".to_owned());
        }
    }
    for t in &lb {
        if t == "integer" && la.iter().any(|u| u == "number") && !out.contains(t) {
            out.push("integer".to_owned());
        }
    }
    out
}

/// The larger (`larger`) or smaller of two numbers.
fn pick_number(a: &Value, b: &Value, larger: bool) -> Value {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if (y > x) == larger && x != y => b.clone(),
        _ => a.clone(),
    }
}
