//! Iterative rules: geometric median (smoothed Weiszfeld) and centered clipping.
//!
//! Both repeat "distance of every client to the current estimate, then a
//! weighted mean", so each iteration is two passes over the `n x d` updates
//! and no memory beyond `O(n + d)`.

use mithridate_core::{Error, Result};
use ndarray::{Array1, ArrayView2};
use rayon::prelude::*;

use super::coordinate::{data, fedavg, median};
use super::BLOCK;

/// Euclidean distance of every row of `x` to `z`, in `f64`.
fn distances_to(xs: &[f32], n: usize, d: usize, z: &[f32]) -> Vec<f64> {
    (0..n)
        .into_par_iter()
        .map(|i| {
            let row = &xs[i * d..(i + 1) * d];
            row.iter()
                .zip(z)
                .map(|(&a, &b)| f64::from(a - b).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect()
}

/// `sum_i c_i x_i`, with `c_i` already normalised, accumulated in `f64`.
fn combine(xs: &[f32], d: usize, coef: &[f64]) -> Vec<f32> {
    let mut out = vec![0f32; d];
    out.par_chunks_mut(BLOCK)
        .enumerate()
        .for_each(|(b, chunk)| {
            let j0 = b * BLOCK;
            let mut acc = vec![0f64; chunk.len()];
            for (i, &c) in coef.iter().enumerate() {
                if c == 0.0 {
                    continue;
                }
                let row = &xs[i * d + j0..i * d + j0 + chunk.len()];
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += c * f64::from(v);
                }
            }
            for (o, a) in chunk.iter_mut().zip(acc) {
                *o = a as f32;
            }
        });
    out
}

fn weights_f64(weights: Option<&[f32]>, n: usize) -> Result<Vec<f64>> {
    match weights {
        Some(w) if w.len() == n => Ok(w.iter().map(|&v| f64::from(v)).collect()),
        Some(w) => Err(Error::data(format!("{} weights for {n} clients", w.len()))),
        None => Ok(vec![1.0; n]),
    }
}

/// Geometric median `argmin_z sum_i w_i ||z - x_i||` by smoothed Weiszfeld
/// iterations (Pillutla, Kakade & Harchaoui, "Robust aggregation for
/// federated learning", 2022): start at the weighted mean, then repeat
/// `z <- sum_i b_i x_i / sum_i b_i` with `b_i = w_i / max(nu, ||z - x_i||)`
/// until the objective improves by less than `tol` (relative) or `max_iter`
/// iterations ran. Returns the estimate and the iterations run.
pub fn geometric_median(
    x: ArrayView2<'_, f32>,
    weights: Option<&[f32]>,
    smoothing: f64,
    max_iter: usize,
    tol: f64,
) -> Result<(Array1<f32>, usize)> {
    if !(smoothing.is_finite() && smoothing > 0.0) {
        return Err(Error::param(
            "smoothing",
            "must be a positive finite number",
        ));
    }
    if !(tol.is_finite() && tol >= 0.0) {
        return Err(Error::param("tol", "must be a non-negative finite number"));
    }
    let (n, d) = x.dim();
    let w = weights_f64(weights, n)?;
    let xs = data(x)?;
    let mut z = fedavg(x, weights)?.to_vec();
    let objective = |dist: &[f64]| dist.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>();
    let mut dist = distances_to(xs, n, d, &z);
    let mut obj = objective(&dist);
    let mut it = 0;
    while it < max_iter {
        it += 1;
        let b: Vec<f64> = dist
            .iter()
            .zip(&w)
            .map(|(&di, &wi)| wi / di.max(smoothing))
            .collect();
        let s: f64 = b.iter().sum();
        let coef: Vec<f64> = b.iter().map(|v| v / s).collect();
        let znew = combine(xs, d, &coef);
        let dnew = distances_to(xs, n, d, &znew);
        let onew = objective(&dnew);
        let improved = obj - onew;
        z = znew;
        dist = dnew;
        let done = improved <= tol * obj.max(f64::MIN_POSITIVE);
        obj = onew;
        if done {
            break;
        }
    }
    Ok((Array1::from(z), it))
}

/// Centered clipping (Karimireddy, He & Jaggi, "Learning from history for
/// Byzantine robust optimization", ICML 2021): starting from `v` (here the
/// coordinate-wise median, since a stateless call has no previous round),
/// repeat `v <- v + sum_i w_i clip_tau(x_i - v) / sum_i w_i` where
/// `clip_tau(u) = u * min(1, tau / ||u||)`. A client can then move the result
/// by at most `tau * w_i / sum w` per iteration, whatever it sends.
/// `tau = None` takes the median distance of the clients to the start.
pub fn centered_clipping(
    x: ArrayView2<'_, f32>,
    weights: Option<&[f32]>,
    tau: Option<f64>,
    iters: usize,
) -> Result<(Array1<f32>, usize)> {
    let (n, d) = x.dim();
    let w = weights_f64(weights, n)?;
    let total: f64 = w.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return Err(Error::data("weights must sum to a positive finite number"));
    }
    let xs = data(x)?;
    let mut v = median(x)?.to_vec();
    let tau = match tau {
        Some(t) if t.is_finite() && t > 0.0 => t,
        Some(t) => {
            return Err(Error::param(
                "tau",
                format!("must be a positive finite number, got {t}"),
            ))
        }
        None => {
            let mut dist = distances_to(xs, n, d, &v);
            dist.sort_unstable_by(f64::total_cmp);
            let m = dist[n / 2];
            if m > 0.0 {
                m
            } else {
                f64::MIN_POSITIVE
            }
        }
    };
    for _ in 0..iters {
        let dist = distances_to(xs, n, d, &v);
        // v + sum c_i (x_i - v) = (1 - sum c_i) v + sum c_i x_i.
        let coef: Vec<f64> = dist
            .iter()
            .zip(&w)
            .map(|(&di, &wi)| wi / total * if di > tau { tau / di } else { 1.0 })
            .collect();
        let keep = 1.0 - coef.iter().sum::<f64>();
        let moved = combine(xs, d, &coef);
        v.iter_mut()
            .zip(moved)
            .for_each(|(a, m)| *a = (keep * f64::from(*a) + f64::from(m)) as f32);
    }
    Ok((Array1::from(v), iters))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn geometric_median_of_collinear_points_is_the_middle_one() {
        let x = array![[0.0f32, 0.0], [1.0, 0.0], [100.0, 0.0]];
        let (z, it) = geometric_median(x.view(), None, 1e-9, 1000, 1e-12).unwrap();
        assert!((z[0] - 1.0).abs() < 1e-2, "{z}");
        assert!(it > 1);
    }

    #[test]
    fn centered_clipping_bounds_one_outlier() {
        let x = array![[0.0f32], [0.1], [-0.1], [1e6]];
        let (v, _) = centered_clipping(x.view(), None, Some(1.0), 3).unwrap();
        assert!(v[0].abs() < 1.0, "{v}");
    }
}
