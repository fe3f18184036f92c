//! proptest strategies for datasets and poisoned datasets, for users' own
//! property tests ("this detector finds at least 90% of a 1% BadNets poison at
//! any trigger position").

use ndarray::Array2;
use proptest::prelude::*;

use crate::attack::{Attack, BadNets, PatchPosition, Poisoned};
use crate::dataset::Dataset;
use crate::datasets::digits;

/// Arbitrary labelled feature datasets: `n` in `rows`, `d` in `cols`, `k` classes,
/// finite features in `[-100, 100]`.
pub fn arb_dataset(
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    k: u32,
) -> impl Strategy<Value = Dataset> {
    (rows, cols).prop_flat_map(move |(n, d)| {
        (
            proptest::collection::vec(-100.0f32..100.0, n * d),
            proptest::collection::vec(0..k.max(1), n),
        )
            .prop_map(move |(x, y)| {
                let x = Array2::from_shape_vec((n, d), x).unwrap_or_else(|_| Array2::zeros((n, d)));
                Dataset::from_features(x, Some(y)).unwrap_or_default()
            })
    })
}

/// Arbitrary text datasets: short printable texts (including quotes, commas and
/// non-ASCII), labels `< k`.
pub fn arb_text_dataset(rows: std::ops::Range<usize>, k: u32) -> impl Strategy<Value = Dataset> {
    proptest::collection::vec(("[ -~é漢\"]{0,40}", 0..k.max(1)), rows).prop_map(|v| {
        let (t, y): (Vec<String>, Vec<u32>) = v.into_iter().unzip();
        Dataset::from_texts("text", t, Some(y)).unwrap_or_default()
    })
}

/// Any position where a `size` patch fits an 8x8 image.
pub fn arb_patch_position(size: usize) -> impl Strategy<Value = PatchPosition> {
    let max = 8 - size.min(8);
    (0..=max, 0..=max).prop_map(|(row, col)| PatchPosition::At { row, col })
}

/// A BadNets configuration on 8x8 digits: size 2-4, any position, any target,
/// rate in `rates`.
pub fn arb_badnets(rates: std::ops::Range<f64>) -> impl Strategy<Value = BadNets> {
    (2usize..=4, 0u32..10, rates).prop_flat_map(|(size, target, rate)| {
        arb_patch_position(size).prop_map(move |position| BadNets {
            height: 8,
            width: 8,
            size,
            position,
            value: 16.0,
            checker: false,
            target,
            rate,
        })
    })
}

/// The embedded digits poisoned by an arbitrary BadNets attack, with its truth.
pub fn arb_poisoned_digits(
    rates: std::ops::Range<f64>,
) -> impl Strategy<Value = (BadNets, Poisoned)> {
    (arb_badnets(rates), any::<u64>()).prop_filter_map("attack applies", |(atk, seed)| {
        let p = atk.poison(&digits(), seed).ok()?;
        Some((atk, p))
    })
}
