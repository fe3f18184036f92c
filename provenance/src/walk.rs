//! Listing a dataset directory safely, and checking manifest paths.
//!
//! Two rules keep a manifest from reaching outside its dataset: a symlink is
//! only followed when its resolved target is inside the (canonical) root, and
//! a manifest path is relative, `/`-separated, with no `.`/`..`/empty parts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mithridate_core::{Error, Result};

/// A regular file found under the root.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// Canonical absolute path to open.
    pub abs: PathBuf,
}

/// What a walk found: files by relative path, and symlinks that point
/// outside the root (by relative path, with their target).
#[derive(Debug, Default)]
pub(crate) struct Walk {
    pub files: BTreeMap<String, Found>,
    pub escapes: BTreeMap<String, PathBuf>,
}

/// Canonical form of `root`, which must be a directory.
pub(crate) fn canonical_root(root: &Path) -> Result<PathBuf> {
    let c = root.canonicalize().map_err(|e| Error::io(root, e))?;
    if !c.is_dir() {
        return Err(Error::data(format!(
            "{}: dataset root is not a directory",
            root.display()
        )));
    }
    Ok(c)
}

/// Every regular file under `root` (canonical), sorted by relative path,
/// skipping the canonical paths in `ignore`.
///
/// Symlinks to files inside the root are listed under the link's path;
/// symlinks to directories are not descended (that could loop or list a file
/// twice); symlinks resolving outside the root, or dangling, are returned as
/// escapes for the caller to refuse. FIFOs, sockets and devices are skipped:
/// reading them could block forever and they are not dataset content.
pub(crate) fn walk(root: &Path, ignore: &[PathBuf]) -> Result<Walk> {
    let mut out = Walk::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let path = entry.path();
            let ft = entry.file_type().map_err(|e| Error::io(&path, e))?;
            let rel = rel_string(root, &path)?;
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                if !ignore.contains(&path) {
                    out.files.insert(rel, Found { abs: path });
                }
            } else if ft.is_symlink() {
                match path.canonicalize() {
                    Ok(t) if t.starts_with(root) => {
                        if t.is_file() && !ignore.contains(&t) && !ignore.contains(&path) {
                            out.files.insert(rel, Found { abs: t });
                        }
                    }
                    Ok(t) => {
                        out.escapes.insert(rel, t);
                    }
                    Err(_) => {
                        let t = std::fs::read_link(&path).unwrap_or_default();
                        out.escapes.insert(rel, t);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The `/`-separated path of `path` relative to `root`, checked like a
/// manifest path so that what create writes, load accepts.
pub(crate) fn rel_string(root: &Path, path: &Path) -> Result<String> {
    let rel = path.strip_prefix(root).map_err(|_| {
        Error::data(format!(
            "{} is not under {}",
            path.display(),
            root.display()
        ))
    })?;
    let mut parts = Vec::new();
    for c in rel.components() {
        let s = c
            .as_os_str()
            .to_str()
            .ok_or_else(|| Error::data(format!("{}: file name is not UTF-8", path.display())))?;
        parts.push(s);
    }
    let s = parts.join("/");
    check_rel_path(&s).map_err(|m| Error::data(format!("{}: {m}", path.display())))?;
    Ok(s)
}

/// Check a manifest path: relative, `/`-separated, no empty, `.` or `..`
/// component, no backslash, NUL or drive prefix. Returns why not.
pub fn check_rel_path(p: &str) -> std::result::Result<(), String> {
    if p.is_empty() {
        return Err("empty path".into());
    }
    if p.starts_with('/') || Path::new(p).is_absolute() {
        return Err(format!("absolute path {p:?} refused"));
    }
    if p.contains('\\') || p.contains('\0') {
        return Err(format!("path {p:?} contains a backslash or NUL"));
    }
    let b = p.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return Err(format!("drive-prefixed path {p:?} refused"));
    }
    for part in p.split('/') {
        match part {
            "" => return Err(format!("path {p:?} has an empty component")),
            "." => return Err(format!("path {p:?} has a `.` component")),
            ".." => return Err(format!("path traversal: {p:?} contains `..`")),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_are_checked() {
        assert!(check_rel_path("a/b.jsonl").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a\\b",
            "C:x",
            "a/.",
        ] {
            assert!(check_rel_path(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[cfg(unix)]
    #[test]
    fn walk_lists_inside_links_and_reports_escapes() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = canonical_root(dir.path()).unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.jsonl"), b"{}\n").unwrap();
        std::os::unix::fs::symlink(root.join("sub/a.jsonl"), root.join("link.jsonl")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("evil")).unwrap();
        std::os::unix::fs::symlink(root.join("sub"), root.join("dirlink")).unwrap();
        let w = walk(&root, &[]).unwrap();
        assert_eq!(
            w.files.keys().collect::<Vec<_>>(),
            ["link.jsonl", "sub/a.jsonl"]
        );
        assert_eq!(w.escapes.keys().collect::<Vec<_>>(), ["evil"]);
    }
}
