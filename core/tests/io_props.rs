//! Property tests of the readers: every reader round-trips what its writer
//! wrote, and arbitrary bytes never panic a reader.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use mithridate_core::io::{self, csv, jsonl, npy, ReadOptions};
use mithridate_core::strategies::{arb_dataset, arb_text_dataset};
use mithridate_core::{Dataset, Location};
use proptest::prelude::*;

fn with_id() -> ReadOptions {
    ReadOptions {
        id_column: Some("id".into()),
        ..Default::default()
    }
}

fn same_content(a: &Dataset, b: &Dataset) {
    assert_eq!(a.ids, b.ids);
    assert_eq!(a.features, b.features);
    assert_eq!(
        a.labels.as_ref().map(Vec::len),
        b.labels.as_ref().map(Vec::len)
    );
    for i in 0..a.len() {
        if let (Some(x), Some(y)) = (&a.labels, &b.labels) {
            assert_eq!(a.label_name(x[i]), b.label_name(y[i]));
        }
    }
    assert_eq!(a.text_fields, b.text_fields);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn csv_round_trips(ds in arb_dataset(1..40, 1..6, 5)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.csv");
        csv::write_csv(&ds, &p).unwrap();
        let (back, stats) = csv::read_csv(&p, &with_id()).unwrap();
        prop_assert_eq!(stats.records as usize, ds.len());
        same_content(&ds, &back);
    }

    #[test]
    fn jsonl_round_trips(ds in arb_text_dataset(1..40, 4)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        jsonl::write_jsonl(&ds, &p).unwrap();
        let (back, _) = jsonl::read_jsonl(&p, &with_id()).unwrap();
        same_content(&ds, &back);
    }

    #[test]
    fn jsonl_round_trips_features(ds in arb_dataset(1..30, 1..5, 3)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        jsonl::write_jsonl(&ds, &p).unwrap();
        let (back, _) = jsonl::read_jsonl(&p, &with_id()).unwrap();
        same_content(&ds, &back);
    }

    #[test]
    fn npy_round_trips(ds in arb_dataset(1..40, 1..6, 7)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("X.npy");
        io::write_path(&ds, &p, io::Format::Npy).unwrap();
        let (back, _) = io::read_path(&p, &ReadOptions::default()).unwrap();
        same_content(&ds, &back);
    }

    #[test]
    fn filtered_copy_is_the_input_minus_rows(ds in arb_text_dataset(1..30, 3), drop in proptest::collection::hash_set(0usize..30, 0..10)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        jsonl::write_jsonl(&ds, &p).unwrap();
        let (read, _) = jsonl::read_jsonl(&p, &with_id()).unwrap();
        let out = dir.path().join("clean.jsonl");
        io::write_filtered_copy(&read, &drop, &out).unwrap();
        let kept: Vec<String> = std::fs::read_to_string(&p).unwrap().lines().enumerate()
            .filter(|(i, _)| !drop.contains(i)).map(|(_, l)| l.to_owned()).collect();
        let got: Vec<String> = std::fs::read_to_string(&out).unwrap().lines().map(str::to_owned).collect();
        prop_assert_eq!(got, kept);
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_reader(bytes in proptest::collection::vec(any::<u8>(), 0..512), skip in any::<bool>()) {
        let o = ReadOptions { skip_bad: skip, max_record_bytes: 64, ..Default::default() };
        let _ = csv::read_csv_bytes(&bytes, &o);
        let _ = jsonl::read_jsonl_bytes(&bytes, &o);
        let _ = npy::parse_npy(&bytes, &Location::default());
    }

    #[test]
    fn mutated_npy_never_panics(pos in 0usize..200, byte in any::<u8>(), cut in 0usize..200) {
        let a = ndarray::Array2::<f32>::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f32);
        let mut b = npy::npy_bytes_f32(&a);
        if pos < b.len() { b[pos] = byte; }
        b.truncate(cut.max(1).min(b.len()));
        let _ = npy::parse_npy(&b, &Location::default());
    }

    #[test]
    fn structured_garbage_jsonl_never_panics(lines in proptest::collection::vec(prop_oneof![
        Just("{\"text\":\"a\",\"label\":1}".to_owned()),
        Just("{\"text\":\"a\",\"label\":99999999999}".to_owned()),
        Just("{\"text\":1}".to_owned()),
        Just("{\"features\":[1,2],\"label\":0}".to_owned()),
        Just("{\"features\":[1e999],\"label\":0}".to_owned()),
        Just("[[[[".to_owned()),
        "[ -~]{0,30}",
    ], 0..12), skip in any::<bool>()) {
        let data = lines.join("\n");
        let o = ReadOptions { skip_bad: skip, ..Default::default() };
        if let Ok((ds, st)) = jsonl::read_jsonl_bytes(data.as_bytes(), &o) {
            prop_assert!(ds.validate().is_ok());
            prop_assert_eq!(st.records as usize, ds.len());
        }
    }
}
