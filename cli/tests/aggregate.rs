//! `mithridate aggregate` end to end: NPY in, NPY out, JSON, exit codes, errors.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mithridate"))
}

/// NPY v1 bytes for a little-endian array of `descr` with `shape`.
fn npy(descr: &str, shape: &[usize], payload: &[u8]) -> Vec<u8> {
    let shape_s = match shape {
        [n] => format!("({n},)"),
        s => format!(
            "({})",
            s.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    let total = 10 + h.len() + 1;
    h.push_str(&" ".repeat((64 - total % 64) % 64));
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(payload);
    out
}

fn write_f32(path: &Path, shape: &[usize], v: &[f32]) {
    let payload: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, npy("<f4", shape, &payload)).unwrap();
}

fn read_f32_1d(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap();
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    let head = std::str::from_utf8(&b[10..10 + hl]).unwrap();
    assert!(head.contains("'<f4'") && head.contains(",)"), "{head}");
    b[10 + hl..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// 7 clients x 3 parameters: six honest near (1, 2, 3), client 5 Byzantine.
fn updates() -> Vec<f32> {
    let mut v = Vec::new();
    for i in 0..7 {
        let e = i as f32 * 0.01;
        if i == 5 {
            v.extend([1000.0, -1000.0, 1000.0]);
        } else {
            v.extend([1.0 + e, 2.0 - e, 3.0 + e]);
        }
    }
    v
}

#[test]
fn krum_json_names_the_chosen_client_and_writes_the_aggregate() {
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (dir.path().join("u.npy"), dir.path().join("agg.npy"));
    write_f32(&inp, &[7, 3], &updates());
    let o = bin()
        .args([
            "aggregate",
            "--method",
            "krum",
            "--byzantine",
            "1",
            "--json",
            "--input",
        ])
        .arg(&inp)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("one JSON document on stdout");
    assert_eq!(doc["clients"], 7);
    assert_eq!(doc["parameters"], 3);
    let sel = doc["selected"].as_array().unwrap();
    assert_eq!(sel.len(), 1);
    assert_ne!(sel[0], 5);
    assert!(doc["timings_ms"]["aggregate"].as_f64().unwrap() >= 0.0);
    let got = read_f32_1d(&out);
    let i = sel[0].as_u64().unwrap() as usize;
    assert_eq!(got, updates()[i * 3..i * 3 + 3].to_vec());
}

#[test]
fn every_method_runs_and_resists_the_outlier() {
    let dir = tempfile::tempdir().unwrap();
    let inp = dir.path().join("u.npy");
    write_f32(&inp, &[7, 3], &updates());
    for m in [
        "median",
        "trimmed-mean",
        "krum",
        "multi-krum",
        "bulyan",
        "geometric-median",
        "centered-clipping",
        "fedavg",
    ] {
        let out = dir.path().join(format!("{m}.npy"));
        let o = bin()
            .args([
                "aggregate",
                "--method",
                m,
                "--byzantine",
                "1",
                "--trim",
                "0.2",
                "--input",
            ])
            .arg(&inp)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{m}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.stdout.is_empty(), "{m}: human output goes to stderr");
        let got = read_f32_1d(&out);
        let robust = (got[0] - 1.03).abs() < 0.1 && (got[1] - 1.97).abs() < 0.1;
        assert_eq!(robust, m != "fedavg", "{m}: {got:?}");
    }
}

#[test]
fn nonfinite_rows_are_named_or_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (dir.path().join("u.npy"), dir.path().join("agg.npy"));
    let mut v = updates();
    v[2 * 3 + 1] = f32::NAN;
    write_f32(&inp, &[7, 3], &v);
    let o = bin()
        .args(["aggregate", "--method", "median", "--input"])
        .arg(&inp)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("client row 2") && err.contains("parameter 1") && err.contains("u.npy"),
        "{err}"
    );
    assert!(!out.exists());
    let o = bin()
        .args([
            "aggregate",
            "--method",
            "multi-krum",
            "--byzantine",
            "1",
            "--drop-nonfinite",
            "--json",
            "--input",
        ])
        .arg(&inp)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["dropped_nonfinite"], serde_json::json!([2]));
    assert_eq!(doc["used_clients"], 6);
    let sel: Vec<u64> = doc["selected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(sel.len(), 5, "keep defaults to n - f");
    assert!(!sel.contains(&2) && !sel.contains(&5), "{sel:?}");
}

#[test]
fn too_few_clients_and_bad_shapes_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (dir.path().join("u.npy"), dir.path().join("agg.npy"));
    write_f32(&inp, &[7, 3], &updates());
    let o = bin()
        .args([
            "aggregate",
            "--method",
            "bulyan",
            "--byzantine",
            "2",
            "--json",
            "--input",
        ])
        .arg(&inp)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let e = doc["error"].as_str().unwrap();
    assert!(e.contains("4f + 3") && e.contains("7 clients"), "{e}");

    let flat = dir.path().join("flat.npy");
    write_f32(&flat, &[21], &updates());
    let o = bin()
        .args(["aggregate", "--method", "median", "--input"])
        .arg(&flat)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("2-D"));

    let w = dir.path().join("w.npy");
    write_f32(&w, &[5], &[1.0; 5]);
    let o = bin()
        .args(["aggregate", "--method", "fedavg", "--input"])
        .arg(&inp)
        .arg("--weights")
        .arg(&w)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("w.npy") && err.contains("7 numbers"), "{err}");
}

#[test]
fn weights_change_fedavg() {
    let dir = tempfile::tempdir().unwrap();
    let (inp, out, w) = (
        dir.path().join("u.npy"),
        dir.path().join("agg.npy"),
        dir.path().join("w.npy"),
    );
    write_f32(&inp, &[2, 1], &[0.0, 10.0]);
    let payload: Vec<u8> = [3i64, 1].iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(&w, npy("<i8", &[2], &payload)).unwrap();
    let o = bin()
        .args(["aggregate", "--method", "fedavg", "--input"])
        .arg(&inp)
        .arg("--weights")
        .arg(&w)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read_f32_1d(&out), vec![2.5]);
}
