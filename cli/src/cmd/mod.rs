//! One module per command group. Each exposes its clap arguments and a
//! `run(args, &Global) -> anyhow::Result<Outcome>`.
pub mod aggregate;
pub mod canary;
pub mod privacy;
pub mod provenance;
pub mod run;
pub mod scan;
pub mod serve;
pub mod train;
pub mod validate;
