//! The aggregation rules against Flower's outputs on fixed inputs.
//!
//! The fixture `fixtures/flower_aggregate.json` was produced by
//! `fixtures/flower_aggregate.py` with the Flower and NumPy versions it
//! records; every case must agree to 1e-6 (relative to the value's size
//! when it is above 1).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use mithridate_robust::aggregate::{aggregate, Method};
use ndarray::Array2;
use serde_json::Value;

fn fixture() -> Value {
    let text = include_str!("fixtures/flower_aggregate.json");
    serde_json::from_str(text).expect("fixture is JSON")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn method(case: &Value) -> Method {
    let p = &case["params"];
    let u = |k: &str| p[k].as_u64().expect("integer parameter") as usize;
    match case["method"].as_str().expect("method") {
        "fedavg" => Method::FedAvg,
        "median" => Method::Median,
        "trimmed-mean" => Method::TrimmedMean {
            beta: p["beta"].as_f64().expect("beta"),
        },
        "krum" => Method::Krum {
            byzantine: u("byzantine"),
        },
        "multi-krum" => Method::MultiKrum {
            byzantine: u("byzantine"),
            keep: u("keep"),
        },
        "bulyan" => Method::Bulyan {
            byzantine: u("byzantine"),
        },
        m => panic!("unknown method {m}"),
    }
}

#[test]
fn every_rule_matches_flower_to_1e6() {
    let fx = fixture();
    let cases = fx["cases"].as_array().expect("cases");
    assert!(cases.len() > 100, "fixture has {} cases", cases.len());
    let mut seen = std::collections::BTreeSet::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let input = &fx["inputs"][case["input"].as_str().expect("input")];
        let rows: Vec<Vec<f32>> = input["updates"]
            .as_array()
            .expect("updates")
            .iter()
            .map(floats)
            .collect();
        let (n, d) = (rows.len(), rows[0].len());
        let x = Array2::from_shape_vec((n, d), rows.concat()).expect("rectangular");
        let w = floats(&input["weights"]);
        let m = method(case);
        seen.insert(m.name());
        let got = aggregate(&m, x.view(), Some(&w)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = floats(&case["expected"]);
        assert_eq!(got.params.len(), want.len(), "{name}");
        for (j, (a, b)) in got.params.iter().zip(&want).enumerate() {
            let tol = 1e-6 * b.abs().max(1.0);
            assert!(
                (a - b).abs() <= tol,
                "{name}: parameter {j}: ours {a}, Flower {b}"
            );
        }
        if let Method::Krum { .. } = m {
            let sel = got.selected.expect("krum selects");
            assert_eq!(sel.len(), 1);
            assert_eq!(
                x.row(sel[0]).to_vec(),
                want,
                "{name}: Krum returns the chosen client's update unchanged"
            );
        }
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
}

#[test]
fn ties_follow_flower() {
    let fx = fixture();
    let case = fx["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == "krum-duplicates")
        .expect("case");
    let input = &fx["inputs"][case["input"].as_str().expect("input")];
    let rows: Vec<Vec<f32>> = input["updates"]
        .as_array()
        .expect("updates")
        .iter()
        .map(floats)
        .collect();
    let x =
        Array2::from_shape_vec((rows.len(), rows[0].len()), rows.concat()).expect("rectangular");
    // Rows 0 and 1 are equal and share the best score: the first one wins.
    let got = aggregate(&Method::Krum { byzantine: 0 }, x.view(), None).expect("krum");
    assert_eq!(got.selected, Some(vec![0]));
}
