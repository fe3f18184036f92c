//! Render the HTML audit report in a real headless browser (Debian's chromium):
//! the page must load, contain its plots, and paint a non-blank screenshot.
//!
//! Without chromium the test says so and passes, unless
//! `MITHRIDATE_REQUIRE_CHROMIUM=1` (set by `.ci/run`), where it fails.

#![allow(clippy::unwrap_used)] // test helpers panic on setup failure by design

use std::path::Path;
use std::process::Command;

use mithridate_core::{Context, Finding, Layer, Report, Stage, ThreatTag, Verdict};
use mithridate_policy::{AuditReport, Config, EffectivePolicy, RunSummary, Series, Table, Tier};

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| (*c).to_owned())
        })
}

fn sample_report() -> AuditReport {
    let policy = EffectivePolicy::new(Tier::Medium, &Config::default()).unwrap();
    let mut scan = Report::new("anomaly-scan", Layer::Anomaly, Stage::Ingest);
    scan.verdict = Verdict::Fail;
    scan.summary = "14 samples quarantined: trigger at pixels 45-63 -> class 7".into();
    scan.scores = (0..500)
        .map(|i| {
            if i < 14 {
                40.0 + i as f64
            } else {
                (i % 17) as f64 / 4.0
            }
        })
        .collect();
    scan.findings.push(
        Finding::new(42.0, "3x3 patch associated with label 7")
            .with_tags([ThreatTag::owasp_llm04(), ThreatTag::atlas_poison_training_data()])
            .with_detail(serde_json::json!({"image_svg": "<svg xmlns='http://www.w3.org/2000/svg' width='8' height='8'><rect x='5' y='5' width='3' height='3'/></svg>"})),
    );
    scan.metric("flagged", 14.0);
    let run = RunSummary {
        verdict: Verdict::Fail,
        reports: vec![scan],
        skipped: vec![],
        notes: vec![],
        elapsed_ms: 12.0,
    };
    let cx = Context::new(1);
    let mut r = AuditReport::new(
        "browser test <report>",
        &policy,
        &[Stage::Ingest],
        &run,
        &cx,
    );
    r.tables.push(Table {
        title: "tiers".into(),
        columns: vec!["tier".into(), "ASR".into()],
        rows: vec![vec!["medium".into(), "1.0%".into()]],
    });
    r.series.push(Series {
        title: "accuracy vs epsilon".into(),
        x_label: "epsilon".into(),
        y_label: "accuracy".into(),
        points: vec![(1.0, 0.7), (3.0, 0.85), (8.0, 0.9)],
    });
    r
}

fn png_is_not_blank(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    // A PNG with real content is much larger than a blank page's few hundred bytes.
    bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let Some(chrome) = chromium() else {
        if std::env::var("MITHRIDATE_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
            panic!("chromium is required (MITHRIDATE_REQUIRE_CHROMIUM=1) but not installed");
        }
        eprintln!("chromium not installed: browser check not run");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let report = sample_report();
    report.write_all(dir.path()).unwrap();
    let html = dir.path().join("report.html");
    let url = format!("file://{}", html.display());
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ];
    let profile = dir.path().join("profile");
    let dom = Command::new(&chrome)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &url])
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("browser test &lt;report&gt;"),
        "title missing or not escaped"
    );
    assert_eq!(
        dom.matches("class=\"bar\"").count(),
        30,
        "score histogram missing"
    );
    assert_eq!(dom.matches("<circle").count(), 3, "epsilon plot missing");
    assert!(
        dom.contains("LLM04:2025") && dom.contains("AML.T0020"),
        "threat tags missing"
    );
    assert!(
        dom.contains("data:image/svg+xml;base64,"),
        "trigger image missing"
    );
    let shot = dir.path().join("shot.png");
    let st = Command::new(&chrome)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .args(["--window-size=1200,1600", &url])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "screenshot failed: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(png_is_not_blank(&shot), "screenshot is blank or missing");
    if let Ok(keep) = std::env::var("MITHRIDATE_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
