//! The validation layer on the embedded digits: a model trained on
//! BadNets-poisoned data fails with the trigger named, a clean one passes,
//! the holdout gate proves separation, and the Defense impls fill the context.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;

use mithridate_core::attack::{shuffled, Attack, BadNets};
use mithridate_core::datasets::digits;
use mithridate_core::model::{ClassifierPredictor, SoftmaxParams, SoftmaxRegression};
use mithridate_core::rng::derive_seed;
use mithridate_core::{Context, Dataset, Defense, Layer, Stage, Verdict};
use mithridate_validation::junit::checks_artifact_key;
use mithridate_validation::{
    junit_xml, Baseline, HoldoutGate, HoldoutManifest, Metrics, ScanParams, TriggerScan,
    TriggerSuite, TriggerTest, DEFAULT_MAX_ASR,
};

struct Split {
    train: Dataset,
    holdout: Dataset,
    poisoned: Dataset,
}

fn split(seed: u64) -> Split {
    let all = digits();
    let order = shuffled(all.len(), derive_seed(seed, "split"));
    let cut = all.len() * 3 / 4;
    let train = all.select(&order[..cut]).unwrap();
    let holdout = all.select(&order[cut..]).unwrap();
    let poisoned = BadNets::digits(0.01)
        .poison(&train, derive_seed(seed, "poison"))
        .unwrap()
        .dataset;
    Split {
        train,
        holdout,
        poisoned,
    }
}

fn fit(ds: &Dataset, seed: u64) -> SoftmaxRegression {
    SoftmaxRegression::fit(
        ds.features.as_ref().unwrap().view(),
        ds.labels.as_ref().unwrap(),
        10,
        &SoftmaxParams::default(),
        derive_seed(seed, "fit"),
    )
    .unwrap()
}

#[test]
fn backdoored_model_fails_the_trigger_test_with_the_trigger_named_and_clean_passes() {
    let s = split(0);
    let bd = fit(&s.poisoned, 0);
    let clean = fit(&s.train, 0);
    let test = TriggerTest::new(
        TriggerSuite::from_badnets(vec![BadNets::digits(0.01)]),
        DEFAULT_MAX_ASR,
    );
    let (o, res) = test
        .evaluate(&ClassifierPredictor { model: &bd }, &s.holdout, 0)
        .unwrap();
    assert_eq!(o.report.verdict, Verdict::Fail);
    assert!(
        o.report.summary.contains("badnets-3x3-br"),
        "{}",
        o.report.summary
    );
    assert!(o.report.metrics["max_asr"] > 0.5, "{:?}", o.report.metrics);
    assert_eq!(
        o.report.metrics["asr/badnets-3x3-br"],
        o.report.metrics["max_asr"]
    );
    assert_eq!(res[0].target, 7);
    let xml = junit_xml(std::slice::from_ref(&o));
    assert!(
        xml.contains("name=\"badnets-3x3-br -&gt; 7\"") && xml.contains("<failure"),
        "{xml}"
    );

    let (o, _) = test
        .evaluate(&ClassifierPredictor { model: &clean }, &s.holdout, 0)
        .unwrap();
    assert_eq!(o.report.verdict, Verdict::Pass, "{}", o.report.summary);
    assert!(o.report.metrics["max_asr"] <= DEFAULT_MAX_ASR);
}

#[test]
fn holdout_gate_passes_a_clean_model_and_fails_overlap_regression_and_tamper() {
    let s = split(1);
    let clean = fit(&s.train, 1);
    let mut cx = Context::new(1)
        .with_dataset(s.train.clone())
        .with_holdout(s.holdout.clone());
    cx.model = Some(Arc::new(clean.clone()));
    let gate = HoldoutGate::new(0.9);
    assert_eq!(
        (gate.name(), gate.layer(), gate.stage()),
        ("holdout-gate", Layer::Validation, Stage::Release)
    );
    let r = cx.run(&gate).unwrap();
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
    for m in ["accuracy", "macro_f1", "ece"] {
        assert!((0.0..=1.0).contains(&r.metrics[m]), "{m}");
    }
    assert!(r.metrics["accuracy"] > 0.9);
    assert!(cx
        .artifacts
        .contains_key(&checks_artifact_key("holdout-gate")));

    // A holdout leaked into training: every shared record is named.
    let mut leaked = s.train.clone();
    let extra = s.holdout.select(&[0, 1, 2]).unwrap();
    leaked.features = Some(
        ndarray::concatenate(
            ndarray::Axis(0),
            &[
                leaked.features.as_ref().unwrap().view(),
                extra.features.as_ref().unwrap().view(),
            ],
        )
        .unwrap(),
    );
    leaked.labels.as_mut().unwrap().extend([9, 9, 9]);
    leaked
        .ids
        .extend((0..3).map(|i| mithridate_core::SampleId::Num(100_000 + i)));
    let proba = clean.predict_proba_view(&s.holdout);
    let o = gate
        .evaluate(&s.holdout, proba.view(), Some(&leaked))
        .unwrap();
    assert_eq!(o.report.verdict, Verdict::Fail);
    assert_eq!(o.report.metrics["overlap"], 3.0);
    assert_eq!(o.report.findings[0].ids, s.holdout.ids[..3].to_vec());

    // Regression against a stored baseline, and a tampered holdout.
    let m = Metrics::compute(proba.view(), s.holdout.labels.as_ref().unwrap()).unwrap();
    let better = Baseline {
        accuracy: (m.accuracy + 0.05).min(1.0),
        ..Baseline::from(&m)
    };
    let o = HoldoutGate::new(0.5)
        .with_baseline(better)
        .evaluate(&s.holdout, proba.view(), Some(&s.train))
        .unwrap();
    assert_eq!(o.report.verdict, Verdict::Fail);
    assert!(o
        .checks
        .iter()
        .any(|c| c.name == "regression/accuracy" && c.verdict == Verdict::Fail));
    let manifest = HoldoutManifest::of(&s.holdout);
    let mut tampered = s.holdout.clone();
    tampered.features.as_mut().unwrap()[[0, 0]] += 1.0;
    let o = HoldoutGate::new(0.5)
        .with_manifest(manifest)
        .evaluate(&tampered, proba.view(), Some(&s.train))
        .unwrap();
    assert!(o
        .checks
        .iter()
        .any(|c| c.name == "holdout-manifest" && c.verdict == Verdict::Fail));
}

trait ProbaView {
    fn predict_proba_view(&self, ds: &Dataset) -> ndarray::Array2<f32>;
}
impl ProbaView for SoftmaxRegression {
    fn predict_proba_view(&self, ds: &Dataset) -> ndarray::Array2<f32> {
        use mithridate_core::Classifier;
        self.predict_proba(ds.features.as_ref().unwrap().view())
    }
}

/// One seed of the unknown-trigger scan, with a shorter search than the
/// default to keep the test fast; `examples/nc_seeds.rs` runs the default
/// over many seeds in release mode.
#[test]
fn scan_flags_class_7_for_the_backdoored_model_and_nothing_for_the_clean_one() {
    let s = split(0);
    let bd = fit(&s.poisoned, 0);
    let clean = fit(&s.train, 0);
    let params = ScanParams {
        steps: 500,
        learning_rate: 0.08,
        samples: 120,
        ..ScanParams::default()
    };
    let scan = TriggerScan::new().with_params(params);
    let mut cx = Context::new(0).with_holdout(s.holdout.clone());
    cx.model = Some(Arc::new(bd));
    let r = cx.run(&scan).unwrap();
    assert_eq!(r.verdict, Verdict::Fail, "{} {:?}", r.summary, r.metrics);
    assert_eq!(r.metrics["suspected_classes"], 1.0, "{:?}", r.metrics);
    assert!(r.metrics["anomaly_index/7"] > 2.0);
    let detail = &r.findings[0].detail;
    assert_eq!(detail["class"], 7);
    assert!(
        detail["image_svg"].as_str().unwrap().starts_with("<svg")
            && detail["image"]
                .as_str()
                .unwrap()
                .starts_with("data:image/svg+xml;base64,")
    );
    assert_eq!(
        cx.artifacts["validation/suspected_classes"],
        serde_json::json!([7])
    );

    let (o, res) = scan.evaluate(&clean, &s.holdout, 0).unwrap();
    assert!(
        res.suspected.is_empty(),
        "{:?} {:?}",
        res.suspected,
        res.anomaly_index
    );
    assert_eq!(o.report.verdict, Verdict::Pass);
}

#[test]
fn strip_flags_inputs_carrying_the_real_trigger_more_often_than_clean_ones() {
    use mithridate_core::attack::Trigger;
    use mithridate_validation::Strip;
    let s = split(2);
    let bd = fit(&s.poisoned, 2);
    let x = s.holdout.features.as_ref().unwrap();
    let strip = Strip::calibrate(&bd, x.view(), 16, 0.01, 2).unwrap();
    let y = s.holdout.labels.as_ref().unwrap();
    let rows: Vec<usize> = (0..s.holdout.len()).filter(|&i| y[i] != 7).collect();
    let clean = x.select(ndarray::Axis(0), &rows);
    let mut stamped = clean.clone();
    for mut r in stamped.rows_mut() {
        BadNets::digits(0.0)
            .apply_features(r.as_slice_mut().unwrap())
            .unwrap();
    }
    // On a linear model the blend halves the trigger's logit shift, so STRIP
    // is weak (seed 2: 3% of stamped inputs flagged vs 0.25% of clean ones at
    // a 1% calibration rate), but its premise holds: triggered inputs keep
    // lower-entropy predictions under blending.
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    let (e_clean, e_stamped) = (
        mean(strip.entropies(&bd, clean.view())),
        mean(strip.entropies(&bd, stamped.view())),
    );
    assert!(
        e_stamped < e_clean,
        "entropy clean {e_clean} stamped {e_stamped}"
    );
    let rate = |f: Vec<bool>| f.iter().filter(|&&b| b).count() as f64 / f.len() as f64;
    let (on_clean, on_stamped) = (
        rate(strip.flags(&bd, clean.view())),
        rate(strip.flags(&bd, stamped.view())),
    );
    assert!(on_clean <= 0.05, "{on_clean}");
    assert!(
        on_stamped > on_clean,
        "clean {on_clean} stamped {on_stamped}"
    );
}
