//! Seeded orders: data shuffling and the validation split, reproducible from the seed alone
//! (so a resumed run draws the same order an uninterrupted one did).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// A permutation of `0..n` drawn from `seed`.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(seed));
    idx
}

/// A seed for one purpose of one step, from the run's seed: `mix(seed, [epoch])` for the data
/// order of an epoch, `mix(seed, [step, micro])` for the dropout masks of a micro-batch.
pub fn mix(seed: u64, parts: &[u64]) -> u64 {
    // SplitMix64 over the parts: consecutive inputs give unrelated streams.
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    for &p in parts {
        x = x
            .wrapping_add(p.wrapping_mul(0xBF58_476D_1CE4_E5B9))
            .wrapping_add(0x94D0_49BB_1331_11EB);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
    }
    x
}
