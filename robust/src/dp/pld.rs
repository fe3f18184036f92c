//! Privacy-loss-distribution (PLD) accountant for the Poisson-subsampled
//! Gaussian mechanism.
//!
//! The privacy loss of one step is discretised onto the grid `k * d` with the
//! pessimistic "connect the dots" construction of Doroshenko et al. (2022):
//! the hockey-stick divergence `delta(eps)` is evaluated exactly at every grid
//! point and the masses are chosen so that the discrete PLD's `delta(eps)` is
//! the piecewise interpolation of those values — never below the true curve, so
//! the accountant may over-report epsilon by at most the discretisation slack
//! but never under-reports it. Tails beyond `exp(-50)` of the noise go to the
//! infinite-loss atom.
//!
//! `T`-fold self-composition raises the FFT of the PMF to the `T`-th power;
//! the output window is bounded beforehand with a Chernoff bound on the
//! moment-generating function so that at most `1e-15` of mass falls outside
//! it, and that mass is added to the infinite-loss atom. Different steps
//! compose by linear FFT convolution with the same pessimistic tail
//! truncation. Epsilon for a target delta is read off the composed PMF.
//!
//! Add-or-remove adjacency is handled as Google's dp-accounting does: the
//! "remove" and "add" PLDs differ under subsampling, both are tracked, and the
//! reported epsilon is the larger of the two.

use std::sync::Arc;

use mithridate_core::{Error, Result};
use rayon::prelude::*;
use rustfft::num_complex::Complex64;
use rustfft::{Fft, FftPlanner};

use super::rdp::{check_delta, check_mechanism};
use super::special::{log_add, log_ndtr, log_sub, ndtr, ndtri};

/// Default width of the privacy-loss grid (as in dp-accounting).
pub const DEFAULT_DISCRETIZATION: f64 = 1e-4;
/// Mass that a composition may move to the infinite-loss atom (as in dp-accounting).
const TAIL_MASS_TRUNCATION: f64 = 1e-15;
/// Log of the noise mass left out of the discretised window.
const LOG_MASS_TRUNCATION_BOUND: f64 = -50.0;

/// Which neighbouring dataset the privacy loss is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adjacency {
    /// The neighbour has one record fewer.
    Remove,
    /// The neighbour has one record more.
    Add,
}

/// `log(a * exp(b) + c)` for `a > 0`.
fn log_a_exp_b_plus_c(a: f64, b: f64, c: f64) -> f64 {
    if b == 0.0 {
        return (a + c).ln();
    }
    let d = b + a.ln();
    if c == 0.0 {
        d
    } else if c < 0.0 {
        log_sub(d, (-c).ln())
    } else {
        log_add(d, c.ln())
    }
}

fn is_close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// The privacy loss of the subsampled Gaussian with sensitivity 1.
#[derive(Debug, Clone, Copy)]
struct SubsampledGaussian {
    q: f64,
    sigma: f64,
    adjacency: Adjacency,
}

impl SubsampledGaussian {
    fn loss_remove(&self, x: f64) -> f64 {
        let lw = (-0.5 - x) / (self.sigma * self.sigma);
        if self.q == 1.0 {
            lw
        } else {
            log_a_exp_b_plus_c(self.q, lw, 1.0 - self.q)
        }
    }

    fn privacy_loss(&self, x: f64) -> f64 {
        match self.adjacency {
            Adjacency::Remove => self.loss_remove(x),
            Adjacency::Add => -self.loss_remove(-x),
        }
    }

    /// Largest `x` whose privacy loss is at least `eps`.
    fn inverse_privacy_loss(&self, eps: f64) -> f64 {
        let s2 = self.sigma * self.sigma;
        let q = self.q;
        match self.adjacency {
            Adjacency::Remove => {
                let lw = if q == 1.0 {
                    eps
                } else if is_close(eps, (-q).ln_1p()) {
                    f64::NEG_INFINITY
                } else {
                    log_a_exp_b_plus_c(1.0 / q, eps, 1.0 - 1.0 / q)
                };
                -0.5 - lw * s2
            }
            Adjacency::Add => {
                let lw = if q == 1.0 {
                    eps
                } else if is_close(eps, -(-q).ln_1p()) {
                    f64::INFINITY
                } else {
                    -log_a_exp_b_plus_c(1.0 / q, -eps, 1.0 - 1.0 / q)
                };
                1.0 + (-0.5 - lw * s2)
            }
        }
    }

    fn mu_upper_cdf(&self, x: f64) -> f64 {
        let s = self.sigma;
        match self.adjacency {
            Adjacency::Add => ndtr(x / s),
            Adjacency::Remove if self.q == 1.0 => ndtr((x + 1.0) / s),
            Adjacency::Remove => (1.0 - self.q) * ndtr(x / s) + self.q * ndtr((x + 1.0) / s),
        }
    }

    fn mu_lower_log_cdf(&self, x: f64) -> f64 {
        let s = self.sigma;
        match self.adjacency {
            Adjacency::Remove => log_ndtr(x / s),
            Adjacency::Add if self.q == 1.0 => log_ndtr((x - 1.0) / s),
            Adjacency::Add => {
                let a = (-self.q).ln_1p() + log_ndtr(x / s);
                let b = self.q.ln() + log_ndtr((x - 1.0) / s);
                log_add(a, b)
            }
        }
    }

    /// The hockey-stick divergence `delta(eps)` of one step.
    fn delta_for_epsilon(&self, eps: f64) -> f64 {
        if self.q < 1.0 {
            match self.adjacency {
                Adjacency::Add if eps >= -(-self.q).ln_1p() => return 0.0,
                Adjacency::Remove if eps <= (-self.q).ln_1p() => {
                    return (-eps.exp_m1()).clamp(0.0, 1.0)
                }
                _ => {}
            }
        }
        let x = self.inverse_privacy_loss(eps);
        let d = self.mu_upper_cdf(x) - (eps + self.mu_lower_log_cdf(x)).exp();
        if d.is_nan() {
            return 1.0;
        }
        d.clamp(0.0, 1.0)
    }

    /// `(lower_x, upper_x)`: the window outside which at most `exp(-50)` of
    /// the noise mass lies.
    fn truncation(&self) -> (f64, f64) {
        let mut lower = self.sigma * ndtri(0.5 * LOG_MASS_TRUNCATION_BOUND.exp());
        let mut upper = -lower;
        match self.adjacency {
            Adjacency::Add => upper += 1.0,
            Adjacency::Remove => lower -= 1.0,
        }
        (lower, upper)
    }

    /// The pessimistic connect-the-dots PMF on grid `d`.
    fn pmf(&self, d: f64) -> Pmf {
        let (lx, ux) = self.truncation();
        let eps_upper = self.privacy_loss(lx);
        let eps_lower = self.privacy_loss(ux);
        let k_hi = (eps_upper / d).ceil() as i64;
        let k_lo = (eps_lower / d).floor() as i64;
        let mut deltas: Vec<f64> = (k_lo..=k_hi)
            .into_par_iter()
            .map(|k| self.delta_for_epsilon(k as f64 * d))
            .collect();
        if deltas.len() == 1 {
            return Pmf {
                lower: k_lo,
                probs: vec![1.0 - deltas[0]],
                infinity_mass: deltas[0],
            };
        }
        // Enforce monotonicity (deltas are non-increasing in eps up to rounding).
        for i in 1..deltas.len() {
            if deltas[i] > deltas[i - 1] {
                deltas[i] = deltas[i - 1];
            }
        }
        let n = deltas.len();
        let em1 = d.exp_m1();
        let e = d.exp();
        let mut probs = vec![0.0; n];
        probs[0] = 1.0 - deltas[0] + (deltas[1] - deltas[0]) / em1;
        for i in 1..n - 1 {
            let next = deltas[i + 1] - deltas[i];
            let prev = deltas[i] - deltas[i - 1];
            probs[i] = (next - prev * e) / em1;
        }
        probs[n - 1] = (deltas[n - 1] - deltas[n - 2]) / (-d).exp_m1();
        for p in &mut probs {
            *p = p.max(0.0);
        }
        Pmf {
            lower: k_lo,
            probs,
            infinity_mass: deltas[n - 1],
        }
    }
}

/// A dense PMF on the loss grid: mass `probs[i]` at loss `(lower + i) * d`,
/// plus an atom at `+inf`.
#[derive(Debug, Clone, PartialEq)]
struct Pmf {
    lower: i64,
    probs: Vec<f64>,
    infinity_mass: f64,
}

/// Smallest `n >= target` whose prime factors are 2, 3, 5 and 7 (fast FFT sizes).
fn next_fast_len(target: usize) -> usize {
    let mut n = target.max(1);
    loop {
        let mut m = n;
        for p in [2usize, 3, 5, 7] {
            while m.is_multiple_of(p) {
                m /= p;
            }
        }
        if m == 1 {
            return n;
        }
        n += 1;
    }
}

/// `(lower, upper)` index bounds of the `T`-fold self-convolution of `probs`
/// outside which at most `tail` mass lies, by Chernoff bounds at 40 orders.
fn self_convolve_bounds(probs: &[f64], times: u64, tail: f64) -> (i64, i64) {
    let n = probs.len();
    let mut upper = (n as i64 - 1) * times as i64;
    let mut lower = 0i64;
    if tail == 0.0 || n == 0 {
        return (lower, upper);
    }
    let log2tail = (2.0 / tail).ln();
    for k in (-20i32..0).chain(1..21) {
        let order = f64::from(k) / n as f64;
        // sum_i p_i exp(i * order); |i * order| <= 20 so no overflow. The
        // running product is re-anchored every 256 terms to bound its drift.
        let r = order.exp();
        let mut s = 0.0;
        for (c, chunk) in probs.chunks(256).enumerate() {
            let mut w = ((c * 256) as f64 * order).exp();
            for &p in chunk {
                s += p * w;
                w *= r;
            }
        }
        let bound = (times as f64 * s.ln() + log2tail) / order;
        if !bound.is_finite() {
            continue;
        }
        if order > 0.0 {
            upper = upper.min(bound.ceil() as i64);
        } else {
            lower = lower.max(bound.floor() as i64);
        }
    }
    (lower, upper)
}

struct Ffts {
    planner: FftPlanner<f64>,
}

impl Ffts {
    fn new() -> Self {
        Self {
            planner: FftPlanner::new(),
        }
    }
    /// The forward FFT of length `n`. Inverse transforms reuse it
    /// (`ifft(x) = conj(fft(conj(x))) / n`), which halves the planning cost:
    /// computing twiddle factors is a large share of one-shot accounting.
    fn forward(&mut self, n: usize) -> Arc<dyn Fft<f64>> {
        self.planner.plan_fft_forward(n)
    }
}

/// `z^e` by binary exponentiation: a few complex products instead of the
/// logarithm, exponential and trigonometry of the polar form.
fn pow_u64(mut z: Complex64, mut e: u64) -> Complex64 {
    let mut acc = Complex64::new(1.0, 0.0);
    while e > 0 {
        if e & 1 == 1 {
            acc *= z;
        }
        e >>= 1;
        if e > 0 {
            z *= z;
        }
    }
    acc
}

impl Pmf {
    /// The `times`-fold composition of this PMF with itself.
    fn self_compose(&self, times: u64, ffts: &mut Ffts) -> Pmf {
        let (tl, tu) = self_convolve_bounds(&self.probs, times, TAIL_MASS_TRUNCATION);
        let out_len = (tu - tl + 1).max(1) as usize;
        let n = next_fast_len(out_len.max(self.probs.len()));
        let fwd = ffts.forward(n);
        let mut buf: Vec<Complex64> = vec![Complex64::new(0.0, 0.0); n];
        for (b, &p) in buf.iter_mut().zip(&self.probs) {
            b.re = p;
        }
        fwd.process(&mut buf);
        let t = times as f64;
        // The input is real, so the spectrum is conjugate-symmetric: raise the
        // first half to the power and mirror it. Coefficients whose power
        // underflows are set to zero without the trigonometry.
        // |z|^T underflows exactly when |z|^2 < exp(-2 * 745 / T).
        let tiny = (-1490.0 / t).exp();
        let half = n / 2;
        for k in 0..=half {
            let z = buf[k];
            let w = if z.norm_sqr() < tiny {
                Complex64::new(0.0, 0.0)
            } else {
                pow_u64(z, times)
            };
            // Stored conjugated: the forward FFT below then inverts.
            buf[k] = w.conj();
            if k != 0 && n - k != k {
                buf[n - k] = w;
            }
        }
        fwd.process(&mut buf);
        let scale = 1.0 / n as f64;
        let shift = tl.rem_euclid(n as i64) as usize;
        let probs: Vec<f64> = (0..out_len)
            .map(|i| buf[(i + shift) % n].re * scale)
            .collect();
        let inf = TAIL_MASS_TRUNCATION - (t * (-self.infinity_mass).ln_1p()).exp_m1();
        Pmf {
            lower: self.lower * times as i64 + tl,
            probs,
            infinity_mass: inf.min(1.0),
        }
    }

    /// The composition of two PMFs (linear convolution), tails truncated pessimistically.
    fn compose(&self, other: &Pmf, ffts: &mut Ffts) -> Pmf {
        let len = self.probs.len() + other.probs.len() - 1;
        let n = next_fast_len(len);
        let fwd = ffts.forward(n);
        let mut a: Vec<Complex64> = vec![Complex64::new(0.0, 0.0); n];
        let mut b = a.clone();
        for (x, &p) in a.iter_mut().zip(&self.probs) {
            x.re = p;
        }
        for (x, &p) in b.iter_mut().zip(&other.probs) {
            x.re = p;
        }
        fwd.process(&mut a);
        fwd.process(&mut b);
        for (x, y) in a.iter_mut().zip(&b) {
            *x = (*x * y).conj();
        }
        fwd.process(&mut a);
        let scale = 1.0 / n as f64;
        let probs: Vec<f64> = a[..len].iter().map(|z| z.re * scale).collect();
        let inf =
            self.infinity_mass + other.infinity_mass - self.infinity_mass * other.infinity_mass;
        let (offset, probs, right) = truncate_tails(probs, TAIL_MASS_TRUNCATION);
        Pmf {
            lower: self.lower + other.lower + offset as i64,
            probs,
            infinity_mass: (inf + right).min(1.0),
        }
    }

    /// The same PMF with at most `1e-15` of tail mass moved pessimistically.
    fn truncated(self) -> Pmf {
        let (offset, probs, right) = truncate_tails(self.probs, TAIL_MASS_TRUNCATION);
        Pmf {
            lower: self.lower + offset as i64,
            probs,
            infinity_mass: (self.infinity_mass + right).min(1.0),
        }
    }

    /// Smallest epsilon >= 0 whose hockey-stick divergence is at most `delta`.
    fn epsilon_for_delta(&self, delta: f64, d: f64) -> f64 {
        if self.infinity_mass > delta {
            return f64::INFINITY;
        }
        let (mut upper, mut lower) = (self.infinity_mass, 0.0f64);
        let top = self.lower + self.probs.len() as i64 - 1;
        for (k, &p) in self.probs.iter().rev().enumerate() {
            let loss = (top - k as i64) as f64 * d;
            if upper > delta && lower > 0.0 && ((upper - delta) / lower).ln() >= loss {
                break;
            }
            upper += p;
            lower += (-loss).exp() * p;
            if upper >= delta && lower == 0.0 {
                return loss.max(0.0);
            }
        }
        if upper <= lower + delta {
            return 0.0;
        }
        ((upper - delta) / lower).ln()
    }

    /// Hockey-stick divergence at `eps`.
    fn delta_for_epsilon(&self, eps: f64, d: f64) -> f64 {
        let mut delta = self.infinity_mass;
        for (i, &p) in self.probs.iter().enumerate() {
            let loss = (self.lower + i as i64) as f64 * d;
            if loss > eps {
                delta += -(eps - loss).exp_m1() * p;
            }
        }
        delta.clamp(0.0, 1.0)
    }
}

/// Drop at most `tail / 2` of mass from each end: the left part is added to
/// the first kept entry (its loss only grows), the right part goes to the
/// infinite atom. Returns `(offset, kept, mass moved to infinity)`.
fn truncate_tails(probs: Vec<f64>, tail: f64) -> (usize, Vec<f64>, f64) {
    let half = tail / 2.0;
    let prefix = |it: &mut dyn Iterator<Item = &f64>| -> usize {
        let mut s = 0.0;
        for (i, v) in it.enumerate() {
            s += v;
            if s > half {
                return i;
            }
        }
        probs.len()
    };
    let left = prefix(&mut probs.iter());
    let right = probs.len() - prefix(&mut probs.iter().rev());
    let right = right.max(left + 1).min(probs.len());
    let left = left.min(right.saturating_sub(1));
    let left_mass: f64 = probs[..left].iter().sum();
    let right_mass: f64 = probs[right..].iter().sum();
    let mut kept = probs[left..right].to_vec();
    if let Some(first) = kept.first_mut() {
        *first += left_mass;
    }
    (left, kept, right_mass)
}

/// A PLD accountant: the composed PLDs for both adjacencies.
#[derive(Debug, Clone, PartialEq)]
pub struct PldAccountant {
    discretization: f64,
    /// `(remove, add)`; `None` until something private is composed.
    pmfs: Option<(Pmf, Pmf)>,
    non_private: bool,
}

impl Default for PldAccountant {
    fn default() -> Self {
        Self::new()
    }
}

impl PldAccountant {
    /// An empty accountant with the default grid width `1e-4`.
    pub fn new() -> Self {
        Self {
            discretization: DEFAULT_DISCRETIZATION,
            pmfs: None,
            non_private: false,
        }
    }

    /// An empty accountant with grid width `d` (smaller: tighter and slower).
    pub fn with_discretization(d: f64) -> Result<Self> {
        if !(d.is_finite() && d > 0.0 && d <= 1.0) {
            return Err(Error::param(
                "discretization",
                format!("must be in (0, 1], got {d}"),
            ));
        }
        Ok(Self {
            discretization: d,
            pmfs: None,
            non_private: false,
        })
    }

    /// Grid width.
    pub fn discretization(&self) -> f64 {
        self.discretization
    }

    /// Compose `count` steps of the Poisson-subsampled Gaussian `(q, sigma)`.
    pub fn compose_poisson_gaussian(&mut self, q: f64, sigma: f64, count: u64) -> Result<()> {
        check_mechanism(q, sigma)?;
        if q == 0.0 || count == 0 {
            return Ok(());
        }
        if sigma == 0.0 {
            self.non_private = true;
            return Ok(());
        }
        let d = self.discretization;
        let one = |adjacency| {
            SubsampledGaussian {
                q,
                sigma,
                adjacency,
            }
            .pmf(d)
            .self_compose(count, &mut Ffts::new())
        };
        let (remove, add) = if q == 1.0 {
            // Without subsampling both adjacencies have the same PLD.
            let r = one(Adjacency::Remove);
            (r.clone(), r)
        } else {
            rayon::join(|| one(Adjacency::Remove), || one(Adjacency::Add))
        };
        let mut ffts = Ffts::new();
        self.pmfs = Some(match self.pmfs.take() {
            // Composing with the identity PLD only truncates the tails.
            None => (remove.truncated(), add.truncated()),
            Some((r, a)) => (r.compose(&remove, &mut ffts), a.compose(&add, &mut ffts)),
        });
        Ok(())
    }

    /// Epsilon of everything composed so far at `delta` (the larger over both adjacencies).
    pub fn epsilon(&self, delta: f64) -> Result<f64> {
        check_delta(delta)?;
        if self.non_private {
            return Ok(f64::INFINITY);
        }
        Ok(match &self.pmfs {
            None => 0.0,
            Some((r, a)) => r
                .epsilon_for_delta(delta, self.discretization)
                .max(a.epsilon_for_delta(delta, self.discretization)),
        })
    }

    /// Delta of everything composed so far at `epsilon` (the larger over both adjacencies).
    pub fn delta(&self, epsilon: f64) -> Result<f64> {
        if epsilon.is_nan() || epsilon < 0.0 {
            return Err(Error::param(
                "epsilon",
                format!("must be >= 0, got {epsilon}"),
            ));
        }
        if self.non_private {
            return Ok(1.0);
        }
        Ok(match &self.pmfs {
            None => 0.0,
            Some((r, a)) => r
                .delta_for_epsilon(epsilon, self.discretization)
                .max(a.delta_for_epsilon(epsilon, self.discretization)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complex_power_matches_polar_form() {
        let z = Complex64::new(0.6, -0.7);
        for e in [0u64, 1, 2, 7, 100, 1001] {
            let want = Complex64::from_polar(z.norm().powf(e as f64), z.arg() * e as f64);
            let got = pow_u64(z, e);
            assert!(
                (got - want).norm() <= 1e-12 * want.norm().max(1e-300),
                "e={e} {got} {want}"
            );
        }
    }

    #[test]
    fn fast_len_is_smooth_and_not_smaller() {
        assert_eq!(next_fast_len(1), 1);
        assert_eq!(next_fast_len(11), 12);
        assert_eq!(next_fast_len(1000), 1000);
        assert_eq!(next_fast_len(1031), 1050);
    }

    #[test]
    fn pmf_of_one_step_is_a_distribution() {
        for adjacency in [Adjacency::Remove, Adjacency::Add] {
            let m = SubsampledGaussian {
                q: 0.01,
                sigma: 1.0,
                adjacency,
            };
            let p = m.pmf(1e-3);
            let total: f64 = p.probs.iter().sum::<f64>() + p.infinity_mass;
            assert!((total - 1.0).abs() < 1e-9, "{total}");
            assert!(p.probs.iter().all(|&x| x >= 0.0));
        }
    }

    #[test]
    fn self_composition_matches_repeated_composition() {
        let m = SubsampledGaussian {
            q: 0.1,
            sigma: 1.0,
            adjacency: Adjacency::Remove,
        };
        let d = 1e-2;
        let p = m.pmf(d);
        let mut ffts = Ffts::new();
        let a = p.self_compose(4, &mut ffts);
        let b = p
            .compose(&p, &mut ffts)
            .compose(&p, &mut ffts)
            .compose(&p, &mut ffts);
        let (ea, eb) = (a.epsilon_for_delta(1e-5, d), b.epsilon_for_delta(1e-5, d));
        assert!((ea - eb).abs() < 1e-6, "{ea} {eb}");
    }

    #[test]
    fn truncation_moves_mass_pessimistically() {
        let (off, kept, right) = truncate_tails(vec![1e-17, 0.5, 0.5, 1e-17], 1e-15);
        assert_eq!(off, 1);
        assert_eq!(kept.len(), 2);
        assert!((kept[0] - (0.5 + 1e-17)).abs() < 1e-18);
        assert!((right - 1e-17).abs() < 1e-30);
    }
}
