//! CUDA kernel sources, embedded in the extension so that a wheel carries them without package data.
//! `decodekit.cuda` compiles them at run time with CuPy (NVRTC); the CPU test suite compiles them with
//! NVRTC directly to check that every configuration builds.

use pyo3::prelude::*;

use crate::errors::invalid_input;

/// (name, source) of every kernel file in `cuda/`.
const SOURCES: &[(&str, &str)] = &[
    ("dk_common", include_str!("../../../cuda/dk_common.cuh")),
    ("tree_attention", include_str!("../../../cuda/tree_attention.cu")),
    ("quant_matmul", include_str!("../../../cuda/quant_matmul.cu")),
];

/// The CUDA C++ source of kernel file ``name`` (``"dk_common"``, ``"tree_attention"``, ``"quant_matmul"``).
#[pyfunction]
pub fn _kernel_source(name: &str) -> PyResult<&'static str> {
    SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            let names: Vec<&str> = SOURCES.iter().map(|(n, _)| *n).collect();
            invalid_input(format!("no kernel source named {name:?}; there are {names:?}"))
        })
}
