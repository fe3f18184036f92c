//! # mithridate-anomaly
//!
//! Layer 2 of mithridate: detectors that score every sample of a training
//! set, and a combiner that turns the scores into quarantine decisions under
//! an explicit false-positive budget, each decision explained.
//!
//! - [`trigger::FeatureTriggerMining`] and [`text::TextTriggerMining`]: find
//!   triggers nobody described (a patch anywhere, a blended pattern, a rare
//!   phrase) by their association with one label, confirmed counterfactually;
//! - [`label::LabelConsistency`]: cross-validated out-of-sample probabilities,
//!   confident learning and kNN label disagreement;
//! - [`outlier::KnnOutlier`], [`outlier::Mahalanobis`],
//!   [`spectral::SpectralSignatures`], [`spectral::ActivationClustering`]:
//!   unconfirmed anomaly scores;
//! - [`drift`]: MMD with a permutation test, KS and PSI between batches;
//! - [`scan()`] and [`ScanDefense`]: the default suite and the combiner.
//!
//! ```
//! use mithridate_anomaly::{scan, ScanParams};
//! use mithridate_core::{attack::{Attack, BadNets}, datasets::digits};
//! let poisoned = BadNets::digits(0.01).poison(&digits(), 7)?;
//! let out = scan(&poisoned.dataset, &ScanParams::default(), 7)?;
//! let found = out.decisions.iter().filter(|d| poisoned.poisoned_ids.contains(&d.entry.id)).count();
//! assert!(found >= 17, "found {found}");
//! # Ok::<(), mithridate_core::Error>(())
//! ```

pub mod detector;
pub mod drift;
pub mod label;
pub mod outlier;
pub mod scan;
pub mod spectral;
pub mod text;
pub mod trigger;
pub mod util;

pub use detector::{Detector, DetectorOutput, Flag, FlagKind};
pub use scan::{
    scan, scan_with_model, Decision, DetectorKind, ScanDefense, ScanOutcome, ScanParams,
};
