//! Bindings of `decodekit_core::grammar`: vocabularies, grammars, matchers and token bitmasks.

use std::path::PathBuf;
use std::sync::Arc;

use decodekit_core::grammar::{
    self, bitmask, json_schema, CompiledGrammar, EosChoice, Grammar, Matcher, Position, RegexLimits,
    TokenKind, Vocabulary,
};
use numpy::{PyArrayDyn, PyArrayMethods, PyReadwriteArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::arrays::{as_ndarray, count, dtype_name, int_vector};
use crate::errors::{core, detached, invalid_input, to_pyerr};

fn vocabulary_error(message: String) -> PyErr {
    to_pyerr(decodekit_core::CoreError::Vocabulary(message))
}

fn eos_choice(eos_tokens: Option<Vec<String>>) -> EosChoice {
    eos_tokens.map_or(EosChoice::Guess, EosChoice::Names)
}

fn vocab_size(size: Option<i64>) -> PyResult<Option<usize>> {
    size.map(|s| count(s, "size")).transpose()
}

/// Read a text argument that is either a path or the content itself (`looks_inline` decides for `str`).
fn read_source(source: &Bound<'_, PyAny>, looks_inline: impl Fn(&str) -> bool) -> PyResult<Vec<u8>> {
    if let Ok(text) = source.cast::<PyString>() {
        let text = text.to_str()?;
        if looks_inline(text) {
            return Ok(text.as_bytes().to_vec());
        }
        return Ok(std::fs::read(text)?);
    }
    if let Ok(bytes) = source.cast::<PyBytes>() {
        return Ok(bytes.as_bytes().to_vec());
    }
    let path: PathBuf = source.extract().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err("expected a path (str or os.PathLike), the text, or bytes")
    })?;
    Ok(std::fs::read(path)?)
}

/// A tokenizer vocabulary as constrained decoding sees it: the bytes of every token id, the special ids
/// (never produced by a grammar) and the EOS ids (allowed exactly where the grammar accepts). Frozen and
/// safe to share between threads and grammars.
///
/// ``size`` is the model's logits width when it exceeds the tokenizer's number of ids; the padding ids in
/// between are never allowed. Unused ids (gaps in the tokenizer's ids) are never allowed either.
#[pyclass(frozen, module = "decodekit._core", name = "Vocabulary")]
pub struct PyVocabulary {
    pub inner: Arc<Vocabulary>,
}

#[pymethods]
impl PyVocabulary {
    /// Build from the bytes of every id (``None`` for an unused id). ``eos_ids`` end a sequence and
    /// ``special_ids`` are control tokens; both are never produced by a grammar except EOS at an accepting
    /// state.
    #[staticmethod]
    #[pyo3(signature = (tokens, eos_ids, special_ids = Vec::new(), size = None))]
    fn from_tokens(
        py: Python<'_>,
        tokens: Vec<Option<Vec<u8>>>,
        eos_ids: Vec<i64>,
        special_ids: Vec<i64>,
        size: Option<i64>,
    ) -> PyResult<Self> {
        let ids = |list: Vec<i64>, what: &str| -> PyResult<Vec<u32>> {
            list.into_iter()
                .map(|i| {
                    u32::try_from(i)
                        .map_err(|_| vocabulary_error(format!("{what} id {i} is negative or too large")))
                })
                .collect()
        };
        let (eos, special, size) = (
            ids(eos_ids, "eos")?,
            ids(special_ids, "special")?,
            vocab_size(size)?,
        );
        let inner = detached(py, || Vocabulary::new(&tokens, &special, &eos, size))?;
        Ok(PyVocabulary {
            inner: Arc::new(inner),
        })
    }

    /// Read a Hugging Face ``tokenizer.json`` (a path, or the JSON text itself): byte-level BPE with the
    /// GPT-2 byte map, or SentencePiece-style pieces (``▁`` is a space, ``<0xNN>`` a byte). Added tokens
    /// marked special are special. ``eos_tokens`` names the EOS tokens; by default every special token with
    /// a well-known EOS name (``</s>``, ``<|endoftext|>``, ``<|im_end|>``, ``<|eot_id|>``, ...) is one.
    #[staticmethod]
    #[pyo3(signature = (source, *, eos_tokens = None, size = None))]
    fn from_tokenizer_json(
        py: Python<'_>,
        source: &Bound<'_, PyAny>,
        eos_tokens: Option<Vec<String>>,
        size: Option<i64>,
    ) -> PyResult<Self> {
        let data = read_source(source, |t| t.trim_start().starts_with('{'))?;
        let text =
            String::from_utf8(data).map_err(|_| vocabulary_error("tokenizer.json is not UTF-8".into()))?;
        let (eos, size) = (eos_choice(eos_tokens), vocab_size(size)?);
        let inner = detached(py, || Vocabulary::from_tokenizer_json(&text, &eos, size))?;
        Ok(PyVocabulary {
            inner: Arc::new(inner),
        })
    }

    /// Read a tiktoken rank file (``<base64 token> <rank>`` per line, as shipped for GPT-2, Llama 3 and
    /// Qwen) and add ``special_tokens`` (name -> id). ``eos_tokens`` as in ``from_tokenizer_json``.
    #[staticmethod]
    #[pyo3(signature = (path, special_tokens = None, *, eos_tokens = None, size = None))]
    fn from_tiktoken(
        py: Python<'_>,
        path: PathBuf,
        special_tokens: Option<std::collections::HashMap<String, i64>>,
        eos_tokens: Option<Vec<String>>,
        size: Option<i64>,
    ) -> PyResult<Self> {
        let data = std::fs::read(path)?;
        let mut special: Vec<(String, u32)> = Vec::new();
        for (name, id) in special_tokens.unwrap_or_default() {
            let id = u32::try_from(id)
                .map_err(|_| vocabulary_error(format!("special token {name:?} has an invalid id {id}")))?;
            special.push((name, id));
        }
        special.sort_by_key(|s| s.1);
        let (eos, size) = (eos_choice(eos_tokens), vocab_size(size)?);
        let inner = detached(py, || Vocabulary::from_tiktoken(&data, &special, &eos, size))?;
        Ok(PyVocabulary {
            inner: Arc::new(inner),
        })
    }

    /// Read a transformers fast tokenizer (its ``backend_tokenizer``). EOS: ``eos_tokens`` if given, else
    /// the tokenizer's ``eos_token_id``, else the well-known names.
    #[staticmethod]
    #[pyo3(signature = (tokenizer, *, eos_tokens = None, size = None))]
    fn from_hf(
        py: Python<'_>,
        tokenizer: &Bound<'_, PyAny>,
        eos_tokens: Option<Vec<String>>,
        size: Option<i64>,
    ) -> PyResult<Self> {
        let backend = tokenizer.getattr("backend_tokenizer").map_err(|_| {
            vocabulary_error(format!(
                "{} is not a transformers fast tokenizer (it has no backend_tokenizer)",
                tokenizer
                    .get_type()
                    .name()
                    .map_or_else(|_| "?".into(), |n| n.to_string())
            ))
        })?;
        let text: String = backend.call_method0("to_str")?.extract()?;
        let eos = match eos_tokens {
            Some(names) => EosChoice::Names(names),
            None => match tokenizer
                .getattr("eos_token_id")
                .ok()
                .and_then(|v| v.extract::<Option<u32>>().ok())
                .flatten()
            {
                Some(id) => EosChoice::Ids(vec![id]),
                None => EosChoice::Guess,
            },
        };
        let size = vocab_size(size)?;
        let inner = detached(py, || Vocabulary::from_tokenizer_json(&text, &eos, size))?;
        Ok(PyVocabulary {
            inner: Arc::new(inner),
        })
    }

    /// The model's logits width (bits of a bitmask row that mean something).
    #[getter]
    fn size(&self) -> usize {
        self.inner.size()
    }

    /// Number of token ids the tokenizer defines (``<= size``).
    #[getter]
    fn num_tokens(&self) -> usize {
        self.inner.num_tokens()
    }

    /// The EOS ids, ascending.
    #[getter]
    fn eos_ids(&self) -> Vec<u32> {
        self.inner.eos_ids().to_vec()
    }

    /// The special ids (EOS included), ascending.
    #[getter]
    fn special_ids(&self) -> Vec<u32> {
        self.inner.special_ids()
    }

    /// The bytes of token ``id`` (special tokens give their text; unused and padding ids give ``b""``).
    fn token_bytes<'py>(&self, py: Python<'py>, id: i64) -> PyResult<Bound<'py, PyBytes>> {
        let id = usize::try_from(id)
            .ok()
            .filter(|&i| i < self.inner.size())
            .ok_or_else(|| {
                invalid_input(format!(
                    "token id {id} is out of range for a vocabulary of size {}",
                    self.inner.size()
                ))
            })?;
        Ok(PyBytes::new(py, self.inner.token_bytes(id)))
    }

    /// The bytes of a token sequence (special tokens contribute their text).
    fn decode<'py>(&self, py: Python<'py>, ids: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let ids = token_ids(ids, "ids")?;
        Ok(PyBytes::new(py, &core(self.inner.decode(&ids))?))
    }

    fn __len__(&self) -> usize {
        self.inner.size()
    }

    fn __repr__(&self) -> String {
        format!(
            "Vocabulary(num_tokens={}, size={}, eos_ids={:?}, special={})",
            self.inner.num_tokens(),
            self.inner.size(),
            self.inner.eos_ids(),
            self.inner.special_ids().len()
        )
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let py = slf.py();
        let v = &slf.get().inner;
        let tokens = PyList::empty(py);
        for id in 0..v.num_tokens() {
            if v.kind(id) == TokenKind::Unused {
                tokens.append(py.None())?;
            } else {
                tokens.append(PyBytes::new(py, v.token_bytes(id)))?;
            }
        }
        let special: Vec<u32> = v.special_ids().into_iter().filter(|&i| !v.is_eos(i)).collect();
        let args = (tokens, v.eos_ids().to_vec(), special, v.size())
            .into_pyobject(py)?
            .into_any();
        Ok((slf.as_any().get_type().getattr("from_tokens")?, args))
    }
}

fn token_ids(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<u32>> {
    int_vector(obj, name)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| u32::try_from(v).map_err(|_| invalid_input(format!("{name}[{i}] = {v} is negative"))))
        .collect()
}

fn token_id(id: i64) -> PyResult<u32> {
    u32::try_from(id).map_err(|_| invalid_input(format!("token id {id} is out of range")))
}

/// A language that generated text must stay inside, independent of any tokenizer; ``compile`` pairs it
/// with a :class:`Vocabulary`. Frozen.
#[pyclass(frozen, module = "decodekit._core", name = "Grammar")]
pub struct PyGrammar {
    inner: Grammar,
    /// What the grammar was made from, to rebuild it when unpickled.
    source: GrammarSource,
}

enum GrammarSource {
    Regex {
        pattern: String,
        limits: RegexLimits,
    },
    Ebnf(String),
    Lark(String),
    JsonSchema {
        text: String,
        whitespace: &'static str,
        strict: bool,
        max_compile_seconds: f64,
    },
}

#[pymethods]
impl PyGrammar {
    /// A regular language: the *whole* generated text must match ``pattern`` (Rust ``regex`` syntax,
    /// Unicode-aware; ``.`` does not match ``\n`` unless ``(?s)``). Look-around, backreferences and word
    /// boundaries raise ``GrammarError``; an automaton over ``max_automaton_bytes`` bytes or
    /// ``max_states`` states raises ``ResourceLimitError``.
    #[staticmethod]
    #[pyo3(signature = (pattern, *, max_automaton_bytes = 67_108_864, max_states = 100_000))]
    fn regex(py: Python<'_>, pattern: String, max_automaton_bytes: i64, max_states: i64) -> PyResult<Self> {
        let limits = RegexLimits {
            max_automaton_bytes: count(max_automaton_bytes, "max_automaton_bytes")?,
            max_states: count(max_states, "max_states")?,
        };
        let inner = detached(py, || Grammar::regex(&pattern, limits))?;
        Ok(PyGrammar {
            inner,
            source: GrammarSource::Regex { pattern, limits },
        })
    }

    /// A context-free grammar in GBNF, llama.cpp's format: ``name ::= alternatives`` rules with the start
    /// rule ``root``; ``"literals"`` (with ``\\n``, ``\\t``, ``\\xHH``, ``\\uHHHH``, ``\\UHHHHHHHH``
    /// escapes), character classes ``[a-z]`` / ``[^"]``, ``.``, groups, ``*`` ``+`` ``?`` ``{m}`` ``{m,}``
    /// ``{m,n}`` ``{,n}``, ``#`` comments; a rule may span lines. Syntax errors, undefined rules and rules
    /// that can never finish raise ``GrammarError`` with the line and column.
    #[staticmethod]
    fn ebnf(py: Python<'_>, text: String) -> PyResult<Self> {
        let inner = detached(py, || Grammar::ebnf(&text))?;
        Ok(PyGrammar {
            inner,
            source: GrammarSource::Ebnf(text),
        })
    }

    /// A context-free grammar in a subset of Lark's format (start rule ``start``): rules and uppercase
    /// terminals, ``"literals"`` (``"..."i`` case-insensitive), ``/regex/flags`` (Rust ``regex`` syntax;
    /// flags ``i s x u``), ``"a".."z"``, ``[optional]``, ``? * +``, ``~ n`` / ``~ n..m``, ``%ignore`` and
    /// ``%import common.NAME``. There is no lexer: a text is accepted iff the start rule derives it
    /// (docs/grammar.md lists the differences from Lark). Errors raise ``GrammarError`` with the line and
    /// column.
    #[staticmethod]
    fn lark(py: Python<'_>, text: String) -> PyResult<Self> {
        let inner = detached(py, || Grammar::lark(&text))?;
        Ok(PyGrammar {
            inner,
            source: GrammarSource::Lark(text),
        })
    }

    /// The JSON texts that a JSON Schema (draft 2020-12 keywords) accepts. ``schema`` is JSON text or a
    /// JSON-serializable object (dict, bool). ``whitespace="compact"`` allows no whitespace (separators
    /// ``,`` and ``:``); ``"flexible"`` allows any JSON whitespace between tokens. Properties come in the
    /// schema's order; optional ones may be left out. With ``strict=True`` every keyword that is not
    /// enforced raises ``UnsupportedSchemaError`` naming it and its JSON pointer; ``strict=False`` ignores
    /// them and lists them in one ``UserWarning``. Invalid schemas and unknown ``$ref`` targets raise
    /// ``GrammarError``; compiling longer than ``max_compile_seconds`` raises ``ResourceLimitError``.
    /// See docs/grammar.md for what exactly is generated.
    #[staticmethod]
    #[pyo3(signature = (schema, *, whitespace = "compact", strict = true, max_compile_seconds = 10.0))]
    fn json_schema(
        py: Python<'_>,
        schema: &Bound<'_, PyAny>,
        whitespace: &str,
        strict: bool,
        max_compile_seconds: f64,
    ) -> PyResult<Self> {
        let text: String = if let Ok(text) = schema.cast::<PyString>() {
            text.to_str()?.to_owned()
        } else {
            let kwargs = pyo3::types::PyDict::new(py);
            kwargs.set_item("allow_nan", false)?;
            py.import("json")?
                .getattr("dumps")?
                .call((schema,), Some(&kwargs))
                .map_err(|e| {
                    to_pyerr(decodekit_core::error::CoreError::Grammar(format!(
                        "the schema is not JSON-serializable: {e}"
                    )))
                })?
                .extract()?
        };
        let (layout, whitespace) = match whitespace {
            "compact" => (json_schema::Whitespace::Compact, "compact"),
            "flexible" => (json_schema::Whitespace::Flexible, "flexible"),
            other => {
                return Err(invalid_input(format!(
                    "whitespace must be \"compact\" or \"flexible\", got {other:?}"
                )))
            }
        };
        if !(max_compile_seconds > 0.0 && max_compile_seconds.is_finite()) {
            return Err(invalid_input(format!(
                "max_compile_seconds must be a positive number, got {max_compile_seconds}"
            )));
        }
        let options = json_schema::SchemaOptions {
            whitespace: layout,
            strict,
            max_time: std::time::Duration::from_secs_f64(max_compile_seconds),
            ..json_schema::SchemaOptions::default()
        };
        let (inner, ignored) = detached(py, || Grammar::json_schema(&text, &options))?;
        if !ignored.is_empty() {
            let message = format!(
                "Grammar.json_schema(strict=False) does not enforce: {}",
                ignored.join("; ")
            );
            let category = py.get_type::<pyo3::exceptions::PyUserWarning>();
            PyErr::warn(py, &category, &std::ffi::CString::new(message)?, 1)?;
        }
        Ok(PyGrammar {
            inner,
            source: GrammarSource::JsonSchema {
                text,
                whitespace,
                strict,
                max_compile_seconds,
            },
        })
    }

    /// Whether this is a context-free grammar (``ebnf``) rather than a regular one (``regex``).
    #[getter]
    fn is_context_free(&self) -> bool {
        self.inner.is_context_free()
    }

    /// Pair the grammar with ``vocab``. ``precompute=True`` computes every state's token mask now (on the
    /// library's thread pool) so that no later mask costs more than a copy; ``False`` computes each mask
    /// the first time a sequence needs it (then caches it); ``None`` precomputes when all masks fit in
    /// 32 MiB.
    #[pyo3(signature = (vocab, *, precompute = None))]
    fn compile(
        &self,
        py: Python<'_>,
        vocab: &PyVocabulary,
        precompute: Option<bool>,
    ) -> PyResult<PyCompiledGrammar> {
        let vocab = Arc::clone(&vocab.inner);
        let inner = detached(py, || self.inner.compile(vocab, precompute))?;
        Ok(PyCompiledGrammar {
            inner: Arc::new(inner),
            description: self.inner.description().to_string(),
        })
    }

    /// Number of live automaton states (of all lexeme automata, for a context-free grammar).
    #[getter]
    fn num_states(&self) -> usize {
        self.inner.num_states()
    }

    fn __repr__(&self) -> String {
        match &self.source {
            GrammarSource::Regex { pattern, .. } => format!("Grammar.regex({pattern:?})"),
            GrammarSource::Ebnf(_) | GrammarSource::Lark(_) | GrammarSource::JsonSchema { .. } => {
                format!("Grammar(<{}>)", self.inner.description())
            }
        }
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let py = slf.py();
        let me = slf.get();
        let cls = slf.as_any().get_type();
        match &me.source {
            GrammarSource::Regex { pattern, limits } => {
                let partial = py.import("functools")?.getattr("partial")?;
                let kwargs = pyo3::types::PyDict::new(py);
                kwargs.set_item("max_automaton_bytes", limits.max_automaton_bytes)?;
                kwargs.set_item("max_states", limits.max_states)?;
                let build = partial.call((cls.getattr("regex")?,), Some(&kwargs))?;
                Ok((build, (pattern.clone(),).into_pyobject(py)?.into_any()))
            }
            GrammarSource::Ebnf(text) => Ok((
                cls.getattr("ebnf")?,
                (text.clone(),).into_pyobject(py)?.into_any(),
            )),
            GrammarSource::Lark(text) => Ok((
                cls.getattr("lark")?,
                (text.clone(),).into_pyobject(py)?.into_any(),
            )),
            GrammarSource::JsonSchema {
                text,
                whitespace,
                strict,
                max_compile_seconds,
            } => {
                let partial = py.import("functools")?.getattr("partial")?;
                let kwargs = pyo3::types::PyDict::new(py);
                kwargs.set_item("whitespace", *whitespace)?;
                kwargs.set_item("strict", *strict)?;
                kwargs.set_item("max_compile_seconds", *max_compile_seconds)?;
                let build = partial.call((cls.getattr("json_schema")?,), Some(&kwargs))?;
                Ok((build, (text.clone(),).into_pyobject(py)?.into_any()))
            }
        }
    }
}

/// A grammar compiled for one vocabulary: frozen and thread-safe, shared by any number of
/// :class:`Matcher` objects. Each automaton state's token mask is computed once and cached.
#[pyclass(frozen, module = "decodekit._core", name = "CompiledGrammar")]
pub struct PyCompiledGrammar {
    inner: Arc<CompiledGrammar>,
    description: String,
}

#[pymethods]
impl PyCompiledGrammar {
    /// The vocabulary the grammar was compiled for.
    #[getter]
    fn vocab(&self) -> PyVocabulary {
        PyVocabulary {
            inner: Arc::clone(self.inner.vocab()),
        }
    }

    /// Number of live automaton states (of all lexeme automata, for a context-free grammar).
    #[getter]
    fn num_states(&self) -> usize {
        self.inner.num_states()
    }

    /// Number of states whose token mask has been computed so far (lexeme states, for a context-free
    /// grammar).
    #[getter]
    fn num_cached_masks(&self) -> usize {
        self.inner.num_cached_masks()
    }

    fn __repr__(&self) -> String {
        format!(
            "CompiledGrammar({}, states={}, vocab size={})",
            self.description,
            self.inner.num_states(),
            self.inner.vocab().size()
        )
    }
}

/// An int32 bitmask argument: the array and its `rows x words` shape.
struct Bitmask<'py> {
    array: Bound<'py, PyArrayDyn<i32>>,
    rows: usize,
    words: usize,
}

/// View int32 bitmask words as the `u32` words the core works on.
fn as_words(slice: &[i32]) -> &[u32] {
    // SAFETY: i32 and u32 have the same size and alignment and every bit pattern is valid for both.
    unsafe { std::slice::from_raw_parts(slice.as_ptr().cast::<u32>(), slice.len()) }
}

/// Mutable form of [`as_words`].
fn as_words_mut(slice: &mut [i32]) -> &mut [u32] {
    // SAFETY: as in `as_words`.
    unsafe { std::slice::from_raw_parts_mut(slice.as_mut_ptr().cast::<u32>(), slice.len()) }
}

fn bitmask_arg<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Bitmask<'py>> {
    let array = as_ndarray(obj)?;
    let (rows, words) = match array.shape() {
        [w] => (1, *w),
        [b, w] => (*b, *w),
        shape => {
            return Err(invalid_input(format!(
                "{name} must be 1-D [words] or 2-D [batch, words], got shape {shape:?}"
            )))
        }
    };
    let typed = array.cast::<PyArrayDyn<i32>>().map_err(|_| {
        invalid_input(format!(
            "{name} must be an int32 array (see allocate_token_bitmask), got dtype {}",
            dtype_name(&array)
        ))
    })?;
    if !typed.is_c_contiguous() {
        return Err(invalid_input(format!("{name} must be C-contiguous")));
    }
    Ok(Bitmask {
        array: typed.clone(),
        rows,
        words,
    })
}

fn writable<'py>(mask: &Bitmask<'py>, name: &str) -> PyResult<PyReadwriteArrayDyn<'py, i32>> {
    mask.array
        .try_readwrite()
        .map_err(|_| invalid_input(format!("{name} must be writable (it is filled in place)")))
}

fn check_width(words: usize, grammar: &CompiledGrammar, name: &str) -> PyResult<()> {
    let need = grammar.vocab().mask_words();
    if words < need {
        return Err(invalid_input(format!(
            "{name} has {words} words per row, but the vocabulary (size {}) needs ceil({} / 32) = {need}",
            grammar.vocab().size(),
            grammar.vocab().size()
        )));
    }
    Ok(())
}

/// Fill one row for `matcher`: with the GIL held when the state's mask is cached (a row copy, about
/// 0.2 µs at 128k tokens, costs less than releasing and re-taking the GIL), else detached, since the
/// first visit of a state walks the token trie.
fn fill_row(py: Python<'_>, matcher: &mut Matcher, row: &mut [u32]) -> PyResult<()> {
    if matcher.is_mask_cached() {
        matcher.fill_next_token_bitmask(row);
        return Ok(());
    }
    detached(py, || {
        matcher.fill_next_token_bitmask(row);
        Ok(())
    })
}

/// Follows one sequence through a :class:`CompiledGrammar`: which tokens may come next, accepting tokens
/// and rolling them back (any depth, for speculative decoding). Mutable and not thread-safe: use one per
/// sequence (``copy()`` gives an independent one).
#[pyclass(module = "decodekit._core", name = "Matcher")]
pub struct PyMatcher {
    inner: Matcher,
}

#[pymethods]
impl PyMatcher {
    #[new]
    fn new(compiled: &PyCompiledGrammar) -> Self {
        PyMatcher {
            inner: Matcher::new(Arc::clone(&compiled.inner)),
        }
    }

    /// Write the allowed next tokens into row ``row`` of ``bitmask`` (int32 ``[batch, ceil(V/32)]`` or one
    /// row ``[ceil(V/32)]``; wider rows are allowed and their extra bits cleared). EOS is allowed exactly
    /// where the text so far is accepted; after EOS only EOS is allowed.
    #[pyo3(signature = (bitmask, row = 0))]
    fn fill_next_token_bitmask(
        &mut self,
        py: Python<'_>,
        bitmask: &Bound<'_, PyAny>,
        row: i64,
    ) -> PyResult<()> {
        let mask = bitmask_arg(bitmask, "bitmask")?;
        check_width(mask.words, self.inner.grammar(), "bitmask")?;
        let row = usize::try_from(row)
            .ok()
            .filter(|&r| r < mask.rows)
            .ok_or_else(|| {
                invalid_input(format!(
                    "row {row} is out of range for a bitmask of {} rows",
                    mask.rows
                ))
            })?;
        let words = mask.words;
        let mut array = writable(&mask, "bitmask")?;
        let out = &mut as_words_mut(array.as_slice_mut().expect("checked C-contiguous"))
            [row * words..(row + 1) * words];
        fill_row(py, &mut self.inner, out)
    }

    /// Like ``fill_next_token_bitmask`` for one row given as a raw address, for engines that hand over
    /// ``tensor.data_ptr()`` of a CPU int32 tensor (as llguidance's ``unsafe_compute_mask_ptr`` and
    /// outlines-core's ``write_mask_into``). ``num_words`` int32 words at ``ptr`` are written; the address
    /// must be non-null and 4-byte aligned and ``num_words`` at least ``ceil(size / 32)``. The caller
    /// guarantees that the memory is valid, writable and not used by anyone else during the call; nothing
    /// else can be checked, hence the name.
    fn unsafe_fill_next_token_bitmask_ptr(
        &mut self,
        py: Python<'_>,
        ptr: usize,
        num_words: usize,
    ) -> PyResult<()> {
        if ptr == 0 || ptr % std::mem::align_of::<u32>() != 0 {
            return Err(invalid_input(format!(
                "ptr {ptr:#x} is null or not 4-byte aligned"
            )));
        }
        check_width(num_words, self.inner.grammar(), "num_words")?;
        if num_words > isize::MAX as usize / 4 {
            return Err(invalid_input(format!("num_words {num_words} is too large")));
        }
        // SAFETY: the caller promises `num_words` writable, unaliased u32 words at `ptr`; null, alignment
        // and the size bound are checked above.
        let row = unsafe { std::slice::from_raw_parts_mut(ptr as *mut u32, num_words) };
        fill_row(py, &mut self.inner, row)
    }

    /// Accept ``token`` if the grammar allows it and return ``True``; return ``False`` and change nothing
    /// if it does not.
    fn accept_token(&mut self, token: i64) -> PyResult<bool> {
        core(self.inner.accept_token(token_id(token)?))
    }

    /// Accept tokens in order until one is not allowed; return how many were accepted.
    fn accept_tokens(&mut self, tokens: &Bound<'_, PyAny>) -> PyResult<usize> {
        let ids = token_ids(tokens, "tokens")?;
        core(self.inner.accept_tokens(&ids))
    }

    /// Whether ``token`` would be accepted now (nothing changes).
    fn is_allowed(&mut self, token: i64) -> PyResult<bool> {
        core(self.inner.is_allowed(token_id(token)?))
    }

    /// Undo the last ``n`` accepted tokens (any number up to ``num_tokens``).
    #[pyo3(signature = (n = 1))]
    fn rollback(&mut self, n: i64) -> PyResult<()> {
        core(self.inner.rollback(count(n, "n")?))
    }

    /// Whether the text so far is in the language (also true after EOS).
    fn is_accepting(&self) -> bool {
        self.inner.is_accepting()
    }

    /// Whether EOS has been accepted.
    fn is_terminated(&self) -> bool {
        self.inner.is_terminated()
    }

    /// The bytes the grammar forces next (empty when the next step is a choice).
    fn forced_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.forced_bytes())
    }

    /// Tokens that can be appended without asking the model (jump-forward decoding): the longest token
    /// matching the forced bytes at each step, stopping before any position where an allowed token would
    /// reach past the forced bytes.
    fn forced_tokens(&self) -> Vec<u32> {
        self.inner.forced_tokens()
    }

    /// Fill row ``i`` of ``bitmask`` (int32 ``[rows >= tree.num_nodes, ceil(V/32)]``) with the mask after
    /// the path from the root to node ``i`` of the draft ``tree``, and return a bool array saying which
    /// nodes are grammatical (every token on their path allowed). Node 0 is the root: the position the
    /// matcher is at now (the root's token is not read). Rows of ungrammatical nodes are all zero, so a
    /// drafter can prune them before verification and the verifier can mask the target logits of every
    /// node. The matcher ends where it started.
    fn fill_draft_tree_bitmasks<'py>(
        &mut self,
        py: Python<'py>,
        tree: &crate::tree::PyDraftTree,
        bitmask: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, numpy::PyArray1<bool>>> {
        let n = tree.inner.num_nodes();
        let mask = bitmask_arg(bitmask, "bitmask")?;
        check_width(mask.words, self.inner.grammar(), "bitmask")?;
        if mask.rows < n {
            return Err(invalid_input(format!(
                "bitmask has {} rows for a draft tree of {n} nodes",
                mask.rows
            )));
        }
        let tokens = tree
            .inner
            .tokens()
            .iter()
            .map(|&t| u32::try_from(t).map_err(|_| invalid_input(format!("tree token {t} is negative"))))
            .collect::<PyResult<Vec<u32>>>()?;
        let words = mask.words;
        let mut array = writable(&mask, "bitmask")?;
        let out = &mut as_words_mut(array.as_slice_mut().expect("checked C-contiguous"))[..n * words];
        let matcher = &mut self.inner;
        let grammatical = detached(py, || {
            matcher.fill_draft_tree_bitmasks(&tokens, tree.inner.parents(), out)
        })?;
        Ok(numpy::IntoPyArray::into_pyarray(grammatical, py))
    }

    /// Back to the start of the grammar.
    fn reset(&mut self) {
        self.inner.reset();
    }

    /// An independent copy (same grammar, same position and history).
    fn copy(&self) -> Self {
        PyMatcher {
            inner: self.inner.clone(),
        }
    }

    fn __copy__(&self) -> Self {
        self.copy()
    }

    fn __deepcopy__(&self, _memo: &Bound<'_, PyAny>) -> Self {
        self.copy()
    }

    /// Number of tokens accepted since the start (what ``rollback`` can undo).
    #[getter]
    fn num_tokens(&self) -> usize {
        self.inner.num_tokens()
    }

    fn __repr__(&self) -> String {
        format!(
            "Matcher(num_tokens={}, accepting={}, terminated={})",
            self.inner.num_tokens(),
            self.inner.is_accepting(),
            self.inner.is_terminated()
        )
    }
}

/// Fill row ``i`` of ``bitmask`` for ``matchers[i]`` with the GIL released. Rows whose masks must still be
/// computed run in parallel on the library's thread pool; when every mask is cached (a row copy each) the
/// calling thread copies them all, which is faster than waking the pool. ``bitmask`` must have at least
/// ``len(matchers)`` rows; further rows are left as they are.
#[pyfunction]
pub fn fill_next_token_bitmask_batch(
    py: Python<'_>,
    matchers: Vec<PyRef<'_, PyMatcher>>,
    bitmask: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let mask = bitmask_arg(bitmask, "bitmask")?;
    if matchers.len() > mask.rows {
        return Err(invalid_input(format!(
            "bitmask has {} rows for {} matchers",
            mask.rows,
            matchers.len()
        )));
    }
    for (i, m) in matchers.iter().enumerate() {
        check_width(
            mask.words,
            m.inner.grammar(),
            &format!("bitmask (for matchers[{i}])"),
        )?;
    }
    // Snapshots of the positions, so the parallel work holds no Python objects.
    let positions: Vec<Position> = matchers.iter().map(|m| m.inner.position()).collect();
    let words = mask.words;
    let mut array = writable(&mask, "bitmask")?;
    let out =
        &mut as_words_mut(array.as_slice_mut().expect("checked C-contiguous"))[..positions.len() * words];
    detached(py, || grammar::fill_next_token_bitmask_batch(&positions, out))
}

/// Set ``logits[i, t] = -inf`` wherever bit ``t`` of ``bitmask[i]`` is clear, in place. ``logits`` is
/// float32 ``[batch, V]`` or ``[V]``; ``bitmask`` is int32 ``[batch, W]`` or ``[W]`` with ``32 * W >= V``.
#[pyfunction]
pub fn apply_token_bitmask(
    py: Python<'_>,
    logits: &Bound<'_, PyAny>,
    bitmask: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let array = logits.cast::<PyArrayDyn<f32>>().map_err(|_| {
        invalid_input("logits must be a writable float32 numpy array (it is modified in place)")
    })?;
    let (rows, width) = match array.shape() {
        [v] => (1, *v),
        [b, v] => (*b, *v),
        shape => {
            return Err(invalid_input(format!(
                "logits must be 1-D or 2-D, got shape {shape:?}"
            )))
        }
    };
    if !array.is_c_contiguous() {
        return Err(invalid_input("logits must be C-contiguous"));
    }
    let mask = bitmask_arg(bitmask, "bitmask")?;
    if mask.rows != rows {
        return Err(invalid_input(format!(
            "logits have {rows} rows but bitmask has {}",
            mask.rows
        )));
    }
    let words = mask.words;
    let readonly = mask.array.readonly();
    let bits = as_words(readonly.as_slice().expect("checked C-contiguous"));
    let mut logits = array
        .try_readwrite()
        .map_err(|_| invalid_input("logits must be writable"))?;
    let values = logits.as_slice_mut().expect("checked C-contiguous");
    detached(py, || bitmask::apply_token_bitmask(values, width, bits, words))
}
