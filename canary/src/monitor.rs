//! Monitoring of honeypot files: `verify` compares each planted file with its
//! recorded state; `watch` reports every open and change as it happens.
//!
//! `watch` uses the platform's file notification API through the `notify`
//! crate (inotify on Linux, which reports opens, modifications, closes after
//! writing, attribute changes, renames and removals; a read always follows an
//! open, so every read is seen as an `open`). Where no native watcher can be
//! set up (some network and container file systems), it falls back to
//! polling, which sees changes of content and metadata but not reads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use serde::{Deserialize, Serialize};

use mithridate_core::{Error, Result};

use crate::registry::{now_rfc3339, FileState, Registry};

/// How a honeypot file differs from its planted state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    /// Honeypot id.
    pub id: u64,
    /// The file.
    pub path: String,
    /// What changed: `missing`, `content`, `size`, `mtime`, `mode`, `inode`.
    pub changes: Vec<String>,
    /// The state now, when the file still exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<FileState>,
}

/// Every honeypot file of `registry` whose content or metadata changed since
/// planting (removed, rewritten, truncated, touched, chmod-ed or replaced).
pub fn verify(registry: &Registry) -> Vec<FileChange> {
    let mut out = Vec::new();
    for h in &registry.honeypots {
        let Some(then) = &h.file else { continue };
        let path = Path::new(&h.site.path);
        match FileState::of(path) {
            Err(_) => out.push(FileChange {
                id: h.id,
                path: h.site.path.clone(),
                changes: vec!["missing".into()],
                now: None,
            }),
            Ok(now) => {
                let mut changes = Vec::new();
                if now.sha256 != then.sha256 {
                    changes.push("content".to_string());
                }
                if now.size != then.size {
                    changes.push("size".into());
                }
                if (now.mtime_s, now.mtime_ns) != (then.mtime_s, then.mtime_ns) {
                    changes.push("mtime".into());
                }
                if now.mode != then.mode {
                    changes.push("mode".into());
                }
                if now.inode != then.inode {
                    changes.push("inode".into());
                }
                if !changes.is_empty() {
                    out.push(FileChange {
                        id: h.id,
                        path: h.site.path.clone(),
                        changes,
                        now: Some(now),
                    });
                }
            }
        }
    }
    out
}

/// One observed access or change, printed as a JSON line by `canary watch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// When it was observed (RFC 3339).
    pub time: String,
    /// `open`, `read`, `close`, `close-write`, `modify`, `metadata`, `rename`,
    /// `create`, `remove` or `other`.
    pub event: String,
    /// Files concerned.
    pub paths: Vec<String>,
    /// Honeypot ids of those files, when a registry was given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub honeypots: Vec<u64>,
    /// `native` or `poll`.
    pub backend: String,
}

/// Options of [`watch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOptions {
    /// Stop after this long (`None`: until `stop` is set).
    pub duration: Option<Duration>,
    /// Poll with this interval instead of the native watcher.
    pub poll: Option<Duration>,
}

fn event_name(k: &EventKind) -> &'static str {
    match k {
        EventKind::Access(AccessKind::Open(_)) => "open",
        EventKind::Access(AccessKind::Read) => "read",
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => "close-write",
        EventKind::Access(AccessKind::Close(_)) => "close",
        EventKind::Access(_) => "open",
        EventKind::Create(_) => "create",
        EventKind::Modify(ModifyKind::Metadata(_)) => "metadata",
        EventKind::Modify(ModifyKind::Name(_)) => "rename",
        EventKind::Modify(_) => "modify",
        EventKind::Remove(_) => "remove",
        _ => "other",
    }
}

/// Watch `paths` (directories recursively) and hand every event to `sink`
/// until `opts.duration` elapses or `stop` is set. Returns the number of events.
pub fn watch(
    paths: &[PathBuf],
    registry: Option<&Registry>,
    opts: &WatchOptions,
    stop: &AtomicBool,
    sink: &mut dyn FnMut(&WatchEvent) -> Result<()>,
) -> Result<u64> {
    if paths.is_empty() {
        return Err(Error::param("paths", "nothing to watch"));
    }
    let mut ids: HashMap<PathBuf, u64> = HashMap::new();
    if let Some(r) = registry {
        for h in &r.honeypots {
            if let Ok(p) = std::fs::canonicalize(&h.site.path) {
                ids.insert(p, h.id);
            }
        }
    }
    let (tx, rx) = mpsc::channel::<notify::Result<notify::Event>>();
    let mut backend = "native";
    let mut watcher: Box<dyn Watcher> = match opts.poll {
        None => match notify::recommended_watcher(tx.clone()) {
            Ok(w) => Box::new(w),
            Err(e) => {
                tracing::warn!("native file watcher unavailable ({e}); polling every second");
                backend = "poll";
                Box::new(poll_watcher(tx.clone(), Duration::from_secs(1))?)
            }
        },
        Some(d) => {
            backend = "poll";
            Box::new(poll_watcher(tx.clone(), d)?)
        }
    };
    for p in paths {
        let mode = if p.is_dir() {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        if let Err(e) = watcher.watch(p, mode) {
            if backend == "native" {
                // Fall back for this run (inotify limits, unsupported file system).
                tracing::warn!(
                    "cannot watch {} natively ({e}); polling every second",
                    p.display()
                );
                backend = "poll";
                watcher = Box::new(poll_watcher(tx.clone(), Duration::from_secs(1))?);
                for q in paths {
                    let m = if q.is_dir() {
                        RecursiveMode::Recursive
                    } else {
                        RecursiveMode::NonRecursive
                    };
                    watcher
                        .watch(q, m)
                        .map_err(|e| Error::io(q, std::io::Error::other(e.to_string())))?;
                }
                break;
            }
            return Err(Error::io(p, std::io::Error::other(e.to_string())));
        }
    }
    let deadline = opts.duration.map(|d| Instant::now() + d);
    let mut n = 0u64;
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let wait = match deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    break;
                }
                (d - now).min(Duration::from_millis(100))
            }
            None => Duration::from_millis(100),
        };
        match rx.recv_timeout(wait) {
            Ok(Ok(ev)) => {
                let honeypots: Vec<u64> = ev
                    .paths
                    .iter()
                    .filter_map(|p| {
                        std::fs::canonicalize(p)
                            .ok()
                            .and_then(|c| ids.get(&c).copied())
                    })
                    .collect();
                let we = WatchEvent {
                    time: now_rfc3339(),
                    event: event_name(&ev.kind).into(),
                    paths: ev.paths.iter().map(|p| p.display().to_string()).collect(),
                    honeypots,
                    backend: backend.into(),
                };
                n += 1;
                sink(&we)?;
            }
            Ok(Err(e)) => tracing::warn!("watch error: {e}"),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    Ok(n)
}

fn poll_watcher(
    tx: mpsc::Sender<notify::Result<notify::Event>>,
    every: Duration,
) -> Result<notify::PollWatcher> {
    notify::PollWatcher::new(
        tx,
        notify::Config::default()
            .with_poll_interval(every)
            .with_compare_contents(true),
    )
    .map_err(|e| Error::io("<poll watcher>", std::io::Error::other(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::honeypot::plant_files;
    use crate::token::{HoneypotKind, SecretKey};

    #[test]
    fn verify_reports_changed_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed(2);
        let mut reg = Registry::new(&key);
        let p = plant_files(dir.path(), &key, &mut reg, 3, &HoneypotKind::ALL).unwrap();
        assert!(verify(&reg).is_empty());
        std::fs::write(&p[0].site.path, "changed").unwrap();
        std::fs::remove_file(&p[1].site.path).unwrap();
        let ch = verify(&reg);
        assert_eq!(ch.len(), 2, "{ch:?}");
        assert!(ch[0].changes.contains(&"content".to_string()));
        assert_eq!(ch[1].changes, vec!["missing".to_string()]);
    }

    #[test]
    fn watch_sees_an_open_and_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed(2);
        let mut reg = Registry::new(&key);
        let p = plant_files(dir.path(), &key, &mut reg, 1, &[HoneypotKind::AwsKey]).unwrap();
        let path = PathBuf::from(&p[0].site.path);
        let stop = AtomicBool::new(false);
        let mut events = Vec::new();
        std::thread::scope(|s| {
            let touch = path.clone();
            s.spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                let _ = std::fs::read(&touch);
                let _ = std::fs::write(&touch, "tampered");
            });
            watch(
                &[dir.path().to_path_buf()],
                Some(&reg),
                &WatchOptions {
                    duration: Some(Duration::from_millis(2500)),
                    poll: None,
                },
                &stop,
                &mut |e| {
                    events.push(e.clone());
                    Ok(())
                },
            )
            .unwrap();
        });
        let native = events.first().is_some_and(|e| e.backend == "native");
        assert!(
            events
                .iter()
                .any(|e| e.event == "modify" || e.event == "close-write"),
            "{events:?}"
        );
        if native {
            assert!(
                events
                    .iter()
                    .any(|e| e.event == "open" && e.honeypots == vec![p[0].id]),
                "{events:?}"
            );
        }
    }
}
