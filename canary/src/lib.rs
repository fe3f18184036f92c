//! mithridate canary layer.
pub mod canaries;
pub mod defense;
pub mod honeypot;
pub mod registry;
pub mod scan;
pub mod token;

pub use defense::{AssertCanaries, PlantCanaries};
