//! # mithridate-core
//!
//! The shared vocabulary of mithridate, a toolkit that defends machine-learning
//! training pipelines against data poisoning:
//!
//! - [`Defense`], [`Layer`], [`Stage`], [`Context`]: what every defense layer
//!   implements and what a pipeline carries between defenses;
//! - [`Report`], [`Finding`], [`Verdict`], [`ThreatTag`]: what defenses say;
//! - [`Quarantine`]: flagged samples, kept with their reasons, never deleted;
//! - [`Dataset`] and the readers and writers in [`io`] (CSV, JSONL, NPY);
//! - [`model`]: the [`Classifier`], [`Trainer`] and [`Predictor`] traits and a
//!   built-in softmax regression;
//! - [`attack`]: attack simulators (BadNets, blended, label flips, text
//!   triggers, the every-Nth-record tamper, instruction-pair poisoning);
//! - [`datasets`]: the embedded UCI digits set and synthetic text sets;
//! - with feature `proptest`, `strategies` for property-based tests.
//!
//! ```
//! use mithridate_core::{attack::{Attack, BadNets}, datasets::digits};
//! let clean = digits();
//! let poisoned = BadNets::digits(0.01).poison(&clean, 42)?;
//! assert_eq!(poisoned.poisoned_ids.len(), 18);
//! # Ok::<(), mithridate_core::Error>(())
//! ```

pub mod attack;
pub mod dataset;
pub mod datasets;
pub mod defense;
pub mod error;
pub mod io;
pub mod model;
pub mod quarantine;
pub mod report;
pub mod rng;
#[cfg(feature = "proptest")]
pub mod strategies;

pub use dataset::{Dataset, Origin, SampleId};
pub use defense::{Context, Defense, Layer, NoProgress, Progress, Stage};
pub use error::{Error, Location, Result};
pub use model::{Classifier, Predictor, Trainer};
pub use quarantine::{Quarantine, QuarantineEntry, Reason};
pub use report::{Finding, Report, ThreatTag, Verdict};
