//! Label consistency: does a model that never saw a sample agree with its
//! label?
//!
//! Out-of-sample class probabilities come from k-fold cross-validation of a
//! simple clean model (core's softmax regression) averaged with leave-one-out
//! k-nearest-neighbour votes: the two make different mistakes, so a sample
//! both find inconsistent is rarely a hard clean sample. Confident learning
//! (Northcutt et al., 2021) then sets one threshold per class, the mean
//! probability of the class over samples labelled with it, and calls a sample
//! a label issue when the most likely class above its threshold is not the
//! given label. A last, strict condition on the probability of the given label
//! keeps ambiguous clean samples out of the quarantine: a flipped label is not
//! merely unlikely, it is almost impossible for the image.
//!
//! A targeted flip (many samples of one class relabelled as one other class)
//! defeats that last condition: the model and the neighbours learn that the
//! flipped look is half the one class and half the other. It leaves a trace
//! that uniform noise and hard samples do not: many samples share one (label,
//! nearer class centre) pair. Those are set aside, the model and the
//! neighbours are formed again without them (twice more, adding the samples
//! the cleaner model assigns to the same pair), and every sample is judged by
//! the cleaner model.

use mithridate_core::model::{SoftmaxParams, SoftmaxTrainer};
use mithridate_core::{Dataset, Error, Finding, Result, Trainer};
use ndarray::{Array2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::detector::{detector_defense, poison_tags, Detector, DetectorOutput, Flag, FlagKind};
use crate::util::knn;

/// Parameters of [`LabelConsistency`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelParams {
    /// Cross-validation folds.
    pub folds: usize,
    /// Epochs of the softmax model per fold.
    pub epochs: usize,
    /// Neighbours in the kNN vote.
    pub k: usize,
    /// Weight of the kNN vote in the averaged probabilities (0: model only, 1: kNN only).
    pub knn_weight: f64,
    /// A label issue needs the given label's probability at most this.
    pub max_label_proba: f64,
    /// Without a confident-learning vote, a sample is still an issue when its
    /// label's probability is low and at least this share of neighbours disagree.
    pub min_knn_disagreement: f64,
    /// Datasets larger than this use a random subset as kNN references.
    pub max_knn_refs: usize,
}

impl Default for LabelParams {
    fn default() -> Self {
        Self {
            folds: 5,
            epochs: 40,
            k: 10,
            knn_weight: 0.5,
            max_label_proba: 0.1,
            min_knn_disagreement: 0.7,
            max_knn_refs: 20_000,
        }
    }
}

impl LabelParams {
    /// Check every field.
    pub fn check(&self) -> Result<()> {
        if self.folds < 2 {
            return Err(Error::param("folds", "must be at least 2"));
        }
        if self.epochs == 0 || self.k == 0 || self.max_knn_refs == 0 {
            return Err(Error::param("epochs/k/max_knn_refs", "must be at least 1"));
        }
        for (n, v) in [
            ("knn_weight", self.knn_weight),
            ("max_label_proba", self.max_label_proba),
            ("min_knn_disagreement", self.min_knn_disagreement),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::param(n, "must be in [0, 1]"));
            }
        }
        Ok(())
    }
}

/// Out-of-sample probabilities, per-class thresholds and the resulting label issues.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelAnalysis {
    /// `n x k` averaged out-of-sample probabilities.
    pub proba: Array2<f32>,
    /// Confident-learning threshold per class.
    pub thresholds: Vec<f64>,
    /// Fraction of the k nearest neighbours whose label differs, per sample.
    pub knn_disagreement: Vec<f64>,
    /// Indices of label issues.
    pub issues: Vec<usize>,
    /// The class confident learning suggests for each issue.
    pub suggested: Vec<u32>,
}

/// Cross-validated out-of-sample probabilities of `trainer` (fold `i mod folds`
/// after a seeded shuffle).
pub fn cross_val_proba(
    x: ndarray::ArrayView2<'_, f32>,
    y: &[u32],
    k: usize,
    folds: usize,
    trainer: &dyn Trainer,
    seed: u64,
) -> Result<Array2<f32>> {
    cross_val_proba_without(x, y, k, folds, trainer, seed, &[])
}

/// [`cross_val_proba`] where the samples with `exclude[i]` are never trained
/// on (they still get out-of-sample probabilities); an empty `exclude`
/// excludes nothing.
pub fn cross_val_proba_without(
    x: ndarray::ArrayView2<'_, f32>,
    y: &[u32],
    k: usize,
    folds: usize,
    trainer: &dyn Trainer,
    seed: u64,
    exclude: &[bool],
) -> Result<Array2<f32>> {
    let n = x.nrows();
    let excluded = |i: usize| exclude.get(i).copied().unwrap_or(false);
    let order = mithridate_core::attack::shuffled(n, seed);
    let mut fold_of = vec![0usize; n];
    for (r, &i) in order.iter().enumerate() {
        fold_of[i] = r % folds;
    }
    let parts: Vec<Result<(Vec<usize>, Array2<f32>)>> = (0..folds)
        .into_par_iter()
        .map(|f| {
            let tr: Vec<usize> = (0..n)
                .filter(|&i| fold_of[i] != f && !excluded(i))
                .collect();
            let te: Vec<usize> = (0..n).filter(|&i| fold_of[i] == f).collect();
            let ytr: Vec<u32> = tr.iter().map(|&i| y[i]).collect();
            let m = trainer.fit(
                x.select(Axis(0), &tr).view(),
                &ytr,
                k,
                mithridate_core::rng::derive_seed(seed, &format!("fold{f}")),
            )?;
            Ok((te.clone(), m.predict_proba(x.select(Axis(0), &te).view())))
        })
        .collect();
    let mut p = Array2::<f32>::zeros((n, k));
    for part in parts {
        let (te, pr) = part?;
        for (r, &i) in te.iter().enumerate() {
            for c in 0..k.min(pr.ncols()) {
                p[[i, c]] = pr[[r, c]];
            }
        }
    }
    Ok(p)
}

/// Leave-one-out distance-weighted kNN class probabilities and the share of
/// neighbours with another label, against references that skip `exclude`d
/// samples (and a random subset when there are more than `max_knn_refs`).
fn knn_proba(
    x: ndarray::ArrayView2<'_, f32>,
    y: &[u32],
    k: usize,
    p: &LabelParams,
    seed: u64,
    exclude: &[bool],
) -> (Array2<f32>, Vec<f64>) {
    let n = x.nrows();
    let excluded = |i: usize| exclude.get(i).copied().unwrap_or(false);
    let mut refs: Vec<usize> = (0..n).filter(|&i| !excluded(i)).collect();
    if refs.len() > p.max_knn_refs {
        let order = mithridate_core::attack::shuffled(
            refs.len(),
            mithridate_core::rng::derive_seed(seed, "knn-refs"),
        );
        let mut keep: Vec<usize> = order[..p.max_knn_refs].iter().map(|&j| refs[j]).collect();
        keep.sort_unstable();
        refs = keep;
    }
    let rx = x.select(Axis(0), &refs);
    let nn = knn(x, rx.view(), p.k + 1, false);
    let mut pk = Array2::<f32>::zeros((n, k));
    let mut dis = vec![0.0; n];
    for (i, nb) in nn.iter().enumerate() {
        let mut wsum = 0.0f32;
        let mut cnt = 0usize;
        let mut differ = 0usize;
        for &(r, d2) in nb.iter().filter(|(r, _)| refs[*r] != i).take(p.k) {
            let w = 1.0 / (1.0 + d2.sqrt());
            let l = y[refs[r]] as usize;
            pk[[i, l]] += w;
            wsum += w;
            cnt += 1;
            if l != y[i] as usize {
                differ += 1;
            }
        }
        if wsum > 0.0 {
            pk.row_mut(i).mapv_inplace(|v| v / wsum);
        }
        dis[i] = differ as f64 / cnt.max(1) as f64;
    }
    (pk, dis)
}

/// Samples whose nearest class centre (coordinate-wise median of the class)
/// is another class `c`, for the (label, `c`) pairs shared by at least 1% of
/// the samples (and 15) that are also contradicted by at least 40% of their
/// neighbours.
fn centre_suspects(
    x: ndarray::ArrayView2<'_, f32>,
    y: &[u32],
    k: usize,
    dis: &[f64],
) -> (Vec<bool>, Vec<(u32, usize)>) {
    let centres: Vec<Option<ndarray::Array1<f32>>> = (0..k as u32)
        .map(|c| {
            let rows: Vec<usize> = (0..x.nrows()).filter(|&i| y[i] == c).collect();
            (!rows.is_empty()).then(|| crate::util::column_medians(x.select(Axis(0), &rows).view()))
        })
        .collect();
    let nearest: Vec<Option<usize>> = (0..x.nrows())
        .map(|i| {
            let row = x.row(i);
            let nearest = centres
                .iter()
                .enumerate()
                .filter_map(|(c, m)| {
                    let m = m.as_ref()?;
                    let d: f32 = row.iter().zip(m).map(|(a, b)| (a - b) * (a - b)).sum();
                    Some((c, d))
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(c, _)| c);
            nearest.filter(|&c| c != y[i] as usize)
        })
        .collect();
    let mut pairs: std::collections::BTreeMap<(u32, usize), usize> = Default::default();
    for (i, c) in nearest.iter().enumerate() {
        if let Some(c) = c {
            if dis[i] >= 0.4 {
                *pairs.entry((y[i], *c)).or_default() += 1;
            }
        }
    }
    let min_pair = (x.nrows() / 100).max(15);
    let concentrated: Vec<(u32, usize)> = pairs
        .into_iter()
        .filter(|&(_, c)| c >= min_pair)
        .map(|(pair, _)| pair)
        .collect();
    let suspects = nearest
        .iter()
        .enumerate()
        .map(|(i, c)| c.is_some_and(|c| concentrated.contains(&(y[i], c))))
        .collect();
    (suspects, concentrated)
}

/// Analyse labels of `ds` (features and labels required).
pub fn analyse_labels(ds: &Dataset, p: &LabelParams, seed: u64) -> Result<LabelAnalysis> {
    p.check()?;
    let x = ds.require_features("label consistency")?;
    let y = ds.require_labels("label consistency")?;
    let k = ds.n_classes();
    let n = ds.len();
    if k < 2 || n < 2 * p.folds {
        return Err(Error::data(
            "label consistency needs at least two classes and two samples per fold",
        ));
    }
    let trainer = SoftmaxTrainer {
        params: SoftmaxParams {
            epochs: p.epochs,
            ..Default::default()
        },
    };
    let pm = cross_val_proba(x.view(), y, k, p.folds, &trainer, seed)?;
    let (pk, dis) = knn_proba(x.view(), y, k, p, seed, &[]);
    // Targeted flips (many samples of one class relabelled as another) teach
    // the cross-validated model and the neighbours that the flipped look is
    // ambiguous, and confident learning then sees no issue. Suspects are
    // samples nearer another class's robust centre (coordinate-wise median,
    // which a minority of flipped samples does not move) and contradicted by
    // many neighbours. When many of them share one (label, nearer class)
    // pair, a targeted flip is likely: the model and the neighbours are formed
    // again without those, and every sample is judged by them. Scattered
    // suspects (hard clean samples, uniform noise) are left alone: removing
    // hard samples from training would make the other hard ones look wrong.
    // Two more rounds add the samples that the cleaner model now assigns to
    // the nearer class of a concentrated pair.
    let w = p.knn_weight as f32;
    let (mut suspects, pairs) = centre_suspects(x.view(), y, k, &dis);
    let (mut pm, mut pk, mut dis) = (pm, pk, dis);
    let count = |s: &[bool]| s.iter().filter(|&&b| b).count();
    if count(&suspects) >= 3 && count(&suspects) * 4 < n {
        for round in 0..3 {
            pm = cross_val_proba_without(x.view(), y, k, p.folds, &trainer, seed, &suspects)?;
            (pk, dis) = knn_proba(x.view(), y, k, p, seed, &suspects);
            if round == 2 {
                break;
            }
            let proba = &pm * (1.0 - w) + &pk * w;
            let mut grew = false;
            for i in 0..n {
                let top = (0..k)
                    .max_by(|&a, &b| proba[[i, a]].total_cmp(&proba[[i, b]]))
                    .unwrap_or(y[i] as usize);
                if !suspects[i] && top != y[i] as usize && pairs.contains(&(y[i], top)) {
                    suspects[i] = true;
                    grew = true;
                }
            }
            if !grew || count(&suspects) * 4 >= n {
                break;
            }
        }
    }
    let proba = &pm * (1.0 - w) + &pk * w;
    let mut sum = vec![0.0f64; k];
    let mut cnt = vec![0usize; k];
    for i in 0..n {
        let l = y[i] as usize;
        sum[l] += f64::from(proba[[i, l]]);
        cnt[l] += 1;
    }
    let thresholds: Vec<f64> = (0..k)
        .map(|c| {
            if cnt[c] > 0 {
                sum[c] / cnt[c] as f64
            } else {
                1.0
            }
        })
        .collect();
    let mut issues = Vec::new();
    let mut suggested = Vec::new();
    for i in 0..n {
        let l = y[i] as usize;
        let mut best: Option<usize> = None;
        for c in 0..k {
            if f64::from(proba[[i, c]]) >= thresholds[c]
                && best.is_none_or(|b| proba[[i, c]] > proba[[i, b]])
            {
                best = Some(c);
            }
        }
        let top = (0..k)
            .max_by(|&a, &b| proba[[i, a]].total_cmp(&proba[[i, b]]))
            .unwrap_or(l);
        // Inside a concentrated (label, nearer class) pair the data already
        // show a targeted flip, and its flipped samples keep part of their
        // given label's probability (the ones not yet set aside still teach
        // it): there a sample is an issue when the cleaner model and most of
        // its neighbours put it in the pair's other class, however unsure.
        let in_flipped_pair =
            top != l && pairs.contains(&(y[i], top)) && dis[i] >= p.min_knn_disagreement;
        if f64::from(proba[[i, l]]) > p.max_label_proba && !in_flipped_pair {
            continue;
        }
        let cl = best.filter(|&b| b != l);
        if cl.is_some() || dis[i] >= p.min_knn_disagreement {
            issues.push(i);
            suggested.push(cl.unwrap_or(top) as u32);
        }
    }
    Ok(LabelAnalysis {
        proba,
        thresholds,
        knn_disagreement: dis,
        issues,
        suggested,
    })
}

/// Label consistency by cross-validation, confident learning and kNN disagreement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LabelConsistency {
    /// Checked parameters.
    pub params: LabelParams,
}

impl LabelConsistency {
    /// A detector with checked `params`.
    pub fn new(params: LabelParams) -> Result<Self> {
        params.check()?;
        Ok(Self { params })
    }
}

impl Detector for LabelConsistency {
    fn name(&self) -> &str {
        "label-consistency"
    }

    fn detect(&self, ds: &Dataset, seed: u64) -> Result<DetectorOutput> {
        let a = analyse_labels(ds, &self.params, seed)?;
        let y = ds.require_labels("label consistency")?;
        let cut = 1.0 - self.params.max_label_proba;
        let scores: Vec<f64> = (0..ds.len())
            .map(|i| (1.0 - f64::from(a.proba[[i, y[i] as usize]])) / cut.max(1e-9))
            .collect();
        let mut out = DetectorOutput {
            detector: self.name().into(),
            ..Default::default()
        };
        for (&i, &s) in a.issues.iter().zip(&a.suggested) {
            let pl = a.proba[[i, y[i] as usize]];
            out.flags.push(Flag {
                index: i,
                score: scores[i],
                kind: FlagKind::LabelIssue,
                message: format!(
                    "label {} has out-of-sample probability {:.3}; the data say {} ({:.0}% of neighbours disagree)",
                    ds.label_name(y[i]),
                    pl,
                    ds.label_name(s),
                    a.knn_disagreement[i] * 100.0
                ),
                trigger: None,
            });
        }
        if !a.issues.is_empty() {
            out.findings.push(
                Finding::new(
                    a.issues.len() as f64,
                    format!("{} label issues by confident learning", a.issues.len()),
                )
                .with_ids(a.issues.iter().map(|&i| ds.ids[i].clone()).collect())
                .with_tags(poison_tags())
                .with_detail(json!({"thresholds": a.thresholds})),
            );
        }
        out.metrics
            .insert("label_issues".into(), a.issues.len() as f64);
        let mean_dis =
            a.knn_disagreement.iter().sum::<f64>() / a.knn_disagreement.len().max(1) as f64;
        out.metrics.insert("knn_disagreement_mean".into(), mean_dis);
        out.scores = scores;
        Ok(out)
    }
}

detector_defense!(LabelConsistency);
