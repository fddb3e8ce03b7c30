//! SplitMix64: a tiny, fast generator for synthetic data and sampling.
//! Not for anything secret.

/// SplitMix64 (Steele, Lea and Flood), the same sequence for the same state.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `state`.
    pub fn new(state: u64) -> Self {
        Self(state)
    }

    /// The next value.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sequence_is_the_reference_one() {
        // First output of SplitMix64 from state 0 (reference implementation).
        assert_eq!(super::SplitMix64::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    }
}
