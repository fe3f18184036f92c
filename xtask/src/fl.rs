//! `cargo xtask fl`: federated training of a softmax model on the embedded
//! digits, split across clients, some of them Byzantine, aggregated with
//! every rule of `mithridate_robust::aggregate`. Prints final test accuracy
//! and backdoor attack success rate (ASR) per attack, Byzantine fraction and
//! aggregator.
//!
//! Options: `--clients N` (40), `--rounds R` (30), `--local-epochs E` (2),
//! `--lr F` (0.1), `--seed S` (1), `--fractions 0,0.1,0.2,0.3`,
//! `--attacks sign-flip,scaled,gaussian,label-flip,backdoor`, `--json PATH`.
//!
//! Byzantine clients (the first `round(fraction * N)`) send:
//! - sign-flip: minus 4x their honest update;
//! - scaled: 10x their honest update (model replacement style boosting);
//! - gaussian: N(0, 1) noise per parameter;
//! - label-flip: the update from training on labels `9 - y`;
//! - backdoor: the update from training on their data plus BadNets-stamped
//!   copies labelled 7, boosted 3x.
//!
//! ASR is the fraction of test images of other classes that the final model
//! classifies as 7 once stamped with the trigger.

use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use mithridate_core::attack::{BadNets, Trigger};
use mithridate_core::datasets::digits;
use mithridate_core::rng::{derive_seed, seeded};
use mithridate_robust::aggregate::{aggregate, Method};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::seq::SliceRandom;
use rand::Rng;

const K: usize = 10;

/// An aggregator's method as a function of the number of Byzantine clients.
type MethodFor = Box<dyn Fn(usize) -> Method>;
const TARGET: u32 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    SignFlip,
    Scaled,
    Gaussian,
    LabelFlip,
    Backdoor,
}

impl Attack {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "sign-flip" => Attack::SignFlip,
            "scaled" => Attack::Scaled,
            "gaussian" => Attack::Gaussian,
            "label-flip" => Attack::LabelFlip,
            "backdoor" => Attack::Backdoor,
            o => bail!("unknown attack {o:?} (sign-flip, scaled, gaussian, label-flip, backdoor)"),
        })
    }
    fn name(self) -> &'static str {
        match self {
            Attack::SignFlip => "sign-flip",
            Attack::Scaled => "scaled",
            Attack::Gaussian => "gaussian",
            Attack::LabelFlip => "label-flip",
            Attack::Backdoor => "backdoor",
        }
    }
}

struct Cfg {
    clients: usize,
    rounds: usize,
    local_epochs: usize,
    lr: f32,
    seed: u64,
}

/// Parameters of softmax regression flattened: `d x K` weights then `K` biases.
fn logits(p: &[f32], x: ArrayView2<'_, f32>) -> Array2<f32> {
    let d = x.ncols();
    let w = ArrayView2::from_shape((d, K), &p[..d * K]).expect("parameter layout");
    let b = Array1::from(p[d * K..].to_vec());
    x.dot(&w) + &b
}

fn predict(p: &[f32], x: ArrayView2<'_, f32>) -> Vec<u32> {
    mithridate_core::model::argmax_rows(&logits(p, x))
}

/// Local training: `epochs` of mini-batch SGD (batch 16) from `start`; returns the update (new - start).
fn local_update(
    start: &[f32],
    x: ArrayView2<'_, f32>,
    y: &[u32],
    cfg: &Cfg,
    seed: u64,
) -> Vec<f32> {
    let d = x.ncols();
    let mut p = start.to_vec();
    let mut rng = seeded(seed);
    let mut order: Vec<usize> = (0..x.nrows()).collect();
    for _ in 0..cfg.local_epochs {
        order.shuffle(&mut rng);
        for batch in order.chunks(16) {
            let xb = x.select(Axis(0), batch);
            let mut z = logits(&p, xb.view());
            mithridate_core::model::softmax_rows(&mut z);
            for (r, &i) in batch.iter().enumerate() {
                z[[r, y[i] as usize]] -= 1.0;
            }
            let bsz = batch.len() as f32;
            let gw = xb.t().dot(&z) / bsz;
            let gb = z.sum_axis(Axis(0)) / bsz;
            for (pi, g) in p[..d * K].iter_mut().zip(gw.iter()) {
                *pi -= cfg.lr * g;
            }
            for (pi, g) in p[d * K..].iter_mut().zip(gb.iter()) {
                *pi -= cfg.lr * g;
            }
        }
    }
    p.iter().zip(start).map(|(a, b)| a - b).collect()
}

struct Outcome {
    accuracy: f64,
    asr: f64,
}

#[allow(clippy::too_many_arguments)]
fn simulate(
    cfg: &Cfg,
    method: &Method,
    attack: Attack,
    byz: usize,
    shards: &[(Array2<f32>, Vec<u32>)],
    test: (&Array2<f32>, &[u32]),
    triggered_test: &Array2<f32>,
    bad: &BadNets,
) -> Result<Option<Outcome>> {
    let d = test.0.ncols();
    let mut global = vec![0f32; d * K + K];
    for round in 0..cfg.rounds {
        let mut updates = Array2::<f32>::zeros((cfg.clients, d * K + K));
        let mut weights = Vec::with_capacity(cfg.clients);
        for (c, (x, y)) in shards.iter().enumerate() {
            let seed = derive_seed(cfg.seed, &format!("fl-{round}-{c}"));
            let u: Vec<f32> = if c >= byz {
                local_update(&global, x.view(), y, cfg, seed)
            } else {
                match attack {
                    Attack::SignFlip => local_update(&global, x.view(), y, cfg, seed)
                        .iter()
                        .map(|v| -4.0 * v)
                        .collect(),
                    Attack::Scaled => local_update(&global, x.view(), y, cfg, seed)
                        .iter()
                        .map(|v| 10.0 * v)
                        .collect(),
                    Attack::Gaussian => {
                        let mut rng = seeded(seed);
                        (0..d * K + K)
                            .map(|_| rng.gen_range(-1.0f32..1.0) * 1.7)
                            .collect()
                    }
                    Attack::LabelFlip => {
                        let flipped: Vec<u32> = y.iter().map(|&l| K as u32 - 1 - l).collect();
                        local_update(&global, x.view(), &flipped, cfg, seed)
                    }
                    Attack::Backdoor => {
                        let mut xs = x.clone();
                        for mut row in xs.rows_mut() {
                            let s = row.as_slice_mut().context("contiguous row")?;
                            bad.apply_features(s)?;
                            // Features are scaled to [0, 1]; the patch value is 16 in pixel units.
                            for &p in &bad.pixels()? {
                                s[p] /= 16.0;
                            }
                        }
                        let xa = ndarray::concatenate![Axis(0), x.view(), xs.view()];
                        let ya: Vec<u32> = y
                            .iter()
                            .copied()
                            .chain(std::iter::repeat_n(TARGET, y.len()))
                            .collect();
                        local_update(&global, xa.view(), &ya, cfg, seed)
                            .iter()
                            .map(|v| 3.0 * v)
                            .collect()
                    }
                }
            };
            updates.row_mut(c).assign(&Array1::from(u));
            weights.push(y.len() as f32);
        }
        let agg = match aggregate(method, updates.view(), Some(&weights)) {
            Ok(a) => a,
            // Too few clients for this f (Bulyan at 30%): the rule does not apply.
            Err(e) if e.to_string().contains("needs n >=") => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        for (g, u) in global.iter_mut().zip(agg.params.iter()) {
            *g += u;
        }
    }
    let pred = predict(&global, test.0.view());
    let accuracy = mithridate_core::model::accuracy(&pred, test.1);
    let tp = predict(&global, triggered_test.view());
    let others: Vec<usize> = (0..test.1.len()).filter(|&i| test.1[i] != TARGET).collect();
    let asr =
        others.iter().filter(|&&i| tp[i] == TARGET).count() as f64 / others.len().max(1) as f64;
    Ok(Some(Outcome { accuracy, asr }))
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// Run the simulation with command-line `args`.
pub fn run(args: &[String]) -> Result<()> {
    let num = |name: &str, default: f64| -> Result<f64> {
        flag(args, name).map_or(Ok(default), |v| {
            v.parse::<f64>().with_context(|| format!("{name} {v:?}"))
        })
    };
    let cfg = Cfg {
        clients: num("--clients", 40.0)? as usize,
        rounds: num("--rounds", 30.0)? as usize,
        local_epochs: num("--local-epochs", 2.0)? as usize,
        lr: num("--lr", 0.1)? as f32,
        seed: num("--seed", 1.0)? as u64,
    };
    if cfg.clients < 3 {
        bail!("--clients must be at least 3");
    }
    let fractions: Vec<f64> = flag(args, "--fractions")
        .unwrap_or("0,0.1,0.2,0.3")
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<f64>()
                .with_context(|| format!("--fractions {s:?}"))
        })
        .collect::<Result<_>>()?;
    if let Some(f) = fractions.iter().find(|f| !(0.0..0.5).contains(*f)) {
        bail!("--fractions: {f} is not in [0, 0.5)");
    }
    let attacks: Vec<Attack> = flag(args, "--attacks")
        .unwrap_or("sign-flip,scaled,gaussian,label-flip,backdoor")
        .split(',')
        .map(|s| Attack::parse(s.trim()))
        .collect::<Result<_>>()?;

    // Digits scaled to [0, 1]; 80% train split across clients, 20% test.
    let ds = digits();
    let x = ds.features.as_ref().context("digits features")? / 16.0;
    let y = ds.labels.clone().context("digits labels")?;
    let mut order: Vec<usize> = (0..ds.len()).collect();
    order.shuffle(&mut seeded(derive_seed(cfg.seed, "fl-split")));
    let n_test = ds.len() / 5;
    let (test_idx, train_idx) = order.split_at(n_test);
    let xt = x.select(Axis(0), test_idx);
    let yt: Vec<u32> = test_idx.iter().map(|&i| y[i]).collect();
    let shards: Vec<(Array2<f32>, Vec<u32>)> = (0..cfg.clients)
        .map(|c| {
            let idx: Vec<usize> = train_idx
                .iter()
                .copied()
                .skip(c)
                .step_by(cfg.clients)
                .collect();
            (x.select(Axis(0), &idx), idx.iter().map(|&i| y[i]).collect())
        })
        .collect();
    let bad = BadNets::digits(0.0);
    let mut xtrig = xt.clone();
    for mut row in xtrig.rows_mut() {
        let s = row.as_slice_mut().context("contiguous row")?;
        bad.apply_features(s)?;
        for &p in &bad.pixels()? {
            s[p] /= 16.0;
        }
    }

    let n_clients = cfg.clients;
    let methods: Vec<(&str, MethodFor)> = vec![
        ("fedavg", Box::new(|_| Method::FedAvg)),
        ("median", Box::new(|_| Method::Median)),
        ("trimmed", Box::new(|_| Method::TrimmedMean { beta: 0.3 })),
        ("krum", Box::new(|f| Method::Krum { byzantine: f })),
        (
            "multikrum",
            Box::new(move |f| Method::MultiKrum {
                byzantine: f,
                keep: n_clients - f,
            }),
        ),
        ("bulyan", Box::new(|f| Method::Bulyan { byzantine: f })),
        ("geomed", Box::new(|_| Method::geometric_median())),
        ("cclip", Box::new(|_| Method::centered_clipping())),
    ];
    let t0 = Instant::now();
    println!(
        "federated softmax on digits: {} clients, {} rounds, {} local epochs, lr {}; cells are test accuracy / backdoor ASR",
        cfg.clients, cfg.rounds, cfg.local_epochs, cfg.lr
    );
    print!("{:<11} {:>5}", "attack", "byz");
    for (name, _) in &methods {
        print!(" {name:>11}");
    }
    println!();
    let mut rows = Vec::new();
    for &frac in &fractions {
        let byz = (frac * cfg.clients as f64).round() as usize;
        let list: Vec<Attack> = if byz == 0 {
            vec![Attack::SignFlip]
        } else {
            attacks.clone()
        };
        for attack in list {
            let label = if byz == 0 { "none" } else { attack.name() };
            print!("{label:<11} {:>4.0}%", frac * 100.0);
            let mut cells = serde_json::Map::new();
            for (name, mk) in &methods {
                let m = mk(byz);
                match simulate(&cfg, &m, attack, byz, &shards, (&xt, &yt), &xtrig, &bad)? {
                    Some(o) => {
                        print!(" {:>5.3}/{:<5.3}", o.accuracy, o.asr);
                        cells.insert(
                            (*name).into(),
                            serde_json::json!({ "accuracy": o.accuracy, "asr": o.asr }),
                        );
                    }
                    None => {
                        print!(" {:>11}", "n/a");
                        cells.insert((*name).into(), serde_json::Value::Null);
                    }
                }
                use std::io::Write as _;
                std::io::stdout().flush().ok();
            }
            println!();
            rows.push(
                serde_json::json!({ "attack": label, "byzantine_fraction": frac, "byzantine": byz, "results": cells }),
            );
        }
    }
    eprintln!("done in {:.1} s", t0.elapsed().as_secs_f64());
    if let Some(p) = flag(args, "--json") {
        let doc = serde_json::json!({ "clients": cfg.clients, "rounds": cfg.rounds, "rows": rows });
        std::fs::write(p, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {p}"))?;
    }
    Ok(())
}
