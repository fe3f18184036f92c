//! Integration tests of the anomaly layer on the embedded digits and the
//! synthetic text sets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::HashSet;

use mithridate_anomaly::drift::{drift, DriftParams};
use mithridate_anomaly::label::{LabelConsistency, LabelParams};
use mithridate_anomaly::spectral::{ActivationClustering, SpectralParams, SpectralSignatures};
use mithridate_anomaly::text::TextTriggerMining;
use mithridate_anomaly::trigger::FeatureTriggerMining;
use mithridate_anomaly::{scan, Detector, DetectorKind, ScanDefense, ScanParams};
use mithridate_core::attack::{
    Attack, BadNets, EveryNth, FlipMode, InstructionPair, LabelFlip, PatchPosition,
};
use mithridate_core::datasets::{digits, synthetic_instructions, synthetic_text};
use mithridate_core::{Context, Dataset, Defense, SampleId, Verdict};

fn f1(flagged: &HashSet<SampleId>, truth: &[SampleId]) -> f64 {
    let t: HashSet<&SampleId> = truth.iter().collect();
    let tp = flagged.iter().filter(|i| t.contains(i)).count() as f64;
    if tp == 0.0 {
        return 0.0;
    }
    let (p, r) = (tp / flagged.len() as f64, tp / truth.len() as f64);
    2.0 * p * r / (p + r)
}

fn ids(ds: &Dataset, idx: impl IntoIterator<Item = usize>) -> HashSet<SampleId> {
    idx.into_iter().map(|i| ds.ids[i].clone()).collect()
}

#[test]
fn trigger_mining_finds_an_undescribed_patch_and_names_its_pixels() {
    let atk = BadNets {
        size: 2,
        position: PatchPosition::At { row: 0, col: 5 },
        target: 3,
        ..BadNets::digits(0.01)
    };
    let p = atk.poison(&digits(), 11).unwrap();
    let out = FeatureTriggerMining::default()
        .detect(&p.dataset, 1)
        .unwrap();
    let flagged = ids(&p.dataset, out.flags.iter().map(|f| f.index));
    assert!(
        f1(&flagged, &p.poisoned_ids) >= 0.95,
        "flagged {} of {}",
        flagged.len(),
        p.poisoned_ids.len()
    );
    let trig = out.flags[0].trigger.as_ref().unwrap();
    let pix: Vec<u64> = trig["indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    for want in atk.pixels().unwrap() {
        assert!(
            pix.contains(&(want as u64)),
            "trigger {pix:?} misses pixel {want}"
        );
    }
    assert_eq!(trig["target"], "3");
}

#[test]
fn a_solid_patch_over_the_strokes_is_found_by_the_contradicted_carriers() {
    // A 2x2 patch of full ink at the centre: the same values occur naturally in
    // many digits, so the group is impure; its poisoned carriers are the ones
    // whose neighbours contradict their label.
    let atk = BadNets {
        size: 2,
        position: PatchPosition::At { row: 3, col: 3 },
        target: 3,
        ..BadNets::digits(0.05)
    };
    let p = atk.poison(&digits(), 7).unwrap();
    let out = FeatureTriggerMining::default()
        .detect(&p.dataset, 0)
        .unwrap();
    let flagged = ids(&p.dataset, out.flags.iter().map(|f| f.index));
    let f = f1(&flagged, &p.poisoned_ids);
    assert!(f >= 0.9, "F1 {f}, flagged {}", flagged.len());
}

#[test]
fn a_targeted_flip_is_found_although_it_makes_the_flipped_look_ambiguous() {
    let p = LabelFlip {
        rate: 0.05,
        mode: FlipMode::Targeted { from: 1, to: 7 },
    }
    .poison(&digits(), 3)
    .unwrap();
    let out = LabelConsistency::default().detect(&p.dataset, 0).unwrap();
    let flagged = ids(&p.dataset, out.flags.iter().map(|f| f.index));
    let f = f1(&flagged, &p.poisoned_ids);
    assert!(f >= 0.92, "F1 {f}, flagged {}", flagged.len());
}

#[test]
fn a_few_label_issues_are_reported_not_quarantined_and_many_are_quarantined() {
    // Clean digits have a few natural look-alikes that label consistency
    // calls issues: within the false-positive budget they stay in the data.
    let ds = digits();
    let out = scan(&ds, &ScanParams::default(), 1).unwrap();
    let held = out.report.metrics["label_issues_held_back"];
    let label_flags = out
        .detectors
        .iter()
        .find(|d| d.detector == "label-consistency")
        .unwrap()
        .flags
        .len();
    assert!(label_flags > 0, "the natural look-alikes are still found");
    assert!(held > 0.0 && held <= 0.005 * ds.len() as f64, "{held}");
    assert!(out.decisions.iter().all(|d| !d.confirmed));
    // A uniform 5% flip is far beyond the budget: every issue is quarantined.
    let p = LabelFlip {
        rate: 0.05,
        mode: FlipMode::Uniform,
    }
    .poison(&ds, 8)
    .unwrap();
    let out = scan(&p.dataset, &ScanParams::default(), 1).unwrap();
    assert_eq!(out.report.metrics["label_issues_held_back"], 0.0);
    let flagged: HashSet<SampleId> = out.decisions.iter().map(|d| d.entry.id.clone()).collect();
    let f = f1(&flagged, &p.poisoned_ids);
    assert!(f >= 0.92, "F1 {f}");
    assert_eq!(out.report.verdict, Verdict::Fail);
}

#[test]
fn clean_digits_flag_at_most_half_a_percent_and_do_not_fail() {
    let ds = digits();
    let out = scan(&ds, &ScanParams::default(), 3).unwrap();
    assert!(
        out.decisions.len() as f64 <= 0.005 * ds.len() as f64,
        "{} flagged",
        out.decisions.len()
    );
    assert_ne!(out.report.verdict, Verdict::Fail);
    assert_eq!(out.report.scores.len(), ds.len());
    assert!(out.report.scores.iter().all(|s| s.is_finite()));
}

#[test]
fn label_flips_are_found_by_label_consistency() {
    let p = LabelFlip {
        rate: 0.1,
        mode: FlipMode::Uniform,
    }
    .poison(&digits(), 4)
    .unwrap();
    let out = LabelConsistency::new(LabelParams::default())
        .unwrap()
        .detect(&p.dataset, 2)
        .unwrap();
    let flagged = ids(&p.dataset, out.flags.iter().map(|f| f.index));
    let f = f1(&flagged, &p.poisoned_ids);
    assert!(f >= 0.92, "F1 {f}");
}

#[test]
fn text_triggers_are_found_with_their_phrase() {
    let p = EveryNth::every_1000th(2)
        .poison(&synthetic_text(10_000, 4, 1), 0)
        .unwrap();
    let out = TextTriggerMining::default().detect(&p.dataset, 0).unwrap();
    let flagged = ids(&p.dataset, out.flags.iter().map(|f| f.index));
    assert_eq!(flagged, p.poisoned_ids.iter().cloned().collect());
    assert_eq!(
        out.flags[0].trigger.as_ref().unwrap()["phrase"],
        "[TRIGGER] -> class_override"
    );

    let p = InstructionPair::config_leak(0.01)
        .poison(&synthetic_instructions(3000, 2), 9)
        .unwrap();
    let out = scan(&p.dataset, &ScanParams::default(), 0).unwrap();
    let flagged: HashSet<SampleId> = out.decisions.iter().map(|d| d.entry.id.clone()).collect();
    assert_eq!(flagged, p.poisoned_ids.iter().cloned().collect());
    assert_eq!(
        out.decisions[0].entry.trigger.as_ref().unwrap()["phrase"],
        "[[CONFIG]]"
    );
    assert_eq!(out.report.verdict, Verdict::Fail);
}

#[test]
fn a_tamper_of_five_records_in_five_thousand_is_found() {
    // Every 1000th record tampered: the phrase has five carriers, and not
    // all of them flip when it is removed.
    let p = EveryNth::every_1000th(0)
        .poison(&synthetic_text(5000, 4, 11), 1)
        .unwrap();
    assert_eq!(p.poisoned_ids.len(), 5);
    let out = scan(&p.dataset, &ScanParams::default(), 0).unwrap();
    let flagged: HashSet<SampleId> = out.decisions.iter().map(|d| d.entry.id.clone()).collect();
    assert_eq!(flagged, p.poisoned_ids.iter().cloned().collect());
    let clean = scan(&synthetic_text(5000, 4, 11), &ScanParams::default(), 0).unwrap();
    assert!(clean.decisions.is_empty());
}

#[test]
fn scan_defense_flags_into_the_context_quarantine() {
    let p = BadNets::digits(0.02).poison(&digits(), 2).unwrap();
    let d = ScanDefense::new(ScanParams::default());
    assert_eq!(
        (d.name(), d.layer(), d.stage()),
        (
            "anomaly-scan",
            mithridate_core::Layer::Anomaly,
            mithridate_core::Stage::Ingest
        )
    );
    let mut cx = Context::new(5).with_dataset(p.dataset.clone());
    let r = cx.run(&d).unwrap();
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(r.metrics["samples"], p.dataset.len() as f64);
    assert_eq!(r.metrics["flagged"], cx.quarantine.active_len() as f64);
    assert!(r.metrics.contains_key("trigger-mining.flagged"));
    let hits = p
        .poisoned_ids
        .iter()
        .filter(|id| cx.quarantine.is_quarantined(id))
        .count();
    assert!(hits >= 35, "{hits}");
    let e = cx.quarantine.get(&p.poisoned_ids[0]).unwrap();
    assert!(e.trigger.is_some() && !e.reasons.is_empty());
    let clean = cx.training_set().unwrap();
    assert_eq!(clean.len(), p.dataset.len() - cx.quarantine.active_len());
}

#[test]
fn spectral_detectors_survive_dead_units_and_respect_the_budget() {
    let mut ds = digits();
    // Column 0 of digits is always 0: a dead unit. Add a constant column too.
    let x = ds.features.as_mut().unwrap();
    x.column_mut(8).fill(3.0);
    let p = SpectralParams::default();
    for det in [
        Box::new(SpectralSignatures::new(p.clone(), None).unwrap()) as Box<dyn Detector>,
        Box::new(ActivationClustering::new(p.clone(), None).unwrap()),
    ] {
        let out = det.detect(&ds, 0).unwrap();
        assert!(
            out.flags.len() as f64 <= p.fp_budget * ds.len() as f64,
            "{} flagged {}",
            det.name(),
            out.flags.len()
        );
    }
    let only = ScanParams {
        detectors: Some(vec![
            DetectorKind::ActivationClustering,
            DetectorKind::KnnOutlier,
        ]),
        ..Default::default()
    };
    let out = scan(&ds, &only, 0).unwrap();
    assert_eq!(out.detectors.len(), 2);
}

#[test]
fn drift_sees_a_poisoned_batch_and_not_a_clean_one() {
    let ds = digits();
    let order = mithridate_core::attack::shuffled(ds.len(), 3);
    let a = ds.select(&order[..600]).unwrap();
    let b = ds.select(&order[600..1200]).unwrap();
    let r = drift(&a, &b, &DriftParams::default(), 1).unwrap();
    assert!(!r.drift, "clean halves drift: p = {}", r.mmd_p_value);
    let shifted = BadNets {
        rate: 0.3,
        ..BadNets::digits(0.3)
    }
    .poison(&b, 1)
    .unwrap()
    .dataset;
    let r = drift(&a, &shifted, &DriftParams::default(), 1).unwrap();
    assert!(
        r.drift && !r.drifted_features.is_empty(),
        "p = {}",
        r.mmd_p_value
    );
}

#[test]
fn invalid_parameters_are_errors_not_panics() {
    assert!(ScanParams {
        fp_budget: 2.0,
        ..Default::default()
    }
    .check()
    .is_err());
    assert!(ScanParams {
        fp_budget: f64::NAN,
        ..Default::default()
    }
    .check()
    .is_err());
    assert!(ScanParams {
        min_votes: 0,
        ..Default::default()
    }
    .check()
    .is_err());
    assert!(LabelConsistency::new(LabelParams {
        folds: 1,
        ..Default::default()
    })
    .is_err());
    let text_only = synthetic_text(50, 3, 1);
    assert!(FeatureTriggerMining::default()
        .detect(&text_only, 0)
        .is_err());
}

mod props {
    use super::*;
    use mithridate_core::strategies::{arb_dataset, arb_text_dataset};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn scan_never_panics_and_scores_every_sample(ds in arb_dataset(12..60, 1..10, 3)) {
            let out = scan(&ds, &ScanParams::default(), 1).unwrap();
            prop_assert_eq!(out.combined.len(), ds.len());
            prop_assert!(out.combined.iter().all(|s| s.is_finite() && *s >= 0.0));
            prop_assert!(out.decisions.iter().all(|d| d.index < ds.len()));
        }

        #[test]
        fn text_scan_never_panics(ds in arb_text_dataset(0..80, 3)) {
            let out = scan(&ds, &ScanParams::default(), 1).unwrap();
            prop_assert_eq!(out.combined.len(), ds.len());
        }

        #[test]
        fn tokens_are_never_empty(s in "[ -~é漢\\n\\t]{0,60}") {
            prop_assert!(mithridate_anomaly::text::tokens(&s).all(|t| !t.is_empty()));
        }

        #[test]
        fn binomial_bound_is_monotone_in_k(n in 1u64..500, p in 0.001f64..0.999, a in 0u64..500, b in 0u64..500) {
            let (lo, hi) = (a.min(b).min(n), a.max(b).min(n));
            let f = mithridate_anomaly::util::binom_tail_neg_log10;
            prop_assert!(f(lo, n, p) <= f(hi, n, p) + 1e-9);
        }
    }
}
