//! Property tests of the aggregation rules.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use mithridate_robust::aggregate::{aggregate, Method};
use ndarray::Array2;
use proptest::prelude::*;

/// `n` clients x `d` parameters: the first `honest` rows honest values in
/// [-10, 10], the rest Byzantine values anywhere in +-1e6.
fn updates() -> impl Strategy<Value = (Array2<f32>, usize)> {
    (3usize..14, 1usize..6).prop_flat_map(|(n, d)| {
        let honest = (n / 2 + 1)..=n;
        (
            honest,
            proptest::collection::vec(-10.0f32..10.0, n * d),
            proptest::collection::vec(-1e6f32..1e6, n * d),
        )
            .prop_map(move |(h, a, b)| {
                let mut x = Array2::from_shape_vec((n, d), a).expect("shape");
                for i in h..n {
                    for j in 0..d {
                        x[[i, j]] = b[i * d + j];
                    }
                }
                (x, h)
            })
    })
}

fn honest_range(x: &Array2<f32>, honest: usize, j: usize) -> (f32, f32) {
    let col = x.column(j);
    let it = col.iter().take(honest);
    (
        it.clone().copied().fold(f32::INFINITY, f32::min),
        it.copied().fold(f32::NEG_INFINITY, f32::max),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn median_is_permutation_invariant_and_in_honest_range((x, honest) in updates(), seed in any::<u64>()) {
        let a = aggregate(&Method::Median, x.view(), None).expect("median");
        let n = x.nrows();
        let mut perm: Vec<usize> = (0..n).collect();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            perm.swap(i, (s >> 33) as usize % (i + 1));
        }
        let y = x.select(ndarray::Axis(0), &perm);
        let b = aggregate(&Method::Median, y.view(), None).expect("median");
        prop_assert_eq!(&a.params, &b.params);
        // Byzantine clients are a strict minority: every coordinate stays within the honest values.
        for j in 0..x.ncols() {
            let (lo, hi) = honest_range(&x, honest, j);
            prop_assert!(a.params[j] >= lo && a.params[j] <= hi, "coordinate {j}: {} not in [{lo}, {hi}]", a.params[j]);
        }
    }

    #[test]
    fn trimmed_mean_is_permutation_invariant_and_in_honest_range((x, honest) in updates(), beta in 0.0f64..0.49) {
        let n = x.nrows();
        let cut = (beta * n as f64) as usize;
        prop_assume!(2 * cut < n);
        let m = Method::TrimmedMean { beta };
        let a = aggregate(&m, x.view(), None).expect("trimmed mean");
        let rev: Vec<usize> = (0..n).rev().collect();
        let b = aggregate(&m, x.select(ndarray::Axis(0), &rev).view(), None).expect("trimmed mean");
        for (p, q) in a.params.iter().zip(&b.params) {
            prop_assert!((p - q).abs() <= 1e-6 * p.abs().max(1.0), "{p} vs {q}");
        }
        // With no more Byzantine clients than the cut, each coordinate is an
        // average of values between honest ones.
        if n - honest <= cut {
            for j in 0..x.ncols() {
                let (lo, hi) = honest_range(&x, honest, j);
                let tol = 1e-5 * lo.abs().max(hi.abs()).max(1.0);
                prop_assert!(a.params[j] >= lo - tol && a.params[j] <= hi + tol, "coordinate {j}: {} not in [{lo}, {hi}]", a.params[j]);
            }
        }
    }

    #[test]
    fn krum_selects_an_input_row_and_bulyan_needs_4f_plus_3((x, _) in updates(), f in 0usize..4) {
        let n = x.nrows();
        match aggregate(&Method::Krum { byzantine: f }, x.view(), None) {
            Ok(a) => {
                prop_assert!(n >= 2 * f + 3);
                let i = a.selected.expect("selected")[0];
                prop_assert_eq!(x.row(i).to_owned(), a.params);
            }
            Err(e) => prop_assert!(n < 2 * f + 3 && e.to_string().contains("2f + 3")),
        }
        let b = aggregate(&Method::Bulyan { byzantine: f }, x.view(), None);
        prop_assert_eq!(b.is_ok(), n >= 4 * f + 3);
        if let Ok(b) = b {
            prop_assert_eq!(b.selected.expect("selected").len(), n - 2 * f);
        }
    }

    #[test]
    fn bad_input_is_an_error_never_a_panic(n in 0usize..5, d in 0usize..4, bad in 0usize..20, keep in 0usize..6) {
        let mut x = Array2::<f32>::ones((n, d));
        if n * d > 0 {
            let k = bad % (n * d);
            x[[k / d, k % d]] = f32::NAN;
        }
        for m in [Method::FedAvg, Method::Median, Method::TrimmedMean { beta: 0.2 }, Method::Krum { byzantine: 1 },
                  Method::MultiKrum { byzantine: 0, keep }, Method::Bulyan { byzantine: 0 }, Method::geometric_median(),
                  Method::centered_clipping()] {
            let r = aggregate(&m, x.view(), Some(&vec![1.0; n]));
            if n * d > 0 {
                let e = r.expect_err("NaN is rejected").to_string();
                prop_assert!(e.contains("client") && e.contains("non-finite"), "{e}");
            }
        }
    }
}

#[test]
fn errors_name_the_client_and_the_limit() {
    let mut x = Array2::<f32>::zeros((5, 3));
    x[[3, 1]] = f32::INFINITY;
    let e = aggregate(&Method::Median, x.view(), None)
        .expect_err("inf")
        .to_string();
    assert!(e.contains("client 3") && e.contains("parameter 1"), "{e}");
    let x = Array2::<f32>::zeros((6, 3));
    let e = aggregate(&Method::Bulyan { byzantine: 1 }, x.view(), None)
        .expect_err("too few")
        .to_string();
    assert!(e.contains("4f + 3") && e.contains("6 clients"), "{e}");
    let e = aggregate(&Method::FedAvg, x.view(), Some(&[1.0; 5]))
        .expect_err("weights")
        .to_string();
    assert!(e.contains("5 weights for 6 clients"), "{e}");
}

#[test]
fn robust_rules_resist_one_huge_client_while_fedavg_does_not() {
    let mut x = Array2::<f32>::from_shape_fn((11, 4), |(i, j)| (i as f32 * 0.01) + j as f32);
    x.row_mut(10).fill(1e6);
    let truth = [0.05f32, 1.05, 2.05, 3.05];
    let close = |m: Method| {
        let a = aggregate(&m, x.view(), None).expect("aggregate");
        a.params.iter().zip(truth).all(|(p, t)| (p - t).abs() < 0.1)
    };
    assert!(!close(Method::FedAvg));
    assert!(close(Method::Median));
    assert!(close(Method::TrimmedMean { beta: 0.1 }));
    assert!(close(Method::Krum { byzantine: 1 }));
    assert!(close(Method::MultiKrum {
        byzantine: 1,
        keep: 9
    }));
    assert!(close(Method::Bulyan { byzantine: 1 }));
    assert!(close(Method::geometric_median()));
    assert!(close(Method::centered_clipping()));
}
