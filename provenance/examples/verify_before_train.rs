//! Sign a dataset's manifest, then verify before training: one tampered
//! record is caught and named.
//!
//! `cargo run -p mithridate-provenance --example verify_before_train`

use mithridate_provenance::{
    create_manifest, generate_keypair, sign_manifest, verify_envelope, verify_manifest,
    CreateOptions, Lineage, Metadata,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let shard = dir.path().join("train.jsonl");
    let rows: String = (0..1000)
        .map(|i| {
            format!(
                "{{\"id\":\"q{i}\",\"prompt\":\"question {i}\",\"answer\":\"{}\"}}\n",
                i * 2
            )
        })
        .collect();
    std::fs::write(&shard, &rows)?;

    let opts = CreateOptions {
        records: true,
        metadata: Metadata {
            source: Some("https://example.org/qa".into()),
            revision: Some("2026-11-01".into()),
            license: Some("CC-BY-4.0".into()),
            ..Default::default()
        },
        lineage: Some(Lineage {
            parents: vec!["ab".repeat(32)],
            step: "dedup".into(),
        }),
        ..Default::default()
    };
    let manifest = create_manifest(dir.path(), &opts)?;
    let key = generate_keypair();
    let envelope = sign_manifest(&manifest, &key)?;
    println!(
        "manifest root {} signed ({} records)",
        manifest.root,
        manifest.record_count()
    );

    // Later, before training: check the signature, then the data.
    let trusted = verify_envelope(&envelope, &[key.verifying_key()])?.manifest;
    assert!(verify_manifest(dir.path(), &trusted)?.ok());

    // A poisoner edits one answer.
    std::fs::write(
        &shard,
        rows.replace("\"answer\":\"1334\"", "\"answer\":\"rm -rf /\""),
    )?;
    let outcome = verify_manifest(dir.path(), &trusted)?;
    for change in &outcome.changes {
        println!("{change}");
        for r in &change.records {
            println!("  {r}");
        }
    }
    assert_eq!(outcome.changes[0].records[0].id.as_deref(), Some("q667"));
    Ok(())
}
