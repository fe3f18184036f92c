//! The audit report: `report.json` (versioned schema), `report.md` and a
//! self-contained `report.html` (inline SVG, no network) for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use mithridate_core::io::atomic::write_bytes_atomic;
use mithridate_core::{Context, Layer, QuarantineEntry, Report, Result, Stage, Verdict};

use crate::pipeline::{EffectivePolicy, RunSummary, Skipped};

/// Schema identifier of `report.json`. Bumped on any incompatible change.
pub const SCHEMA: &str = "mithridate.audit/v1";

/// One control as it appears in the posture section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostureItem {
    /// Control (defense) name.
    pub name: String,
    /// Layer.
    pub layer: Layer,
    /// Stage.
    pub stage: Stage,
    /// `ran`, `skipped` or `disabled`.
    pub status: String,
    /// Verdict when it ran or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Summary, skip reason, or why the tier leaves it out.
    pub note: String,
}

/// A table for people (tiers side by side, accuracy against epsilon...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Title.
    pub title: String,
    /// Column headers.
    pub columns: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
}

/// A line plot: `(x, y)` points.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// The audit report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// mithridate version.
    pub tool_version: String,
    /// RFC 3339 time of writing.
    pub generated_at: String,
    /// Title.
    pub title: String,
    /// Stages run.
    pub stages: Vec<Stage>,
    /// The gate's verdict.
    pub verdict: Verdict,
    /// How the gate was reached where it differs from the reports' verdicts.
    #[serde(default)]
    pub gate_notes: Vec<String>,
    /// The effective policy after overrides.
    pub policy: EffectivePolicy,
    /// Every control: ran, skipped (and why), or disabled (and why).
    pub posture: Vec<PostureItem>,
    /// Every defense's report.
    pub reports: Vec<Report>,
    /// Quarantined samples with their reasons.
    pub quarantine: Vec<QuarantineEntry>,
    /// Named values left by defenses (manifest root, epsilon, ...).
    pub artifacts: BTreeMap<String, serde_json::Value>,
    /// Extra tables.
    #[serde(default)]
    pub tables: Vec<Table>,
    /// Extra plots.
    #[serde(default)]
    pub series: Vec<Series>,
}

impl AuditReport {
    /// Assemble from a finished run.
    pub fn new(
        title: &str,
        policy: &EffectivePolicy,
        stages: &[Stage],
        run: &RunSummary,
        cx: &Context,
    ) -> Self {
        let mut posture = Vec::new();
        for c in &policy.controls {
            let ran: Vec<&Report> = run
                .reports
                .iter()
                .filter(|r| control_of(&r.defense) == c.name)
                .collect();
            let skipped: Option<&Skipped> = run.skipped.iter().find(|s| s.name == c.name);
            let item = if let Some(r) = ran.first() {
                PostureItem {
                    name: r.defense.clone(),
                    layer: c.layer,
                    stage: c.stage,
                    status: "ran".into(),
                    verdict: Some(r.verdict),
                    note: r.summary.clone(),
                }
            } else if let Some(s) = skipped {
                PostureItem {
                    name: c.name.clone(),
                    layer: c.layer,
                    stage: c.stage,
                    status: "skipped".into(),
                    verdict: Some(s.verdict),
                    note: s.reason.clone(),
                }
            } else if !c.enabled {
                PostureItem {
                    name: c.name.clone(),
                    layer: c.layer,
                    stage: c.stage,
                    status: "disabled".into(),
                    verdict: None,
                    note: c.why.clone(),
                }
            } else {
                PostureItem {
                    name: c.name.clone(),
                    layer: c.layer,
                    stage: c.stage,
                    status: "not in this stage".into(),
                    verdict: None,
                    note: format!("runs at the {} stage", c.stage),
                }
            };
            posture.push(item);
        }
        Self {
            schema: SCHEMA.into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            generated_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                .to_string(),
            title: title.into(),
            stages: stages.to_vec(),
            verdict: run.verdict,
            gate_notes: run.notes.clone(),
            policy: policy.clone(),
            posture,
            reports: run.reports.clone(),
            quarantine: cx.quarantine.entries().cloned().collect(),
            artifacts: cx.artifacts.clone(),
            tables: Vec::new(),
            series: Vec::new(),
        }
    }

    /// Write `report.json`, `report.md` and `report.html` into `dir` (each atomically).
    pub fn write_all(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| mithridate_core::Error::io(dir, e))?;
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| mithridate_core::Error::data(e.to_string()))?;
        write_bytes_atomic(&dir.join("report.json"), &json)?;
        write_bytes_atomic(&dir.join("report.md"), self.to_markdown().as_bytes())?;
        write_bytes_atomic(&dir.join("report.html"), self.to_html().as_bytes())?;
        Ok(())
    }

    /// The Markdown report.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# {}\n", self.title);
        let _ = writeln!(
            s,
            "**Gate: {}** · tier **{}** · stages {} · mithridate {} · {}\n",
            self.verdict,
            self.policy.tier,
            self.stages
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            self.tool_version,
            self.generated_at
        );
        for n in &self.gate_notes {
            let _ = writeln!(s, "> {n}\n");
        }
        let _ = writeln!(
            s,
            "## Posture\n\nTier requirement: {}.\n\nModel checked: {}.\n",
            self.policy.requirement, self.policy.model
        );
        let _ = writeln!(
            s,
            "| control | layer | stage | status | verdict | note |\n|---|---|---|---|---|---|"
        );
        for p in &self.posture {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                p.name,
                p.layer,
                p.stage,
                p.status,
                p.verdict.map_or_else(String::new, |v| v.to_string()),
                md_cell(&p.note)
            );
        }
        for t in &self.tables {
            let _ = writeln!(s, "\n## {}\n", t.title);
            let _ = writeln!(s, "| {} |", t.columns.join(" | "));
            let _ = writeln!(s, "|{}", "---|".repeat(t.columns.len()));
            for r in &t.rows {
                let _ = writeln!(
                    s,
                    "| {} |",
                    r.iter().map(|c| md_cell(c)).collect::<Vec<_>>().join(" | ")
                );
            }
        }
        let _ = writeln!(s, "\n## Controls\n");
        for r in &self.reports {
            let _ = writeln!(
                s,
                "### {} ({} / {}) — {}\n\n{}\n",
                r.defense, r.layer, r.stage, r.verdict, r.summary
            );
            if !r.metrics.is_empty() {
                let _ = writeln!(s, "| metric | value |\n|---|---|");
                for (k, v) in &r.metrics {
                    let _ = writeln!(s, "| {k} | {} |", fmt_num(*v));
                }
            }
            for f in r.findings.iter().take(20) {
                let tags: Vec<String> = f.tags.iter().map(ToString::to_string).collect();
                let _ = writeln!(
                    s,
                    "- score {} — {} [{}]{}",
                    fmt_num(f.score),
                    f.reason,
                    tags.join(", "),
                    if f.ids.is_empty() {
                        String::new()
                    } else {
                        format!(" (samples: {})", ids_text(&f.ids, 12))
                    }
                );
            }
            if r.findings.len() > 20 {
                let _ = writeln!(
                    s,
                    "- … {} more findings in report.json",
                    r.findings.len() - 20
                );
            }
            s.push('\n');
        }
        let _ = writeln!(s, "## Quarantine ({} samples)\n", self.quarantine.len());
        if !self.quarantine.is_empty() {
            let _ = writeln!(s, "| id | score | reasons |\n|---|---|---|");
            for q in self.quarantine.iter().take(100) {
                let reasons: Vec<String> = q
                    .reasons
                    .iter()
                    .map(|r| format!("{}: {}", r.detector, r.message))
                    .collect();
                let _ = writeln!(
                    s,
                    "| {} | {} | {} |",
                    q.id,
                    fmt_num(q.score),
                    md_cell(&reasons.join("; "))
                );
            }
        }
        let _ = writeln!(
            s,
            "\n## Effective policy\n\n```\n{}```",
            self.policy.to_text()
        );
        s
    }

    /// The self-contained HTML report.
    pub fn to_html(&self) -> String {
        crate::html::render(self)
    }
}

/// The control a defense belongs to (train variants are all `train`).
pub fn control_of(defense: &str) -> &str {
    if defense.starts_with("train") {
        "train"
    } else {
        defense
    }
}

pub(crate) fn fmt_num(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 || v == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub(crate) fn ids_text(ids: &[mithridate_core::SampleId], max: usize) -> String {
    let mut v: Vec<String> = ids.iter().take(max).map(ToString::to_string).collect();
    if ids.len() > max {
        v.push(format!("… +{}", ids.len() - max));
    }
    v.join(", ")
}
