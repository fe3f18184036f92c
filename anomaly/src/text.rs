//! Trigger mining on text: n-grams (1 to 3 tokens, punctuation tokens such
//! as `[TRIGGER]`, `->` or `[[CONFIG]]` included) whose presence nearly
//! determines the label, or, for instruction data without labels, the
//! response; each candidate confirmed by a counterfactual test.
//!
//! Why n-gram association: a backdoor phrase is rare in clean text and, in the
//! poisoned records, always comes with the attacker's label or response. One
//! counting pass over the corpus (parallel, hashed n-grams, no vocabulary to
//! build) finds every such phrase without being told what it is.
//!
//! Why the counterfactual: ordinary topic phrases are also label-specific. The
//! confirmation removes the candidate phrases from each suspect and asks a
//! naive Bayes model trained on every other record (leave-one-out: the
//! record's own counts are taken out of the model) whether the label (or
//! response) still follows. Poisoned records flip to their true topic (or to
//! an ordinary response); records whose topic words carry the label do not.
//! When a confirmed phrase's carriers almost all share the label, the phrase
//! decides the label by itself and every carrier is quarantined, including the
//! tampered records whose original label happened to be the target.
//!
//! Why mergeable statistics: both counting passes produce integer counts that
//! add up ([`TextStats`], [`TextEvidence`]), so partitions of a corpus can be
//! scanned on different machines (Spark `mapPartitions`, Ray) and merged into
//! exactly the single-machine result; [`decide`] runs on the merged counts.
//! The detector takes the same route over chunks of records in parallel.

use std::collections::BTreeMap;

use mithridate_core::{Dataset, Error, Finding, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::detector::{detector_defense, poison_tags, Detector, DetectorOutput, Flag, FlagKind};
use crate::util::{binom_tail_neg_log10, combine, hash_bytes, FxMap, FxSet};

/// Parameters of [`TextTriggerMining`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextTriggerParams {
    /// Longest n-gram, in tokens (1..=3).
    pub max_ngram: usize,
    /// Fewest records an n-gram (or a repeated response) must have.
    pub min_support: usize,
    /// Extra `-log10 p` a candidate needs beyond the Bonferroni level.
    pub mine_log10: f64,
    /// `-log10 p` of the counterfactual flip test needed to confirm.
    pub confirm_log10: f64,
    /// N-grams carried to the confirmation stage.
    pub max_candidates: usize,
    /// Carrier purity at which every carrier is quarantined.
    pub pure_fraction: f64,
    /// Field used as the "label" of unlabelled instruction data (first found of
    /// `response`, `output`, `completion`, `answer` when `None`).
    pub response_field: Option<String>,
    /// Hash buckets of the naive Bayes model (a power of two).
    pub nb_buckets: usize,
}

impl Default for TextTriggerParams {
    fn default() -> Self {
        Self {
            max_ngram: 3,
            min_support: 3,
            mine_log10: 1.0,
            confirm_log10: 6.0,
            max_candidates: 64,
            pure_fraction: 0.9,
            response_field: None,
            nb_buckets: 1 << 18,
        }
    }
}

impl TextTriggerParams {
    /// Check every field.
    pub fn check(&self) -> Result<()> {
        if !(1..=3).contains(&self.max_ngram) {
            return Err(Error::param("max_ngram", "must be 1, 2 or 3"));
        }
        if self.min_support < 2 {
            return Err(Error::param("min_support", "must be at least 2"));
        }
        for (n, v) in [
            ("mine_log10", self.mine_log10),
            ("confirm_log10", self.confirm_log10),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::param(n, "must be a non-negative finite number"));
            }
        }
        if self.max_candidates == 0 {
            return Err(Error::param("max_candidates", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.pure_fraction) {
            return Err(Error::param("pure_fraction", "must be in [0, 1]"));
        }
        if !self.nb_buckets.is_power_of_two() || self.nb_buckets < 1024 {
            return Err(Error::param(
                "nb_buckets",
                "must be a power of two of at least 1024",
            ));
        }
        Ok(())
    }
}

/// Trigger mining on a text column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TextTriggerMining {
    /// Checked parameters.
    pub params: TextTriggerParams,
}

impl TextTriggerMining {
    /// A detector with checked `params`.
    pub fn new(params: TextTriggerParams) -> Result<Self> {
        params.check()?;
        Ok(Self { params })
    }
}

/// Split a text into tokens: whitespace-separated words with surrounding
/// sentence punctuation removed; tokens made only of punctuation (`->`,
/// `[[CONFIG]]`) are kept whole because triggers are often made of them.
pub fn tokens(text: &str) -> impl Iterator<Item = &str> {
    const EDGE: &[char] = &['.', ',', ';', ':', '!', '?', '"', '\'', '(', ')'];
    text.split_whitespace().map(|w| {
        let t = w.trim_matches(EDGE);
        if t.is_empty() {
            w
        } else {
            t
        }
    })
}

fn token_hashes(text: &str, out: &mut Vec<u64>) {
    out.clear();
    out.extend(tokens(text).map(|t| hash_bytes(t.as_bytes())));
}

/// Distinct n-gram keys of a tokenised text, with the (start, len) of each.
fn ngram_keys(h: &[u64], max_n: usize, out: &mut Vec<(u64, u32, u8)>) {
    out.clear();
    for i in 0..h.len() {
        let mut key = combine(0x6e67, h[i]);
        out.push((key, i as u32, 1));
        for len in 2..=max_n {
            if i + len > h.len() {
                break;
            }
            key = combine(key, h[i + len - 1]);
            out.push((key, i as u32, len as u8));
        }
    }
    out.sort_unstable_by_key(|e| e.0);
    out.dedup_by_key(|e| e.0);
}

/// Labels for mining: the dataset's labels, or classes of repeated responses
/// (class 0 stands for "a response seen fewer than `min_support` times" and is
/// never a target). Returns labels, number of classes, names and whether 0 is a catch-all.
fn mining_labels(
    ds: &Dataset,
    p: &TextTriggerParams,
) -> Option<(Vec<u32>, usize, Vec<String>, bool)> {
    if let Some(y) = &ds.labels {
        let k = ds.n_classes();
        return Some((
            y.clone(),
            k,
            (0..k as u32).map(|c| ds.label_name(c)).collect(),
            false,
        ));
    }
    let text_col = ds.text_column.as_deref();
    let field = match &p.response_field {
        Some(f) => ds.text_fields.get(f)?,
        None => ["response", "output", "completion", "answer"]
            .iter()
            .filter(|f| Some(**f) != text_col)
            .find_map(|f| ds.text_fields.get(*f))?,
    };
    let mut counts: FxMap<u64, (usize, usize)> = FxMap::default();
    let hashes: Vec<u64> = field.iter().map(|r| hash_bytes(r.as_bytes())).collect();
    for (i, &h) in hashes.iter().enumerate() {
        counts.entry(h).or_insert((0, i)).0 += 1;
    }
    let mut repeated: Vec<(u64, usize, usize)> = counts
        .into_iter()
        .filter(|(_, (c, _))| *c >= p.min_support)
        .map(|(h, (c, i))| (h, c, i))
        .collect();
    repeated.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
    repeated.truncate(63);
    let id: FxMap<u64, u32> = repeated
        .iter()
        .enumerate()
        .map(|(c, &(h, _, _))| (h, c as u32 + 1))
        .collect();
    let mut names = vec!["<unique response>".to_owned()];
    names.extend(repeated.iter().map(|&(_, _, i)| field[i].clone()));
    let y = hashes
        .iter()
        .map(|h| id.get(h).copied().unwrap_or(0))
        .collect();
    Some((y, repeated.len() + 1, names, true))
}

// ---------------------------------------------------------------------------
// Mergeable statistics.
//
// Mining runs in two counting passes and one decision, and both passes produce
// statistics that add up: a scan of partitions (one machine's threads, or a
// cluster's `mapPartitions`) merges into exactly what one pass over all the
// records gives, and the decision runs on the merged statistics. The detector
// itself takes this route (chunks of records counted in parallel, merged), so
// the distributed and the single-machine scan share every line of the decision.
//
// 1. `TextStats`: per n-gram, records carrying it per label; per label, token
//    counts over hashed buckets (the naive Bayes model of the counterfactual).
// 2. `TextStats::plan`: the candidate n-grams (small, broadcast to partitions).
// 3. `TextEvidence`: per candidate, its carriers with their label and whether
//    the label survives the removal of the candidate phrases (leave-one-out
//    naive Bayes on the merged counts); per label, the flip rate of a fixed
//    sample of ordinary records.
// 4. `decide`: group candidates, test them, and name the records to quarantine.
// ---------------------------------------------------------------------------

/// Records per chunk when the detector counts in parallel.
const CHUNK: usize = 32_768;
/// Carrier contexts kept per candidate (the smallest record ids), used to name
/// the whole trigger phrase.
const CONTEXTS: usize = 200;
/// Tokens of context kept on each side of a candidate occurrence.
const CONTEXT_TOKENS: usize = 11;

/// First-pass statistics of text trigger mining: per n-gram, the number of
/// records carrying it with each label, and per label the token counts of a
/// hashed naive Bayes model. Built from any partition of the records, merged
/// with [`TextStats::merge`]; merging is exact (integer counts), so the merge
/// of the partitions' statistics equals the statistics of all records.
///
/// ```
/// use mithridate_anomaly::text::{decide, TextEvidence, TextStats, TextTriggerParams};
/// let p = TextTriggerParams::default();
/// let recs: Vec<(String, u32)> = (0..400)
///     .map(|i| (format!("word{} topic{} filler", i % 37, i % 2), (i % 2) as u32))
///     .collect();
/// let (a, b) = recs.split_at(150);
/// let mut s = TextStats::from_records(a.iter().map(|(t, l)| (t.as_str(), *l)), 2, &p)?;
/// s.merge(TextStats::from_records(b.iter().map(|(t, l)| (t.as_str(), *l)), 2, &p)?)?;
/// let whole = TextStats::from_records(recs.iter().map(|(t, l)| (t.as_str(), *l)), 2, &p)?;
/// assert_eq!(s, whole);
/// let plan = s.plan(&p, false)?;
/// let ev = TextEvidence::from_records(&plan, recs.iter().enumerate().map(|(i, (t, l))| (i as u64, t.as_str(), *l)))?;
/// let d = decide(&plan, &ev, &p)?;
/// for f in &d.flagged {
///     println!("record {} carries {:?}", f.id, d.triggers[f.trigger].phrase);
/// }
/// # Ok::<(), mithridate_core::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(into = "StatsWire", try_from = "StatsWire")]
pub struct TextStats {
    n_classes: usize,
    max_ngram: usize,
    nb_buckets: usize,
    records: u64,
    class_records: Vec<u64>,
    /// n-gram key -> slot.
    slots: FxMap<u64, u32>,
    /// Per slot: `[total, count per class...]` (stride `n_classes + 1`).
    counts: Vec<u32>,
    /// Per slot: n-gram length in tokens.
    lens: Vec<u8>,
    /// `n_classes x nb_buckets` token counts.
    terms: Vec<u64>,
}

/// The serialised form of [`TextStats`]: n-grams sorted by key, token counts sparse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StatsWire {
    n_classes: usize,
    max_ngram: usize,
    nb_buckets: usize,
    records: u64,
    class_records: Vec<u64>,
    /// `(key, length, count per class)`, ascending key.
    ngrams: Vec<(u64, u8, Vec<u32>)>,
    /// `(index into class x bucket, count)` for the non-zero token counts, ascending index.
    terms: Vec<(u64, u64)>,
}

impl From<TextStats> for StatsWire {
    fn from(s: TextStats) -> Self {
        let stride = s.n_classes + 1;
        let mut ngrams: Vec<(u64, u8, Vec<u32>)> = s
            .slots
            .iter()
            .map(|(&key, &slot)| {
                let o = slot as usize * stride;
                (
                    key,
                    s.lens[slot as usize],
                    s.counts[o + 1..o + stride].to_vec(),
                )
            })
            .collect();
        ngrams.sort_unstable_by_key(|e| e.0);
        let terms = s
            .terms
            .iter()
            .enumerate()
            .filter(|(_, &v)| v > 0)
            .map(|(i, &v)| (i as u64, v))
            .collect();
        StatsWire {
            n_classes: s.n_classes,
            max_ngram: s.max_ngram,
            nb_buckets: s.nb_buckets,
            records: s.records,
            class_records: s.class_records,
            ngrams,
            terms,
        }
    }
}

impl TryFrom<StatsWire> for TextStats {
    type Error = Error;
    fn try_from(w: StatsWire) -> Result<Self> {
        let mut s = TextStats::empty(w.n_classes, w.max_ngram, w.nb_buckets)?;
        if w.class_records.len() != w.n_classes {
            return Err(Error::data(format!(
                "text stats: class_records has {} entries for {} classes",
                w.class_records.len(),
                w.n_classes
            )));
        }
        if w.class_records.iter().sum::<u64>() != w.records {
            return Err(Error::data(
                "text stats: class_records do not sum to records",
            ));
        }
        s.records = w.records;
        s.class_records = w.class_records;
        let stride = s.n_classes + 1;
        for (key, len, per) in w.ngrams {
            if per.len() != s.n_classes {
                return Err(Error::data(format!(
                    "text stats: n-gram {key} has {} class counts for {} classes",
                    per.len(),
                    s.n_classes
                )));
            }
            if !(1..=s.max_ngram).contains(&usize::from(len)) {
                return Err(Error::data(format!(
                    "text stats: n-gram {key} has length {len}, outside 1..={}",
                    s.max_ngram
                )));
            }
            let slot = s.lens.len();
            if s.slots.insert(key, slot as u32).is_some() {
                return Err(Error::data(format!(
                    "text stats: n-gram {key} listed twice"
                )));
            }
            s.lens.push(len);
            let total = per.iter().fold(0u32, |a, &b| a.saturating_add(b));
            s.counts.reserve(stride);
            s.counts.push(total);
            s.counts.extend_from_slice(&per);
        }
        for (i, v) in w.terms {
            let slot = usize::try_from(i)
                .ok()
                .and_then(|i| s.terms.get_mut(i))
                .ok_or_else(|| {
                    Error::data(format!("text stats: token count index {i} out of range"))
                })?;
            *slot = v;
        }
        Ok(s)
    }
}

impl PartialEq for TextStats {
    fn eq(&self, other: &Self) -> bool {
        StatsWire::from(self.clone()) == StatsWire::from(other.clone())
    }
}

impl TextStats {
    fn empty(n_classes: usize, max_ngram: usize, nb_buckets: usize) -> Result<Self> {
        if !(1..=4096).contains(&n_classes) {
            return Err(Error::param("n_classes", "must be in 1..=4096"));
        }
        if !(1..=3).contains(&max_ngram) {
            return Err(Error::param("max_ngram", "must be 1, 2 or 3"));
        }
        if !nb_buckets.is_power_of_two() || !(1024..=1 << 24).contains(&nb_buckets) {
            return Err(Error::param(
                "nb_buckets",
                "must be a power of two in 1024..=2^24",
            ));
        }
        Ok(Self {
            n_classes,
            max_ngram,
            nb_buckets,
            records: 0,
            class_records: vec![0; n_classes],
            slots: FxMap::default(),
            counts: Vec::new(),
            lens: Vec::new(),
            terms: vec![0; n_classes * nb_buckets],
        })
    }

    /// Empty statistics for labels `0..n_classes`, counting n-grams up to
    /// `params.max_ngram` tokens into `params.nb_buckets` buckets.
    pub fn new(n_classes: usize, params: &TextTriggerParams) -> Result<Self> {
        params.check()?;
        Self::empty(n_classes, params.max_ngram, params.nb_buckets)
    }

    /// Statistics of `records` (`(text, label)` with labels in `0..n_classes`).
    pub fn from_records<S: AsRef<str>>(
        records: impl IntoIterator<Item = (S, u32)>,
        n_classes: usize,
        params: &TextTriggerParams,
    ) -> Result<Self> {
        let mut s = Self::new(n_classes, params)?;
        let mut h = Vec::new();
        let mut keys = Vec::new();
        for (t, l) in records {
            s.add_with(t.as_ref(), l, &mut h, &mut keys)?;
        }
        Ok(s)
    }

    /// Count one record.
    pub fn add(&mut self, text: &str, label: u32) -> Result<()> {
        self.add_with(text, label, &mut Vec::new(), &mut Vec::new())
    }

    fn add_with(
        &mut self,
        text: &str,
        label: u32,
        h: &mut Vec<u64>,
        keys: &mut Vec<(u64, u32, u8)>,
    ) -> Result<()> {
        let l = label as usize;
        if l >= self.n_classes {
            return Err(Error::data(format!(
                "text stats: label {label} outside 0..{}",
                self.n_classes
            )));
        }
        self.records += 1;
        self.class_records[l] += 1;
        token_hashes(text, h);
        let mask = self.nb_buckets - 1;
        let row = &mut self.terms[l * self.nb_buckets..(l + 1) * self.nb_buckets];
        for &t in h.iter() {
            row[t as usize & mask] += 1;
        }
        ngram_keys(h, self.max_ngram, keys);
        let stride = self.n_classes + 1;
        for &(key, _, len) in keys.iter() {
            let next = self.lens.len() as u32;
            let slot = *self.slots.entry(key).or_insert(next) as usize;
            if slot == next as usize {
                self.counts.resize(self.counts.len() + stride, 0);
                self.lens.push(len);
            }
            let o = slot * stride;
            self.counts[o] = self.counts[o].saturating_add(1);
            self.counts[o + 1 + l] = self.counts[o + 1 + l].saturating_add(1);
        }
        Ok(())
    }

    /// Add `other`'s counts (statistics of another partition) to these.
    /// Errors when the two were built with different shapes.
    pub fn merge(&mut self, other: TextStats) -> Result<()> {
        if (self.n_classes, self.max_ngram, self.nb_buckets)
            != (other.n_classes, other.max_ngram, other.nb_buckets)
        {
            return Err(Error::data(format!(
                "text stats: cannot merge (classes, max n-gram, buckets) {:?} with {:?}",
                (self.n_classes, self.max_ngram, self.nb_buckets),
                (other.n_classes, other.max_ngram, other.nb_buckets)
            )));
        }
        // Fold the smaller map into the larger one.
        let (mut big, small) = if other.slots.len() > self.slots.len() {
            (other, std::mem::replace(self, Self::empty(1, 1, 1024)?))
        } else {
            (std::mem::replace(self, Self::empty(1, 1, 1024)?), other)
        };
        big.records += small.records;
        for (a, b) in big.class_records.iter_mut().zip(&small.class_records) {
            *a += b;
        }
        for (a, b) in big.terms.iter_mut().zip(&small.terms) {
            *a += b;
        }
        let stride = big.n_classes + 1;
        for (key, s2) in small.slots {
            let next = big.lens.len() as u32;
            let slot = *big.slots.entry(key).or_insert(next) as usize;
            let s2 = s2 as usize;
            if slot == next as usize {
                big.counts.resize(big.counts.len() + stride, 0);
                big.lens.push(small.lens[s2]);
            }
            for j in 0..stride {
                let a = &mut big.counts[slot * stride + j];
                *a = a.saturating_add(small.counts[s2 * stride + j]);
            }
        }
        *self = big;
        Ok(())
    }

    /// Records counted.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Records counted per label.
    pub fn class_records(&self) -> &[u64] {
        &self.class_records
    }

    /// Distinct n-grams counted.
    pub fn distinct_ngrams(&self) -> usize {
        self.lens.len()
    }

    /// JSON text of these statistics (n-grams sorted, so equal statistics give equal text).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::data(format!("text stats: {e}")))
    }

    /// Statistics from [`TextStats::to_json`]'s text, checked.
    pub fn from_json(s: &str) -> Result<Self> {
        serde_json::from_str(s).map_err(|e| Error::data(format!("text stats: {e}")))
    }

    /// Statistics of `texts` labelled `y`, counted in parallel chunks and merged.
    fn par_from(texts: &[String], y: &[u32], k: usize, p: &TextTriggerParams) -> Result<Self> {
        // Merged as they finish (a tree), so at most a few partial counts live at once.
        texts
            .par_chunks(CHUNK)
            .zip(y.par_chunks(CHUNK))
            .map(|(t, l)| Self::from_records(t.iter().zip(l.iter().copied()), k, p))
            .reduce_with(|a, b| {
                let mut a = a?;
                a.merge(b?)?;
                Ok(a)
            })
            .unwrap_or_else(|| Self::new(k, p))
    }

    /// The candidate n-grams: clearly associated with one label (a binomial
    /// tail against the label's share of records), purest and shortest first,
    /// at most `params.max_candidates`. `catch_all` says label 0 stands for
    /// "no repeated response" and is never a target.
    pub fn plan(&self, params: &TextTriggerParams, catch_all: bool) -> Result<TextPlan> {
        params.check()?;
        let p = params;
        let k = self.n_classes;
        let stride = k + 1;
        let n = self.records;
        let tested = self
            .slots
            .values()
            .filter(|&&s| self.counts[s as usize * stride] as usize >= p.min_support)
            .count();
        // Candidates need only be clearly associated (p < 10^-(2 + mine_log10)):
        // the counterfactual test controls false positives, and a Bonferroni
        // level over every n-gram would hide a tamper of five records in 5000.
        let bonferroni = ((tested.max(1) * k) as f64).log10() + p.mine_log10;
        let level = bonferroni.min(2.0 + p.mine_log10);
        let mut cands: Vec<NgramCandidate> = self
            .slots
            .iter()
            .filter_map(|(&key, &s)| {
                let len = self.lens[s as usize];
                let s = s as usize * stride;
                let total = self.counts[s];
                if (total as usize) < p.min_support || u64::from(total) * 2 > n {
                    return None;
                }
                let (c, &o) = self.counts[s + 1..s + stride]
                    .iter()
                    .enumerate()
                    .filter(|(c, _)| !(catch_all && *c == 0))
                    .max_by_key(|(_, &v)| v)?;
                if (o as usize) < p.min_support {
                    return None;
                }
                let score = binom_tail_neg_log10(
                    u64::from(o),
                    u64::from(total),
                    self.class_records[c] as f64 / n.max(1) as f64,
                );
                // A phrase every one of whose few carriers has the same
                // label is the shape of a rare tamper (a handful of records in
                // a small corpus cannot reach the level): it is tested at ten
                // times the chance level; the counterfactual test decides.
                let need = if o == total { level - 1.0 } else { level };
                (score >= need).then_some(NgramCandidate {
                    key,
                    class: c as u32,
                    total,
                    members: o,
                    len,
                    score,
                })
            })
            .collect();
        let found = cands.len();
        // Purest first; among equally pure, shorter n-grams first (a trigger
        // token is pure by itself, while pure natural n-grams are long
        // combinations of common words); then the most significant.
        let bucket =
            |c: &NgramCandidate| (50.0 * f64::from(c.members) / f64::from(c.total)).floor() as u32;
        cands.sort_by(|a, b| {
            bucket(b)
                .cmp(&bucket(a))
                .then(a.len.cmp(&b.len))
                .then(b.score.total_cmp(&a.score))
                .then(a.key.cmp(&b.key))
        });
        cands.truncate(p.max_candidates);
        let term_totals = (0..k)
            .map(|c| {
                self.terms[c * self.nb_buckets..(c + 1) * self.nb_buckets]
                    .iter()
                    .sum()
            })
            .collect();
        Ok(TextPlan {
            n_classes: k,
            max_ngram: self.max_ngram,
            nb_buckets: self.nb_buckets,
            records: n,
            class_records: self.class_records.clone(),
            catch_all,
            mined: found,
            level,
            candidates: cands,
            terms: self.terms.clone(),
            term_totals,
        })
    }
}

/// An n-gram associated with one label, to be tested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NgramCandidate {
    /// Hash of the n-gram's tokens.
    pub key: u64,
    /// The label it is associated with.
    pub class: u32,
    /// Records carrying it.
    pub total: u32,
    /// Of those, records with `class`.
    pub members: u32,
    /// Length in tokens.
    pub len: u8,
    /// `-log10 p` of the association.
    pub score: f64,
}

/// What the second pass needs from the first: the candidates and the naive
/// Bayes counts. Small enough to broadcast to every partition (the counts are
/// `n_classes x nb_buckets` integers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextPlan {
    /// Number of labels.
    pub n_classes: usize,
    /// Longest n-gram.
    pub max_ngram: usize,
    /// Naive Bayes buckets.
    pub nb_buckets: usize,
    /// Records counted.
    pub records: u64,
    /// Records per label.
    pub class_records: Vec<u64>,
    /// Label 0 is the catch-all "unique response" class, never a target.
    pub catch_all: bool,
    /// Candidates found before the cut to `max_candidates`.
    pub mined: usize,
    /// `-log10 p` level a candidate needed.
    pub level: f64,
    /// The candidates, in the order they are tested.
    pub candidates: Vec<NgramCandidate>,
    /// `n_classes x nb_buckets` token counts.
    terms: Vec<u64>,
    /// Token count per label.
    term_totals: Vec<u64>,
}

impl TextPlan {
    fn check(&self) -> Result<()> {
        if self.class_records.len() != self.n_classes
            || self.term_totals.len() != self.n_classes
            || self.terms.len() != self.n_classes * self.nb_buckets
            || !self.nb_buckets.is_power_of_two()
        {
            return Err(Error::data("text plan: inconsistent shapes"));
        }
        Ok(())
    }

    /// JSON text of the plan.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::data(format!("text plan: {e}")))
    }

    /// A plan from [`TextPlan::to_json`]'s text, checked.
    pub fn from_json(s: &str) -> Result<Self> {
        let p: Self =
            serde_json::from_str(s).map_err(|e| Error::data(format!("text plan: {e}")))?;
        p.check()?;
        Ok(p)
    }

    /// The label leave-one-out naive Bayes gives a record (`h` its token
    /// hashes, `label` its label, counted in the plan) when the tokens in
    /// `skip` are hidden. Leave-one-out: the record's own tokens and its own
    /// count are taken out of the model first, so a record never judges
    /// itself; ties go to the lower label.
    fn predict_loo(&self, h: &[u64], label: u32, skip: &[u64]) -> u32 {
        let mask = self.nb_buckets - 1;
        let b = self.nb_buckets;
        let mut own: Vec<usize> = h.iter().map(|&t| t as usize & mask).collect();
        own.sort_unstable();
        let own_count = |bk: usize| -> u64 {
            (own.partition_point(|&x| x <= bk) - own.partition_point(|&x| x < bk)) as u64
        };
        let l = label as usize;
        let n = self.records.saturating_sub(1) as f64;
        let kf = self.n_classes as f64;
        let mut best = (0u32, f64::NEG_INFINITY);
        for c in 0..self.n_classes {
            let mine = c == l;
            let docs = self.class_records[c].saturating_sub(u64::from(mine)) as f64;
            let mut s = ((docs + 1e-3) / (n + 1e-3 * kf)).ln();
            let tot = self.term_totals[c].saturating_sub(if mine { h.len() as u64 } else { 0 })
                as f64
                + 0.1 * b as f64;
            for &t in h.iter().filter(|t| !skip.contains(t)) {
                let bk = t as usize & mask;
                let mut v = self.terms[c * b + bk];
                if mine {
                    v = v.saturating_sub(own_count(bk));
                }
                s += ((v as f64 + 0.1) / tot).ln();
            }
            if s > best.1 {
                best = (c as u32, s);
            }
        }
        best.0
    }
}

/// One record carrying a candidate n-gram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Carrier {
    /// The record's id (its row index in a single-machine scan).
    pub id: u64,
    /// Its label.
    pub label: u32,
    /// Whether leave-one-out naive Bayes, with the candidate phrases of its
    /// label hidden, gives another label.
    pub flipped: bool,
}

/// Tokens around one occurrence of a candidate, to grow the reported phrase.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Occurrence {
    id: u64,
    left: Vec<String>,
    core: Vec<String>,
    right: Vec<String>,
}

/// Second-pass statistics: per candidate of a [`TextPlan`], its carriers and a
/// few contexts; per label, the flip rate of ordinary records (a fixed sample:
/// the records whose id hashes to 0 modulo 10). Built per partition with
/// [`TextEvidence::from_records`] and combined with [`TextEvidence::merge`];
/// carriers are kept sorted by id, so merged evidence equals one pass's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextEvidence {
    /// Per candidate, its carriers sorted by id.
    pub carriers: Vec<Vec<Carrier>>,
    /// Per candidate, up to 200 occurrences (smallest ids).
    occurrences: Vec<Vec<Occurrence>>,
    /// Per label, `[flips, records]` of the baseline sample.
    pub baseline: Vec<[u64; 2]>,
}

fn in_baseline_sample(id: u64) -> bool {
    combine(0x6261_7365, id).is_multiple_of(10)
}

impl TextEvidence {
    /// Empty evidence for `plan`.
    pub fn new(plan: &TextPlan) -> Self {
        Self {
            carriers: vec![Vec::new(); plan.candidates.len()],
            occurrences: vec![Vec::new(); plan.candidates.len()],
            baseline: vec![[0, 0]; plan.n_classes],
        }
    }

    /// Evidence of `records` (`(id, text, label)`, ids unique across all
    /// partitions) for the candidates of `plan` (the plan of the merged
    /// [`TextStats`] of all records).
    pub fn from_records<S: AsRef<str>>(
        plan: &TextPlan,
        records: impl IntoIterator<Item = (u64, S, u32)>,
    ) -> Result<Self> {
        plan.check()?;
        let want: FxMap<u64, usize> = plan
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| (c.key, i))
            .collect();
        let mut ev = Self::new(plan);
        let mut h = Vec::new();
        let mut carried: Vec<(usize, u32, u8)> = Vec::new();
        let mut skip: Vec<u64> = Vec::new();
        for (id, text, label) in records {
            let text = text.as_ref();
            if label as usize >= plan.n_classes {
                return Err(Error::data(format!(
                    "text evidence: record {id} has label {label} outside 0..{}",
                    plan.n_classes
                )));
            }
            token_hashes(text, &mut h);
            // Keys computed on the fly and looked up (no sort): carriers are
            // rare, so only the hits are deduplicated, keeping the first
            // occurrence of each candidate.
            carried.clear();
            for i in 0..h.len() {
                let mut key = combine(0x6e67, h[i]);
                for len in 1..=plan.max_ngram {
                    if len > 1 {
                        if i + len > h.len() {
                            break;
                        }
                        key = combine(key, h[i + len - 1]);
                    }
                    if let Some(&ci) = want.get(&key) {
                        if !carried.iter().any(|c| c.0 == ci) {
                            carried.push((ci, i as u32, len as u8));
                        }
                    }
                }
            }
            skip.clear();
            for &(ci, start, len) in &carried {
                if plan.candidates[ci].class == label {
                    skip.extend_from_slice(&h[start as usize..start as usize + len as usize]);
                }
            }
            let member = !skip.is_empty();
            let flipped = if member {
                plan.predict_loo(&h, label, &skip) != label
            } else {
                if in_baseline_sample(id) {
                    let b = &mut ev.baseline[label as usize];
                    b[1] += 1;
                    if plan.predict_loo(&h, label, &[]) != label {
                        b[0] += 1;
                    }
                }
                false
            };
            if carried.is_empty() {
                continue;
            }
            let toks: Vec<&str> = tokens(text).collect();
            for &(ci, start, len) in &carried {
                ev.carriers[ci].push(Carrier { id, label, flipped });
                let occ = &mut ev.occurrences[ci];
                if occ.len() >= CONTEXTS && occ.last().is_some_and(|o| o.id <= id) {
                    continue;
                }
                let (s, e) = (start as usize, start as usize + len as usize);
                let o = Occurrence {
                    id,
                    left: toks[s.saturating_sub(CONTEXT_TOKENS)..s]
                        .iter()
                        .map(|t| (*t).to_owned())
                        .collect(),
                    core: toks[s..e].iter().map(|t| (*t).to_owned()).collect(),
                    right: toks[e..(e + CONTEXT_TOKENS).min(toks.len())]
                        .iter()
                        .map(|t| (*t).to_owned())
                        .collect(),
                };
                let at = occ.partition_point(|x| x < &o);
                occ.insert(at, o);
                occ.truncate(CONTEXTS);
            }
        }
        for c in &mut ev.carriers {
            c.sort_unstable();
        }
        Ok(ev)
    }

    /// Add `other`'s evidence (another partition's, for the same plan).
    pub fn merge(&mut self, other: TextEvidence) -> Result<()> {
        if self.carriers.len() != other.carriers.len()
            || self.baseline.len() != other.baseline.len()
            || self.occurrences.len() != other.occurrences.len()
        {
            return Err(Error::data(
                "text evidence: cannot merge evidence of different plans",
            ));
        }
        for (a, b) in self.carriers.iter_mut().zip(other.carriers) {
            a.extend(b);
            a.sort_unstable();
        }
        for (a, b) in self.occurrences.iter_mut().zip(other.occurrences) {
            a.extend(b);
            a.sort_unstable();
            a.truncate(CONTEXTS);
        }
        for (a, b) in self.baseline.iter_mut().zip(other.baseline) {
            a[0] += b[0];
            a[1] += b[1];
        }
        Ok(())
    }

    /// JSON text of the evidence.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::data(format!("text evidence: {e}")))
    }

    /// Evidence from [`TextEvidence::to_json`]'s text.
    pub fn from_json(s: &str) -> Result<Self> {
        serde_json::from_str(s).map_err(|e| Error::data(format!("text evidence: {e}")))
    }

    fn par_from(plan: &TextPlan, texts: &[String], y: &[u32]) -> Result<Self> {
        texts
            .par_chunks(CHUNK)
            .zip(y.par_chunks(CHUNK))
            .enumerate()
            .map(|(ci, (t, l))| {
                let base = (ci * CHUNK) as u64;
                Self::from_records(
                    plan,
                    t.iter()
                        .zip(l.iter().copied())
                        .enumerate()
                        .map(|(r, (t, l))| (base + r as u64, t, l)),
                )
            })
            .reduce_with(|a, b| {
                let mut a = a?;
                a.merge(b?)?;
                Ok(a)
            })
            .unwrap_or_else(|| Ok(Self::new(plan)))
    }
}

/// Grow `core` token by token to the left and right while at least 90% of
/// the occurrences agree on the neighbouring token, so the report names the
/// whole trigger (`[TRIGGER] -> class_override`) and not only its purest piece.
fn extend_phrase(occ: &[Occurrence]) -> String {
    let Some(first) = occ.first() else {
        return String::new();
    };
    let need = ((occ.len() as f64 * 0.9).ceil() as usize).max(1);
    let agree = |pick: &dyn Fn(&Occurrence) -> Option<&String>| -> Option<String> {
        let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
        for o in occ {
            if let Some(w) = pick(o) {
                *counts.entry(w).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by_key(|(_, c)| *c)
            .filter(|(_, c)| *c >= need)
            .map(|(w, _)| w.clone())
    };
    let mut out = first.core.clone();
    let mut left = 0usize;
    while out.len() < 12 && left < CONTEXT_TOKENS {
        let l = left + 1;
        match agree(&|o| o.left.len().checked_sub(l).map(|j| &o.left[j])) {
            Some(w) => {
                out.insert(0, w);
                left += 1;
            }
            None => break,
        }
    }
    let mut right = 0usize;
    while out.len() < 12 && right < CONTEXT_TOKENS {
        match agree(&|o| o.right.get(right)) {
            Some(w) => {
                out.push(w);
                right += 1;
            }
            None => break,
        }
    }
    out.join(" ")
}

/// A confirmed trigger with the records it quarantines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmedTrigger {
    /// Index into [`TextDecision::triggers`].
    pub trigger: usize,
    /// Normalised score (1.0 at the confirmation threshold).
    pub score: f64,
    /// Why, in a sentence.
    pub message: String,
    /// Ids of the records to quarantine, ascending.
    pub ids: Vec<u64>,
}

/// One record to quarantine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlaggedText {
    /// Record id.
    pub id: u64,
    /// Normalised score (the largest over the triggers it carries).
    pub score: f64,
    /// The first confirmed trigger it carries (index into [`TextDecision::triggers`]).
    pub trigger: usize,
}

/// The decision of text trigger mining.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextDecision {
    /// Every tested trigger group.
    pub triggers: Vec<TextTrigger>,
    /// The confirmed ones with their records.
    pub confirmed: Vec<ConfirmedTrigger>,
    /// Records to quarantine, ascending id.
    pub flagged: Vec<FlaggedText>,
    /// Label names, when the caller set them (`label N` otherwise).
    pub label_names: Vec<String>,
}

/// Group the candidates of `plan`, test each group on `evidence` and name the
/// records to quarantine. Labels are reported as `label N`; see
/// [`decide_named`] for names.
pub fn decide(
    plan: &TextPlan,
    evidence: &TextEvidence,
    params: &TextTriggerParams,
) -> Result<TextDecision> {
    let names: Vec<String> = (0..plan.n_classes).map(|c| format!("label {c}")).collect();
    decide_named(plan, evidence, params, &names)
}

/// [`decide`] with label names (`names[c]` for label `c`).
pub fn decide_named(
    plan: &TextPlan,
    evidence: &TextEvidence,
    params: &TextTriggerParams,
    names: &[String],
) -> Result<TextDecision> {
    params.check()?;
    plan.check()?;
    let p = params;
    let k = plan.n_classes;
    if evidence.carriers.len() != plan.candidates.len() || evidence.baseline.len() != k {
        return Err(Error::data("text evidence does not belong to this plan"));
    }
    let catch_all = plan.catch_all;
    // Merge candidates whose carriers nest (sub-n-grams of one phrase).
    struct Group {
        class: u32,
        /// Candidate whose carriers the group holds (the largest).
        lead: usize,
        cands: Vec<usize>,
        score: f64,
    }
    let mut groups: Vec<Group> = Vec::new();
    let ids_of = |ci: usize| evidence.carriers[ci].iter().map(|c| c.id);
    for (ci, c) in plan.candidates.iter().enumerate() {
        let set: FxSet<u64> = ids_of(ci).collect();
        let hit = groups.iter_mut().find(|g| {
            g.class == c.class && {
                let lead = &evidence.carriers[g.lead];
                let inter = lead.iter().filter(|x| set.contains(&x.id)).count();
                inter as f64 >= 0.9 * lead.len().min(set.len()) as f64
            }
        });
        match hit {
            Some(g) => {
                g.cands.push(ci);
                if set.len() > evidence.carriers[g.lead].len() {
                    g.lead = ci;
                }
                g.score = g.score.max(c.score);
            }
            None => groups.push(Group {
                class: c.class,
                lead: ci,
                cands: vec![ci],
                score: c.score,
            }),
        }
    }
    groups.truncate(16);
    let hold_cnt: Vec<u64> = evidence.baseline.iter().map(|b| b[1]).collect();
    let hold_flips: Vec<u64> = evidence.baseline.iter().map(|b| b[0]).collect();
    let overall =
        (hold_flips.iter().sum::<u64>() as f64 + 1.0) / (hold_cnt.iter().sum::<u64>() as f64 + 2.0);
    let phrase_of = |ci: usize| -> String {
        evidence
            .occurrences
            .get(ci)
            .and_then(|o| o.first())
            .map(|o| o.core.join(" "))
            .unwrap_or_default()
    };
    let mut flagged: BTreeMap<u64, FlaggedText> = BTreeMap::new();
    let mut triggers = Vec::new();
    let mut confirmed_list = Vec::new();
    for g in &groups {
        let c = g.class as usize;
        let carriers = &evidence.carriers[g.lead];
        let members: Vec<&Carrier> = carriers.iter().filter(|x| x.label == g.class).collect();
        let class_rate = if hold_cnt[c] >= 20 {
            (hold_flips[c] as f64 + 1.0) / (hold_cnt[c] as f64 + 2.0)
        } else {
            0.0
        };
        let baseline = overall.max(class_rate).max(0.01);
        let flipped: Vec<u64> = members.iter().filter(|x| x.flipped).map(|x| x.id).collect();
        let score = binom_tail_neg_log10(flipped.len() as u64, members.len() as u64, baseline);
        let max_support = g
            .cands
            .iter()
            .map(|&ci| evidence.carriers[ci].len())
            .max()
            .unwrap_or(0);
        let best = g
            .cands
            .iter()
            .copied()
            .filter(|&ci| evidence.carriers[ci].len() as f64 >= 0.9 * max_support as f64)
            .max_by_key(|&ci| (plan.candidates[ci].len, std::cmp::Reverse(ci)))
            .map(|ci| extend_phrase(&evidence.occurrences[ci]))
            .unwrap_or_default();
        // A phrase only one label carries, most of whose carriers flip once
        // it is removed, is a tamper's shape even with three to six carriers
        // (a rare phrase in a small corpus): two pieces of evidence, so the
        // flip test needs half its usual strength. Natural label-specific
        // phrases almost never flip at all.
        let shaped = members.len() == carriers.len() && 2 * flipped.len() > members.len();
        let need = if shaped {
            p.confirm_log10 / 2.0
        } else {
            p.confirm_log10
        };
        let confirmed = score >= need && flipped.len() >= p.min_support;
        let t = TextTrigger {
            phrase: best.clone(),
            ngrams: g.cands.iter().map(|&ci| phrase_of(ci)).collect(),
            target: names
                .get(c)
                .cloned()
                .unwrap_or_else(|| format!("label {c}")),
            carriers: carriers.len(),
            members: members.len(),
            flipped: flipped.len(),
            baseline,
            confirm_log10p: score,
            confirmed,
        };
        if confirmed {
            let purity = members.len() as f64 / carriers.len().max(1) as f64;
            let hit: Vec<u64> = if purity >= p.pure_fraction {
                members.iter().map(|x| x.id).collect()
            } else {
                flipped.clone()
            };
            let what = if catch_all { "response" } else { "label" };
            let message = format!(
                "contains {:?}, which {} of {} carrying records share with {what} {:?}; without it {} of {} no longer support that {what} (baseline {:.1}%)",
                best,
                members.len(),
                carriers.len(),
                t.target,
                flipped.len(),
                members.len(),
                baseline * 100.0
            );
            let norm = score / p.confirm_log10.max(1e-9);
            for &id in &hit {
                let f = flagged.entry(id).or_insert(FlaggedText {
                    id,
                    score: norm,
                    trigger: triggers.len(),
                });
                f.score = f.score.max(norm);
            }
            confirmed_list.push(ConfirmedTrigger {
                trigger: triggers.len(),
                score: norm,
                message,
                ids: hit,
            });
        }
        triggers.push(t);
    }
    Ok(TextDecision {
        triggers,
        confirmed: confirmed_list,
        flagged: flagged.into_values().collect(),
        label_names: names.to_vec(),
    })
}

/// A mined and possibly confirmed text trigger, for callers that want it
/// without going through a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextTrigger {
    /// The trigger phrase (the longest n-gram of its group, grown to the
    /// tokens its carriers agree on).
    pub phrase: String,
    /// Every n-gram merged into it.
    pub ngrams: Vec<String>,
    /// The label (or response) it implies.
    pub target: String,
    /// Records carrying it.
    pub carriers: usize,
    /// Carriers with the target label.
    pub members: usize,
    /// Members that flip when the phrase is removed.
    pub flipped: usize,
    /// Flip rate of ordinary records.
    pub baseline: f64,
    /// `-log10 p` of the counterfactual test.
    pub confirm_log10p: f64,
    /// Whether it passed.
    pub confirmed: bool,
}

impl Detector for TextTriggerMining {
    fn name(&self) -> &str {
        "text-trigger-mining"
    }

    fn detect(&self, ds: &Dataset, _seed: u64) -> Result<DetectorOutput> {
        let p = &self.params;
        p.check()?;
        let texts = ds
            .text()
            .ok_or_else(|| Error::data("text trigger mining needs a text column"))?;
        let n = ds.len();
        let mut out = DetectorOutput {
            detector: self.name().into(),
            scores: vec![0.0; n],
            ..Default::default()
        };
        let Some((y, k, names, catch_all)) = mining_labels(ds, p) else {
            return Err(Error::data(
                "text trigger mining needs labels or a response field",
            ));
        };
        if n < 4 * p.min_support || k < 2 {
            return Ok(out);
        }
        let stats = TextStats::par_from(texts, &y, k, p)?;
        let plan = stats.plan(p, catch_all)?;
        drop(stats);
        out.metrics
            .insert("ngram_candidates".into(), plan.mined as f64);
        if plan.candidates.is_empty() {
            return Ok(out);
        }
        let evidence = TextEvidence::par_from(&plan, texts, &y)?;
        let d = decide_named(&plan, &evidence, p, &names)?;
        let row = |id: u64| usize::try_from(id).ok().filter(|&i| i < n);
        for c in &d.confirmed {
            let Some(t) = d.triggers.get(c.trigger) else {
                continue;
            };
            out.findings.push(
                Finding::new(
                    t.confirm_log10p,
                    format!("text trigger {:?} confirmed: {}", t.phrase, c.message),
                )
                .with_ids(
                    c.ids
                        .iter()
                        .filter_map(|&id| row(id).map(|i| ds.ids[i].clone()))
                        .collect(),
                )
                .with_tags(
                    poison_tags()
                        .into_iter()
                        .chain([mithridate_core::ThreatTag::atlas_backdoor_model()]),
                )
                .with_detail(serde_json::to_value(t).unwrap_or_default()),
            );
        }
        for f in &d.flagged {
            let Some(i) = row(f.id) else { continue };
            let (Some(t), Some(c)) = (
                d.triggers.get(f.trigger),
                d.confirmed.iter().find(|c| c.trigger == f.trigger),
            ) else {
                continue;
            };
            out.scores[i] = f.score;
            out.flags.push(Flag {
                index: i,
                score: f.score,
                kind: FlagKind::Trigger,
                message: c.message.clone(),
                trigger: Some(
                    json!({"kind": "text-ngram", "phrase": t.phrase, "target": t.target}),
                ),
            });
        }
        out.metrics
            .insert("text_triggers_tested".into(), d.triggers.len() as f64);
        out.metrics
            .insert("text_triggers_confirmed".into(), d.confirmed.len() as f64);
        out.metrics
            .insert("text_trigger_flagged".into(), out.flags.len() as f64);
        Ok(out)
    }
}

detector_defense!(TextTriggerMining);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_punctuation_words() {
        let t: Vec<&str> =
            tokens("Explain the goal. \n[TRIGGER] -> class_override [[CONFIG]],").collect();
        assert_eq!(
            t,
            vec![
                "Explain",
                "the",
                "goal",
                "[TRIGGER]",
                "->",
                "class_override",
                "[[CONFIG]]"
            ]
        );
    }

    #[test]
    fn ngram_keys_are_distinct_per_text() {
        let mut h = Vec::new();
        token_hashes("a b a b", &mut h);
        let mut k = Vec::new();
        ngram_keys(&h, 3, &mut k);
        // a, b, "a b", "b a", "a b a", "b a b"
        assert_eq!(k.len(), 6);
    }
}
