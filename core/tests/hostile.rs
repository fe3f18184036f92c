//! Hostile inputs: each gets a clear error that names the place, or a
//! documented policy; none panics and none allocates without bound.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{BufReader, Read};
use std::path::Path;

use mithridate_core::io::{csv, jsonl, npy, read_path, ReadOptions};
use mithridate_core::Location;

const GIB: u64 = 1 << 30;

/// A 1 GiB line streamed from a generator: the reader must refuse it after the
/// limit without holding it in memory (the process would need 1 GiB otherwise).
#[test]
fn one_gigabyte_line_is_refused_with_its_line_number() {
    let long = std::io::repeat(b'a').take(GIB);
    let input = b"{\"text\":\"ok\",\"label\":0}\n"
        .chain(long)
        .chain(&b"\n{\"text\":\"b\",\"label\":1}\n"[..]);
    let err = jsonl::read_jsonl_reader(
        BufReader::new(input),
        Path::new("big.jsonl"),
        &ReadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("big.jsonl:line 2") && err.contains("exceeds the limit"),
        "{err}"
    );

    // With skip_bad the line is counted and the rest is read.
    let long = std::io::repeat(b'a').take(GIB);
    let input = b"{\"text\":\"ok\",\"label\":0}\n"
        .chain(long)
        .chain(&b"\n{\"text\":\"b\",\"label\":1}\n"[..]);
    let o = ReadOptions {
        skip_bad: true,
        ..Default::default()
    };
    let (ds, st) =
        jsonl::read_jsonl_reader(BufReader::new(input), Path::new("big.jsonl"), &o).unwrap();
    assert_eq!((ds.len(), st.skipped), (2, 1));
}

#[test]
fn one_gigabyte_csv_record_is_refused() {
    let long = std::io::repeat(b'1').take(GIB);
    let input = b"a,label\n1,0\n".chain(long).chain(&b",1\n"[..]);
    let err = csv::read_csv_reader(input, Path::new("big.csv"), &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("big.csv") && err.contains("longer than"),
        "{err}"
    );
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let deep = format!(
        "{{\"text\":{}1{}}}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let err = jsonl::read_jsonl_bytes(deep.as_bytes(), &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn non_utf8_text_names_the_line() {
    let err = jsonl::read_jsonl_bytes(
        b"{\"text\":\"a\",\"label\":0}\n{\"text\":\"\xff\xfe\",\"label\":1}\n",
        &ReadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("line 2"), "{err}");
    let err = csv::read_csv_bytes(b"a,label\n1,0\n\xff,1\n", &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 3") && err.contains("UTF-8"), "{err}");
}

#[test]
fn empty_inputs_are_clear() {
    let err = csv::read_csv_bytes(b"", &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty"), "{err}");
    let (ds, st) = jsonl::read_jsonl_bytes(b"", &ReadOptions::default()).unwrap();
    assert_eq!(
        (ds.len(), st.records),
        (0, 0),
        "an empty JSONL file is an empty dataset"
    );
    let (ds, _) = csv::read_csv_bytes(b"a,label\n", &ReadOptions::default()).unwrap();
    assert!(ds.is_empty());
}

#[test]
fn npy_edge_cases() {
    let dir = tempfile::tempdir().unwrap();
    // Zero rows: a valid, empty dataset.
    let p = dir.path().join("X.npy");
    npy::write_npy_f32(&p, &ndarray::Array2::zeros((0, 64))).unwrap();
    let (ds, _) = read_path(&p, &ReadOptions::default()).unwrap();
    assert_eq!((ds.len(), ds.n_features()), (0, 64));
    // Huge declared shape with a small file: refused before allocating.
    let mut b = npy::npy_bytes_f32(&ndarray::Array2::zeros((1, 1)));
    let at = b.windows(6).position(|w| w == b"(1, 1)").unwrap();
    b.splice(at..at + 6, b"(9999999999, 99999)".iter().copied());
    let err = npy::parse_npy(&b, &Location::file("X.npy"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("field `shape`"), "{err}");
    // NaN features are refused with their row and column.
    let mut a = ndarray::Array2::<f32>::zeros((3, 2));
    a[[2, 1]] = f32::NAN;
    npy::write_npy_f32(&p, &a).unwrap();
    let err = read_path(&p, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2") && err.contains("column 1"), "{err}");
    // Labels that are not class indices.
    npy::write_npy_f32(&p, &ndarray::Array2::zeros((2, 2))).unwrap();
    npy::write_npy_i64(&dir.path().join("y.npy"), &[0, -3]).unwrap();
    let err = read_path(&p, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("y.npy") && err.contains("-3"), "{err}");
}

#[test]
fn oversized_class_labels_are_refused() {
    let err = csv::read_csv_bytes(b"a,label\n1,4000000000\n", &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("class limit") && err.contains("line 2"),
        "{err}"
    );
}
