//! Coordinate-wise rules: weighted mean, and median and trimmed mean by
//! sorting networks over tiles of columns.

use mithridate_core::{Error, Result};
use ndarray::{Array1, ArrayView2};
use rayon::prelude::*;

use super::network::{batcher, multiversion, prune, sort_tile, Wire, TILE};
use super::BLOCK;

/// Data of a standard-layout view (callers pass standard-layout views only).
pub(crate) fn data<'a>(x: ArrayView2<'a, f32>) -> Result<&'a [f32]> {
    x.to_slice()
        .ok_or_else(|| Error::data("updates are not in standard (row-major) layout"))
}

/// Columns per parallel task of the tiled kernels: enough tiles that the
/// scheduling cost vanishes, few enough that both cores get work.
pub(crate) const CHUNK: usize = 16 * 1024;

/// What a tiled coordinate-wise kernel reads from the sorted wires of a tile.
#[derive(Clone, Copy)]
enum Stat {
    /// Median: the middle wire, or the `f32` mean of the two middle wires.
    Median,
    /// Mean (summed in `f64`) of sorted wires `cut..n - cut`.
    Trimmed { cut: usize },
}

multiversion! {
    /// Run `net` over every tile of the rows `rows` of `xs` (row length `d`)
    /// in columns `j0..j0 + out.len()` and write the statistic per column.
    fn tiles(xs: &[f32], d: usize, rows: &[usize], j0: usize, out: &mut [f32], net: &[(usize, usize)], stat: Stat) {
        let n = rows.len();
        let mut wires: Vec<Wire> = vec![[0f32; TILE]; n];
        for (t, chunk) in out.chunks_mut(TILE).enumerate() {
            let c0 = j0 + t * TILE;
            let w = chunk.len();
            for (wire, &i) in wires.iter_mut().zip(rows) {
                wire[..w].copy_from_slice(&xs[i * d + c0..i * d + c0 + w]);
            }
            sort_tile(&mut wires, net);
            match stat {
                Stat::Median => {
                    let hi = &wires[n / 2];
                    if n % 2 == 1 {
                        chunk.copy_from_slice(&hi[..w]);
                    } else {
                        let lo = &wires[n / 2 - 1];
                        for l in 0..w {
                            chunk[l] = (lo[l] + hi[l]) / 2.0;
                        }
                    }
                }
                Stat::Trimmed { cut } => {
                    let mut acc = [0f64; TILE];
                    for wire in &wires[cut..n - cut] {
                        for l in 0..TILE {
                            acc[l] += f64::from(wire[l]);
                        }
                    }
                    let keep = (n - 2 * cut) as f64;
                    for l in 0..w {
                        chunk[l] = (acc[l] / keep) as f32;
                    }
                }
            }
        }
    }
}

/// The statistic `stat` of every column of `x`, computed on tiles in parallel.
fn per_column(x: ArrayView2<'_, f32>, net: &[(usize, usize)], stat: Stat) -> Result<Array1<f32>> {
    let (n, d) = x.dim();
    let xs = data(x)?;
    let rows: Vec<usize> = (0..n).collect();
    let mut out = vec![0f32; d];
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(b, chunk)| tiles(xs, d, &rows, b * CHUNK, chunk, net, stat));
    Ok(Array1::from(out))
}

/// Coordinate-wise median, as Flower's `aggregate_median` (`np.median(axis=0)`).
pub fn median(x: ArrayView2<'_, f32>) -> Result<Array1<f32>> {
    let n = x.nrows();
    if n == 0 {
        return Err(Error::data("no client updates to aggregate"));
    }
    let net = prune(&batcher(n), n, &[(n - 1) / 2, n / 2]);
    per_column(x, &net, Stat::Median)
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
/// average the rest (summed in `f64`).
pub fn trimmed_mean(x: ArrayView2<'_, f32>, beta: f64) -> Result<Array1<f32>> {
    let n = x.nrows();
    if n == 0 {
        return Err(Error::data("no client updates to aggregate"));
    }
    let cut = trim_count(beta, n)?;
    if cut == 0 {
        return fedavg(x, None);
    }
    per_column(x, &batcher(n), Stat::Trimmed { cut })
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
    fn median_matches_numpy_on_even_and_odd() {
        let m = |v: &[f32]| {
            median(
                ndarray::Array2::from_shape_vec((v.len(), 1), v.to_vec())
                    .unwrap()
                    .view(),
            )
            .unwrap()[0]
        };
        assert_eq!(m(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(m(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(m(&[7.0]), 7.0);
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
