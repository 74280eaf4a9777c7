//! A tiny deterministic PRNG (xorshift64*) for randomized tests: a failure names its seed,
//! and the same seed replays the same choices.

/// xorshift64*, seeded.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// A generator that starts from exactly `state` (not 0), for tests whose schedules were
    /// calibrated with a given sequence; prefer [`Rng::new`].
    pub fn from_state(state: u64) -> Rng {
        assert_ne!(state, 0, "xorshift never leaves state 0");
        Rng(state)
    }

    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `0..n` for a test (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform enough in `lo..=hi`.
    pub fn between(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// One of `items`, uniformly enough (`items` not empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        let index = self.below(items.len() as u64);
        items[usize::try_from(index).expect("an index below a slice's length fits usize")]
    }

    /// True with probability `per_mille`/1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn same_seed_same_sequence_and_bounds_hold() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(a.next(), b.next());
        }
        for _ in 0..100 {
            assert!(a.below(10) < 10);
            let x = a.between((3, 5));
            assert!((3..=5).contains(&x));
        }
        assert_ne!(Rng::new(1).next(), Rng::new(2).next());
        let items = ["a", "b", "c"];
        for _ in 0..100 {
            assert!(items.contains(&a.pick(&items)));
        }
    }
}
