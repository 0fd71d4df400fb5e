//! `decodekit.Rng`: a seed plus a position in its sequence of derived row seeds.

use std::sync::atomic::{AtomicU64, Ordering};

use decodekit_core::derive_seed;
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};

use crate::arrays::{count, seed_int, seed_vector};
use crate::errors::invalid_input;

/// Counter-based random generator (Philox4x32-10) keyed by a 64-bit seed.
///
/// Every call that takes ``rng=`` draws one 64-bit seed per row from it and advances it; the row's random
/// stream is keyed by that seed alone, so a row's result never depends on the other rows of the batch, the
/// thread count or the platform. ``Rng(seed, position)`` resumes a generator after ``position`` seeds.
/// Safe to share across threads (each call takes a disjoint range of seeds).
#[pyclass(frozen, module = "decodekit._core", name = "Rng")]
pub struct PyRng {
    seed: u64,
    position: AtomicU64,
}

impl PyRng {
    /// Take the next `n` seeds.
    pub fn spawn(&self, n: usize) -> Vec<u64> {
        let start = self.position.fetch_add(n as u64, Ordering::Relaxed);
        (0..n as u64)
            .map(|i| derive_seed(self.seed, start.wrapping_add(i)))
            .collect()
    }
}

#[pymethods]
impl PyRng {
    #[new]
    #[pyo3(signature = (seed, position = None), text_signature = "(seed, position=0)")]
    fn new(seed: &Bound<'_, PyAny>, position: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let position = position.map_or(Ok(0), |p| seed_int(p, "position"))?;
        Ok(Self {
            seed: seed_int(seed, "seed")?,
            position: AtomicU64::new(position),
        })
    }

    /// The seed this generator was created with.
    #[getter]
    fn seed(&self) -> u64 {
        self.seed
    }

    /// How many seeds have been drawn so far.
    #[getter]
    fn position(&self) -> u64 {
        self.position.load(Ordering::Relaxed)
    }

    /// Draw ``n`` independent 64-bit seeds (``uint64[n]``), e.g. the ``seeds=`` of a batched call.
    fn spawn_seeds<'py>(&self, py: Python<'py>, n: i64) -> PyResult<Bound<'py, PyArray1<u64>>> {
        Ok(self.spawn(count(n, "n")?).into_pyarray(py))
    }

    /// Draw ``n`` uniform doubles in ``[0, 1)`` (``float64[n]``), 53 random bits each.
    fn random<'py>(&self, py: Python<'py>, n: i64) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let values: Vec<f64> = self
            .spawn(count(n, "n")?)
            .into_iter()
            .map(|s| (s >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0))
            .collect();
        Ok(values.into_pyarray(py))
    }

    fn __repr__(&self) -> String {
        format!("Rng(seed={}, position={})", self.seed, self.position())
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyType>, Bound<'py, PyTuple>)> {
        let this = slf.get();
        let args = PyTuple::new(slf.py(), [this.seed, this.position()])?;
        Ok((slf.get_type(), args))
    }
}

/// The seeds of a call that takes `rng=` or `seeds=`: exactly one of them, `count` seeds (an `Rng`
/// always advances by `count`). `seeds` may be a plain int when `single`. When neither is given, the
/// call fails if it `needs` randomness and gets no seeds otherwise.
pub fn seeds_arg(
    rng: Option<&Bound<'_, PyRng>>,
    seeds: Option<&Bound<'_, PyAny>>,
    count: usize,
    single: bool,
    needs: bool,
    function: &str,
) -> PyResult<Vec<u64>> {
    match (rng, seeds) {
        (Some(_), Some(_)) => Err(invalid_input(format!(
            "{function}: pass either rng= or seeds=, not both"
        ))),
        (Some(rng), None) => Ok(rng.get().spawn(count)),
        (None, Some(seeds)) => seed_vector(seeds, count, single),
        (None, None) if needs => Err(invalid_input(format!(
            "{function} draws random numbers: pass rng=decodekit.Rng(seed) or seeds= (uint64, one per row; \
             an int when there is one)"
        ))),
        (None, None) => Ok(Vec::new()),
    }
}
