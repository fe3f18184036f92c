//! Record-level manifests are a stable format: signed manifests and
//! fixtures exist, so the bytes a given dataset produces must not change
//! when the hashing or the serialization is made faster. The digests pinned
//! here were produced by the two-pass implementation (whole-file digest,
//! then one leaf per record) and its serde-derived JSON.
#![allow(clippy::unwrap_used)] // test setup panics on failure by design

use mithridate_provenance::{create_manifest, Algorithm, CreateOptions, Manifest};

/// Deterministic JSONL of `n` records; lengths vary from empty to past one
/// BLAKE3 chunk, some ids need JSON escapes, some records have none.
fn jsonl(n: usize, seed: u64, final_newline: bool) -> Vec<u8> {
    let mut s = seed;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut out = Vec::new();
    for i in 0..n {
        let len = match next() % 10 {
            0 => 0,
            1 => 1000 + (next() % 1200) as usize,
            _ => (next() % 700) as usize,
        };
        match next() % 7 {
            0 => out.extend_from_slice(format!("{{\"id\":\"q\\\"{i}\\n\",\"t\":\"").as_bytes()),
            1 => out.extend_from_slice(b"{\"t\":\""),
            2 => out.extend_from_slice(format!("{{\"id\":{i},\"t\":\"").as_bytes()),
            _ => out.extend_from_slice(format!("{{\"id\":\"r{i:06}\",\"t\":\"").as_bytes()),
        }
        out.extend((0..len).map(|j| b'a' + ((j as u64 + next() % 3) % 26) as u8));
        out.extend_from_slice(b"\"}");
        if i + 1 < n || final_newline {
            out.push(b'\n');
        }
        if next() % 50 == 0 {
            out.push(b'\n');
        }
    }
    out
}

fn manifest_digest(files: &[(&str, Vec<u8>)], alg: Algorithm) -> (String, String) {
    let d = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(d.path().join(name), bytes).unwrap();
    }
    let m = create_manifest(
        d.path(),
        &CreateOptions {
            records: true,
            algorithm: alg,
            ..Default::default()
        },
    )
    .unwrap();
    let json = m.to_json_vec().unwrap();
    assert_eq!(Manifest::from_json_slice(&json).unwrap(), m);
    for f in &m.files {
        let (_, bytes) = files.iter().find(|(n, _)| *n == f.path).unwrap();
        let want = match alg {
            Algorithm::Blake3 => blake3::hash(bytes).to_hex().to_string(),
            Algorithm::Sha256 => {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(bytes))
            }
        };
        assert_eq!(f.digest, want, "{}", f.path);
    }
    (m.root, blake3::hash(&json).to_hex().to_string())
}

fn dataset() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a.jsonl", jsonl(3, 1, true)),
        ("b.jsonl", jsonl(20_000, 2, true)),
        ("c.jsonl", jsonl(9_000, 3, false)),
        ("d.jsonl", Vec::new()),
        ("e.jsonl", b"\n\n\n".to_vec()),
        ("f.csv", b"id,x\nr1,1\nr2,\"two\nlines\"\n".to_vec()),
        ("g.txt", jsonl(100, 4, true)),
    ]
}

#[test]
fn record_level_manifests_are_byte_stable() {
    let got = [
        manifest_digest(&dataset(), Algorithm::Blake3),
        manifest_digest(&dataset(), Algorithm::Sha256),
        manifest_digest(&[("one.jsonl", jsonl(40_000, 9, true))], Algorithm::Blake3),
    ];
    let want = [
        (
            "c76fe0f5a214eb3eb1812449eae25e5fcffc5658290f7a72a0951f044536628d",
            "be4eaf586a94c15db989a182dc2d580a5ae2b8c2a4d419ec8f47129d4759a190",
        ),
        (
            "957a46f2eca0821e87d1d0fba1c94e42444d4998be6c5af664291b2ba47df7bc",
            "a3bd3ee749ef5703c65b9437439e8f7132e84313cd63d6db14e29cf7cc659e0f",
        ),
        (
            "96611dfb8f94e712dc43effc63c9a2df8511139c89306374442d3c982408ddbc",
            "1c14cbe02307b302be6eb6035a25357893fadebfd1a213afebf1b3d00379eedd",
        ),
    ];
    for (i, ((root, json), (want_root, want_json))) in got.iter().zip(want).enumerate() {
        assert_eq!(root, want_root, "dataset {i}: manifest root");
        assert_eq!(json, want_json, "dataset {i}: manifest JSON bytes");
    }
}
