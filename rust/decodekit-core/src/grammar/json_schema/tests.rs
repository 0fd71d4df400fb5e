//! Schemas compiled and checked on accepted and rejected texts with the Earley recognizer.

use std::sync::Arc;

use super::super::earley::Recognizer;
use super::super::lower::Bnf;
use super::*;

fn recognizer(schema: &str, whitespace: Whitespace) -> Recognizer {
    let options = SchemaOptions {
        whitespace,
        ..SchemaOptions::default()
    };
    let compiled = compile(schema, &options).unwrap_or_else(|e| panic!("{schema}: {e}"));
    Recognizer::new(Arc::new(Bnf::lower(&compiled.cfg).unwrap()))
}

fn accepts(r: &Recognizer, text: &str) -> bool {
    let mut r = r.clone();
    r.push_all(text.as_bytes()).is_ok() && r.is_accepting()
}

fn check(schema: &str, good: &[&str], bad: &[&str]) {
    let r = recognizer(schema, Whitespace::Compact);
    for text in good {
        assert!(accepts(&r, text), "{schema} should accept {text}");
    }
    for text in bad {
        assert!(!accepts(&r, text), "{schema} should reject {text}");
    }
}

#[test]
fn objects_follow_property_order_and_requiredness() {
    let schema = r#"{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"},"c":{"type":"boolean"}},"required":["b"],"additionalProperties":false}"#;
    check(
        schema,
        &[
            r#"{"b":"x"}"#,
            r#"{"a":1,"b":""}"#,
            r#"{"a":-2,"b":"x","c":true}"#,
            r#"{"b":"x","c":false}"#,
        ],
        &[
            r"{}",
            r#"{"a":1}"#,
            r#"{"b":"x","a":1}"#,
            r#"{"b":"x",}"#,
            r#"{,"b":"x"}"#,
            r#"{"b":"x","d":1}"#,
        ],
    );
    let open = r#"{"properties":{"a":{"const":1}},"additionalProperties":{"type":"number"}}"#;
    check(
        open,
        &[
            r"{}",
            r#"{"a":1}"#,
            r#"{"a":1,"x":2.5,"y":3}"#,
            r#"{"x":1}"#,
            r#""text""#,
        ],
        &[r#"{"a":2}"#, r#"{"x":"s"}"#, r#"{"x":1,"a":1}"#],
    );
}

#[test]
fn arrays_count_and_type_their_items() {
    check(
        r#"{"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":{"type":"boolean"},"minItems":1,"maxItems":4}"#,
        &[r#"["a"]"#, r#"["a",1]"#, r#"["a",1,true,false]"#],
        &[r"[]", r"[1]", r#"["a",1,true,false,true]"#, r#"["a","b"]"#],
    );
    check(
        r#"{"type":"array","items":{"type":"null"},"maxItems":2}"#,
        &["[]", "[null]", "[null,null]"],
        &["[null,null,null]", "[1]"],
    );
    check(
        r#"{"type":"array","prefixItems":[{"type":"null"}],"items":false}"#,
        &["[]", "[null]"],
        &["[null,null]"],
    );
}

#[test]
fn numbers_strings_and_combinators() {
    check(
        r#"{"type":"integer","minimum":-5,"exclusiveMaximum":12}"#,
        &["-5", "0", "11"],
        &["-6", "12", "1.5", "1e1"],
    );
    check(
        r#"{"type":"number","minimum":0.5,"maximum":2}"#,
        &["0.5", "1", "1.99", "2.0"],
        &["0.49", "2.01", "-1"],
    );
    check(
        r#"{"type":"string","minLength":2,"maxLength":3}"#,
        &[r#""ab""#, r#""a\"c""#],
        &[r#""a""#, r#""abcd""#],
    );
    check(
        r#"{"type":"string","pattern":"^[a-z]+@x$"}"#,
        &[r#""ab@x""#],
        &[r#""ab@y""#, r#""@x""#],
    );
    check(
        r#"{"type":"string","format":"uuid"}"#,
        &[r#""123e4567-e89b-12d3-a456-426614174000""#],
        &[r#""xyz""#],
    );
    check(
        r#"{"enum":["a",1,null,[1,{"k":true}]]}"#,
        &[r#""a""#, "1", "null", r#"[1,{"k":true}]"#],
        &["2", r#""b""#],
    );
    check(
        r#"{"anyOf":[{"type":"string"},{"type":"integer","minimum":3}]}"#,
        &[r#""x""#, "3"],
        &["2", "null"],
    );
    check(
        r#"{"oneOf":[{"type":"string"},{"type":"null"}]}"#,
        &[r#""x""#, "null"],
        &["1"],
    );
    check(
        r#"{"allOf":[{"type":"integer","minimum":2},{"maximum":4},{"type":["integer","string"]}]}"#,
        &["2", "4"],
        &["1", "5", r#""s""#],
    );
    check(r#"{"type":["string","null"]}"#, &["null", r#""""#], &["1"]);
}

#[test]
fn recursive_references() {
    let tree = r##"{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["v"],"additionalProperties":false}},"$ref":"#/$defs/node"}"##;
    check(
        tree,
        &[
            r#"{"v":1}"#,
            r#"{"v":1,"kids":[{"v":2,"kids":[]},{"v":3,"kids":[{"v":4}]}]}"#,
        ],
        &[r#"{"v":1,"kids":[{}]}"#, r#"{"kids":[]}"#],
    );
}

#[test]
fn whitespace_modes() {
    let schema = r#"{"type":"object","properties":{"a":{"type":"array","items":{"type":"integer"}}}}"#;
    let flexible = recognizer(schema, Whitespace::Flexible);
    let compact = recognizer(schema, Whitespace::Compact);
    for text in ["{\"a\": [1, 2]}", "{\n  \"a\": [\n    1\n  ]\n}", " {} "] {
        assert!(accepts(&flexible, text), "{text}");
        assert!(!accepts(&compact, text), "{text}");
    }
    assert!(accepts(&compact, r#"{"a":[1,2]}"#));
}

#[test]
fn unsupported_keywords_name_their_pointer_and_bad_schemas_are_grammar_errors() {
    let strict = SchemaOptions::default();
    for (schema, message) in [
        (
            r#"{"type":"number","multipleOf":2}"#,
            "\"multipleOf\" at /multipleOf",
        ),
        (
            r#"{"properties":{"a":{"not":{}}}}"#,
            "keyword \"not\" at /properties/a/not",
        ),
        (
            r#"{"type":"array","uniqueItems":true}"#,
            "\"uniqueItems\": true at /uniqueItems",
        ),
        (
            r#"{"oneOf":[{"type":"integer"},{"minimum":1}]}"#,
            "may both match",
        ),
        (
            r#"{"$ref":"http://example.com/s"}"#,
            "only references inside the schema",
        ),
    ] {
        let error = compile(schema, &strict).unwrap_err();
        assert!(
            matches!(error, CoreError::UnsupportedSchema(_)),
            "{schema}: {error:?}"
        );
        assert!(error.to_string().contains(message), "{schema}: {error}");
    }
    for (schema, message) in [
        ("{\"type\": ", "not valid JSON"),
        (r##"{"$ref":"#/$defs/missing"}"##, "points to nothing"),
        (r#"{"type":"thing"}"#, "unknown type"),
        ("[1]", "must be an object or a boolean"),
    ] {
        let error = compile(schema, &strict).unwrap_err();
        assert!(matches!(error, CoreError::Grammar(_)), "{schema}: {error:?}");
        assert!(error.to_string().contains(message), "{schema}: {error}");
    }
    let lenient = SchemaOptions {
        strict: false,
        ..SchemaOptions::default()
    };
    let compiled = compile(r#"{"type":"number","multipleOf":2,"not":{}}"#, &lenient).unwrap();
    assert_eq!(compiled.ignored.len(), 2, "{:?}", compiled.ignored);
    let error = compile("false", &strict).unwrap_err();
    assert!(error.to_string().contains("accepts no value"), "{error}");
}
