//! Bindings of `decodekit_core::sampling`: argument checks, GIL release, numpy in and out.

use decodekit_core::sampling::{self, Rows, SamplingParams};
use numpy::{Element, IntoPyArray, PyArray1, PyArrayDyn, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

use crate::arrays::{count, float64_vector, float_matrix, output, FloatMatrix};
use crate::errors::{core, detached, invalid_input};
use crate::rng::{seeds_arg, PyRng};

fn shape_of(m: &FloatMatrix<'_>) -> Vec<usize> {
    if m.one_d {
        vec![m.cols]
    } else {
        vec![m.rows, m.cols]
    }
}

fn temperature_arg(t: f64) -> PyResult<f32> {
    if t > 0.0 && (t as f32) == 0.0 {
        // Never let a tiny temperature round to 0 in float32 and silently become greedy decoding.
        return Err(invalid_input(format!(
            "temperature {t:e} is too small for float32; use 0 for greedy decoding"
        )));
    }
    core(sampling::check_temperature(t as f32))?;
    Ok(t as f32)
}

fn probability_arg(value: f64, name: &str, open_low: bool) -> PyResult<f64> {
    let ok = if open_low {
        value > 0.0 && value <= 1.0
    } else {
        (0.0..=1.0).contains(&value)
    };
    if !ok {
        let range = if open_low { "(0, 1]" } else { "[0, 1]" };
        return Err(invalid_input(format!("{name} must be in {range}, got {value}")));
    }
    Ok(value)
}

/// Fill a new (or the caller's) array of `shape` with `work(rows, out_slice)` run without the GIL.
fn fill<'py, T, F>(
    py: Python<'py>,
    m: &FloatMatrix<'py>,
    name: &'static str,
    out: Option<&Bound<'py, PyAny>>,
    shape: &[usize],
    work: F,
) -> PyResult<Bound<'py, PyArrayDyn<T>>>
where
    T: Element + Send,
    F: FnOnce(Rows<'_>, &mut [T]) -> decodekit_core::Result<()> + Send,
{
    let result = output::<T>(py, out, shape)?;
    {
        let mut guard = result
            .try_readwrite()
            .map_err(|_| invalid_input(format!("out must not share memory with {name}")))?;
        let slice = guard
            .as_slice_mut()
            .map_err(|_| invalid_input("out must be C-contiguous"))?;
        let data = m.as_slice();
        let (rows, cols) = (m.rows, m.cols);
        detached(py, move || work(Rows::new(data, rows, cols, name)?, slice))?;
    }
    Ok(result)
}

/// Probabilities ``softmax(logits / temperature)``, computed stably (max subtracted), same shape as
/// ``logits`` (float32 ``[V]`` or ``[B, V]``; float16 is converted). ``-inf`` logits get probability 0.
/// ``temperature=0`` gives the limit: the tied maxima share the mass equally.
#[pyfunction]
#[pyo3(signature = (logits, temperature = 1.0, *, out = None))]
pub fn softmax<'py>(
    py: Python<'py>,
    logits: &Bound<'py, PyAny>,
    temperature: f64,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let t = temperature_arg(temperature)?;
    let m = float_matrix(logits, "logits")?;
    fill(py, &m, "logits", out, &shape_of(&m), move |rows, o| {
        sampling::softmax(rows, t, o)
    })
}

/// Log-probabilities ``log_softmax(logits / temperature)``, same shape as ``logits``; ``-inf`` logits stay
/// ``-inf``. ``temperature=0`` gives ``-log(ties)`` on the tied maxima and ``-inf`` elsewhere.
#[pyfunction]
#[pyo3(signature = (logits, temperature = 1.0, *, out = None))]
pub fn log_softmax<'py>(
    py: Python<'py>,
    logits: &Bound<'py, PyAny>,
    temperature: f64,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let t = temperature_arg(temperature)?;
    let m = float_matrix(logits, "logits")?;
    fill(py, &m, "logits", out, &shape_of(&m), move |rows, o| {
        sampling::log_softmax(rows, t, o)
    })
}

/// Top-k keep-mask (bool, same shape as ``logits``): ``True`` where the logit is at least the k-th largest
/// finite logit of its row; ties at the cut-off are kept. ``k=0`` (or ``k`` at least the number of finite
/// logits) keeps every finite logit; ``-inf`` logits are never kept.
#[pyfunction]
#[pyo3(signature = (logits, k, *, out = None))]
pub fn top_k_mask<'py>(
    py: Python<'py>,
    logits: &Bound<'py, PyAny>,
    k: i64,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArrayDyn<bool>>> {
    let k = count(k, "k")?;
    let m = float_matrix(logits, "logits")?;
    fill(py, &m, "logits", out, &shape_of(&m), move |rows, o| {
        sampling::top_k_mask(rows, k, o)
    })
}

/// Top-p (nucleus) keep-mask of ``softmax(logits / temperature)``: the smallest set of most probable
/// tokens whose total probability is at least ``p``. The token that crosses ``p`` is kept, and so is
/// every token tied with it. ``p`` must be in ``(0, 1]``.
#[pyfunction]
#[pyo3(signature = (logits, p, *, temperature = 1.0, out = None))]
pub fn top_p_mask<'py>(
    py: Python<'py>,
    logits: &Bound<'py, PyAny>,
    p: f64,
    temperature: f64,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArrayDyn<bool>>> {
    let p = probability_arg(p, "top_p", true)?;
    let t = temperature_arg(temperature)?;
    let m = float_matrix(logits, "logits")?;
    fill(py, &m, "logits", out, &shape_of(&m), move |rows, o| {
        sampling::top_p_mask(rows, p, t, o)
    })
}

/// Min-p keep-mask of ``softmax(logits / temperature)``: tokens whose probability is at least ``min_p``
/// times the row's largest probability (ties kept). ``min_p`` must be in ``[0, 1]``.
#[pyfunction]
#[pyo3(signature = (logits, min_p, *, temperature = 1.0, out = None))]
pub fn min_p_mask<'py>(
    py: Python<'py>,
    logits: &Bound<'py, PyAny>,
    min_p: f64,
    temperature: f64,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArrayDyn<bool>>> {
    let min_p = probability_arg(min_p, "min_p", false)?;
    let t = temperature_arg(temperature)?;
    let m = float_matrix(logits, "logits")?;
    fill(py, &m, "logits", out, &shape_of(&m), move |rows, o| {
        sampling::min_p_mask(rows, min_p, t, o)
    })
}

fn params(temperature: f64, top_k: i64, top_p: f64, min_p: f64) -> PyResult<SamplingParams> {
    Ok(SamplingParams {
        temperature: temperature_arg(temperature)?,
        top_k: count(top_k, "top_k")?,
        top_p: probability_arg(top_p, "top_p", true)?,
        min_p: probability_arg(min_p, "min_p", false)?,
    })
}

/// The combined keep-mask that :func:`sample` draws from (temperature, then top-k, top-p, min-p).
#[pyfunction]
#[pyo3(signature = (logits, *, temperature = 1.0, top_k = 0, top_p = 1.0, min_p = 0.0, out = None))]
pub fn sampling_mask<'py>(
    py: Python<'py>,
    logits: &Bound<'py, PyAny>,
    temperature: f64,
    top_k: i64,
    top_p: f64,
    min_p: f64,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArrayDyn<bool>>> {
    let params = params(temperature, top_k, top_p, min_p)?;
    let m = float_matrix(logits, "logits")?;
    fill(py, &m, "logits", out, &shape_of(&m), move |rows, o| {
        sampling::sampling_mask(rows, &params, o)
    })
}

/// Sample one token per row.
///
/// The filters apply in this order: temperature (``logits / temperature``), top-k, top-p (on the
/// distribution renormalized over the top-k survivors), min-p; the token is then drawn from the
/// survivors in proportion to their probabilities. ``temperature=0`` is greedy: the argmax, ties to the
/// lowest id, and needs no randomness. Pass ``rng=`` (one seed per row is drawn from it) or ``seeds=``
/// (``uint64[B]``, or an int for 1-D logits). Returns an ``int`` for 1-D logits and ``int32[B]`` for 2-D.
#[pyfunction]
#[pyo3(signature = (logits, *, temperature = 1.0, top_k = 0, top_p = 1.0, min_p = 0.0, rng = None, seeds = None, out = None))]
#[allow(clippy::too_many_arguments)]
pub fn sample<'py>(
    py: Python<'py>,
    logits: &Bound<'py, PyAny>,
    temperature: f64,
    top_k: i64,
    top_p: f64,
    min_p: f64,
    rng: Option<&Bound<'py, PyRng>>,
    seeds: Option<&Bound<'py, PyAny>>,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let params = params(temperature, top_k, top_p, min_p)?;
    let m = float_matrix(logits, "logits")?;
    let seeds = seeds_arg(rng, seeds, m.rows, m.one_d, params.temperature > 0.0, "sample")?;
    if m.one_d && out.is_some() {
        return Err(invalid_input(
            "out= is only for 2-D logits; 1-D logits return an int",
        ));
    }
    let tokens = fill(py, &m, "logits", out, &[m.rows], move |rows, o| {
        sampling::sample(rows, &params, &seeds, o)
    })?;
    if m.one_d {
        let token: i32 = tokens.readonly().as_slice()?[0];
        token.into_bound_py_any(py)
    } else {
        Ok(tokens.into_any())
    }
}

/// ``k`` distinct tokens per row (``int32[k]`` or ``int32[B, k]``), in the order they were drawn,
/// distributed exactly as sequential sampling without replacement from ``softmax(logits /
/// temperature)``: the distribution of the Gumbel-top-k trick (``argsort(logits/T + Gumbel noise)[:k]``).
/// ``k`` may not exceed a row's number of finite logits. ``temperature=0`` returns the ``k`` largest
/// logits (ties to the lowest id).
#[pyfunction]
#[pyo3(signature = (logits, k, *, temperature = 1.0, rng = None, seeds = None, out = None))]
pub fn gumbel_top_k<'py>(
    py: Python<'py>,
    logits: &Bound<'py, PyAny>,
    k: i64,
    temperature: f64,
    rng: Option<&Bound<'py, PyRng>>,
    seeds: Option<&Bound<'py, PyAny>>,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArrayDyn<i32>>> {
    let k = count(k, "k")?;
    let t = temperature_arg(temperature)?;
    let m = float_matrix(logits, "logits")?;
    let seeds = seeds_arg(rng, seeds, m.rows, m.one_d, t > 0.0, "gumbel_top_k")?;
    let shape = if m.one_d { vec![k] } else { vec![m.rows, k] };
    fill(py, &m, "logits", out, &shape, move |rows, o| {
        sampling::gumbel_top_k(rows, k, t, &seeds, o)
    })
}

type BeamArrays<'py> = (
    Bound<'py, PyArray1<i32>>,
    Bound<'py, PyArray1<i32>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
);

/// One step of Stochastic Beam Search; see ``decodekit.stochastic_beam_search_step`` for the math.
/// Returns ``(parents int32[k], tokens int32[k], log_probs float64[k], scores float64[k])``, best first.
#[pyfunction]
pub fn stochastic_beam_search_step<'py>(
    py: Python<'py>,
    beam_log_probs: &Bound<'py, PyAny>,
    beam_gumbels: &Bound<'py, PyAny>,
    child_log_probs: &Bound<'py, PyAny>,
    k: i64,
    rng: &Bound<'py, PyRng>,
) -> PyResult<BeamArrays<'py>> {
    let k = count(k, "k")?;
    let beam_log_probs = float64_vector(beam_log_probs, "beam_log_probs")?;
    let beam_gumbels = float64_vector(beam_gumbels, "beam_gumbels")?;
    let children = float_matrix(child_log_probs, "child_log_probs")?;
    if children.one_d {
        return Err(invalid_input("child_log_probs must be 2-D [beams, vocab]"));
    }
    let seed = rng.get().spawn(1)[0];
    let data = children.as_slice();
    let (rows, cols) = (children.rows, children.cols);
    let step = detached(py, || {
        let rows = Rows::new(data, rows, cols, "child_log_probs")?;
        sampling::stochastic_beam_search_step(&beam_log_probs, &beam_gumbels, rows, k, seed)
    })?;
    Ok((
        step.parents.into_pyarray(py),
        step.tokens.into_pyarray(py),
        step.log_probs.into_pyarray(py),
        step.scores.into_pyarray(py),
    ))
}
