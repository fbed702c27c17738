//! The simulator's own pseudo-random number generator.
//!
//! Why not the `rand` crate: a simulation is only useful as a test oracle if
//! `--seed 7` gives the *same bytes* tomorrow, on another machine and after
//! a dependency upgrade. `rand` documents that its `StdRng` algorithm may
//! change between versions, and its distributions (ranges, shuffles) have
//! changed their sampling methods before. The twenty lines below are fully
//! specified here: xoshiro256** (Blackman and Vigna) seeded through
//! SplitMix64, unbiased bounded integers by rejection, and probabilities
//! from the top 53 bits (IEEE 754 doubles are exact and identical on every
//! platform Rust supports). Not cryptographic, and it need not be.

/// SplitMix64: expands one `u64` into well-mixed words. Used to seed
/// [`Rng`] and to derive independent sub-streams from `(seed, index)`.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// xoshiro256**: the generator every random choice of the simulator uses.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator seeded from `seed` through SplitMix64 (never all zero:
    /// SplitMix64 outputs four consecutive distinct words).
    pub fn new(seed: u64) -> Self {
        let mut mix = SplitMix64::new(seed);
        Self {
            s: [
                mix.next_u64(),
                mix.next_u64(),
                mix.next_u64(),
                mix.next_u64(),
            ],
        }
    }

    /// An independent stream for item `index` of a run seeded with `seed`:
    /// item 17's choices do not depend on how many items came before it or
    /// on what they drew, so changing `--orders` keeps the first orders'
    /// stories.
    pub fn derive(seed: u64, stream: u64, index: u64) -> Self {
        let mut mix = SplitMix64::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let base = mix.next_u64();
        Self::new(base ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform integer in `0..bound` (0 when `bound` is 0), without
    /// modulo bias: draws above the largest multiple of `bound` are redrawn.
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        let zone = u64::MAX - (u64::MAX % bound + 1) % bound;
        loop {
            let x = self.next_u64();
            if x <= zone {
                return x % bound;
            }
        }
    }

    /// A uniform integer in `low..=high` (`low` when `high < low`).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        match (high - low).checked_add(1) {
            Some(span) => low + self.below(span),
            None => self.next_u64(),
        }
    }

    /// A uniform index into a slice of `len` elements (0 for an empty one).
    pub fn index(&mut self, len: usize) -> usize {
        // usize -> u64 -> usize is lossless on every supported target, and
        // the result is below `len`.
        self.below(len as u64) as usize
    }

    /// A uniform double in `[0, 1)` from the top 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `true` with probability `p` (`p <= 0` never, `p >= 1` always).
    pub fn chance(&mut self, p: f64) -> bool {
        // Always draw, so the stream advances the same way whatever `p` is.
        let x = self.unit();
        x < p
    }

    /// One element of a non-empty slice; `None` for an empty one.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        items.get(self.index(items.len()))
    }

    /// An index chosen with probability proportional to `weights[i]`;
    /// `None` when every weight is 0.
    pub fn weighted(&mut self, weights: &[u32]) -> Option<usize> {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        if total == 0 {
            return None;
        }
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            let w = u64::from(w);
            if x < w {
                return Some(i);
            }
            x -= w;
        }
        None
    }

    /// Fisher-Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned outputs: if these change, every published seed changes its
    /// meaning. SplitMix64(0) is the reference sequence of Vigna's C code.
    #[test]
    fn outputs_are_pinned() {
        let mut mix = SplitMix64::new(0);
        assert_eq!(mix.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(mix.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let first: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        assert_eq!(first, (0..4).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(Rng::new(43).next_u64(), first[0]);
    }

    #[test]
    fn bounded_draws_stay_in_bounds() {
        let mut rng = Rng::new(1);
        for bound in [1u64, 2, 3, 7, 10, 1000, u64::MAX] {
            for _ in 0..200 {
                assert!(rng.below(bound) < bound);
            }
        }
        assert_eq!(rng.below(0), 0);
        for _ in 0..200 {
            let x = rng.range(5, 9);
            assert!((5..=9).contains(&x));
        }
        assert_eq!(rng.range(3, 3), 3);
        // The full range must not overflow.
        let _ = rng.range(0, u64::MAX);
        let mut items: Vec<u32> = (0..50).collect();
        rng.shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(items, sorted, "a 50-element shuffle is not the identity");
        assert_eq!(rng.weighted(&[0, 0]), None);
        assert_eq!(rng.weighted(&[0, 5, 0]), Some(1));
    }
}
