//! Token bitmasks (`int32[batch, ceil(V/32)]`, bit `j` of word `w` = token `32*w + j`) applied to logits.

use crate::error::Result;

/// Set every logit whose token is not allowed by `mask` to `-inf`, row by row.
///
/// `logits` is `[rows, width]` and `mask` is `[rows, words]` with `32 * words >= width`; ids at or above
/// `width` in the mask are ignored.
pub fn apply_token_bitmask(logits: &mut [f32], width: usize, mask: &[u32], words: usize) -> Result<()> {
    if width == 0 {
        return Ok(());
    }
    let rows = logits.len() / width;
    if logits.len() != rows * width || mask.len() != rows * words {
        return crate::invalid!(
            "logits ({} values, width {width}) and bitmask ({} words, {words} per row) have different row counts",
            logits.len(),
            mask.len()
        );
    }
    if words * 32 < width {
        return crate::invalid!(
            "the bitmask has {words} words per row, which covers {} tokens, but the logits have {width}",
            words * 32
        );
    }
    let apply_row = |row: &mut [f32], bits: &[u32]| {
        for (chunk, &word) in row.chunks_mut(32).zip(bits) {
            if word == u32::MAX {
                continue;
            }
            for (j, x) in chunk.iter_mut().enumerate() {
                if word >> j & 1 == 0 {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
    };
    if rows * width < 1 << 16 {
        for (row, bits) in logits.chunks_mut(width).zip(mask.chunks(words)) {
            apply_row(row, bits);
        }
        return Ok(());
    }
    crate::parallel::for_each_row_mut(logits, rows, |r, row| {
        apply_row(row, &mask[r * words..(r + 1) * words]);
        Ok(())
    })
}

/// The ids allowed by one bitmask row, ascending.
#[must_use]
pub fn allowed_ids(row: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    for (w, &word) in row.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            out.push(w as u32 * 32 + bits.trailing_zeros());
            bits &= bits - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_logits() {
        let mut logits = vec![1.0f32; 2 * 40];
        let mask = [0b101, 1 << 7, u32::MAX, 0];
        apply_token_bitmask(&mut logits, 40, &mask, 2).unwrap();
        let kept: Vec<usize> = (0..80).filter(|&i| logits[i].is_finite()).collect();
        assert_eq!(
            kept,
            vec![
                0, 2, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60,
                61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71
            ]
        );
        assert_eq!(allowed_ids(&[0b101, 1 << 7]), vec![0, 2, 39]);
        assert!(apply_token_bitmask(&mut logits, 40, &mask[..3], 2).is_err());
        assert!(apply_token_bitmask(&mut logits, 80, &mask[..1], 1).is_err());
    }
}
