//! The accountants against Google's dp-accounting on the committed table
//! (`tests/fixtures/dp_reference.json`, produced by `dp_reference.py` there).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use mithridate_robust::dp::{epsilon_pld, epsilon_rdp, PldAccountant, RdpAccountant};
use serde_json::Value;

fn cases() -> Vec<Value> {
    let text = include_str!("fixtures/dp_reference.json");
    let doc: Value = serde_json::from_str(text).expect("fixture parses");
    doc["cases"].as_array().expect("cases").clone()
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("field {k}"))
}

#[test]
fn rdp_matches_reference_to_1e6_relative() {
    let cases = cases();
    assert_eq!(cases.len(), 8);
    for c in &cases {
        let (q, s, t, d) = (
            f(c, "q"),
            f(c, "sigma"),
            f(c, "steps") as u64,
            f(c, "delta"),
        );
        let (eps, order) = epsilon_rdp(q, s, t, d);
        let want = f(c, "rdp_epsilon");
        let rel = (eps - want).abs() / want;
        assert!(
            rel < 1e-6,
            "q={q} sigma={s} T={t}: eps {eps} vs reference {want} (rel {rel:e})"
        );
        assert_eq!(
            order,
            f(c, "rdp_order"),
            "optimal order for q={q} sigma={s} T={t}"
        );
    }
}

#[test]
fn pld_matches_reference_within_one_percent_and_never_under_reports() {
    for c in cases().iter().filter(|c| f(c, "steps") <= 5000.0) {
        let (q, s, t, d) = (
            f(c, "q"),
            f(c, "sigma"),
            f(c, "steps") as u64,
            f(c, "delta"),
        );
        let eps = epsilon_pld(q, s, t, d);
        let want = f(c, "pld_epsilon");
        let rel = (eps - want) / want;
        assert!(
            rel.abs() < 0.01,
            "q={q} sigma={s} T={t}: eps {eps} vs reference {want}"
        );
        // Both are pessimistic on the same 1e-4 grid: ours may differ from the
        // reference only by floating-point noise below one grid step.
        assert!(eps >= want - 1e-4, "under-reports: {eps} < {want}");
    }
}

#[test]
fn heterogeneous_composition_is_the_sum_of_its_parts() {
    // Two halves with the same parameters compose to the whole.
    let mut rdp = RdpAccountant::new();
    rdp.compose_poisson_gaussian(0.01, 1.0, 500).unwrap();
    rdp.compose_poisson_gaussian(0.01, 1.0, 500).unwrap();
    let (e, _) = rdp.epsilon(1e-5).unwrap();
    assert!((e - epsilon_rdp(0.01, 1.0, 1000, 1e-5).0).abs() < 1e-12);

    let mut pld = PldAccountant::new();
    pld.compose_poisson_gaussian(0.01, 1.0, 500).unwrap();
    pld.compose_poisson_gaussian(0.01, 1.0, 500).unwrap();
    let e = pld.epsilon(1e-5).unwrap();
    let whole = epsilon_pld(0.01, 1.0, 1000, 1e-5);
    assert!((e - whole).abs() < 2e-3 * whole, "{e} vs {whole}");

    // Mixed steps sit between the two homogeneous runs.
    let mut mixed = PldAccountant::new();
    mixed.compose_poisson_gaussian(0.01, 1.0, 500).unwrap();
    mixed.compose_poisson_gaussian(0.01, 2.0, 500).unwrap();
    let m = mixed.epsilon(1e-5).unwrap();
    assert!(m < whole && m > epsilon_pld(0.01, 2.0, 1000, 1e-5));
    let delta = mixed.delta(m).unwrap();
    assert!(delta <= 1e-5 * 1.0001, "delta at its own epsilon: {delta}");
}
