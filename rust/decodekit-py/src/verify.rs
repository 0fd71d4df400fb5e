//! Bindings of `decodekit_core::verify`.

use decodekit_core::sampling::Rows;
use decodekit_core::tree::DraftTree;
use decodekit_core::verify::{self, TreeProbs, Validation, Verification};
use numpy::{IntoPyArray, PyArray1, PyArray2};
use pyo3::prelude::*;

use crate::arrays::{float_matrix, int_vector, FloatMatrix};
use crate::errors::{core, detached, invalid_input};
use crate::rng::{seeds_arg, PyRng};
use crate::tree::PyDraftTree;

/// The outcome of verifying one draft tree (or chain).
///
/// * ``accepted_nodes`` ``int32[a + 1]``: the accepted root-to-node path, root first;
/// * ``tokens`` ``int32[a + 1]``: the emitted tokens, the ``a`` accepted draft tokens then one token
///   drawn by the target (bonus after an accepted leaf, or recovered after a rejection);
/// * ``kv_keep`` ``int32[a + 1]``: the tree's KV-cache slots to keep (the accepted nodes);
/// * ``num_accepted``: ``a``, the number of accepted draft tokens.
#[pyclass(frozen, module = "decodekit._core", name = "Verification")]
pub struct PyVerification {
    inner: Verification,
}

#[pymethods]
impl PyVerification {
    #[getter]
    fn accepted_nodes<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i32>> {
        self.inner.accepted_nodes.clone().into_pyarray(py)
    }

    #[getter]
    fn tokens<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i32>> {
        self.inner.tokens.clone().into_pyarray(py)
    }

    #[getter]
    fn kv_keep<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i32>> {
        self.inner.accepted_nodes.clone().into_pyarray(py)
    }

    #[getter]
    fn num_accepted(&self) -> usize {
        self.inner.accepted_nodes.len() - 1
    }

    fn __repr__(&self) -> String {
        format!(
            "Verification(accepted_nodes={:?}, tokens={:?})",
            self.inner.accepted_nodes, self.inner.tokens
        )
    }
}

/// The outcomes of verifying a ragged batch of trees: the per-tree arrays of :class:`Verification`
/// concatenated, with ``cu_accepted`` / ``cu_tokens`` offsets (``int32[B + 1]``). ``kv_keep`` holds
/// node indices relative to each tree. Indexing gives one tree's :class:`Verification`.
#[pyclass(frozen, module = "decodekit._core", name = "BatchVerification")]
pub struct PyBatchVerification {
    items: Vec<Verification>,
}

fn concat<'py, 'a>(
    py: Python<'py>,
    parts: impl Iterator<Item = &'a [i32]>,
) -> (Bound<'py, PyArray1<i32>>, Bound<'py, PyArray1<i32>>) {
    let mut flat = Vec::new();
    let mut offsets = vec![0i32];
    for p in parts {
        flat.extend_from_slice(p);
        offsets.push(flat.len() as i32);
    }
    (flat.into_pyarray(py), offsets.into_pyarray(py))
}

#[pymethods]
impl PyBatchVerification {
    #[getter]
    fn accepted_nodes<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyArray1<i32>> {
        concat(
            slf.py(),
            slf.get().items.iter().map(|v| v.accepted_nodes.as_slice()),
        )
        .0
    }

    #[getter]
    fn cu_accepted<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyArray1<i32>> {
        concat(
            slf.py(),
            slf.get().items.iter().map(|v| v.accepted_nodes.as_slice()),
        )
        .1
    }

    #[getter]
    fn kv_keep<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyArray1<i32>> {
        Self::accepted_nodes(slf)
    }

    #[getter]
    fn tokens<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyArray1<i32>> {
        concat(slf.py(), slf.get().items.iter().map(|v| v.tokens.as_slice())).0
    }

    #[getter]
    fn cu_tokens<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyArray1<i32>> {
        concat(slf.py(), slf.get().items.iter().map(|v| v.tokens.as_slice())).1
    }

    /// ``int32[B]``: accepted draft tokens per tree.
    #[getter]
    fn num_accepted<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i32>> {
        self.items
            .iter()
            .map(|v| v.accepted_nodes.len() as i32 - 1)
            .collect::<Vec<_>>()
            .into_pyarray(py)
    }

    fn __len__(&self) -> usize {
        self.items.len()
    }

    fn __getitem__(&self, index: isize) -> PyResult<PyVerification> {
        let len = self.items.len() as isize;
        let i = if index < 0 { index + len } else { index };
        if i < 0 || i >= len {
            return Err(pyo3::exceptions::PyIndexError::new_err(format!(
                "index {index} out of range for {len} trees"
            )));
        }
        Ok(PyVerification {
            inner: self.items[i as usize].clone(),
        })
    }

    fn __repr__(&self) -> String {
        format!("BatchVerification(trees={})", self.items.len())
    }
}

/// `(tokens [B, max_k + 1] padded with -1, num_tokens [B])`.
type PaddedTokens<'py> = (Bound<'py, PyArray2<i32>>, Bound<'py, PyArray1<i32>>);

/// One tree, or a list of trees (a ragged batch).
enum Trees<'py> {
    One(PyRef<'py, PyDraftTree>),
    Many(Vec<PyRef<'py, PyDraftTree>>),
}

fn trees_arg<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Trees<'py>> {
    if let Ok(tree) = obj.extract::<PyRef<'py, PyDraftTree>>() {
        return Ok(Trees::One(tree));
    }
    obj.extract::<Vec<PyRef<'py, PyDraftTree>>>()
        .map(Trees::Many)
        .map_err(|_| invalid_input("tree must be a DraftTree or a list of DraftTrees"))
}

fn validation(validate: bool) -> Validation {
    if validate {
        Validation::Full
    } else {
        Validation::ReadValues
    }
}

fn rows<'a>(m: &'a FloatMatrix<'_>, name: &'a str) -> decodekit_core::Result<Rows<'a>> {
    Rows::new(m.as_slice(), m.rows, m.cols, name)
}

/// Borrow the target and optional draft matrices as core rows (outside the GIL-free section: the numpy
/// borrows themselves may not cross threads, the slices may).
fn both_rows<'a>(
    target: &'a FloatMatrix<'_>,
    draft: Option<&'a FloatMatrix<'_>>,
) -> PyResult<(Rows<'a>, Option<Rows<'a>>)> {
    Ok((
        core(rows(target, "target_probs"))?,
        draft.map(|d| core(rows(d, "draft_probs"))).transpose()?,
    ))
}

fn probs_2d<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<FloatMatrix<'py>> {
    let m = float_matrix(obj, name)?;
    if m.one_d {
        return Err(invalid_input(format!("{name} must be 2-D [nodes, vocab]")));
    }
    Ok(m)
}

/// Greedy verification. ``target_tokens`` (int ``[n]``) is the target's argmax after each node; the
/// longest root path whose every node equals its parent's target token is accepted, then the target
/// token after the last accepted node is emitted. The output equals plain greedy decoding. With a list of
/// trees, ``target_tokens`` holds all trees' nodes concatenated and a :class:`BatchVerification` returns.
#[pyfunction]
pub fn verify_greedy(
    py: Python<'_>,
    tree: &Bound<'_, PyAny>,
    target_tokens: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    let targets = int_vector(target_tokens, "target_tokens")?;
    match trees_arg(tree)? {
        Trees::One(t) => {
            let inner = std::sync::Arc::clone(&t.inner);
            let v = detached(py, || verify::verify_greedy(&inner, &targets))?;
            Ok(Py::new(py, PyVerification { inner: v })?.into_any())
        }
        Trees::Many(ts) => {
            let arcs: Vec<_> = ts.iter().map(|t| std::sync::Arc::clone(&t.inner)).collect();
            let items = detached(py, || {
                let refs: Vec<&DraftTree> = arcs.iter().map(AsRef::as_ref).collect();
                verify::verify_greedy_batch(&refs, &targets)
            })?;
            Ok(Py::new(py, PyBatchVerification { items })?.into_any())
        }
    }
}

/// Lossless verification of a draft tree by recursive rejection sampling (SpecInfer, Miao et al. 2024;
/// Recursive Speculative Decoding, Jeon et al. 2024; for one child per node this is the speculative
/// sampling of Leviathan et al. 2023 and Chen et al. 2023).
///
/// ``target_probs`` float32 ``[n, V]``: the target distribution after each node. ``draft_probs``
/// (``[n, V]`` or ``None``): the draft distribution each node's children were drawn from, without
/// replacement (Gumbel-top-k / stochastic beam search drafts); ``None`` for deterministic drafts
/// (n-gram, token recycling, argmax heads).
///
/// At node ``u`` the children are tried in node order. Deterministic drafts: child ``x`` is accepted with
/// probability ``p'(x)``, ``p'`` being ``target_probs[u]`` with the already rejected siblings removed and
/// renormalized. Stochastic drafts: child ``x_i`` is accepted with probability
/// ``min(1, p_i(x_i) / q_i(x_i))`` where ``p_1 = target_probs[u]``, ``q_1 = draft_probs[u]``; after a
/// rejection ``p_{i+1} = norm(max(0, p_i - q_i))`` and ``q_{i+1}`` is ``q_i`` without ``x_i``,
/// renormalized. When every child is rejected the recovered token is drawn from the final residual; after
/// an accepted leaf the bonus token is drawn from its target row. The emitted tokens are then distributed
/// exactly as sampling from the target model, whatever the drafts.
///
/// ``validate=True`` checks every row read in full (finite, ``>= 0``, sums to 1 within 1e-3).
/// ``validate=False`` trusts rows to sum to 1 and checks only the values it reads: the final token is then
/// drawn by scanning its row only up to the sampled position, instead of one full pass per visited node
/// (a row holding too little mass for the draw is still caught). Randomness: ``rng`` or ``seeds`` (one per tree). A list of trees is a
/// ragged batch whose probability rows are concatenated in tree order (GIL released, trees in parallel).
#[pyfunction]
#[pyo3(signature = (tree, target_probs, draft_probs = None, *, rng = None, seeds = None, validate = true))]
#[allow(clippy::too_many_arguments)]
pub fn verify_tree(
    py: Python<'_>,
    tree: &Bound<'_, PyAny>,
    target_probs: &Bound<'_, PyAny>,
    draft_probs: Option<&Bound<'_, PyAny>>,
    rng: Option<&Bound<'_, PyRng>>,
    seeds: Option<&Bound<'_, PyAny>>,
    validate: bool,
) -> PyResult<Py<PyAny>> {
    let target = probs_2d(target_probs, "target_probs")?;
    let draft = draft_probs.map(|d| probs_2d(d, "draft_probs")).transpose()?;
    let mode = validation(validate);
    let (target_rows, draft_rows) = both_rows(&target, draft.as_ref())?;
    match trees_arg(tree)? {
        Trees::One(t) => {
            let seed = seeds_arg(rng, seeds, 1, true, true, "verify_tree")?[0];
            let inner = std::sync::Arc::clone(&t.inner);
            let probs = TreeProbs {
                target: target_rows,
                draft: draft_rows,
            };
            let v = detached(py, || verify::verify_tree(&inner, &probs, mode, seed))?;
            Ok(Py::new(py, PyVerification { inner: v })?.into_any())
        }
        Trees::Many(ts) => {
            let seeds = seeds_arg(rng, seeds, ts.len(), false, true, "verify_tree")?;
            let arcs: Vec<_> = ts.iter().map(|t| std::sync::Arc::clone(&t.inner)).collect();
            let items = detached(py, || {
                let refs: Vec<&DraftTree> = arcs.iter().map(AsRef::as_ref).collect();
                verify::verify_tree_batch(&refs, target_rows, draft_rows, mode, &seeds)
            })?;
            Ok(Py::new(py, PyBatchVerification { items })?.into_any())
        }
    }
}

/// Standard speculative sampling of one draft chain (Leviathan et al. 2023; Chen et al. 2023):
/// ``draft_tokens`` int ``[k]``, ``target_probs`` float32 ``[k + 1, V]`` (row ``i``: the target after
/// ``i`` draft tokens), ``draft_probs`` ``[k, V]`` or ``None`` for a deterministic draft (q a point mass).
/// Token ``x_i`` is accepted with probability ``min(1, p_i(x_i) / q_i(x_i))``; at the first rejection
/// the token is redrawn from ``norm(max(0, p_i - q_i))``; if all are accepted a bonus token is drawn from
/// the last row. Returns a :class:`Verification` (node ``i`` is draft token ``i - 1``).
#[pyfunction]
#[pyo3(signature = (draft_tokens, target_probs, draft_probs = None, *, rng = None, seeds = None, validate = true))]
pub fn verify_chain(
    py: Python<'_>,
    draft_tokens: &Bound<'_, PyAny>,
    target_probs: &Bound<'_, PyAny>,
    draft_probs: Option<&Bound<'_, PyAny>>,
    rng: Option<&Bound<'_, PyRng>>,
    seeds: Option<&Bound<'_, PyAny>>,
    validate: bool,
) -> PyResult<PyVerification> {
    let tokens = int_vector(draft_tokens, "draft_tokens")?;
    let target = probs_2d(target_probs, "target_probs")?;
    let draft = draft_probs.map(|d| probs_2d(d, "draft_probs")).transpose()?;
    let seed = seeds_arg(rng, seeds, 1, true, true, "verify_chain")?[0];
    let k = tokens.len() as i32;
    let (target_rows, draft_rows) = both_rows(&target, draft.as_ref())?;
    let mut items = detached(py, || {
        verify::verify_chain_batch(
            &tokens,
            &[0, k],
            target_rows,
            draft_rows,
            validation(validate),
            &[seed],
        )
    })?;
    Ok(PyVerification {
        inner: items.remove(0),
    })
}

/// Speculative sampling of a batch of chains in vLLM's ragged layout: request ``b`` drafted
/// ``draft_tokens[cu[b]:cu[b+1]]`` (``cu = cu_num_draft_tokens``, int ``[B + 1]``), its target rows are
/// ``target_probs[cu[b] + b : cu[b+1] + b + 1]`` (one per draft token plus the bonus row) and its draft
/// rows ``draft_probs[cu[b]:cu[b+1]]``. Returns ``(tokens int32[B, max_k + 1], num_tokens int32[B])``
/// with rows padded by ``-1``.
#[pyfunction]
#[pyo3(signature = (draft_tokens, cu_num_draft_tokens, target_probs, draft_probs = None, *, rng = None, seeds = None, validate = true))]
#[allow(clippy::too_many_arguments)]
pub fn verify_chain_batch<'py>(
    py: Python<'py>,
    draft_tokens: &Bound<'py, PyAny>,
    cu_num_draft_tokens: &Bound<'py, PyAny>,
    target_probs: &Bound<'py, PyAny>,
    draft_probs: Option<&Bound<'py, PyAny>>,
    rng: Option<&Bound<'py, PyRng>>,
    seeds: Option<&Bound<'py, PyAny>>,
    validate: bool,
) -> PyResult<PaddedTokens<'py>> {
    let tokens = int_vector(draft_tokens, "draft_tokens")?;
    let cu = int_vector(cu_num_draft_tokens, "cu_num_draft_tokens")?;
    let target = probs_2d(target_probs, "target_probs")?;
    let draft = draft_probs.map(|d| probs_2d(d, "draft_probs")).transpose()?;
    let batch = cu.len().saturating_sub(1);
    let seeds = seeds_arg(rng, seeds, batch, false, true, "verify_chain_batch")?;
    let (target_rows, draft_rows) = both_rows(&target, draft.as_ref())?;
    let items = detached(py, || {
        verify::verify_chain_batch(
            &tokens,
            &cu,
            target_rows,
            draft_rows,
            validation(validate),
            &seeds,
        )
    })?;
    let width = cu
        .windows(2)
        .map(|w| (w[1] - w[0]) as usize + 1)
        .max()
        .unwrap_or(1);
    let mut padded = numpy::ndarray::Array2::<i32>::from_elem((batch, width), -1);
    let mut counts = Vec::with_capacity(batch);
    for (b, v) in items.iter().enumerate() {
        for (j, &t) in v.tokens.iter().enumerate() {
            padded[[b, j]] = t;
        }
        counts.push(v.tokens.len() as i32);
    }
    Ok((padded.into_pyarray(py), counts.into_pyarray(py)))
}

/// Medusa's typical acceptance (Cai et al. 2024). **Lossy**: the output is *not* distributed as the
/// target model's sampling. A child ``x`` of node ``u`` is accepted when ``target_probs[u, x] >
/// min(epsilon, alpha * exp(-entropy(target_probs[u])))``; the longest accepted root path wins (the first
/// in node order among equals) and the final token is the target's argmax after it.
#[pyfunction]
#[pyo3(signature = (tree, target_probs, *, epsilon = 0.09, alpha = 0.3))]
pub fn verify_typical(
    py: Python<'_>,
    tree: PyRef<'_, PyDraftTree>,
    target_probs: &Bound<'_, PyAny>,
    epsilon: f64,
    alpha: f64,
) -> PyResult<PyVerification> {
    let target = probs_2d(target_probs, "target_probs")?;
    let inner = std::sync::Arc::clone(&tree.inner);
    let target_rows = core(rows(&target, "target_probs"))?;
    let v = detached(py, || verify::verify_typical(&inner, target_rows, epsilon, alpha))?;
    Ok(PyVerification { inner: v })
}
