//! Readers and writers for the formats mithridate reads: CSV, JSONL and NPY.
//!
//! Readers never panic on bad input and never allocate in proportion to a
//! size the input merely declares. The first bad record is an error that names
//! file, line and field, unless [`ReadOptions::skip_bad`] is set; then every
//! skipped record is counted in [`ReadStats`] and the caller reports it.

pub mod atomic;
pub mod csv;
pub mod jsonl;
pub mod labels;
pub mod lines;
pub mod npy;

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::error::{Error, Result};

/// Longest record a reader accepts by default (64 MiB). A longer one is an error
/// (or a skipped record), so a hostile 1 GB line cannot exhaust memory.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 << 20;

/// Options shared by the readers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadOptions {
    /// Label column or field. `None`: no labels. Default `label`; when it is the
    /// default and the input has no such column, the data is read unlabelled.
    pub label_column: Option<String>,
    /// Id column or field. `None`: ids are 0-based record indices.
    pub id_column: Option<String>,
    /// JSONL: text fields to read. Empty: every string field of the first record
    /// other than the id and label.
    pub text_fields: Vec<String>,
    /// JSONL: the text field detectors read by default.
    pub text_column: Option<String>,
    /// Skip (and count) bad records instead of failing on the first.
    pub skip_bad: bool,
    /// Longest record accepted.
    pub max_record_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            label_column: Some("label".into()),
            id_column: None,
            text_fields: Vec::new(),
            text_column: None,
            skip_bad: false,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// What a reader saw besides the dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadStats {
    /// Records read into the dataset.
    pub records: u64,
    /// Records skipped under [`ReadOptions::skip_bad`].
    pub skipped: u64,
    /// The first few skipped records' errors (at most 20), for the report.
    pub skipped_examples: Vec<String>,
}

impl ReadStats {
    pub(crate) fn skip(&mut self, err: &Error) {
        self.skipped += 1;
        if self.skipped_examples.len() < 20 {
            self.skipped_examples.push(err.to_string());
        }
    }
}

/// A data format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// NumPy `.npy` features, with labels in a sibling `y.npy`.
    Npy,
}

impl Format {
    /// The format of `path` by its extension (a directory holding `X.npy` is NPY).
    pub fn detect(path: &Path) -> Result<Self> {
        if path.is_dir() {
            if path.join("X.npy").exists() {
                return Ok(Format::Npy);
            }
            return Err(Error::data(format!(
                "{}: a directory must hold X.npy (and y.npy)",
                path.display()
            )));
        }
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => Ok(Format::Csv),
            Some("jsonl" | "ndjson") => Ok(Format::Jsonl),
            Some("npy") => Ok(Format::Npy),
            _ => Err(Error::data(format!(
                "{}: unknown data format (expected .csv, .jsonl, .ndjson, .npy or a directory with X.npy)",
                path.display()
            ))),
        }
    }

    /// File extension without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Npy => "npy",
        }
    }
}

/// Read a dataset from `path` in the format its extension says.
///
/// NPY: `path` is `X.npy` (labels from `y.npy` beside it, if present) or a
/// directory holding both.
pub fn read_path(path: &Path, opts: &ReadOptions) -> Result<(Dataset, ReadStats)> {
    match Format::detect(path)? {
        Format::Csv => csv::read_csv(path, opts),
        Format::Jsonl => jsonl::read_jsonl(path, opts),
        Format::Npy => npy::read_npy_pair(&npy_features_path(path), None),
    }
}

/// The features file of an NPY dataset path.
pub fn npy_features_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("X.npy")
    } else {
        path.to_path_buf()
    }
}

/// Write a copy of the records of `ds` (read from one CSV or JSONL file) that are
/// not in `drop`, byte for byte as they were in the source file, header included.
///
/// This keeps every field the reader did not interpret (extra JSON keys,
/// formatting) exactly as it was: the clean dataset is the input minus rows.
pub fn write_filtered_copy(ds: &Dataset, drop: &HashSet<usize>, out: &Path) -> Result<()> {
    if ds.source_files.len() != 1 || ds.origins.len() != ds.len() {
        return Err(Error::data(
            "a filtered copy needs a dataset read from exactly one CSV or JSONL file",
        ));
    }
    let src = Path::new(&ds.source_files[0]);
    let mut f = File::open(src).map_err(|e| Error::io(src, e))?;
    atomic::write_atomic(out, |w| {
        let first = ds.origins.first().map_or(0, |o| o.offset);
        // Header (CSV) or nothing (JSONL: the first record starts at 0).
        let mut head = (&mut f).take(first);
        std::io::copy(&mut head, w)?;
        let mut buf = Vec::new();
        for (i, o) in ds.origins.iter().enumerate() {
            if drop.contains(&i) {
                continue;
            }
            f.seek(SeekFrom::Start(o.offset))?;
            buf.clear();
            (&mut f).take(o.len).read_to_end(&mut buf)?;
            w.write_all(&buf)?;
            if !buf.ends_with(b"\n") {
                w.write_all(b"\n")?;
            }
        }
        Ok(())
    })
}

/// Write `ds` to `path` in `format` (NPY: `path` is the features file and labels
/// go to `y.npy` beside it).
pub fn write_path(ds: &Dataset, path: &Path, format: Format) -> Result<()> {
    match format {
        Format::Csv => csv::write_csv(ds, path),
        Format::Jsonl => jsonl::write_jsonl(ds, path),
        Format::Npy => {
            let x = ds.require_features("the NPY writer")?;
            npy::write_npy_f32(path, x)?;
            if let Some(l) = &ds.labels {
                let y: Vec<i64> = l.iter().map(|&v| i64::from(v)).collect();
                let ypath = path.with_file_name("y.npy");
                npy::write_npy_i64(&ypath, &y)?;
            }
            Ok(())
        }
    }
}

/// Open `path` for buffered reading with the path in the error.
pub(crate) fn open(path: &Path) -> Result<BufReader<File>> {
    File::open(path)
        .map(|f| BufReader::with_capacity(1 << 16, f))
        .map_err(|e| Error::io(path, e))
}
