//! Robust aggregation of federated client updates.
//!
//! A federated server receives one parameter vector (or update) per client and
//! must combine them into one. Plain averaging ([`Method::FedAvg`]) lets a single
//! Byzantine client move the result anywhere; the other rules bound that
//! influence. Where Flower (`flwr.server.strategy.aggregate`) has the same rule,
//! the result here is the one Flower computes, rounding and tie rules included,
//! so a Flower user who moves the server to this crate gets the same model:
//!
//! | method | Flower function | weights (example counts) |
//! | --- | --- | --- |
//! | [`Method::FedAvg`] | `aggregate` | used |
//! | [`Method::Median`] | `aggregate_median` | ignored, as in Flower |
//! | [`Method::TrimmedMean`] | `aggregate_trimmed_avg` | ignored, as in Flower |
//! | [`Method::Krum`] | `aggregate_krum(.., to_keep=0)` | ignored, as in Flower |
//! | [`Method::MultiKrum`] | `aggregate_krum(.., to_keep=m)` | used for the average of the kept |
//! | [`Method::Bulyan`] | `aggregate_bulyan(.., aggregate_krum, to_keep=0)` | ignored, as in Flower |
//! | [`Method::GeometricMedian`] | none (smoothed Weiszfeld, Pillutla et al. 2022) | used |
//! | [`Method::CenteredClipping`] | none (Karimireddy et al. 2021) | used |
//!
//! Layout: `updates` is `n x d`, one client per row, row-major. Coordinate-wise
//! rules copy tiles of 64 columns of all clients into an L1-resident buffer
//! and sort each tile with a sorting network (lane-wise min/max, no branch on
//! the data), tiles in parallel with rayon; distance-based rules compute the
//! `n x n` matrix of squared distances once, tile by tile with a
//! register-blocked kernel, and never hold anything larger.
//!
//! ```
//! use mithridate_robust::aggregate::{aggregate, Method};
//! use ndarray::array;
//! let updates = array![[1.0f32, 2.0], [1.5, 2.5], [100.0, -50.0]];
//! let agg = aggregate(&Method::Median, updates.view(), None)?;
//! assert_eq!(agg.params.to_vec(), vec![1.5, 2.0]);
//! let agg = aggregate(&Method::Krum { byzantine: 0 }, updates.view(), None)?;
//! assert_eq!(agg.selected, Some(vec![0]));
//! # Ok::<(), mithridate_core::Error>(())
//! ```

mod coordinate;
mod distance;
mod iterative;
mod network;

use std::fmt;
use std::str::FromStr;

use mithridate_core::{Error, Result};
use ndarray::{Array1, ArrayView2};
use serde::{Deserialize, Serialize};

pub use coordinate::{fedavg, median, trimmed_mean};
pub use distance::{bulyan, krum, krum_scores, multi_krum, pairwise_sq_distances};
pub use iterative::{centered_clipping, geometric_median};

/// Columns per block in the blocked kernels: 50 clients x 2048 columns of f32
/// is 400 KiB, which stays in a core's L2 cache while it is reused.
pub(crate) const BLOCK: usize = 2048;

/// An aggregation rule and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "method")]
pub enum Method {
    /// Weighted mean (FedAvg, McMahan et al. 2017): no robustness, the baseline.
    FedAvg,
    /// Coordinate-wise median (Yin et al. 2018); for even `n` the mean of the middle two, as NumPy.
    Median,
    /// Coordinate-wise trimmed mean: drop `int(beta * n)` smallest and as many largest values per coordinate.
    TrimmedMean {
        /// Fraction cut at each end, `0 <= beta < 0.5`.
        beta: f64,
    },
    /// Krum (Blanchard et al. 2017): the one client whose `n - f - 2` nearest
    /// neighbours are closest.
    Krum {
        /// Assumed number of Byzantine clients `f`.
        byzantine: usize,
    },
    /// Multi-Krum: the weighted mean of the `keep` clients with the lowest Krum scores.
    MultiKrum {
        /// Assumed number of Byzantine clients `f`.
        byzantine: usize,
        /// Clients kept, `1..=n`.
        keep: usize,
    },
    /// Bulyan (El Mhamdi et al. 2018) with Krum as the selection rule: needs `n >= 4f + 3`.
    Bulyan {
        /// Assumed number of Byzantine clients `f`.
        byzantine: usize,
    },
    /// Geometric median by smoothed Weiszfeld iterations (RFA, Pillutla et al. 2022).
    GeometricMedian {
        /// Smoothing `nu > 0`: distances below it count as `nu`, so a client that
        /// sits on the estimate cannot make the step divide by zero.
        smoothing: f64,
        /// Most iterations.
        max_iter: usize,
        /// Stop when the objective improves by less than this fraction.
        tol: f64,
    },
    /// Centered clipping (Karimireddy, He & Jaggi 2021), started from the coordinate-wise median.
    CenteredClipping {
        /// Clipping radius; `None` picks the median distance of the clients to the start.
        tau: Option<f64>,
        /// Clipping iterations.
        iters: usize,
    },
}

impl Method {
    /// Geometric median with the usual parameters (`nu = 1e-6`, 100 iterations, `tol = 1e-6`).
    pub fn geometric_median() -> Self {
        Method::GeometricMedian {
            smoothing: 1e-6,
            max_iter: 100,
            tol: 1e-6,
        }
    }

    /// Centered clipping with an adaptive radius and 3 iterations.
    pub fn centered_clipping() -> Self {
        Method::CenteredClipping {
            tau: None,
            iters: 3,
        }
    }

    /// Short name as used on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Method::FedAvg => "fedavg",
            Method::Median => "median",
            Method::TrimmedMean { .. } => "trimmed-mean",
            Method::Krum { .. } => "krum",
            Method::MultiKrum { .. } => "multi-krum",
            Method::Bulyan { .. } => "bulyan",
            Method::GeometricMedian { .. } => "geometric-median",
            Method::CenteredClipping { .. } => "centered-clipping",
        }
    }

    /// Largest number of Byzantine clients among `n` that the rule tolerates
    /// by its own analysis (what `--byzantine` may be at most).
    pub fn max_byzantine(&self, n: usize) -> usize {
        match self {
            Method::FedAvg => 0,
            Method::Median | Method::GeometricMedian { .. } | Method::CenteredClipping { .. } => {
                n.saturating_sub(1) / 2
            }
            Method::TrimmedMean { beta } => (beta * n as f64) as usize,
            Method::Krum { .. } | Method::MultiKrum { .. } => n.saturating_sub(3) / 2,
            Method::Bulyan { .. } => n.saturating_sub(3) / 4,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The names [`MethodKind::from_str`] accepts.
pub const METHOD_NAMES: [&str; 8] = [
    "median",
    "trimmed-mean",
    "krum",
    "multi-krum",
    "bulyan",
    "geometric-median",
    "centered-clipping",
    "fedavg",
];

/// A method name without its parameters (what a command line names first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodKind {
    /// [`Method::FedAvg`].
    FedAvg,
    /// [`Method::Median`].
    Median,
    /// [`Method::TrimmedMean`].
    TrimmedMean,
    /// [`Method::Krum`].
    Krum,
    /// [`Method::MultiKrum`].
    MultiKrum,
    /// [`Method::Bulyan`].
    Bulyan,
    /// [`Method::GeometricMedian`].
    GeometricMedian,
    /// [`Method::CenteredClipping`].
    CenteredClipping,
}

impl FromStr for MethodKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "fedavg" | "mean" => MethodKind::FedAvg,
            "median" => MethodKind::Median,
            "trimmed-mean" => MethodKind::TrimmedMean,
            "krum" => MethodKind::Krum,
            "multi-krum" => MethodKind::MultiKrum,
            "bulyan" => MethodKind::Bulyan,
            "geometric-median" => MethodKind::GeometricMedian,
            "centered-clipping" => MethodKind::CenteredClipping,
            _ => {
                return Err(Error::param(
                    "method",
                    format!(
                        "unknown method `{s}`; expected one of {}",
                        METHOD_NAMES.join(", ")
                    ),
                ))
            }
        })
    }
}

/// The result of an aggregation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// The aggregated parameter vector, `d` entries.
    pub params: Array1<f32>,
    /// Rows chosen by the Krum family: Krum's one client, Multi-Krum's kept
    /// clients (best score first), Bulyan's selection set (in selection order).
    /// `None` for rules that do not select clients.
    pub selected: Option<Vec<usize>>,
    /// Iterations run by the iterative rules (geometric median, centered clipping).
    pub iterations: Option<usize>,
}

/// Check `updates` and `weights` and say which client is wrong.
///
/// Every rule needs at least one client, finite values (one NaN would poison a
/// mean and makes a median's answer depend on the sort), and one non-negative
/// finite weight per client with a positive sum.
pub fn check_updates(updates: ArrayView2<'_, f32>, weights: Option<&[f32]>) -> Result<()> {
    let n = updates.nrows();
    if n == 0 {
        return Err(Error::data("no client updates to aggregate"));
    }
    if let Some((i, j)) = first_nonfinite(updates) {
        return Err(Error::data(format!(
            "client {i} (row {i}) has a non-finite value {} at parameter {j}",
            updates[[i, j]]
        )));
    }
    if let Some(w) = weights {
        if w.len() != n {
            return Err(Error::data(format!("{} weights for {n} clients", w.len())));
        }
        if let Some((i, v)) = w
            .iter()
            .enumerate()
            .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
        {
            return Err(Error::data(format!(
                "weight of client {i} is {v}: weights must be finite and non-negative"
            )));
        }
        if w.iter().map(|&v| f64::from(v)).sum::<f64>() <= 0.0 {
            return Err(Error::data("weights sum to zero"));
        }
    }
    Ok(())
}

/// The first `(row, column)` holding NaN or an infinity, if any.
///
/// Scans blocks of columns without stopping at each value (an `any` that
/// can return early does not vectorise), in parallel over blocks; only a
/// block that holds a non-finite value is searched value by value.
pub fn first_nonfinite(updates: ArrayView2<'_, f32>) -> Option<(usize, usize)> {
    use rayon::prelude::*;
    fn all_finite(v: &[f32]) -> bool {
        // An exponent of all ones is an infinity or a NaN.
        v.iter().fold(0u32, |bad, x| {
            bad | u32::from(x.to_bits() & 0x7f80_0000 == 0x7f80_0000)
        }) == 0
    }
    let (n, d) = updates.dim();
    if d == 0 {
        return None;
    }
    if let Some(xs) = updates.as_slice() {
        const SCAN: usize = 1 << 16;
        return xs
            .par_chunks(SCAN)
            .enumerate()
            .find_first(|(_, c)| !all_finite(c))
            .and_then(|(b, c)| {
                c.iter()
                    .position(|v| !v.is_finite())
                    .map(|p| ((b * SCAN + p) / d, (b * SCAN + p) % d))
            });
    }
    (0..n)
        .into_par_iter()
        .find_first(|&i| updates.row(i).iter().any(|v| !v.is_finite()))
        .and_then(|i| {
            updates
                .row(i)
                .iter()
                .position(|v| !v.is_finite())
                .map(|j| (i, j))
        })
}

/// Rows of `updates` that hold only finite values (what `--drop-nonfinite` keeps).
pub fn finite_rows(updates: ArrayView2<'_, f32>) -> Vec<usize> {
    (0..updates.nrows())
        .filter(|&i| updates.row(i).iter().all(|v| v.is_finite()))
        .collect()
}

/// Aggregate `updates` (`n` clients x `d` parameters) with `method`, weighting
/// clients by `weights` (example counts) where the rule uses weights.
///
/// Errors (never panics) on: no clients, a non-finite value (naming the
/// client), wrong weights, too few clients for the assumed number of
/// Byzantine clients, and out-of-range parameters.
pub fn aggregate(
    method: &Method,
    updates: ArrayView2<'_, f32>,
    weights: Option<&[f32]>,
) -> Result<Aggregate> {
    check_updates(updates, weights)?;
    if updates.is_standard_layout() {
        run(method, updates, weights)
    } else {
        let owned = updates.as_standard_layout().into_owned();
        run(method, owned.view(), weights)
    }
}

fn run(method: &Method, x: ArrayView2<'_, f32>, weights: Option<&[f32]>) -> Result<Aggregate> {
    let plain = |params| Aggregate {
        params,
        selected: None,
        iterations: None,
    };
    Ok(match *method {
        Method::FedAvg => plain(fedavg(x, weights)?),
        Method::Median => plain(median(x)?),
        Method::TrimmedMean { beta } => plain(trimmed_mean(x, beta)?),
        Method::Krum { byzantine } => {
            let (params, i) = krum(x, byzantine)?;
            Aggregate {
                params,
                selected: Some(vec![i]),
                iterations: None,
            }
        }
        Method::MultiKrum { byzantine, keep } => {
            let (params, sel) = multi_krum(x, weights, byzantine, keep)?;
            Aggregate {
                params,
                selected: Some(sel),
                iterations: None,
            }
        }
        Method::Bulyan { byzantine } => {
            let (params, sel) = bulyan(x, byzantine)?;
            Aggregate {
                params,
                selected: Some(sel),
                iterations: None,
            }
        }
        Method::GeometricMedian {
            smoothing,
            max_iter,
            tol,
        } => {
            let (params, it) = geometric_median(x, weights, smoothing, max_iter, tol)?;
            Aggregate {
                params,
                selected: None,
                iterations: Some(it),
            }
        }
        Method::CenteredClipping { tau, iters } => {
            let (params, it) = centered_clipping(x, weights, tau, iters)?;
            Aggregate {
                params,
                selected: None,
                iterations: Some(it),
            }
        }
    })
}

/// [`aggregate`] over a row-major buffer of `n` rows (`data.len() / n`
/// parameters each), for callers that hold plain vectors (the command line,
/// bindings) rather than `ndarray` views.
pub fn aggregate_rows(
    method: &Method,
    data: &[f32],
    n: usize,
    weights: Option<&[f32]>,
) -> Result<Aggregate> {
    if n == 0 {
        return Err(Error::data("no client updates to aggregate"));
    }
    if !data.len().is_multiple_of(n) {
        return Err(Error::data(format!(
            "{} values do not split into {n} equal rows",
            data.len()
        )));
    }
    let x = ArrayView2::from_shape((n, data.len() / n), data)
        .map_err(|e| Error::data(e.to_string()))?;
    aggregate(method, x, weights)
}
