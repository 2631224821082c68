//! CPython's `random.Random`, as far as KSWIN needs it: the Mersenne Twister (MT19937) seeded
//! from an integer the way `random.seed(int)` does (`init_by_array` over the seed's 32-bit
//! words), `getrandbits`, `_randbelow` by rejection and `sample(range(n), k)` with both of its
//! strategies. With the same seed, KSWIN draws the same reference windows as River's.

const N: usize = 624;
const M: usize = 397;

/// MT19937 with CPython's seeding and draws.
#[derive(Clone)]
pub(crate) struct PyRandom {
    mt: [u32; N],
    index: usize,
}

impl PyRandom {
    /// `random.Random(seed)`: the seed's magnitude, cut into 32-bit words from the low end.
    pub(crate) fn new(seed: u64) -> Self {
        let low = seed as u32;
        let high = (seed >> 32) as u32;
        let key: &[u32] = if high == 0 { &[low] } else { &[low, high] };
        let mut rng = Self { mt: [0; N], index: N };
        rng.init_by_array(key);
        rng
    }

    fn init_genrand(&mut self, s: u32) {
        self.mt[0] = s;
        for i in 1..N {
            let prev = self.mt[i - 1];
            self.mt[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
        }
        self.index = N;
    }

    fn init_by_array(&mut self, key: &[u32]) {
        self.init_genrand(19_650_218);
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let prev = self.mt[i - 1];
            self.mt[i] = (self.mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                self.mt[0] = self.mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = self.mt[i - 1];
            self.mt[i] = (self.mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                self.mt[0] = self.mt[N - 1];
                i = 1;
            }
        }
        self.mt[0] = 0x8000_0000;
    }

    fn twist(&mut self) {
        for k in 0..N {
            let y = (self.mt[k] & 0x8000_0000) | (self.mt[(k + 1) % N] & 0x7fff_ffff);
            let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
            self.mt[k] = self.mt[(k + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `getrandbits(k)` for `k <= 64`: 32-bit words from the low end, the last one cut down.
    fn getrandbits(&mut self, k: u32) -> u64 {
        debug_assert!(k <= 64);
        if k == 0 {
            return 0;
        }
        if k <= 32 {
            return u64::from(self.next_u32() >> (32 - k));
        }
        let low = u64::from(self.next_u32());
        let high = u64::from(self.next_u32() >> (64 - k));
        low | (high << 32)
    }

    /// `_randbelow(n)` for `n > 0`: draws of `n.bit_length()` bits until one is under `n`.
    fn below(&mut self, n: usize) -> usize {
        let bits = usize::BITS - n.leading_zeros();
        loop {
            let r = self.getrandbits(bits) as usize;
            if r < n {
                return r;
            }
        }
    }

    /// `sample(range(n), k)` into `out` (cleared first), in selection order; `pool` is
    /// scratch space kept by the caller so that a draw allocates nothing once warm.
    pub(crate) fn sample(
        &mut self,
        n: usize,
        k: usize,
        out: &mut Vec<usize>,
        pool: &mut Vec<usize>,
    ) {
        debug_assert!(k <= n);
        out.clear();
        // CPython's choice between a pool and a set of taken indices, by its size estimate.
        let mut setsize = 21usize;
        if k > 5 {
            let exponent = ((k as f64 * 3.0).ln() / 4f64.ln()).ceil() as u32;
            setsize = setsize.saturating_add(4usize.saturating_pow(exponent));
        }
        if n <= setsize {
            pool.clear();
            pool.extend(0..n);
            for i in 0..k {
                let j = self.below(n - i);
                out.push(pool[j]);
                pool[j] = pool[n - i - 1];
            }
        } else {
            // `pool` doubles as the taken set: a sorted list of chosen indices (k is small
            // beside n here, so a binary search beats hashing).
            pool.clear();
            for _ in 0..k {
                let mut j = self.below(n);
                while pool.binary_search(&j).is_ok() {
                    j = self.below(n);
                }
                if let Err(at) = pool.binary_search(&j) {
                    pool.insert(at, j);
                }
                out.push(j);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_match_cpython() {
        // python3 -c "import random; r = random.Random(42); print([r.getrandbits(32) for _ in range(3)])"
        let mut r = PyRandom::new(42);
        let words: Vec<u64> = (0..3).map(|_| r.getrandbits(32)).collect();
        assert_eq!(words, [2_746_317_213, 478_163_327, 107_420_369]);
        // python3 -c "import random; print(random.Random(7).sample(range(70), 5))"
        let mut r = PyRandom::new(7);
        let (mut out, mut pool) = (Vec::new(), Vec::new());
        r.sample(70, 5, &mut out, &mut pool);
        assert_eq!(out, [41, 19, 50, 6, 9]);
        // python3 -c "import random; print(random.Random(2**40 + 3).sample(range(1000), 6))"
        let mut r = PyRandom::new((1 << 40) + 3);
        r.sample(1000, 6, &mut out, &mut pool);
        assert_eq!(out, [225, 62, 562, 853, 96, 579]);
    }
}
