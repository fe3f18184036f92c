//! A release gate on digits, as a CI job would run it: train a model on
//! BadNets-poisoned data, run the holdout gate and the known-trigger test
//! through a pipeline `Context`, and write JUnit XML.
//!
//! `cargo run -p mithridate-validation --example release_gate [-- OUT.xml]`

use std::sync::Arc;

use mithridate_core::attack::{shuffled, Attack, BadNets};
use mithridate_core::datasets::digits;
use mithridate_core::model::{SoftmaxParams, SoftmaxRegression};
use mithridate_core::{Context, Verdict};
use mithridate_validation::junit::{checks_artifact_key, Check};
use mithridate_validation::{
    junit_xml, HoldoutGate, Outcome, TriggerSuite, TriggerTest, DEFAULT_MAX_ASR,
};

fn main() -> Result<(), mithridate_core::Error> {
    let all = digits();
    let order = shuffled(all.len(), 7);
    let cut = all.len() * 3 / 4;
    let train = all.select(&order[..cut])?;
    let holdout = all.select(&order[cut..])?;
    let poisoned = BadNets::digits(0.01).poison(&train, 7)?.dataset;
    let x = poisoned.require_features("train")?;
    let model = SoftmaxRegression::fit(
        x.view(),
        poisoned.require_labels("train")?,
        10,
        &SoftmaxParams::default(),
        7,
    )?;

    let mut cx = Context::new(7).with_dataset(poisoned).with_holdout(holdout);
    cx.model = Some(Arc::new(model));
    let gate = HoldoutGate::new(0.9);
    let triggers = TriggerTest::new(
        TriggerSuite::from_badnets(vec![BadNets::digits(0.01)]),
        DEFAULT_MAX_ASR,
    );
    let mut outcomes = Vec::new();
    for d in [&gate as &dyn mithridate_core::Defense, &triggers] {
        let report = cx.run(d)?;
        println!(
            "{:<24} {}  {}",
            report.defense, report.verdict, report.summary
        );
        let checks: Vec<Check> = cx
            .artifacts
            .get(&checks_artifact_key(&report.defense))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        outcomes.push(Outcome { report, checks });
    }
    let xml = junit_xml(&outcomes);
    if let Some(path) = std::env::args().nth(1) {
        mithridate_core::io::atomic::write_bytes_atomic(
            std::path::Path::new(&path),
            xml.as_bytes(),
        )?;
        println!("JUnit written to {path}");
    }
    let failed = outcomes.iter().any(|o| o.report.verdict == Verdict::Fail);
    println!(
        "release gate: {}",
        if failed {
            "FAILED (the backdoor was caught)"
        } else {
            "passed"
        }
    );
    Ok(())
}
