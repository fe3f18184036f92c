//! mithridate robust layer.
pub mod aggregate;
pub mod dp;
pub mod dpsgd;
pub mod mlp;
pub mod train;
pub use dp::{
    calibrate_sigma, epsilon_pld, epsilon_rdp, AccountantKind, PldAccountant, RdpAccountant,
};
pub use mlp::{Mlp, MlpParams, MlpTrainer};
pub use train::{
    utility_tradeoff, DpConfig, ModelKind, SavedModel, TradeoffPoint, TrainConfig, TrainDefense,
};
pub mod certified;
pub use certified::CertifiedTrainDefense;
