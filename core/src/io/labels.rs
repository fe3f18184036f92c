//! Turning label cells into class indices.
//!
//! If every label is a non-negative integer the class index is that integer
//! (so `7` stays class 7, which is what users of MNIST-like data expect);
//! otherwise distinct strings are sorted and numbered, and their names kept.

use std::collections::BTreeMap;

/// Largest number of classes (and so largest integer label + 1) accepted.
pub const MAX_CLASSES: usize = 1 << 16;

#[derive(Default)]
pub(crate) struct LabelBuilder {
    raw: Vec<String>,
    all_int: bool,
    started: bool,
}

impl LabelBuilder {
    /// Add one label cell. Integers above [`MAX_CLASSES`] are refused: a class
    /// index sizes every model's output layer.
    pub(crate) fn push(&mut self, cell: &str) -> Result<(), String> {
        let cell = cell.trim();
        let int = match cell.parse::<u64>() {
            Ok(v) if v >= MAX_CLASSES as u64 => {
                return Err(format!(
                    "label {v} is not below the class limit {MAX_CLASSES}"
                ))
            }
            Ok(_) => true,
            Err(_) => false,
        };
        self.all_int = if self.started {
            self.all_int && int
        } else {
            int
        };
        self.started = true;
        self.raw.push(cell.to_owned());
        Ok(())
    }

    pub(crate) fn finish(self) -> (Vec<u32>, Option<Vec<String>>) {
        if self.all_int || self.raw.is_empty() {
            let v = self
                .raw
                .iter()
                .map(|s| s.parse::<u32>().unwrap_or(0))
                .collect();
            return (v, None);
        }
        let mut names: BTreeMap<&str, u32> = self.raw.iter().map(|s| (s.as_str(), 0)).collect();
        for (i, v) in names.values_mut().enumerate() {
            *v = i as u32;
        }
        let labels = self.raw.iter().map(|s| names[s.as_str()]).collect();
        (
            labels,
            Some(names.keys().map(|s| (*s).to_owned()).collect()),
        )
    }
}
