//! Poison the embedded digits with a BadNets patch nobody tells the scanner
//! about, scan, and print what was quarantined and why.
//!
//! `cargo run --release -p mithridate-anomaly --example scan_digits`

use mithridate_anomaly::{scan, ScanParams};
use mithridate_core::attack::{Attack, BadNets, PatchPosition};
use mithridate_core::datasets::digits;

fn main() -> Result<(), mithridate_core::Error> {
    let attack = BadNets {
        size: 3,
        position: PatchPosition::At { row: 0, col: 4 },
        target: 2,
        ..BadNets::digits(0.01)
    };
    let poisoned = attack.poison(&digits(), 42)?;
    let out = scan(&poisoned.dataset, &ScanParams::default(), 42)?;
    println!("{}: {}", out.report.verdict, out.report.summary);
    let found = out
        .decisions
        .iter()
        .filter(|d| poisoned.poisoned_ids.contains(&d.entry.id))
        .count();
    println!(
        "{found} of {} poisoned samples quarantined",
        poisoned.poisoned_ids.len()
    );
    if let Some(d) = out.decisions.iter().find(|d| d.entry.trigger.is_some()) {
        println!("sample {}: {}", d.entry.id, d.entry.reasons[0].message);
        println!(
            "suspected trigger: {}",
            d.entry
                .trigger
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        );
    }
    Ok(())
}
