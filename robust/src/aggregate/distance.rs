//! Distance-based rules: Krum, Multi-Krum and Bulyan.
//!
//! All three need the squared Euclidean distances between clients. They are
//! computed once, directly as `sum (a_k - b_k)^2` (not through the Gram
//! matrix, whose cancellation would change which client Krum picks), over
//! blocks of columns that stay in cache, in parallel; Bulyan's repeated Krum
//! rounds then reuse that one `n x n` matrix instead of recomputing it per
//! round as Flower does.

use mithridate_core::{Error, Result};
use ndarray::{Array1, Array2, ArrayView2};
use rayon::prelude::*;

use super::coordinate::{data, fedavg, CHUNK};
use super::network::{batcher, multiversion, sort_tile, Wire, TILE};

/// Lanes of the partial sums: one AVX register. Each lane is summed in
/// column order and lanes are added in a fixed order, so the portable and
/// the AVX kernels give the same bits.
const LANES: usize = 8;

/// Columns per tile of the distance kernel: 50 rows x 512 `f32` is 100 KiB,
/// which stays in L2 while all pairs of rows are compared over it. Partial
/// sums over one tile are `f32`, tiles are added up in `f64`.
const DTILE: usize = 512;

/// Horizontal sum of the lanes, pairwise.
#[inline(always)]
fn hsum(v: [f32; LANES]) -> f32 {
    let a = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
    (a[0] + a[2]) + (a[1] + a[3])
}

/// The two lane-accumulating loops of the distance kernel. Rows are given
/// as slices of whole chunks (`m * LANES` values). Every implementation keeps
/// [`LANES`] partial sums per pair, each summed in column order, so all give
/// the same bits.
trait Kernels {
    /// Lane sums of `(a - b)^2`.
    fn acc_1(&self, a: &[f32], b: &[f32]) -> [f32; LANES];
    /// Lane sums of `(a_s - b_t)^2` for two rows `a` and four rows `b`.
    fn acc_2x4(&self, a: [&[f32]; 2], b: [&[f32]; 4]) -> [[[f32; LANES]; 4]; 2];
}

/// Plain Rust loops, for any CPU.
struct Portable;

/// `acc += (x - y)^2`, lane by lane, over one chunk.
#[inline(always)]
fn lane_acc(acc: &mut [f32; LANES], x: &[f32], y: &[f32]) {
    for ((a, &u), &v) in acc.iter_mut().zip(x).zip(y) {
        let t = u - v;
        *a += t * t;
    }
}

impl Kernels for Portable {
    fn acc_1(&self, a: &[f32], b: &[f32]) -> [f32; LANES] {
        let mut acc = [0f32; LANES];
        for (x, y) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
            lane_acc(&mut acc, x, y);
        }
        acc
    }
    fn acc_2x4(&self, a: [&[f32]; 2], b: [&[f32]; 4]) -> [[[f32; LANES]; 4]; 2] {
        let mut acc = [[[0f32; LANES]; 4]; 2];
        let m = a[0].len() / LANES;
        for c in 0..m {
            let o = c * LANES..(c + 1) * LANES;
            for (s, x) in a.iter().enumerate() {
                for (t, y) in b.iter().enumerate() {
                    lane_acc(&mut acc[s][t], &x[o.clone()], &y[o.clone()]);
                }
            }
        }
        acc
    }
}

/// AVX kernels written with intrinsics: left to itself the compiler
/// vectorises the 2 x 4 kernel across rows (with shuffles) instead of
/// across columns.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_setzero_ps, _mm256_storeu_ps,
        _mm256_sub_ps,
    };

    use super::{Kernels, LANES};

    /// Proof that the CPU has AVX: only [`Avx::detect`] makes one.
    pub(super) struct Avx(());

    impl Avx {
        /// `Some` when the running CPU supports AVX.
        pub(super) fn detect() -> Option<Self> {
            std::is_x86_feature_detected!("avx").then_some(Avx(()))
        }
    }

    /// Load `LANES` values from the start of `a`.
    ///
    /// # Safety
    /// The CPU must support AVX.
    #[inline]
    #[target_feature(enable = "avx")]
    unsafe fn load(a: &[f32]) -> __m256 {
        let a = &a[..LANES];
        // The slice above has exactly LANES readable values; the load is unaligned.
        _mm256_loadu_ps(a.as_ptr())
    }

    /// # Safety
    /// The CPU must support AVX.
    #[inline]
    #[target_feature(enable = "avx")]
    unsafe fn store(v: __m256) -> [f32; LANES] {
        let mut out = [0f32; LANES];
        // `out` has LANES writable values; the store is unaligned.
        _mm256_storeu_ps(out.as_mut_ptr(), v);
        out
    }

    /// `acc + (x - y)^2`.
    ///
    /// # Safety
    /// The CPU must support AVX.
    #[inline]
    #[target_feature(enable = "avx")]
    unsafe fn step(acc: __m256, x: __m256, y: __m256) -> __m256 {
        let u = _mm256_sub_ps(x, y);
        _mm256_add_ps(acc, _mm256_mul_ps(u, u))
    }

    /// # Safety
    /// The CPU must support AVX.
    #[target_feature(enable = "avx")]
    unsafe fn acc_1(a: &[f32], b: &[f32]) -> [f32; LANES] {
        let mut acc = _mm256_setzero_ps();
        for (x, y) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
            acc = step(acc, load(x), load(y));
        }
        store(acc)
    }

    /// # Safety
    /// The CPU must support AVX.
    #[target_feature(enable = "avx")]
    unsafe fn acc_2x4(a: [&[f32]; 2], b: [&[f32]; 4]) -> [[[f32; LANES]; 4]; 2] {
        let len = a[0].len() / LANES * LANES;
        let (a0, a1) = (&a[0][..len], &a[1][..len]);
        let (b0, b1, b2, b3) = (&b[0][..len], &b[1][..len], &b[2][..len], &b[3][..len]);
        let z = _mm256_setzero_ps();
        let (mut p0, mut p1, mut p2, mut p3) = (z, z, z, z);
        let (mut q0, mut q1, mut q2, mut q3) = (z, z, z, z);
        let mut o = 0;
        while o < len {
            let (x0, x1) = (load(&a0[o..]), load(&a1[o..]));
            let y = load(&b0[o..]);
            p0 = step(p0, x0, y);
            q0 = step(q0, x1, y);
            let y = load(&b1[o..]);
            p1 = step(p1, x0, y);
            q1 = step(q1, x1, y);
            let y = load(&b2[o..]);
            p2 = step(p2, x0, y);
            q2 = step(q2, x1, y);
            let y = load(&b3[o..]);
            p3 = step(p3, x0, y);
            q3 = step(q3, x1, y);
            o += LANES;
        }
        [
            [store(p0), store(p1), store(p2), store(p3)],
            [store(q0), store(q1), store(q2), store(q3)],
        ]
    }

    impl Kernels for Avx {
        fn acc_1(&self, a: &[f32], b: &[f32]) -> [f32; LANES] {
            // SAFETY: an `Avx` exists only when the CPU supports AVX.
            unsafe { acc_1(a, b) }
        }
        fn acc_2x4(&self, a: [&[f32]; 2], b: [&[f32]; 4]) -> [[[f32; LANES]; 4]; 2] {
            // SAFETY: an `Avx` exists only when the CPU supports AVX.
            unsafe { acc_2x4(a, b) }
        }
    }
}

/// Squared distance between two rows of the same length.
#[inline(always)]
fn sq_dist<K: Kernels>(k: &K, a: &[f32], b: &[f32]) -> f32 {
    let m = a.len() / LANES * LANES;
    let mut s = hsum(k.acc_1(&a[..m], &b[..m]));
    for (x, y) in a[m..].iter().zip(&b[m..]) {
        let t = x - y;
        s += t * t;
    }
    s
}

/// Squared distances from each of two rows to each of four rows (all of the
/// same length): six loads feed eight independent accumulators.
#[inline(always)]
fn sq_dist_2x4<K: Kernels>(k: &K, a: [&[f32]; 2], b: [&[f32]; 4]) -> [[f32; 4]; 2] {
    let len = a[0].len();
    let m = len / LANES * LANES;
    let acc = k.acc_2x4(
        [&a[0][..m], &a[1][..m]],
        [&b[0][..m], &b[1][..m], &b[2][..m], &b[3][..m]],
    );
    let mut out = [[0f32; 4]; 2];
    for s in 0..2 {
        for t in 0..4 {
            let mut sum = hsum(acc[s][t]);
            for j in m..len {
                let u = a[s][j] - b[t][j];
                sum += u * u;
            }
            out[s][t] = sum;
        }
    }
    out
}

/// Add the squared distances between all pairs of rows over columns
/// `j0..j1` to the upper triangle of `acc` (`n x n`), tile by tile.
fn dist_chunk_with<K: Kernels>(
    k: &K,
    xs: &[f32],
    n: usize,
    d: usize,
    j0: usize,
    j1: usize,
    acc: &mut [f64],
) {
    let mut c0 = j0;
    while c0 < j1 {
        let c1 = (c0 + DTILE).min(j1);
        let row = |i: usize| &xs[i * d + c0..i * d + c1];
        let mut i = 0;
        while i + 1 < n {
            let a = [row(i), row(i + 1)];
            acc[i * n + i + 1] += f64::from(sq_dist(k, a[0], a[1]));
            let mut r = i + 2;
            while r + 4 <= n {
                let q = sq_dist_2x4(k, a, [row(r), row(r + 1), row(r + 2), row(r + 3)]);
                for s in 0..2 {
                    for t in 0..4 {
                        acc[(i + s) * n + r + t] += f64::from(q[s][t]);
                    }
                }
                r += 4;
            }
            for r in r..n {
                let rr = row(r);
                for s in 0..2 {
                    acc[(i + s) * n + r] += f64::from(sq_dist(k, a[s], rr));
                }
            }
            i += 2;
        }
        c0 = c1;
    }
}

/// [`dist_chunk_with`] on the fastest kernels the CPU has.
fn dist_chunk(xs: &[f32], n: usize, d: usize, j0: usize, j1: usize, acc: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = avx::Avx::detect() {
        return dist_chunk_with(&k, xs, n, d, j0, j1, acc);
    }
    dist_chunk_with(&Portable, xs, n, d, j0, j1, acc);
}

/// Squared Euclidean distances between the rows of `x`: an `n x n` symmetric
/// matrix with a zero diagonal. Partial sums over tiles of 512 columns are
/// `f32` (as Flower's `np.linalg.norm` on `f32` data) and are added up in
/// `f64`.
pub fn pairwise_sq_distances(x: ArrayView2<'_, f32>) -> Result<Array2<f64>> {
    let (n, d) = x.dim();
    let xs = data(x)?;
    let nchunks = d.div_ceil(CHUNK);
    // One matrix per chunk, added in chunk order: the sum does not depend on
    // how the work was split between threads.
    let parts: Vec<Vec<f64>> = (0..nchunks)
        .into_par_iter()
        .map(|b| {
            let mut acc = vec![0f64; n * n];
            dist_chunk(xs, n, d, b * CHUNK, ((b + 1) * CHUNK).min(d), &mut acc);
            acc
        })
        .collect();
    let mut total = vec![0f64; n * n];
    for p in parts {
        total.iter_mut().zip(p).for_each(|(x, y)| *x += y);
    }
    let mut m = Array2::from_shape_vec((n, n), total).map_err(|e| Error::data(e.to_string()))?;
    for i in 0..n {
        for k in i + 1..n {
            m[[k, i]] = m[[i, k]];
        }
    }
    Ok(m)
}

/// Krum scores of the clients in `active` (indices into `dist`), as Flower's
/// `aggregate_krum`: for each client, sort its distances to every active
/// client (itself included), skip the first (its own zero) and add the next
/// `max(1, m - f - 2)`, with `m = active.len()`.
pub fn krum_scores(dist: &Array2<f64>, active: &[usize], byzantine: usize) -> Vec<f64> {
    let m = active.len();
    let closest = (m as i64 - byzantine as i64 - 2).max(1) as usize;
    active
        .iter()
        .map(|&i| {
            let mut row: Vec<f64> = active.iter().map(|&k| dist[[i, k]]).collect();
            row.sort_unstable_by(f64::total_cmp);
            row.iter().skip(1).take(closest).sum()
        })
        .collect()
}

/// Position of the first minimum (NumPy's `argmin`).
fn argmin(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &s) in v.iter().enumerate() {
        if s < v[best] {
            best = i;
        }
    }
    best
}

fn check_krum(n: usize, byzantine: usize) -> Result<()> {
    if n < 2 * byzantine + 3 {
        return Err(Error::param(
            "byzantine",
            format!(
                "Krum needs n >= 2f + 3 clients: {n} clients tolerate at most f = {}",
                n.saturating_sub(3) / 2
            ),
        ));
    }
    Ok(())
}

/// Krum: the update of the client with the lowest score, and its row.
pub fn krum(x: ArrayView2<'_, f32>, byzantine: usize) -> Result<(Array1<f32>, usize)> {
    let n = x.nrows();
    check_krum(n, byzantine)?;
    let dist = pairwise_sq_distances(x)?;
    let active: Vec<usize> = (0..n).collect();
    let best = argmin(&krum_scores(&dist, &active, byzantine));
    Ok((x.row(best).to_owned(), best))
}

/// Multi-Krum: the weighted mean (weights = example counts, as Flower's
/// `aggregate`) of the `keep` clients with the lowest Krum scores, and those
/// clients, best first (ties to the lower row).
pub fn multi_krum(
    x: ArrayView2<'_, f32>,
    weights: Option<&[f32]>,
    byzantine: usize,
    keep: usize,
) -> Result<(Array1<f32>, Vec<usize>)> {
    let n = x.nrows();
    check_krum(n, byzantine)?;
    if keep == 0 || keep > n {
        return Err(Error::param(
            "keep",
            format!("must be in 1..={n} (the number of clients), got {keep}"),
        ));
    }
    let dist = pairwise_sq_distances(x)?;
    let active: Vec<usize> = (0..n).collect();
    let scores = krum_scores(&dist, &active, byzantine);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    order.truncate(keep);
    // Weight 0 for the clients left out: the mean skips them without copying the kept rows.
    let mut w = vec![0f32; n];
    for &i in &order {
        w[i] = weights.map_or(1.0, |w| w[i]);
    }
    if w.iter().all(|&v| v == 0.0) {
        return Err(Error::data("every kept client has weight 0"));
    }
    let params = fedavg(x, Some(&w))?;
    Ok((params, order))
}

multiversion! {
    /// Bulyan's coordinate-wise step over columns `j0..j0 + out.len()`: sort
    /// the selected rows' values per column with `net`, take their median,
    /// and average the `beta` values closest to it.
    ///
    /// In sorted order the `beta` values closest to the median `m` form a
    /// window `L..L + beta`, and `L` is the number of positions `i` where the
    /// value entering the window on the right is closer than the one leaving
    /// on the left, `m - s[i] > s[i + beta] - m` (that test is monotone in
    /// `i`, so counting it is branch-free). Distances are the same `f32`
    /// differences Flower takes (`|m - v|`).
    fn bulyan_tiles(xs: &[f32], d: usize, rows: &[usize], j0: usize, out: &mut [f32], net: &[(usize, usize)], beta: usize) {
        let theta = rows.len();
        let mut s: Vec<Wire> = vec![[0f32; TILE]; theta];
        for (t, chunk) in out.chunks_mut(TILE).enumerate() {
            let c0 = j0 + t * TILE;
            let w = chunk.len();
            for (wire, &i) in s.iter_mut().zip(rows) {
                wire[..w].copy_from_slice(&xs[i * d + c0..i * d + c0 + w]);
            }
            sort_tile(&mut s, net);
            let mut m = s[theta / 2];
            if theta.is_multiple_of(2) {
                let lo = &s[theta / 2 - 1];
                for l in 0..TILE {
                    m[l] = (lo[l] + m[l]) / 2.0;
                }
            }
            let mut start = [0u32; TILE];
            for i in 0..theta - beta {
                let (left, right) = (&s[i], &s[i + beta]);
                for l in 0..TILE {
                    start[l] += u32::from(m[l] - left[l] > right[l] - m[l]);
                }
            }
            let mut acc = [0f64; TILE];
            for (i, wire) in s.iter().enumerate() {
                let i = i as u32;
                for l in 0..TILE {
                    let inside = i >= start[l] && i < start[l] + beta as u32;
                    acc[l] += if inside { f64::from(wire[l]) } else { 0.0 };
                }
            }
            for l in 0..w {
                chunk[l] = (acc[l] / beta as f64) as f32;
            }
        }
    }
}

/// Bulyan with Krum as the selection rule, as Flower's `aggregate_bulyan`:
/// needs `n >= 4f + 3`; selects `theta = n - 2f` clients by repeated Krum on
/// the clients not yet selected, then per coordinate averages the
/// `beta = theta - 2f` selected values closest to the selected clients'
/// coordinate-wise median. Returns the clients in selection order.
///
/// One difference from Flower remains: when two selected values are exactly
/// as far (in `f32`) from the median at the `beta`-th place, which one is
/// averaged depends on NumPy's `argpartition` internals; here it is the
/// smaller one. Ties need equal `f32` distances, so they are rare, but on a
/// million parameters a few coordinates hit one.
pub fn bulyan(x: ArrayView2<'_, f32>, byzantine: usize) -> Result<(Array1<f32>, Vec<usize>)> {
    let (n, d) = x.dim();
    let f = byzantine;
    if n < 4 * f + 3 {
        return Err(Error::param(
            "byzantine",
            format!(
                "Bulyan needs n >= 4f + 3 clients: {n} clients tolerate at most f = {}",
                n.saturating_sub(3) / 4
            ),
        ));
    }
    let theta = n - 2 * f;
    let beta = theta - 2 * f;
    let dist = pairwise_sq_distances(x)?;
    let mut active: Vec<usize> = (0..n).collect();
    let mut selected = Vec::with_capacity(theta);
    for _ in 0..theta {
        let pos = argmin(&krum_scores(&dist, &active, f));
        selected.push(active.remove(pos));
    }
    let xs = data(x)?;
    let net = batcher(theta);
    let mut out = vec![0f32; d];
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(b, chunk)| bulyan_tiles(xs, d, &selected, b * CHUNK, chunk, &net, beta));
    Ok((Array1::from(out), selected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn distances_are_exact_on_small_input() {
        let x = array![[0.0f32, 0.0], [3.0, 4.0], [1.0, 1.0]];
        let d = pairwise_sq_distances(x.view()).unwrap();
        assert_eq!(d[[0, 1]], 25.0);
        assert_eq!(d[[1, 0]], 25.0);
        assert_eq!(d[[0, 2]], 2.0);
        assert_eq!(d[[1, 2]], 13.0);
        assert_eq!(d[[2, 2]], 0.0);
    }

    #[test]
    fn krum_picks_the_centre_of_the_honest_cluster() {
        let x = array![[0.0f32], [0.1], [0.2], [-0.1], [50.0]];
        let (p, i) = krum(x.view(), 1).unwrap();
        assert_eq!(i, 0);
        assert_eq!(p[0], 0.0);
        assert!(krum(x.view(), 2).is_err());
    }
}
