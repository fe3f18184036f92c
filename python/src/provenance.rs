//! Dataset manifests (`mithridate-provenance`): create, save, load, verify,
//! sign.

use std::collections::HashMap;
use std::path::PathBuf;

use mithridate_provenance::{
    create_manifest as create, keys, shard, sign_manifest, verify_envelope, verify_manifest_with,
    Algorithm, CreateOptions, Manifest, Metadata, VerifyOptions, VerifyOutcome,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::error::{IntoPyResult, InvalidParameterError};
use crate::json_to_py;

fn algorithm(name: &str) -> PyResult<Algorithm> {
    match name.to_ascii_lowercase().as_str() {
        "blake3" => Ok(Algorithm::Blake3),
        "sha256" | "sha-256" => Ok(Algorithm::Sha256),
        other => Err(InvalidParameterError::new_err(format!(
            "invalid parameter `algorithm`: `{other}` is not blake3 or sha256"
        ))),
    }
}

fn metadata(m: Option<HashMap<String, String>>) -> PyResult<Metadata> {
    let mut out = Metadata::default();
    for (k, v) in m.unwrap_or_default() {
        let slot = match k.as_str() {
            "source" => &mut out.source,
            "revision" => &mut out.revision,
            "collector" => &mut out.collector,
            "collected" => &mut out.collected,
            "license" => &mut out.license,
            "notes" => &mut out.notes,
            _ => {
                return Err(InvalidParameterError::new_err(format!(
                    "invalid parameter `metadata`: unknown key `{k}`; expected source, revision, \
                     collector, collected, license or notes"
                )))
            }
        };
        *slot = Some(v);
    }
    Ok(out)
}

/// A dataset manifest: each file's digest (and, record-level, each record's)
/// folded into one Merkle root, the dataset's identity.
#[pyclass(name = "Manifest", module = "mithridate", frozen, eq)]
#[derive(PartialEq)]
pub(crate) struct PyManifest {
    pub(crate) inner: Manifest,
}

#[pymethods]
impl PyManifest {
    /// Merkle root (hex) over the file entries.
    #[getter]
    fn root(&self) -> &str {
        &self.inner.root
    }

    /// Digest algorithm (`blake3` or `sha256`).
    #[getter]
    fn algorithm(&self) -> &'static str {
        self.inner.algorithm.name()
    }

    /// Number of files.
    #[getter]
    fn file_count(&self) -> usize {
        self.inner.files.len()
    }

    /// Records listed in record-level entries.
    #[getter]
    fn record_count(&self) -> u64 {
        self.inner.record_count()
    }

    /// Paths of the files, sorted.
    #[getter]
    fn paths(&self) -> Vec<String> {
        self.inner.files.iter().map(|f| f.path.clone()).collect()
    }

    /// Each file as a dict: `path`, `size`, `digest`, `records` (count or None),
    /// `records_root` (hex or None).
    #[getter]
    fn files<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for f in &self.inner.files {
            let d = PyDict::new(py);
            d.set_item("path", &f.path)?;
            d.set_item("size", f.size)?;
            d.set_item("digest", &f.digest)?;
            d.set_item("records", f.records.as_ref().map(|r| r.count))?;
            d.set_item("records_root", f.records.as_ref().map(|r| r.root.clone()))?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// The manifest as JSON (the same document `mithridate manifest create` writes).
    fn to_json(&self) -> PyResult<String> {
        let v = self.inner.to_json_vec().py()?;
        String::from_utf8(v).map_err(|e| InvalidParameterError::new_err(e.to_string()))
    }

    /// The manifest as a dict (parsed JSON).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = serde_json::to_value(&self.inner)
            .map_err(|e| InvalidParameterError::new_err(e.to_string()))?;
        json_to_py(py, &v)
    }

    /// Parse and check a manifest from JSON (str or bytes).
    #[staticmethod]
    fn from_json(data: &Bound<'_, PyAny>) -> PyResult<Self> {
        let bytes: Vec<u8> = if let Ok(b) = data.cast::<PyBytes>() {
            b.as_bytes().to_vec()
        } else {
            data.extract::<String>()?.into_bytes()
        };
        Ok(Self {
            inner: Manifest::from_json_slice(&bytes).py()?,
        })
    }

    /// Load a manifest file (plain or a signed envelope's, unverified).
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Self> {
        Ok(Self {
            inner: Manifest::load(&path).py()?,
        })
    }

    /// Save atomically to `path`.
    fn save(&self, path: PathBuf) -> PyResult<()> {
        self.inner.save(&path).py()
    }

    /// Verify the data under `root` against this manifest.
    #[pyo3(signature = (root, ignore = None))]
    fn verify(
        &self,
        py: Python<'_>,
        root: PathBuf,
        ignore: Option<Vec<PathBuf>>,
    ) -> PyResult<VerifyResult> {
        verify_impl(py, &root, &self.inner, ignore)
    }

    /// Pickle through the JSON form (Spark and Ray ship shard manifests).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let json = slf.get().to_json()?;
        let from_json = slf.get_type().getattr("from_json")?;
        (from_json, (json,)).into_pyobject(slf.py())
    }

    fn __repr__(&self) -> String {
        format!(
            "Manifest(root='{}', algorithm='{}', files={}, records={})",
            self.inner.root,
            self.inner.algorithm,
            self.inner.files.len(),
            self.inner.record_count()
        )
    }
}

/// The result of verifying data against a manifest.
#[pyclass(module = "mithridate", frozen)]
pub(crate) struct VerifyResult {
    inner: VerifyOutcome,
}

#[pymethods]
impl VerifyResult {
    /// True when the data matches the manifest exactly.
    #[getter]
    fn ok(&self) -> bool {
        self.inner.ok()
    }

    /// Number of mismatches (files, plus record changes beyond the first in a file).
    #[getter]
    fn mismatches(&self) -> usize {
        self.inner.mismatches()
    }

    /// Root of the manifest verified against.
    #[getter]
    fn root(&self) -> &str {
        &self.inner.root
    }

    /// Files listed in the manifest.
    #[getter]
    fn files_checked(&self) -> u64 {
        self.inner.files_checked
    }

    /// Records listed in the manifest.
    #[getter]
    fn records_checked(&self) -> u64 {
        self.inner.records_checked
    }

    /// Each change as a line for people (`changed: train.jsonl`, ...).
    #[getter]
    fn changes(&self) -> Vec<String> {
        self.inner.changes.iter().map(ToString::to_string).collect()
    }

    /// Each record-level change as a line (`record 1 (id 2) changed`), with its file.
    #[getter]
    fn record_changes(&self) -> Vec<(String, String)> {
        self.inner
            .changes
            .iter()
            .flat_map(|c| c.records.iter().map(|r| (c.path.clone(), r.to_string())))
            .collect()
    }

    /// The outcome as a dict (as `mithridate manifest verify --json`).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = serde_json::to_value(&self.inner)
            .map_err(|e| InvalidParameterError::new_err(e.to_string()))?;
        json_to_py(py, &v)
    }

    fn __bool__(&self) -> bool {
        self.inner.ok()
    }

    fn __repr__(&self) -> String {
        format!(
            "VerifyResult(ok={}, mismatches={}, files_checked={}, records_checked={})",
            if self.inner.ok() { "True" } else { "False" },
            self.inner.mismatches(),
            self.inner.files_checked,
            self.inner.records_checked
        )
    }
}

fn verify_impl(
    py: Python<'_>,
    root: &std::path::Path,
    m: &Manifest,
    ignore: Option<Vec<PathBuf>>,
) -> PyResult<VerifyResult> {
    let opts = VerifyOptions {
        ignore: ignore.unwrap_or_default(),
    };
    let inner = py.detach(|| verify_manifest_with(root, m, &opts)).py()?;
    Ok(VerifyResult { inner })
}

/// Hash the dataset directory `root` into a manifest.
#[pyfunction]
#[pyo3(signature = (root, *, records = false, algorithm = "blake3", id_field = None, exclude = None, metadata = None))]
fn create_manifest(
    py: Python<'_>,
    root: PathBuf,
    records: bool,
    algorithm: &str,
    id_field: Option<String>,
    exclude: Option<Vec<PathBuf>>,
    metadata: Option<HashMap<String, String>>,
) -> PyResult<PyManifest> {
    let opts = CreateOptions {
        records,
        algorithm: self::algorithm(algorithm)?,
        id_field,
        metadata: self::metadata(metadata)?,
        lineage: None,
        exclude: exclude.unwrap_or_default(),
    };
    let inner = py.detach(|| create(&root, &opts)).py()?;
    Ok(PyManifest { inner })
}

/// The options of a shard manifest: what `create_shard_manifest` and
/// `manifest_from_bytes` take.
fn shard_options(
    records: bool,
    algorithm: &str,
    id_field: Option<String>,
) -> PyResult<CreateOptions> {
    Ok(CreateOptions {
        records,
        algorithm: self::algorithm(algorithm)?,
        id_field,
        ..CreateOptions::default()
    })
}

/// Hash the files `files` (relative to `root`, or absolute inside it) of the
/// dataset under `root` into a shard manifest: exactly the entries a manifest
/// of the whole dataset holds for those files.
#[pyfunction]
#[pyo3(signature = (root, files, *, records = false, algorithm = "blake3", id_field = None))]
fn create_shard_manifest(
    py: Python<'_>,
    root: PathBuf,
    files: Vec<PathBuf>,
    records: bool,
    algorithm: &str,
    id_field: Option<String>,
) -> PyResult<PyManifest> {
    let opts = shard_options(records, algorithm, id_field)?;
    let inner = py
        .detach(|| shard::create_shard_manifest(&root, &files, &opts))
        .py()?;
    Ok(PyManifest { inner })
}

/// Hash in-memory files `(path, bytes)` into a shard manifest, as if they
/// were files at those paths under the dataset root.
#[pyfunction]
#[pyo3(signature = (items, *, records = false, algorithm = "blake3", id_field = None))]
fn manifest_from_bytes(
    py: Python<'_>,
    items: Vec<(String, Bound<'_, PyBytes>)>,
    records: bool,
    algorithm: &str,
    id_field: Option<String>,
) -> PyResult<PyManifest> {
    let opts = shard_options(records, algorithm, id_field)?;
    let pairs: Vec<(&str, &[u8])> = items
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_bytes()))
        .collect();
    // `bytes` objects are immutable and `items` keeps them alive, so their
    // buffers stay valid while the GIL is released.
    let inner = py
        .detach(|| shard::manifest_from_bytes(&pairs, &opts))
        .py()?;
    Ok(PyManifest { inner })
}

/// Merge shard manifests into one dataset manifest whose root equals the
/// single-machine root of the same files.
#[pyfunction]
#[pyo3(signature = (shards, *, metadata = None))]
fn merge_manifests(
    shards: Vec<PyRef<'_, PyManifest>>,
    metadata: Option<HashMap<String, String>>,
) -> PyResult<PyManifest> {
    let all: Vec<Manifest> = shards.iter().map(|s| s.inner.clone()).collect();
    let opts = shard::MergeOptions {
        metadata: metadata.map(|m| self::metadata(Some(m))).transpose()?,
        lineage: None,
    };
    Ok(PyManifest {
        inner: shard::merge_manifests(&all, &opts).py()?,
    })
}

/// Verify the data under `root` against `manifest`.
#[pyfunction]
#[pyo3(signature = (root, manifest, *, ignore = None))]
fn verify_manifest(
    py: Python<'_>,
    root: PathBuf,
    manifest: &PyManifest,
    ignore: Option<Vec<PathBuf>>,
) -> PyResult<VerifyResult> {
    verify_impl(py, &root, &manifest.inner, ignore)
}

/// Write a fresh Ed25519 key pair (PKCS#8 PEM) into `dir`; returns
/// `(private_key_path, public_key_path)`.
#[pyfunction]
fn generate_keypair(dir: PathBuf) -> PyResult<(PathBuf, PathBuf)> {
    let k = keys::write_keypair(&dir).py()?;
    Ok((k.private, k.public))
}

/// Sign `manifest` with the PEM private key at `private_key`; returns the
/// DSSE envelope (in-toto Statement v1) as JSON.
#[pyfunction]
fn sign(manifest: &PyManifest, private_key: PathBuf) -> PyResult<String> {
    let key = keys::load_private_key(&private_key).py()?;
    let env = sign_manifest(&manifest.inner, &key).py()?;
    serde_json::to_string_pretty(&env).map_err(|e| InvalidParameterError::new_err(e.to_string()))
}

/// Check a signed envelope (JSON str or bytes) against trusted PEM public keys;
/// returns the manifest it carries.
#[pyfunction]
fn verify_signature(
    envelope: &Bound<'_, PyAny>,
    public_keys: Vec<PathBuf>,
) -> PyResult<PyManifest> {
    let bytes: Vec<u8> = if let Ok(b) = envelope.cast::<PyBytes>() {
        b.as_bytes().to_vec()
    } else {
        envelope.extract::<String>()?.into_bytes()
    };
    let trusted = public_keys
        .iter()
        .map(|p| keys::load_public_key(p))
        .collect::<mithridate_core::Result<Vec<_>>>()
        .py()?;
    let env = serde_json::from_slice(&bytes)
        .map_err(|e| crate::error::ParseError::new_err(format!("envelope: {e}")))?;
    let v = verify_envelope(&env, &trusted).py()?;
    Ok(PyManifest { inner: v.manifest })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyManifest>()?;
    m.add_class::<VerifyResult>()?;
    m.add_function(wrap_pyfunction!(create_manifest, m)?)?;
    m.add_function(wrap_pyfunction!(verify_manifest, m)?)?;
    m.add_function(wrap_pyfunction!(create_shard_manifest, m)?)?;
    m.add_function(wrap_pyfunction!(manifest_from_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(merge_manifests, m)?)?;
    m.add_function(wrap_pyfunction!(generate_keypair, m)?)?;
    m.add_function(wrap_pyfunction!(sign, m)?)?;
    m.add_function(wrap_pyfunction!(verify_signature, m)?)?;
    Ok(())
}
