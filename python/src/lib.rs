//! # mithridate-python
//!
//! The native half of the `mithridate` Python wheel (`mithridate._native`):
//! thin PyO3 wrappers over the Rust layers, so that Python pipelines get the
//! same manifests, scans, accountants and aggregators as the command line,
//! byte for byte and digit for digit. The Python package (`mithridate/`)
//! re-exports these functions, adds pandas conveniences and the Flower
//! strategy, and ships the type stubs.
//!
//! Long computations release the GIL (`Python::detach`) so that a Python
//! thread pool or a Spark worker's other threads keep running.

mod anomaly;
mod distributed;
mod error;
mod provenance;
mod robust;

use pyo3::prelude::*;

/// The extension module `mithridate._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    error::register(m)?;
    provenance::register(m)?;
    anomaly::register(m)?;
    distributed::register(m)?;
    robust::register(m)?;
    Ok(())
}

/// Turn a `serde_json::Value` into Python objects through the standard
/// `json` module: the nested reports and findings keep exactly the shape of
/// the command line's `--json` output.
pub(crate) fn json_to_py<'py>(
    py: Python<'py>,
    v: &serde_json::Value,
) -> PyResult<Bound<'py, PyAny>> {
    let s = serde_json::to_string(v)
        .map_err(|e| error::MithridateError::new_err(format!("serializing: {e}")))?;
    py.import("json")?.call_method1("loads", (s,))
}
