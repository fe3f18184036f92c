//! Property tests of the accountants: epsilon grows with the number of steps
//! and the sampling rate, falls with the noise multiplier; calibration meets
//! its target; PLD is never looser than RDP by more than its grid.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use mithridate_robust::dp::{
    calibrate_sigma, epsilon_pld, epsilon_rdp, try_epsilon_pld, AccountantKind,
};
use proptest::prelude::*;

fn q() -> impl Strategy<Value = f64> {
    1e-3f64..0.5
}
fn sigma() -> impl Strategy<Value = f64> {
    0.6f64..5.0
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn rdp_epsilon_is_monotone(q in q(), s in sigma(), t in 1u64..5000, dt in 1u64..2000, f in 1.05f64..2.0, g in 1.05f64..2.0) {
        let d = 1e-5;
        let base = epsilon_rdp(q, s, t, d).0;
        prop_assert!(base.is_finite() && base >= 0.0);
        prop_assert!(epsilon_rdp(q, s, t + dt, d).0 >= base);
        prop_assert!(epsilon_rdp((q * f).min(1.0), s, t, d).0 >= base);
        prop_assert!(epsilon_rdp(q, s * g, t, d).0 <= base);
    }

    #[test]
    fn pld_epsilon_is_monotone(q in 0.005f64..0.2, s in 0.8f64..3.0, t in 1u64..300, dt in 1u64..300, f in 1.2f64..2.0, g in 1.2f64..2.0) {
        // A coarser grid keeps the property test fast; the slack is one grid step.
        let d = 1e-5;
        let grid = 2e-3;
        let e = |q: f64, s: f64, t: u64| try_epsilon_pld(q, s, t, d, grid).unwrap();
        let base = e(q, s, t);
        // Pessimistic discretisation may overshoot the exact curve a little.
        let tol = grid + 0.01 * base;
        prop_assert!(e(q, s, t + dt) >= base - tol);
        prop_assert!(e((q * f).min(1.0), s, t) >= base - tol);
        prop_assert!(e(q, s * g, t) <= base + tol);
        // PLD is the tighter accountant.
        prop_assert!(base <= epsilon_rdp(q, s, t, d).0 + tol);
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn calibration_meets_target(q in 0.001f64..0.2, t in 10u64..5000, eps in 0.5f64..10.0) {
        let s = calibrate_sigma(eps, q, t, 1e-5, AccountantKind::Rdp).unwrap();
        let reached = epsilon_rdp(q, s, t, 1e-5).0;
        prop_assert!(reached <= eps);
        // ...and is not wastefully large: 0.1% less noise would overspend.
        prop_assert!(epsilon_rdp(q, s * 0.999, t, 1e-5).0 > eps * 0.999);
    }

    #[test]
    fn garbage_never_panics(q in proptest::num::f64::ANY, s in proptest::num::f64::ANY, t in any::<u64>().prop_map(|t| t % 100_000), d in proptest::num::f64::ANY) {
        let (e, _) = epsilon_rdp(q, s, t, d);
        prop_assert!(!e.is_nan() && e >= 0.0);
        let valid = (0.0..=1.0).contains(&q) && s >= 0.0 && s.is_finite() && d > 0.0 && d < 1.0;
        if !valid {
            prop_assert!(e.is_infinite());
        }
    }
}

#[test]
fn pld_calibration_meets_target() {
    let s = calibrate_sigma(2.0, 0.01, 1000, 1e-5, AccountantKind::Pld).unwrap();
    let e = epsilon_pld(0.01, s, 1000, 1e-5);
    assert!(e <= 2.0 && e > 1.99, "sigma {s} eps {e}");
    // PLD needs less noise than RDP for the same budget.
    assert!(s < calibrate_sigma(2.0, 0.01, 1000, 1e-5, AccountantKind::Rdp).unwrap());
}
