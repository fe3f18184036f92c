//! The columnar [`Dataset`] every defense reads.

use std::collections::BTreeMap;
use std::fmt;

use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A stable sample identifier: taken from an id column when the data has one,
/// otherwise the 0-based record index. Ids survive filtering, so a quarantined
/// sample can be traced back to its record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SampleId {
    /// Numeric id (also the default: the record index).
    Num(u64),
    /// Textual id.
    Str(String),
}

impl fmt::Display for SampleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SampleId::Num(n) => write!(f, "{n}"),
            SampleId::Str(s) => f.write_str(s),
        }
    }
}

impl From<u64> for SampleId {
    fn from(n: u64) -> Self {
        SampleId::Num(n)
    }
}

impl From<&str> for SampleId {
    fn from(s: &str) -> Self {
        SampleId::Str(s.to_owned())
    }
}

impl SampleId {
    /// Parse an id cell: an unsigned integer becomes [`SampleId::Num`], anything else a string.
    pub fn parse(s: &str) -> Self {
        s.parse::<u64>()
            .map_or_else(|_| SampleId::Str(s.to_owned()), SampleId::Num)
    }
}

/// Where a sample came from: the file (index into [`Dataset::source_files`]) and
/// its 1-based line or row, so that filtered copies can be cut from the original
/// bytes and findings can point at the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Index into [`Dataset::source_files`].
    pub file: u32,
    /// 1-based line (JSONL, CSV with the header as line 1) or 0-based row (NPY).
    pub line: u64,
    /// Byte offset of the record in its file (0 for NPY).
    pub offset: u64,
    /// Byte length of the record, line ending included (0 for NPY).
    pub len: u64,
}

/// A columnar dataset: stable ids, optional numeric features, optional class
/// labels, optional text fields and per-sample origin.
///
/// Invariant (checked by [`Dataset::validate`] and by every constructor here):
/// every present column has exactly `len()` entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    /// One id per sample.
    pub ids: Vec<SampleId>,
    /// `n x d` feature matrix (row-major).
    pub features: Option<Array2<f32>>,
    /// Feature names (`d` entries) when known.
    pub feature_names: Vec<String>,
    /// Class index per sample, `0..n_classes`.
    pub labels: Option<Vec<u32>>,
    /// Original label strings, indexed by class index, when labels were not integers.
    pub label_names: Option<Vec<String>>,
    /// Text columns by field name (JSONL `text`, `prompt`, `response`, ...).
    pub text_fields: BTreeMap<String, Vec<String>>,
    /// The text column that text detectors read by default.
    pub text_column: Option<String>,
    /// Files the samples were read from.
    pub source_files: Vec<String>,
    /// Per-sample origin (empty when built in memory).
    pub origins: Vec<Origin>,
}

impl Dataset {
    /// A dataset of features and labels with ids `0..n`.
    pub fn from_features(features: Array2<f32>, labels: Option<Vec<u32>>) -> Result<Self> {
        let n = features.nrows();
        let ds = Dataset {
            ids: (0..n as u64).map(SampleId::Num).collect(),
            features: Some(features),
            labels,
            ..Default::default()
        };
        ds.validate()?;
        Ok(ds)
    }

    /// A text dataset with one text column `field` and ids `0..n`.
    pub fn from_texts(field: &str, texts: Vec<String>, labels: Option<Vec<u32>>) -> Result<Self> {
        let n = texts.len();
        let mut text_fields = BTreeMap::new();
        text_fields.insert(field.to_owned(), texts);
        let ds = Dataset {
            ids: (0..n as u64).map(SampleId::Num).collect(),
            labels,
            text_fields,
            text_column: Some(field.to_owned()),
            ..Default::default()
        };
        ds.validate()?;
        Ok(ds)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of feature columns (0 without features).
    pub fn n_features(&self) -> usize {
        self.features.as_ref().map_or(0, |f| f.ncols())
    }

    /// Number of classes: `max(label) + 1`, or the number of label names.
    pub fn n_classes(&self) -> usize {
        let from_labels = self
            .labels
            .as_ref()
            .and_then(|l| l.iter().max())
            .map_or(0, |m| *m as usize + 1);
        from_labels.max(self.label_names.as_ref().map_or(0, Vec::len))
    }

    /// The default text column, if any.
    pub fn text(&self) -> Option<&[String]> {
        let col = self.text_column.as_ref()?;
        self.text_fields.get(col).map(Vec::as_slice)
    }

    /// Features or a [`Error::Data`] naming what needed them.
    pub fn require_features(&self, who: &str) -> Result<&Array2<f32>> {
        self.features.as_ref().ok_or_else(|| {
            Error::data(format!(
                "{who} needs numeric features and the dataset has none"
            ))
        })
    }

    /// Labels or a [`Error::Data`] naming what needed them.
    pub fn require_labels(&self, who: &str) -> Result<&[u32]> {
        self.labels
            .as_deref()
            .ok_or_else(|| Error::data(format!("{who} needs labels and the dataset has none")))
    }

    /// Check that every column has `len()` entries and every feature is finite.
    pub fn validate(&self) -> Result<()> {
        let n = self.len();
        let bad = |what: &str, got: usize| {
            Err(Error::data(format!(
                "column `{what}` has {got} entries for {n} samples"
            )))
        };
        if let Some(f) = &self.features {
            if f.nrows() != n {
                return bad("features", f.nrows());
            }
            if !self.feature_names.is_empty() && self.feature_names.len() != f.ncols() {
                return Err(Error::data(format!(
                    "{} feature names for {} feature columns",
                    self.feature_names.len(),
                    f.ncols()
                )));
            }
            if let Some((i, _)) = f.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                let (r, c) = (i / f.ncols().max(1), i % f.ncols().max(1));
                return Err(Error::data(format!(
                    "feature [{r}, {c}] of sample {} is not finite",
                    self.ids[r]
                )));
            }
        }
        if let Some(l) = &self.labels {
            if l.len() != n {
                return bad("labels", l.len());
            }
        }
        for (name, col) in &self.text_fields {
            if col.len() != n {
                return bad(name, col.len());
            }
        }
        if let Some(c) = &self.text_column {
            if !self.text_fields.contains_key(c) {
                return Err(Error::data(format!(
                    "text column `{c}` is not among the text fields"
                )));
            }
        }
        if !self.origins.is_empty() && self.origins.len() != n {
            return bad("origins", self.origins.len());
        }
        Ok(())
    }

    /// A new dataset with the samples at `indices`, in that order. Indices out of
    /// range are an error, not a panic.
    pub fn select(&self, indices: &[usize]) -> Result<Self> {
        let n = self.len();
        if let Some(&i) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::data(format!(
                "index {i} out of range for {n} samples"
            )));
        }
        let pick = |v: &Vec<String>| indices.iter().map(|&i| v[i].clone()).collect::<Vec<_>>();
        Ok(Dataset {
            ids: indices.iter().map(|&i| self.ids[i].clone()).collect(),
            features: self.features.as_ref().map(|f| f.select(Axis(0), indices)),
            feature_names: self.feature_names.clone(),
            labels: self
                .labels
                .as_ref()
                .map(|l| indices.iter().map(|&i| l[i]).collect()),
            label_names: self.label_names.clone(),
            text_fields: self
                .text_fields
                .iter()
                .map(|(k, v)| (k.clone(), pick(v)))
                .collect(),
            text_column: self.text_column.clone(),
            source_files: self.source_files.clone(),
            origins: if self.origins.is_empty() {
                Vec::new()
            } else {
                indices.iter().map(|&i| self.origins[i]).collect()
            },
        })
    }

    /// The samples whose index is not in `drop` (sorted or not).
    pub fn without(&self, drop: &[usize]) -> Result<Self> {
        let mut mask = vec![true; self.len()];
        for &i in drop {
            if let Some(m) = mask.get_mut(i) {
                *m = false;
            }
        }
        let keep: Vec<usize> = (0..self.len()).filter(|&i| mask[i]).collect();
        self.select(&keep)
    }

    /// Index of every id (first occurrence), for mapping findings back to rows.
    pub fn index_of_ids(&self) -> std::collections::HashMap<&SampleId, usize> {
        let mut m = std::collections::HashMap::with_capacity(self.len());
        for (i, id) in self.ids.iter().enumerate() {
            m.entry(id).or_insert(i);
        }
        m
    }

    /// The first id that appears twice, if any.
    pub fn duplicate_id(&self) -> Option<&SampleId> {
        let mut seen = std::collections::HashSet::with_capacity(self.len());
        self.ids.iter().find(|id| !seen.insert(*id))
    }

    /// Display name of class `c` (its original label string when there is one).
    pub fn label_name(&self, c: u32) -> String {
        self.label_names
            .as_ref()
            .and_then(|n| n.get(c as usize).cloned())
            .unwrap_or_else(|| c.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn select_and_without_keep_columns_aligned() {
        let mut ds = Dataset::from_features(
            array![[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]],
            Some(vec![0, 1, 2]),
        )
        .unwrap();
        ds.text_fields
            .insert("t".into(), vec!["a".into(), "b".into(), "c".into()]);
        let s = ds.without(&[1]).unwrap();
        assert_eq!(s.ids, vec![SampleId::Num(0), SampleId::Num(2)]);
        assert_eq!(s.labels, Some(vec![0, 2]));
        assert_eq!(s.features.unwrap(), array![[0.0, 1.0], [4.0, 5.0]]);
        assert_eq!(s.text_fields["t"], vec!["a".to_string(), "c".to_string()]);
        assert!(ds.select(&[3]).is_err());
    }

    #[test]
    fn validate_rejects_misaligned_and_non_finite() {
        let mut ds = Dataset::from_features(array![[0.0], [1.0]], Some(vec![0, 1])).unwrap();
        ds.labels = Some(vec![0]);
        assert!(ds.validate().unwrap_err().to_string().contains("labels"));
        let err = Dataset::from_features(array![[0.0], [f32::NAN]], None).unwrap_err();
        assert!(err.to_string().contains("sample 1"), "{err}");
    }

    #[test]
    fn ids_parse_numbers_and_strings() {
        assert_eq!(SampleId::parse("17"), SampleId::Num(17));
        assert_eq!(SampleId::parse("a-17"), SampleId::Str("a-17".into()));
        assert_eq!(serde_json::to_string(&SampleId::Num(3)).unwrap(), "3");
        assert_eq!(
            serde_json::to_string(&SampleId::from("x")).unwrap(),
            "\"x\""
        );
    }
}
