//! `mithridate keygen` and `mithridate manifest ...`: the CLI contract
#![allow(clippy::unwrap_used)] // test helpers panic on setup failure by design
//! (exit codes 0 / 1 / 2, `--json` on stdout, people's text on stderr).

use std::path::Path;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mithridate"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run mithridate")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {:?}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

/// A dataset of two JSONL shards and a CSV file.
fn dataset(dir: &Path) {
    std::fs::create_dir_all(dir.join("shards")).unwrap();
    for s in 0..2 {
        let body: String = (0..30)
            .map(|i| {
                format!(
                    "{{\"id\":\"s{s}-{i}\",\"text\":\"t{i}\",\"label\":{}}}\n",
                    i % 2
                )
            })
            .collect();
        std::fs::write(dir.join(format!("shards/part-{s}.jsonl")), body).unwrap();
    }
    std::fs::write(dir.join("meta.csv"), "id,x\nr1,1\nr2,2\n").unwrap();
}

#[test]
fn keygen_create_sign_verify_pass_then_tamper_fails() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    dataset(&data);
    let keys = work.path().join("keys");

    let o = run(&["keygen", "--out", p(&keys), "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(json(&o)["keyid"].as_str().unwrap().len() == 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.join("mithridate.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    // Never silently replace a key.
    assert_eq!(code(&run(&["keygen", "--out", p(&keys)])), 2);

    let m = data.join("MANIFEST.json");
    let o = run(&[
        "manifest",
        "create",
        p(&data),
        "-o",
        p(&m),
        "--records",
        "--source",
        "s3://bucket/raw",
        "--revision",
        "v3",
        "--license",
        "CC-BY-4.0",
        "--collector",
        "team-a",
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let doc = json(&o);
    assert_eq!(doc["files"], 3, "manifest itself must not be hashed: {doc}");
    assert_eq!(doc["records"], 62);

    let signed = work.path().join("signed.json");
    let o = run(&[
        "manifest",
        "sign",
        p(&m),
        "--key",
        p(&keys.join("mithridate.key")),
        "-o",
        p(&signed),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let env: serde_json::Value = serde_json::from_slice(&std::fs::read(&signed).unwrap()).unwrap();
    assert_eq!(env["payloadType"], "application/vnd.in-toto+json");

    let pubkey = keys.join("mithridate.pub");
    let o = run(&[
        "manifest",
        "verify",
        p(&data),
        "--manifest",
        p(&signed),
        "--trust",
        p(&pubkey),
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let doc = json(&o);
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["signature"]["valid"], true);
    assert_eq!(doc["records_checked"], 62);

    // Tamper one record: exit 1, the record is named on stderr and in JSON.
    let shard = data.join("shards/part-1.jsonl");
    let text = std::fs::read_to_string(&shard)
        .unwrap()
        .replace("\"t17\"", "\"T17\"");
    std::fs::write(&shard, text).unwrap();
    let o = run(&[
        "manifest",
        "verify",
        p(&data),
        "--manifest",
        p(&signed),
        "--trust",
        p(&pubkey),
    ]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(
        err.contains("changed: shards/part-1.jsonl")
            && err.contains("record 17 (id s1-17) changed"),
        "{err}"
    );
    assert!(o.stdout.is_empty(), "human output must go to stderr");
    let o = run(&[
        "manifest",
        "verify",
        p(&data),
        "--manifest",
        p(&signed),
        "--trust",
        p(&pubkey),
        "--json",
    ]);
    assert_eq!(code(&o), 1);
    let doc = json(&o);
    assert_eq!(doc["changes"][0]["records"][0]["old_index"], 17);
    assert_eq!(doc["changes"][0]["records"][0]["id"], "s1-17");

    // Diff of the old manifest against one of the tampered data.
    let m2 = work.path().join("m2.json");
    assert_eq!(
        code(&run(&[
            "manifest",
            "create",
            p(&data),
            "-o",
            p(&m2),
            "--records",
            "-q"
        ])),
        0
    );
    let o = run(&["manifest", "diff", p(&m), p(&m2), "--json"]);
    assert_eq!(code(&o), 1);
    assert_eq!(json(&o)["changes"][0]["records"][0]["kind"], "changed");
    assert_eq!(code(&run(&["manifest", "diff", p(&m), p(&m)])), 0);
}

#[test]
fn signature_failures_exit_1_with_a_precise_message() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    dataset(&data);
    let m = work.path().join("m.json");
    assert_eq!(
        code(&run(&["manifest", "create", p(&data), "-o", p(&m)])),
        0
    );
    for k in ["a", "b"] {
        assert_eq!(code(&run(&["keygen", "--out", p(&work.path().join(k))])), 0);
    }
    let signed = work.path().join("s.json");
    let key_a = work.path().join("a/mithridate.key");
    assert_eq!(
        code(&run(&[
            "manifest",
            "sign",
            p(&m),
            "--key",
            p(&key_a),
            "-o",
            p(&signed)
        ])),
        0
    );

    // Wrong key.
    let o = run(&[
        "manifest",
        "verify",
        p(&data),
        "--manifest",
        p(&signed),
        "--trust",
        p(&work.path().join("b/mithridate.pub")),
    ]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("does not verify under any of the 1 trusted key"),
        "{}",
        stderr(&o)
    );

    // Unsigned manifest while keys are trusted.
    let o = run(&[
        "manifest",
        "verify",
        p(&data),
        "--manifest",
        p(&m),
        "--trust",
        p(&work.path().join("a/mithridate.pub")),
    ]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("not signed"), "{}", stderr(&o));

    // Payload edited under the old signature.
    let mut env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&signed).unwrap()).unwrap();
    let body = env["payload"].as_str().unwrap().to_owned();
    let mut b = body.into_bytes();
    let i = b.len() / 2;
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    env["payload"] = serde_json::json!(String::from_utf8(b).unwrap());
    let bad = work.path().join("bad.json");
    std::fs::write(&bad, serde_json::to_vec(&env).unwrap()).unwrap();
    let o = run(&[
        "manifest",
        "verify",
        p(&data),
        "--manifest",
        p(&bad),
        "--trust",
        p(&work.path().join("a/mithridate.pub")),
        "--json",
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(json(&o)["signature"]["error"]
        .as_str()
        .unwrap()
        .contains("modified after signing"));
}

#[test]
fn bad_input_exits_2_naming_the_problem() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    dataset(&data);
    let m = work.path().join("m.json");
    std::fs::write(&m, "{\"schema\": 3,\n \"oops\"").unwrap();
    let o = run(&[
        "manifest",
        "verify",
        p(&data),
        "--manifest",
        p(&m),
        "--json",
    ]);
    assert_eq!(code(&o), 2);
    assert!(
        json(&o)["error"]
            .as_str()
            .unwrap()
            .contains("m.json:line 2"),
        "{}",
        stderr(&o)
    );

    // A manifest with a traversal path is bad input, not a pass.
    assert_eq!(
        code(&run(&["manifest", "create", p(&data), "-o", p(&m)])),
        0
    );
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&m).unwrap()).unwrap();
    v["files"][0]["path"] = serde_json::json!("../outside.jsonl");
    std::fs::write(&m, serde_json::to_vec(&v).unwrap()).unwrap();
    let o = run(&["manifest", "verify", p(&data), "--manifest", p(&m)]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("files[0].path") && stderr(&o).contains("path traversal"),
        "{}",
        stderr(&o)
    );

    let o = run(&[
        "manifest",
        "verify",
        p(&work.path().join("missing")),
        "--manifest",
        p(&m),
    ]);
    assert_eq!(code(&o), 2);
}

#[test]
fn lineage_text_and_dot() {
    let work = tempfile::tempdir().unwrap();
    let raw = work.path().join("raw");
    dataset(&raw);
    let clean = work.path().join("clean");
    dataset(&clean);
    std::fs::remove_file(clean.join("meta.csv")).unwrap();
    let (mr, mc) = (work.path().join("raw.json"), work.path().join("clean.json"));
    assert_eq!(
        code(&run(&[
            "manifest",
            "create",
            p(&raw),
            "-o",
            p(&mr),
            "--source",
            "https://example.org/raw"
        ])),
        0
    );
    let o = run(&[
        "manifest",
        "create",
        p(&clean),
        "-o",
        p(&mc),
        "--parent",
        p(&mr),
        "--step",
        "filter",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(&["manifest", "lineage", p(&mr), p(&mc), "--dot"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let dot = String::from_utf8(o.stdout).unwrap();
    assert!(
        dot.starts_with("digraph lineage") && dot.contains("label=\"filter\""),
        "{dot}"
    );
    let o = run(&["manifest", "lineage", p(&mr), p(&mc)]);
    assert!(stderr(&o).contains("--filter-->"), "{}", stderr(&o));
    let o = run(&["manifest", "lineage", p(&mr), p(&mc), "--json"]);
    assert_eq!(json(&o)["edges"].as_array().unwrap().len(), 1);
}

#[test]
fn shard_manifests_merge_into_the_single_machine_root() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    dataset(&data);
    let whole = work.path().join("whole.json");
    let o = run(&[
        "manifest",
        "create",
        p(&data),
        "-o",
        p(&whole),
        "--records",
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let root = json(&o)["root"].as_str().unwrap().to_owned();

    let s0 = work.path().join("s0.json");
    let s1 = work.path().join("s1.json");
    for (out, files) in [
        (&s0, vec!["shards/part-0.jsonl", "meta.csv"]),
        (&s1, vec!["shards/part-1.jsonl"]),
    ] {
        let mut args = vec!["manifest", "create", p(&data), "-o", p(out), "--records"];
        for f in files {
            args.extend(["--file", f]);
        }
        let o = run(&args);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    let merged = work.path().join("merged.json");
    let o = run(&[
        "manifest",
        "merge",
        p(&s0),
        p(&s1),
        "-o",
        p(&merged),
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let doc = json(&o);
    assert_eq!(doc["root"].as_str().unwrap(), root);
    assert_eq!(doc["shards"], 2);
    assert_eq!(doc["records"], 62);
    // The merged manifest verifies the data like the single-machine one.
    let o = run(&["manifest", "verify", p(&data), "--manifest", p(&merged)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // A shard naming a file outside the dataset is an input error.
    let o = run(&[
        "manifest",
        "create",
        p(&data),
        "-o",
        p(&s0),
        "--file",
        "../whole.json",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    // Two shards disagreeing about one file: refused, the path named.
    std::fs::write(data.join("meta.csv"), "id,x\nr1,1\nr2,3\n").unwrap();
    let o = run(&[
        "manifest",
        "create",
        p(&data),
        "-o",
        p(&s1),
        "--records",
        "--file",
        "meta.csv",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(&["manifest", "merge", p(&s0), p(&s1), "-o", p(&merged)]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("meta.csv"), "{}", stderr(&o));
}
