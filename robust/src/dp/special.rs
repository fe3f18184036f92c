//! Special functions the accountants need: the normal CDF and its logarithm
//! deep into the tails, log-gamma, log-space addition.
//!
//! Accuracy matters here more than speed: an accountant that rounds a tail
//! probability to zero under-reports epsilon. `log_ndtr` therefore switches to
//! the asymptotic series far in the lower tail (where `erfc` underflows), as
//! scipy's `log_ndtr` does, so RDP orders and PLD grids agree with the reference.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

/// `log(exp(a) + exp(b))`, exact when one side is `-inf`.
pub(crate) fn log_add(a: f64, b: f64) -> f64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    (lo - hi).exp().ln_1p() + hi
}

/// `log(exp(a) - exp(b))` for `a > b` (`-inf` when equal).
pub(crate) fn log_sub(a: f64, b: f64) -> f64 {
    if b >= a {
        return f64::NEG_INFINITY;
    }
    a + (-(b - a).exp()).ln_1p()
}

/// `log |Gamma(x)|`.
pub(crate) fn lgamma(x: f64) -> f64 {
    libm::lgamma_r(x).0
}

/// Log of the (generalised) binomial coefficient, `log |n choose k|`, through
/// log-gamma so fractional `n` works.
pub(crate) fn log_comb(n: f64, k: f64) -> f64 {
    lgamma(n + 1.0) - lgamma(k + 1.0) - lgamma(n - k + 1.0)
}

/// Standard normal CDF, accurate in relative terms in the lower tail.
pub(crate) fn ndtr(a: f64) -> f64 {
    if a.is_nan() {
        return f64::NAN;
    }
    let x = a * FRAC_1_SQRT_2;
    let z = x.abs();
    if z < FRAC_1_SQRT_2 {
        0.5 + 0.5 * libm::erf(x)
    } else {
        let y = 0.5 * libm::erfc(z);
        if x > 0.0 {
            1.0 - y
        } else {
            y
        }
    }
}

/// Logarithm of the standard normal CDF, accurate for any finite argument.
pub(crate) fn log_ndtr(a: f64) -> f64 {
    if a.is_nan() {
        return f64::NAN;
    }
    if a == f64::INFINITY {
        return 0.0;
    }
    if a == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    if a > 6.0 {
        // log(1 - t) ~ -t for the tiny upper tail t.
        return -ndtr(-a);
    }
    if a > -20.0 {
        return ndtr(a).ln();
    }
    // Asymptotic series: Phi(a) ~ phi(a)/|a| * sum_k (-1)^k (2k-1)!! / a^{2k}.
    let log_lhs = -0.5 * a * a - (-a).ln() - 0.5 * (2.0 * PI).ln();
    let denom_cons = 1.0 / (a * a);
    let (mut last, mut rhs, mut numerator, mut denom, mut sign) =
        (0.0f64, 1.0f64, 1.0f64, 1.0f64, 1.0f64);
    let mut i = 0u32;
    while (last - rhs).abs() > f64::EPSILON && i < 200 {
        i += 1;
        last = rhs;
        sign = -sign;
        denom *= denom_cons;
        numerator *= f64::from(2 * i - 1);
        rhs += sign * numerator * denom;
    }
    log_lhs + rhs.ln()
}

/// `log(erfc(x))`, accurate for large `x`.
pub(crate) fn log_erfc(x: f64) -> f64 {
    std::f64::consts::LN_2 + log_ndtr(-x * std::f64::consts::SQRT_2)
}

/// Inverse of the standard normal CDF for `p` in (0, 1), by Newton steps on
/// `log_ndtr` (so it stays accurate for `p` as small as `1e-300`).
pub(crate) fn ndtri(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return if p <= 0.0 {
            f64::NEG_INFINITY
        } else if p >= 1.0 {
            f64::INFINITY
        } else {
            f64::NAN
        };
    }
    if p > 0.5 {
        return -ndtri(1.0 - p);
    }
    let lp = p.ln();
    // Start from the tail asymptote, then Newton on g(x) = log Phi(x) - log p,
    // g'(x) = phi(x) / Phi(x).
    let mut x = if p > 0.3 {
        (p - 0.5) * (2.0 * PI).sqrt()
    } else {
        -(-2.0 * lp).sqrt() + 0.5
    };
    for _ in 0..100 {
        let lphi = log_ndtr(x);
        let log_pdf = -0.5 * x * x - 0.5 * (2.0 * PI).ln();
        let slope = (log_pdf - lphi).exp();
        let step = (lphi - lp) / slope;
        x -= step;
        if step.abs() <= 1e-15 * (1.0 + x.abs()) {
            break;
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndtr_matches_known_values() {
        assert!((ndtr(0.0) - 0.5).abs() < 1e-16);
        assert!((ndtr(1.0) - 0.841_344_746_068_542_9).abs() < 1e-15);
        assert!((ndtr(-3.0) - 0.001_349_898_031_630_093_3).abs() < 1e-18);
        // log Phi(-30) from the asymptotic series vs. the closed form value.
        assert!(
            (log_ndtr(-30.0) - (-454.321_243_956_343_27)).abs() < 1e-9,
            "{}",
            log_ndtr(-30.0)
        );
        assert!((log_ndtr(-19.9) - ndtr(-19.9).ln()).abs() < 1e-12);
        assert!((log_ndtr(-20.1) - ndtr(-20.1).ln()).abs() < 1e-10);
    }

    #[test]
    fn ndtri_inverts_ndtr() {
        for &p in &[1e-300, 1e-50, 1e-10, 0.01, 0.3, 0.5, 0.9, 0.999] {
            let x = ndtri(p);
            let back = log_ndtr(x);
            assert!(
                (back - p.ln()).abs() < 1e-10 * (1.0 + p.ln().abs()),
                "p={p} x={x} back={back}"
            );
        }
    }

    #[test]
    fn log_space_helpers() {
        assert!((log_add(0.0, 0.0) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(log_add(f64::NEG_INFINITY, 1.5), 1.5);
        assert!((log_sub(2f64.ln(), 0.0)).abs() < 1e-15);
        assert!((log_comb(10.0, 3.0) - 120f64.ln()).abs() < 1e-12);
    }
}
