//! Trigger mining on numeric features (pixels): find value patterns that are
//! rare, shared exactly by a group of samples, and strongly associated with one
//! label; then confirm each candidate counterfactually.
//!
//! Why exact patterns: a stamped trigger (a BadNets patch, the blended pattern
//! on a pixel that is otherwise 0) writes the *same* values into every poisoned
//! sample, while natural images almost never repeat a multi-pixel pattern
//! exactly unless it is the background. Grouping samples by the exact values in
//! each small region therefore isolates the poisoned group whatever its
//! position, without being told where or what the trigger is.
//!
//! Why a counterfactual: some natural patterns are also label-specific (the
//! stroke of a 1). The confirmation hides the candidate region and asks
//! nearest neighbours among the other samples (a model that never saw the
//! suspects) whether the label still holds. Poisoned samples flip to their
//! true class; natural carriers keep their label. The flip rate of the group is
//! compared with the flip rate of ordinary samples of the same class under the
//! same masking, so a region that merely carries information does not pass.
//!
//! Why contradicted carriers: a solid patch of full ink over the strokes
//! writes values many clean digits also have there, so its group is impure and
//! its label association weak. What sets its poisoned carriers apart is that
//! their nearest neighbours carry another label. Groups are therefore also
//! ranked by how many of their carriers of one class are contradicted by their
//! neighbours, against that class's rate of such samples.

use std::collections::BTreeMap;

use mithridate_core::{Dataset, Error, Finding, Result};
use ndarray::{Array2, ArrayView2, Axis};
use rand::seq::index::sample;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::detector::{detector_defense, poison_tags, Detector, DetectorOutput, Flag, FlagKind};
use crate::util::{binom_tail_neg_log10, combine, knn, mix};

/// Parameters of [`FeatureTriggerMining`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureTriggerParams {
    /// Largest square region side searched on image data (1..=8).
    pub max_region: usize,
    /// Fewest samples a trigger group must have.
    pub min_support: usize,
    /// A pattern shared by more than this fraction of samples is background.
    pub max_group_fraction: f64,
    /// Extra `-log10 p` a group needs beyond the Bonferroni level to be a candidate.
    pub mine_log10: f64,
    /// `-log10 p` of the counterfactual flip test needed to confirm a candidate.
    pub confirm_log10: f64,
    /// Candidates tested counterfactually.
    pub max_candidates: usize,
    /// Neighbours asked in the counterfactual test.
    pub k: usize,
    /// A suspect flips when at most this share of its neighbours keep its label.
    pub flip_max_share: f64,
    /// When at least this fraction of a confirmed pattern's carriers have the
    /// target label, the pattern determines the label and every carrier is
    /// quarantined (not only those that flip).
    pub pure_fraction: f64,
}

impl Default for FeatureTriggerParams {
    fn default() -> Self {
        Self {
            max_region: 4,
            min_support: 3,
            max_group_fraction: 0.5,
            mine_log10: 1.0,
            confirm_log10: 6.0,
            max_candidates: 24,
            k: 7,
            flip_max_share: 0.25,
            pure_fraction: 0.9,
        }
    }
}

impl FeatureTriggerParams {
    /// Check every field.
    pub fn check(&self) -> Result<()> {
        if !(1..=8).contains(&self.max_region) {
            return Err(Error::param("max_region", "must be in 1..=8"));
        }
        if self.min_support < 2 {
            return Err(Error::param("min_support", "must be at least 2"));
        }
        if !(self.max_group_fraction > 0.0 && self.max_group_fraction <= 1.0) {
            return Err(Error::param("max_group_fraction", "must be in (0, 1]"));
        }
        for (n, v) in [
            ("mine_log10", self.mine_log10),
            ("confirm_log10", self.confirm_log10),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::param(n, "must be a non-negative finite number"));
            }
        }
        if self.max_candidates == 0 || self.k == 0 {
            return Err(Error::param("max_candidates/k", "must be at least 1"));
        }
        for (n, v) in [
            ("flip_max_share", self.flip_max_share),
            ("pure_fraction", self.pure_fraction),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::param(n, "must be in [0, 1]"));
            }
        }
        Ok(())
    }
}

/// Trigger mining on numeric features, with counterfactual confirmation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureTriggerMining {
    /// Checked parameters.
    pub params: FeatureTriggerParams,
}

impl FeatureTriggerMining {
    /// A detector with checked `params`.
    pub fn new(params: FeatureTriggerParams) -> Result<Self> {
        params.check()?;
        Ok(Self { params })
    }
}

/// The side of a square image when `d` is a perfect square of at least 16.
pub fn image_side(d: usize) -> Option<usize> {
    let s = (d as f64).sqrt().round() as usize;
    (s >= 4 && s * s == d).then_some(s)
}

/// Regions searched: squares on images, single features and adjacent pairs otherwise.
fn regions(d: usize, max_region: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    match image_side(d) {
        Some(s) => {
            for size in 1..=max_region.min(s) {
                for r in 0..=s - size {
                    for c in 0..=s - size {
                        out.push(
                            (0..size)
                                .flat_map(|dr| (0..size).map(move |dc| (r + dr) * s + c + dc))
                                .collect(),
                        );
                    }
                }
            }
        }
        None => {
            out.extend((0..d).map(|j| vec![j]));
            out.extend((1..d).map(|j| vec![j - 1, j]));
        }
    }
    out
}

fn quantize(v: f32) -> u64 {
    (f64::from(v) * 1e4).round() as i64 as u64
}

/// A group of samples sharing one exact pattern, associated with one class.
#[derive(Debug, Clone)]
struct Candidate {
    region: Vec<usize>,
    pattern: Vec<f32>,
    class: u32,
    members: Vec<usize>,
    carriers: Vec<usize>,
    score: f64,
    /// Purity of the group that seeded a merge (the purest of its parts): a
    /// merge with looser sub-patterns must not make natural carriers look pure.
    core_purity: f64,
    /// Members of that seed group.
    core: Vec<usize>,
    /// How improbable the pattern is under the per-feature value frequencies
    /// (`-log10`, summed over its features): a stamped trigger writes values
    /// that are rare where it writes them, a natural pattern does not.
    surprise: f64,
    /// `-log10 p` of the number of members whose label their nearest
    /// neighbours contradict, against the class's rate of such samples: a
    /// trigger made of common values (a solid patch over the strokes) is
    /// carried by many clean samples too, but only its poisoned carriers look
    /// like another class.
    inconsistent: f64,
}

impl Candidate {
    fn purity(&self) -> f64 {
        self.members.len() as f64 / self.carriers.len().max(1) as f64
    }
}

/// Per sample: do its `k` nearest neighbours (leave-one-out) mostly carry
/// another label?
fn knn_inconsistent(x: ArrayView2<'_, f32>, y: &[u32], p: &FeatureTriggerParams) -> Vec<bool> {
    let nn = knn(x, x, p.k, true);
    nn.iter()
        .enumerate()
        .map(|(i, nb)| {
            let same = nb.iter().filter(|(j, _)| y[*j] == y[i]).count();
            !nb.is_empty() && same as f64 / nb.len() as f64 <= p.flip_max_share
        })
        .collect()
}

fn mine(
    x: ArrayView2<'_, f32>,
    y: &[u32],
    k: usize,
    p: &FeatureTriggerParams,
) -> (Vec<Candidate>, f64, Vec<bool>) {
    let n = x.nrows();
    let mut class_n = vec![0usize; k];
    for &l in y {
        class_n[l as usize] += 1;
    }
    let incons = knn_inconsistent(x, y, p);
    let mut incons_n = vec![0usize; k];
    for (i, &b) in incons.iter().enumerate() {
        if b {
            incons_n[y[i] as usize] += 1;
        }
    }
    // Chance that a sample is of class c and contradicted by its neighbours
    // (floored: a class without such samples must not make one look impossible).
    let incons_base: Vec<f64> = incons_n
        .iter()
        .map(|&c| ((c as f64 + 1.0) / (n.max(1) as f64 + 2.0)).max(0.002))
        .collect();
    let base: Vec<f64> = class_n
        .iter()
        .map(|&c| c as f64 / n.max(1) as f64)
        .collect();
    let max_group = (p.max_group_fraction * n as f64) as usize;
    let regs = regions(x.ncols(), p.max_region);
    let freq: Vec<crate::util::FxMap<u64, u32>> = (0..x.ncols())
        .map(|j| {
            let mut m = crate::util::FxMap::default();
            for i in 0..n {
                *m.entry(quantize(x[[i, j]])).or_insert(0) += 1;
            }
            m
        })
        .collect();
    let surprise = |j: usize, v: f32| -> f64 {
        let c = freq[j].get(&quantize(v)).copied().unwrap_or(0);
        -((f64::from(c) + 1.0) / (n as f64 + 1.0)).log10()
    };
    let per_region: Vec<(Vec<Candidate>, usize)> = regs
        .par_iter()
        .map(|reg| {
            let mut keyed: Vec<(u64, usize)> = (0..n)
                .map(|i| {
                    (
                        reg.iter().fold(mix(reg.len() as u64), |h, &j| {
                            combine(h, quantize(x[[i, j]]))
                        }),
                        i,
                    )
                })
                .collect();
            keyed.sort_unstable();
            let mut out = Vec::new();
            let mut tests = 0usize;
            let mut s = 0;
            while s < n {
                let mut e = s + 1;
                while e < n && keyed[e].0 == keyed[s].0 {
                    e += 1;
                }
                let g = e - s;
                if g >= p.min_support && g <= max_group {
                    tests += 1;
                    let mut counts = vec![0usize; k];
                    let mut icounts = vec![0usize; k];
                    for &(_, i) in &keyed[s..e] {
                        counts[y[i] as usize] += 1;
                        if incons[i] {
                            icounts[y[i] as usize] += 1;
                        }
                    }
                    let (ic, &io) = icounts
                        .iter()
                        .enumerate()
                        .max_by_key(|(_, &v)| v)
                        .unwrap_or((0, &0));
                    let inconsistent = if io >= p.min_support {
                        binom_tail_neg_log10(io as u64, g as u64, incons_base[ic])
                    } else {
                        0.0
                    };
                    let top = counts
                        .iter()
                        .enumerate()
                        .max_by_key(|(_, &v)| v)
                        .map_or(0, |(c, _)| c);
                    // The most frequent class, and the class whose carriers
                    // are most often contradicted by their neighbours when
                    // that is another one.
                    let classes: &[usize] = if ic != top && inconsistent > 0.0 {
                        &[top, ic]
                    } else {
                        &[top]
                    };
                    for &c in classes {
                        let o = counts[c];
                        if o < p.min_support {
                            continue;
                        }
                        let score = binom_tail_neg_log10(o as u64, g as u64, base[c]);
                        let inconsistent = if c == ic { inconsistent } else { 0.0 };
                        if score <= 0.0 && inconsistent <= 0.0 {
                            continue;
                        }
                        let i0 = keyed[s].1;
                        let members: Vec<usize> = keyed[s..e]
                            .iter()
                            .map(|&(_, i)| i)
                            .filter(|&i| y[i] as usize == c)
                            .collect();
                        out.push(Candidate {
                            surprise: reg.iter().map(|&j| surprise(j, x[[i0, j]])).sum(),
                            core_purity: o as f64 / g as f64,
                            core: members.clone(),
                            region: reg.clone(),
                            pattern: reg.iter().map(|&j| x[[i0, j]]).collect(),
                            class: c as u32,
                            members,
                            carriers: keyed[s..e].iter().map(|&(_, i)| i).collect(),
                            score,
                            inconsistent,
                        });
                    }
                }
                s = e;
            }
            (out, tests)
        })
        .collect();
    let tests: usize = per_region.iter().map(|(_, t)| t).sum::<usize>() * k.max(1);
    let level = (tests.max(1) as f64).log10() + p.mine_log10;
    let cands = per_region
        .into_iter()
        .flat_map(|(c, _)| c)
        .filter(|c| c.score >= level || c.inconsistent >= level)
        .collect();
    (cands, level, incons)
}

/// Merge candidates whose members overlap (sub-regions of one patch find the
/// same samples), keeping the union of regions and members.
fn merge(mut cands: Vec<Candidate>) -> Vec<Candidate> {
    let mut merged: Vec<Candidate> = Vec::new();
    for c in cands.drain(..) {
        let set: std::collections::HashSet<usize> = c.members.iter().copied().collect();
        let hit = merged.iter_mut().find(|m| {
            if m.class != c.class {
                return false;
            }
            let inter = m.members.iter().filter(|i| set.contains(i)).count();
            let union = m.members.len() + c.members.len() - inter;
            inter as f64 >= 0.5 * union as f64
        });
        match hit {
            Some(m) => {
                for (j, v) in c.region.iter().zip(&c.pattern) {
                    if !m.region.contains(j) {
                        m.region.push(*j);
                        m.pattern.push(*v);
                    }
                }
                let mut all: std::collections::BTreeSet<usize> =
                    m.members.iter().copied().collect();
                all.extend(c.members.iter().copied());
                m.members = all.into_iter().collect();
                let mut car: std::collections::BTreeSet<usize> =
                    m.carriers.iter().copied().collect();
                car.extend(c.carriers.iter().copied());
                m.carriers = car.into_iter().collect();
                m.score = m.score.max(c.score);
                m.inconsistent = m.inconsistent.max(c.inconsistent);
            }
            None => merged.push(c),
        }
    }
    merged
}

/// Outcome of the counterfactual test of one candidate.
struct Confirmation {
    flipped: Vec<usize>,
    /// Members whose nearest neighbours keep their label both with the region
    /// visible and with it hidden: they look like their label, as natural
    /// carriers do.
    looks_labelled: Vec<usize>,
    baseline: f64,
    score: f64,
}

fn drop_columns(x: ArrayView2<'_, f32>, rows: &[usize], region: &[usize]) -> Array2<f32> {
    let keep: Vec<usize> = (0..x.ncols()).filter(|j| !region.contains(j)).collect();
    x.select(Axis(0), rows).select(Axis(1), &keep)
}

fn confirm(
    x: ArrayView2<'_, f32>,
    y: &[u32],
    c: &Candidate,
    class_n: usize,
    incons: &[bool],
    p: &FeatureTriggerParams,
    seed: u64,
) -> Confirmation {
    let n = x.nrows();
    let mut in_s = vec![false; n];
    for &i in &c.members {
        in_s[i] = true;
    }
    let non_s: Vec<usize> = (0..n).filter(|&i| !in_s[i]).collect();
    // When the suspects are most of their class (or leave fewer than three
    // neighbourhoods' worth of it), the rest of the class is too thin to judge
    // them: split the suspects in two halves, each judged against everything
    // else plus those of the other half whose neighbours agree with their
    // label (a poisoned sample there carries the target label while looking
    // like its true class, and would vote for the target).
    let rest = class_n.saturating_sub(c.members.len());
    let depleted = rest < 3 * p.k || 2 * c.members.len() > class_n;
    let folds: Vec<Vec<usize>> = if depleted {
        vec![
            c.members.iter().copied().step_by(2).collect(),
            c.members.iter().copied().skip(1).step_by(2).collect(),
        ]
    } else {
        vec![c.members.clone()]
    };
    // Two flip definitions: most neighbours (all but `flip_max_share`) leave
    // the label, or merely a majority does. The second is more sensitive when
    // the trigger covers much of the class evidence (a large patch over the
    // centre); the better of the two tests is kept, at the price of a factor 2.
    let cuts = [p.flip_max_share, p.flip_max_share.max(0.5)];
    let mut flipped: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    let mut looks_labelled = Vec::new();
    for fold in &folds {
        let in_fold: std::collections::HashSet<usize> = fold.iter().copied().collect();
        let refs: Vec<usize> = if depleted {
            (0..n)
                .filter(|&i| !(in_fold.contains(&i) || (in_s[i] && incons[i])))
                .collect()
        } else {
            non_s.clone()
        };
        let ry: Vec<u32> = refs.iter().map(|&i| y[i]).collect();
        let share = |nb: &[(usize, f32)]| -> f64 {
            if nb.is_empty() {
                return 1.0;
            }
            nb.iter().filter(|(j, _)| ry[*j] == c.class).count() as f64 / nb.len() as f64
        };
        // Masked: the candidate region hidden from both sides.
        let rx = drop_columns(x, &refs, &c.region);
        let sx = drop_columns(x, fold, &c.region);
        let masked = knn(sx.view(), rx.view(), p.k, false);
        // Unmasked: a natural carrier whose class evidence lies in the region
        // itself keeps its label here, a poisoned sample does not.
        let full_r = x.select(Axis(0), &refs);
        let full_s = x.select(Axis(0), fold);
        let plain = knn(full_s.view(), full_r.view(), p.k, false);
        for ((&i, m), u) in fold.iter().zip(&masked).zip(&plain) {
            if share(u) > 0.5 {
                if share(m) > 0.5 {
                    looks_labelled.push(i);
                }
                continue;
            }
            for (f, &cut) in flipped.iter_mut().zip(&cuts) {
                if share(m) <= cut {
                    f.push(i);
                }
            }
        }
    }
    for f in &mut flipped {
        f.sort_unstable();
    }
    let refs = non_s;
    let rx = drop_columns(x, &refs, &c.region);
    let ry: Vec<u32> = refs.iter().map(|&i| y[i]).collect();
    let keep_share = |nb: &[(usize, f32)], label: u32| -> f64 {
        if nb.is_empty() {
            return 1.0;
        }
        nb.iter().filter(|(j, _)| ry[*j] == label).count() as f64 / nb.len() as f64
    };
    // Baseline: ordinary samples of the class (and of all classes), same masking, leave-one-out.
    let same: Vec<usize> = (0..refs.len()).filter(|&r| ry[r] == c.class).collect();
    let mut rng = mithridate_core::rng::seeded(seed);
    let pick =
        |pool: &[usize], m: usize, rng: &mut mithridate_core::rng::ChaCha8Rng| -> Vec<usize> {
            sample(rng, pool.len(), m.min(pool.len()))
                .into_iter()
                .map(|i| pool[i])
                .collect()
        };
    let all: Vec<usize> = (0..refs.len()).collect();
    let mut rate = |pool: &[usize]| -> [f64; 2] {
        let b = pick(pool, 150, &mut rng);
        if b.is_empty() {
            return [0.5; 2];
        }
        let bx = rx.select(Axis(0), &b);
        let nb = knn(bx.view(), rx.view(), p.k + 1, false);
        let shares: Vec<f64> = b
            .iter()
            .zip(&nb)
            .map(|(&r, v)| {
                let others: Vec<(usize, f32)> = v
                    .iter()
                    .copied()
                    .filter(|(j, _)| *j != r)
                    .take(p.k)
                    .collect();
                keep_share(&others, ry[r])
            })
            .collect();
        cuts.map(|cut| {
            let flips = shares.iter().filter(|&&s| s <= cut).count();
            (flips as f64 + 1.0) / (b.len() as f64 + 2.0)
        })
    };
    let (r_same, r_all) = (rate(&same), rate(&all));
    let mut best: Option<Confirmation> = None;
    for (j, f) in flipped.into_iter().enumerate() {
        let baseline = r_same[j].max(r_all[j]).max(0.01);
        let score = binom_tail_neg_log10(f.len() as u64, c.members.len() as u64, baseline)
            - std::f64::consts::LOG10_2;
        if best.as_ref().is_none_or(|b| score > b.score) {
            best = Some(Confirmation {
                flipped: f,
                looks_labelled: Vec::new(),
                baseline,
                score,
            });
        }
    }
    let mut best = best.unwrap_or(Confirmation {
        flipped: Vec::new(),
        looks_labelled: Vec::new(),
        baseline: 1.0,
        score: 0.0,
    });
    looks_labelled.sort_unstable();
    best.looks_labelled = looks_labelled;
    best
}

impl Detector for FeatureTriggerMining {
    fn name(&self) -> &str {
        "trigger-mining"
    }

    fn detect(&self, ds: &Dataset, seed: u64) -> Result<DetectorOutput> {
        let p = &self.params;
        p.check()?;
        let x = ds.require_features("trigger mining")?;
        let y = ds.require_labels("trigger mining")?;
        let k = ds.n_classes();
        let n = ds.len();
        let mut out = DetectorOutput {
            detector: self.name().into(),
            scores: vec![0.0; n],
            ..Default::default()
        };
        if n < 4 * p.min_support || k < 2 {
            return Ok(out);
        }
        let (cands, level, incons) = mine(x.view(), y, k, p);
        out.metrics
            .insert("trigger_candidates".into(), cands.len() as f64);
        // Test the purest groups first (triggers are pure), then the most significant.
        let mut by_purity: Vec<Candidate> =
            cands.iter().filter(|c| c.score >= level).cloned().collect();
        let pure = |c: &Candidate| c.purity() >= p.pure_fraction;
        by_purity.sort_by(|a, b| {
            pure(b)
                .cmp(&pure(a))
                .then(b.surprise.total_cmp(&a.surprise))
                .then(b.score.total_cmp(&a.score))
        });
        let mut by_incons: Vec<Candidate> = cands
            .iter()
            .filter(|c| c.inconsistent >= level)
            .cloned()
            .collect();
        by_incons.sort_by(|a, b| b.inconsistent.total_cmp(&a.inconsistent));
        let mut by_score: Vec<Candidate> = cands.into_iter().filter(|c| c.score >= level).collect();
        by_score.sort_by(|a, b| b.score.total_cmp(&a.score));
        let half = p.max_candidates.div_ceil(2);
        let chosen: Vec<Candidate> = by_purity
            .into_iter()
            .take(p.max_candidates)
            .chain(by_score.into_iter().take(half))
            .chain(by_incons.into_iter().take(half))
            .collect();
        let merged_all = merge(chosen);
        let mut class_n = vec![0usize; k];
        for &l in y {
            class_n[l as usize] += 1;
        }
        // A group that is (nearly) a whole class is the class, not a backdoor.
        let mut merged: Vec<Candidate> = merged_all
            .into_iter()
            .filter(|c| (c.members.len() as f64) < 0.8 * class_n[c.class as usize] as f64)
            .collect();
        let core_pure = |c: &Candidate| c.core_purity >= p.pure_fraction;
        let contradicted = |c: &Candidate| c.inconsistent >= level;
        merged.sort_by(|a, b| {
            core_pure(b)
                .cmp(&core_pure(a))
                .then(contradicted(b).cmp(&contradicted(a)))
                .then(b.surprise.total_cmp(&a.surprise))
                .then(b.score.total_cmp(&a.score))
        });
        merged.truncate(p.max_candidates + half);
        let results: Vec<(Candidate, Confirmation)> = merged
            .into_par_iter()
            .enumerate()
            .map(|(ci, c)| {
                let conf = confirm(
                    x.view(),
                    y,
                    &c,
                    class_n[c.class as usize],
                    &incons,
                    p,
                    mithridate_core::rng::derive_seed(seed, &format!("trigger-{ci}")),
                );
                (c, conf)
            })
            .collect();
        let medians = crate::util::column_medians(x.view());
        let mut confirmed = 0usize;
        let mut flagged: BTreeMap<usize, Flag> = BTreeMap::new();
        for (c, conf) in results {
            // Two independent pieces of evidence: a pattern too improbable
            // for the data to hold by chance (fewer than 1% of a sample
            // expected under per-feature value frequencies), carried only by
            // one label, is stamped; when most of its carriers then flip, the
            // flip test needs only half its usual strength. It matters where
            // the masked region is what the target class itself needs (a
            // patch over the crossing of an 8): ordinary samples of the class
            // flip often there too, and a handful of poisoned ones cannot
            // beat that baseline by the full margin.
            let stamped = c.surprise >= (n as f64).log10() + 2.0
                && c.core_purity >= p.pure_fraction
                && 2 * conf.flipped.len() > c.members.len();
            let need = if stamped {
                p.confirm_log10 / 2.0
            } else {
                p.confirm_log10
            };
            if conf.score < need || conf.flipped.len() < p.min_support {
                continue;
            }
            confirmed += 1;
            // Report only the pixels the pattern changes from the clean median.
            let mut pixels: Vec<(usize, f32)> = c
                .region
                .iter()
                .zip(&c.pattern)
                .filter(|(&j, &v)| (v - medians[j]).abs() > 1e-6)
                .map(|(&j, &v)| (j, v))
                .collect();
            if pixels.is_empty() {
                pixels = c
                    .region
                    .iter()
                    .copied()
                    .zip(c.pattern.iter().copied())
                    .collect();
            }
            pixels.sort_by_key(|(j, _)| *j);
            let side = image_side(x.ncols());
            let trigger = json!({
                "kind": "feature-pattern",
                "target": ds.label_name(c.class),
                "features": pixels.iter().map(|(j, _)| ds.feature_names.get(*j).cloned().unwrap_or_else(|| match side {
                    Some(s) => format!("pixel_{}_{}", j / s, j % s),
                    None => format!("feature_{j}"),
                })).collect::<Vec<_>>(),
                "indices": pixels.iter().map(|(j, _)| *j).collect::<Vec<_>>(),
                "values": pixels.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
            });
            // The whole pure group is quarantined (its unflipped members are
            // poisoned samples whose true class is the target) only when most
            // of it flips: a pure group of which most keep their label holds
            // natural carriers of the target class too.
            let core_flipped = {
                let f: std::collections::HashSet<usize> = conf.flipped.iter().copied().collect();
                c.core.iter().filter(|i| f.contains(i)).count()
            };
            let pure = c.core_purity >= p.pure_fraction && 2 * core_flipped >= c.core.len();
            // Unflipped members are added only when they cannot be natural
            // carriers: the pattern is too improbable for the data to hold by
            // chance (under per-feature value frequencies, fewer than 1% of a
            // sample expected), or the member does not look like its label
            // with the pattern visible or hidden. A common pattern (solid ink over
            // a stroke centre) is carried by clean samples of the target
            // class, which keep their label under both tests.
            let improbable = c.surprise >= (n as f64).log10() + 2.0;
            let natural: std::collections::HashSet<usize> = if improbable {
                Default::default()
            } else {
                conf.looks_labelled.iter().copied().collect()
            };
            let hit: Vec<usize> = if pure {
                let mut h: std::collections::BTreeSet<usize> = c
                    .core
                    .iter()
                    .copied()
                    .filter(|i| !natural.contains(i))
                    .collect();
                h.extend(conf.flipped.iter().copied());
                h.into_iter().collect()
            } else {
                conf.flipped.clone()
            };
            let norm = conf.score / p.confirm_log10.max(1e-9);
            let msg = format!(
                "carries a pattern on {} feature(s) that {} of {} carriers share with label {}; hiding it, {} of {} flip to another class (baseline {:.1}%)",
                pixels.len(),
                c.members.len(),
                c.carriers.len(),
                ds.label_name(c.class),
                conf.flipped.len(),
                c.members.len(),
                conf.baseline * 100.0
            );
            for &i in &hit {
                let f = flagged.entry(i).or_insert_with(|| Flag {
                    index: i,
                    score: 0.0,
                    kind: FlagKind::Trigger,
                    message: msg.clone(),
                    trigger: Some(trigger.clone()),
                });
                if norm > f.score {
                    f.score = norm;
                    f.message.clone_from(&msg);
                    f.trigger = Some(trigger.clone());
                }
                out.scores[i] = out.scores[i].max(norm);
            }
            out.findings.push(
                Finding::new(conf.score, format!("trigger for label {} confirmed: {msg}", ds.label_name(c.class)))
                    .with_ids(hit.iter().map(|&i| ds.ids[i].clone()).collect())
                    .with_tags(poison_tags().into_iter().chain([mithridate_core::ThreatTag::atlas_backdoor_model()]))
                    .with_detail(json!({"trigger": trigger, "mining_log10p": c.score, "mining_level": level,
                        "carriers": c.carriers.len(), "members": c.members.len(), "flipped": conf.flipped.len(),
                        "baseline_flip_rate": conf.baseline, "confirm_log10p": conf.score, "pure": pure})),
            );
        }
        out.flags = flagged.into_values().collect();
        out.metrics
            .insert("triggers_confirmed".into(), confirmed as f64);
        out.metrics
            .insert("trigger_flagged".into(), out.flags.len() as f64);
        Ok(out)
    }
}

detector_defense!(FeatureTriggerMining);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_cover_every_square_position() {
        assert_eq!(regions(64, 4).len(), 64 + 49 + 36 + 25);
        assert_eq!(regions(5, 4).len(), 5 + 4);
        assert_eq!(image_side(64), Some(8));
        assert_eq!(image_side(10), None);
    }

    #[test]
    fn params_are_checked() {
        assert!(FeatureTriggerParams {
            max_region: 0,
            ..Default::default()
        }
        .check()
        .is_err());
        assert!(FeatureTriggerParams {
            flip_max_share: 2.0,
            ..Default::default()
        }
        .check()
        .is_err());
        assert!(FeatureTriggerParams::default().check().is_ok());
    }
}
