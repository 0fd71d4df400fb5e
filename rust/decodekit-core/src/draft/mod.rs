//! Train-free drafters: they propose [`DraftTree`](crate::tree::DraftTree)s from token statistics alone.
//!
//! * [`ngram::PromptLookup`]: per-sequence prompt lookup, incremental (amortized O(max_n) per token).

pub mod ngram;
pub mod recycling;
pub mod store;
pub mod trigram;

use crate::error::Result;
use crate::invalid;

/// Check token ids: non-negative and, when a vocabulary size is known, below it.
pub fn check_tokens(tokens: &[i32], vocab_size: Option<u32>, name: &str) -> Result<()> {
    if let Some((i, &t)) = tokens.iter().enumerate().find(|(_, &t)| t < 0) {
        return invalid!("{name}[{i}] = {t} is not a token id (ids are >= 0)");
    }
    if let Some(v) = vocab_size {
        if let Some((i, &t)) = tokens.iter().enumerate().find(|(_, &t)| t as u32 >= v) {
            return invalid!("{name}[{i}] = {t} is outside the vocabulary (vocab_size = {v})");
        }
    }
    Ok(())
}
