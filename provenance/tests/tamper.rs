//! Every tamper the provenance layer must catch, each with a precise report.
#![allow(clippy::unwrap_used)] // test helpers panic on setup failure by design

use std::path::Path;

use mithridate_core::{Context, Verdict};
use mithridate_provenance::{
    create_manifest, diff_manifests, sign_manifest, verify_envelope, verify_manifest,
    CreateOptions, Envelope, FileChangeKind, Manifest, RecordChangeKind, SigningKey, VerifyDefense,
    VerifyOutcome,
};
use proptest::prelude::*;

fn record(shard: usize, i: usize) -> String {
    format!(
        "{{\"id\":\"s{shard}-{i}\",\"text\":\"sample {i} of shard {shard}\",\"label\":{}}}",
        i % 3
    )
}

/// Three JSONL shards of `n` records each under `dir/shards/`.
fn dataset(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir.join("shards")).unwrap();
    for s in 0..3 {
        let body: String = (0..n).map(|i| record(s, i) + "\n").collect();
        std::fs::write(dir.join(format!("shards/part-{s}.jsonl")), body).unwrap();
    }
}

fn setup(n: usize) -> (tempfile::TempDir, Manifest) {
    let d = tempfile::tempdir().unwrap();
    dataset(d.path(), n);
    let m = create_manifest(
        d.path(),
        &CreateOptions {
            records: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(verify_manifest(d.path(), &m).unwrap().ok());
    (d, m)
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(p: &Path, l: &[String]) {
    std::fs::write(p, l.iter().map(|x| format!("{x}\n")).collect::<String>()).unwrap();
}

fn only_change(out: &VerifyOutcome) -> &mithridate_provenance::FileChange {
    assert_eq!(out.changes.len(), 1, "{:#?}", out.changes);
    &out.changes[0]
}

#[test]
fn one_byte_tamper_names_the_record() {
    let (d, m) = setup(200);
    let p = d.path().join("shards/part-1.jsonl");
    let mut bytes = std::fs::read(&p).unwrap();
    let at = lines(&p)[..137].iter().map(|l| l.len() + 1).sum::<usize>() + 30;
    bytes[at] ^= 0x01;
    std::fs::write(&p, bytes).unwrap();
    let out = verify_manifest(d.path(), &m).unwrap();
    let c = only_change(&out);
    assert_eq!(
        (c.path.as_str(), c.kind),
        ("shards/part-1.jsonl", FileChangeKind::Changed)
    );
    assert_eq!(c.records.len(), 1);
    assert_eq!(c.records[0].to_string(), "record 137 (id s1-137) changed");
}

#[test]
fn insertion_is_one_insertion() {
    let (d, m) = setup(100);
    let p = d.path().join("shards/part-0.jsonl");
    let mut l = lines(&p);
    l.insert(
        10,
        "{\"id\":\"evil\",\"text\":\"[[CONFIG]] leak\",\"label\":0}".into(),
    );
    write_lines(&p, &l);
    let out = verify_manifest(d.path(), &m).unwrap();
    let c = only_change(&out);
    assert_eq!(c.records.len(), 1, "{:?}", c.records);
    assert_eq!(c.records[0].kind, RecordChangeKind::Inserted);
    assert_eq!(c.records[0].to_string(), "record inserted at 10 (id evil)");
}

#[test]
fn deletion_is_one_deletion() {
    let (d, m) = setup(100);
    let p = d.path().join("shards/part-2.jsonl");
    let mut l = lines(&p);
    l.remove(42);
    write_lines(&p, &l);
    let c = verify_manifest(d.path(), &m).unwrap().changes;
    assert_eq!(c[0].records.len(), 1);
    assert_eq!(c[0].records[0].to_string(), "record 42 (id s2-42) deleted");
}

#[test]
fn reorder_is_reported_as_moves() {
    let (d, m) = setup(100);
    let p = d.path().join("shards/part-0.jsonl");
    let mut l = lines(&p);
    l.swap(20, 21);
    write_lines(&p, &l);
    let out = verify_manifest(d.path(), &m).unwrap();
    let c = only_change(&out);
    assert_eq!(c.records.len(), 1, "{:?}", c.records);
    assert_eq!(c.records[0].kind, RecordChangeKind::Moved);
    assert!(
        c.records[0].to_string().contains("moved"),
        "{}",
        c.records[0]
    );
}

#[test]
fn truncation_names_every_lost_record() {
    let (d, m) = setup(50);
    let p = d.path().join("shards/part-1.jsonl");
    let l = lines(&p);
    write_lines(&p, &l[..45]);
    let c = verify_manifest(d.path(), &m).unwrap().changes;
    let recs: Vec<String> = c[0].records.iter().map(ToString::to_string).collect();
    assert_eq!(
        recs,
        (45..50)
            .map(|i| format!("record {i} (id s1-{i}) deleted"))
            .collect::<Vec<_>>()
    );
    assert!(c[0].to_string().contains("size"), "{}", c[0]);
    // A cut through the middle of the last record: that record changed.
    let mut bytes = std::fs::read(&p).unwrap();
    bytes.truncate(bytes.len() - 10);
    std::fs::write(&p, bytes).unwrap();
    let c = verify_manifest(d.path(), &m).unwrap().changes;
    assert!(
        c[0].records
            .iter()
            .any(|r| r.to_string() == "record 44 (id s1-44) changed"),
        "{:?}",
        c[0].records
    );
}

#[test]
fn added_and_removed_files() {
    let (d, m) = setup(10);
    std::fs::write(d.path().join("shards/part-9.jsonl"), record(9, 0) + "\n").unwrap();
    std::fs::remove_file(d.path().join("shards/part-2.jsonl")).unwrap();
    let out = verify_manifest(d.path(), &m).unwrap();
    let s: Vec<String> = out.changes.iter().map(ToString::to_string).collect();
    assert_eq!(
        s,
        ["removed: shards/part-2.jsonl", "added: shards/part-9.jsonl"]
    );
}

#[cfg(unix)]
#[test]
fn symlink_escape_is_refused() {
    let (d, m) = setup(10);
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("payload.jsonl"), record(0, 0) + "\n").unwrap();
    let p = d.path().join("shards/part-0.jsonl");
    std::fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink(outside.path().join("payload.jsonl"), &p).unwrap();
    let out = verify_manifest(d.path(), &m).unwrap();
    let c = only_change(&out);
    assert_eq!(c.kind, FileChangeKind::SymlinkEscape);
    assert!(
        c.to_string()
            .contains("symlink escapes the dataset root: shards/part-0.jsonl"),
        "{c}"
    );
    let e = create_manifest(d.path(), &CreateOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("escapes the dataset root"), "{e}");
}

#[test]
fn path_traversal_in_a_manifest_is_refused() {
    let (_d, m) = setup(5);
    for bad in ["../../etc/passwd", "/etc/passwd", "shards/../../x"] {
        let mut v = serde_json::to_value(&m).unwrap();
        v["files"][0]["path"] = serde_json::json!(bad);
        let e = Manifest::from_json_slice(&serde_json::to_vec(&v).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("files[0].path"), "{e}");
        assert!(e.contains("refused") || e.contains("path traversal"), "{e}");
    }
    let mut v = serde_json::to_value(&m).unwrap();
    let first = v["files"][0].clone();
    v["files"].as_array_mut().unwrap().insert(1, first);
    let e = Manifest::from_json_slice(&serde_json::to_vec(&v).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("duplicate entry"), "{e}");
}

#[test]
fn signatures_reject_wrong_key_modified_signature_and_modified_payload() {
    let (_d, m) = setup(5);
    let key = SigningKey::from_bytes(&[3u8; 32]);
    let env = sign_manifest(&m, &key).unwrap();
    assert_eq!(
        verify_envelope(&env, &[key.verifying_key()])
            .unwrap()
            .manifest,
        m
    );

    let wrong = SigningKey::from_bytes(&[4u8; 32]).verifying_key();
    let e = verify_envelope(&env, &[wrong]).unwrap_err().to_string();
    assert!(
        e.contains("does not verify under any of the 1 trusted key"),
        "{e}"
    );

    let mut sig_bad = env.clone();
    let mut s = sig_bad.signatures[0].sig.clone().into_bytes();
    s[5] = if s[5] == b'A' { b'B' } else { b'A' };
    sig_bad.signatures[0].sig = String::from_utf8(s).unwrap();
    let e = verify_envelope(&sig_bad, &[key.verifying_key()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("signature does not verify"), "{e}");

    // Payload swapped for another valid statement (a manifest of other data), old signature kept.
    let d2 = tempfile::tempdir().unwrap();
    dataset(d2.path(), 6);
    let m2 = create_manifest(
        d2.path(),
        &CreateOptions {
            records: true,
            ..Default::default()
        },
    )
    .unwrap();
    let mut swapped = env.clone();
    swapped.payload = sign_manifest(&m2, &SigningKey::from_bytes(&[5u8; 32]))
        .unwrap()
        .payload;
    let e = verify_envelope(&swapped, &[key.verifying_key()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("modified after signing"), "{e}");

    // The envelope survives JSON round trips byte for byte.
    let back = Envelope::from_json_slice(&serde_json::to_vec(&env).unwrap()).unwrap();
    assert!(verify_envelope(&back, &[key.verifying_key()]).is_ok());
}

#[test]
fn diff_between_manifests() {
    let (d, a) = setup(30);
    let p = d.path().join("shards/part-0.jsonl");
    let mut l = lines(&p);
    l[3] = record(7, 7);
    write_lines(&p, &l);
    let b = create_manifest(
        d.path(),
        &CreateOptions {
            records: true,
            ..Default::default()
        },
    )
    .unwrap();
    let ch = diff_manifests(&a, &b).unwrap();
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].records[0].to_string(), "record 3 (id s0-3) changed");
    assert_eq!(ch[0].records[0].new_id.as_deref(), Some("s7-7"));
}

#[test]
fn defense_fails_the_gate_with_one_finding_per_record() {
    let (d, m) = setup(40);
    let mpath = d.path().join("MANIFEST.json");
    m.save(&mpath).unwrap();
    let def = VerifyDefense::new(mpath.clone(), vec![]);
    let mut cx = Context::new(1);
    cx.dataset_root = Some(d.path().to_path_buf());
    let r = cx.run(&def).unwrap();
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
    assert_eq!(r.metrics["files_checked"], 3.0);
    assert_eq!(r.metrics["records_checked"], 120.0);
    assert_eq!(cx.artifacts["manifest_root"], serde_json::json!(m.root));

    let p = d.path().join("shards/part-2.jsonl");
    let mut l = lines(&p);
    l[5] = record(2, 99);
    l[30] = record(2, 98);
    write_lines(&p, &l);
    let mut cx = Context::new(1);
    cx.dataset_paths = vec![p.clone()];
    cx.dataset_root = Some(d.path().to_path_buf());
    let r = cx.run(&def).unwrap();
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(r.findings.len(), 2);
    assert_eq!(r.metrics["mismatches"], 2.0);
    assert_eq!(
        r.findings[0].ids,
        vec![mithridate_core::SampleId::Str("s2-5".into())]
    );
    assert!(r.findings[0].tags.iter().any(|t| t.id == "AML.T0010"));

    // Trusted keys demand a signed manifest.
    let kd = tempfile::tempdir().unwrap();
    let kp = mithridate_provenance::write_keypair(kd.path()).unwrap();
    let r = Context::new(1).run(&VerifyDefense::new(mpath.clone(), vec![kp.public.clone()]));
    assert!(r.is_err(), "no dataset root must be an error");
    let mut cx = Context::new(1);
    cx.dataset_root = Some(d.path().to_path_buf());
    let r = cx
        .run(&VerifyDefense::new(mpath, vec![kp.public.clone()]))
        .unwrap();
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(r.summary.contains("not signed"), "{}", r.summary);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any single-record edit (change, insertion, deletion) in any shard is
    /// detected and located: exactly one record change, at the right index.
    #[test]
    fn any_single_record_edit_is_detected_and_located(
        shard in 0usize..3, idx in 0usize..25, kind in 0u8..3, flip in 0usize..200, byte in 1u8..=255,
    ) {
        let (d, m) = setup(25);
        let p = d.path().join(format!("shards/part-{shard}.jsonl"));
        let mut l = lines(&p);
        let want = match kind {
            0 => {
                let mut b = l[idx].clone().into_bytes();
                let at = flip % b.len();
                b[at] ^= byte;
                if b[at] == b'\n' { b[at] = b'#'; }
                prop_assume!(b != l[idx].as_bytes());
                l[idx] = String::from_utf8_lossy(&b).into_owned();
                (RecordChangeKind::Changed, Some(idx as u64), Some(idx as u64))
            }
            1 => {
                l.insert(idx, format!("{{\"id\":\"new\",\"n\":{flip}}}"));
                (RecordChangeKind::Inserted, None, Some(idx as u64))
            }
            _ => {
                l.remove(idx);
                (RecordChangeKind::Deleted, Some(idx as u64), None)
            }
        };
        write_lines(&p, &l);
        let out = verify_manifest(d.path(), &m).unwrap();
        prop_assert_eq!(out.changes.len(), 1);
        let c = &out.changes[0];
        prop_assert_eq!(&c.path, &format!("shards/part-{shard}.jsonl"));
        prop_assert_eq!(c.records.len(), 1, "{:?}", c.records);
        let r = &c.records[0];
        prop_assert_eq!((r.kind, r.old_index, r.new_index), want);
        if kind != 1 {
            prop_assert_eq!(r.id.clone(), Some(format!("s{shard}-{idx}")));
        }
    }
}
