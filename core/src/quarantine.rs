//! The quarantine: flagged samples are set aside with their reasons, never
//! deleted by software. A person lists them, releases them back or purges them.
//!
//! On disk a quarantine is a JSONL file, one [`QuarantineEntry`] per line,
//! rewritten atomically (temp file, fsync, rename) on every save so a crash
//! leaves either the old or the new file, never half of one.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::dataset::SampleId;
use crate::error::{Error, Location, Result};
use crate::io::atomic::write_atomic;

/// Why a sample was flagged: which detector, with what score, and what it saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    /// Detector (defense) name.
    pub detector: String,
    /// Its score for this sample.
    pub score: f64,
    /// Explanation for a person.
    pub message: String,
}

/// The state of a quarantined sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Status {
    /// Held out of training.
    Quarantined,
    /// Reviewed and given back to training.
    Released {
        /// Who released it.
        by: String,
        /// Why.
        note: String,
    },
    /// Reviewed and its content dropped; the entry stays as a record.
    Purged {
        /// Who purged it.
        by: String,
        /// Why.
        note: String,
    },
}

/// One quarantined sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    /// The sample.
    pub id: SampleId,
    /// Combined score (the maximum over its reasons' normalised scores).
    pub score: f64,
    /// Every reason it was flagged for.
    pub reasons: Vec<Reason>,
    /// Suspected trigger, when a detector named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<serde_json::Value>,
    /// The original record (a JSONL line or CSV row), kept for review; dropped on purge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Current state.
    pub status: Status,
}

/// The set of quarantined samples, keyed by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quarantine {
    entries: BTreeMap<SampleId, QuarantineEntry>,
}

impl Quarantine {
    /// Flag `id` for `reason`. Flagging an already quarantined sample adds the
    /// reason and keeps the higher score; flagging a released one quarantines it again.
    pub fn flag(&mut self, id: SampleId, reason: Reason) -> &mut QuarantineEntry {
        let e = self
            .entries
            .entry(id.clone())
            .or_insert_with(|| QuarantineEntry {
                id,
                score: f64::NEG_INFINITY,
                reasons: Vec::new(),
                trigger: None,
                record: None,
                status: Status::Quarantined,
            });
        e.score = e.score.max(reason.score);
        e.reasons.push(reason);
        if matches!(e.status, Status::Released { .. }) {
            e.status = Status::Quarantined;
        }
        e
    }

    /// True if `id` is currently held out of training.
    pub fn is_quarantined(&self, id: &SampleId) -> bool {
        self.entries
            .get(id)
            .is_some_and(|e| !matches!(e.status, Status::Released { .. }))
    }

    /// The entry of `id`.
    pub fn get(&self, id: &SampleId) -> Option<&QuarantineEntry> {
        self.entries.get(id)
    }

    /// Every entry, by id.
    pub fn entries(&self) -> impl Iterator<Item = &QuarantineEntry> {
        self.entries.values()
    }

    /// Number of entries in any state.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of samples currently held out of training.
    pub fn active_len(&self) -> usize {
        self.entries
            .values()
            .filter(|e| self.is_quarantined(&e.id))
            .count()
    }

    /// Give `id` back to training. Unknown ids are an error.
    pub fn release(&mut self, id: &SampleId, by: &str, note: &str) -> Result<()> {
        let e = self
            .entries
            .get_mut(id)
            .ok_or_else(|| Error::data(format!("sample {id} is not in quarantine")))?;
        if matches!(e.status, Status::Purged { .. }) {
            return Err(Error::data(format!(
                "sample {id} was purged and cannot be released"
            )));
        }
        e.status = Status::Released {
            by: by.into(),
            note: note.into(),
        };
        Ok(())
    }

    /// Drop the stored record of `id`, keeping the entry and its reasons.
    pub fn purge(&mut self, id: &SampleId, by: &str, note: &str) -> Result<()> {
        let e = self
            .entries
            .get_mut(id)
            .ok_or_else(|| Error::data(format!("sample {id} is not in quarantine")))?;
        e.record = None;
        e.status = Status::Purged {
            by: by.into(),
            note: note.into(),
        };
        Ok(())
    }

    /// Read a quarantine file. A missing file is an empty quarantine.
    pub fn load(path: &Path) -> Result<Self> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::io(path, e)),
        };
        let mut q = Self::default();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| Error::io(path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            let e: QuarantineEntry = serde_json::from_str(&line).map_err(|e| {
                Error::parse(Location::file(path).at_line(i as u64 + 1), e.to_string())
            })?;
            q.entries.insert(e.id.clone(), e);
        }
        Ok(q)
    }

    /// Write the quarantine atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, |w| {
            for e in self.entries.values() {
                serde_json::to_writer(&mut *w, e).map_err(std::io::Error::other)?;
                w.write_all(b"\n")?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: f64) -> Reason {
        Reason {
            detector: "knn".into(),
            score: s,
            message: "far".into(),
        }
    }

    #[test]
    fn flag_release_purge_never_delete() {
        let mut q = Quarantine::default();
        q.flag(SampleId::Num(3), reason(1.0));
        q.flag(SampleId::Num(3), reason(2.0)).record = Some("{\"x\":1}".into());
        assert_eq!(q.get(&SampleId::Num(3)).unwrap().score, 2.0);
        assert_eq!(q.active_len(), 1);
        q.release(&SampleId::Num(3), "alice", "false positive")
            .unwrap();
        assert!(!q.is_quarantined(&SampleId::Num(3)));
        q.purge(&SampleId::Num(3), "bob", "confirmed poison")
            .unwrap();
        assert_eq!(q.len(), 1, "purge keeps the entry");
        assert!(q.get(&SampleId::Num(3)).unwrap().record.is_none());
        assert!(q.release(&SampleId::Num(9), "x", "y").is_err());
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.jsonl");
        let mut q = Quarantine::default();
        q.flag(SampleId::from("a"), reason(0.5));
        q.flag(SampleId::Num(1), reason(0.7));
        q.save(&p).unwrap();
        assert_eq!(Quarantine::load(&p).unwrap(), q);
        std::fs::write(&p, "{\"id\":1}\n").unwrap();
        let err = Quarantine::load(&p).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
