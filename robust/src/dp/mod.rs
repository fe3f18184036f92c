//! Differential-privacy accounting for the Poisson-subsampled Gaussian
//! mechanism (the mechanism of DP-SGD): a Rényi-DP accountant
//! ([`RdpAccountant`]), a privacy-loss-distribution accountant
//! ([`PldAccountant`]) and noise calibration ([`calibrate_sigma`]).
//!
//! RDP is fast and a little loose; PLD is tight (typically 5–15 % smaller
//! epsilons) and costs an FFT. Both are pessimistic: they may over-state
//! epsilon, never under-state it. Both agree with Google's dp-accounting (RDP
//! to 1e-6 relative, PLD within its discretisation), which
//! `tests/dp_reference.rs` checks against a committed table.
//!
//! ```
//! use mithridate_robust::dp::{epsilon_rdp, epsilon_pld, calibrate_sigma, AccountantKind};
//! // MNIST-style DP-SGD: batch 256 of 60000, sigma 1.1, 60 epochs.
//! let (eps, order) = epsilon_rdp(256.0 / 60000.0, 1.1, 14062, 1e-5);
//! assert!((eps - 2.5966).abs() < 1e-3 && order == 8.1);
//! let eps_pld = epsilon_pld(0.01, 1.0, 100, 1e-5);
//! assert!(eps_pld < epsilon_rdp(0.01, 1.0, 100, 1e-5).0);
//! let sigma = calibrate_sigma(3.0, 0.01, 1000, 1e-5, AccountantKind::Rdp)?;
//! assert!(epsilon_rdp(0.01, sigma, 1000, 1e-5).0 <= 3.0);
//! # Ok::<(), mithridate_core::Error>(())
//! ```

pub mod pld;
pub mod rdp;
mod special;

use std::fmt;
use std::str::FromStr;

use mithridate_core::{Error, Result};
use serde::{Deserialize, Serialize};

pub use pld::PldAccountant;
pub use rdp::{default_orders, epsilon_from_rdp, rdp_poisson_gaussian, RdpAccountant};

/// Which accountant to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountantKind {
    /// Rényi DP: fast (microseconds), slightly loose.
    #[default]
    Rdp,
    /// Privacy loss distributions: tight, milliseconds to a second.
    Pld,
}

impl fmt::Display for AccountantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccountantKind::Rdp => "rdp",
            AccountantKind::Pld => "pld",
        })
    }
}

impl FromStr for AccountantKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "rdp" => Ok(AccountantKind::Rdp),
            "pld" => Ok(AccountantKind::Pld),
            other => Err(Error::param(
                "accountant",
                format!("`{other}` is not rdp or pld"),
            )),
        }
    }
}

fn check_steps_delta(delta: f64) -> Result<()> {
    rdp::check_delta(delta)?;
    if delta == 0.0 {
        return Err(Error::param(
            "delta",
            "must be > 0 (no finite epsilon exists for delta = 0)",
        ));
    }
    Ok(())
}

/// `(epsilon, optimal order)` after `steps` steps of the Poisson-subsampled
/// Gaussian with sampling rate `q` and noise multiplier `sigma`, at `delta`,
/// by the RDP accountant; an error for parameters out of range.
pub fn try_epsilon_rdp(q: f64, sigma: f64, steps: u64, delta: f64) -> Result<(f64, f64)> {
    check_steps_delta(delta)?;
    let mut acc = RdpAccountant::new();
    acc.compose_poisson_gaussian(q, sigma, steps)?;
    acc.epsilon(delta)
}

/// `(epsilon, optimal order)` by the RDP accountant (see [`try_epsilon_rdp`]).
///
/// Parameters out of range (`q` outside `[0, 1]`, negative or non-finite
/// `sigma`, `delta` outside `(0, 1)`) give `(inf, NaN)`: an accountant that
/// cannot account must not report a finite budget.
pub fn epsilon_rdp(q: f64, sigma: f64, steps: u64, delta: f64) -> (f64, f64) {
    try_epsilon_rdp(q, sigma, steps, delta).unwrap_or((f64::INFINITY, f64::NAN))
}

/// Epsilon by the PLD accountant with grid width `discretization`; an error
/// for parameters out of range.
pub fn try_epsilon_pld(
    q: f64,
    sigma: f64,
    steps: u64,
    delta: f64,
    discretization: f64,
) -> Result<f64> {
    check_steps_delta(delta)?;
    let mut acc = PldAccountant::with_discretization(discretization)?;
    acc.compose_poisson_gaussian(q, sigma, steps)?;
    acc.epsilon(delta)
}

/// Epsilon after `steps` Poisson-subsampled Gaussian steps at `delta`, by the
/// PLD accountant with the default grid (`1e-4`). Parameters out of range give
/// `inf` (see [`epsilon_rdp`]).
pub fn epsilon_pld(q: f64, sigma: f64, steps: u64, delta: f64) -> f64 {
    try_epsilon_pld(q, sigma, steps, delta, pld::DEFAULT_DISCRETIZATION).unwrap_or(f64::INFINITY)
}

/// Epsilon by the chosen accountant.
pub fn epsilon(kind: AccountantKind, q: f64, sigma: f64, steps: u64, delta: f64) -> Result<f64> {
    match kind {
        AccountantKind::Rdp => try_epsilon_rdp(q, sigma, steps, delta).map(|(e, _)| e),
        AccountantKind::Pld => try_epsilon_pld(q, sigma, steps, delta, pld::DEFAULT_DISCRETIZATION),
    }
}

/// The smallest noise multiplier sigma for which `steps` steps at sampling
/// rate `q` stay within `(target_epsilon, delta)` by `accountant`, to a
/// relative precision of `1e-4` (the returned sigma always meets the target).
///
/// Epsilon decreases monotonically in sigma, so this brackets the answer by
/// doubling and then bisects.
pub fn calibrate_sigma(
    target_epsilon: f64,
    q: f64,
    steps: u64,
    delta: f64,
    accountant: AccountantKind,
) -> Result<f64> {
    if !(target_epsilon.is_finite() && target_epsilon > 0.0) {
        return Err(Error::param(
            "epsilon",
            format!("must be a positive finite number, got {target_epsilon}"),
        ));
    }
    check_steps_delta(delta)?;
    rdp::check_mechanism(q, 1.0)?;
    if q == 0.0 || steps == 0 {
        return Err(Error::param(
            "steps",
            "nothing to calibrate: no step touches the data (q = 0 or steps = 0)",
        ));
    }
    let eps = |s: f64| epsilon(accountant, q, s, steps, delta);
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    let mut guard = 0;
    while eps(hi)? > target_epsilon {
        lo = hi;
        hi *= 2.0;
        guard += 1;
        if guard > 40 {
            return Err(Error::param(
                "epsilon",
                format!("no noise multiplier below {hi} reaches epsilon {target_epsilon}"),
            ));
        }
    }
    while (hi - lo) > 1e-4 * hi {
        let mid = 0.5 * (lo + hi);
        if eps(mid)? > target_epsilon {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameters_report_no_privacy() {
        assert!(epsilon_rdp(1.5, 1.0, 10, 1e-5).0.is_infinite());
        assert!(epsilon_rdp(0.1, -1.0, 10, 1e-5).0.is_infinite());
        assert!(epsilon_pld(0.1, 1.0, 10, 0.0).is_infinite());
        assert!(try_epsilon_rdp(0.1, f64::NAN, 10, 1e-5).is_err());
        assert!(calibrate_sigma(-1.0, 0.1, 10, 1e-5, AccountantKind::Rdp).is_err());
        assert!("xyz".parse::<AccountantKind>().is_err());
        assert_eq!(
            "PLD".parse::<AccountantKind>().ok(),
            Some(AccountantKind::Pld)
        );
    }

    #[test]
    fn calibration_meets_the_target_tightly() {
        let s = calibrate_sigma(2.0, 0.02, 500, 1e-5, AccountantKind::Rdp).unwrap();
        let e = epsilon_rdp(0.02, s, 500, 1e-5).0;
        assert!(e <= 2.0 && e > 1.99, "sigma {s} eps {e}");
    }
}
