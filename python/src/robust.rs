//! Differential-privacy accountants and robust aggregation
//! (`mithridate-robust`).

use mithridate_robust::aggregate::{aggregate_rows, Method, MethodKind};
use mithridate_robust::dp::{self, AccountantKind};
use numpy::{
    AllowTypeChange, PyArray1, PyArrayLike2, PyArrayLikeDyn, PyArrayMethods, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::error::{DataError, IntoPyResult};

fn accountant(name: &str) -> PyResult<AccountantKind> {
    name.parse::<AccountantKind>().py()
}

/// Epsilon after `steps` steps of the Poisson-subsampled Gaussian mechanism
/// (sampling rate `q`, noise multiplier `sigma`) at `delta`.
#[pyfunction]
#[pyo3(signature = (q, sigma, steps, delta, accountant = "rdp"))]
fn epsilon(
    py: Python<'_>,
    q: f64,
    sigma: f64,
    steps: u64,
    delta: f64,
    accountant: &str,
) -> PyResult<f64> {
    let kind = self::accountant(accountant)?;
    py.detach(|| dp::epsilon(kind, q, sigma, steps, delta)).py()
}

/// `(epsilon, optimal Renyi order)` by the RDP accountant.
#[pyfunction]
fn epsilon_rdp(q: f64, sigma: f64, steps: u64, delta: f64) -> PyResult<(f64, f64)> {
    dp::try_epsilon_rdp(q, sigma, steps, delta).py()
}

/// Epsilon by the PLD accountant with grid width `discretization`.
#[pyfunction]
#[pyo3(signature = (q, sigma, steps, delta, discretization = 1e-4))]
fn epsilon_pld(
    py: Python<'_>,
    q: f64,
    sigma: f64,
    steps: u64,
    delta: f64,
    discretization: f64,
) -> PyResult<f64> {
    py.detach(|| dp::try_epsilon_pld(q, sigma, steps, delta, discretization))
        .py()
}

/// The smallest noise multiplier meeting `(target_epsilon, delta)`.
#[pyfunction]
#[pyo3(signature = (target_epsilon, q, steps, delta, accountant = "rdp"))]
fn calibrate_sigma(
    py: Python<'_>,
    target_epsilon: f64,
    q: f64,
    steps: u64,
    delta: f64,
    accountant: &str,
) -> PyResult<f64> {
    let kind = self::accountant(accountant)?;
    py.detach(|| dp::calibrate_sigma(target_epsilon, q, steps, delta, kind))
        .py()
}

/// Build the rule from its name and the keyword parameters that apply to it.
#[allow(clippy::too_many_arguments)]
fn method(
    name: &str,
    n: usize,
    beta: f64,
    byzantine: usize,
    keep: Option<usize>,
    smoothing: f64,
    max_iter: usize,
    tol: f64,
    tau: Option<f64>,
    iters: usize,
) -> PyResult<Method> {
    let kind: MethodKind = name.replace('_', "-").parse().py()?;
    Ok(match kind {
        MethodKind::FedAvg => Method::FedAvg,
        MethodKind::Median => Method::Median,
        MethodKind::TrimmedMean => Method::TrimmedMean { beta },
        MethodKind::Krum => Method::Krum { byzantine },
        MethodKind::MultiKrum => Method::MultiKrum {
            byzantine,
            keep: keep.unwrap_or_else(|| n.saturating_sub(byzantine)),
        },
        MethodKind::Bulyan => Method::Bulyan { byzantine },
        MethodKind::GeometricMedian => Method::GeometricMedian {
            smoothing,
            max_iter,
            tol,
        },
        MethodKind::CenteredClipping => Method::CenteredClipping { tau, iters },
    })
}

/// The clients' updates as one row-major `n x d` buffer plus the shape of
/// one update: either a 2-D array (one client per row) or a sequence of
/// arrays of one shape.
fn gather(updates: &Bound<'_, PyAny>) -> PyResult<(Vec<f32>, usize, Vec<usize>)> {
    if let Ok(a) = updates.extract::<PyArrayLike2<'_, f32, AllowTypeChange>>() {
        if updates.hasattr("ndim")? {
            let v = a.as_array();
            let (n, d) = v.dim();
            let data: Vec<f32> = v.iter().copied().collect();
            return Ok((data, n, vec![d]));
        }
    }
    let rows: Vec<PyArrayLikeDyn<'_, f32, AllowTypeChange>> = updates.extract().map_err(|_| {
        DataError::new_err(
            "updates must be a 2-D array (one client per row) or a list of arrays of one shape",
        )
    })?;
    let Some(first) = rows.first() else {
        return Err(DataError::new_err("data: no client updates to aggregate"));
    };
    let shape = first.shape().to_vec();
    let d: usize = shape.iter().product();
    let mut data = Vec::with_capacity(d.saturating_mul(rows.len()));
    for (i, r) in rows.iter().enumerate() {
        if r.shape() != shape.as_slice() {
            return Err(DataError::new_err(format!(
                "data: client {i} has shape {:?}, client 0 has {:?}",
                r.shape(),
                shape
            )));
        }
        data.extend(r.as_array().iter().copied());
    }
    Ok((data, rows.len(), shape))
}

/// Aggregate client updates; returns `(params, selected, iterations)`.
#[pyfunction]
#[pyo3(signature = (
    updates, method = "median", *, weights = None, beta = 0.2, byzantine = 0, keep = None,
    smoothing = 1e-6, max_iter = 100, tol = 1e-6, tau = None, iters = 3
))]
#[allow(clippy::too_many_arguments)]
fn aggregate<'py>(
    py: Python<'py>,
    updates: &Bound<'py, PyAny>,
    method: &str,
    weights: Option<Vec<f32>>,
    beta: f64,
    byzantine: usize,
    keep: Option<usize>,
    smoothing: f64,
    max_iter: usize,
    tol: f64,
    tau: Option<f64>,
    iters: usize,
) -> PyResult<Bound<'py, PyTuple>> {
    let (data, n, shape) = gather(updates)?;
    let m = self::method(
        method, n, beta, byzantine, keep, smoothing, max_iter, tol, tau, iters,
    )?;
    let agg = py
        .detach(|| aggregate_rows(&m, &data, n, weights.as_deref()))
        .py()?;
    let params = PyArray1::from_vec(py, agg.params.to_vec()).reshape(shape)?;
    (params, agg.selected, agg.iterations).into_pyobject(py)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(epsilon, m)?)?;
    m.add_function(wrap_pyfunction!(epsilon_rdp, m)?)?;
    m.add_function(wrap_pyfunction!(epsilon_pld, m)?)?;
    m.add_function(wrap_pyfunction!(calibrate_sigma, m)?)?;
    m.add_function(wrap_pyfunction!(aggregate, m)?)?;
    Ok(())
}
