//! mithridate canary layer.
pub mod registry;
pub mod scan;
pub mod token;
pub mod honeypot;
