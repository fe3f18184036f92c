//! The one error type of mithridate-core, and the location it carries.
//!
//! Every error that comes from input data names where it happened: the file, the
//! 1-based line (or row) and the field, so that a user can open the file at the
//! right place instead of bisecting a million-line dataset.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in the input an error was found. Every part is optional because some
/// inputs (an in-memory buffer, a whole-file property) have no line or field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// File the record came from, if it came from a file.
    pub path: Option<PathBuf>,
    /// 1-based line (JSONL), row (CSV, counting the header as line 1) or record index.
    pub line: Option<u64>,
    /// Column name, JSON field or NPY header key.
    pub field: Option<String>,
}

impl Location {
    /// A location in `path` with no line or field yet.
    pub fn file(path: impl AsRef<Path>) -> Self {
        Self {
            path: Some(path.as_ref().to_path_buf()),
            line: None,
            field: None,
        }
    }

    /// The same location at `line`.
    #[must_use]
    pub fn at_line(mut self, line: u64) -> Self {
        self.line = Some(line);
        self
    }

    /// The same location at `field`.
    #[must_use]
    pub fn at_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut wrote = false;
        if let Some(p) = &self.path {
            write!(f, "{}", p.display())?;
            wrote = true;
        }
        if let Some(l) = self.line {
            write!(f, "{}line {l}", if wrote { ":" } else { "" })?;
            wrote = true;
        }
        if let Some(c) = &self.field {
            write!(f, "{}field `{c}`", if wrote { ": " } else { "" })?;
            wrote = true;
        }
        if !wrote {
            f.write_str("<input>")?;
        }
        Ok(())
    }
}

/// Errors raised by mithridate crates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Input that does not parse or violates the format.
    #[error("{loc}: {msg}")]
    Parse {
        /// Where the bad input is.
        loc: Location,
        /// What is wrong with it.
        msg: String,
    },
    /// A parameter that fails its check (see each `*Params::check`).
    #[error("invalid parameter `{name}`: {msg}")]
    InvalidParam {
        /// Parameter name.
        name: String,
        /// Why it is invalid.
        msg: String,
    },
    /// Data whose shape does not fit the operation (e.g. no labels for a label detector).
    #[error("data: {0}")]
    Data(String),
    /// A model or predictor failed.
    #[error("model: {0}")]
    Model(String),
    /// Cryptographic verification failed or a key is unusable.
    #[error("crypto: {0}")]
    Crypto(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A parse error at `loc`.
    pub fn parse(loc: Location, msg: impl Into<String>) -> Self {
        Error::Parse {
            loc,
            msg: msg.into(),
        }
    }

    /// An invalid parameter.
    pub fn param(name: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::InvalidParam {
            name: name.into(),
            msg: msg.into(),
        }
    }

    /// A data-shape error.
    pub fn data(msg: impl Into<String>) -> Self {
        Error::Data(msg.into())
    }
}

/// Result alias with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_names_file_line_and_field() {
        let loc = Location::file("data/train.csv")
            .at_line(12)
            .at_field("pixel_3");
        assert_eq!(loc.to_string(), "data/train.csv:line 12: field `pixel_3`");
        let e = Error::parse(loc, "not a number: \"x\"");
        assert_eq!(
            e.to_string(),
            "data/train.csv:line 12: field `pixel_3`: not a number: \"x\""
        );
        assert_eq!(Location::default().to_string(), "<input>");
    }
}
