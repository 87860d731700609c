//! A tiny deterministic pseudo-random generator (xorshift64) for what needs
//! spread, not secrecy: backoff jitter, incompressible benchmark payloads,
//! test data, random offsets in benchmarks.

#[derive(Clone, Debug)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// A generator from `seed` (0 is replaced: xorshift would stay at 0).
    pub fn new(seed: u64) -> XorShift64 {
        XorShift64(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `len` bytes that do not compress.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_deterministic_per_seed_and_never_stuck_at_zero() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = XorShift64::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let mut again = XorShift64::new(7);
        assert_eq!(a, (0..4).map(|_| again.next_u64()).collect::<Vec<_>>());
        assert_ne!(XorShift64::new(0).next_u64(), 0);
        assert_ne!(XorShift64::new(1).bytes(64), XorShift64::new(2).bytes(64));
    }
}
