//! Poison the embedded digits with BadNets and measure what an undefended
//! softmax regression learns: clean accuracy and attack success rate (ASR).
//!
//! `cargo run -p mithridate-core --example badnets --release [RATE]`

use mithridate_core::attack::{shuffled, Attack, BadNets, Trigger};
use mithridate_core::datasets::digits;
use mithridate_core::model::{accuracy, Classifier, SoftmaxParams, SoftmaxRegression};

fn main() -> Result<(), mithridate_core::Error> {
    let rate: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.01);
    let ds = digits();
    let perm = shuffled(ds.len(), 42);
    let (hold_idx, train_idx) = perm.split_at(ds.len() / 5);
    let (train, hold) = (ds.select(train_idx)?, ds.select(hold_idx)?);
    let atk = BadNets::digits(rate);
    let poisoned = atk.poison(&train, 7)?;
    for (name, data) in [("clean", &train), ("poisoned", &poisoned.dataset)] {
        let x = data.require_features("example")?;
        let y = data.require_labels("example")?;
        let m = SoftmaxRegression::fit(x.view(), y, 10, &SoftmaxParams::default(), 1)?;
        let hx = hold.require_features("example")?;
        let hy = hold.require_labels("example")?;
        let acc = accuracy(&m.predict(hx.view()), hy);
        // ASR: non-target holdout images with the patch, classified as the target.
        let mut triggered = Vec::new();
        for i in (0..hold.len()).filter(|&i| hy[i] != atk.target) {
            let mut row = hx.row(i).to_vec();
            atk.apply_features(&mut row)?;
            triggered.extend(row);
        }
        let n = triggered.len() / 64;
        let tx = ndarray::Array2::from_shape_vec((n, 64), triggered)
            .map_err(|e| mithridate_core::Error::data(e.to_string()))?;
        let asr = m
            .predict(tx.view())
            .iter()
            .filter(|&&p| p == atk.target)
            .count() as f64
            / n as f64;
        println!(
            "{name:>9}: {} poisoned samples, clean accuracy {:.1}%, ASR {:.1}%",
            if name == "clean" {
                0
            } else {
                poisoned.poisoned_ids.len()
            },
            acc * 100.0,
            asr * 100.0
        );
    }
    Ok(())
}
