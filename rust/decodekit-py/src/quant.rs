//! Bindings of `decodekit_core::quant` (weight-only quantization); `decodekit.quant` wraps them.

use decodekit_core::quant::{self, GroupSize};
use numpy::{PyArray1, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::arrays::{as_ndarray, count, dtype_name, float_matrix};
use crate::errors::{detached, invalid_input};

fn bits_arg(bits: i64) -> PyResult<u32> {
    match bits {
        4 => Ok(4),
        8 => Ok(8),
        _ => Err(invalid_input(format!("bits must be 4 or 8, got {bits}"))),
    }
}

fn group_arg(group_size: &Bound<'_, PyAny>) -> PyResult<GroupSize> {
    if group_size.is_none() {
        return Ok(GroupSize::PerChannel);
    }
    if let Ok(text) = group_size.extract::<String>() {
        if text == "auto" {
            return Ok(GroupSize::Auto);
        }
        return Err(invalid_input(format!(
            "group_size must be 'auto', None or an int, got {text:?}"
        )));
    }
    let size: i64 = group_size
        .extract()
        .map_err(|_| invalid_input("group_size must be 'auto', None or an int"))?;
    Ok(GroupSize::Fixed(count(size, "group_size")?))
}

/// `(packed, scales, zeros, group_size)` as returned to Python.
type QuantizedArrays<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>, usize);

fn matrix<T: numpy::Element>(py: Python<'_>, data: Vec<T>, rows: usize) -> PyResult<Bound<'_, PyAny>> {
    let cols = data.len().checked_div(rows).unwrap_or(0);
    Ok(PyArray1::from_vec(py, data).reshape([rows, cols])?.into_any())
}

/// Quantize a float32/float16 weight ``[N, K]``; returns ``(packed int32 [N, K*bits/32], scales float32
/// [N, G], zeros float32 [N, G], group_size)``. ``group_size`` is ``"auto"``, ``None`` (per-channel) or
/// an int dividing ``K``. The high-level API is ``decodekit.quant.quantize``.
#[pyfunction]
#[pyo3(signature = (weight, bits, group_size, symmetric))]
pub fn _quantize<'py>(
    py: Python<'py>,
    weight: &Bound<'py, PyAny>,
    bits: i64,
    group_size: &Bound<'py, PyAny>,
    symmetric: bool,
) -> PyResult<QuantizedArrays<'py>> {
    let bits = bits_arg(bits)?;
    let group = group_arg(group_size)?;
    let w = float_matrix(weight, "weight")?;
    if w.one_d {
        return Err(invalid_input("weight must be 2-D [N, K]"));
    }
    let (rows, cols, values) = (w.rows, w.cols, w.as_slice());
    let q = detached(py, || quant::quantize(values, rows, cols, bits, group, symmetric))?;
    let packed: Vec<i32> = q.packed.iter().map(|&word| word as i32).collect();
    Ok((
        matrix(py, packed, rows)?,
        matrix(py, q.scales, rows)?,
        matrix(py, q.zeros, rows)?,
        q.group_size,
    ))
}

/// A 2-D array argument of element type `T`: `(values, rows, cols)`, with errors naming `name`.
fn typed_matrix<T: numpy::Element + Copy>(
    obj: &Bound<'_, PyAny>,
    name: &str,
    layout: &str,
    dtype: &str,
) -> PyResult<(Vec<T>, usize, usize)> {
    let array = as_ndarray(obj)?;
    let [rows, cols] = <[usize; 2]>::try_from(array.shape()).map_err(|_| {
        invalid_input(format!(
            "{name} must be 2-D {layout}, got shape {:?}",
            array.shape()
        ))
    })?;
    let typed = array.cast::<PyArrayDyn<T>>().map_err(|_| {
        invalid_input(format!(
            "{name} must be a {dtype} array, got dtype {}",
            dtype_name(&array)
        ))
    })?;
    let values = typed.readonly().as_array().iter().copied().collect();
    Ok((values, rows, cols))
}

/// Pack unsigned codes (uint8 ``[N, K]``, each below ``2**bits``) into int32 words ``[N, K*bits/32]`` in
/// the kernels' order (int4: nibbles ``v0 v2 v4 v6 v1 v3 v5 v7``).
#[pyfunction]
pub fn _pack_codes<'py>(
    py: Python<'py>,
    codes: &Bound<'py, PyAny>,
    bits: i64,
) -> PyResult<Bound<'py, PyAny>> {
    let bits = bits_arg(bits)?;
    let (values, rows, cols) = typed_matrix::<u8>(codes, "codes", "[N, K]", "uint8")?;
    let per_word = 32 / bits as usize;
    if cols % per_word != 0 {
        return Err(invalid_input(format!(
            "K = {cols} must be a multiple of {per_word}"
        )));
    }
    if let Some(bad) = values.iter().find(|&&c| u32::from(c) >= 1 << bits) {
        return Err(invalid_input(format!("code {bad} does not fit in {bits} bits")));
    }
    let mut words = vec![0u32; rows * cols / per_word];
    quant::pack(&values, bits, &mut words);
    matrix(
        py,
        words.into_iter().map(|w| w as i32).collect::<Vec<i32>>(),
        rows,
    )
}

/// Unpack int32 words ``[N, W]`` into uint8 codes ``[N, W*32/bits]``: the inverse of ``_pack_codes``.
#[pyfunction]
pub fn _unpack_codes<'py>(
    py: Python<'py>,
    packed: &Bound<'py, PyAny>,
    bits: i64,
) -> PyResult<Bound<'py, PyAny>> {
    let bits = bits_arg(bits)?;
    let (words, rows, _) = typed_matrix::<i32>(packed, "packed", "[N, W]", "int32")?;
    let words: Vec<u32> = words.into_iter().map(|w| w as u32).collect();
    let mut codes = vec![0u8; words.len() * (32 / bits as usize)];
    quant::unpack(&words, bits, &mut codes);
    matrix(py, codes, rows)
}
