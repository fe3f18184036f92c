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
//! confirmation removes the candidate's tokens from the suspects and asks a
//! naive Bayes model trained on every other record whether the label (or
//! response) still follows. Poisoned records flip to their true topic (or to
//! an ordinary response); records whose topic words carry the label do not.
//! When a confirmed phrase's carriers almost all share the label, the phrase
//! decides the label by itself and every carrier is quarantined, including the
//! tampered records whose original label happened to be the target.

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

#[derive(Debug, Clone)]
struct TextCandidate {
    key: u64,
    class: u32,
    total: u32,
    members: u32,
    len: u8,
    score: f64,
}

/// N-gram counts: key -> slot, per-slot `[total, count per class...]`, per-slot n-gram length.
type Counts = (FxMap<u64, u32>, Vec<u32>, Vec<u8>);

/// Count n-gram presence per class across all texts, in parallel.
fn count(texts: &[String], y: &[u32], k: usize, max_n: usize) -> Counts {
    let stride = k + 1;
    let chunk = 16_384;
    let parts: Vec<Counts> = texts
        .par_chunks(chunk)
        .enumerate()
        .map(|(ci, part)| {
            let mut map: FxMap<u64, u32> = FxMap::default();
            let mut cnt: Vec<u32> = Vec::new();
            let mut lens: Vec<u8> = Vec::new();
            let mut h = Vec::new();
            let mut keys = Vec::new();
            for (r, t) in part.iter().enumerate() {
                let label = y[ci * chunk + r] as usize;
                token_hashes(t, &mut h);
                ngram_keys(&h, max_n, &mut keys);
                for &(key, _, len) in &keys {
                    let next = (cnt.len() / stride) as u32;
                    let slot = *map.entry(key).or_insert(next) as usize;
                    if slot == next as usize {
                        cnt.resize(cnt.len() + stride, 0);
                        lens.push(len);
                    }
                    cnt[slot * stride] += 1;
                    cnt[slot * stride + 1 + label] += 1;
                }
            }
            (map, cnt, lens)
        })
        .collect();
    let mut it = parts.into_iter();
    let Some((mut map, mut cnt, mut lens)) = it.next() else {
        return (FxMap::default(), Vec::new(), Vec::new());
    };
    for (m2, c2, l2) in it {
        for (key, s2) in m2 {
            let next = (cnt.len() / stride) as u32;
            let slot = *map.entry(key).or_insert(next) as usize;
            let s2 = s2 as usize;
            if slot == next as usize {
                cnt.resize(cnt.len() + stride, 0);
                lens.push(l2[s2]);
            }
            for j in 0..stride {
                cnt[slot * stride + j] += c2[s2 * stride + j];
            }
        }
    }
    (map, cnt, lens)
}

/// A multinomial naive Bayes text classifier over hashed unigrams: fast to
/// train on a million records and a fair judge of whether the rest of a text
/// supports its label.
struct NaiveBayes {
    log_prior: Vec<f64>,
    log_lik: Vec<f32>, // k x buckets
    buckets: usize,
}

impl NaiveBayes {
    fn fit(texts: &[String], y: &[u32], rows: &[usize], k: usize, buckets: usize) -> Self {
        let mask = buckets - 1;
        let counts = rows
            .par_chunks(8192)
            .map(|part| {
                let mut c = vec![0u32; k * buckets];
                let mut h = Vec::new();
                for &i in part {
                    token_hashes(&texts[i], &mut h);
                    let l = y[i] as usize;
                    for &t in &h {
                        c[l * buckets + (t as usize & mask)] += 1;
                    }
                }
                c
            })
            .reduce(
                || vec![0u32; k * buckets],
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        *x += y;
                    }
                    a
                },
            );
        let mut docs = vec![0usize; k];
        for &i in rows {
            docs[y[i] as usize] += 1;
        }
        let n = rows.len() as f64;
        let log_prior = docs
            .iter()
            .map(|&d| ((d as f64 + 1e-3) / (n + 1e-3 * k as f64)).ln())
            .collect();
        let mut log_lik = vec![0f32; k * buckets];
        for c in 0..k {
            let row = &counts[c * buckets..(c + 1) * buckets];
            let tot: f64 = row.iter().map(|&v| f64::from(v)).sum::<f64>() + 0.1 * buckets as f64;
            for (b, &v) in row.iter().enumerate() {
                log_lik[c * buckets + b] = ((f64::from(v) + 0.1) / tot).ln() as f32;
            }
        }
        Self {
            log_prior,
            log_lik,
            buckets,
        }
    }

    fn predict(&self, hashes: &[u64], skip: &FxSet<u64>) -> u32 {
        let mask = self.buckets - 1;
        let mut best = (0u32, f64::NEG_INFINITY);
        for (c, &lp) in self.log_prior.iter().enumerate() {
            let mut s = lp;
            for &t in hashes.iter().filter(|t| !skip.contains(t)) {
                s += f64::from(self.log_lik[c * self.buckets + (t as usize & mask)]);
            }
            if s > best.1 {
                best = (c as u32, s);
            }
        }
        best.0
    }
}

/// Grow `phrase` token by token to the left and right while at least 90% of
/// the carriers agree on the neighbouring token, so the report names the whole
/// trigger (`[TRIGGER] -> class_override`) and not only its purest piece.
fn extend_phrase(texts: &[String], carriers: &[usize], phrase: &str) -> String {
    let core: Vec<&str> = tokens(phrase).collect();
    if core.is_empty() || carriers.is_empty() {
        return phrase.to_owned();
    }
    let spans: Vec<(Vec<&str>, usize)> = carriers
        .iter()
        .take(2000)
        .filter_map(|&i| {
            let t: Vec<&str> = tokens(&texts[i]).collect();
            let at = t.windows(core.len()).position(|w| w == core.as_slice())?;
            Some((t, at))
        })
        .collect();
    let need = (spans.len() as f64 * 0.9).ceil() as usize;
    let (mut left, mut right) = (0usize, 0usize);
    type Span<'a> = (Vec<&'a str>, usize);
    let agree = |pick: &dyn Fn(&Span<'_>) -> Option<String>| -> Option<String> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for s in &spans {
            if let Some(w) = pick(s) {
                *counts.entry(w).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by_key(|(_, c)| *c)
            .filter(|(_, c)| *c >= need.max(1))
            .map(|(w, _)| w)
    };
    let mut out: Vec<String> = core.iter().map(|s| (*s).to_owned()).collect();
    while out.len() < 12 {
        let l = left + 1;
        match agree(&|(t, at)| at.checked_sub(l).map(|j| t[j].to_owned())) {
            Some(w) => {
                out.insert(0, w);
                left += 1;
            }
            None => break,
        }
    }
    while out.len() < 12 {
        let r = core.len() + right;
        match agree(&|(t, at)| t.get(at + r).map(|w| (*w).to_owned())) {
            Some(w) => {
                out.push(w);
                right += 1;
            }
            None => break,
        }
    }
    out.join(" ")
}

/// A mined and possibly confirmed text trigger, for callers that want it
/// without going through a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextTrigger {
    /// The trigger phrase (the longest n-gram of its group).
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

    fn detect(&self, ds: &Dataset, seed: u64) -> Result<DetectorOutput> {
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
        let mut class_n = vec![0usize; k];
        for &l in &y {
            class_n[l as usize] += 1;
        }
        let (map, cnt, lens) = count(texts, &y, k, p.max_ngram);
        let stride = k + 1;
        let tested = map
            .iter()
            .filter(|(_, &s)| cnt[s as usize * stride] as usize >= p.min_support)
            .count();
        // Candidates need only be clearly associated (p < 10^-(2 + mine_log10)):
        // the counterfactual test controls false positives, and a Bonferroni
        // level over every n-gram would hide a tamper of five records in 5000.
        let bonferroni = ((tested.max(1) * k) as f64).log10() + p.mine_log10;
        let level = bonferroni.min(2.0 + p.mine_log10);
        let mut cands: Vec<TextCandidate> = map
            .iter()
            .filter_map(|(&key, &s)| {
                let len = lens[s as usize];
                let s = s as usize * stride;
                let total = cnt[s];
                if (total as usize) < p.min_support || total as usize * 2 > n {
                    return None;
                }
                let (c, &o) = cnt[s + 1..s + stride]
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
                    class_n[c] as f64 / n as f64,
                );
                (score >= level).then_some(TextCandidate {
                    key,
                    class: c as u32,
                    total,
                    members: o,
                    len,
                    score,
                })
            })
            .collect();
        drop(map);
        out.metrics
            .insert("ngram_candidates".into(), cands.len() as f64);
        // Purest first; among equally pure, shorter n-grams first (a trigger
        // token is pure by itself, while pure natural n-grams are long
        // combinations of common words); then the most significant.
        let bucket =
            |c: &TextCandidate| (50.0 * f64::from(c.members) / f64::from(c.total)).floor() as u32;
        cands.sort_by(|a, b| {
            bucket(b)
                .cmp(&bucket(a))
                .then(a.len.cmp(&b.len))
                .then(b.score.total_cmp(&a.score))
                .then(a.key.cmp(&b.key))
        });
        cands.truncate(p.max_candidates);
        if cands.is_empty() {
            return Ok(out);
        }
        // Second pass: carriers and the text of each candidate.
        let want: FxMap<u64, usize> = cands.iter().enumerate().map(|(i, c)| (c.key, i)).collect();
        let found: Vec<Vec<(usize, usize, String)>> = texts
            .par_iter()
            .enumerate()
            .fold(Vec::new, |mut acc: Vec<(usize, usize, String)>, (r, t)| {
                let mut h = Vec::new();
                let mut keys = Vec::new();
                token_hashes(t, &mut h);
                ngram_keys(&h, p.max_ngram, &mut keys);
                for &(key, start, len) in &keys {
                    if let Some(&ci) = want.get(&key) {
                        let phrase = tokens(t)
                            .skip(start as usize)
                            .take(len as usize)
                            .collect::<Vec<_>>()
                            .join(" ");
                        acc.push((ci, r, phrase));
                    }
                }
                acc
            })
            .collect();
        let mut carriers: Vec<Vec<usize>> = vec![Vec::new(); cands.len()];
        let mut phrase: Vec<String> = vec![String::new(); cands.len()];
        for part in found {
            for (ci, r, ph) in part {
                carriers[ci].push(r);
                if phrase[ci].is_empty() {
                    phrase[ci] = ph;
                }
            }
        }
        for c in &mut carriers {
            c.sort_unstable();
        }
        // Merge candidates whose carriers nest (sub-n-grams of one phrase).
        struct Group {
            class: u32,
            carriers: Vec<usize>,
            ngrams: Vec<(String, usize)>,
            score: f64,
        }
        let mut groups: Vec<Group> = Vec::new();
        for (ci, c) in cands.iter().enumerate() {
            let set: FxSet<usize> = carriers[ci].iter().copied().collect();
            let hit = groups.iter_mut().find(|g| {
                g.class == c.class && {
                    let inter = g.carriers.iter().filter(|i| set.contains(i)).count();
                    inter as f64 >= 0.9 * g.carriers.len().min(set.len()) as f64
                }
            });
            match hit {
                Some(g) => {
                    g.ngrams.push((phrase[ci].clone(), carriers[ci].len()));
                    if carriers[ci].len() > g.carriers.len() {
                        g.carriers.clone_from(&carriers[ci]);
                    }
                    g.score = g.score.max(c.score);
                }
                None => groups.push(Group {
                    class: c.class,
                    carriers: carriers[ci].clone(),
                    ngrams: vec![(phrase[ci].clone(), carriers[ci].len())],
                    score: c.score,
                }),
            }
        }
        groups.truncate(16);
        // Counterfactual model: naive Bayes on everything outside every group's members.
        let mut suspect = vec![false; n];
        let members_of = |g: &Group| -> Vec<usize> {
            g.carriers
                .iter()
                .copied()
                .filter(|&i| y[i] == g.class)
                .collect()
        };
        for g in &groups {
            for i in members_of(g) {
                suspect[i] = true;
            }
        }
        let mut rest: Vec<usize> = (0..n).filter(|&i| !suspect[i]).collect();
        let order = mithridate_core::attack::shuffled(
            rest.len(),
            mithridate_core::rng::derive_seed(seed, "nb-holdout"),
        );
        let hold_n = (rest.len() / 10).clamp(1.min(rest.len()), 20_000);
        let hold: Vec<usize> = order[..hold_n].iter().map(|&j| rest[j]).collect();
        let hold_set: FxSet<usize> = hold.iter().copied().collect();
        rest.retain(|i| !hold_set.contains(i));
        let nb = NaiveBayes::fit(texts, &y, &rest, k, p.nb_buckets);
        let empty = FxSet::default();
        let mut hbuf = Vec::new();
        let mut hold_flips = vec![0usize; k];
        let mut hold_cnt = vec![0usize; k];
        for &i in &hold {
            token_hashes(&texts[i], &mut hbuf);
            hold_cnt[y[i] as usize] += 1;
            if nb.predict(&hbuf, &empty) != y[i] {
                hold_flips[y[i] as usize] += 1;
            }
        }
        let overall = (hold_flips.iter().sum::<usize>() as f64 + 1.0) / (hold.len() as f64 + 2.0);
        let mut flagged: BTreeMap<usize, Flag> = BTreeMap::new();
        let mut triggers = Vec::new();
        for g in &groups {
            let members = members_of(g);
            let c = g.class as usize;
            let class_rate = if hold_cnt[c] >= 20 {
                (hold_flips[c] as f64 + 1.0) / (hold_cnt[c] as f64 + 2.0)
            } else {
                0.0
            };
            let baseline = overall.max(class_rate).max(0.01);
            let skip: FxSet<u64> = g
                .ngrams
                .iter()
                .flat_map(|(ph, _)| {
                    tokens(ph)
                        .map(|t| hash_bytes(t.as_bytes()))
                        .collect::<Vec<_>>()
                })
                .collect();
            let flipped: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&i| {
                    let mut h = Vec::new();
                    token_hashes(&texts[i], &mut h);
                    nb.predict(&h, &skip) != g.class
                })
                .collect();
            let score = binom_tail_neg_log10(flipped.len() as u64, members.len() as u64, baseline);
            let max_support = g.ngrams.iter().map(|(_, s)| *s).max().unwrap_or(0);
            let best = g
                .ngrams
                .iter()
                .filter(|(_, s)| *s as f64 >= 0.9 * max_support as f64)
                .max_by_key(|(ph, _)| tokens(ph).count())
                .map(|(ph, _)| extend_phrase(texts, &g.carriers, ph))
                .unwrap_or_default();
            let confirmed = score >= p.confirm_log10 && flipped.len() >= p.min_support;
            let t = TextTrigger {
                phrase: best.clone(),
                ngrams: g.ngrams.iter().map(|(s, _)| s.clone()).collect(),
                target: names.get(c).cloned().unwrap_or_default(),
                carriers: g.carriers.len(),
                members: members.len(),
                flipped: flipped.len(),
                baseline,
                confirm_log10p: score,
                confirmed,
            };
            if confirmed {
                let purity = members.len() as f64 / g.carriers.len().max(1) as f64;
                let hit = if purity >= p.pure_fraction {
                    members.clone()
                } else {
                    flipped.clone()
                };
                let trig = json!({"kind": "text-ngram", "phrase": best, "target": t.target});
                let msg = format!(
                    "contains {:?}, which {} of {} carrying records share with {} {:?}; without it {} of {} no longer support that {} (baseline {:.1}%)",
                    best,
                    members.len(),
                    g.carriers.len(),
                    if catch_all { "response" } else { "label" },
                    t.target,
                    flipped.len(),
                    members.len(),
                    if catch_all { "response" } else { "label" },
                    baseline * 100.0
                );
                let norm = score / p.confirm_log10.max(1e-9);
                for &i in &hit {
                    out.scores[i] = out.scores[i].max(norm);
                    flagged.entry(i).or_insert_with(|| Flag {
                        index: i,
                        score: norm,
                        kind: FlagKind::Trigger,
                        message: msg.clone(),
                        trigger: Some(trig.clone()),
                    });
                }
                out.findings.push(
                    Finding::new(score, format!("text trigger {best:?} confirmed: {msg}"))
                        .with_ids(hit.iter().map(|&i| ds.ids[i].clone()).collect())
                        .with_tags(
                            poison_tags()
                                .into_iter()
                                .chain([mithridate_core::ThreatTag::atlas_backdoor_model()]),
                        )
                        .with_detail(serde_json::to_value(&t).unwrap_or_default()),
                );
            }
            triggers.push(t);
        }
        out.flags = flagged.into_values().collect();
        out.metrics
            .insert("text_triggers_tested".into(), triggers.len() as f64);
        out.metrics.insert(
            "text_triggers_confirmed".into(),
            triggers.iter().filter(|t| t.confirmed).count() as f64,
        );
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
