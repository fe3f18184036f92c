//! Small numerics shared by the detectors: tail bounds, robust location and
//! scale, pairwise distances, nearest neighbours, a Cholesky solve and a fast
//! hasher. Kept here (not in core) because only this layer needs them.

use std::hash::{BuildHasherDefault, Hasher};

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// A fast non-cryptographic hasher (the Fx mix) for integer keys we build
/// ourselves: n-gram and pattern hashes are already well mixed, and SipHash
/// would dominate the 1M-record text scan.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const FX_K: u64 = 0x517c_c1b7_2722_0a95;

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.hash
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.hash = (self.hash.rotate_left(5) ^ v).wrapping_mul(FX_K);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// `HashMap` with [`FxHasher`].
pub type FxMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FxHasher>>;
/// `HashSet` with [`FxHasher`].
pub type FxSet<K> = std::collections::HashSet<K, BuildHasherDefault<FxHasher>>;

/// 64-bit hash of bytes (FNV-1a followed by a SplitMix finaliser): stable
/// across runs and platforms, so trigger keys are reproducible.
pub fn hash_bytes(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= u64::from(x);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// SplitMix64 finaliser.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Combine two hashes order-sensitively.
pub fn combine(a: u64, b: u64) -> u64 {
    mix(a.rotate_left(17) ^ b.wrapping_mul(FX_K))
}

/// `-log10` of an upper bound on `P(X >= k)` for `X ~ Binomial(n, p)`.
///
/// The Chernoff bound `exp(-n KL(k/n || p))` is used: it is conservative (the
/// true tail is never larger), costs O(1) even for a million trials, and is
/// tight to within a factor polynomial in `n`, which is what a ranking of
/// candidate triggers needs. Returns 0 when `k/n <= p`.
pub fn binom_tail_neg_log10(k: u64, n: u64, p: f64) -> f64 {
    if n == 0 || k == 0 {
        return 0.0;
    }
    let q = k as f64 / n as f64;
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    if q <= p {
        return 0.0;
    }
    let kl = if q >= 1.0 {
        -(p.ln())
    } else {
        q * (q / p).ln() + (1.0 - q) * ((1.0 - q) / (1.0 - p)).ln()
    };
    (n as f64 * kl / std::f64::consts::LN_10).max(0.0)
}

/// Median of a slice (0 for an empty one). NaNs sort last.
pub fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

/// Linear-interpolated quantile `q` in `[0, 1]` (0 for an empty slice).
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s: Vec<f64> = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let t = pos - lo as f64;
    s[lo] * (1.0 - t) + s[hi] * t
}

/// Median absolute deviation scaled to be consistent with the standard
/// deviation of a normal distribution.
pub fn mad(v: &[f64]) -> f64 {
    let m = median(v);
    let dev: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    1.4826 * median(&dev)
}

/// Per-column median of `x` (f32 in, f32 out).
pub fn column_medians(x: ArrayView2<'_, f32>) -> Array1<f32> {
    Array1::from_iter(x.axis_iter(Axis(1)).map(|c| {
        let v: Vec<f64> = c.iter().map(|&a| f64::from(a)).collect();
        median(&v) as f32
    }))
}

/// Squared row norms.
fn row_sq_norms(x: ArrayView2<'_, f32>) -> Vec<f32> {
    x.rows().into_iter().map(|r| r.dot(&r)).collect()
}

/// For each row of `q`, the `k` nearest rows of `r` (squared Euclidean
/// distance, ascending), skipping `r`'s row `i` for query `i` when
/// `exclude_self` (leave-one-out on the same matrix).
///
/// Brute force through a blocked matrix product: exact, parallel, and fast
/// enough for the tens of thousands of rows the tabular path sees; larger
/// inputs are subsampled by the caller.
pub fn knn(
    q: ArrayView2<'_, f32>,
    r: ArrayView2<'_, f32>,
    k: usize,
    exclude_self: bool,
) -> Vec<Vec<(usize, f32)>> {
    let qn = row_sq_norms(q);
    let rn = row_sq_norms(r);
    let k = k.min(r.nrows().saturating_sub(usize::from(exclude_self)));
    let block = 256;
    let starts: Vec<usize> = (0..q.nrows()).step_by(block).collect();
    starts
        .into_par_iter()
        .flat_map_iter(|s| {
            let e = (s + block).min(q.nrows());
            let g = q.slice(ndarray::s![s..e, ..]).dot(&r.t());
            let mut out = Vec::with_capacity(e - s);
            for (bi, row) in g.rows().into_iter().enumerate() {
                let i = s + bi;
                let mut d: Vec<(usize, f32)> = row
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| !(exclude_self && *j == i))
                    .map(|(j, &dot)| (j, (qn[i] + rn[j] - 2.0 * dot).max(0.0)))
                    .collect();
                if k < d.len() {
                    d.select_nth_unstable_by(k, |a, b| a.1.total_cmp(&b.1));
                    d.truncate(k);
                }
                d.sort_by(|a, b| a.1.total_cmp(&b.1));
                out.push(d);
            }
            out
        })
        .collect()
}

/// Cholesky factor `L` of a symmetric positive definite `a` (lower
/// triangular, `a = L L^T`), or `None` when `a` is not positive definite.
pub fn cholesky(a: &Array2<f64>) -> Option<Array2<f64>> {
    let n = a.nrows();
    if a.ncols() != n {
        return None;
    }
    let mut l = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[[i, j]];
            for k in 0..j {
                s -= l[[i, k]] * l[[j, k]];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[[i, i]] = s.sqrt();
            } else {
                l[[i, j]] = s / l[[j, j]];
            }
        }
    }
    Some(l)
}

/// `v^T A^{-1} v` given the Cholesky factor `L` of `A`.
pub fn mahalanobis_sq(l: &Array2<f64>, v: &[f64]) -> f64 {
    // Forward substitution L z = v; then |z|^2.
    let n = v.len();
    let mut z = vec![0.0; n];
    let mut acc = 0.0;
    for i in 0..n {
        let mut s = v[i];
        for k in 0..i {
            s -= l[[i, k]] * z[k];
        }
        z[i] = s / l[[i, i]];
        acc += z[i] * z[i];
    }
    acc
}

/// Indices of columns of `x` whose variance exceeds `eps` (a dead unit or a
/// constant pixel carries no information and makes covariances singular).
pub fn live_columns(x: ArrayView2<'_, f32>, eps: f32) -> Vec<usize> {
    let n = x.nrows().max(1) as f32;
    x.axis_iter(Axis(1))
        .enumerate()
        .filter(|(_, c)| {
            let m = c.sum() / n;
            c.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / n > eps
        })
        .map(|(j, _)| j)
        .collect()
}

/// Top eigenvector of the covariance of the rows of `x` (already centred) by
/// power iteration, with a fixed start so results are reproducible.
pub fn top_direction(x: ArrayView2<'_, f32>, iters: usize) -> Array1<f32> {
    let d = x.ncols();
    let mut v = Array1::from_iter((0..d).map(|j| 1.0 + (j as f32 * 0.618).fract()));
    let norm = v.dot(&v).sqrt().max(1e-12);
    v /= norm;
    for _ in 0..iters {
        let xv = x.dot(&v);
        let mut w = x.t().dot(&xv);
        let nw = w.dot(&w).sqrt();
        if nw < 1e-20 {
            break;
        }
        w /= nw;
        v = w;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn binomial_bound_is_monotone_and_zero_below_the_mean() {
        assert_eq!(binom_tail_neg_log10(1, 10, 0.5), 0.0);
        let a = binom_tail_neg_log10(9, 9, 0.1);
        assert!((a - 9.0).abs() < 1e-9, "{a}");
        assert!(binom_tail_neg_log10(8, 10, 0.1) < binom_tail_neg_log10(9, 10, 0.1));
    }

    #[test]
    fn quantiles_and_mad() {
        let v = [1.0, 2.0, 3.0, 4.0, 100.0];
        assert_eq!(median(&v), 3.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert!((mad(&v) - 1.4826).abs() < 1e-9);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn knn_excludes_self_and_sorts() {
        let x = array![[0.0f32], [1.0], [3.0], [10.0]];
        let nn = knn(x.view(), x.view(), 2, true);
        assert_eq!(nn[0][0].0, 1);
        assert_eq!(nn[3][0].0, 2);
        assert!(nn.iter().all(|v| v.len() == 2));
    }

    #[test]
    fn cholesky_solves_mahalanobis() {
        let a = array![[4.0, 2.0], [2.0, 3.0]];
        let l = cholesky(&a).unwrap();
        // v = (1, 0): A^-1 = 1/8 [[3, -2], [-2, 4]] -> 3/8.
        assert!((mahalanobis_sq(&l, &[1.0, 0.0]) - 0.375).abs() < 1e-12);
        assert!(cholesky(&array![[1.0, 2.0], [2.0, 1.0]]).is_none());
    }
}
