//! # mithridate-canary
//!
//! Layer 5 of mithridate: canary and honeypot data.
//!
//! - [`canaries`]: canary sets (fixed inputs with expected outputs, drawn from
//!   a secret seed) added to a training run and asserted afterwards through the
//!   [`mithridate_core::Predictor`] trait; [`PlantCanaries`] and
//!   [`AssertCanaries`] do this inside a pipeline.
//! - [`exposure`]: secret-sharer exposure (Carlini et al., USENIX Security
//!   2019) of random secrets inserted into a text training set, exact or
//!   estimated by sampling with a skew-normal extrapolation.
//! - [`token`], [`registry`], [`honeypot`]: fake credentials, system-prompt
//!   instructions and customer records whose tokens are minted by HMAC-SHA256
//!   from a secret key; the registry keeps only keyed digests, so it can live
//!   beside the data without revealing a token.
//! - [`scan`]: a streaming, parallel Aho-Corasick scanner that finds planted
//!   tokens and canaries in JSONL, CSV, text, `.gz` and `.zst` files, and
//!   says which honeypot, where and when it was planted, and where it was found.
//! - [`monitor`]: honeypot-file verification and live access monitoring.
//! - [`ngram`]: a small byte n-gram language model, the demo text model.
//!
//! ```
//! use mithridate_canary::registry::{Registry, Site};
//! use mithridate_canary::scan::{Scanner, Target};
//! use mithridate_canary::token::{HoneypotKind, SecretKey};
//!
//! let key = SecretKey::generate();
//! let mut registry = Registry::new(&key);
//! let (token, _) = registry.mint(&key, HoneypotKind::AwsKey, Site::file("s3://bucket/raw/"))?;
//! let leaked = format!("model output: aws_access_key_id = {token}\n");
//! let hits = Scanner::for_registry(&registry)?.scan_bytes(leaked.as_bytes(), "output.txt");
//! assert_eq!(hits.len(), 1);
//! assert!(matches!(&hits[0].target, Target::Honeypot { honeypot } if honeypot.site.path == "s3://bucket/raw/"));
//! # Ok::<(), mithridate_core::Error>(())
//! ```

pub mod canaries;
pub mod defense;
pub mod exposure;
pub mod honeypot;
pub mod monitor;
pub mod ngram;
pub mod registry;
pub mod scan;
pub mod token;

pub use defense::{AssertCanaries, PlantCanaries, ScanHoneypots, CANARY_SET_ARTIFACT};
