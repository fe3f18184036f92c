//! Poison scans (`mithridate-anomaly`) on in-memory arrays and text lists.

use mithridate_anomaly::{scan as run_scan, DetectorKind, ScanOutcome, ScanParams};
use mithridate_core::{Dataset, SampleId};
use numpy::{AllowTypeChange, PyArray1, PyArrayLike2};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::error::{DataError, IntoPyResult, InvalidParameterError};
use crate::json_to_py;

/// Sample ids from Python values: non-negative ints stay numbers, anything
/// else is its `str()`.
fn sample_ids(ids: Option<Vec<Bound<'_, PyAny>>>, n: usize) -> PyResult<Vec<SampleId>> {
    let Some(ids) = ids else {
        return Ok((0..n as u64).map(SampleId::Num).collect());
    };
    if ids.len() != n {
        return Err(DataError::new_err(format!(
            "data: {} ids for {n} samples",
            ids.len()
        )));
    }
    ids.iter()
        .map(|x| match x.extract::<u64>() {
            Ok(v) => Ok(SampleId::Num(v)),
            Err(_) => Ok(SampleId::Str(x.str()?.to_string())),
        })
        .collect()
}

fn detectors(names: Option<Vec<String>>) -> PyResult<Option<Vec<DetectorKind>>> {
    names
        .map(|v| {
            v.into_iter()
                .map(|s| {
                    serde_json::from_value::<DetectorKind>(serde_json::Value::String(
                        s.replace('_', "-"),
                    ))
                    .map_err(|_| {
                        InvalidParameterError::new_err(format!(
                            "invalid parameter `detectors`: unknown detector `{s}`; expected \
                             trigger-mining, text-trigger-mining, label-consistency, knn-outlier, \
                             mahalanobis, spectral-signatures or activation-clustering"
                        ))
                    })
                })
                .collect()
        })
        .transpose()
}

/// Everything a scan found: which rows to quarantine and why.
#[pyclass(module = "mithridate", frozen)]
pub(crate) struct ScanResult {
    inner: ScanOutcome,
    ids: Vec<SampleId>,
}

fn id_to_py<'py>(py: Python<'py>, id: &SampleId) -> PyResult<Bound<'py, PyAny>> {
    Ok(match id {
        SampleId::Num(n) => n.into_pyobject(py)?.into_any(),
        SampleId::Str(s) => s.into_pyobject(py)?.into_any(),
    })
}

#[pymethods]
impl ScanResult {
    /// `pass`, `warn` or `fail`.
    #[getter]
    fn verdict(&self) -> String {
        self.inner.report.verdict.to_string().to_ascii_lowercase()
    }

    /// One line for people.
    #[getter]
    fn summary(&self) -> &str {
        &self.inner.report.summary
    }

    /// Row indices quarantined, ascending.
    #[getter]
    fn flagged(&self) -> Vec<usize> {
        self.inner.quarantined_indices()
    }

    /// Ids of the quarantined rows (the ids given, else the row indices).
    #[getter]
    fn flagged_ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for d in &self.inner.decisions {
            out.append(id_to_py(py, &d.entry.id)?)?;
        }
        Ok(out)
    }

    /// Row indices backed by confirmed evidence (a trigger or a label issue).
    #[getter]
    fn confirmed(&self) -> Vec<usize> {
        self.inner
            .decisions
            .iter()
            .filter(|d| d.confirmed)
            .map(|d| d.index)
            .collect()
    }

    /// Combined per-sample score (float64 array, one per row).
    #[getter]
    fn scores<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        PyArray1::from_vec(py, self.inner.combined.clone())
    }

    /// Named numeric results of the scan.
    #[getter]
    fn metrics(&self) -> std::collections::BTreeMap<String, f64> {
        self.inner.report.metrics.clone()
    }

    /// Names of the detectors that ran.
    #[getter]
    fn detectors(&self) -> Vec<String> {
        self.inner
            .detectors
            .iter()
            .map(|d| d.detector.clone())
            .collect()
    }

    /// Number of samples scanned.
    fn __len__(&self) -> usize {
        self.ids.len()
    }

    /// Each decision as a dict: `index`, `id`, `score`, `confirmed`,
    /// `reasons` (detector, score, message) and `trigger` when one was named.
    #[getter]
    fn decisions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = serde_json::to_value(&self.inner.decisions)
            .map_err(|e| DataError::new_err(e.to_string()))?;
        json_to_py(py, &v)
    }

    /// The combined report as a dict (the `anomaly-scan` report of the CLI's `--json`).
    fn report<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = serde_json::to_value(&self.inner.report)
            .map_err(|e| DataError::new_err(e.to_string()))?;
        json_to_py(py, &v)
    }

    fn __repr__(&self) -> String {
        format!(
            "ScanResult(verdict='{}', samples={}, flagged={}, confirmed={})",
            self.verdict(),
            self.ids.len(),
            self.inner.decisions.len(),
            self.inner.decisions.iter().filter(|d| d.confirmed).count()
        )
    }
}

fn finish(py: Python<'_>, mut ds: Dataset, params: ScanParams, seed: u64) -> PyResult<ScanResult> {
    let ids = ds.ids.clone();
    if let Some(dup) = ds.duplicate_id() {
        return Err(DataError::new_err(format!("data: duplicate id {dup}")));
    }
    ds.validate().py()?;
    let ds_ref = &mut ds;
    let inner = py.detach(move || run_scan(ds_ref, &params, seed)).py()?;
    Ok(ScanResult { inner, ids })
}

/// Scan labelled (or unlabelled) numeric features with the default suite.
#[pyfunction]
#[pyo3(signature = (
    features, labels = None, *, ids = None, label_names = None, fp_budget = 0.005,
    min_votes = 3, detectors = None, seed = 0
))]
#[allow(clippy::too_many_arguments)]
fn scan(
    py: Python<'_>,
    features: PyArrayLike2<'_, f32, AllowTypeChange>,
    labels: Option<Vec<u32>>,
    ids: Option<Vec<Bound<'_, PyAny>>>,
    label_names: Option<Vec<String>>,
    fp_budget: f64,
    min_votes: usize,
    detectors: Option<Vec<String>>,
    seed: u64,
) -> PyResult<ScanResult> {
    // Copied into the workspace's ndarray (the numpy crate may link another
    // ndarray version).
    let view = features.as_array();
    let (n, d) = view.dim();
    let x = ndarray::Array2::from_shape_vec((n, d), view.iter().copied().collect())
        .map_err(|e| DataError::new_err(format!("data: {e}")))?;
    if let Some(bad) = x.iter().position(|v| !v.is_finite()) {
        let d = x.ncols().max(1);
        return Err(DataError::new_err(format!(
            "data: non-finite feature at row {}, column {}",
            bad / d,
            bad % d
        )));
    }
    let mut ds = Dataset::from_features(x, labels).py()?;
    ds.ids = sample_ids(ids, n)?;
    ds.label_names = label_names;
    let params = ScanParams {
        fp_budget,
        min_votes,
        detectors: self::detectors(detectors)?,
        ..ScanParams::default()
    };
    finish(py, ds, params, seed)
}

/// Mine text triggers: n-grams whose presence decides the label, confirmed
/// counterfactually.
#[pyfunction]
#[pyo3(signature = (
    texts, labels, *, ids = None, label_names = None, max_ngram = 3, min_support = 3,
    confirm_log10 = 6.0, seed = 0
))]
#[allow(clippy::too_many_arguments)]
fn scan_text(
    py: Python<'_>,
    texts: Vec<String>,
    labels: Vec<u32>,
    ids: Option<Vec<Bound<'_, PyAny>>>,
    label_names: Option<Vec<String>>,
    max_ngram: usize,
    min_support: usize,
    confirm_log10: f64,
    seed: u64,
) -> PyResult<ScanResult> {
    let n = texts.len();
    let mut ds = Dataset::from_texts("text", texts, Some(labels)).py()?;
    ds.ids = sample_ids(ids, n)?;
    ds.label_names = label_names;
    let mut params = ScanParams {
        detectors: Some(vec![DetectorKind::TextTriggerMining]),
        ..ScanParams::default()
    };
    params.text.max_ngram = max_ngram;
    params.text.min_support = min_support;
    params.text.confirm_log10 = confirm_log10;
    finish(py, ds, params, seed)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ScanResult>()?;
    m.add_function(wrap_pyfunction!(scan, m)?)?;
    m.add_function(wrap_pyfunction!(scan_text, m)?)?;
    Ok(())
}
