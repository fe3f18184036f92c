//! DP-SGD on the digits set: holdout accuracy and training speed at several
//! privacy budgets, for softmax regression and the MLP.
//!
//! ```text
//! cargo run --release -p mithridate-robust --example dp_digits [-- EPS...]
//! ```

use std::time::Instant;

use mithridate_core::datasets::digits;
use mithridate_core::model::{accuracy, SoftmaxParams, SoftmaxRegression};
use mithridate_core::Classifier;
use mithridate_robust::dpsgd::{train_mlp, train_softmax, DpSgdParams};
use ndarray::Axis;

fn main() -> Result<(), mithridate_core::Error> {
    let budgets: Vec<f64> = {
        let v: Vec<f64> = std::env::args()
            .skip(1)
            .filter_map(|a| a.parse().ok())
            .collect();
        if v.is_empty() {
            vec![1.0, 3.0, 8.0]
        } else {
            v
        }
    };
    let ds = digits();
    let x = ds.require_features("example")?;
    let y = ds.require_labels("example")?;
    // 80/20 split, every fifth sample held out.
    let (tr, te): (Vec<usize>, Vec<usize>) = (0..ds.len()).partition(|i| i % 5 != 0);
    let (xtr, xte) = (x.select(Axis(0), &tr), x.select(Axis(0), &te));
    let ytr: Vec<u32> = tr.iter().map(|&i| y[i]).collect();
    let yte: Vec<u32> = te.iter().map(|&i| y[i]).collect();
    println!("digits: {} train, {} holdout", tr.len(), te.len());

    let plain = SoftmaxRegression::fit(xtr.view(), &ytr, 10, &SoftmaxParams::default(), 0)?;
    println!(
        "non-private softmax: holdout accuracy {:.4}",
        accuracy(&plain.predict(xte.view()), &yte)
    );

    println!("| model | epsilon | delta | sigma | steps | epochs/s | holdout accuracy |");
    println!("|---|---|---|---|---|---|---|");
    for model in ["softmax", "mlp"] {
        for &eps in &budgets {
            let params = DpSgdParams {
                target_epsilon: eps,
                delta: 1e-5,
                ..Default::default()
            };
            let mut accs = Vec::new();
            let mut secs = 0.0;
            let mut last = None;
            for seed in 0..3u64 {
                let t0 = Instant::now();
                let (acc, s) = if model == "softmax" {
                    let (m, s) = train_softmax(xtr.view(), &ytr, 10, &params, seed)?;
                    (accuracy(&m.predict(xte.view()), &yte), s)
                } else {
                    let (m, s) = train_mlp(xtr.view(), &ytr, 10, 64, &params, seed)?;
                    (accuracy(&m.predict(xte.view()), &yte), s)
                };
                secs += t0.elapsed().as_secs_f64();
                accs.push(acc);
                last = Some(s);
            }
            let mean = accs.iter().sum::<f64>() / accs.len() as f64;
            if let Some(s) = last {
                let epochs = s.steps as f64 * s.sampling_rate * accs.len() as f64;
                println!(
                    "| {model} | {:.3} | {:e} | {:.3} | {} | {:.1} | {:.4} (seeds 0-2: {}) |",
                    s.epsilon,
                    s.delta,
                    s.noise_multiplier,
                    s.steps,
                    epochs / secs,
                    mean,
                    accs.iter()
                        .map(|a| format!("{a:.3}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
    }
    Ok(())
}
