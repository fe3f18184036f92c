//! `mithridate aggregate`: robust aggregation of federated client updates
//! stored as one `n x d` NPY matrix (one client per row).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use mithridate_core::io::npy::{read_npy, write_npy_f32_1d};
use mithridate_robust::aggregate::{aggregate_rows, Method};
use serde_json::json;

use crate::{Global, Outcome};

/// Aggregation rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// Coordinate-wise median.
    Median,
    /// Coordinate-wise trimmed mean (`--trim`).
    TrimmedMean,
    /// Krum (`--byzantine`).
    Krum,
    /// Multi-Krum (`--byzantine`, `--keep`).
    MultiKrum,
    /// Bulyan with Krum selection (`--byzantine`; needs n >= 4f + 3).
    Bulyan,
    /// Geometric median (smoothed Weiszfeld).
    GeometricMedian,
    /// Centered clipping (`--tau`, `--iters`).
    CenteredClipping,
    /// Weighted mean (no robustness; for comparison).
    Fedavg,
}

/// `mithridate aggregate`.
#[derive(Debug, clap::Args)]
pub struct AggregateArgs {
    /// Aggregation rule.
    #[arg(long, value_enum)]
    pub method: MethodArg,
    /// Fraction cut at each end by the trimmed mean (Flower's `beta`): int(F * n) values per side.
    #[arg(long, default_value_t = 0.2)]
    pub trim: f64,
    /// Assumed number of Byzantine clients f (Krum, Multi-Krum, Bulyan).
    #[arg(long, default_value_t = 0)]
    pub byzantine: usize,
    /// Clients kept by Multi-Krum (default n - f).
    #[arg(long)]
    pub keep: Option<usize>,
    /// Clipping radius of centered clipping (default: the median distance to the coordinate-wise median).
    #[arg(long)]
    pub tau: Option<f64>,
    /// Iterations of centered clipping.
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// Most Weiszfeld iterations of the geometric median.
    #[arg(long, default_value_t = 100)]
    pub max_iter: usize,
    /// Example count per client (1-D NPY of n numbers): weights for FedAvg, Multi-Krum's mean,
    /// geometric median and centered clipping; the other rules ignore weights, as Flower does.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Leave out clients whose update holds NaN or an infinity instead of failing.
    #[arg(long)]
    pub drop_nonfinite: bool,
    /// Client updates: NPY matrix, n clients x d parameters.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the aggregate (1-D f32 NPY of d values).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

fn method(a: &AggregateArgs, n: usize) -> Method {
    let f = a.byzantine;
    match a.method {
        MethodArg::Median => Method::Median,
        MethodArg::TrimmedMean => Method::TrimmedMean { beta: a.trim },
        MethodArg::Krum => Method::Krum { byzantine: f },
        MethodArg::MultiKrum => Method::MultiKrum {
            byzantine: f,
            keep: a.keep.unwrap_or(n.saturating_sub(f)),
        },
        MethodArg::Bulyan => Method::Bulyan { byzantine: f },
        MethodArg::GeometricMedian => Method::GeometricMedian {
            smoothing: 1e-6,
            max_iter: a.max_iter,
            tol: 1e-6,
        },
        MethodArg::CenteredClipping => Method::CenteredClipping {
            tau: a.tau,
            iters: a.iters,
        },
        MethodArg::Fedavg => Method::FedAvg,
    }
}

/// Run `mithridate aggregate`.
pub fn run(args: AggregateArgs, g: &Global) -> Result<Outcome> {
    let t0 = Instant::now();
    let arr = read_npy(&args.input)
        .with_context(|| format!("reading updates {}", args.input.display()))?;
    let (n, d) = match arr.shape.as_slice() {
        [n, d] => (*n, *d),
        s => bail!(
            "{}: updates must be a 2-D matrix (clients x parameters), got shape {s:?}",
            args.input.display()
        ),
    };
    if n == 0 {
        bail!(
            "{}: no client updates (shape [0, {d}])",
            args.input.display()
        );
    }
    let mut data: Vec<f32> = arr.data.iter().map(|&v| v as f32).collect();
    // A value finite in f64 that overflows f32 is as unusable as an infinity.
    let mut weights: Option<Vec<f32>> = match &args.weights {
        None => None,
        Some(p) => {
            let w = read_npy(p).with_context(|| format!("reading weights {}", p.display()))?;
            if w.shape.len() != 1 || w.shape[0] != n {
                bail!(
                    "{}: weights must be a 1-D array of {n} numbers (one per client row of {}), got shape {:?}",
                    p.display(),
                    args.input.display(),
                    w.shape
                );
            }
            Some(w.data.iter().map(|&v| v as f32).collect())
        }
    };
    let bad: Vec<usize> = (0..n)
        .filter(|&i| data[i * d..(i + 1) * d].iter().any(|v| !v.is_finite()))
        .collect();
    let mut rows: Vec<usize> = (0..n).collect();
    if let Some(&i) = bad.first() {
        if !args.drop_nonfinite {
            let j = data[i * d..(i + 1) * d]
                .iter()
                .position(|v| !v.is_finite())
                .unwrap_or(0);
            bail!(
                "{}: client row {i} has a non-finite value ({}) at parameter {j}{}; fix it or pass --drop-nonfinite",
                args.input.display(),
                data[i * d + j],
                if bad.len() > 1 {
                    format!(" ({} rows in all: {:?})", bad.len(), bad)
                } else {
                    String::new()
                }
            );
        }
        rows.retain(|r| !bad.contains(r));
        if rows.is_empty() {
            bail!(
                "{}: every client row has a non-finite value",
                args.input.display()
            );
        }
        data = rows
            .iter()
            .flat_map(|&i| data[i * d..(i + 1) * d].iter().copied())
            .collect();
        weights = weights.map(|w| rows.iter().map(|&i| w[i]).collect());
    }
    let read_ms = t0.elapsed().as_secs_f64() * 1e3;
    let m = method(&args, rows.len());
    let t1 = Instant::now();
    let agg = aggregate_rows(&m, &data, rows.len(), weights.as_deref()).with_context(|| {
        format!(
            "{} on {} ({} clients x {d} parameters)",
            m.name(),
            args.input.display(),
            rows.len()
        )
    })?;
    let aggregate_ms = t1.elapsed().as_secs_f64() * 1e3;
    let t2 = Instant::now();
    let params = agg.params.to_vec();
    write_npy_f32_1d(&args.output, &params)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let write_ms = t2.elapsed().as_secs_f64() * 1e3;
    // Selected rows in the numbering of the input file.
    let selected: Option<Vec<usize>> = agg
        .selected
        .map(|s| s.into_iter().map(|i| rows[i]).collect());
    let doc = json!({
        "method": m,
        "input": args.input,
        "output": args.output,
        "clients": n,
        "parameters": d,
        "used_clients": rows.len(),
        "dropped_nonfinite": bad,
        "selected": selected,
        "iterations": agg.iterations,
        "timings_ms": { "read": read_ms, "aggregate": aggregate_ms, "write": write_ms },
    });
    if !g.emit_json(&doc)? {
        g.say(format!(
            "{}: {} of {n} clients x {d} parameters -> {} in {aggregate_ms:.1} ms",
            m.name(),
            rows.len(),
            args.output.display()
        ));
        if let Some(s) = &selected {
            g.say(format!("selected clients: {s:?}"));
        }
        if !bad.is_empty() {
            g.say(format!("dropped non-finite clients: {bad:?}"));
        }
    }
    Ok(Outcome::Pass)
}
