//! What changed between two manifests (or a manifest and the data on disk):
//! files added, removed or changed, and inside changed record-level files the
//! records changed, inserted, deleted or moved.
//!
//! Records are aligned on their digests, so one inserted record is reported
//! as one insertion, not as every later record having changed. The
//! alignment strips the common prefix and suffix, anchors on digests unique
//! to both sides (patience diff), and solves the small gaps between anchors
//! exactly; its cost stays near-linear for the edits poisoners make.

use std::collections::HashMap;

use mithridate_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::manifest::{FileEntry, Manifest, RecordSet};

/// Kind of file-level change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileChangeKind {
    /// On disk (or in B) but not in the manifest (A).
    Added,
    /// In the manifest but missing.
    Removed,
    /// Present in both, with different bytes.
    Changed,
    /// A symlink whose target lies outside the dataset root (or dangles).
    SymlinkEscape,
}

/// Kind of record-level change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordChangeKind {
    /// Same position, different bytes.
    Changed,
    /// A record that was not there.
    Inserted,
    /// A record that is gone.
    Deleted,
    /// The same bytes at another position (reordering).
    Moved,
}

/// One record that differs. Indices are 0-based record positions (JSONL:
/// line number − 1; CSV: data row after the header; NPY: row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordChange {
    /// What happened.
    pub kind: RecordChangeKind,
    /// Position in the expected (old) file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_index: Option<u64>,
    /// Position in the actual (new) file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_index: Option<u64>,
    /// Record id: the expected one, or for insertions the actual one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The actual id when it differs from the expected one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_id: Option<String>,
}

impl std::fmt::Display for RecordChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = self
            .id
            .as_deref()
            .map(|i| format!(" (id {i})"))
            .unwrap_or_default();
        match (self.kind, self.old_index, self.new_index) {
            (RecordChangeKind::Changed, Some(o), _) => write!(f, "record {o}{id} changed"),
            (RecordChangeKind::Inserted, _, Some(n)) => write!(f, "record inserted at {n}{id}"),
            (RecordChangeKind::Deleted, Some(o), _) => write!(f, "record {o}{id} deleted"),
            (RecordChangeKind::Moved, Some(o), Some(n)) => write!(f, "record {o}{id} moved to {n}"),
            (k, o, n) => write!(f, "record {k:?} {o:?}->{n:?}{id}"),
        }
    }
}

/// A digest and size as seen on one side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFacts {
    /// Size in bytes.
    pub size: u64,
    /// Digest (hex).
    pub digest: String,
}

/// One file that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    /// Path relative to the root.
    pub path: String,
    /// What happened.
    pub kind: FileChangeKind,
    /// Expected size and digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<FileFacts>,
    /// Actual size and digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<FileFacts>,
    /// Record changes, for record-level entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<RecordChange>,
    /// The header (CSV header row, NPY header) changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub header_changed: bool,
    /// Anything else a person should know (symlink target, framing-only change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl std::fmt::Display for FileChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            FileChangeKind::Added => write!(f, "added: {}", self.path)?,
            FileChangeKind::Removed => write!(f, "removed: {}", self.path)?,
            FileChangeKind::Changed => {
                write!(f, "changed: {}", self.path)?;
                if let (Some(e), Some(a)) = (&self.expected, &self.actual) {
                    if e.size != a.size {
                        write!(f, " (size {} -> {})", e.size, a.size)?;
                    }
                }
            }
            FileChangeKind::SymlinkEscape => {
                write!(f, "symlink escapes the dataset root: {}", self.path)?
            }
        }
        if self.header_changed {
            write!(f, "; header changed")?;
        }
        if let Some(n) = &self.note {
            write!(f, "; {n}")?;
        }
        Ok(())
    }
}

impl FileChange {
    pub(crate) fn new(path: &str, kind: FileChangeKind) -> Self {
        Self {
            path: path.to_owned(),
            kind,
            expected: None,
            actual: None,
            records: Vec::new(),
            header_changed: false,
            note: None,
        }
    }
}

fn facts(f: &FileEntry) -> FileFacts {
    FileFacts {
        size: f.size,
        digest: f.digest.clone(),
    }
}

/// Compare two entries for the same path; None when they match.
pub(crate) fn compare_entries(exp: &FileEntry, act: &FileEntry) -> Option<FileChange> {
    if exp.size == act.size && exp.digest == act.digest {
        return None;
    }
    let mut c = FileChange::new(&exp.path, FileChangeKind::Changed);
    c.expected = Some(facts(exp));
    c.actual = Some(facts(act));
    if let (Some(e), Some(a)) = (&exp.records, &act.records) {
        c.header_changed = e.header != a.header;
        c.records = diff_records(e, a);
        if c.records.is_empty() && !c.header_changed {
            c.note = Some(
                "no record changed: only framing (line endings, final newline) differs".into(),
            );
        }
    }
    Some(c)
}

/// File-level and record-level differences from `a` (expected) to `b` (actual).
/// Both must use the same digest algorithm. Paths either manifest excludes
/// (see [`Manifest::exclude`]) are not compared.
pub fn diff_manifests(a: &Manifest, b: &Manifest) -> Result<Vec<FileChange>> {
    if a.algorithm != b.algorithm {
        return Err(Error::data(format!(
            "cannot compare a {} manifest with a {} manifest",
            a.algorithm, b.algorithm
        )));
    }
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.files.len() || j < b.files.len() {
        match (a.files.get(i), b.files.get(j)) {
            (Some(x), Some(y)) if x.path == y.path => {
                out.extend(compare_entries(x, y));
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.path < y.path => {
                out.push(removed(x));
                i += 1;
            }
            (Some(x), None) => {
                out.push(removed(x));
                i += 1;
            }
            (_, Some(y)) => {
                let mut c = FileChange::new(&y.path, FileChangeKind::Added);
                c.actual = Some(facts(y));
                out.push(c);
                j += 1;
            }
            (None, None) => break,
        }
    }
    // A path one side excluded as not-content (its manifest) is not a difference.
    out.retain(|c| !a.exclude.contains(&c.path) && !b.exclude.contains(&c.path));
    Ok(out)
}

pub(crate) fn removed(x: &FileEntry) -> FileChange {
    let mut c = FileChange::new(&x.path, FileChangeKind::Removed);
    c.expected = Some(facts(x));
    c
}

/// Record changes from `old` to `new`.
pub fn diff_records(old: &RecordSet, new: &RecordSet) -> Vec<RecordChange> {
    let a: Vec<&[u8]> = old.leaves.chunks_exact(32).collect();
    let b: Vec<&[u8]> = new.leaves.chunks_exact(32).collect();
    let ops = align(&a, &b);
    let id_old = |i: usize| old.id(i).map(str::to_owned);
    let id_new = |i: usize| new.id(i).map(str::to_owned);
    ops.into_iter()
        .map(|op| match op {
            Op::Changed(o, n) => {
                let (id, nid) = (id_old(o), id_new(n));
                let new_id = if nid != id { nid } else { None };
                RecordChange {
                    kind: RecordChangeKind::Changed,
                    old_index: Some(o as u64),
                    new_index: Some(n as u64),
                    id,
                    new_id,
                }
            }
            Op::Inserted(n) => RecordChange {
                kind: RecordChangeKind::Inserted,
                old_index: None,
                new_index: Some(n as u64),
                id: id_new(n),
                new_id: None,
            },
            Op::Deleted(o) => RecordChange {
                kind: RecordChangeKind::Deleted,
                old_index: Some(o as u64),
                new_index: None,
                id: id_old(o),
                new_id: None,
            },
            Op::Moved(o, n) => RecordChange {
                kind: RecordChangeKind::Moved,
                old_index: Some(o as u64),
                new_index: Some(n as u64),
                id: id_old(o),
                new_id: None,
            },
        })
        .collect()
}

/// An edit in an alignment (indices into old and new).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// old\[o\] was replaced by new\[n\].
    Changed(usize, usize),
    /// new\[n\] has no counterpart.
    Inserted(usize),
    /// old\[o\] has no counterpart.
    Deleted(usize),
    /// old\[o\] reappears unchanged at new\[n\].
    Moved(usize, usize),
}

/// Gaps up to this many cells are aligned exactly (LCS table).
const EXACT_CELLS: usize = 1 << 20;
/// Patience recursion depth limit (beyond it, gaps are paired in order).
const MAX_DEPTH: usize = 64;

/// Align two sequences of items; returns the edits, sorted by position.
pub fn align<T: Eq + std::hash::Hash + Copy>(a: &[T], b: &[T]) -> Vec<Op> {
    let mut raw = Vec::new();
    gap(a, b, 0, 0, 0, &mut raw);
    // A deleted item that reappears as an inserted one was moved.
    let mut inserted: HashMap<T, Vec<usize>> = HashMap::new();
    for op in &raw {
        if let Op::Inserted(n) = *op {
            inserted.entry(b[n]).or_default().push(n);
        }
    }
    let mut moved_to = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for op in &raw {
        if let Op::Deleted(o) = *op {
            if let Some(n) = inserted
                .get_mut(&a[o])
                .and_then(|v| (!v.is_empty()).then(|| v.remove(0)))
            {
                moved_to.insert(n, o);
                out.push(Op::Moved(o, n));
                continue;
            }
        }
        out.push(*op);
    }
    out.retain(|op| !matches!(op, Op::Inserted(n) if moved_to.contains_key(n)));
    out.sort_by_key(|op| match *op {
        Op::Changed(o, _) | Op::Deleted(o) | Op::Moved(o, _) => (o, 0),
        Op::Inserted(n) => (n, 1),
    });
    out
}

/// Align a\[..\] (at offset oa) with b\[..\] (at offset ob).
fn gap<T: Eq + std::hash::Hash + Copy>(
    a: &[T],
    b: &[T],
    oa: usize,
    ob: usize,
    depth: usize,
    out: &mut Vec<Op>,
) {
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a, b, oa, ob) = (&a[pre..], &b[pre..], oa + pre, ob + pre);
    let suf = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (a, b) = (&a[..a.len() - suf], &b[..b.len() - suf]);
    if a.is_empty() || b.is_empty() {
        pair(a.len(), b.len(), oa, ob, out);
        return;
    }
    if a.len().saturating_mul(b.len()) <= EXACT_CELLS {
        lcs(a, b, oa, ob, out);
        return;
    }
    let anchors = if depth < MAX_DEPTH {
        unique_anchors(a, b)
    } else {
        Vec::new()
    };
    if anchors.is_empty() {
        pair(a.len(), b.len(), oa, ob, out);
        return;
    }
    let (mut pa, mut pb) = (0, 0);
    for (i, j) in anchors {
        gap(&a[pa..i], &b[pb..j], oa + pa, ob + pb, depth + 1, out);
        pa = i + 1;
        pb = j + 1;
    }
    gap(&a[pa..], &b[pb..], oa + pa, ob + pb, depth + 1, out);
}

/// A block of `na` old and `nb` new items with nothing in common: the first
/// min(na, nb) are changes in place, the rest insertions or deletions.
fn pair(na: usize, nb: usize, oa: usize, ob: usize, out: &mut Vec<Op>) {
    let k = na.min(nb);
    out.extend((0..k).map(|i| Op::Changed(oa + i, ob + i)));
    out.extend((k..na).map(|i| Op::Deleted(oa + i)));
    out.extend((k..nb).map(|i| Op::Inserted(ob + i)));
}

/// Items occurring exactly once on each side, as (index in a, index in b),
/// reduced to the longest run increasing on both sides.
fn unique_anchors<T: Eq + std::hash::Hash + Copy>(a: &[T], b: &[T]) -> Vec<(usize, usize)> {
    let mut count: HashMap<T, (u32, u32, usize, usize)> = HashMap::with_capacity(a.len() + b.len());
    for (i, x) in a.iter().enumerate() {
        let e = count.entry(*x).or_insert((0, 0, i, 0));
        e.0 += 1;
    }
    for (j, y) in b.iter().enumerate() {
        if let Some(e) = count.get_mut(y) {
            e.1 += 1;
            e.3 = j;
        }
    }
    let mut cands: Vec<(usize, usize)> = count
        .values()
        .filter(|e| e.0 == 1 && e.1 == 1)
        .map(|e| (e.2, e.3))
        .collect();
    cands.sort_unstable();
    lis_by_second(&cands)
}

/// Longest subsequence of `v` (sorted by .0) strictly increasing in .1.
fn lis_by_second(v: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut tails: Vec<usize> = Vec::new(); // indices into v
    let mut prev = vec![usize::MAX; v.len()];
    for (k, &(_, y)) in v.iter().enumerate() {
        let pos = tails.partition_point(|&t| v[t].1 < y);
        if pos > 0 {
            prev[k] = tails[pos - 1];
        }
        if pos == tails.len() {
            tails.push(k);
        } else {
            tails[pos] = k;
        }
    }
    let mut out = Vec::with_capacity(tails.len());
    let mut k = tails.last().copied().unwrap_or(usize::MAX);
    while k != usize::MAX {
        out.push(v[k]);
        k = prev[k];
    }
    out.reverse();
    out
}

/// Exact alignment of a small gap by longest common subsequence; runs of
/// unmatched items between matches are paired as changes.
fn lcs<T: Eq>(a: &[T], b: &[T], oa: usize, ob: usize, out: &mut Vec<Op>) {
    let (n, m) = (a.len(), b.len());
    let w = m + 1;
    let mut t = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i * w + j] = if a[i] == b[j] {
                t[(i + 1) * w + j + 1] + 1
            } else {
                t[(i + 1) * w + j].max(t[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let (mut si, mut sj) = (0, 0);
    while i < n && j < m {
        if a[i] == b[j] {
            pair(i - si, j - sj, oa + si, ob + sj, out);
            i += 1;
            j += 1;
            si = i;
            sj = j;
        } else if t[(i + 1) * w + j] >= t[i * w + j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    pair(n - si, m - sj, oa + si, ob + sj, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ops(a: &[u32], b: &[u32]) -> Vec<Op> {
        align(a, b)
    }

    #[test]
    fn single_edits_are_single_ops() {
        let a: Vec<u32> = (0..10).collect();
        let mut ins = a.clone();
        ins.insert(3, 99);
        assert_eq!(ops(&a, &ins), vec![Op::Inserted(3)]);
        let mut del = a.clone();
        del.remove(7);
        assert_eq!(ops(&a, &del), vec![Op::Deleted(7)]);
        let mut ch = a.clone();
        ch[5] = 55;
        assert_eq!(ops(&a, &ch), vec![Op::Changed(5, 5)]);
        let mut sw = a.clone();
        sw.swap(2, 3);
        assert_eq!(ops(&a, &sw).len(), 1, "{:?}", ops(&a, &sw));
        assert!(matches!(ops(&a, &sw)[0], Op::Moved(..)));
        assert_eq!(
            ops(&a, &a[..6]),
            (6..10).map(Op::Deleted).collect::<Vec<_>>()
        );
    }

    #[test]
    fn large_sequences_use_anchors_and_stay_precise() {
        let a: Vec<u32> = (0..200_000).collect();
        let mut b = a.clone();
        b.insert(1000, 1_000_000);
        b[150_000] = 2_000_000;
        b.remove(190_000);
        // Every 10_000th record tampered (the every-Nth attack).
        for k in (5_000..100_000).step_by(10_000) {
            b[k] = 3_000_000 + k as u32;
        }
        let got = ops(&a, &b);
        assert!(got.contains(&Op::Inserted(1000)));
        assert!(got.contains(&Op::Changed(149_999, 150_000)));
        assert!(got.contains(&Op::Deleted(189_999)));
        assert_eq!(got.len(), 3 + 10, "{got:?}");
    }

    proptest! {
        #[test]
        fn alignment_explains_new_from_old(a in proptest::collection::vec(0u8..6, 0..40), b in proptest::collection::vec(0u8..6, 0..40)) {
            let got = align(&a, &b);
            // Every new index is accounted for exactly once, as equal (unmentioned) or by an op.
            let mut new_seen = vec![false; b.len()];
            let mut old_seen = vec![false; a.len()];
            for op in &got {
                match *op {
                    Op::Changed(o, n) => { prop_assert!(!old_seen[o] && !new_seen[n]); old_seen[o] = true; new_seen[n] = true; }
                    Op::Inserted(n) => { prop_assert!(!new_seen[n]); new_seen[n] = true; }
                    Op::Deleted(o) => { prop_assert!(!old_seen[o]); old_seen[o] = true; }
                    Op::Moved(o, n) => { prop_assert_eq!(a[o], b[n]); old_seen[o] = true; new_seen[n] = true; }
                }
            }
            let unmatched_old = old_seen.iter().filter(|s| !**s).count();
            let unmatched_new = new_seen.iter().filter(|s| !**s).count();
            prop_assert_eq!(unmatched_old, unmatched_new);
            if a == b { prop_assert!(got.is_empty()); }
        }
    }
}
