//! `TrainDefense` end to end in a pipeline context: DP-SGD on digits with a
//! holdout, the budget in the report and the artifacts, the MLP's embedding.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use mithridate_core::datasets::digits;
use mithridate_core::{Context, Defense, Layer, Stage, Verdict};
use mithridate_robust::{ModelKind, TrainConfig, TrainDefense};

fn split() -> (mithridate_core::Dataset, mithridate_core::Dataset) {
    let ds = digits();
    let (tr, te): (Vec<usize>, Vec<usize>) = (0..ds.len()).partition(|i| i % 5 != 0);
    (
        ds.select(&tr).expect("train split"),
        ds.select(&te).expect("holdout split"),
    )
}

#[test]
fn dp_softmax_in_a_pipeline() {
    let (train, holdout) = split();
    let d = TrainDefense::new(TrainConfig::dp(3.0, 1e-5));
    assert_eq!((d.layer(), d.stage()), (Layer::Robust, Stage::Train));
    let mut cx = Context::new(11).with_dataset(train).with_holdout(holdout);
    let r = cx.run(&d).unwrap();
    assert_eq!(r.verdict, Verdict::Pass);
    let eps = r.metrics["epsilon"];
    assert!(eps <= 3.0 && eps > 2.95, "{eps}");
    assert_eq!(r.metrics["delta"], 1e-5);
    assert!(r.metrics["holdout_accuracy"] > 0.88, "{:?}", r.metrics);
    assert_eq!(cx.artifacts["epsilon"].as_f64(), Some(eps));
    assert_eq!(
        cx.artifacts["dp"]["steps"].as_f64(),
        Some(r.metrics["steps"])
    );
    assert!(cx.model.is_some());
}

#[test]
fn dp_mlp_embeds_hidden_activations() {
    let (train, holdout) = split();
    let mut cfg = TrainConfig::dp(8.0, 1e-5);
    cfg.model = ModelKind::Mlp;
    cfg.hidden = 16;
    cfg.epochs = 10;
    let mut cx = Context::new(3)
        .with_dataset(train)
        .with_holdout(holdout.clone());
    let r = cx.run(&TrainDefense::new(cfg)).unwrap();
    assert!(r.metrics["holdout_accuracy"] > 0.8, "{:?}", r.metrics);
    let model = cx.model.as_ref().unwrap();
    let x = holdout.features.as_ref().unwrap();
    assert_eq!(model.embed(x.view()).ncols(), 16);
    let g = model.input_gradient(x.view(), &vec![0; x.nrows()]).unwrap();
    assert_eq!(g.dim(), x.dim());
}

#[test]
fn a_fixed_noise_too_small_for_the_budget_stops_early_with_a_warning() {
    let (train, _) = split();
    let mut cfg = TrainConfig::dp(2.0, 1e-5);
    if let Some(dp) = cfg.dp.as_mut() {
        dp.noise_multiplier = Some(1.0);
    }
    cfg.batch_size = 64;
    let mut cx = Context::new(5).with_dataset(train);
    let r = cx.run(&TrainDefense::new(cfg)).unwrap();
    assert_eq!(r.verdict, Verdict::Warn);
    assert!(r.metrics["epsilon"] <= 2.0);
    assert_eq!(r.findings.len(), 1);
}
