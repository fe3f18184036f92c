//! Rényi-DP accountant for the Poisson-subsampled Gaussian mechanism.
//!
//! The RDP of one step at order `alpha` is `log(A_alpha) / (alpha - 1)` with
//! `A_alpha` computed as in Mironov, Talwar and Zhang (2019), "Rényi
//! Differential Privacy of the Sampled Gaussian Mechanism": a finite binomial
//! sum for integer orders and the two-sided erfc series (Sec. 3.3) for
//! fractional ones, both summed in log space so that large orders do not
//! overflow. Steps compose by adding RDP order-wise; the conversion to
//! `(epsilon, delta)` uses the improved bound of Balle et al. (2020,
//! Proposition 12), `eps = rdp + log1p(-1/a) - log(delta * a) / (a - 1)`,
//! minimised over the order grid.
//!
//! The order grid, the series' stopping rule (including giving up on an order
//! after 1000 terms) and the conversion follow Google's dp-accounting so the
//! two agree to floating-point precision; `tests/dp_reference.rs` checks this.

use mithridate_core::{Error, Result};

use super::special::{log_add, log_comb, log_erfc};

/// The default RDP orders: `1.1, 1.2, ..., 10.9`, `11..=63`, `128, 256, 512, 1024`.
pub fn default_orders() -> Vec<f64> {
    let mut v: Vec<f64> = (1..100).map(|x| 1.0 + f64::from(x) / 10.0).collect();
    v.extend((11..64).map(f64::from));
    v.extend([128.0, 256.0, 512.0, 1024.0]);
    v
}

/// Terms of the fractional-order series before an order is given up on (and
/// its RDP taken as infinite, which excludes it from the minimum).
const MAX_STEPS_LOG_A_FRAC: usize = 1000;

fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let mut log_a = f64::NEG_INFINITY;
    let log1mq = (-q).ln_1p();
    let logq = q.ln();
    let a = alpha as f64;
    let two_s2 = 2.0 * sigma * sigma;
    for i in 0..=alpha {
        let fi = i as f64;
        let log_coef = log_comb(a, fi) + fi * logq + (a - fi) * log1mq;
        let s = log_coef + (fi * fi - fi) / two_s2;
        log_a = log_add(log_a, s);
    }
    log_a
}

fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let log1mq = (-q).ln_1p();
    let logq = q.ln();
    let two_s2 = 2.0 * sigma * sigma;
    let sqrt2s = std::f64::consts::SQRT_2 * sigma;
    let (mut last_s0, mut last_s1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for i in 0..MAX_STEPS_LOG_A_FRAC {
        let fi = i as f64;
        let log_coef = log_comb(alpha, fi);
        let j = alpha - fi;
        let log_t0 = log_coef + fi * logq + j * log1mq;
        let log_t1 = log_coef + j * logq + fi * log1mq;
        let log_e0 = 0.5f64.ln() + log_erfc((fi - z0) / sqrt2s);
        let log_e1 = 0.5f64.ln() + log_erfc((z0 - j) / sqrt2s);
        let log_s0 = log_t0 + (fi * fi - fi) / two_s2 + log_e0;
        let log_s1 = log_t1 + (j * j - j) / two_s2 + log_e1;
        log_a0 = log_add(log_a0, log_s0);
        log_a1 = log_add(log_a1, log_s1);
        let total = log_add(log_a0, log_a1);
        if log_s0 < last_s0 && log_s1 < last_s1 && log_s0.max(log_s1) < total - 30.0 {
            return total;
        }
        last_s0 = log_s0;
        last_s1 = log_s1;
    }
    f64::INFINITY
}

/// RDP of one step of the Poisson-subsampled Gaussian mechanism at `alpha`.
///
/// `q` in `[0, 1]`, `sigma >= 0`, `alpha > 1`; `q = 0` is free, `sigma = 0` is
/// not private at all (infinite RDP).
pub fn rdp_poisson_gaussian(q: f64, sigma: f64, alpha: f64) -> f64 {
    if q == 0.0 {
        return 0.0;
    }
    if alpha.is_infinite() || sigma == 0.0 {
        return f64::INFINITY;
    }
    if q == 1.0 {
        return alpha / (2.0 * sigma * sigma);
    }
    let log_a = if alpha.fract() == 0.0 && alpha < 1e15 {
        log_a_int(q, sigma, alpha as u64)
    } else {
        log_a_frac(q, sigma, alpha)
    };
    log_a / (alpha - 1.0)
}

/// Best `(epsilon, order)` for `delta` from RDP values at `orders`.
///
/// Orders whose RDP is negative (numerical trouble) give epsilon 0 as in the
/// reference; where `delta^2 >= 1 - exp(-rdp)` the KL bound already gives 0.
pub fn epsilon_from_rdp(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    if delta == 0.0 {
        return if rdp.iter().all(|&r| r == 0.0) {
            (0.0, 0.0)
        } else {
            (f64::INFINITY, 0.0)
        };
    }
    let mut best = (f64::INFINITY, orders.first().copied().unwrap_or(f64::NAN));
    let mut first = true;
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = if r < 0.0 || delta * delta + (-r).exp_m1() > 0.0 {
            0.0
        } else if a > 1.01 {
            r + (-1.0 / a).ln_1p() - (delta * a).ln() / (a - 1.0)
        } else {
            f64::INFINITY
        };
        // First strict minimum wins, as with numpy's argmin; NaN never wins.
        if first || eps < best.0 {
            best = (if eps.is_nan() { f64::INFINITY } else { eps }, a);
            first = false;
        }
    }
    (best.0.max(0.0), best.1)
}

/// Check `(q, sigma)` of a Poisson-subsampled Gaussian step.
pub(crate) fn check_mechanism(q: f64, sigma: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&q) {
        return Err(Error::param(
            "sampling_rate",
            format!("must be in [0, 1], got {q}"),
        ));
    }
    if !(sigma.is_finite() && sigma >= 0.0) {
        return Err(Error::param(
            "noise_multiplier",
            format!("must be a finite number >= 0, got {sigma}"),
        ));
    }
    Ok(())
}

/// Check a target `delta`.
pub(crate) fn check_delta(delta: f64) -> Result<()> {
    if !(0.0..1.0).contains(&delta) {
        return Err(Error::param(
            "delta",
            format!("must be in [0, 1), got {delta}"),
        ));
    }
    Ok(())
}

/// An RDP accountant: per-order RDP of everything composed so far.
///
/// Steps of different `(q, sigma)` compose by adding their RDP vectors, so a
/// training run whose batch size or noise changes is accounted exactly as the
/// sum of its parts.
#[derive(Debug, Clone, PartialEq)]
pub struct RdpAccountant {
    orders: Vec<f64>,
    rdp: Vec<f64>,
}

impl Default for RdpAccountant {
    fn default() -> Self {
        Self::new()
    }
}

impl RdpAccountant {
    /// An empty accountant on the default order grid.
    pub fn new() -> Self {
        Self::with_orders(default_orders())
    }

    /// An empty accountant on `orders` (each must be `> 1`; others are dropped).
    pub fn with_orders(orders: Vec<f64>) -> Self {
        let orders: Vec<f64> = orders.into_iter().filter(|a| *a > 1.0).collect();
        let rdp = vec![0.0; orders.len()];
        Self { orders, rdp }
    }

    /// The RDP vector of one step of `(q, sigma)` on this accountant's orders.
    /// Compute it once and pass it to [`RdpAccountant::compose_rdp`] to
    /// account for steps cheaply inside a training loop.
    pub fn step_rdp(&self, q: f64, sigma: f64) -> Result<Vec<f64>> {
        check_mechanism(q, sigma)?;
        Ok(self
            .orders
            .iter()
            .map(|&a| rdp_poisson_gaussian(q, sigma, a))
            .collect())
    }

    /// Compose `count` steps of the Poisson-subsampled Gaussian `(q, sigma)`.
    pub fn compose_poisson_gaussian(&mut self, q: f64, sigma: f64, count: u64) -> Result<()> {
        let step = self.step_rdp(q, sigma)?;
        self.compose_rdp(&step, count);
        Ok(())
    }

    /// Compose `count` steps whose one-step RDP (on this accountant's orders) is `step`.
    pub fn compose_rdp(&mut self, step: &[f64], count: u64) {
        if count == 0 {
            return;
        }
        for (r, s) in self.rdp.iter_mut().zip(step) {
            *r += count as f64 * s;
        }
    }

    /// `(epsilon, optimal order)` of everything composed so far at `delta`.
    pub fn epsilon(&self, delta: f64) -> Result<(f64, f64)> {
        check_delta(delta)?;
        Ok(epsilon_from_rdp(&self.orders, &self.rdp, delta))
    }

    /// The order grid.
    pub fn orders(&self) -> &[f64] {
        &self.orders
    }

    /// The accumulated RDP per order.
    pub fn rdp(&self) -> &[f64] {
        &self.rdp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_matches_reference_layout() {
        let o = default_orders();
        assert_eq!(o.len(), 99 + 53 + 4);
        assert_eq!(o[0], 1.1);
        assert_eq!(o[98], 10.9);
        assert_eq!(o[99], 11.0);
        assert_eq!(*o.last().unwrap_or(&0.0), 1024.0);
    }

    #[test]
    fn full_batch_is_plain_gaussian() {
        assert!((rdp_poisson_gaussian(1.0, 2.0, 3.0) - 3.0 / 8.0).abs() < 1e-15);
        assert_eq!(rdp_poisson_gaussian(0.0, 1.0, 3.0), 0.0);
        assert!(rdp_poisson_gaussian(0.5, 0.0, 3.0).is_infinite());
    }

    #[test]
    fn integer_and_fractional_series_agree_near_integers() {
        // The fractional series at alpha = 3 + tiny must approach the integer sum.
        let a = rdp_poisson_gaussian(0.01, 1.0, 3.0);
        let b = log_a_frac(0.01, 1.0, 3.000_000_1) / 2.000_000_1;
        assert!((a - b).abs() / a < 1e-4, "{a} {b}");
    }
}
