//! mithridate robust layer.
pub mod aggregate;
pub mod dp;
