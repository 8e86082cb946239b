//! Power-of-two-choices placement (Infiniswap): probe two random candidate
//! hosts and take the one with more free memory. Cheap, needs no global view,
//! and keeps load close to balanced.

/// xorshift64*: fast, good enough for choosing hosts; not for secrets.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (zero is replaced, xorshift would stay at zero).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// Next pseudo-random value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish index below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Picks one of `candidates` (host index, free bytes): two random distinct
/// ones, the freer wins. `None` if there are no candidates.
pub fn two_choices(candidates: &[(usize, u64)], rng: &mut Rng) -> Option<usize> {
    match candidates.len() {
        0 => None,
        1 => Some(candidates[0].0),
        n => {
            let a = rng.below(n);
            let mut b = rng.below(n - 1);
            if b >= a {
                b += 1;
            }
            let (ha, fa) = candidates[a];
            let (hb, fb) = candidates[b];
            Some(if fb > fa { hb } else { ha })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_the_freer_host_and_never_the_fullest_of_three() {
        let mut rng = Rng::new(42);
        let c = [(0, 10), (1, 1000), (2, 500)];
        let mut picks = [0usize; 3];
        for _ in 0..3000 {
            picks[two_choices(&c, &mut rng).unwrap()] += 1;
        }
        // Host 0 loses every pair it is in; host 1 wins every pair it is in.
        assert_eq!(picks[0], 0);
        assert!(picks[1] > picks[2], "{picks:?}");
        assert_eq!(two_choices(&[], &mut rng), None);
        assert_eq!(two_choices(&[(7, 0)], &mut rng), Some(7));
    }
}
