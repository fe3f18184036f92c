//! Checks and their JUnit XML rendering.
//!
//! CI systems (GitLab, GitHub, Jenkins) show JUnit test cases one by one, so a
//! validation run is reported as one test suite per defense and one test case
//! per check (one per trigger and target, one per probe...): a reviewer sees
//! which trigger fired without opening the JSON.

use std::fmt::Write as _;

use mithridate_core::{Report, Verdict};
use serde::{Deserialize, Serialize};

/// One check of a validation defense: a future JUnit test case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Test-case name, e.g. `asr/badnets-br -> 7`.
    pub name: String,
    /// `Pass`, `Warn` (shown but not failed) or `Fail`.
    pub verdict: Verdict,
    /// What was measured and against what, for people.
    pub message: String,
    /// Measured value, when numeric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Threshold it was compared with, when numeric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

impl Check {
    /// A check with a verdict and message.
    pub fn new(name: impl Into<String>, verdict: Verdict, message: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            verdict,
            message: message.into(),
            value: None,
            threshold: None,
        }
    }
    /// The same check with a measured value and its threshold.
    #[must_use]
    pub fn measured(mut self, value: f64, threshold: f64) -> Self {
        self.value = Some(value);
        self.threshold = Some(threshold);
        self
    }
}

/// A defense's report with its checks: what the validation defenses return
/// from their `evaluate` functions, and what JUnit output is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The report (what the pipeline and the audit report see).
    pub report: Report,
    /// Each check, in order.
    pub checks: Vec<Check>,
}

impl Outcome {
    /// Keep the checks in the pipeline's artifacts under
    /// [`checks_artifact_key`]`(defense)`, where the CLI finds them for JUnit output.
    pub fn store_checks(
        &self,
        artifacts: &mut std::collections::BTreeMap<String, serde_json::Value>,
        defense: &str,
    ) {
        artifacts.insert(
            checks_artifact_key(defense),
            serde_json::to_value(&self.checks).unwrap_or_default(),
        );
    }

    /// Record `check` and raise the report's verdict to the check's.
    pub fn push(&mut self, check: Check) {
        self.report.escalate(check.verdict);
        self.checks.push(check);
    }
}

/// The artifact key under which a defense leaves its checks in the context.
pub fn checks_artifact_key(defense: &str) -> String {
    format!("validation/{defense}/checks")
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // XML 1.0 forbids most control characters even when escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

/// Render outcomes as one JUnit XML document: one `<testsuite>` per outcome
/// (named after the defense), one `<testcase>` per check; `Fail` checks carry
/// a `<failure>`, `Warn` checks a `<system-out>` note. An outcome without
/// checks becomes one test case for the report as a whole.
pub fn junit_xml(outcomes: &[Outcome]) -> String {
    let tests: usize = outcomes.iter().map(|o| o.checks.len().max(1)).sum();
    let failures: usize = outcomes
        .iter()
        .map(|o| {
            if o.checks.is_empty() {
                usize::from(o.report.verdict == Verdict::Fail)
            } else {
                o.checks
                    .iter()
                    .filter(|c| c.verdict == Verdict::Fail)
                    .count()
            }
        })
        .sum();
    let time: f64 = outcomes.iter().map(|o| o.report.elapsed_ms / 1e3).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(x, "<testsuites name=\"mithridate validate\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{time:.3}\">");
    for o in outcomes {
        let r = &o.report;
        let fallback;
        let checks: &[Check] = if o.checks.is_empty() {
            fallback = [Check::new(r.defense.clone(), r.verdict, r.summary.clone())];
            &fallback
        } else {
            &o.checks
        };
        let f = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" errors=\"0\" time=\"{:.3}\">",
            esc(&r.defense),
            checks.len(),
            r.elapsed_ms / 1e3
        );
        let per_case = r.elapsed_ms / 1e3 / checks.len() as f64;
        for c in checks {
            let _ = write!(
                x,
                "    <testcase classname=\"mithridate.{}.{}\" name=\"{}\" time=\"{per_case:.3}\"",
                esc(&r.layer.to_string()),
                esc(&r.defense),
                esc(&c.name)
            );
            match c.verdict {
                Verdict::Pass => {
                    let _ = writeln!(x, "/>");
                }
                Verdict::Warn => {
                    let _ = writeln!(
                        x,
                        ">\n      <system-out>WARN: {}</system-out>\n    </testcase>",
                        esc(&c.message)
                    );
                }
                Verdict::Fail => {
                    let _ = writeln!(
                        x,
                        ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
                        esc(&c.message),
                        esc(&r.defense),
                        esc(&c.message)
                    );
                }
            }
        }
        let _ = writeln!(x, "  </testsuite>");
    }
    x.push_str("</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use mithridate_core::{Layer, Stage};

    #[test]
    fn one_case_per_check_and_escaped() {
        let mut o = Outcome {
            report: Report::new("backdoor-trigger-test", Layer::Validation, Stage::Release),
            checks: vec![],
        };
        o.push(Check::new("asr/<x> & \"y\"", Verdict::Pass, "ok"));
        o.push(Check::new(
            "asr/badnets -> 7",
            Verdict::Fail,
            "ASR 92% > 5%\u{1}",
        ));
        o.push(Check::new("ece", Verdict::Warn, "meh"));
        let empty = Outcome {
            report: Report::new("holdout-gate", Layer::Validation, Stage::Release),
            checks: vec![],
        };
        let x = junit_xml(&[o, empty]);
        assert!(x.contains("tests=\"4\" failures=\"1\""), "{x}");
        assert!(x.contains("name=\"asr/&lt;x&gt; &amp; &quot;y&quot;\""));
        assert!(x.contains("<failure message=\"ASR 92% &gt; 5%\u{fffd}\""));
        assert!(x.contains("<system-out>WARN: meh</system-out>"));
        assert_eq!(x.matches("<testcase").count(), 4);
        assert!(!x.contains('\u{1}'));
    }
}
