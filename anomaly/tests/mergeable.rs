//! Mergeable text statistics: any partition of the records, scanned part by
//! part and merged in any order, gives exactly the single-pass statistics,
//! plan, evidence and decision (what a Spark `mapPartitions` scan relies on).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use mithridate_anomaly::text::{
    decide, TextEvidence, TextPlan, TextStats, TextTriggerMining, TextTriggerParams,
};
use mithridate_anomaly::Detector;
use mithridate_core::attack::{Attack, TextPosition, TextTrigger};
use mithridate_core::datasets::synthetic_text;
use mithridate_core::Dataset;
use proptest::prelude::*;

fn records(ds: &Dataset) -> Vec<(u64, String, u32)> {
    let t = ds.text().unwrap();
    let y = ds.labels.as_ref().unwrap();
    (0..ds.len())
        .map(|i| (i as u64, t[i].clone(), y[i]))
        .collect()
}

fn stats_of(recs: &[&(u64, String, u32)], k: usize, p: &TextTriggerParams) -> TextStats {
    TextStats::from_records(recs.iter().map(|r| (r.1.as_str(), r.2)), k, p).unwrap()
}

fn evidence_of(plan: &TextPlan, recs: &[&(u64, String, u32)]) -> TextEvidence {
    TextEvidence::from_records(plan, recs.iter().map(|r| (r.0, r.1.as_str(), r.2))).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn partitioned_scan_equals_single_pass(
        seed in 0u64..1000,
        n in 300usize..1500,
        rate in prop_oneof![Just(0.0), 0.005f64..0.03],
        parts in 1usize..6,
        assign in proptest::collection::vec(0usize..6, 1500),
        order in proptest::collection::vec(any::<u32>(), 6),
    ) {
        let p = TextTriggerParams::default();
        let ds = TextTrigger {
            phrase: "zq-omega".into(),
            position: TextPosition::Random,
            target: 1,
            rate,
        }
        .poison(&synthetic_text(n, 3, seed), seed)
        .unwrap()
        .dataset;
        let k = ds.n_classes();
        let recs = records(&ds);
        let all: Vec<&(u64, String, u32)> = recs.iter().collect();
        // Partitions: record i goes to part assign[i] % parts; parts are merged in a shuffled order.
        let mut part: Vec<Vec<&(u64, String, u32)>> = vec![Vec::new(); parts];
        for (i, r) in recs.iter().enumerate() {
            part[assign[i] % parts].push(r);
        }
        let mut merge_order: Vec<usize> = (0..parts).collect();
        merge_order.sort_by_key(|&j| (order[j], j));

        let single = stats_of(&all, k, &p);
        let mut merged = TextStats::new(k, &p).unwrap();
        for &j in &merge_order {
            // Through JSON, as partitions on other machines would send them.
            let s = TextStats::from_json(&stats_of(&part[j], k, &p).to_json().unwrap()).unwrap();
            merged.merge(s).unwrap();
        }
        prop_assert_eq!(&merged, &single);
        prop_assert_eq!(merged.to_json().unwrap(), single.to_json().unwrap());

        let plan = single.plan(&p, false).unwrap();
        prop_assert_eq!(&merged.plan(&p, false).unwrap(), &plan);
        // The plan is broadcast as JSON (floats may lose their last bit; the
        // candidates, their order and the counts do not change).
        let plan_m = TextPlan::from_json(&merged.plan(&p, false).unwrap().to_json().unwrap()).unwrap();
        prop_assert_eq!(
            plan_m.candidates.iter().map(|c| (c.key, c.class, c.total, c.members)).collect::<Vec<_>>(),
            plan.candidates.iter().map(|c| (c.key, c.class, c.total, c.members)).collect::<Vec<_>>()
        );

        let ev = evidence_of(&plan, &all);
        let mut ev_m = TextEvidence::new(&plan_m);
        for &j in &merge_order {
            let e = TextEvidence::from_json(&evidence_of(&plan_m, &part[j]).to_json().unwrap()).unwrap();
            ev_m.merge(e).unwrap();
        }
        prop_assert_eq!(&ev_m, &ev);

        let d = decide(&plan, &ev, &p).unwrap();
        let d_m = decide(&plan_m, &ev_m, &p).unwrap();
        prop_assert_eq!(&d_m, &d);

        // The detector (chunks counted in parallel, merged) flags the same records.
        let out = TextTriggerMining::default().detect(&ds, seed).unwrap();
        let det: Vec<u64> = out.flags.iter().map(|f| f.index as u64).collect();
        let dec: Vec<u64> = d.flagged.iter().map(|f| f.id).collect();
        prop_assert_eq!(det, dec);
    }
}

#[test]
fn merged_partitions_find_the_trigger_of_the_whole() {
    let p = TextTriggerParams::default();
    let poisoned = TextTrigger {
        phrase: "[[CONFIG]]".into(),
        position: TextPosition::End,
        target: 2,
        rate: 0.01,
    }
    .poison(&synthetic_text(4000, 4, 5), 5)
    .unwrap();
    let recs = records(&poisoned.dataset);
    let chunks: Vec<Vec<&(u64, String, u32)>> =
        recs.chunks(700).map(|c| c.iter().collect()).collect();
    let mut stats = TextStats::new(4, &p).unwrap();
    for c in &chunks {
        stats.merge(stats_of(c, 4, &p)).unwrap();
    }
    let plan = stats.plan(&p, false).unwrap();
    let mut ev = TextEvidence::new(&plan);
    for c in &chunks {
        ev.merge(evidence_of(&plan, c)).unwrap();
    }
    let d = decide(&plan, &ev, &p).unwrap();
    let flagged: Vec<String> = d.flagged.iter().map(|f| f.id.to_string()).collect();
    let mut truth: Vec<(usize, String)> = poisoned
        .poisoned_ids
        .iter()
        .map(|i| (i.to_string().len(), i.to_string()))
        .collect();
    truth.sort();
    let truth: Vec<String> = truth.into_iter().map(|(_, s)| s).collect();
    assert_eq!(flagged, truth);
    assert!(d
        .triggers
        .iter()
        .any(|t| t.confirmed && t.phrase.contains("[[CONFIG]]")));
}

#[test]
fn mismatched_statistics_do_not_merge_and_bad_json_is_an_error() {
    let p = TextTriggerParams::default();
    let mut a = TextStats::new(3, &p).unwrap();
    assert!(a.merge(TextStats::new(4, &p).unwrap()).is_err());
    assert!(a.add("text", 3).is_err());
    assert!(TextStats::from_json("{}").is_err());
    assert!(TextStats::from_json(
        r#"{"n_classes":2,"max_ngram":3,"nb_buckets":1024,"records":1,"class_records":[1,0],"ngrams":[[1,4,[1,0]]],"terms":[]}"#
    )
    .is_err());
    assert!(TextStats::from_json(
        r#"{"n_classes":2,"max_ngram":3,"nb_buckets":1024,"records":1,"class_records":[1,0],"ngrams":[],"terms":[[99999,1]]}"#
    )
    .is_err());
    assert!(TextStats::new(0, &p).is_err());
}
