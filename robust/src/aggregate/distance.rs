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

use super::coordinate::{data, fedavg, median_of};
use super::BLOCK;

/// Lanes of the partial sums: enough independent accumulators for the
/// compiler to vectorise the loop without reassociating floating point.
const LANES: usize = 16;

fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            let t = x[l] - y[l];
            acc[l] += t * t;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        let t = x - y;
        s += t * t;
    }
    s
}

/// Squared distances from `a` to four rows of the same length at once.
fn sq_dist4(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    const L: usize = 8;
    let mut acc = [[0f32; L]; 4];
    let m = a.len() / L * L;
    let mut j = 0;
    while j < m {
        let x = &a[j..j + L];
        for (t, bt) in b.iter().enumerate() {
            let y = &bt[j..j + L];
            for l in 0..L {
                let u = x[l] - y[l];
                acc[t][l] += u * u;
            }
        }
        j += L;
    }
    let mut out = [0f32; 4];
    for t in 0..4 {
        let mut s: f32 = acc[t].iter().sum();
        for jj in m..a.len() {
            let u = a[jj] - b[t][jj];
            s += u * u;
        }
        out[t] = s;
    }
    out
}

/// Squared Euclidean distances between the rows of `x`: an `n x n` symmetric
/// matrix with a zero diagonal. Partial sums per block are `f32` (as
/// Flower's `np.linalg.norm` on `f32` data) and are added up in `f64`.
pub fn pairwise_sq_distances(x: ArrayView2<'_, f32>) -> Result<Array2<f64>> {
    let (n, d) = x.dim();
    let xs = data(x)?;
    let nblocks = d.div_ceil(BLOCK);
    let total = (0..nblocks)
        .into_par_iter()
        .fold(
            || vec![0f64; n * n],
            |mut acc, b| {
                let j0 = b * BLOCK;
                let j1 = (j0 + BLOCK).min(d);
                for i in 0..n {
                    let ri = &xs[i * d + j0..i * d + j1];
                    // Four partners per pass: `ri` is loaded once for four distances.
                    let mut k = i + 1;
                    while k + 4 <= n {
                        let r = |t: usize| &xs[(k + t) * d + j0..(k + t) * d + j1];
                        let q = sq_dist4(ri, [r(0), r(1), r(2), r(3)]);
                        for t in 0..4 {
                            acc[i * n + k + t] += f64::from(q[t]);
                        }
                        k += 4;
                    }
                    for k in k..n {
                        let rk = &xs[k * d + j0..k * d + j1];
                        acc[i * n + k] += f64::from(sq_dist(ri, rk));
                    }
                }
                acc
            },
        )
        .reduce(
            || vec![0f64; n * n],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        );
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

/// Bulyan with Krum as the selection rule, as Flower's `aggregate_bulyan`:
/// needs `n >= 4f + 3`; selects `theta = n - 2f` clients by repeated Krum on
/// the clients not yet selected, then per coordinate averages the
/// `beta = theta - 2f` selected values closest to the selected clients'
/// coordinate-wise median. Returns the clients in selection order.
///
/// One difference from Flower remains: when two selected values are exactly
/// as far (in `f32`) from the median at the `beta`-th place, which one is
/// averaged depends on NumPy's `argpartition` internals; here it is whichever
/// Rust's `select_nth_unstable` keeps. Ties need equal `f32` distances, so
/// they are rare, but on a million parameters a few coordinates hit one.
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
    let mut out = vec![0f32; d];
    let sel = &selected;
    out.par_chunks_mut(BLOCK)
        .enumerate()
        .for_each(|(b, chunk)| {
            let j0 = b * BLOCK;
            let w = chunk.len();
            // Transposed block: theta contiguous values per column.
            let mut buf = vec![0f32; theta * w];
            for (s, &i) in sel.iter().enumerate() {
                let row = &xs[i * d + j0..i * d + j0 + w];
                for (c, &v) in row.iter().enumerate() {
                    buf[c * theta + s] = v;
                }
            }
            let mut scratch = vec![0f32; theta];
            let mut pairs = vec![(0f32, 0f32); theta];
            for (c, o) in chunk.iter_mut().enumerate() {
                let col = &buf[c * theta..(c + 1) * theta];
                scratch.copy_from_slice(col);
                let med = median_of(&mut scratch);
                for (p, &v) in pairs.iter_mut().zip(col) {
                    *p = ((med - v).abs(), v);
                }
                let closest: &[(f32, f32)] = if beta < theta {
                    pairs.select_nth_unstable_by(beta - 1, |a, b| a.0.total_cmp(&b.0));
                    &pairs[..beta]
                } else {
                    &pairs[..]
                };
                *o = (closest.iter().map(|p| f64::from(p.1)).sum::<f64>() / beta as f64) as f32;
            }
        });
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
