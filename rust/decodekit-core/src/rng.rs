//! Counter-based random numbers (Philox4x32-10, Salmon et al. 2011).
//!
//! A counter-based generator is a pure function of `(key, counter)`, so the value drawn for a given row does
//! not depend on how many threads run, in which order rows are processed, or which other rows share the
//! batch. decodekit keys every row's stream by a 64-bit seed; [`derive_seed`] turns one user seed into many
//! independent row seeds (what `decodekit.Rng` hands out).

const MUL0: u32 = 0xD251_1F53;
const MUL1: u32 = 0xCD9E_8D57;
const WEYL0: u32 = 0x9E37_79B9;
const WEYL1: u32 = 0xBB67_AE85;

/// The Philox4x32 bijection with 10 rounds: four 32-bit words out per `(counter, key)`.
#[must_use]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(WEYL0);
            k[1] = k[1].wrapping_add(WEYL1);
        }
        let p0 = u64::from(MUL0) * u64::from(c[0]);
        let p1 = u64::from(MUL1) * u64::from(c[2]);
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// The stream number reserved for [`derive_seed`], so derived seeds never collide with the values a row
/// stream (stream 0 of the same key) produces.
const SEED_STREAM: u64 = u64::MAX;

/// The `index`-th seed derived from `seed`: a fixed, platform-independent function.
#[must_use]
pub fn derive_seed(seed: u64, index: u64) -> u64 {
    let w = philox4x32_10(
        [
            index as u32,
            (index >> 32) as u32,
            SEED_STREAM as u32,
            (SEED_STREAM >> 32) as u32,
        ],
        [seed as u32, (seed >> 32) as u32],
    );
    u64::from(w[0]) | (u64::from(w[1]) << 32)
}

/// A stream of random numbers keyed by a 64-bit seed: block `b` of stream `s` is
/// `philox4x32_10([b_lo, b_hi, s_lo, s_hi], [seed_lo, seed_hi])`.
#[derive(Debug, Clone)]
pub struct Philox {
    key: [u32; 2],
    stream: u64,
    block: u64,
    buffer: [u32; 4],
    used: usize,
}

impl Philox {
    /// The stream `stream` of the generator keyed by `seed`, positioned at its first value.
    #[must_use]
    pub fn new(seed: u64, stream: u64) -> Self {
        Self {
            key: [seed as u32, (seed >> 32) as u32],
            stream,
            block: 0,
            buffer: [0; 4],
            used: 4,
        }
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        if self.used == 4 {
            let b = self.block;
            let s = self.stream;
            self.buffer = philox4x32_10([b as u32, (b >> 32) as u32, s as u32, (s >> 32) as u32], self.key);
            self.block = self.block.wrapping_add(1);
            self.used = 0;
        }
        let v = self.buffer[self.used];
        self.used += 1;
        v
    }

    /// The next 64 random bits (low word drawn first).
    pub fn next_u64(&mut self) -> u64 {
        let lo = u64::from(self.next_u32());
        let hi = u64::from(self.next_u32());
        lo | (hi << 32)
    }

    /// A uniform double in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// A uniform double in the open interval `(0, 1)`, safe to take logarithms of.
    pub fn next_open_f64(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// A standard Gumbel variate, `-ln(-ln(u))`, computed with the portable `libm` so every platform draws
    /// the same value.
    pub fn next_gumbel(&mut self) -> f64 {
        -libm::log(-libm::log(self.next_open_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known-answer vectors published with the Random123 library (kat_vectors, philox4x32_10).
    #[test]
    fn philox_known_answers() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn uniform_ranges() {
        let mut rng = Philox::new(7, 0);
        for _ in 0..10_000 {
            let u = rng.next_f64();
            assert!((0.0..1.0).contains(&u));
            let v = rng.next_open_f64();
            assert!(v > 0.0 && v < 1.0);
        }
    }

    #[test]
    fn derived_seeds_differ() {
        let seeds: Vec<u64> = (0..1000).map(|i| derive_seed(42, i)).collect();
        let mut sorted = seeds.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), seeds.len());
        assert_ne!(derive_seed(42, 0), derive_seed(43, 0));
    }
}
