//! Crash safety: SIGKILL `mithridate` at random points while it writes, then
//! check that the input is untouched, that no partial output is presented as
//! complete, and that a rerun succeeds.
//!
//! Every output goes through a temporary file and a rename, so after a kill an
//! output path holds either nothing or a complete file; temporaries are named
//! `.<name>.*.tmp` and never read.

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
    std::env::var("MITHRIDATE_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
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
    let mut child = Command::new(bin()).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
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
    let st = Command::new(bin()).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
    assert!(st.code().is_some_and(|c| c <= 1), "reference run failed: {st:?}");
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
    let before: Vec<Vec<u8>> = (0..4).map(|s| digest(&data.join(format!("shard{s}.csv")))).collect();
    let out = dir.path().join("m.json");
    let args = |o: &Path| -> Vec<std::ffi::OsString> {
        vec!["manifest".into(), "create".into(), data.clone().into(), "-o".into(), o.into(), "--records".into()]
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
        for s in 0..4 {
            assert_eq!(digest(&data.join(format!("shard{s}.csv"))), before[s], "input shard {s} changed");
        }
        // Output absent, or complete and valid against the data.
        if out.exists() {
            let v = Command::new(bin()).args(["manifest", "verify"]).arg(&data).arg("--manifest").arg(&out).output().unwrap();
            assert_eq!(v.status.code(), Some(0), "a manifest left after a kill does not verify: {}", String::from_utf8_lossy(&v.stderr));
            std::fs::remove_file(&out).unwrap();
        }
        // No temporary file poses as data: only `.m.json.*.tmp` may be left.
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(name == "data" || (name.starts_with(".m.json.") && name.ends_with(".tmp")), "unexpected file {name}");
        }
    }
    eprintln!("manifest create: {runs} runs, {killed} killed mid-run");
    assert!(killed >= runs / 3, "too few runs were killed mid-run ({killed}/{runs}) to test anything");
    let st = Command::new(bin()).args(&full_ref).status().unwrap();
    assert!(st.success(), "rerun after kills failed");
    let v = Command::new(bin()).args(["manifest", "verify"]).arg(&data).arg("--manifest").arg(&out).status().unwrap();
    assert!(v.success());
}
