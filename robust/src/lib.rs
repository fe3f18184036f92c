//! mithridate robust layer.
pub mod aggregate;
pub mod dp;
pub mod dpsgd;
pub mod mlp;
