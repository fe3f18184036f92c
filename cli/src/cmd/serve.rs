//! `mithridate serve`: a saved built-in model behind the JSONL command
//! protocol that `--cmd` and `[model] command` speak.
//!
//! One request a line on stdin, `{"id": i, "input": {"features": [..]}}`; one
//! answer a line on stdout, `{"id": i, "output": {"label": k, "proba": [..]}}`,
//! flushed line by line so a caller can stream. It lets a team put a model
//! trained with mithridate behind any tool that speaks the protocol, and lets
//! a pipeline's external-model path be exercised end to end.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use mithridate_core::model::{ClassifierPredictor, Input, Predictor};

use crate::{Global, Outcome};

/// `mithridate serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A saved built-in model (JSON written by `mithridate train`).
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    id: u64,
    input: Input,
}

/// Run `mithridate serve` until stdin ends.
pub fn run(a: ServeArgs, _g: &Global) -> Result<Outcome> {
    let model = mithridate_policy::runner::load_model_file(&a.model)?;
    let predictor = ClassifierPredictor {
        model: model.as_ref(),
    };
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    for (n, line) in stdin.lines().enumerate() {
        let line = line.with_context(|| format!("stdin line {}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let req: Request = serde_json::from_str(&line)
            .with_context(|| format!("stdin line {}: not a request", n + 1))?;
        let out = predictor
            .predict(std::slice::from_ref(&req.input))
            .with_context(|| format!("stdin line {} (id {})", n + 1, req.id))?;
        let Some(o) = out.into_iter().next() else {
            bail!("stdin line {}: the model gave no answer", n + 1);
        };
        let answer = serde_json::json!({ "id": req.id, "output": o });
        writeln!(stdout, "{answer}").context("writing stdout")?;
        stdout.flush().context("writing stdout")?;
    }
    Ok(Outcome::Pass)
}
