//! Weight-only quantization (FineQuant style): int8 or int4 codes per weight, one scale (and, when
//! asymmetric, one zero point) per group of consecutive input columns, packed into int32 words in the
//! order the CUDA kernels dequantize fastest.
//!
//! A weight `W[N, K]` (an `nn.Linear` weight: `N` outputs, `K` inputs) is cut along `K` into groups of
//! `group_size` columns (`group_size = K` is per-channel). A weight is stored as an unsigned code
//! `u = q + zero` and comes back as `(u - zero) * scale`. Symmetric quantization uses `zero = 2^(bits-1)`
//! (8 or 128) and `scale = max|w| / (2^(bits-1) - 1)`; asymmetric quantization spreads `[min, max]` of the
//! group over all `2^bits` codes with a rounded zero point.
//!
//! Packing: int8 puts codes `k..k+4` in bytes 0..3 of a word. int4 interleaves eight codes
//! `v0..v7` as nibbles `[v0, v2, v4, v6, v1, v3, v5, v7]` (low nibble first), so that `(word >> 4i) &
//! 0x000f000f` holds the pair `(v_2i, v_2i+1)` in its two 16-bit halves, ready for the magic-number
//! conversion to fp16/bf16 pairs. [`pack`] and [`unpack`] are exact inverses.

use crate::error::{CoreError, Result};

/// Group sizes the CUDA kernels are built for, finest first (`K` itself means per-channel).
pub const KERNEL_GROUP_SIZES: [usize; 3] = [32, 64, 128];

/// How the group size is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupSize {
    /// One scale per output channel (`group_size = K`).
    PerChannel,
    /// A fixed group size (divides `K`).
    Fixed(usize),
    /// FineQuant's adaptive granularity; see [`choose_group_size`].
    Auto,
}

/// A quantized weight: codes packed in int32 words and per-group scales (and zero points).
#[derive(Clone, Debug, PartialEq)]
pub struct Quantized {
    /// Bits per code: 4 or 8.
    pub bits: u32,
    /// Output features `N`.
    pub rows: usize,
    /// Input features `K`.
    pub cols: usize,
    /// Columns per group (`cols` for per-channel).
    pub group_size: usize,
    /// Packed codes, `[N, K * bits / 32]`.
    pub packed: Vec<u32>,
    /// Scales, `[N, K / group_size]`.
    pub scales: Vec<f32>,
    /// Zero points in code units, `[N, K / group_size]` (all `2^(bits-1)` when symmetric).
    pub zeros: Vec<f32>,
    /// Whether the zero points are the fixed symmetric ones.
    pub symmetric: bool,
}

fn check_shape(rows: usize, cols: usize, len: usize, bits: u32) -> Result<()> {
    if bits != 4 && bits != 8 {
        return crate::invalid!("bits must be 4 or 8, got {bits}");
    }
    if rows == 0 || cols == 0 || rows.checked_mul(cols) != Some(len) {
        return crate::invalid!("weight of {len} values is not a non-empty [{rows}, {cols}] matrix");
    }
    let per_word = 32 / bits as usize;
    if cols % per_word != 0 {
        return crate::invalid!("K = {cols} must be a multiple of {per_word} to pack {bits}-bit codes");
    }
    Ok(())
}

/// Quantize one group of weights; returns `(scale, zero)` and writes the codes.
fn quantize_group(values: &[f32], bits: u32, symmetric: bool, codes: &mut [u8]) -> (f32, f32) {
    let levels = (1u32 << bits) - 1;
    let (scale, zero) = if symmetric {
        let absmax = values.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
        let half = (1u32 << (bits - 1)) as f32;
        (if absmax > 0.0 { absmax / (half - 1.0) } else { 1.0 }, half)
    } else {
        let (lo, hi) = values
            .iter()
            .fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let scale = if hi > lo { (hi - lo) / levels as f32 } else { 1.0 };
        (scale, (-lo / scale).round().clamp(0.0, levels as f32))
    };
    for (code, &v) in codes.iter_mut().zip(values) {
        *code = ((v / scale).round() + zero).clamp(0.0, levels as f32) as u8;
    }
    (scale, zero)
}

/// Quantize `weight` (`[rows, cols]`, row-major) with a fixed group size.
pub fn quantize(
    weight: &[f32],
    rows: usize,
    cols: usize,
    bits: u32,
    group: GroupSize,
    symmetric: bool,
) -> Result<Quantized> {
    check_shape(rows, cols, weight.len(), bits)?;
    if let Some(bad) = weight.iter().find(|v| !v.is_finite()) {
        return crate::invalid!("the weight holds a non-finite value ({bad})");
    }
    let group_size = match group {
        GroupSize::PerChannel => cols,
        GroupSize::Fixed(g) => g,
        GroupSize::Auto => choose_group_size(weight, rows, cols, bits, symmetric)?,
    };
    if group_size == 0 || cols % group_size != 0 || group_size % (32 / bits as usize) != 0 {
        return crate::invalid!(
            "group_size = {group_size} must divide K = {cols} and be a multiple of {}",
            32 / bits as usize
        );
    }
    let groups = cols / group_size;
    let words_per_row = cols * bits as usize / 32;
    // Rows are independent: quantize them on the library's pool, then lay them out in order.
    let per_row = crate::parallel::map_rows(rows, |r| {
        let row = &weight[r * cols..(r + 1) * cols];
        let mut codes = vec![0u8; cols];
        let mut params = Vec::with_capacity(groups);
        for g in 0..groups {
            let span = g * group_size..(g + 1) * group_size;
            params.push(quantize_group(
                &row[span.clone()],
                bits,
                symmetric,
                &mut codes[span],
            ));
        }
        let mut words = vec![0u32; words_per_row];
        pack(&codes, bits, &mut words);
        Ok((words, params))
    })?;
    let mut packed = Vec::with_capacity(rows * words_per_row);
    let mut scales = Vec::with_capacity(rows * groups);
    let mut zeros = Vec::with_capacity(rows * groups);
    for (words, params) in per_row {
        packed.extend_from_slice(&words);
        for (scale, zero) in params {
            scales.push(scale);
            zeros.push(zero);
        }
    }
    Ok(Quantized {
        bits,
        rows,
        cols,
        group_size,
        packed,
        scales,
        zeros,
        symmetric,
    })
}

/// Pack codes (`bits` wide, any count divisible by `32 / bits`) into words, in the kernel's order.
pub fn pack(codes: &[u8], bits: u32, out: &mut [u32]) {
    if bits == 8 {
        for (word, c) in out.iter_mut().zip(codes.chunks_exact(4)) {
            *word = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
    } else {
        for (word, c) in out.iter_mut().zip(codes.chunks_exact(8)) {
            let mut w = 0u32;
            for i in 0..4 {
                w |= u32::from(c[2 * i] & 0xf) << (4 * i);
                w |= u32::from(c[2 * i + 1] & 0xf) << (4 * (i + 4));
            }
            *word = w;
        }
    }
}

/// Unpack words into codes: the inverse of [`pack`].
pub fn unpack(words: &[u32], bits: u32, out: &mut [u8]) {
    if bits == 8 {
        for (w, c) in words.iter().zip(out.chunks_exact_mut(4)) {
            c.copy_from_slice(&w.to_le_bytes());
        }
    } else {
        for (&w, c) in words.iter().zip(out.chunks_exact_mut(8)) {
            for i in 0..4 {
                c[2 * i] = ((w >> (4 * i)) & 0xf) as u8;
                c[2 * i + 1] = ((w >> (4 * (i + 4))) & 0xf) as u8;
            }
        }
    }
}

impl Quantized {
    /// The weight the codes stand for, `[rows, cols]` in f32: `(code - zero) * scale`.
    #[must_use]
    pub fn dequantize(&self) -> Vec<f32> {
        let groups = self.cols / self.group_size;
        let words_per_row = self.cols * self.bits as usize / 32;
        let mut codes = vec![0u8; self.cols];
        let mut out = vec![0.0f32; self.rows * self.cols];
        for r in 0..self.rows {
            unpack(
                &self.packed[r * words_per_row..(r + 1) * words_per_row],
                self.bits,
                &mut codes,
            );
            for (k, (&code, value)) in codes
                .iter()
                .zip(&mut out[r * self.cols..(r + 1) * self.cols])
                .enumerate()
            {
                let g = r * groups + k / self.group_size;
                *value = (f32::from(code) - self.zeros[g]) * self.scales[g];
            }
        }
        out
    }
}

/// Relative Frobenius error `||W - deq(Q(W))|| / ||W||` of quantizing with `group_size`.
pub fn relative_error(
    weight: &[f32],
    rows: usize,
    cols: usize,
    bits: u32,
    group_size: usize,
    symmetric: bool,
) -> Result<f64> {
    let q = quantize(weight, rows, cols, bits, GroupSize::Fixed(group_size), symmetric)?;
    let back = q.dequantize();
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    for (&w, &d) in weight.iter().zip(&back) {
        err += f64::from(w - d).powi(2);
        norm += f64::from(w).powi(2);
    }
    Ok(if norm > 0.0 { (err / norm).sqrt() } else { 0.0 })
}

/// How much worse than the finest kernel group size a coarser granularity may be and still be chosen.
/// Gaussian-like weights lose about 1.4x (K = 512) to 1.65x (K = 4096) in relative error going from
/// groups of 32 to per-channel, at 4 and at 8 bits; one outlier per channel makes that about 4x.
pub const AUTO_ERROR_TOLERANCE: f64 = 2.0;

/// FineQuant's adaptive granularity, as decodekit implements it: start per-channel and halve the group
/// size (per-channel, then 128, 64, 32 where they divide `K`) while the matrix's relative quantization
/// error is more than [`AUTO_ERROR_TOLERANCE`] times the error at the finest group size. Outliers blow
/// up the error of coarse groups (one large value stretches the scale of its whole group), so matrices
/// with outliers end up with finer groups; well-behaved matrices keep coarse ones (fewer scales to read).
pub fn choose_group_size(
    weight: &[f32],
    rows: usize,
    cols: usize,
    bits: u32,
    symmetric: bool,
) -> Result<usize> {
    check_shape(rows, cols, weight.len(), bits)?;
    let mut candidates: Vec<usize> = vec![cols];
    for &g in KERNEL_GROUP_SIZES.iter().rev() {
        if g < cols && cols % g == 0 {
            candidates.push(g);
        }
    }
    let finest = *candidates.last().expect("per-channel is always a candidate");
    let floor = relative_error(weight, rows, cols, bits, finest, symmetric)?;
    for &g in &candidates {
        if g == finest
            || relative_error(weight, rows, cols, bits, g, symmetric)? <= AUTO_ERROR_TOLERANCE * floor
        {
            return Ok(g);
        }
    }
    Err(CoreError::Internal("no group size was chosen".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::Philox::new(seed, 0);
        (0..n)
            .map(|_| {
                let (u, v) = (rng.next_f64().max(1e-12), rng.next_f64());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect()
    }

    #[test]
    fn pack_and_unpack_are_inverses() {
        for bits in [4u32, 8] {
            let codes: Vec<u8> = (0..64u32).map(|i| ((i * 37 + 5) % (1 << bits)) as u8).collect();
            let mut words = vec![0u32; 64 * bits as usize / 32];
            pack(&codes, bits, &mut words);
            let mut back = vec![0u8; 64];
            unpack(&words, bits, &mut back);
            assert_eq!(back, codes);
        }
        // The int4 interleave: nibbles 0 and 4 hold codes 0 and 1.
        let mut word = [0u32];
        pack(&[1, 2, 3, 4, 5, 6, 7, 8], 4, &mut word);
        assert_eq!(word[0] & 0x000f_000f, 0x0002_0001);
    }

    #[test]
    fn error_bounds() {
        let w = gaussian(64 * 256, 1);
        for (bits, symmetric) in [(8, true), (8, false), (4, true), (4, false)] {
            let q = quantize(&w, 64, 256, bits, GroupSize::Fixed(64), symmetric).unwrap();
            let back = q.dequantize();
            for (g, (chunk, deq)) in w.chunks(64).zip(back.chunks(64)).enumerate() {
                let scale = q.scales[g];
                for (a, b) in chunk.iter().zip(deq) {
                    assert!(
                        (a - b).abs() <= scale * 0.5 + 1e-6,
                        "bits {bits}: {a} -> {b}, scale {scale}"
                    );
                }
            }
        }
    }

    #[test]
    fn auto_prefers_finer_groups_with_outliers() {
        let (rows, cols) = (64, 512);
        let plain = gaussian(rows * cols, 2);
        let mut spiky = plain.clone();
        for r in 0..rows {
            spiky[r * cols + (r * 97) % cols] = 40.0; // one large outlier per output channel
        }
        let calm = choose_group_size(&plain, rows, cols, 4, true).unwrap();
        let chosen = choose_group_size(&spiky, rows, cols, 4, true).unwrap();
        assert!(chosen < calm, "outliers chose {chosen}, plain weights {calm}");
        assert_eq!(choose_group_size(&plain, rows, cols, 8, true).unwrap(), cols);
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert!(quantize(&[0.0; 12], 2, 6, 4, GroupSize::PerChannel, true).is_err());
        assert!(quantize(&[0.0; 16], 2, 8, 3, GroupSize::PerChannel, true).is_err());
        assert!(quantize(&[0.0; 64], 2, 32, 4, GroupSize::Fixed(12), true).is_err());
        assert!(quantize(&[f32::NAN; 16], 2, 8, 4, GroupSize::PerChannel, true).is_err());
        assert!(quantize(&[0.0; 16], 2, 8, 4, GroupSize::PerChannel, true).is_ok());
    }
}
