//! Robust aggregation of a few client updates, then Deep Partition
//! Aggregation on the embedded digits: certified accuracy against the
//! number of poisoned training samples, for several partition counts.
//!
//! `cargo run --release -p mithridate-robust --example aggregate_certified [-- 5,10,25,50]`

use mithridate_core::datasets::digits;
use mithridate_core::model::SoftmaxTrainer;
use mithridate_robust::aggregate::{aggregate, Method};
use mithridate_robust::certified::{certified_accuracy, Dpa};
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
    print!(
        "\ncertified accuracy on {} held-out digits\n{:>4}",
        y.len(),
        "k"
    );
    for r in &radii {
        print!(" {:>6}", format!("r={r}"));
    }
    println!();
    for k in ks {
        let dpa = Dpa::fit(&train, k, &SoftmaxTrainer::default(), 1)?;
        let acc = certified_accuracy(&dpa.certify(x.view()), y, &radii);
        print!("{k:>4}");
        for a in acc {
            print!(" {a:>6.3}");
        }
        println!();
    }
    Ok(())
}
