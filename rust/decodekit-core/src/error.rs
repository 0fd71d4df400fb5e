//! The one error type of the core. Each variant maps to exactly one Python exception class of the
//! `DecodekitError` hierarchy (see `decodekit-py/src/errors.rs`), so messages are written for the user who
//! passed the bad value: they name the argument and say what was expected.

/// Everything that can go wrong in a core primitive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// Shape, dtype, range, NaN, unnormalized probabilities, a malformed tree.
    #[error("{0}")]
    InvalidInput(String),
    /// A grammar that does not parse or cannot be compiled.
    #[error("{0}")]
    Grammar(String),
    /// A JSON-schema keyword that is not enforced (never silently ignored).
    #[error("{0}")]
    UnsupportedSchema(String),
    /// A tokenizer vocabulary that is inconsistent or unusable.
    #[error("{0}")]
    Vocabulary(String),
    /// Saved bytes that fail the magic, version or checksum check.
    #[error("{0}")]
    CorruptState(String),
    /// Work that would exceed an explicit size or time budget.
    #[error("{0}")]
    ResourceLimit(String),
    /// A broken invariant inside decodekit (a bug, never the caller's fault).
    #[error("internal error in decodekit: {0}")]
    Internal(String),
}

/// Result alias used throughout the core.
pub type Result<T> = std::result::Result<T, CoreError>;

/// Shorthand for `Err(CoreError::InvalidInput(..))` with a formatted message.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => {
        ::core::result::Result::Err($crate::error::CoreError::InvalidInput(format!($($arg)*)))
    };
}
