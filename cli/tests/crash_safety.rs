//! Crash safety: SIGKILL `mithridate` at random points while it writes, then
//! check that the input is untouched, that no partial output is presented as
//! complete, and that a rerun succeeds.
//!
//! Every output goes through a temporary file and a rename, so after a kill an
//! output path holds either nothing or a complete file; temporaries are named
//! `.<name>.*.tmp` and never read.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mithridate"))
}

/// A small xorshift generator: kill points must vary between runs and be
/// reproducible from the printed seed.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn seed() -> u64 {
    std::env::var("MITHRIDATE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        })
}

/// A CSV of `rows` digits-like rows: id, 64 pixels, label.
fn big_csv(path: &Path, rows: usize) {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    write!(w, "id").unwrap();
    for j in 0..64 {
        write!(w, ",p{j}").unwrap();
    }
    writeln!(w, ",label").unwrap();
    for i in 0..rows {
        write!(w, "{i}").unwrap();
        for j in 0..64 {
            write!(w, ",{}", (i * 31 + j * 7) % 17).unwrap();
        }
        writeln!(w, ",{}", i % 10).unwrap();
    }
}

fn digest(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Run `args`, SIGKILL it after `delay` (if still running); true if it was killed.
fn run_and_kill(args: &[&std::ffi::OsStr], delay: Duration) -> bool {
    let mut child = Command::new(bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let killed = child.try_wait().unwrap().is_none();
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();
    killed
}

/// Time one complete run, to spread kill points over it.
fn timed(args: &[&std::ffi::OsStr]) -> Duration {
    let t0 = Instant::now();
    let st = Command::new(bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(
        st.code().is_some_and(|c| c <= 1),
        "reference run failed: {st:?}"
    );
    t0.elapsed()
}

#[test]
fn manifest_create_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for s in 0..4 {
        big_csv(&data.join(format!("shard{s}.csv")), 60_000);
    }
    let before: Vec<Vec<u8>> = (0..4)
        .map(|s| digest(&data.join(format!("shard{s}.csv"))))
        .collect();
    let out = dir.path().join("m.json");
    let args = |o: &Path| -> Vec<std::ffi::OsString> {
        vec![
            "manifest".into(),
            "create".into(),
            data.clone().into(),
            "-o".into(),
            o.into(),
            "--records".into(),
        ]
    };
    let full = args(&out);
    let full_ref: Vec<&std::ffi::OsStr> = full.iter().map(|s| s.as_os_str()).collect();
    let span = timed(&full_ref);
    std::fs::remove_file(&out).unwrap();
    let seed = seed();
    eprintln!("kill seed {seed}, reference run {span:?}");
    let mut rng = Rng(seed);
    let (mut killed, runs) = (0, 12);
    for _ in 0..runs {
        let delay = Duration::from_micros(rng.below(span.as_micros() as u64 + 1));
        killed += usize::from(run_and_kill(&full_ref, delay));
        // Input untouched.
        for (s, expected) in before.iter().enumerate() {
            assert_eq!(
                &digest(&data.join(format!("shard{s}.csv"))),
                expected,
                "input shard {s} changed"
            );
        }
        // Output absent, or complete and valid against the data.
        if out.exists() {
            let v = Command::new(bin())
                .args(["manifest", "verify"])
                .arg(&data)
                .arg("--manifest")
                .arg(&out)
                .output()
                .unwrap();
            assert_eq!(
                v.status.code(),
                Some(0),
                "a manifest left after a kill does not verify: {}",
                String::from_utf8_lossy(&v.stderr)
            );
            std::fs::remove_file(&out).unwrap();
        }
        // No temporary file poses as data: only `.m.json.*.tmp` may be left.
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                name == "data" || (name.starts_with(".m.json.") && name.ends_with(".tmp")),
                "unexpected file {name}"
            );
        }
    }
    eprintln!("manifest create: {runs} runs, {killed} killed mid-run");
    assert!(
        killed >= runs / 3,
        "too few runs were killed mid-run ({killed}/{runs}) to test anything"
    );
    let st = Command::new(bin()).args(&full_ref).status().unwrap();
    assert!(st.success(), "rerun after kills failed");
    let v = Command::new(bin())
        .args(["manifest", "verify"])
        .arg(&data)
        .arg("--manifest")
        .arg(&out)
        .status()
        .unwrap();
    assert!(v.success());
}

/// Poisoned digits as CSV: 3 copies of the 1,797 images with a little noise
/// each (5,391 rows), 1% BadNets.
fn digits_csv(path: &Path) {
    use mithridate_core::attack::{Attack, BadNets};
    let base = mithridate_core::datasets::digits();
    let mut rows = Vec::new();
    for copy in 0..3usize {
        let mut x = base.features.clone().unwrap();
        for (i, v) in x.iter_mut().enumerate() {
            *v = (*v + ((i * 7 + copy * 13) % 3) as f32 - 1.0).clamp(0.0, 16.0);
        }
        rows.push(x);
    }
    let views: Vec<_> = rows.iter().map(|r| r.view()).collect();
    let x = ndarray::concatenate(ndarray::Axis(0), &views).unwrap();
    let y: Vec<u32> = (0..3).flat_map(|_| base.labels.clone().unwrap()).collect();
    let ds = mithridate_core::Dataset::from_features(x, Some(y)).unwrap();
    let p = BadNets::digits(0.01).poison(&ds, 5).unwrap();
    mithridate_core::io::csv::write_csv(&p.dataset, path).unwrap();
}

fn csv_rows(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .count()
        .saturating_sub(1)
}

#[test]
fn scan_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("train.csv");
    digits_csv(&input);
    let before = digest(&input);
    let rows = csv_rows(&input);
    let out = dir.path().join("out");
    let args: Vec<std::ffi::OsString> = vec![
        "scan".into(),
        input.clone().into(),
        "--id-column".into(),
        "id".into(),
        "--out".into(),
        out.clone().into(),
    ];
    let argv: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_os_str()).collect();
    let span = timed(&argv);
    std::fs::remove_dir_all(&out).unwrap();
    let seed = seed();
    eprintln!("kill seed {seed}, reference run {span:?}");
    let mut rng = Rng(seed);
    let (mut killed, runs) = (0, 8);
    for _ in 0..runs {
        let delay = Duration::from_micros(rng.below(span.as_micros() as u64 + 1));
        killed += usize::from(run_and_kill(&argv, delay));
        assert_eq!(digest(&input), before, "the input changed");
        let report = out.join("report.json");
        let clean = out.join("clean.csv");
        let quarantine = out.join("quarantine.jsonl");
        // report.json is written last: when it exists, the run is complete.
        if report.exists() {
            let r: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&report).unwrap()).expect("complete report");
            assert!(r.is_object());
            let q = std::fs::read_to_string(&quarantine)
                .unwrap()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count();
            assert_eq!(csv_rows(&clean) + q, rows, "clean + quarantined != input");
        }
        // Whatever exists is whole: a clean file is a CSV whose every row is complete.
        if clean.exists() {
            let text = std::fs::read_to_string(&clean).unwrap();
            assert!(text.ends_with('\n'));
            assert!(
                text.lines().all(|l| l.split(',').count() == 66),
                "a truncated row in clean.csv"
            );
        }
        if quarantine.exists() {
            for l in std::fs::read_to_string(&quarantine).unwrap().lines() {
                serde_json::from_str::<serde_json::Value>(l).expect("a truncated quarantine line");
            }
        }
        let _ = std::fs::remove_dir_all(&out);
    }
    eprintln!("scan: {runs} runs, {killed} killed mid-run");
    assert!(
        killed >= runs / 3,
        "too few runs were killed mid-run ({killed}/{runs})"
    );
    let st = Command::new(bin()).args(&argv).status().unwrap();
    assert!(
        st.code().is_some_and(|c| c <= 1),
        "rerun after kills failed: {st:?}"
    );
    assert!(out.join("report.json").exists());
}
