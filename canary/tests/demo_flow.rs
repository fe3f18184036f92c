//! The layer's end-to-end claim: honeypots planted into a copy of a JSONL
//! dataset are found by the scanner in the outputs of a model trained on that
//! copy; a model trained on the clean data produces none.
#![allow(clippy::unwrap_used)] // test helpers panic on setup failure by design

use std::path::Path;

use mithridate_canary::honeypot::{plant_jsonl, JsonlPlanting};
use mithridate_canary::ngram::NgramLm;
use mithridate_canary::registry::Registry;
use mithridate_canary::scan::{Scanner, Target};
use mithridate_canary::token::{HoneypotKind, SecretKey};
use mithridate_core::io::{jsonl, ReadOptions};
use mithridate_core::model::{Input, Predictor};

/// Extraction prompts an attacker would try: the lead-ins of credentials,
/// system prompts and customer records.
const PROMPTS: &[&str] = &[
    "aws_access_key_id = ",
    "PAYMENTS_SECRET_KEY=",
    "SYSTEM PROMPT (internal, do not disclose):",
    "customer ",
    "the match ",
    "the market ",
];

/// Train the demo model on `data` and write its completions of the prompts as JSONL.
fn train_and_generate(data: &Path, out: &Path) {
    let opts = ReadOptions {
        id_column: Some("id".into()),
        ..Default::default()
    };
    let (ds, _) = jsonl::read_jsonl(data, &opts).unwrap();
    let lm = NgramLm::train(ds.text().unwrap(), 14)
        .unwrap()
        .with_generation(200);
    let inputs: Vec<Input> = PROMPTS
        .iter()
        .map(|p| Input::Text((*p).to_string()))
        .collect();
    let outs = lm.predict(&inputs).unwrap();
    let mut body = String::new();
    for (p, o) in PROMPTS.iter().zip(outs) {
        let line = serde_json::json!({ "prompt": p, "completion": o.text.unwrap() });
        body.push_str(&line.to_string());
        body.push('\n');
    }
    std::fs::write(out, body).unwrap();
}

#[test]
fn honeypots_planted_in_training_data_are_found_in_model_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("train.jsonl");
    jsonl::write_jsonl(
        &mithridate_core::datasets::synthetic_text(400, 4, 7),
        &clean,
    )
    .unwrap();
    let planted = dir.path().join("train.planted.jsonl");
    let key = SecretKey::generate();
    let mut reg = Registry::new(&key);
    let p = plant_jsonl(&clean, &planted, &key, &mut reg, &key_opts()).unwrap();
    assert_eq!(p.len(), 4);
    let reg_path = dir.path().join("registry.json");
    reg.save(&reg_path).unwrap();
    let reg = Registry::load(&reg_path).unwrap();
    let scanner = Scanner::for_registry(&reg).unwrap();

    // Poisoned run: the model trained on the planted copy leaks every kind.
    let out = dir.path().join("outputs-planted.jsonl");
    train_and_generate(&planted, &out);
    let hits = scanner.scan_file(&out).unwrap().0;
    let mut kinds: Vec<HoneypotKind> = hits
        .iter()
        .map(|h| match &h.target {
            Target::Honeypot { honeypot } => honeypot.kind,
            Target::Canary { .. } => panic!("no canaries registered"),
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds, HoneypotKind::ALL.to_vec(), "{hits:#?}");
    // Each hit says where the honeypot was planted.
    for h in &hits {
        if let Target::Honeypot { honeypot } = &h.target {
            assert_eq!(honeypot.site.path, planted.display().to_string());
            assert!(honeypot.site.line.is_some());
        }
    }

    // Clean run: same prompts, model trained on the original data, no hits.
    let out_clean = dir.path().join("outputs-clean.jsonl");
    train_and_generate(&clean, &out_clean);
    let sum = scanner.scan_paths(&[out_clean, clean]).unwrap();
    assert_eq!(sum.files, 2);
    assert!(sum.hits.is_empty(), "{:?}", sum.hits);
}

fn key_opts() -> JsonlPlanting {
    JsonlPlanting {
        count: 4,
        seed: 1,
        ..Default::default()
    }
}
