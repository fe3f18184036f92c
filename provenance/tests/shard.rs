//! Shard manifests merge into the single-machine manifest.
#![allow(clippy::unwrap_used)] // test setup panics on failure by design

use mithridate_provenance::{
    create_manifest, create_shard_manifest, manifest_from_bytes, merge_manifests, Algorithm,
    CreateOptions, Manifest, MergeOptions, Metadata,
};
use proptest::prelude::*;

/// Contents of file `i`: JSONL, CSV or opaque bytes, depending on its name.
fn content(name: &str, i: usize, n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for r in 0..n {
        if name.ends_with(".jsonl") {
            v.extend_from_slice(format!("{{\"id\":\"f{i}r{r}\",\"x\":{}}}\n", r * i).as_bytes());
        } else if name.ends_with(".csv") {
            if r == 0 {
                v.extend_from_slice(b"id,x\n");
            }
            v.extend_from_slice(format!("f{i}r{r},{}\n", r + i).as_bytes());
        } else {
            v.push((r * 31 + i) as u8);
        }
    }
    v
}

fn names(k: usize) -> Vec<String> {
    (0..k)
        .map(|i| match i % 4 {
            0 => format!("part-{i}.jsonl"),
            1 => format!("sub/t{i}.csv"),
            2 => format!("sub/deep/blob{i}.bin"),
            _ => format!("z{i}.ndjson"),
        })
        .collect()
}

fn write_dataset(files: &[(String, Vec<u8>)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        let p = d.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    d
}

fn opts(records: bool, alg: Algorithm) -> CreateOptions {
    CreateOptions {
        records,
        algorithm: alg,
        metadata: Metadata {
            source: Some("s3://bucket/ds".into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any split of the files into shards, hashed from paths or from bytes,
    /// merges into exactly the single-machine manifest.
    #[test]
    fn merged_root_equals_single_machine_root(
        sizes in proptest::collection::vec(0usize..40, 1..10),
        assign in proptest::collection::vec(0usize..4, 10),
        records in any::<bool>(),
        sha in any::<bool>(),
        from_bytes in any::<bool>(),
    ) {
        let alg = if sha { Algorithm::Sha256 } else { Algorithm::Blake3 };
        let files: Vec<(String, Vec<u8>)> = names(sizes.len())
            .into_iter()
            .zip(&sizes)
            .enumerate()
            .map(|(i, (n, &k))| {
                let c = content(&n, i, k);
                (n, c)
            })
            .collect();
        let dir = write_dataset(&files);
        let o = opts(records, alg);
        let single = create_manifest(dir.path(), &o).unwrap();
        let mut shards: Vec<Manifest> = Vec::new();
        for s in 0..4 {
            let mine: Vec<&(String, Vec<u8>)> =
                files.iter().enumerate().filter(|(i, _)| assign[*i] == s).map(|(_, f)| f).collect();
            if mine.is_empty() {
                continue;
            }
            let m = if from_bytes {
                let items: Vec<(&str, &[u8])> =
                    mine.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
                manifest_from_bytes(&items, &o).unwrap()
            } else {
                let paths: Vec<&str> = mine.iter().map(|(n, _)| n.as_str()).collect();
                create_shard_manifest(dir.path(), &paths, &o).unwrap()
            };
            // A shard travels as JSON between machines.
            shards.push(Manifest::from_json_slice(&m.to_json_vec().unwrap()).unwrap());
        }
        let merged = merge_manifests(&shards, &MergeOptions::default()).unwrap();
        prop_assert_eq!(&merged.root, &single.root);
        prop_assert_eq!(merged, single);
    }
}

#[test]
fn retried_shard_counts_once_and_conflicts_are_named() {
    let files = vec![
        ("a.jsonl".to_owned(), content("a.jsonl", 1, 5)),
        ("b.jsonl".to_owned(), content("b.jsonl", 2, 5)),
    ];
    let dir = write_dataset(&files);
    let o = opts(true, Algorithm::Blake3);
    let a = create_shard_manifest(dir.path(), &["a.jsonl"], &o).unwrap();
    let b = create_shard_manifest(dir.path(), &[dir.path().join("b.jsonl")], &o).unwrap();
    let single = create_manifest(dir.path(), &o).unwrap();
    let merged = merge_manifests(&[a.clone(), b.clone(), a.clone()], &MergeOptions::default());
    assert_eq!(merged.unwrap().root, single.root);

    let other = manifest_from_bytes(&[("a.jsonl", b"{\"id\":\"x\"}\n".as_slice())], &o).unwrap();
    let e = merge_manifests(&[a.clone(), other], &MergeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("a.jsonl: shards 0 and 1 list different content"),
        "{e}"
    );

    let sha = create_shard_manifest(dir.path(), &["b.jsonl"], &opts(true, Algorithm::Sha256));
    let e = merge_manifests(&[a.clone(), sha.unwrap()], &MergeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("one dataset root needs one algorithm"), "{e}");

    assert!(merge_manifests(&[], &MergeOptions::default()).is_err());

    // Metadata: kept when the shards agree, replaced on request.
    let md = Metadata {
        license: Some("CC-BY-4.0".into()),
        ..Default::default()
    };
    let m = merge_manifests(
        &[a, b],
        &MergeOptions {
            metadata: Some(md.clone()),
            lineage: None,
        },
    )
    .unwrap();
    assert_eq!(m.metadata, md);
    assert_eq!(m.root, single.root, "metadata is not part of the root");
}

#[test]
fn shard_files_outside_the_root_are_refused() {
    let files = vec![("a.jsonl".to_owned(), content("a.jsonl", 1, 3))];
    let dir = write_dataset(&files);
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.jsonl"), b"{}\n").unwrap();
    let o = opts(true, Algorithm::Blake3);
    for bad in [
        outside.path().join("secret.jsonl"),
        std::path::PathBuf::from("../x.jsonl"),
        std::path::PathBuf::from("missing.jsonl"),
    ] {
        assert!(
            create_shard_manifest(dir.path(), &[&bad], &o).is_err(),
            "{bad:?} accepted"
        );
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(
            outside.path().join("secret.jsonl"),
            dir.path().join("evil.jsonl"),
        )
        .unwrap();
        let e = create_shard_manifest(dir.path(), &["evil.jsonl"], &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside the dataset root"), "{e}");
    }
    for bad in ["../x", "/etc/passwd", "a//b"] {
        assert!(manifest_from_bytes(&[(bad, b"x".as_slice())], &o).is_err());
    }
    let dup = [("a", b"x".as_slice()), ("a", b"y".as_slice())];
    assert!(manifest_from_bytes(&dup, &o).is_err());
}
