//! mithridate robust layer.
pub mod aggregate;
