//! # mithridate-validation
//!
//! Layer 4 of mithridate, continuous validation: what a model must pass
//! before it ships.
//!
//! - [`HoldoutGate`]: metrics on a clean holdout that provably never touched
//!   training (record-digest overlap check, recorded Merkle root), compared
//!   with absolute levels and a stored [`Baseline`];
//! - [`TriggerTest`]: known triggers (patches, blends, phrases) from a
//!   [`TriggerSuite`] file, with the attack success rate per trigger and target;
//! - [`TriggerScan`]: a search for unknown triggers (Neural Cleanse with the
//!   MAD anomaly index of the mask norms) and a STRIP entropy test;
//! - [`predictor`]: models outside the process (a JSONL command, an HTTP JSON
//!   endpoint, an OpenAI-compatible chat endpoint) with timeouts, retries and
//!   a concurrency limit;
//! - `onnx` (cargo feature `onnx`): ONNX image classifiers run in-process
//!   with `tract-onnx`, as a [`mithridate_core::Predictor`];
//! - [`llm`]: trigger-phrase, system-prompt-leak and behaviour-change probes;
//! - [`junit`]: JUnit XML so CI shows each trigger test as a test case.
//!
//! ```
//! use mithridate_core::{attack::{Attack, BadNets}, datasets::digits, model::{SoftmaxParams, SoftmaxRegression}};
//! use mithridate_validation::{TriggerSuite, TriggerTest, DEFAULT_MAX_ASR};
//! use mithridate_core::model::ClassifierPredictor;
//!
//! let all = digits();
//! let train = all.select(&(0..1400).collect::<Vec<_>>())?;
//! let holdout = all.select(&(1400..all.len()).collect::<Vec<_>>())?;
//! let x = train.features.as_ref().unwrap();
//! let model = SoftmaxRegression::fit(x.view(), train.labels.as_ref().unwrap(), 10, &SoftmaxParams::default(), 1)?;
//! let test = TriggerTest::new(TriggerSuite::from_badnets(vec![BadNets::digits(0.0)]), DEFAULT_MAX_ASR);
//! let (outcome, _) = test.evaluate(&ClassifierPredictor { model: &model }, &holdout, 1)?;
//! assert_eq!(outcome.report.verdict, mithridate_core::Verdict::Pass);
//! # Ok::<(), mithridate_core::Error>(())
//! ```

pub mod digest;
pub mod holdout;
pub mod junit;
pub mod llm;
pub mod metrics;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod predictor;
pub mod scan;
pub mod triggers;

pub use digest::HoldoutManifest;
pub use holdout::HoldoutGate;
pub use junit::{junit_xml, Check, Outcome};
pub use llm::{LlmProbes, ProbeSuite};
pub use metrics::{Baseline, Metrics};
pub use predictor::{ChatPredictor, CommandPredictor, ExternalOptions, HttpPredictor};
pub use scan::{ScanParams, Strip, TriggerScan};
pub use triggers::{AsrResult, TriggerSpec, TriggerSuite, TriggerTest, DEFAULT_MAX_ASR};
