//! Bindings of `decodekit_core::draft`.

use std::sync::Arc;

use decodekit_core::draft::ngram::{PromptLookup, PromptLookupConfig};
use decodekit_core::draft::recycling::{token_recycling_template, TokenRecycler};
use decodekit_core::draft::store::NGramStore;
use decodekit_core::draft::trigram::{SearchParams, TrigramTable};
use numpy::{IntoPyArray, PyArray1, PyArray2};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::PyClass;

use crate::arrays::{int_matrix, int_vector, int_vectors};
use crate::errors::{core, detached};
use crate::rng::{seeds_arg, PyRng};
use crate::tree::{PyDraftTree, PyTreeTemplate};

/// `__reduce__` of a saved table: `(type(self).from_bytes, (bytes,))`, so pickling reuses the checked format.
fn pickle_via_from_bytes<'py, T: PyClass>(
    slf: &Bound<'py, T>,
    bytes: Bound<'py, PyBytes>,
) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
    Ok((slf.as_any().get_type().getattr("from_bytes")?, (bytes,)))
}

/// Incremental prompt lookup over one sequence (one object per sequence; not thread-safe).
///
/// ``extend(tokens)`` appends prompt or generated tokens in amortized ``O(max_n)`` each, ``rollback(n)``
/// removes the last ``n``, and ``propose()`` returns a :class:`DraftTree` rooted at the last token.
///
/// Matching (vLLM's n-gram proposer semantics): the match length ``L`` is the largest ``n`` in
/// ``min_n..max_n`` such that the last ``n`` tokens occurred earlier, ending before the last token
/// (overlaps allowed); the *earliest* such occurrence wins (the most recent one with ``latest=True``)
/// and the proposal is the up to ``max_depth`` tokens that followed it; ``match_length()`` tells which
/// ``L`` the next proposal follows. With ``max_nodes > max_depth`` the continuations of the (up to 64) most
/// recent occurrences are merged into a tree of at most ``max_nodes`` draft nodes, ranked by how many
/// occurrences share a node, then by recency. When nothing matches, ``store`` (an :class:`NGramStore`) is
/// consulted with the last tokens as context if given; otherwise the tree is just the root.
#[pyclass(module = "decodekit._core", name = "PromptLookup")]
pub struct PyPromptLookup {
    inner: PromptLookup,
}

#[pymethods]
impl PyPromptLookup {
    #[new]
    #[pyo3(signature = (min_n = 1, max_n = 4, max_depth = 8, max_nodes = 8, *, vocab_size = None, store = None, latest = false))]
    fn new(
        min_n: usize,
        max_n: usize,
        max_depth: usize,
        max_nodes: usize,
        vocab_size: Option<u32>,
        store: Option<PyRef<'_, PyNGramStore>>,
        latest: bool,
    ) -> PyResult<Self> {
        let config = PromptLookupConfig {
            min_n,
            max_n,
            max_depth,
            max_nodes,
            latest,
        };
        let mut inner = core(PromptLookup::new(config, vocab_size))?;
        inner.set_fallback(store.map(|s| Arc::clone(&s.inner)));
        Ok(Self { inner })
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

    /// The length ``n`` of the n-gram that ``propose`` would follow now (``min_n <= n <= max_n``), or 0
    /// when the sequence has no match (the proposal then comes from the store, if one was given).
    fn match_length(&self) -> usize {
        self.inner.match_length()
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
            "PromptLookup(min_n={}, max_n={}, max_depth={}, max_nodes={}, latest={}, tokens={})",
            c.min_n,
            c.max_n,
            c.max_depth,
            c.max_nodes,
            if c.latest { "True" } else { "False" },
            self.inner.tokens().len()
        )
    }
}

/// A thread-safe n-gram continuation store shared across requests (SuffixDecoding / SGLang n-gram cache
/// style). ``add(tokens)`` counts, for every context of 1..``max_n`` tokens, the token that followed;
/// ``propose(context, max_nodes, max_depth)`` grows a tree best-first by path probability, each node
/// predicted from the longest stored context ending at it.
///
/// Memory: at most ``capacity_tokens`` (context, next token) entries. When an ``add`` exceeds that, every
/// count is halved (rounding down) and zero counts are dropped, repeatedly until it fits, so old and rare
/// continuations go first. ``to_bytes``/``from_bytes`` (and pickle) round-trip exactly; damaged bytes raise
/// :class:`CorruptStateError`.
#[pyclass(frozen, module = "decodekit._core", name = "NGramStore")]
pub struct PyNGramStore {
    inner: Arc<NGramStore>,
}

#[pymethods]
impl PyNGramStore {
    #[new]
    #[pyo3(signature = (max_n = 4, capacity_tokens = 1_000_000))]
    fn new(max_n: usize, capacity_tokens: usize) -> PyResult<Self> {
        Ok(Self {
            inner: Arc::new(core(NGramStore::new(max_n, capacity_tokens))?),
        })
    }

    /// Count the continuations in ``tokens`` (int ``[m]``), e.g. a finished output.
    fn add(&self, py: Python<'_>, tokens: &Bound<'_, PyAny>) -> PyResult<()> {
        let tokens = int_vector(tokens, "tokens")?;
        detached(py, || self.inner.add(&tokens))
    }

    /// A draft tree after ``context`` (int ``[m]``, at least one token; its last token is the root) with at
    /// most ``max_nodes`` draft nodes and depth ``max_depth``.
    #[pyo3(signature = (context, max_nodes = 8, max_depth = 8))]
    fn propose(
        &self,
        context: &Bound<'_, PyAny>,
        max_nodes: usize,
        max_depth: usize,
    ) -> PyResult<PyDraftTree> {
        let context = int_vector(context, "context")?;
        Ok(PyDraftTree {
            inner: Arc::new(core(self.inner.propose(&context, max_nodes, max_depth))?),
        })
    }

    /// The longest context kept.
    #[getter]
    fn max_n(&self) -> usize {
        self.inner.max_n()
    }

    /// The entry budget.
    #[getter]
    fn capacity_tokens(&self) -> usize {
        self.inner.capacity()
    }

    /// Serialize (magic, version, CRC-32 checksum); equal stores give equal bytes.
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &core(self.inner.to_bytes())?))
    }

    /// Load bytes from :meth:`to_bytes`; damaged or truncated bytes raise :class:`CorruptStateError`.
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        Ok(Self {
            inner: Arc::new(core(NGramStore::from_bytes(data))?),
        })
    }

    fn __len__(&self) -> PyResult<usize> {
        core(self.inner.len())
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        pickle_via_from_bytes(slf, slf.get().to_bytes(slf.py())?)
    }

    fn __repr__(&self) -> String {
        format!(
            "NGramStore(max_n={}, capacity_tokens={}, entries={})",
            self.inner.max_n(),
            self.inner.capacity(),
            self.inner.len().unwrap_or(0)
        )
    }
}

/// ADED's adaptive tri-gram table with Monte-Carlo tree search drafts (Liu et al., "Adaptive
/// Draft-Verification for Efficient Large Language Model Decoding").
///
/// ``TrigramTable.from_corpus(token_arrays, top_k=12)`` keeps, for every token pair, the ``top_k`` likeliest
/// next tokens with their corpus probabilities. ``adapt(tokens)`` applies ADED's online rule: each trigram
/// seen adds 0.04 to its weight, capped at 3.0 (a new continuation enters at 0.04, replacing the weakest
/// only if that weighs less). ``propose((a, b), ...)`` runs Monte-Carlo tree search with the pUCT rule
/// ``Q + c_puct * P * sqrt(N) / (1 + n)``; each iteration expands a leaf, rolls out ``rollout_depth``
/// sampled tokens and backs up their expected accepted fraction; the ``max_nodes`` most visited nodes
/// form the returned :class:`DraftTree` (root: ``b``). Deterministic for a given seed. Not thread-safe
/// while adapting. ``to_bytes``/``from_bytes`` and pickle round-trip exactly; damaged bytes raise
/// :class:`CorruptStateError`.
#[pyclass(module = "decodekit._core", name = "TrigramTable")]
pub struct PyTrigramTable {
    inner: TrigramTable,
}

#[pymethods]
impl PyTrigramTable {
    /// Build from a corpus: a sequence of int token arrays.
    #[staticmethod]
    #[pyo3(signature = (token_arrays, top_k = 12, *, vocab_size = None))]
    fn from_corpus(
        py: Python<'_>,
        token_arrays: &Bound<'_, PyAny>,
        top_k: usize,
        vocab_size: Option<u32>,
    ) -> PyResult<Self> {
        let corpus = int_vectors(token_arrays, "token_arrays")?;
        let inner = detached(py, || TrigramTable::from_corpus(&corpus, top_k, vocab_size))?;
        Ok(Self { inner })
    }

    /// Apply ADED's online adaptation to the trigrams of ``tokens`` (int ``[m]``).
    fn adapt(&mut self, tokens: &Bound<'_, PyAny>) -> PyResult<()> {
        core(self.inner.adapt(&int_vector(tokens, "tokens")?))
    }

    /// A draft tree after a context ending in ``last_two_tokens = (a, b)``, by Monte-Carlo tree search.
    /// Pass ``rng`` (one seed is drawn from it) or ``seeds`` (an int).
    #[pyo3(signature = (last_two_tokens, *, max_nodes = 64, iterations = 150, rollout_depth = 4, c_puct = 1.0, rng = None, seeds = None))]
    #[allow(clippy::too_many_arguments)]
    fn propose(
        &self,
        py: Python<'_>,
        last_two_tokens: &Bound<'_, PyAny>,
        max_nodes: usize,
        iterations: usize,
        rollout_depth: usize,
        c_puct: f32,
        rng: Option<&Bound<'_, PyRng>>,
        seeds: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyDraftTree> {
        let pair = int_vector(last_two_tokens, "last_two_tokens")?;
        let [a, b] = pair[..] else {
            return Err(crate::errors::invalid_input(format!(
                "last_two_tokens must hold exactly two tokens, got {}",
                pair.len()
            )));
        };
        let seed = seeds_arg(rng, seeds, 1, true, true, "TrigramTable.propose")?[0];
        let params = SearchParams {
            max_nodes,
            iterations,
            rollout_depth,
            c_puct,
        };
        let tree = detached(py, || self.inner.propose(a, b, &params, seed))?;
        Ok(PyDraftTree {
            inner: Arc::new(tree),
        })
    }

    /// ``(tokens int32[m], weights float32[m])``: the continuations kept after ``(a, b)``, best first.
    fn lookup<'py>(
        &self,
        py: Python<'py>,
        a: u32,
        b: u32,
    ) -> (Bound<'py, PyArray1<i32>>, Bound<'py, PyArray1<f32>>) {
        let (tokens, weights) = self.inner.lookup(a, b);
        (
            tokens
                .iter()
                .map(|&t| t as i32)
                .collect::<Vec<_>>()
                .into_pyarray(py),
            weights.to_vec().into_pyarray(py),
        )
    }

    /// Continuations kept per pair.
    #[getter]
    fn top_k(&self) -> usize {
        self.inner.top_k()
    }

    /// Number of token pairs with an entry.
    #[getter]
    fn num_pairs(&self) -> usize {
        self.inner.num_pairs()
    }

    /// Serialize (magic, version, CRC-32 checksum); equal tables give equal bytes.
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }

    /// Load bytes from :meth:`to_bytes`; damaged or truncated bytes raise :class:`CorruptStateError`.
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        Ok(Self {
            inner: core(TrigramTable::from_bytes(data))?,
        })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        pickle_via_from_bytes(slf, slf.borrow().to_bytes(slf.py()))
    }

    fn __repr__(&self) -> String {
        format!(
            "TrigramTable(top_k={}, pairs={})",
            self.inner.top_k(),
            self.inner.num_pairs()
        )
    }
}

/// Token Recycling (Luo et al., "Turning Trash into Treasure"): a ``[vocab_size, k]`` matrix of recently
/// seen top-k successors and a static draft template filled breadth-first from it.
///
/// * ``matrix``: a read-only int32 view ``[vocab_size, k]`` of the matrix (it reflects later updates);
///   row ``t`` holds the top-k next tokens most recently seen after ``t``, best first, ``-1`` for none.
/// * ``update(tokens, topk_ids)``: ``tokens`` int ``[n]`` are the nodes the target model just scored,
///   ``topk_ids`` int ``[n, k]`` their top-k next tokens (``-1`` clears a slot); row ``tokens[i]`` becomes
///   ``topk_ids[i]``, and
///   when a token appears twice the later row wins. Nothing is written unless every id is valid.
/// * ``propose(root_token)``: node ``(parent p, rank r)`` of the template takes ``matrix[token(p), r]``;
///   ``-1`` slots are dropped with their subtrees (an empty matrix yields just the root).
/// * ``propose_batch(root_tokens)``: many sequences sharing the matrix, GIL released.
/// * ``warm_start(token_arrays)``: fill rows from the bigram successor counts of a corpus.
///
/// The default template is :meth:`TreeTemplate.token_recycling`. Not thread-safe while updating.
#[pyclass(module = "decodekit._core", name = "TokenRecycler")]
pub struct PyTokenRecycler {
    inner: TokenRecycler,
}

#[pymethods]
impl PyTokenRecycler {
    #[new]
    #[pyo3(signature = (vocab_size, k = 8, template = None))]
    fn new(vocab_size: usize, k: usize, template: Option<PyRef<'_, PyTreeTemplate>>) -> PyResult<Self> {
        let template = template.map_or_else(token_recycling_template, |t| (*t.inner).clone());
        Ok(Self {
            inner: core(TokenRecycler::new(vocab_size, k, template))?,
        })
    }

    /// Recycle the top-k next tokens of the nodes just scored (see the class docstring).
    fn update(&mut self, tokens: &Bound<'_, PyAny>, topk_ids: &Bound<'_, PyAny>) -> PyResult<()> {
        let tokens = int_vector(tokens, "tokens")?;
        let (ids, rows, cols) = int_matrix(topk_ids, "topk_ids")?;
        if rows != tokens.len() || cols != self.inner.k() {
            return Err(crate::errors::invalid_input(format!(
                "topk_ids must have shape [len(tokens), k] = [{}, {}], got [{rows}, {cols}]",
                tokens.len(),
                self.inner.k()
            )));
        }
        core(self.inner.update(&tokens, &ids))
    }

    /// The template filled from the matrix, rooted at ``root_token``.
    fn propose(&self, root_token: i32) -> PyResult<PyDraftTree> {
        Ok(PyDraftTree {
            inner: Arc::new(core(self.inner.propose(root_token))?),
        })
    }

    /// One draft tree per root token, with the GIL released and sequences in parallel.
    fn propose_batch(&self, py: Python<'_>, root_tokens: &Bound<'_, PyAny>) -> PyResult<Vec<PyDraftTree>> {
        let roots = int_vector(root_tokens, "root_tokens")?;
        let inner = &self.inner;
        let trees = detached(py, || {
            decodekit_core::parallel::map_rows(roots.len(), |i| inner.propose(roots[i]))
        })?;
        Ok(trees
            .into_iter()
            .map(|t| PyDraftTree { inner: Arc::new(t) })
            .collect())
    }

    /// Fill rows from the bigram successor counts of ``token_arrays`` (a sequence of int arrays);
    /// ``overwrite=False`` fills only rows that are still empty, keeping what updates have learned.
    #[pyo3(signature = (token_arrays, *, overwrite = true))]
    fn warm_start(&mut self, token_arrays: &Bound<'_, PyAny>, overwrite: bool) -> PyResult<()> {
        let corpus = int_vectors(token_arrays, "token_arrays")?;
        core(self.inner.warm_start(&corpus, overwrite))
    }

    /// A read-only ``int32[vocab_size, k]`` view of the matrix.
    #[getter]
    fn matrix<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArray2<i32>>> {
        let this = slf.borrow();
        let shape = (this.inner.vocab_size(), this.inner.k());
        let view = numpy::ndarray::ArrayView2::from_shape(shape, this.inner.matrix())
            .map_err(|e| crate::errors::invalid_input(e.to_string()))?;
        // SAFETY: the numpy array keeps `slf` (which owns the matrix) alive as its base object. The matrix
        // is allocated once in `TokenRecycler::new` and never resized or moved, so the pointer stays valid
        // for the life of `slf`; it is only written by `update`/`warm_start`, which run with the GIL held,
        // so a reader never observes a torn write. The array is made read-only below.
        let array = unsafe { PyArray2::borrow_from_array(&view, slf.clone().into_any()) };
        let kwargs = pyo3::types::PyDict::new(slf.py());
        kwargs.set_item("write", false)?;
        array.call_method("setflags", (), Some(&kwargs))?;
        Ok(array)
    }

    /// Successors kept per token.
    #[getter]
    fn k(&self) -> usize {
        self.inner.k()
    }

    /// Rows of the matrix.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// The draft template.
    #[getter]
    fn template(&self) -> PyTreeTemplate {
        PyTreeTemplate {
            inner: Arc::new(self.inner.template().clone()),
        }
    }

    /// Serialize (magic, version, CRC-32 checksum).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }

    /// Load bytes from :meth:`to_bytes`; damaged or truncated bytes raise :class:`CorruptStateError`.
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        Ok(Self {
            inner: core(TokenRecycler::from_bytes(data))?,
        })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        pickle_via_from_bytes(slf, slf.borrow().to_bytes(slf.py()))
    }

    fn __repr__(&self) -> String {
        format!(
            "TokenRecycler(vocab_size={}, k={}, template_nodes={})",
            self.inner.vocab_size(),
            self.inner.k(),
            self.inner.template().num_nodes()
        )
    }
}
