//! Robust aggregation of a few client updates, then Deep Partition
//! Aggregation and Finite Aggregation on the embedded digits: certified
//! accuracy against the number of poisoned training samples, for several
//! partition counts `k` (and spreads `d` for Finite Aggregation).
//!
//! `cargo run --release -p mithridate-robust --example aggregate_certified [-- 5,10,25,50 [1,4,8]]`

use mithridate_core::datasets::digits;
use mithridate_core::model::SoftmaxTrainer;
use mithridate_robust::aggregate::{aggregate, Method};
use mithridate_robust::certified::{certified_accuracy, Dpa, Scheme};
use ndarray::array;

fn main() -> Result<(), mithridate_core::Error> {
    // Five clients, one of them Byzantine.
    let updates = array![
        [0.9f32, 2.1],
        [1.0, 2.0],
        [1.1, 1.9],
        [1.05, 2.05],
        [-50.0, 80.0]
    ];
    for m in [
        Method::FedAvg,
        Method::Median,
        Method::Krum { byzantine: 1 },
        Method::geometric_median(),
    ] {
        let a = aggregate(&m, updates.view(), None)?;
        println!(
            "{:<17} {:?} selected {:?}",
            m.name(),
            a.params.to_vec(),
            a.selected
        );
    }

    let ks: Vec<usize> = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "5,10,25".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let ds = digits();
    let train: Vec<usize> = (0..ds.len()).filter(|i| i % 5 != 0).collect();
    let test: Vec<usize> = (0..ds.len()).filter(|i| i % 5 == 0).collect();
    let (train, test) = (ds.select(&train)?, ds.select(&test)?);
    let x = test.require_features("example")?;
    let y = test.require_labels("example")?;
    let radii: Vec<u32> = vec![0, 1, 2, 3, 5, 8, 10, 12, 15, 20, 25];
    let spreads: Vec<usize> = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "1,4".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|&d| d >= 1)
        .collect();
    print!(
        "\ncertified accuracy on {} held-out digits\n{:>4} {:>3} {:<4}",
        y.len(),
        "k",
        "d",
        ""
    );
    for r in &radii {
        print!(" {:>6}", format!("r={r}"));
    }
    println!();
    for k in ks {
        for &d in &spreads {
            let scheme = if d == 1 {
                Scheme::dpa(k)
            } else {
                Scheme::finite_aggregation(k, d)?
            };
            let t = std::time::Instant::now();
            let ens = Dpa::fit_scheme(&train, scheme, &SoftmaxTrainer::default(), 1)?;
            let acc = certified_accuracy(&ens.certify(x.view()), y, &radii);
            print!("{:>4} {:>3} {:<4}", k, d, if d == 1 { "DPA" } else { "FA" });
            for a in acc {
                print!(" {a:>6.3}");
            }
            println!("  ({:.1}s)", t.elapsed().as_secs_f64());
        }
    }
    Ok(())
}
