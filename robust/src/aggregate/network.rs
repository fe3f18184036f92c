//! Sorting networks over tiles of columns, and the CPU-feature dispatch the
//! hot kernels use.
//!
//! A coordinate-wise rule needs, for every coordinate, an order statistic of
//! `n` client values. Doing that one coordinate at a time (a quickselect per
//! column) is branchy and slow. Here a tile of [`TILE`] coordinates of all
//! `n` clients is copied into a small buffer (`n` rows of [`TILE`] values,
//! about 13 KiB for 50 clients, so it stays in L1), and a sorting network is
//! run over it: each comparator is a lane-wise `min`/`max` of two rows, so
//! one instruction sorts 8 coordinates at once (16 with AVX-512) and no
//! branch depends on the data. Batcher's odd-even merge sort network for
//! `n = 50` has 403 comparators; a median needs only the 330 that feed its
//! middle wires.

/// Columns per tile: `n x TILE` `f32` values stay in L1 for `n` up to ~150.
pub(crate) const TILE: usize = 64;

/// One wire of a tile: one client's values of [`TILE`] coordinates.
pub(crate) type Wire = [f32; TILE];

/// Batcher's odd-even merge sort network for `n` wires (any `n`, not only
/// powers of two), as a list of comparators `(a, b)`, `a < b`: after the
/// network, wire `i` holds the `i`-th smallest value.
pub(crate) fn batcher(n: usize) -> Vec<(usize, usize)> {
    let mut net = Vec::new();
    let mut p = 1;
    while p < n {
        let mut k = p;
        while k >= 1 {
            let mut j = k % p;
            while j + k < n {
                for i in 0..k.min(n - j - k) {
                    if (i + j) / (2 * p) == (i + j + k) / (2 * p) {
                        net.push((i + j, i + j + k));
                    }
                }
                j += 2 * k;
            }
            k /= 2;
        }
        p *= 2;
    }
    net
}

/// The comparators of `net` that can influence the wires in `outputs`
/// (the others are dropped: their results are never read).
pub(crate) fn prune(net: &[(usize, usize)], n: usize, outputs: &[usize]) -> Vec<(usize, usize)> {
    let mut needed = vec![false; n];
    for &o in outputs {
        needed[o] = true;
    }
    let mut kept: Vec<(usize, usize)> = net
        .iter()
        .rev()
        .filter(|&&(a, b)| {
            if needed[a] || needed[b] {
                needed[a] = true;
                needed[b] = true;
                true
            } else {
                false
            }
        })
        .copied()
        .collect();
    kept.reverse();
    kept
}

/// Run the comparators of `net` over the wires (lane-wise `min`/`max`).
///
/// `if x < y { x } else { y }` is exactly the semantics of the `minps`
/// instruction, so the loop compiles to packed `min`/`max` without the extra
/// NaN handling of `f32::min` (inputs are checked finite beforehand). Equal
/// values (`-0.0` and `0.0`) may come out in either order, which changes no
/// order statistic's value.
#[inline(always)]
pub(crate) fn sort_tile(wires: &mut [Wire], net: &[(usize, usize)]) {
    for &(a, b) in net {
        let (lo, hi) = wires.split_at_mut(b);
        let (wa, wb) = (&mut lo[a], &mut hi[0]);
        for l in 0..TILE {
            let (x, y) = (wa[l], wb[l]);
            let lt = x < y;
            wa[l] = if lt { x } else { y };
            wb[l] = if lt { y } else { x };
        }
    }
}

/// Define `fn $name(..)` twice from one body: once compiled for the baseline
/// target and once with AVX2 enabled, and pick the AVX2 one at run time when
/// the CPU has it. The body is the same code, so both give the same bits
/// (no reassociation, no fused multiply-add); AVX2 only makes the lane loops
/// twice as wide.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn generic($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                /// # Safety
                /// The CPU must support AVX2.
                #[allow(unsafe_code)]
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    generic($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: `avx2` only needs the AVX2 instructions, and
                    // the CPU was just checked to support them.
                    #[allow(unsafe_code)]
                    let r = unsafe { avx2($($arg),*) };
                    return r;
                }
            }
            generic($($arg),*)
        }
    };
}
pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;

    fn sorts(net: &[(usize, usize)], v: &mut [u32]) {
        for &(a, b) in net {
            if v[a] > v[b] {
                v.swap(a, b);
            }
        }
    }

    #[test]
    fn batcher_sorts_every_zero_one_input() {
        // 0-1 principle: a network sorts everything iff it sorts all 0/1 inputs.
        for n in 1..=16usize {
            let net = batcher(n);
            assert!(net.iter().all(|&(a, b)| a < b && b < n));
            for bits in 0u32..(1 << n) {
                let mut v: Vec<u32> = (0..n).map(|i| (bits >> i) & 1).collect();
                sorts(&net, &mut v);
                assert!(v.windows(2).all(|w| w[0] <= w[1]), "n={n} bits={bits:b}");
            }
        }
    }

    #[test]
    fn batcher_sorts_random_inputs_of_many_sizes() {
        use rand::Rng;
        let mut rng = mithridate_core::rng::seeded(3);
        for n in [17, 30, 31, 49, 50, 64, 100, 129] {
            let net = batcher(n);
            let med = prune(&net, n, &[(n - 1) / 2, n / 2]);
            assert!(med.len() <= net.len());
            for _ in 0..200 {
                let v: Vec<u32> = (0..n).map(|_| rng.gen_range(0..20)).collect();
                let mut want = v.clone();
                want.sort_unstable();
                let mut got = v.clone();
                sorts(&net, &mut got);
                assert_eq!(got, want);
                let mut m = v.clone();
                sorts(&med, &mut m);
                assert_eq!(m[n / 2], want[n / 2]);
                assert_eq!(m[(n - 1) / 2], want[(n - 1) / 2]);
            }
        }
    }

    #[test]
    fn tile_sort_orders_each_lane() {
        let n = 7;
        let mut wires: Vec<Wire> = (0..n)
            .map(|i| std::array::from_fn(|l| ((i * 37 + l * 11) % 13) as f32 - 6.0))
            .collect();
        sort_tile(&mut wires, &batcher(n));
        for w in wires.windows(2) {
            assert!(w[0].iter().zip(&w[1]).all(|(a, b)| a <= b));
        }
    }
}
