//! Reading numpy arguments and allocating numpy results, with errors that name the argument.

use numpy::{
    Element, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyInt;

use crate::errors::invalid_input;

/// Float data borrowed from a C-contiguous float32 array, or converted (float16, strided input).
pub enum Floats<'py> {
    View(PyReadonlyArrayDyn<'py, f32>),
    Owned(Vec<f32>),
}

/// A 1-D `[V]` or 2-D `[B, V]` float argument seen as `rows x cols`.
pub struct FloatMatrix<'py> {
    data: Floats<'py>,
    pub rows: usize,
    pub cols: usize,
    /// The argument was 1-D (results drop the batch dimension).
    pub one_d: bool,
}

impl FloatMatrix<'_> {
    pub fn as_slice(&self) -> &[f32] {
        match &self.data {
            Floats::View(a) => a.as_slice().expect("checked C-contiguous"),
            Floats::Owned(v) => v,
        }
    }
}

pub fn as_ndarray<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyUntypedArray>> {
    if let Ok(array) = obj.cast::<PyUntypedArray>() {
        return Ok(array.clone());
    }
    // Array-likes (CPU torch tensors, lists) go through numpy.asarray; their dtype is checked next.
    let converted = obj.py().import("numpy")?.getattr("asarray")?.call1((obj,))?;
    Ok(converted.cast_into::<PyUntypedArray>()?)
}

pub fn dtype_name(array: &Bound<'_, PyUntypedArray>) -> String {
    array
        .dtype()
        .str()
        .map_or_else(|_| "?".to_string(), |s| s.to_string())
}

/// Read a float32 (or float16, converted) array of 1 or 2 dimensions.
pub fn float_matrix<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<FloatMatrix<'py>> {
    let array = as_ndarray(obj)?;
    let shape = array.shape().to_vec();
    let (rows, cols, one_d) = match shape.as_slice() {
        [v] => (1, *v, true),
        [b, v] => (*b, *v, false),
        _ => {
            return Err(invalid_input(format!(
                "{name} must be 1-D [vocab] or 2-D [batch, vocab], got shape {shape:?}"
            )))
        }
    };
    let py = obj.py();
    let dtype = array.dtype();
    let data = if dtype.is_equiv_to(&numpy::dtype::<f32>(py)) {
        let typed = array.cast::<PyArrayDyn<f32>>()?.readonly();
        if typed.is_c_contiguous() {
            Floats::View(typed)
        } else {
            Floats::Owned(typed.as_array().iter().copied().collect())
        }
    } else if dtype.is_equiv_to(&numpy::dtype::<half::f16>(py)) {
        let typed = array.cast::<PyArrayDyn<half::f16>>()?.readonly();
        Floats::Owned(typed.as_array().iter().map(|v| v.to_f32()).collect())
    } else {
        return Err(invalid_input(format!(
            "{name} must be a float32 or float16 array, got dtype {}; convert it with .astype(numpy.float32)",
            dtype_name(&array)
        )));
    };
    Ok(FloatMatrix {
        data,
        rows,
        cols,
        one_d,
    })
}

/// Read a 1-D float64 (or float32, converted) array.
pub fn float64_vector(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<f64>> {
    let array = as_ndarray(obj)?;
    if array.ndim() != 1 {
        return Err(invalid_input(format!(
            "{name} must be 1-D, got shape {:?}",
            array.shape()
        )));
    }
    let py = obj.py();
    let dtype = array.dtype();
    if dtype.is_equiv_to(&numpy::dtype::<f64>(py)) {
        Ok(array
            .cast::<PyArrayDyn<f64>>()?
            .readonly()
            .as_array()
            .iter()
            .copied()
            .collect())
    } else if dtype.is_equiv_to(&numpy::dtype::<f32>(py)) {
        Ok(array
            .cast::<PyArrayDyn<f32>>()?
            .readonly()
            .as_array()
            .iter()
            .map(|&v| f64::from(v))
            .collect())
    } else {
        Err(invalid_input(format!(
            "{name} must be a float64 or float32 array, got dtype {}",
            dtype_name(&array)
        )))
    }
}

/// Read one seed per row: a `uint64` array of shape `[rows]`, or a Python int when the input was 1-D.
pub fn seed_vector(obj: &Bound<'_, PyAny>, rows: usize, one_d: bool) -> PyResult<Vec<u64>> {
    if obj.is_instance_of::<PyInt>() {
        if !one_d {
            return Err(invalid_input(format!(
                "seeds must be a uint64 array with one seed per row ({rows} rows), not a single int"
            )));
        }
        return Ok(vec![seed_int(obj, "seeds")?]);
    }
    let array = as_ndarray(obj)?;
    if !array.dtype().is_equiv_to(&numpy::dtype::<u64>(obj.py())) {
        return Err(invalid_input(format!(
            "seeds must be a uint64 array, got dtype {}",
            dtype_name(&array)
        )));
    }
    let seeds: Vec<u64> = array
        .cast::<PyArrayDyn<u64>>()?
        .readonly()
        .as_array()
        .iter()
        .copied()
        .collect();
    if array.ndim() != 1 || seeds.len() != rows {
        return Err(invalid_input(format!(
            "seeds must have shape ({rows},), one seed per row, got shape {:?}",
            array.shape()
        )));
    }
    Ok(seeds)
}

/// Read a seed given as a Python int in `[0, 2**64)`.
pub fn seed_int(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<u64> {
    if !obj.is_instance_of::<PyInt>() {
        return Err(invalid_input(format!(
            "{name} must be an int, got {}",
            type_name(obj)
        )));
    }
    obj.extract::<u64>()
        .map_err(|_| invalid_input(format!("{name} must be an integer in [0, 2**64), got {obj}")))
}

/// Read a non-negative integer argument.
pub fn count(value: i64, name: &str) -> PyResult<usize> {
    usize::try_from(value).map_err(|_| invalid_input(format!("{name} must be >= 0, got {value}")))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".to_string(), |n| n.to_string())
}

/// The output array: the caller's `out` (checked for dtype, shape and contiguity) or a new one.
pub fn output<'py, T: Element>(
    py: Python<'py>,
    out: Option<&Bound<'py, PyAny>>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let Some(out) = out else {
        return Ok(PyArrayDyn::<T>::zeros(py, shape, false));
    };
    let want = numpy::dtype::<T>(py);
    let array = out
        .cast::<PyUntypedArray>()
        .map_err(|_| invalid_input(format!("out must be a numpy array, got {}", type_name(out))))?;
    if !array.dtype().is_equiv_to(&want) {
        return Err(invalid_input(format!(
            "out must have dtype {}, got {}",
            want.str().map_or_else(|_| "?".to_string(), |s| s.to_string()),
            dtype_name(array)
        )));
    }
    if array.shape() != shape {
        return Err(invalid_input(format!(
            "out must have shape {shape:?}, got {:?}",
            array.shape()
        )));
    }
    if !array.is_c_contiguous() {
        return Err(invalid_input("out must be C-contiguous"));
    }
    Ok(array.cast::<PyArrayDyn<T>>()?.clone())
}

/// Read a 1-D array of integers (any integer dtype, or a sequence of ints) as `i32`, checking the range.
pub fn int_vector(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<i32>> {
    let py = obj.py();
    // Short Python lists of ints (one decode step's tokens) skip the round trip through numpy.
    if let Ok(list) = obj.cast::<pyo3::types::PyList>() {
        if list.iter().all(|v| v.is_exact_instance_of::<PyInt>()) {
            return list
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.extract::<i32>()
                        .map_err(|_| invalid_input(format!("{name}[{i}] = {v} does not fit in int32")))
                })
                .collect();
        }
    }
    let array = as_ndarray(obj)?;
    if array.ndim() != 1 {
        return Err(invalid_input(format!(
            "{name} must be 1-D, got shape {:?}",
            array.shape()
        )));
    }
    if array.len() == 0 {
        return Ok(Vec::new());
    }
    if let Ok(values) = array.cast::<PyArrayDyn<i32>>() {
        // The common case (int32 ids, as every decodekit result is) needs no conversion.
        return Ok(values.readonly().as_array().iter().copied().collect());
    }
    let kind = array.dtype().kind();
    if kind != b'i' && kind != b'u' {
        return Err(invalid_input(format!(
            "{name} must hold integers, got dtype {}",
            dtype_name(&array)
        )));
    }
    let as_i64 = array.call_method1("astype", (numpy::dtype::<i64>(py),))?;
    let values = as_i64.cast::<PyArrayDyn<i64>>()?.readonly();
    values
        .as_array()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            i32::try_from(v).map_err(|_| invalid_input(format!("{name}[{i}] = {v} does not fit in int32")))
        })
        .collect()
}

/// Read a sequence of integer sequences (Medusa-style paths) without building intermediate Python lists.
pub fn int_paths(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<Vec<i32>>> {
    let mut paths = Vec::new();
    for item in obj
        .try_iter()
        .map_err(|_| invalid_input(format!("{name} must be a sequence of sequences")))?
    {
        let item = item?;
        let path = if let Ok(tuple) = item.cast::<pyo3::types::PyTuple>() {
            tuple
                .iter()
                .map(|v| v.extract::<i32>())
                .collect::<PyResult<Vec<i32>>>()
        } else {
            item.extract::<Vec<i32>>()
        };
        paths.push(path.map_err(|_| invalid_input(format!("{name} must hold sequences of int32 values")))?);
    }
    Ok(paths)
}

/// Read a 2-D integer array as row-major `i32` values plus its shape (int32 C-contiguous input is copied
/// once, without a dtype conversion).
pub fn int_matrix(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<(Vec<i32>, usize, usize)> {
    let array = as_ndarray(obj)?;
    let shape = array.shape().to_vec();
    let [rows, cols] = shape[..] else {
        return Err(invalid_input(format!("{name} must be 2-D, got shape {shape:?}")));
    };
    if let Ok(values) = array.cast::<PyArrayDyn<i32>>() {
        return Ok((values.readonly().as_array().iter().copied().collect(), rows, cols));
    }
    let flat = array.call_method1("reshape", (-1,))?;
    Ok((int_vector(&flat, name)?, rows, cols))
}

/// Read a corpus: a sequence of integer token arrays (each read like [`int_vector`]).
pub fn int_vectors(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<Vec<i32>>> {
    obj.try_iter()
        .map_err(|_| invalid_input(format!("{name} must be a sequence of int arrays")))?
        .enumerate()
        .map(|(i, item)| int_vector(&item?, &format!("{name}[{i}]")))
        .collect()
}
