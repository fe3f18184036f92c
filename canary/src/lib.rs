//! mithridate canary layer.
pub mod canaries;
pub mod defense;
pub mod exposure;
pub mod honeypot;
pub mod monitor;
pub mod ngram;
pub mod registry;
pub mod scan;
pub mod token;

pub use defense::{AssertCanaries, PlantCanaries};
