//! Rust errors as Python exceptions: one base class, one subclass per kind
//! of `mithridate_core::Error`, the Rust message unchanged (it names the
//! file, line and field at fault).

use pyo3::exceptions::PyException;
use pyo3::prelude::*;

pyo3::create_exception!(
    mithridate,
    MithridateError,
    PyException,
    "Base class of every error raised by mithridate."
);
pyo3::create_exception!(
    mithridate,
    InvalidParameterError,
    MithridateError,
    "A parameter is out of range or unknown (the message names it)."
);
pyo3::create_exception!(
    mithridate,
    DataError,
    MithridateError,
    "The data cannot be processed as given (shape, missing column, non-finite value)."
);
pyo3::create_exception!(
    mithridate,
    ParseError,
    MithridateError,
    "A file or document is malformed (the message names file, line and field)."
);
pyo3::create_exception!(
    mithridate,
    IoError,
    MithridateError,
    "A file could not be read or written (the message names the path)."
);
pyo3::create_exception!(
    mithridate,
    CryptoError,
    MithridateError,
    "A signature, key or digest check failed."
);
pyo3::create_exception!(
    mithridate,
    ModelError,
    MithridateError,
    "A model could not be trained or queried."
);

/// The Python exception for a Rust error, carrying its message.
pub(crate) fn to_py(e: mithridate_core::Error) -> PyErr {
    use mithridate_core::Error as E;
    let msg = e.to_string();
    match e {
        E::InvalidParam { .. } => InvalidParameterError::new_err(msg),
        E::Data(_) => DataError::new_err(msg),
        E::Parse { .. } => ParseError::new_err(msg),
        E::Io { .. } => IoError::new_err(msg),
        E::Crypto(_) => CryptoError::new_err(msg),
        E::Model(_) => ModelError::new_err(msg),
        _ => MithridateError::new_err(msg),
    }
}

/// `Result` conversion used at every boundary.
pub(crate) trait IntoPyResult<T> {
    /// Map the error to its Python exception.
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for mithridate_core::Result<T> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("MithridateError", py.get_type::<MithridateError>())?;
    m.add(
        "InvalidParameterError",
        py.get_type::<InvalidParameterError>(),
    )?;
    m.add("DataError", py.get_type::<DataError>())?;
    m.add("ParseError", py.get_type::<ParseError>())?;
    m.add("IoError", py.get_type::<IoError>())?;
    m.add("CryptoError", py.get_type::<CryptoError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    Ok(())
}
