//! Epsilon of a DP-SGD run by both accountants, timed, for each setting of
//! the reference table (or for `q sigma steps delta` given as arguments).
//!
//! ```text
//! cargo run --release -p mithridate-robust --example dp_accountant
//! cargo run --release -p mithridate-robust --example dp_accountant -- 0.01 1.0 1000 1e-5
//! ```
//!
//! With `--json` it prints one JSON line per setting (used by
//! `tests/fixtures/dp_bench.py` to compare speed with dp-accounting).

use std::time::Instant;

use mithridate_robust::dp::{calibrate_sigma, epsilon_pld, epsilon_rdp, AccountantKind};

const TABLE: [(f64, f64, u64, f64); 8] = [
    (256.0 / 60000.0, 1.1, 14062, 1e-5),
    (256.0 / 60000.0, 1.1, 3515, 1e-5),
    (0.01, 4.0, 10000, 1e-5),
    (0.01, 1.0, 1000, 1e-5),
    (0.001, 0.8, 5000, 1e-6),
    (0.1, 2.0, 500, 1e-5),
    (1.0, 5.0, 100, 1e-5),
    (0.05, 0.6, 2000, 1e-5),
];

/// Best of `reps` wall-clock runs of `f`, in seconds, and its last value.
fn best_of<T>(reps: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut out = f();
    for _ in 0..reps {
        let t0 = Instant::now();
        out = f();
        best = best.min(t0.elapsed().as_secs_f64());
    }
    (best, out)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let nums: Vec<f64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let cases: Vec<(f64, f64, u64, f64)> = if nums.len() == 4 {
        vec![(nums[0], nums[1], nums[2] as u64, nums[3])]
    } else {
        TABLE.to_vec()
    };
    for (q, s, t, d) in cases {
        let (rdp_s, (eps_rdp, order)) = best_of(20, || epsilon_rdp(q, s, t, d));
        let (pld_s, eps_pld) = best_of(3, || epsilon_pld(q, s, t, d));
        if json {
            println!(
                "{{\"q\":{q},\"sigma\":{s},\"steps\":{t},\"delta\":{d},\"rdp_epsilon\":{eps_rdp},\"rdp_order\":{order},\
                 \"pld_epsilon\":{eps_pld},\"rdp_seconds\":{rdp_s},\"pld_seconds\":{pld_s}}}"
            );
        } else {
            println!(
                "q={q:<8.5} sigma={s:<4} T={t:<6} delta={d:e}: RDP eps {eps_rdp:.4} (order {order}) in {:.3} ms; \
                 PLD eps {eps_pld:.4} in {:.1} ms",
                rdp_s * 1e3,
                pld_s * 1e3
            );
        }
    }
    if !json {
        match calibrate_sigma(3.0, 0.01, 1000, 1e-5, AccountantKind::Rdp) {
            Ok(sigma) => {
                println!("sigma for epsilon 3 at q=0.01, T=1000, delta=1e-5 (RDP): {sigma:.4}")
            }
            Err(e) => eprintln!("calibration failed: {e}"),
        }
    }
}
