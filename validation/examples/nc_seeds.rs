//! Measure on digits, over seeds: known-trigger ASR and the unknown-trigger
//! scan for a BadNets-backdoored model and a clean one.
//!
//! `cargo run --release -p mithridate-validation --example nc_seeds -- [SEEDS]`

use mithridate_core::attack::{shuffled, Attack, BadNets};
use mithridate_core::datasets::digits;
use mithridate_core::model::{ClassifierPredictor, SoftmaxParams, SoftmaxRegression};
use mithridate_core::rng::derive_seed;
use mithridate_validation::{ScanParams, TriggerScan, TriggerSuite, TriggerTest, DEFAULT_MAX_ASR};

fn main() -> Result<(), mithridate_core::Error> {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let first: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (mut log_bd7, mut log_cl) = (0, 0);
    let (mut bd_flag7, mut bd_only7, mut clean_none, mut bd_fail, mut clean_pass) = (0, 0, 0, 0, 0);
    for seed in first..first + seeds {
        let all = digits();
        let order = shuffled(all.len(), derive_seed(seed, "split"));
        let cut = all.len() * 3 / 4;
        let train = all.select(&order[..cut])?;
        let holdout = all.select(&order[cut..])?;
        let poisoned = BadNets::digits(0.01)
            .poison(&train, derive_seed(seed, "poison"))?
            .dataset;
        let fit =
            |ds: &mithridate_core::Dataset| -> Result<SoftmaxRegression, mithridate_core::Error> {
                let x = ds.require_features("train")?;
                SoftmaxRegression::fit(
                    x.view(),
                    ds.require_labels("train")?,
                    10,
                    &SoftmaxParams::default(),
                    derive_seed(seed, "fit"),
                )
            };
        let bd = fit(&poisoned)?;
        let clean = fit(&train)?;
        let test = TriggerTest::new(
            TriggerSuite::from_badnets(vec![BadNets::digits(0.0)]),
            DEFAULT_MAX_ASR,
        );
        let (o_bd, _) = test.evaluate(&ClassifierPredictor { model: &bd }, &holdout, seed)?;
        let (o_cl, _) = test.evaluate(&ClassifierPredictor { model: &clean }, &holdout, seed)?;
        let t0 = std::time::Instant::now();
        let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
        let mut p = ScanParams::default();
        if let Some(v) = env("NC_STEPS") {
            p.steps = v as usize;
        }
        if let Some(v) = env("NC_ASR") {
            p.target_asr = v;
        }
        if let Some(v) = env("NC_LR") {
            p.learning_rate = v as f32;
        }
        if let Some(v) = env("NC_INIT") {
            p.initial_mask = v as f32;
        }
        if let Some(v) = env("NC_RESTARTS") {
            p.restarts = v as usize;
        }
        if let Some(v) = env("NC_SAMPLES") {
            p.samples = v as usize;
        }
        if let Some(v) = env("NC_REF") {
            p.reference = v > 0.0;
        }
        if let Some(v) = env("NC_PERFEAT") {
            p.per_feature_bounds = v > 0.0;
        }
        if let Some(v) = env("NC_REFW") {
            p.reference_weight = v;
        }
        if let Some(v) = env("NC_SPREAD") {
            p.min_spread = v;
        }
        if let Some(v) = env("NC_DISTILL") {
            p.reference_distill = v > 0.0;
        }
        if let Some(v) = env("NC_REFEPOCHS") {
            p.reference_epochs = v as usize;
        }
        if let Some(v) = env("NC_RATIO") {
            p.max_l1_ratio = v;
        }
        let scan = TriggerScan::new().with_params(p);
        let (_, s_bd) = scan.evaluate(&bd, &holdout, seed)?;
        let (_, s_cl) = scan.evaluate(&clean, &holdout, seed)?;
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "seed {seed}: ASR backdoored {:.3} clean {:.3} | scan backdoored {:?} clean {:?} ({:.1}s)",
            o_bd.report.metrics["max_asr"],
            o_cl.report.metrics["max_asr"],
            s_bd.suspected,
            s_cl.suspected,
            t0.elapsed().as_secs_f64()
        );
        println!(
            "   bd ref [{}] cl ref [{}]",
            fmt(&s_bd.reference_l1),
            fmt(&s_cl.reference_l1)
        );
        println!(
            "   bd l1 [{}] s [{}] ai [{}] strip [{}]",
            fmt(&s_bd.triggers.iter().map(|t| t.mask_l1).collect::<Vec<_>>()),
            fmt(&s_bd.scores),
            fmt(&s_bd.anomaly_index),
            fmt(&s_bd.strip_detect_rate)
        );
        println!(
            "   cl l1 [{}] s [{}] ai [{}] strip [{}]",
            fmt(&s_cl.triggers.iter().map(|t| t.mask_l1).collect::<Vec<_>>()),
            fmt(&s_cl.scores),
            fmt(&s_cl.anomaly_index),
            fmt(&s_cl.strip_detect_rate)
        );
        let logflags = |r: &mithridate_validation::scan::ScanResult| -> Vec<u32> {
            let l: Vec<f64> = r.triggers.iter().map(|t| t.mask_l1.ln()).collect();
            let ai = mithridate_validation::scan::anomaly_index(&l);
            let mut s = l.clone();
            s.sort_by(f64::total_cmp);
            let med = (s[4] + s[5]) / 2.0;
            (0..10)
                .filter(|&c| l[c] < med && ai[c] > 2.0)
                .map(|c| c as u32)
                .collect()
        };
        let (lb, lc) = (logflags(&s_bd), logflags(&s_cl));
        println!("   log-space: backdoored {lb:?} clean {lc:?}");
        log_bd7 += usize::from(lb == vec![7]);
        log_cl += usize::from(lc.is_empty());
        bd_fail += usize::from(o_bd.report.verdict == mithridate_core::Verdict::Fail);
        clean_pass += usize::from(o_cl.report.verdict == mithridate_core::Verdict::Pass);
        bd_flag7 += usize::from(s_bd.suspected.contains(&7));
        bd_only7 += usize::from(s_bd.suspected == vec![7]);
        clean_none += usize::from(s_cl.suspected.is_empty());
    }
    println!(
        "known trigger: backdoored fails {bd_fail}/{seeds}, clean passes {clean_pass}/{seeds}"
    );
    println!("scan: backdoored flags 7 {bd_flag7}/{seeds} (only 7: {bd_only7}), clean flags nothing {clean_none}/{seeds}");
    println!("log-space: backdoored flags only 7 {log_bd7}/{seeds}, clean flags nothing {log_cl}/{seeds}");
    Ok(())
}
