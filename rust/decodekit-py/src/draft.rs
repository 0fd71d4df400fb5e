//! Bindings of `decodekit_core::draft`.

use std::sync::Arc;

use decodekit_core::draft::ngram::{PromptLookup, PromptLookupConfig};
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;

use crate::arrays::int_vector;
use crate::errors::{core, detached};
use crate::tree::PyDraftTree;

/// Incremental prompt lookup over one sequence (one object per sequence; not thread-safe).
///
/// ``extend(tokens)`` appends prompt or generated tokens in amortized ``O(max_n)`` each, ``rollback(n)``
/// removes the last ``n``, and ``propose()`` returns a :class:`DraftTree` rooted at the last token.
///
/// Matching (vLLM's n-gram proposer semantics): the match length ``L`` is the largest ``n`` in
/// ``min_n..max_n`` such that the last ``n`` tokens occurred earlier, ending before the last token
/// (overlaps allowed); the *earliest* such occurrence wins and the proposal is the up to ``max_depth``
/// tokens that followed it. With ``max_nodes > max_depth`` the continuations of the (up to 64) most
/// recent occurrences are merged into a tree of at most ``max_nodes`` draft nodes, ranked by how many
/// occurrences share a node, then by recency. When nothing matches the tree is just the root.
#[pyclass(module = "decodekit._core", name = "PromptLookup")]
pub struct PyPromptLookup {
    inner: PromptLookup,
}

#[pymethods]
impl PyPromptLookup {
    #[new]
    #[pyo3(signature = (min_n = 1, max_n = 4, max_depth = 8, max_nodes = 8, *, vocab_size = None))]
    fn new(
        min_n: usize,
        max_n: usize,
        max_depth: usize,
        max_nodes: usize,
        vocab_size: Option<u32>,
    ) -> PyResult<Self> {
        let config = PromptLookupConfig {
            min_n,
            max_n,
            max_depth,
            max_nodes,
        };
        Ok(Self {
            inner: core(PromptLookup::new(config, vocab_size))?,
        })
    }

    /// Append tokens (int ``[m]``): the prompt, then each step's accepted tokens.
    fn extend(&mut self, tokens: &Bound<'_, PyAny>) -> PyResult<()> {
        core(self.inner.extend(&int_vector(tokens, "tokens")?))
    }

    /// Remove the last ``count`` tokens.
    fn rollback(&mut self, count: usize) -> PyResult<()> {
        core(self.inner.rollback(count))
    }

    /// Forget every token.
    fn reset(&mut self) {
        self.inner.reset();
    }

    /// A draft tree rooted at the last token (see the class docstring for the matching rule).
    fn propose(&self) -> PyResult<PyDraftTree> {
        Ok(PyDraftTree {
            inner: Arc::new(core(self.inner.propose())?),
        })
    }

    /// ``int32[m]``: the tokens seen so far.
    #[getter]
    fn tokens<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i32>> {
        self.inner
            .tokens()
            .iter()
            .map(|&t| t as i32)
            .collect::<Vec<_>>()
            .into_pyarray(py)
    }

    /// Propose for many sequences at once, with the GIL released and sequences in parallel.
    #[staticmethod]
    fn propose_batch(py: Python<'_>, lookups: Vec<PyRef<'_, PyPromptLookup>>) -> PyResult<Vec<PyDraftTree>> {
        let inners: Vec<&PromptLookup> = lookups.iter().map(|l| &l.inner).collect();
        let trees = detached(py, || {
            decodekit_core::parallel::map_rows(inners.len(), |i| inners[i].propose())
        })?;
        Ok(trees
            .into_iter()
            .map(|t| PyDraftTree { inner: Arc::new(t) })
            .collect())
    }

    fn __len__(&self) -> usize {
        self.inner.tokens().len()
    }

    fn __repr__(&self) -> String {
        let c = self.inner.config();
        format!(
            "PromptLookup(min_n={}, max_n={}, max_depth={}, max_nodes={}, tokens={})",
            c.min_n,
            c.max_n,
            c.max_depth,
            c.max_nodes,
            self.inner.tokens().len()
        )
    }
}
