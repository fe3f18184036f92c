//! Coordinate-wise rules: weighted mean, median, trimmed mean, and the
//! blocked transpose they share.

use mithridate_core::{Error, Result};
use ndarray::{Array1, ArrayView2};
use rayon::prelude::*;

use super::BLOCK;

/// Data of a standard-layout view (callers pass standard-layout views only).
pub(crate) fn data<'a>(x: ArrayView2<'a, f32>) -> Result<&'a [f32]> {
    x.to_slice()
        .ok_or_else(|| Error::data("updates are not in standard (row-major) layout"))
}

/// Apply `f` to every column of `x` (its `n` values, in a scratch buffer that
/// `f` may reorder) and collect one value per column.
///
/// Columns are processed in blocks of [`BLOCK`]: each block is transposed
/// into a buffer (`n` contiguous values per column) so the selection routines
/// run on contiguous memory, and blocks run in parallel.
/// Order-preserving map of a finite `f32` to `u32` (IEEE total order), so
/// selections compare plain integers.
#[inline]
pub(crate) fn key(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Inverse of [`key`].
#[inline]
pub(crate) fn unkey(k: u32) -> f32 {
    f32::from_bits(if k & 0x8000_0000 != 0 {
        k & 0x7fff_ffff
    } else {
        !k
    })
}

pub(crate) fn per_column<F>(x: ArrayView2<'_, f32>, f: F) -> Result<Array1<f32>>
where
    F: Fn(&mut [u32]) -> f32 + Sync,
{
    let (n, d) = x.dim();
    let xs = data(x)?;
    let mut out = vec![0f32; d];
    // Smaller blocks than the streaming kernels: the transposed buffer is
    // written with stride `n` and should stay in L1/L2; one buffer per worker.
    const TBLOCK: usize = 256;
    out.par_chunks_mut(TBLOCK).enumerate().for_each_init(
        || vec![0u32; n * TBLOCK],
        |buf, (b, chunk)| {
            let j0 = b * TBLOCK;
            let w = chunk.len();
            for i in 0..n {
                let row = &xs[i * d + j0..i * d + j0 + w];
                for (c, &v) in row.iter().enumerate() {
                    buf[c * n + i] = key(v);
                }
            }
            for (c, o) in chunk.iter_mut().enumerate() {
                *o = f(&mut buf[c * n..(c + 1) * n]);
            }
        },
    );
    Ok(Array1::from(out))
}

/// Median of `v` (non-empty, finite) as `numpy.median`: the middle value, or
/// for even length the `f32` mean of the two middle values.
pub(crate) fn median_of(v: &mut [f32]) -> f32 {
    let n = v.len();
    let (left, &mut hi, _) = v.select_nth_unstable_by(n / 2, f32::total_cmp);
    if n % 2 == 1 {
        return hi;
    }
    let lo = left.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (lo + hi) / 2.0
}

/// Coordinate-wise median, as Flower's `aggregate_median` (`np.median(axis=0)`).
pub fn median(x: ArrayView2<'_, f32>) -> Result<Array1<f32>> {
    if x.nrows() == 0 {
        return Err(Error::data("no client updates to aggregate"));
    }
    per_column(x, |v| {
        let n = v.len();
        let (left, &mut hi, _) = v.select_nth_unstable(n / 2);
        let hi = unkey(hi);
        if n % 2 == 1 {
            return hi;
        }
        let lo = unkey(left.iter().copied().max().unwrap_or(0));
        (lo + hi) / 2.0
    })
}

/// How many values Flower's `_trim_mean` cuts at each end: `int(beta * n)`.
pub fn trim_count(beta: f64, n: usize) -> Result<usize> {
    if !(beta.is_finite() && (0.0..0.5).contains(&beta)) {
        return Err(Error::param(
            "trim",
            format!("must be in [0, 0.5), got {beta}"),
        ));
    }
    let cut = (beta * n as f64) as usize;
    if 2 * cut >= n {
        return Err(Error::param(
            "trim",
            format!("cutting {cut} at each end of {n} clients leaves nothing to average"),
        ));
    }
    Ok(cut)
}

/// Coordinate-wise trimmed mean, as Flower's `aggregate_trimmed_avg`: per
/// coordinate drop the `int(beta * n)` smallest and as many largest values and
/// average the rest.
pub fn trimmed_mean(x: ArrayView2<'_, f32>, beta: f64) -> Result<Array1<f32>> {
    let n = x.nrows();
    if n == 0 {
        return Err(Error::data("no client updates to aggregate"));
    }
    let cut = trim_count(beta, n)?;
    let keep = n - 2 * cut;
    per_column(x, |v| {
        let mid: &mut [u32] = if cut == 0 {
            v
        } else {
            let (_, _, right) = v.select_nth_unstable(cut - 1);
            // `right` holds the n - cut largest values; drop its `cut` largest.
            let (mid, _, _) = right.select_nth_unstable(keep);
            mid
        };
        (mid.iter().map(|&a| f64::from(unkey(a))).sum::<f64>() / keep as f64) as f32
    })
}

/// Weighted mean `sum_i w_i x_i / sum_i w_i` (Flower's `aggregate`), equal
/// weights when `weights` is `None`. Accumulates in `f64`.
pub fn fedavg(x: ArrayView2<'_, f32>, weights: Option<&[f32]>) -> Result<Array1<f32>> {
    let (n, d) = x.dim();
    if n == 0 {
        return Err(Error::data("no client updates to aggregate"));
    }
    let w: Vec<f64> = match weights {
        Some(w) if w.len() == n => w.iter().map(|&v| f64::from(v)).collect(),
        Some(w) => return Err(Error::data(format!("{} weights for {n} clients", w.len()))),
        None => vec![1.0; n],
    };
    let total: f64 = w.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return Err(Error::data("weights must sum to a positive finite number"));
    }
    let xs = data(x)?;
    let mut out = vec![0f32; d];
    out.par_chunks_mut(BLOCK)
        .enumerate()
        .for_each(|(b, chunk)| {
            let j0 = b * BLOCK;
            let mut acc = vec![0f64; chunk.len()];
            for (i, &wi) in w.iter().enumerate() {
                if wi == 0.0 {
                    continue;
                }
                let row = &xs[i * d + j0..i * d + j0 + chunk.len()];
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += wi * f64::from(v);
                }
            }
            for (o, a) in chunk.iter_mut().zip(acc) {
                *o = (a / total) as f32;
            }
        });
    Ok(Array1::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn keys_preserve_order_and_round_trip() {
        let vals = [-f32::MAX, -1.5, -0.0, 0.0, 1e-30, 2.0, f32::MAX];
        for w in vals.windows(2) {
            assert!(key(w[0]) <= key(w[1]), "{w:?}");
        }
        for v in vals {
            assert_eq!(unkey(key(v)).to_bits(), v.to_bits());
        }
    }

    #[test]
    fn median_matches_numpy_on_even_and_odd() {
        assert_eq!(median_of(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_of(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median_of(&mut [7.0]), 7.0);
    }

    #[test]
    fn trimmed_mean_cuts_int_beta_n() {
        let x = array![[1.0f32], [2.0], [3.0], [4.0], [100.0]];
        // int(0.2 * 5) = 1: drop 1 and 100.
        assert_eq!(trimmed_mean(x.view(), 0.2).unwrap()[0], 3.0);
        // int(0.19 * 5) = 0: plain mean.
        assert_eq!(trimmed_mean(x.view(), 0.19).unwrap()[0], 22.0);
        assert!(trimmed_mean(x.view(), 0.5).is_err());
    }

    #[test]
    fn blocks_cover_every_column() {
        let d = 2 * BLOCK + 5;
        let x = ndarray::Array2::from_shape_fn((3, d), |(i, j)| (i * d + j) as f32);
        let m = median(x.view()).unwrap();
        assert!(m.iter().enumerate().all(|(j, &v)| v == (d + j) as f32));
        let a = fedavg(x.view(), Some(&[1.0, 0.0, 1.0])).unwrap();
        assert!(a.iter().enumerate().all(|(j, &v)| v == (d + j) as f32));
    }
}
