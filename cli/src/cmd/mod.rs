//! One module per command group. Each exposes its clap arguments and a
//! `run(args, &Global) -> anyhow::Result<Outcome>`.
pub mod aggregate;
pub mod provenance;
pub mod privacy;
pub mod run;
pub mod validate;
pub mod scan;
pub mod canary;
