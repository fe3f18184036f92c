//! ONNX classifiers in-process (feature `onnx`): a real ONNX file written
//! from our own softmax regression must predict exactly what the model
//! predicts in-process, on digits, through the `Predictor` trait, and plug
//! into the known-trigger test like any other predictor.

#![cfg(feature = "onnx")]
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

#[path = "support/onnx_export.rs"]
mod onnx_export;

use mithridate_core::attack::{shuffled, Attack, BadNets};
use mithridate_core::datasets::digits;
use mithridate_core::model::{
    ClassifierPredictor, Input, Predictor, SoftmaxParams, SoftmaxRegression,
};
use mithridate_core::{Dataset, Verdict};
use mithridate_validation::onnx::{OnnxOutput, OnnxPredictor};
use mithridate_validation::{TriggerSuite, TriggerTest, DEFAULT_MAX_ASR};

fn split() -> (Dataset, Dataset) {
    let all = digits();
    let order = shuffled(all.len(), 11);
    let cut = all.len() * 3 / 4;
    (
        all.select(&order[..cut]).unwrap(),
        all.select(&order[cut..]).unwrap(),
    )
}

fn fit(ds: &Dataset) -> SoftmaxRegression {
    SoftmaxRegression::fit(
        ds.features.as_ref().unwrap().view(),
        ds.labels.as_ref().unwrap(),
        10,
        &SoftmaxParams::default(),
        4,
    )
    .unwrap()
}

fn inputs(ds: &Dataset) -> Vec<Input> {
    ds.features
        .as_ref()
        .unwrap()
        .rows()
        .into_iter()
        .map(|r| Input::Features(r.to_vec()))
        .collect()
}

fn assert_same(model: &SoftmaxRegression, onnx: &OnnxPredictor, holdout: &Dataset) {
    let x = inputs(holdout);
    let ours = ClassifierPredictor { model }.predict(&x).unwrap();
    let theirs = onnx.predict(&x).unwrap();
    assert_eq!(theirs.len(), x.len());
    let mut max_diff = 0f32;
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a.label, b.label);
        for (p, q) in a
            .proba
            .as_ref()
            .unwrap()
            .iter()
            .zip(b.proba.as_ref().unwrap())
        {
            max_diff = max_diff.max((p - q).abs());
        }
    }
    assert!(max_diff < 1e-4, "probabilities differ by {max_diff}");
}

#[test]
fn onnx_file_predicts_like_the_in_process_model_on_digits() {
    let (train, holdout) = split();
    let model = fit(&train);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("digits.onnx");
    std::fs::write(
        &path,
        onnx_export::softmax_regression_onnx(&model, None, true),
    )
    .unwrap();
    let onnx = OnnxPredictor::load(&path).unwrap().with_batch_size(100);
    assert_eq!((onnx.n_features(), onnx.n_classes()), (64, 10));
    assert_same(&model, &onnx, &holdout);
    let labels: Vec<u32> = onnx
        .predict(&inputs(&holdout))
        .unwrap()
        .iter()
        .map(|o| o.label.unwrap())
        .collect();
    let acc = mithridate_core::model::accuracy(&labels, holdout.labels.as_ref().unwrap());
    assert!(acc > 0.9, "accuracy {acc}");
}

#[test]
fn image_shaped_input_and_logit_output_are_handled() {
    let (train, holdout) = split();
    let model = fit(&train);
    let bytes = onnx_export::softmax_regression_onnx(&model, Some((8, 8)), false);
    let onnx = OnnxPredictor::from_bytes(&bytes, "image-logits").unwrap();
    assert_eq!(onnx.sample_shape(), &[1, 8, 8]);
    // Logits are detected (rows do not sum to 1) and turned into probabilities.
    assert_same(&model, &onnx, &holdout);
    let forced = onnx.clone().with_output(OnnxOutput::Logits);
    assert_same(&model, &forced, &holdout);
}

#[test]
fn backdoored_onnx_model_fails_the_known_trigger_test() {
    let (train, holdout) = split();
    let poisoned = BadNets::digits(0.01).poison(&train, 9).unwrap().dataset;
    let test = TriggerTest::new(
        TriggerSuite::from_badnets(vec![BadNets::digits(0.0)]),
        DEFAULT_MAX_ASR,
    );
    for (ds, want) in [(&poisoned, Verdict::Fail), (&train, Verdict::Pass)] {
        let model = fit(ds);
        let onnx = OnnxPredictor::from_bytes(
            &onnx_export::softmax_regression_onnx(&model, None, true),
            "m",
        )
        .unwrap();
        let (via_onnx, _) = test.evaluate(&onnx, &holdout, 1).unwrap();
        let (in_process, _) = test
            .evaluate(&ClassifierPredictor { model: &model }, &holdout, 1)
            .unwrap();
        assert_eq!(via_onnx.report.verdict, want);
        assert_eq!(
            via_onnx.report.metrics["max_asr"],
            in_process.report.metrics["max_asr"]
        );
    }
}

#[test]
fn bad_models_and_inputs_are_clear_errors() {
    let e = OnnxPredictor::from_bytes(b"not a model", "junk.onnx").unwrap_err();
    assert!(e.to_string().contains("junk.onnx"), "{e}");
    let e = OnnxPredictor::load("/nonexistent/model.onnx").unwrap_err();
    assert!(e.to_string().contains("/nonexistent/model.onnx"), "{e}");
    let (train, _) = split();
    let onnx = OnnxPredictor::from_bytes(
        &onnx_export::softmax_regression_onnx(&fit(&train), None, true),
        "m.onnx",
    )
    .unwrap();
    let e = onnx.predict(&[Input::Features(vec![0.0; 3])]).unwrap_err();
    assert!(e.to_string().contains("input 0 has 3 values"), "{e}");
    let e = onnx.predict(&[Input::Text("hello".into())]).unwrap_err();
    assert!(e.to_string().contains("not a feature vector"), "{e}");
    assert!(onnx.predict(&[]).unwrap().is_empty());
}
