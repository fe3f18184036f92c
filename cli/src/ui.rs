//! Output conventions shared by every command: `--json` puts exactly one JSON
//! document on stdout; people's output, logs and progress bars go to stderr.

use std::process::ExitCode;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mithridate_core::Progress;

/// Options every command accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Print one JSON document on stdout and nothing else there.
    #[arg(long, global = true)]
    pub json: bool,
    /// More logging on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// No progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// What a command concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Pass,
    /// Exit 1: the gate failed.
    GateFailed,
}

impl Outcome {
    /// `GateFailed` when `failed`, else `Pass`.
    pub fn gate(failed: bool) -> Self {
        if failed {
            Outcome::GateFailed
        } else {
            Outcome::Pass
        }
    }
}

impl Global {
    /// Print `value` as the command's JSON document when `--json` is set.
    /// Returns true when it printed.
    pub fn emit_json<T: serde::Serialize>(&self, value: &T) -> anyhow::Result<bool> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        }
        Ok(self.json)
    }

    /// Human output line on stderr (suppressed by nothing: it is the command's answer for people).
    pub fn say(&self, line: impl AsRef<str>) {
        eprintln!("{}", line.as_ref());
    }

    /// A progress sink: indicatif bars on stderr, or nothing with `--quiet`/`--json`.
    pub fn progress(&self) -> std::sync::Arc<dyn Progress> {
        if self.quiet || self.json {
            std::sync::Arc::new(mithridate_core::NoProgress)
        } else {
            std::sync::Arc::new(Bars::default())
        }
    }
}

/// indicatif progress bars behind the [`Progress`] sink: one bar for the
/// steps of a pipeline (with elapsed time, ticking while a step that reports
/// nothing runs), one below it for the current step's own work.
pub struct Bars {
    multi: MultiProgress,
    steps: Mutex<Option<ProgressBar>>,
    bar: Mutex<Option<ProgressBar>>,
}

impl Default for Bars {
    fn default() -> Self {
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            steps: Mutex::new(None),
            bar: Mutex::new(None),
        }
    }
}

impl Progress for Bars {
    fn start(&self, what: &str, total: Option<u64>) {
        let bar = match total {
            Some(t) => ProgressBar::new(t).with_style(
                ProgressStyle::with_template("{spinner} {msg:<28} [{bar:30}] {pos}/{len} ({eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner(),
        };
        let bar = self.multi.add(bar);
        bar.set_message(what.to_owned());
        if let Ok(mut b) = self.bar.lock() {
            if let Some(old) = b.replace(bar) {
                old.finish_and_clear();
            }
        }
    }
    fn advance(&self, n: u64) {
        if let Ok(b) = self.bar.lock() {
            if let Some(b) = b.as_ref() {
                b.inc(n);
            }
        }
    }
    fn finish(&self) {
        if let Ok(mut b) = self.bar.lock() {
            if let Some(b) = b.take() {
                b.finish_and_clear();
            }
        }
    }
    fn step(&self, what: &str, index: usize, total: usize) {
        let Ok(mut s) = self.steps.lock() else {
            return;
        };
        if index >= total {
            if let Some(b) = s.take() {
                b.finish_and_clear();
            }
            return;
        }
        let bar = s.get_or_insert_with(|| {
            let b = self.multi.insert(
                0,
                ProgressBar::new(total as u64).with_style(
                    ProgressStyle::with_template(
                        "{spinner} step {pos}/{len} {msg:<28} [{elapsed_precise}]",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            );
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        });
        bar.set_length(total as u64);
        bar.set_position(index as u64 + 1);
        bar.set_message(what.to_owned());
    }
}

/// Logs go to stderr; `-v` raises the level; `RUST_LOG` overrides.
pub fn init_tracing(g: &Global) {
    let level = match g.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Map a command's result to the process exit code. Errors print their whole
/// cause chain on stderr (and as JSON on stdout with `--json`) and exit 2.
pub fn finish(g: &Global, result: anyhow::Result<Outcome>) -> ExitCode {
    match result {
        Ok(Outcome::Pass) => ExitCode::SUCCESS,
        Ok(Outcome::GateFailed) => ExitCode::from(1),
        Err(e) => {
            let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
            if g.json {
                let doc = serde_json::json!({ "error": chain.join(": ") });
                println!("{doc}");
            }
            eprintln!("error: {}", chain.join(": "));
            ExitCode::from(2)
        }
    }
}
