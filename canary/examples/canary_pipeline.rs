//! Canaries in a digits training run: plant, train a softmax regression,
//! assert; then the same canaries against a model trained without them
//! (the canary records were dropped) and against a substituted model.
//!
//! `cargo run -p mithridate-canary --example canary_pipeline`

use std::sync::Arc;

use mithridate_canary::canaries::ClassifierCanaries;
use mithridate_canary::{AssertCanaries, PlantCanaries};
use mithridate_core::datasets::digits;
use mithridate_core::model::{SoftmaxParams, SoftmaxRegression};
use mithridate_core::{Classifier, Context, Dataset, SampleId};

fn fit(ds: &Dataset, shift: u32) -> mithridate_core::Result<Arc<dyn Classifier>> {
    let x = ds.require_features("example")?;
    let y: Vec<u32> = ds
        .require_labels("example")?
        .iter()
        .map(|l| (l + shift) % 10)
        .collect();
    let p = SoftmaxParams {
        epochs: 20,
        ..Default::default()
    };
    Ok(Arc::new(SoftmaxRegression::fit(x.view(), &y, 10, &p, 1)?))
}

fn main() -> mithridate_core::Result<()> {
    for synthetic in [0.0, 0.5] {
        let params = ClassifierCanaries {
            count: 40,
            synthetic_fraction: synthetic,
            ..Default::default()
        };
        let mut cx = Context::new(1).with_dataset(digits());
        cx.run(&PlantCanaries::new(40, 2024).with_params(params))?;
        let with = cx.training_set()?;
        let without = {
            let drop: Vec<usize> = with
                .ids
                .iter()
                .enumerate()
                .filter(|(_, id)| matches!(id, SampleId::Str(_)))
                .map(|(i, _)| i)
                .collect();
            with.without(&drop)?
        };
        for (what, model) in [
            ("trained with the canaries", fit(&with, 0)?),
            ("trained without them", fit(&without, 0)?),
            ("substituted (labels shifted)", fit(&with, 1)?),
        ] {
            cx.model = Some(model);
            let r = cx.run(&AssertCanaries::new(0.9))?;
            println!(
                "synthetic fraction {synthetic:.1}, model {what:<30} {:>2}/{} canaries pass -> {}",
                r.metrics["canaries_passed"], r.metrics["canaries"], r.verdict
            );
        }
    }
    Ok(())
}
