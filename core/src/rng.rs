//! Seeded randomness. Every random choice in mithridate goes through a
//! [`ChaCha8Rng`] built from an explicit seed, so runs are reproducible on
//! every platform.

use rand::SeedableRng;
pub use rand_chacha::ChaCha8Rng;

/// A reproducible RNG for `seed`.
pub fn seeded(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A seed derived from `seed` and a `stream` label, so independent parts of a
/// run (split, poison, training) do not share random streams.
pub fn derive_seed(seed: u64, stream: &str) -> u64 {
    // FNV-1a over the label, mixed with the seed by SplitMix64.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stream.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = seed ^ h;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
