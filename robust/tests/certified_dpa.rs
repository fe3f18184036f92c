//! DPA: certificates hold against brute-force poisoning, the ensemble is
//! deterministic and works as a pipeline defense.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;

use mithridate_core::model::{Classifier, SoftmaxParams, SoftmaxTrainer, Trainer};
use mithridate_core::{datasets::digits, Context, Dataset, Defense, Layer, Stage};
use mithridate_robust::certified::{certify_finite_aggregation, certify_votes, Dpa, Scheme};
use mithridate_robust::CertifiedTrainDefense;
use ndarray::{Array2, ArrayView2};
use proptest::prelude::*;

/// 1-nearest-neighbour on the first feature, ties to the lower label: a
/// deterministic function of the training set, cheap enough to retrain
/// thousands of times.
struct NearestTrainer;

struct Nearest {
    points: Vec<(f32, u32)>,
    k: usize,
}

impl Classifier for Nearest {
    fn n_features(&self) -> usize {
        1
    }
    fn n_classes(&self) -> usize {
        self.k
    }
    fn predict_proba(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let mut p = Array2::zeros((x.nrows(), self.k));
        for (i, r) in x.rows().into_iter().enumerate() {
            let best = self
                .points
                .iter()
                .min_by(|a, b| {
                    (a.0 - r[0])
                        .abs()
                        .total_cmp(&(b.0 - r[0]).abs())
                        .then(a.1.cmp(&b.1))
                })
                .map_or(0, |p| p.1);
            p[[i, best as usize]] = 1.0;
        }
        p
    }
}

impl Trainer for NearestTrainer {
    fn fit(
        &self,
        x: ArrayView2<'_, f32>,
        y: &[u32],
        k: usize,
        _seed: u64,
    ) -> mithridate_core::Result<Box<dyn Classifier>> {
        Ok(Box::new(Nearest {
            points: x.column(0).iter().copied().zip(y.iter().copied()).collect(),
            k,
        }))
    }
}

fn predict(rows: &[(f32, u32)], k: usize, parts: usize, q: f32) -> (u32, u32) {
    predict_scheme(rows, k, Scheme::dpa(parts), q)
}

fn predict_scheme(rows: &[(f32, u32)], k: usize, scheme: Scheme, q: f32) -> (u32, u32) {
    let x =
        Array2::from_shape_vec((rows.len(), 1), rows.iter().map(|r| r.0).collect()).expect("shape");
    let y: Vec<u32> = rows.iter().map(|r| r.1).collect();
    let dpa = Dpa::fit_xy_scheme(x.view(), &y, k, scheme, &NearestTrainer, 0).expect("fit");
    let c = dpa.certify(Array2::from_elem((1, 1), q).view())[0];
    (c.label, c.certificate)
}

/// Every training set reachable from `rows` by at most `r` insertions (from
/// `pool`) or deletions.
fn poisoned(rows: &[(f32, u32)], pool: &[(f32, u32)], r: usize, out: &mut Vec<Vec<(f32, u32)>>) {
    out.push(rows.to_vec());
    if r == 0 {
        return;
    }
    for i in 0..rows.len() {
        let mut s = rows.to_vec();
        s.remove(i);
        poisoned(&s, pool, r - 1, out);
    }
    for p in pool {
        let mut s = rows.to_vec();
        s.push(*p);
        poisoned(&s, pool, r - 1, out);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A certificate r is never violated by any insertion/deletion of up to r
    /// samples (checked exhaustively up to r = 2).
    #[test]
    fn certificates_survive_brute_force_poisoning(
        rows in proptest::collection::vec((0u8..6, 0u32..6), 3..10),
        parts in 1usize..10,
        q in 0u8..6,
    ) {
        let k = 3;
        // Two thirds of the labels are 0, so certificates above 0 occur.
        let rows: Vec<(f32, u32)> = rows.into_iter().map(|(a, b)| (f32::from(a), b.saturating_sub(3))).collect();
        let q = f32::from(q);
        let (label, cert) = predict(&rows, k, parts, q);
        let r = (cert as usize).min(2);
        let pool: Vec<(f32, u32)> = (0..6u8).flat_map(|v| (0..3u32).map(move |c| (f32::from(v) + 0.5, c))).collect();
        let mut sets = Vec::new();
        poisoned(&rows, &pool, r, &mut sets);
        for s in &sets {
            prop_assert_eq!(predict(s, k, parts, q).0, label, "certificate {} broken by {:?} -> {:?}", cert, rows, s);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Finite Aggregation: a certificate r is never violated by any
    /// insertion/deletion of up to r samples (exhaustive up to r = 2).
    #[test]
    fn finite_aggregation_certificates_survive_brute_force_poisoning(
        rows in proptest::collection::vec((0u8..6, 0u32..6), 3..9),
        parts in 1usize..5,
        spread in 1usize..4,
        q in 0u8..6,
    ) {
        let k = 3;
        let rows: Vec<(f32, u32)> = rows.into_iter().map(|(a, b)| (f32::from(a), b.saturating_sub(3))).collect();
        let q = f32::from(q);
        let scheme = Scheme::finite_aggregation(parts, spread).expect("scheme");
        let (label, cert) = predict_scheme(&rows, k, scheme.clone(), q);
        let r = (cert as usize).min(2);
        let pool: Vec<(f32, u32)> = (0..6u8).flat_map(|v| (0..3u32).map(move |c| (f32::from(v) + 0.5, c))).collect();
        let mut sets = Vec::new();
        poisoned(&rows, &pool, r, &mut sets);
        for s in &sets {
            prop_assert_eq!(predict_scheme(s, k, scheme.clone(), q).0, label, "certificate {} broken by {:?} -> {:?}", cert, rows, s);
        }
    }

    /// With a spread of 1, Finite Aggregation's certificate is DPA's.
    #[test]
    fn finite_aggregation_with_spread_one_is_dpa(
        preds in proptest::collection::vec(proptest::option::weighted(0.9, 0u32..4), 1..30),
    ) {
        let mut votes = vec![0u32; 4];
        for p in preds.iter().flatten() {
            votes[*p as usize] += 1;
        }
        prop_assert_eq!(certify_finite_aggregation(&preds, &[0], 4), certify_votes(&votes));
    }
}

#[test]
fn finite_aggregation_certificates_are_at_least_positive_somewhere() {
    // The brute-force property above must see positive certificates.
    let mut positive = 0;
    for s in 0..40u32 {
        let rows: Vec<(f32, u32)> = (0..9)
            .map(|i| (((i * 7 + s) % 6) as f32, u32::from((i + s) % 4 == 0)))
            .collect();
        let scheme = Scheme::finite_aggregation(3, 2).expect("scheme");
        positive += usize::from(predict_scheme(&rows, 2, scheme, 2.0).1 >= 1);
    }
    assert!(
        positive >= 5,
        "{positive} of 40 instances have a certificate >= 1"
    );
    assert!(Scheme::finite_aggregation(0, 2).is_err());
    assert!(Scheme::finite_aggregation(3, 0).is_err());
}

#[test]
fn certificates_are_tight_enough_to_be_useful_and_the_bound_is_exact_once() {
    // The brute-force property above sees positive certificates: count them on fixed instances.
    let mut positive = 0;
    for s in 0..40u32 {
        let rows: Vec<(f32, u32)> = (0..9)
            .map(|i| (((i * 7 + s) % 6) as f32, u32::from((i + s) % 4 == 0)))
            .collect();
        positive += usize::from(predict(&rows, 2, 5, 2.0).1 >= 1);
    }
    assert!(
        positive >= 5,
        "{positive} of 40 instances have a certificate >= 1"
    );
    // 9 partitions all voting for class 1 (every sample the same label):
    // certificate floor((9 - 1) / 2) = 4, since class 0 wins ties.
    assert_eq!(certify_votes(&[0, 9]).certificate, 4);
    // Many identical-label samples spread over 9 partitions.
    let rows: Vec<(f32, u32)> = (0..60).map(|i| (i as f32 * 0.1, 1)).collect();
    let (label, cert) = predict(&rows, 2, 9, 3.0);
    assert_eq!(label, 1);
    assert_eq!(cert, 4);
}

fn small_digits() -> (Dataset, Dataset) {
    let ds = digits();
    let n = ds.len();
    let train: Vec<usize> = (0..n).filter(|i| i % 5 != 0).collect();
    let test: Vec<usize> = (0..n).filter(|i| i % 5 == 0).collect();
    (
        ds.select(&train).expect("train"),
        ds.select(&test).expect("test"),
    )
}

#[test]
fn dpa_on_digits_is_accurate_deterministic_and_stable_under_insertion() {
    let (train, test) = small_digits();
    let trainer = SoftmaxTrainer {
        params: SoftmaxParams {
            epochs: 15,
            ..Default::default()
        },
    };
    let a = Dpa::fit(&train, 10, &trainer, 1).expect("fit");
    let b = Dpa::fit(&train, 10, &trainer, 1).expect("fit");
    let x = test.features.as_ref().expect("features");
    let y = test.labels.as_ref().expect("labels");
    let pa = a.certify(x.view());
    assert_eq!(pa, b.certify(x.view()));
    let acc = pa.iter().zip(y).filter(|(p, &t)| p.label == t).count() as f64 / y.len() as f64;
    assert!(acc > 0.85, "accuracy {acc}");
    assert!(pa.iter().any(|p| p.certificate >= 3));
    // The vote share sums to one when no partition abstains.
    let proba = a.predict_proba(x.view());
    assert!(proba
        .rows()
        .into_iter()
        .all(|r| (r.sum() - 1.0).abs() < 1e-5));
    // Inserting one sample changes at most one partition, so every vote count moves by at most one.
    let extra = test.select(&[0]).expect("one");
    let mut grown = train.clone();
    grown.features = Some(ndarray::concatenate![
        ndarray::Axis(0),
        train.features.clone().expect("f"),
        extra.features.clone().expect("f")
    ]);
    grown.labels = Some([train.labels.clone().expect("l"), vec![(y[0] + 1) % 10]].concat());
    grown.ids.push(mithridate_core::SampleId::Num(999_999));
    let c = Dpa::fit(&grown, 10, &trainer, 1).expect("fit");
    let (va, vc) = (a.votes(x.view()), c.votes(x.view()));
    let changed: usize = va
        .iter()
        .zip(vc.iter())
        .map(|(p, q)| p.abs_diff(*q) as usize)
        .max()
        .unwrap_or(0);
    assert!(changed <= 1, "a vote count moved by {changed}");
    let sizes_a = a.partition_sizes();
    let sizes_c = c.partition_sizes();
    assert_eq!(
        sizes_a.iter().zip(sizes_c).filter(|(p, q)| p != q).count(),
        1
    );
}

#[test]
fn certified_train_defense_reports_metrics_and_sets_the_model() {
    let (train, test) = small_digits();
    let d = CertifiedTrainDefense::new(8).with_trainer(Arc::new(SoftmaxTrainer {
        params: SoftmaxParams {
            epochs: 10,
            ..Default::default()
        },
    }));
    assert_eq!(d.name(), "train-certified-dpa");
    assert_eq!(d.layer(), Layer::Robust);
    assert_eq!(d.stage(), Stage::Train);
    let mut cx = Context::new(3)
        .with_dataset(train)
        .with_holdout(test.clone());
    let r = cx.run(&d).expect("run");
    for m in [
        "certified_accuracy_r0",
        "certified_accuracy_r1",
        "certified_accuracy_r2",
        "certified_accuracy_r5",
        "median_certificate",
        "partitions",
    ] {
        assert!(r.metrics.contains_key(m), "missing {m}: {:?}", r.metrics);
    }
    assert_eq!(r.metrics["partitions"], 8.0);
    let r0 = r.metrics["certified_accuracy_r0"];
    assert!(
        r0 > 0.8
            && r.metrics["certified_accuracy_r1"] <= r0
            && r.metrics["certified_accuracy_r5"] <= r.metrics["certified_accuracy_r2"]
    );
    let model = cx.model.as_ref().expect("model set");
    let x = test.features.as_ref().expect("features");
    let acc = mithridate_core::model::accuracy(
        &model.predict(x.view()),
        test.labels.as_ref().expect("labels"),
    );
    assert!((acc - r0).abs() < 1e-12);
    assert!(cx.artifacts.contains_key("certified_dpa"));
}
