//! decodekit-core: the pure-Rust half of decodekit.
//!
//! Every decoding primitive lives here as plain functions over slices, with no Python in sight, so it can
//! be tested by `cargo test` and reused from other Rust engines. The `decodekit-py` crate binds these
//! functions to Python; it only checks arguments, releases the GIL and maps errors.

pub mod draft;
pub mod error;
pub mod grammar;
pub mod parallel;
pub mod persist;
pub mod quant;
pub mod rng;
pub mod sampling;
pub mod tree;
pub mod verify;

pub use error::{CoreError, Result};
pub use rng::{derive_seed, Philox};
