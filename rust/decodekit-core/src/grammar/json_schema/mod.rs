//! JSON Schema (draft 2020-12 keywords, plus OpenAPI's `nullable`) compiled to a context-free grammar of
//! the JSON texts the schema accepts.
//!
//! Nothing is ignored silently: a keyword that is not enforced raises
//! [`CoreError::UnsupportedSchema`] naming it and its JSON pointer (with `strict: false` it is listed in
//! [`CompiledSchema::ignored`] instead). What the grammar generates, beyond the schema:
//!
//! * **Layout.** `Whitespace::Compact` writes no whitespace and the separators `,` and `:`, as
//!   `json.dumps(value, separators=(",", ":"), ensure_ascii=False)`; `Whitespace::Flexible` allows any
//!   JSON whitespace between tokens and around the value.
//! * **Strings** are in canonical form (see [`strings`]): non-ASCII characters as themselves, no `\/` and
//!   no `\u` escapes except for control characters.
//! * **Object properties** come in the order of the schema's `properties`; optional ones may be left
//!   out; properties beyond the named ones (when `additionalProperties` allows them) come after all named
//!   ones, with keys that differ from every named key.
//! * **Numbers** with bounds are written without an exponent (`1e3` is not generated); integers never
//!   with a fraction (`1.0` is not an integer here), and bounded ones never as `-0`.
//! * **`enum`/`const`** values are written as in the schema (numbers as written, object keys in the
//!   schema's order).

pub mod numbers;
pub mod strings;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::cfg::{Cfg, Expr, Rule, SourcePos, MAX_REPEAT};
use crate::error::{CoreError, Result};

/// How much whitespace the grammar allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whitespace {
    /// None: separators are exactly `,` and `:`.
    Compact,
    /// Any JSON whitespace (space, tab, CR, LF) between tokens and around the value.
    Flexible,
}

/// Options of [`compile`].
#[derive(Debug, Clone)]
pub struct SchemaOptions {
    /// Whitespace between tokens.
    pub whitespace: Whitespace,
    /// Refuse keywords that are not enforced (else list them in [`CompiledSchema::ignored`]).
    pub strict: bool,
    /// Compile time budget.
    pub max_time: Duration,
    /// Budget of grammar expression nodes.
    pub max_nodes: usize,
}

impl Default for SchemaOptions {
    fn default() -> Self {
        SchemaOptions {
            whitespace: Whitespace::Compact,
            strict: true,
            max_time: Duration::from_secs(10),
            max_nodes: 2_000_000,
        }
    }
}

/// The grammar of a schema.
#[derive(Debug, Clone)]
pub struct CompiledSchema {
    /// The grammar; its root rule derives exactly the accepted texts.
    pub cfg: Cfg,
    /// `keyword at /pointer` for every keyword that is not enforced (only with `strict: false`).
    pub ignored: Vec<String>,
}

/// Keywords that only annotate (no effect on validity).
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$schema",
    "$id",
    "$anchor",
    "$dynamicAnchor",
    "$vocabulary",
    "contentMediaType",
    "contentEncoding",
    "contentSchema",
    "$defs",
    "definitions",
];

/// Keywords this compiler enforces (some only in certain forms, checked where they are read).
const ENFORCED: &[&str] = &[
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minProperties",
    "maxProperties",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "nullable",
    // refused where they are read (so only when they apply to the value's type)
    "multipleOf",
    "contains",
    "minContains",
    "maxContains",
    "unevaluatedItems",
    "patternProperties",
    "propertyNames",
    "dependentRequired",
    "dependentSchemas",
    "unevaluatedProperties",
];

/// `$schema` values whose vocabularies this compiler implements (the assertions used are the same).
const KNOWN_DIALECTS: [&str; 5] = [
    "https://json-schema.org/draft/2020-12/schema",
    "https://json-schema.org/draft/2019-09/schema",
    "http://json-schema.org/draft-07/schema",
    "http://json-schema.org/draft-06/schema",
    "http://json-schema.org/draft-04/schema",
];

const TYPES: [&str; 6] = ["null", "boolean", "object", "array", "string", "number"];

/// Compile the schema `text` (JSON) under `options`.
pub fn compile(text: &str, options: &SchemaOptions) -> Result<CompiledSchema> {
    let schema: Value = serde_json::from_str(text)
        .map_err(|e| CoreError::Grammar(format!("the schema is not valid JSON: {e}")))?;
    let mut c = Compiler {
        root: &schema,
        options,
        rules: Vec::new(),
        ref_rules: HashMap::new(),
        shared: HashMap::new(),
        any: None,
        ignored: Vec::new(),
        nodes: 0,
        started: Instant::now(),
        depth: 0,
    };
    let value = c.schema(&schema, "")?.ok_or_else(|| {
        CoreError::UnsupportedSchema("the schema accepts no value at all (at the root)".into())
    })?;
    let ws = c.ws();
    let root = c.rule("root", Expr::Seq(vec![ws.clone(), value, ws]));
    let cfg = Cfg::new(c.rules, root, &[])?;
    Ok(CompiledSchema {
        cfg,
        ignored: c.ignored,
    })
}

fn lit(text: &str) -> Expr {
    Expr::Bytes(text.as_bytes().to_vec())
}

fn opt(e: Expr) -> Expr {
    Expr::Alt(vec![Expr::Empty, e])
}

fn star(e: Expr) -> Expr {
    Expr::Repeat {
        expr: Box::new(e),
        min: 0,
        max: None,
    }
}

fn alt(mut options: Vec<Expr>) -> Option<Expr> {
    match options.len() {
        0 => None,
        1 => options.pop(),
        _ => Some(Expr::Alt(options)),
    }
}

fn pointer(base: &str, key: &str) -> String {
    format!("{base}/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn at(ptr: &str) -> &str {
    if ptr.is_empty() {
        "the root"
    } else {
        ptr
    }
}

struct Compiler<'a> {
    root: &'a Value,
    options: &'a SchemaOptions,
    rules: Vec<Rule>,
    /// `$ref` target pointer -> rule.
    ref_rules: HashMap<String, usize>,
    /// Value expressions made into rules once (strings, numbers): expression -> rule.
    shared: HashMap<Expr, usize>,
    any: Option<usize>,
    ignored: Vec<String>,
    nodes: usize,
    started: Instant,
    depth: usize,
}

/// Nesting depth of subschemas (deeper schemas are refused rather than risking the stack).
const MAX_DEPTH: usize = 200;

impl Compiler<'_> {
    fn rule(&mut self, name: &str, expr: Expr) -> usize {
        self.rules.push(Rule {
            name: name.to_owned(),
            expr,
            defined_at: SourcePos::default(),
        });
        self.rules.len() - 1
    }

    /// `expr`, as a shared rule unless it is a few nodes: for an expression used in more than one place
    /// (nested schemas would otherwise be copied again at every level).
    fn share(&mut self, name: &str, expr: Expr) -> Expr {
        fn small(expr: &Expr, budget: &mut usize) -> bool {
            if *budget == 0 {
                return false;
            }
            *budget -= 1;
            match expr {
                Expr::Seq(parts) | Expr::Alt(parts) => parts.iter().all(|p| small(p, budget)),
                Expr::Repeat { expr, .. } => small(expr, budget),
                _ => true,
            }
        }
        if small(&expr, &mut 8) {
            expr
        } else {
            self.shared_rule(name, expr)
        }
    }

    /// `expr` as a rule shared by every use (one lexeme, one set of cached masks).
    fn shared_rule(&mut self, name: &str, expr: Expr) -> Expr {
        if let Some(&i) = self.shared.get(&expr) {
            return Expr::Rule(i);
        }
        let i = self.rule(name, expr.clone());
        self.shared.insert(expr, i);
        Expr::Rule(i)
    }

    fn ws(&self) -> Expr {
        match self.options.whitespace {
            Whitespace::Compact => Expr::Empty,
            Whitespace::Flexible => star(Expr::Class {
                ranges: vec![(' ', ' '), ('\t', '\t'), ('\n', '\n'), ('\r', '\r')],
                negated: false,
            }),
        }
    }

    /// `ws , ws`
    fn comma(&self) -> Expr {
        Expr::Seq(vec![self.ws(), lit(","), self.ws()])
    }

    /// `ws : ws`
    fn colon(&self) -> Expr {
        Expr::Seq(vec![self.ws(), lit(":"), self.ws()])
    }

    fn budget(&mut self, ptr: &str) -> Result<()> {
        self.nodes += 1;
        if self.nodes > self.options.max_nodes {
            return Err(CoreError::ResourceLimit(format!(
                "the schema's grammar exceeds {} nodes (at {})",
                self.options.max_nodes,
                at(ptr)
            )));
        }
        if self.nodes % 64 == 0 && self.started.elapsed() > self.options.max_time {
            return Err(CoreError::ResourceLimit(format!(
                "compiling the schema took more than {:.1} s (at {})",
                self.options.max_time.as_secs_f64(),
                at(ptr)
            )));
        }
        Ok(())
    }

    /// A keyword that is not enforced: an error when strict, else remembered.
    fn unsupported(&mut self, what: &str, ptr: &str) -> Result<()> {
        if self.options.strict {
            return Err(CoreError::UnsupportedSchema(format!(
                "{what} at {} is not supported (strict=False ignores it)",
                at(ptr)
            )));
        }
        self.ignored.push(format!("{what} at {}", at(ptr)));
        Ok(())
    }

    /// The texts `schema` accepts; `None` when it accepts none.
    fn schema(&mut self, schema: &Value, ptr: &str) -> Result<Option<Expr>> {
        self.budget(ptr)?;
        if self.depth >= MAX_DEPTH {
            return Err(CoreError::ResourceLimit(format!(
                "the schema nests more than {MAX_DEPTH} levels deep (at {})",
                at(ptr)
            )));
        }
        self.depth += 1;
        let result = match schema {
            Value::Bool(true) => Ok(Some(self.any_value())),
            Value::Bool(false) => Ok(None),
            Value::Object(map) => self.object_schema(map, ptr),
            _ => Err(CoreError::Grammar(format!(
                "the schema at {} must be an object or a boolean, got {schema}",
                at(ptr)
            ))),
        };
        self.depth -= 1;
        result
    }

    fn check_keywords(&mut self, map: &Map<String, Value>, ptr: &str) -> Result<()> {
        if let Some(Value::String(uri)) = map.get("$schema") {
            // a custom meta-schema may switch validation vocabularies off
            let known = KNOWN_DIALECTS.iter().any(|d| uri.trim_end_matches('#') == *d);
            if !known {
                self.unsupported(&format!("the meta-schema {uri:?}"), &pointer(ptr, "$schema"))?;
            }
        }
        for key in map.keys() {
            let known = ANNOTATIONS.contains(&key.as_str()) || ENFORCED.contains(&key.as_str());
            if !known && !key.starts_with("x-") {
                self.unsupported(&format!("keyword {key:?}"), &pointer(ptr, key))?;
            }
        }
        Ok(())
    }

    fn object_schema(&mut self, map: &Map<String, Value>, ptr: &str) -> Result<Option<Expr>> {
        self.check_keywords(map, ptr)?;
        if let Some(target) = map.get("$ref") {
            return self.reference(map, target, ptr);
        }
        if let Some(all) = map.get("allOf") {
            let merged = self.merge_all_of(map, all, ptr)?;
            return match merged {
                Some(merged) => self.object_schema(&merged, ptr),
                None => Ok(None),
            };
        }
        for keyword in ["anyOf", "oneOf"] {
            if let Some(branches) = map.get(keyword) {
                return self.branches(map, keyword, branches, ptr);
            }
        }
        if map.contains_key("enum") || map.contains_key("const") {
            return self.enumeration(map, ptr);
        }
        let mut options = Vec::new();
        for t in Self::types(map, ptr)? {
            if let Some(e) = self.typed(t, map, ptr)? {
                options.push(e);
            }
        }
        Ok(alt(options))
    }

    /// The JSON types `map` allows (`integer` only when `number` is not allowed).
    fn types(map: &Map<String, Value>, ptr: &str) -> Result<Vec<&'static str>> {
        let mut types: Vec<&'static str> = match map.get("type") {
            None => TYPES.to_vec(),
            Some(Value::String(t)) => vec![type_name(t, ptr)?],
            Some(Value::Array(list)) => list
                .iter()
                .map(|t| match t {
                    Value::String(t) => type_name(t, ptr),
                    other => Err(CoreError::Grammar(format!(
                        "\"type\" at {} lists {other}, which is not a type name",
                        at(ptr)
                    ))),
                })
                .collect::<Result<_>>()?,
            Some(other) => {
                return Err(CoreError::Grammar(format!(
                    "\"type\" at {} must be a string or a list of strings, got {other}",
                    at(ptr)
                )))
            }
        };
        if map.get("nullable") == Some(&Value::Bool(true)) && !types.contains(&"null") {
            types.push("null");
        }
        if types.contains(&"number") {
            types.retain(|t| *t != "integer");
        }
        types.dedup();
        Ok(types)
    }

    fn typed(&mut self, t: &str, map: &Map<String, Value>, ptr: &str) -> Result<Option<Expr>> {
        match t {
            "null" => Ok(Some(lit("null"))),
            "boolean" => Ok(Some(Expr::Alt(vec![lit("true"), lit("false")]))),
            "integer" | "number" => self.number(t == "integer", map, ptr),
            "string" => self.string(map, ptr),
            "array" => self.array(map, ptr),
            _ => self.object(map, ptr),
        }
    }

    /// Any JSON value (the schema `true`), as a recursive rule made once.
    fn any_value(&mut self) -> Expr {
        if let Some(i) = self.any {
            return Expr::Rule(i);
        }
        let value = self.rule("any value", Expr::Empty);
        self.any = Some(value);
        let string = self.shared_rule("string", string_of(star(strings::any_char())));
        let number = self.shared_rule("number", json_number());
        let v = Expr::Rule(value);
        let member = Expr::Seq(vec![string.clone(), self.colon(), v.clone()]);
        let object = Expr::Seq(vec![
            lit("{"),
            self.ws(),
            opt(Expr::Seq(vec![
                member.clone(),
                star(Expr::Seq(vec![self.comma(), member])),
            ])),
            self.ws(),
            lit("}"),
        ]);
        let array = Expr::Seq(vec![
            lit("["),
            self.ws(),
            opt(Expr::Seq(vec![v.clone(), star(Expr::Seq(vec![self.comma(), v]))])),
            self.ws(),
            lit("]"),
        ]);
        self.rules[value].expr = Expr::Alt(vec![
            object,
            array,
            string,
            number,
            lit("true"),
            lit("false"),
            lit("null"),
        ]);
        Expr::Rule(value)
    }
}

fn type_name(t: &str, ptr: &str) -> Result<&'static str> {
    TYPES
        .iter()
        .chain(&["integer"])
        .find(|&&known| known == t)
        .copied()
        .ok_or_else(|| CoreError::Grammar(format!("unknown type {t:?} at {}", at(ptr))))
}

fn string_of(content: Expr) -> Expr {
    Expr::Seq(vec![lit("\""), content, lit("\"")])
}

/// `-?(0|[1-9][0-9]*)`: the canonical integers.
fn json_integer() -> Expr {
    Expr::Seq(vec![
        opt(lit("-")),
        Expr::Alt(vec![
            lit("0"),
            Expr::Seq(vec![
                Expr::Class {
                    ranges: vec![('1', '9')],
                    negated: false,
                },
                digits(0),
            ]),
        ]),
    ])
}

/// At least `min` decimal digits.
fn digits(min: u32) -> Expr {
    Expr::repeat(
        Expr::Class {
            ranges: vec![('0', '9')],
            negated: false,
        },
        min,
        None,
    )
}

/// Any JSON number.
fn json_number() -> Expr {
    Expr::Seq(vec![
        json_integer(),
        opt(Expr::Seq(vec![lit("."), digits(1)])),
        opt(Expr::Seq(vec![
            Expr::Class {
                ranges: vec![('e', 'e'), ('E', 'E')],
                negated: false,
            },
            opt(Expr::Class {
                ranges: vec![('+', '+'), ('-', '-')],
                negated: false,
            }),
            digits(1),
        ])),
    ])
}

mod combine;
mod types;

#[cfg(test)]
mod tests;
