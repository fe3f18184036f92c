//! Mergeable text trigger-mining statistics (`mithridate_anomaly::text`)
//! for scans split across machines: count each partition, merge the counts,
//! plan once, gather evidence per partition, merge, decide. Every step's
//! state pickles (through its JSON form), so Spark and Ray can ship it.

use mithridate_anomaly::text::{
    decide_named, TextEvidence, TextPlan, TextStats, TextTriggerParams,
};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::error::{DataError, IntoPyResult};
use crate::json_to_py;

fn params(max_ngram: usize, min_support: usize, confirm_log10: f64) -> PyResult<TextTriggerParams> {
    let p = TextTriggerParams {
        max_ngram,
        min_support,
        confirm_log10,
        ..TextTriggerParams::default()
    };
    p.check().py()?;
    Ok(p)
}

fn params_json(p: &TextTriggerParams) -> PyResult<String> {
    serde_json::to_string(p).map_err(|e| DataError::new_err(format!("data: text params: {e}")))
}

fn params_from_json(s: &str) -> PyResult<TextTriggerParams> {
    let p: TextTriggerParams = serde_json::from_str(s)
        .map_err(|e| DataError::new_err(format!("data: text params: {e}")))?;
    p.check().py()?;
    Ok(p)
}

/// The constructor a pickled object is rebuilt with: `(cls._restore, (json, params_json))`.
fn reduce<'py>(
    slf: &Bound<'py, PyAny>,
    json: String,
    p: &TextTriggerParams,
) -> PyResult<Bound<'py, PyTuple>> {
    let restore = slf.get_type().getattr("_restore")?;
    (restore, (json, params_json(p)?)).into_pyobject(slf.py())
}

/// First-pass counts of text trigger mining over some records: per n-gram,
/// the records carrying it with each label, and per label the token counts of
/// a naive Bayes model. Integer counts, so merging the statistics of the
/// partitions of a corpus gives exactly the statistics of the whole corpus.
#[pyclass(name = "TextStats", module = "mithridate")]
pub(crate) struct TextStatsPy {
    inner: TextStats,
    params: TextTriggerParams,
}

#[pymethods]
impl TextStatsPy {
    /// Empty statistics for labels `0..n_classes`.
    #[new]
    #[pyo3(signature = (n_classes, *, max_ngram = 3, min_support = 3, confirm_log10 = 6.0))]
    fn new(
        n_classes: usize,
        max_ngram: usize,
        min_support: usize,
        confirm_log10: f64,
    ) -> PyResult<Self> {
        let params = params(max_ngram, min_support, confirm_log10)?;
        Ok(Self {
            inner: TextStats::new(n_classes, &params).py()?,
            params,
        })
    }

    /// Statistics of `texts` labelled `labels` (in `0..n_classes`).
    #[staticmethod]
    #[pyo3(signature = (texts, labels, n_classes, *, max_ngram = 3, min_support = 3, confirm_log10 = 6.0))]
    fn from_records(
        py: Python<'_>,
        texts: Vec<String>,
        labels: Vec<u32>,
        n_classes: usize,
        max_ngram: usize,
        min_support: usize,
        confirm_log10: f64,
    ) -> PyResult<Self> {
        if texts.len() != labels.len() {
            return Err(DataError::new_err(format!(
                "data: {} texts and {} labels",
                texts.len(),
                labels.len()
            )));
        }
        let params = params(max_ngram, min_support, confirm_log10)?;
        let inner = py
            .detach(|| {
                TextStats::from_records(
                    texts.iter().map(String::as_str).zip(labels.iter().copied()),
                    n_classes,
                    &params,
                )
            })
            .py()?;
        Ok(Self { inner, params })
    }

    /// Count one record.
    fn add(&mut self, text: &str, label: u32) -> PyResult<()> {
        self.inner.add(text, label).py()
    }

    /// Add another partition's counts to these (in place).
    fn merge(&mut self, other: &Self) -> PyResult<()> {
        if other.params != self.params {
            return Err(DataError::new_err(
                "data: text stats: cannot merge statistics counted with other parameters",
            ));
        }
        self.inner.merge(other.inner.clone()).py()
    }

    /// Records counted.
    #[getter]
    fn records(&self) -> u64 {
        self.inner.records()
    }

    /// Records counted per label.
    #[getter]
    fn class_records(&self) -> Vec<u64> {
        self.inner.class_records().to_vec()
    }

    /// Distinct n-grams counted.
    #[getter]
    fn distinct_ngrams(&self) -> usize {
        self.inner.distinct_ngrams()
    }

    /// The candidate n-grams and the naive Bayes counts: what every
    /// partition needs for the second pass.
    #[pyo3(signature = (catch_all = false))]
    fn plan(&self, py: Python<'_>, catch_all: bool) -> PyResult<TextPlanPy> {
        let inner = py
            .detach(|| self.inner.plan(&self.params, catch_all))
            .py()?;
        Ok(TextPlanPy {
            inner,
            params: self.params.clone(),
        })
    }

    /// JSON text of the counts (n-grams sorted: equal statistics, equal text).
    fn to_json(&self) -> PyResult<String> {
        self.inner.to_json().py()
    }

    #[staticmethod]
    fn _restore(json: &str, params: &str) -> PyResult<Self> {
        Ok(Self {
            inner: TextStats::from_json(json).py()?,
            params: params_from_json(params)?,
        })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let (json, p) = {
            let me = slf.borrow();
            (me.inner.to_json().py()?, me.params.clone())
        };
        reduce(slf.as_any(), json, &p)
    }

    fn __eq__(&self, other: &Self) -> bool {
        self.inner == other.inner && self.params == other.params
    }

    fn __repr__(&self) -> String {
        format!(
            "TextStats(records={}, distinct_ngrams={})",
            self.inner.records(),
            self.inner.distinct_ngrams()
        )
    }
}

/// The plan of the second pass: candidate n-grams and the naive Bayes model,
/// computed once from the merged [`TextStatsPy`] and sent to every partition.
#[pyclass(name = "TextPlan", module = "mithridate", frozen)]
pub(crate) struct TextPlanPy {
    inner: TextPlan,
    params: TextTriggerParams,
}

#[pymethods]
impl TextPlanPy {
    /// Number of candidate n-grams.
    #[getter]
    fn candidates(&self) -> usize {
        self.inner.candidates.len()
    }

    /// Records the plan was made from.
    #[getter]
    fn records(&self) -> u64 {
        self.inner.records
    }

    /// Second-pass evidence of some records (`ids` unique across partitions).
    fn evidence(
        &self,
        py: Python<'_>,
        ids: Vec<u64>,
        texts: Vec<String>,
        labels: Vec<u32>,
    ) -> PyResult<TextEvidencePy> {
        if ids.len() != texts.len() || texts.len() != labels.len() {
            return Err(DataError::new_err(format!(
                "data: {} ids, {} texts and {} labels",
                ids.len(),
                texts.len(),
                labels.len()
            )));
        }
        let inner = py
            .detach(|| {
                TextEvidence::from_records(
                    &self.inner,
                    ids.iter()
                        .zip(&texts)
                        .zip(&labels)
                        .map(|((&i, t), &l)| (i, t.as_str(), l)),
                )
            })
            .py()?;
        Ok(TextEvidencePy { inner })
    }

    /// Empty evidence, to merge partitions' evidence into.
    fn empty_evidence(&self) -> TextEvidencePy {
        TextEvidencePy {
            inner: TextEvidence::new(&self.inner),
        }
    }

    /// Test the candidates on the merged `evidence` and name the records to
    /// quarantine. Returns a dict: `flagged` (ids, ascending), `triggers`,
    /// `confirmed`, `label_names`.
    #[pyo3(signature = (evidence, label_names = None))]
    fn decide<'py>(
        &self,
        py: Python<'py>,
        evidence: &TextEvidencePy,
        label_names: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let names = label_names
            .unwrap_or_else(|| (0..self.inner.n_classes).map(|c| c.to_string()).collect());
        let d = decide_named(&self.inner, &evidence.inner, &self.params, &names).py()?;
        let v = serde_json::to_value(&d).map_err(|e| DataError::new_err(e.to_string()))?;
        json_to_py(py, &v)
    }

    /// JSON text of the plan.
    fn to_json(&self) -> PyResult<String> {
        self.inner.to_json().py()
    }

    #[staticmethod]
    fn _restore(json: &str, params: &str) -> PyResult<Self> {
        Ok(Self {
            inner: TextPlan::from_json(json).py()?,
            params: params_from_json(params)?,
        })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let me = slf.get();
        reduce(slf.as_any(), me.inner.to_json().py()?, &me.params)
    }

    fn __repr__(&self) -> String {
        format!(
            "TextPlan(records={}, candidates={})",
            self.inner.records,
            self.inner.candidates.len()
        )
    }
}

/// Second-pass evidence over some records: carriers of each candidate and
/// the baseline flip counts. Merging partitions' evidence gives one pass's.
#[pyclass(name = "TextEvidence", module = "mithridate")]
pub(crate) struct TextEvidencePy {
    inner: TextEvidence,
}

#[pymethods]
impl TextEvidencePy {
    /// Add another partition's evidence (same plan) to this one, in place.
    fn merge(&mut self, other: &Self) -> PyResult<()> {
        self.inner.merge(other.inner.clone()).py()
    }

    /// JSON text of the evidence.
    fn to_json(&self) -> PyResult<String> {
        self.inner.to_json().py()
    }

    #[staticmethod]
    fn _restore(json: &str, _params: &str) -> PyResult<Self> {
        Ok(Self {
            inner: TextEvidence::from_json(json).py()?,
        })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let json = slf.borrow().inner.to_json().py()?;
        reduce(slf.as_any(), json, &TextTriggerParams::default())
    }

    fn __eq__(&self, other: &Self) -> bool {
        self.inner == other.inner
    }

    fn __repr__(&self) -> String {
        format!(
            "TextEvidence(candidates={}, carriers={})",
            self.inner.carriers.len(),
            self.inner.carriers.iter().map(Vec::len).sum::<usize>()
        )
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TextStatsPy>()?;
    m.add_class::<TextPlanPy>()?;
    m.add_class::<TextEvidencePy>()?;
    Ok(())
}
