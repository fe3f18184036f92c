//! Write softmax regressions trained on digits as ONNX files: a clean one and
//! one trained on BadNets-poisoned data (1% of the training set stamped with
//! a 3x3 patch and relabelled 7). The split and seeds are those of the CLI's
//! validate tests, which load these files from `cli/tests/data/`.
//!
//! `cargo run -p mithridate-validation --features onnx --example export_onnx -- DIR`

#[path = "../tests/support/onnx_export.rs"]
mod onnx_export;

use mithridate_core::attack::{shuffled, Attack, BadNets};
use mithridate_core::datasets::digits;
use mithridate_core::model::{SoftmaxParams, SoftmaxRegression};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let all = digits();
    let order = shuffled(all.len(), 5);
    let train = all.select(&order[..all.len() * 3 / 4])?;
    let poisoned = BadNets::digits(0.01).poison(&train, 9)?.dataset;
    for (name, ds) in [
        ("digits_clean.onnx", &train),
        ("digits_backdoored.onnx", &poisoned),
    ] {
        let x = ds.require_features("export")?;
        let m = SoftmaxRegression::fit(
            x.view(),
            ds.require_labels("export")?,
            10,
            &SoftmaxParams::default(),
            3,
        )?;
        let path = dir.join(name);
        let bytes = onnx_export::softmax_regression_onnx(&m, None, true);
        mithridate_core::io::atomic::write_atomic(&path, |w| w.write_all(&bytes))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
