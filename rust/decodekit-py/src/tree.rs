//! Bindings of `decodekit_core::tree`: `DraftTree`, `TreeTemplate` and ragged `TreeBatch`es.

use std::sync::Arc;

use decodekit_core::tree::{DraftTree, TreeTemplate};
use numpy::{Element, IntoPyArray, PyArray1, PyArrayDyn, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};

use crate::arrays::{float64_vector, int_matrix, int_paths, int_vector, output};
use crate::errors::{core, invalid_input};

/// A tree of draft tokens in topological (normally breadth-first) order; node 0 is the root, the last
/// verified token. Immutable and safe to share across threads.
///
/// ``DraftTree(tokens, parents)`` takes two int arrays of length ``n``: ``parents[0] == -1`` and every
/// other parent is an earlier node. Buffers (``positions``, ``attention_mask``, ``packed_mask``,
/// ``retrieve_indices``, ``first_child_next_sibling``, ``attention_mask_with_prefix``) each accept
/// ``out=`` to fill a caller-allocated array.
#[pyclass(frozen, module = "decodekit._core", name = "DraftTree")]
pub struct PyDraftTree {
    pub inner: Arc<DraftTree>,
}

/// `(first_child, next_sibling)`.
type IntArrayPair<'py> = (Bound<'py, PyArrayDyn<i32>>, Bound<'py, PyArrayDyn<i32>>);

fn int_array<'py>(py: Python<'py>, values: &[i32]) -> Bound<'py, PyArray1<i32>> {
    values.to_vec().into_pyarray(py)
}

fn filled<'py, T: Element>(
    py: Python<'py>,
    out: Option<&Bound<'py, PyAny>>,
    shape: &[usize],
    fill: impl FnOnce(&mut [T]) -> decodekit_core::Result<()>,
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let array = output::<T>(py, out, shape)?;
    {
        let mut guard = array
            .try_readwrite()
            .map_err(|_| invalid_input("out is already borrowed"))?;
        core(fill(
            guard
                .as_slice_mut()
                .map_err(|_| invalid_input("out must be C-contiguous"))?,
        ))?;
    }
    Ok(array)
}

fn check_prefix(prefix_len: i64) -> PyResult<usize> {
    usize::try_from(prefix_len)
        .map_err(|_| invalid_input(format!("prefix_len must be >= 0, got {prefix_len}")))
}

#[pymethods]
impl PyDraftTree {
    #[new]
    fn new(tokens: &Bound<'_, PyAny>, parents: &Bound<'_, PyAny>) -> PyResult<Self> {
        let tree = DraftTree::new(int_vector(tokens, "tokens")?, int_vector(parents, "parents")?);
        Ok(Self {
            inner: Arc::new(core(tree)?),
        })
    }

    /// A chain: ``root_token`` followed by ``tokens``, each the child of the previous node.
    #[staticmethod]
    fn chain(root_token: i32, tokens: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self {
            inner: Arc::new(core(DraftTree::chain(
                root_token,
                &int_vector(tokens, "tokens")?,
            ))?),
        })
    }

    /// Merge token paths (Medusa style: each a sequence of token ids after the root) into one tree,
    /// sharing common prefixes, numbered breadth-first in order of first appearance.
    #[staticmethod]
    fn from_paths(root_token: i32, paths: &Bound<'_, PyAny>) -> PyResult<Self> {
        let paths = int_paths(paths, "paths")?;
        Ok(Self {
            inner: Arc::new(core(DraftTree::from_paths(root_token, &paths))?),
        })
    }

    /// ``int32[n]``: the token of each node.
    #[getter]
    fn tokens<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i32>> {
        int_array(py, self.inner.tokens())
    }

    /// ``int32[n]``: the parent of each node (``-1`` for the root).
    #[getter]
    fn parents<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i32>> {
        int_array(py, self.inner.parents())
    }

    /// ``int32[n]``: the depth of each node (the root has depth 0).
    #[getter]
    fn depth<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i32>> {
        int_array(py, self.inner.depth())
    }

    /// Number of nodes, root included.
    #[getter]
    fn num_nodes(&self) -> usize {
        self.inner.num_nodes()
    }

    /// The largest node depth.
    #[getter]
    fn max_depth(&self) -> usize {
        self.inner.max_depth()
    }

    /// ``int32[leaves]``: the nodes without children, in node order.
    #[getter]
    fn leaves<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i32>> {
        self.inner.leaves().into_pyarray(py)
    }

    /// ``int32[n]``: position ids, ``prefix_len + depth``.
    #[pyo3(signature = (prefix_len, *, out = None))]
    fn positions<'py>(
        &self,
        py: Python<'py>,
        prefix_len: i64,
        out: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<i32>>> {
        filled(py, out, &[self.inner.num_nodes()], |o| {
            self.inner.positions_into(prefix_len, o)
        })
    }

    /// ``bool[n, n]``: row ``i`` may attend column ``j`` iff ``j`` is ``i`` or one of its ancestors.
    #[pyo3(signature = (*, out = None))]
    fn attention_mask<'py>(
        &self,
        py: Python<'py>,
        out: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<bool>>> {
        let n = self.inner.num_nodes();
        filled(py, out, &[n, n], |o| self.inner.attention_mask_into(o))
    }

    /// ``int32[n, ceil(n/32)]``: the ancestor mask bit-packed (bit ``j % 32`` of word ``j // 32``,
    /// little-endian), TensorRT-LLM's speculative-decoding layout.
    #[pyo3(signature = (*, out = None))]
    fn packed_mask<'py>(
        &self,
        py: Python<'py>,
        out: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<i32>>> {
        let shape = [self.inner.num_nodes(), self.inner.packed_width()];
        filled(py, out, &shape, |o| self.inner.packed_mask_into(o))
    }

    /// ``int32[leaves, max_depth + 1]``: the node indices of each root-to-leaf path, one row per leaf in
    /// node order, padded with ``-1`` (Medusa's ``retrieve_indices``).
    #[pyo3(signature = (*, out = None))]
    fn retrieve_indices<'py>(
        &self,
        py: Python<'py>,
        out: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<i32>>> {
        let shape = [self.inner.leaves().len(), self.inner.max_depth() + 1];
        filled(py, out, &shape, |o| self.inner.retrieve_indices_into(o))
    }

    /// ``(first_child int32[n], next_sibling int32[n])`` with ``-1`` for none (SGLang's tree layout).
    /// ``out`` may be a pair of arrays to fill.
    #[pyo3(signature = (*, out = None))]
    fn first_child_next_sibling<'py>(
        &self,
        py: Python<'py>,
        out: Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
    ) -> PyResult<IntArrayPair<'py>> {
        let n = self.inner.num_nodes();
        let (a, b) = match &out {
            Some((a, b)) => (Some(a), Some(b)),
            None => (None, None),
        };
        let first = output::<i32>(py, a, &[n])?;
        let next = output::<i32>(py, b, &[n])?;
        {
            let mut f = first
                .try_readwrite()
                .map_err(|_| invalid_input("out[0] is already borrowed"))?;
            let mut s = next
                .try_readwrite()
                .map_err(|_| invalid_input("out[1] must be a different array"))?;
            core(
                self.inner
                    .first_child_next_sibling_into(f.as_slice_mut()?, s.as_slice_mut()?),
            )?;
        }
        Ok((first, next))
    }

    /// The additive mask ``[n, prefix_len + n]`` that HF-style models take: ``0`` where row ``i`` may
    /// attend (every prefix column; ``i`` and its ancestors among the tree columns), ``-inf`` elsewhere.
    /// ``dtype`` is float32 (default), float16 or float64.
    #[pyo3(signature = (prefix_len, dtype = None, *, out = None))]
    fn attention_mask_with_prefix<'py>(
        &self,
        py: Python<'py>,
        prefix_len: i64,
        dtype: Option<&Bound<'py, PyAny>>,
        out: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let prefix = check_prefix(prefix_len)?;
        let n = self.inner.num_nodes();
        let shape = [n, prefix + n];
        let name = match dtype {
            None => "float32".to_string(),
            Some(d) => py
                .import("numpy")?
                .getattr("dtype")?
                .call1((d,))?
                .getattr("name")?
                .extract::<String>()?,
        };
        let tree = &self.inner;
        Ok(match name.as_str() {
            "float32" => filled::<f32>(py, out, &shape, |o| {
                tree.prefix_mask_into(prefix, 0.0, f32::NEG_INFINITY, o)
            })?
            .into_any(),
            "float64" => filled::<f64>(py, out, &shape, |o| {
                tree.prefix_mask_into(prefix, 0.0, f64::NEG_INFINITY, o)
            })?
            .into_any(),
            "float16" => filled::<half::f16>(py, out, &shape, |o| {
                tree.prefix_mask_into(prefix, half::f16::ZERO, half::f16::NEG_INFINITY, o)
            })?
            .into_any(),
            other => {
                return Err(invalid_input(format!(
                    "dtype must be float32, float16 or float64, got {other}"
                )));
            }
        })
    }

    /// Concatenate a ragged batch of trees with their cached prefix lengths into the buffers a batched
    /// forward needs; see :class:`TreeBatch`.
    #[staticmethod]
    fn batch(
        py: Python<'_>,
        trees: Vec<PyRef<'_, PyDraftTree>>,
        prefix_lens: &Bound<'_, PyAny>,
    ) -> PyResult<PyTreeBatch> {
        let prefix_lens = int_vector(prefix_lens, "prefix_lens")?;
        if prefix_lens.len() != trees.len() {
            return Err(invalid_input(format!(
                "prefix_lens must hold one length per tree ({}), got {}",
                trees.len(),
                prefix_lens.len()
            )));
        }
        let trees: Vec<Arc<DraftTree>> = trees.iter().map(|t| Arc::clone(&t.inner)).collect();
        let built = py
            .detach(|| build_batch(&trees, &prefix_lens))
            .map_err(crate::errors::to_pyerr)?;
        Ok(PyTreeBatch {
            tokens: built.tokens.into_pyarray(py).into_any().unbind(),
            positions: built.positions.into_pyarray(py).into_any().unbind(),
            packed_mask: numpy::ndarray::Array2::from_shape_vec((built.total, built.width), built.packed)
                .expect("sized")
                .into_pyarray(py)
                .into_any()
                .unbind(),
            cu_nodes: built.cu_nodes.into_pyarray(py).into_any().unbind(),
            custom_mask: built.custom_mask.into_pyarray(py).into_any().unbind(),
            cu_custom_mask: built.cu_custom_mask.into_pyarray(py).into_any().unbind(),
        })
    }

    fn __len__(&self) -> usize {
        self.inner.num_nodes()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyDraftTree>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.inner.tokens().hash(&mut h);
        self.inner.parents().hash(&mut h);
        h.finish()
    }

    fn __repr__(&self) -> String {
        format!(
            "DraftTree(num_nodes={}, max_depth={})",
            self.inner.num_nodes(),
            self.inner.max_depth()
        )
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyType>, Bound<'py, PyTuple>)> {
        let py = slf.py();
        let inner = &slf.get().inner;
        let args = PyTuple::new(
            py,
            [
                int_array(py, inner.tokens()).into_any(),
                int_array(py, inner.parents()).into_any(),
            ],
        )?;
        Ok((slf.get_type(), args))
    }
}

struct BuiltBatch {
    tokens: Vec<i32>,
    positions: Vec<i32>,
    packed: Vec<i32>,
    total: usize,
    width: usize,
    cu_nodes: Vec<i32>,
    custom_mask: Vec<bool>,
    cu_custom_mask: Vec<i64>,
}

fn build_batch(trees: &[Arc<DraftTree>], prefix_lens: &[i32]) -> decodekit_core::Result<BuiltBatch> {
    let total: usize = trees.iter().map(|t| t.num_nodes()).sum();
    let width = trees.iter().map(|t| t.packed_width()).max().unwrap_or(1).max(1);
    let mut out = BuiltBatch {
        tokens: Vec::with_capacity(total),
        positions: vec![0; total],
        packed: vec![0; total * width],
        total,
        width,
        cu_nodes: vec![0],
        custom_mask: Vec::new(),
        cu_custom_mask: vec![0],
    };
    let mut at = 0usize;
    for (tree, &prefix) in trees.iter().zip(prefix_lens) {
        let n = tree.num_nodes();
        let prefix = usize::try_from(prefix).map_err(|_| {
            decodekit_core::CoreError::InvalidInput(format!("prefix_lens must be >= 0, got {prefix}"))
        })?;
        out.tokens.extend_from_slice(tree.tokens());
        tree.positions_into(prefix as i64, &mut out.positions[at..at + n])?;
        // Each tree's rows use its own width; copy them into the batch's common width.
        let mut own = vec![0i32; n * tree.packed_width()];
        tree.packed_mask_into(&mut own)?;
        for (row, chunk) in own.chunks(tree.packed_width()).enumerate() {
            out.packed[(at + row) * width..(at + row) * width + chunk.len()].copy_from_slice(chunk);
        }
        let start = out.custom_mask.len();
        out.custom_mask.resize(start + n * (prefix + n), false);
        tree.prefix_mask_into(prefix, true, false, &mut out.custom_mask[start..])?;
        at += n;
        out.cu_nodes.push(at as i32);
        out.cu_custom_mask.push(out.custom_mask.len() as i64);
    }
    Ok(out)
}

/// The buffers of a ragged batch of draft trees (from :meth:`DraftTree.batch`):
///
/// * ``tokens`` ``int32[N]`` and ``positions`` ``int32[N]``: all trees' nodes concatenated (``N`` nodes);
/// * ``packed_mask`` ``int32[N, W]``: each tree's packed ancestor mask (bits index nodes of the same
///   tree), ``W = ceil(max_nodes / 32)``;
/// * ``cu_nodes`` ``int32[B + 1]``: tree ``b`` owns rows ``cu_nodes[b]:cu_nodes[b+1]``;
/// * ``custom_mask`` ``bool[sum(n_b * (prefix_b + n_b))]``: FlashInfer's flattened custom mask, for each
///   tree the row-major ``[n_b, prefix_b + n_b]`` mask over its cached prefix plus its nodes;
/// * ``cu_custom_mask`` ``int64[B + 1]``: offsets of each tree's mask (FlashInfer's ``mask_indptr``).
#[pyclass(frozen, module = "decodekit._core", name = "TreeBatch")]
pub struct PyTreeBatch {
    #[pyo3(get)]
    tokens: Py<PyAny>,
    #[pyo3(get)]
    positions: Py<PyAny>,
    #[pyo3(get)]
    packed_mask: Py<PyAny>,
    #[pyo3(get)]
    cu_nodes: Py<PyAny>,
    #[pyo3(get)]
    custom_mask: Py<PyAny>,
    #[pyo3(get)]
    cu_custom_mask: Py<PyAny>,
}

/// The shape of a draft tree without tokens: node ``i`` takes candidate number ``ranks[i]`` (0 = most
/// likely) from the candidate list of its parent. Immutable; ``instantiate`` turns it into a
/// :class:`DraftTree` once each node's candidates are known.
#[pyclass(frozen, module = "decodekit._core", name = "TreeTemplate")]
pub struct PyTreeTemplate {
    pub inner: Arc<TreeTemplate>,
}

#[pymethods]
impl PyTreeTemplate {
    #[new]
    fn new(parents: &Bound<'_, PyAny>, ranks: &Bound<'_, PyAny>) -> PyResult<Self> {
        let t = TreeTemplate::new(int_vector(parents, "parents")?, int_vector(ranks, "ranks")?);
        Ok(Self {
            inner: Arc::new(core(t)?),
        })
    }

    /// Build from Medusa-style index paths such as ``[(0,), (1,), (0, 0), (0, 1)]``: each path lists
    /// candidate ranks from the root. Missing prefixes are added, duplicates merged; nodes are numbered
    /// by depth, then lexicographically. Refuses templates of more than ``max_nodes`` nodes.
    #[staticmethod]
    #[pyo3(signature = (paths, max_nodes = 4096))]
    fn from_paths(paths: &Bound<'_, PyAny>, max_nodes: usize) -> PyResult<Self> {
        let paths = int_paths(paths, "paths")?;
        Ok(Self {
            inner: Arc::new(core(TreeTemplate::from_paths(&paths, max_nodes))?),
        })
    }

    /// The static tree of the Token Recycling paper (Figure 5): 80 draft nodes plus the root, depth 6,
    /// with 8/21/25/15/8/3 nodes on levels 1-6 and at most 8 candidates per node.
    #[staticmethod]
    fn token_recycling() -> Self {
        Self {
            inner: Arc::new(decodekit_core::draft::recycling::token_recycling_template()),
        }
    }

    /// The breadth-first tree with up to ``max_branching`` children per node (ranks ``0..max_branching``)
    /// and depth at most ``max_depth``, cut at ``num_nodes`` nodes (root included).
    #[staticmethod]
    fn balanced(num_nodes: usize, max_depth: usize, max_branching: usize) -> PyResult<Self> {
        Ok(Self {
            inner: Arc::new(core(TreeTemplate::balanced(num_nodes, max_depth, max_branching))?),
        })
    }

    /// The ``num_nodes``-node template maximizing the expected accepted length, when the candidate of
    /// rank ``r`` is accepted with probability ``probs[r]`` (1-D, any depth) or ``probs[d, r]`` at depth
    /// ``d + 1`` (2-D; also bounds the depth). Greedy expansion by path probability (as in Sequoia and
    /// EAGLE-2), which is optimal because path probabilities only shrink with depth.
    #[staticmethod]
    fn from_acceptance(probs: &Bound<'_, PyAny>, num_nodes: usize) -> PyResult<Self> {
        let array = probs
            .py()
            .import("numpy")?
            .getattr("asarray")?
            .call1((probs, "float64"))?;
        let ndim: usize = array.getattr("ndim")?.extract()?;
        let rows: Vec<Vec<f64>> = match ndim {
            1 => vec![float64_vector(&array, "probs")?],
            2 => array
                .try_iter()?
                .map(|r| float64_vector(&r?, "probs"))
                .collect::<PyResult<_>>()?,
            _ => {
                return Err(invalid_input(format!(
                    "probs must be 1-D [ranks] or 2-D [depth, ranks], got {ndim}-D"
                )))
            }
        };
        Ok(Self {
            inner: Arc::new(core(TreeTemplate::from_acceptance(&rows, ndim == 2, num_nodes))?),
        })
    }

    /// ``int32[n]``: the parent of each node.
    #[getter]
    fn parents<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i32>> {
        int_array(py, self.inner.parents())
    }

    /// ``int32[n]``: the candidate rank of each node (0 for the root).
    #[getter]
    fn ranks<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i32>> {
        int_array(py, self.inner.ranks())
    }

    /// ``int32[n]``: the depth of each node.
    #[getter]
    fn depth<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i32>> {
        int_array(py, self.inner.depth())
    }

    /// Number of nodes, root included.
    #[getter]
    fn num_nodes(&self) -> usize {
        self.inner.num_nodes()
    }

    /// How many candidates per node ``instantiate`` needs (the largest rank plus one).
    #[getter]
    fn num_candidates(&self) -> usize {
        self.inner.num_candidates()
    }

    /// A :class:`DraftTree` with node ``i`` holding ``candidates[parent(i), rank(i)]``; ``candidates`` is
    /// int ``[num_nodes, width]`` (row ``j``: the candidate tokens after node ``j``, best first).
    fn instantiate(&self, root_token: i32, candidates: &Bound<'_, PyAny>) -> PyResult<PyDraftTree> {
        let (flat, _, width) = int_matrix(candidates, "candidates")?;
        let tree = core(self.inner.instantiate(root_token, &flat, width))?;
        Ok(PyDraftTree {
            inner: Arc::new(tree),
        })
    }

    fn __len__(&self) -> usize {
        self.inner.num_nodes()
    }

    fn __repr__(&self) -> String {
        format!(
            "TreeTemplate(num_nodes={}, num_candidates={})",
            self.inner.num_nodes(),
            self.inner.num_candidates()
        )
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyType>, Bound<'py, PyTuple>)> {
        let py = slf.py();
        let inner = &slf.get().inner;
        let args = PyTuple::new(
            py,
            [
                int_array(py, inner.parents()).into_any(),
                int_array(py, inner.ranks()).into_any(),
            ],
        )?;
        Ok((slf.get_type(), args))
    }
}
