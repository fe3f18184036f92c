//! # mithridate-policy
//!
//! Composes the five defense layers into a pipeline by risk tier, applies a
//! team's `mithridate.toml` overrides, runs the pipeline stage by stage, and
//! writes the audit report (JSON, Markdown, self-contained HTML).
//!
//! ```no_run
//! use mithridate_policy::{Config, EffectivePolicy, Inputs, Pipeline, Tier};
//! use mithridate_core::{Context, Stage, datasets::digits};
//! let policy = EffectivePolicy::new(Tier::Medium, &Config::default())?;
//! let inputs = Inputs::default();
//! let pipe = Pipeline::build(policy, &inputs)?;
//! let mut cx = Context::new(42).with_dataset(digits());
//! let run = pipe.run(&mut cx, &[Stage::Ingest, Stage::Train])?;
//! println!("gate: {}", run.verdict);
//! # Ok::<(), mithridate_core::Error>(())
//! ```

pub mod audit;
pub mod config;
pub mod html;
pub mod pipeline;
pub mod runner;
pub mod tier;

pub use audit::{AuditReport, PostureItem, Series, Table};
pub use config::{Config, TrainingMode};
pub use pipeline::{EffectivePolicy, Inputs, Pipeline, RunSummary, Skipped};
pub use tier::Tier;
