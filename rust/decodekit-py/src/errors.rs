//! The one place where core errors become Python exceptions.
//!
//! The hierarchy needs multiple inheritance (`InvalidInputError` is both a `DecodekitError` and a
//! `ValueError`, so `except ValueError` keeps working for callers that do not know decodekit), which
//! `create_exception!` cannot express, so the classes are built with `type(name, bases, namespace)` when
//! the module is initialised and kept for the life of the interpreter.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use decodekit_core::CoreError;
use pyo3::exceptions::{PyException, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

struct Classes {
    base: Py<PyType>,
    invalid_input: Py<PyType>,
    grammar: Py<PyType>,
    unsupported_schema: Py<PyType>,
    vocabulary: Py<PyType>,
    corrupt_state: Py<PyType>,
    resource_limit: Py<PyType>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

fn make_class<'py>(
    py: Python<'py>,
    name: &str,
    bases: &[Bound<'py, PyType>],
    doc: &str,
) -> PyResult<Bound<'py, PyType>> {
    let namespace = PyDict::new(py);
    namespace.set_item("__module__", "decodekit._core")?;
    namespace.set_item("__doc__", doc)?;
    let bases = PyTuple::new(py, bases)?;
    let class = py.get_type::<PyType>().call1((name, bases, namespace))?;
    Ok(class.cast_into::<PyType>()?)
}

/// Create the exception classes and add them to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let value_error = py.get_type::<PyValueError>();
    let base = make_class(
        py,
        "DecodekitError",
        &[py.get_type::<PyException>()],
        "Base class of every decodekit error.",
    )?;
    let invalid_input = make_class(
        py,
        "InvalidInputError",
        &[base.clone(), value_error.clone()],
        "A bad argument: wrong shape or dtype, out-of-range value, NaN, a malformed tree.",
    )?;
    let grammar = make_class(
        py,
        "GrammarError",
        &[base.clone(), value_error.clone()],
        "A grammar that does not parse or compile; syntax errors carry a line/column or JSON pointer.",
    )?;
    let unsupported_schema = make_class(
        py,
        "UnsupportedSchemaError",
        std::slice::from_ref(&grammar),
        "A JSON-schema keyword that decodekit does not enforce (never ignored silently).",
    )?;
    let vocabulary = make_class(
        py,
        "VocabularyError",
        &[base.clone(), value_error.clone()],
        "A tokenizer vocabulary that is inconsistent or unusable.",
    )?;
    let corrupt_state = make_class(
        py,
        "CorruptStateError",
        &[base.clone(), value_error],
        "Saved bytes that fail the magic, version or checksum check.",
    )?;
    let resource_limit = make_class(
        py,
        "ResourceLimitError",
        std::slice::from_ref(&base),
        "Work that would exceed an explicit size or compile budget.",
    )?;
    let kernel_unavailable = make_class(
        py,
        "KernelUnavailableError",
        &[base.clone(), py.get_type::<PyRuntimeError>()],
        "A GPU kernel cannot run: no GPU, no CuPy, or the kernel failed to compile.",
    )?;
    for class in [
        &base,
        &invalid_input,
        &grammar,
        &unsupported_schema,
        &vocabulary,
        &corrupt_state,
        &resource_limit,
        &kernel_unavailable,
    ] {
        m.add(class.name()?, class)?;
    }
    // A second module initialisation (sub-interpreters, reloads) keeps the first set of classes.
    let _ = CLASSES.get_or_init(py, || Classes {
        base: base.unbind(),
        invalid_input: invalid_input.unbind(),
        grammar: grammar.unbind(),
        unsupported_schema: unsupported_schema.unbind(),
        vocabulary: vocabulary.unbind(),
        corrupt_state: corrupt_state.unbind(),
        resource_limit: resource_limit.unbind(),
    });
    Ok(())
}

fn raise(py: Python<'_>, pick: impl Fn(&Classes) -> &Py<PyType>, message: String) -> PyErr {
    match CLASSES.get(py) {
        Some(classes) => PyErr::from_type(pick(classes).bind(py).clone(), message),
        // Unreachable once the module is imported; fall back to the closest builtin rather than panic.
        None => PyValueError::new_err(message),
    }
}

/// Convert a core error into the matching Python exception (the one exhaustive mapping).
pub fn to_pyerr(error: CoreError) -> PyErr {
    Python::attach(|py| match error {
        CoreError::InvalidInput(m) => raise(py, |c| &c.invalid_input, m),
        CoreError::Grammar(m) => raise(py, |c| &c.grammar, m),
        CoreError::UnsupportedSchema(m) => raise(py, |c| &c.unsupported_schema, m),
        CoreError::Vocabulary(m) => raise(py, |c| &c.vocabulary, m),
        CoreError::CorruptState(m) => raise(py, |c| &c.corrupt_state, m),
        CoreError::ResourceLimit(m) => raise(py, |c| &c.resource_limit, m),
        e @ CoreError::Internal(_) => raise(py, |c| &c.base, e.to_string()),
    })
}

/// An `InvalidInputError` raised by the binding's own argument checks.
pub fn invalid_input(message: impl Into<String>) -> PyErr {
    to_pyerr(CoreError::InvalidInput(message.into()))
}

/// Lift a core result into a Python result.
pub fn core<T>(result: decodekit_core::Result<T>) -> PyResult<T> {
    result.map_err(to_pyerr)
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// Run `work` with the GIL released (the caller has already validated its arguments) and turn a core
/// error into its Python exception and a panic into `DecodekitError` instead of a crash.
pub fn detached<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> decodekit_core::Result<T> + Send,
{
    match py.detach(|| catch_unwind(AssertUnwindSafe(work))) {
        Ok(result) => core(result),
        Err(payload) => Err(to_pyerr(CoreError::Internal(format!(
            "a Rust panic: {}",
            panic_message(payload.as_ref())
        )))),
    }
}
