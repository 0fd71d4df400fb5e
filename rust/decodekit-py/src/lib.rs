//! `decodekit._core`: the extension module built with `PyO3`. Argument checking, numpy conversion, GIL
//! release and error mapping only; every algorithm lives in `decodekit-core`.

// PyO3 extracts #[pyfunction] arguments into owned values (`Vec`, `PyRef`), so passing them by value
// is how the bindings are written, not a missed borrow.
#![allow(clippy::needless_pass_by_value)]

mod arrays;
mod draft;
mod errors;
mod grammar;
mod kernels;
mod quant;
mod rng;
mod sampling;
mod tree;
mod verify;

use pyo3::prelude::*;

/// Resize the library's thread pool used by batched calls (``0`` restores the default: the
/// ``DECODEKIT_NUM_THREADS`` environment variable, else the number of cores). Results never depend on it.
#[pyfunction]
fn set_num_threads(n: i64) -> PyResult<()> {
    errors::core(decodekit_core::parallel::set_num_threads(arrays::count(n, "n")?))
}

/// The number of worker threads batched calls run on.
#[pyfunction]
fn get_num_threads() -> PyResult<usize> {
    errors::core(decodekit_core::parallel::num_threads())
}

/// Raise a Rust panic inside a detached call (tests use it to prove panics become `DecodekitError`).
#[pyfunction]
fn _panic_for_testing(py: Python<'_>) -> PyResult<()> {
    errors::detached(py, || -> decodekit_core::Result<()> {
        panic!("deliberate test panic")
    })
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<rng::PyRng>()?;
    m.add_function(wrap_pyfunction!(_panic_for_testing, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::softmax, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::log_softmax, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::top_k_mask, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::top_p_mask, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::min_p_mask, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::sampling_mask, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::sample, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::gumbel_top_k, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::stochastic_beam_search_step, m)?)?;
    m.add_class::<tree::PyDraftTree>()?;
    m.add_class::<draft::PyPromptLookup>()?;
    m.add_class::<draft::PyNGramStore>()?;
    m.add_class::<draft::PyTrigramTable>()?;
    m.add_class::<draft::PyTokenRecycler>()?;
    m.add_class::<tree::PyTreeTemplate>()?;
    m.add_class::<tree::PyTreeBatch>()?;
    m.add_class::<verify::PyVerification>()?;
    m.add_class::<verify::PyBatchVerification>()?;
    m.add_function(wrap_pyfunction!(verify::verify_greedy, m)?)?;
    m.add_function(wrap_pyfunction!(verify::verify_tree, m)?)?;
    m.add_function(wrap_pyfunction!(verify::verify_chain, m)?)?;
    m.add_function(wrap_pyfunction!(verify::verify_chain_batch, m)?)?;
    m.add_function(wrap_pyfunction!(verify::verify_typical, m)?)?;
    m.add_function(wrap_pyfunction!(kernels::_kernel_source, m)?)?;
    m.add_function(wrap_pyfunction!(quant::_quantize, m)?)?;
    m.add_function(wrap_pyfunction!(quant::_pack_codes, m)?)?;
    m.add_function(wrap_pyfunction!(quant::_unpack_codes, m)?)?;
    m.add_class::<grammar::PyVocabulary>()?;
    m.add_class::<grammar::PyGrammar>()?;
    m.add_class::<grammar::PyCompiledGrammar>()?;
    m.add_class::<grammar::PyMatcher>()?;
    m.add_function(wrap_pyfunction!(grammar::fill_next_token_bitmask_batch, m)?)?;
    m.add_function(wrap_pyfunction!(grammar::apply_token_bitmask, m)?)?;
    Ok(())
}
