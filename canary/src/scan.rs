//! Scanners: find planted honeypot tokens and canary strings in datasets,
//! model outputs, logs and any other file.
//!
//! One Aho-Corasick automaton holds the token prefixes of the registry's
//! honeypot kinds and any exact strings added with [`ScannerBuilder::exact`]
//! (canary answers, exposure secrets). A prefix match followed by 16 base32
//! characters is a candidate token; it is a hit only if its keyed digest is in
//! the registry. The automaton is therefore as small with ten million
//! registered tokens as with one, and the scanner needs no secret.
//!
//! Files are read as streams in chunks; the last `max_len - 1` bytes of each
//! chunk are kept in front of the next, so a token that straddles a chunk
//! boundary is still found, and found once (a match belongs to the chunk in
//! which it *ends*). Files are scanned in parallel, and a large uncompressed
//! file is cut into byte ranges scanned in parallel with the same rule.
//! `.gz` and `.zst` files are decompressed on the fly; offsets and lines then
//! refer to the decompressed text.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use mithridate_core::{Error, Result};

use crate::registry::{Honeypot, Registry, TokenDigest};
use crate::token::{hmac, is_body_byte, HoneypotKind};

/// Default chunk size of streaming reads (1 MiB).
pub const DEFAULT_CHUNK: usize = 1 << 20;

/// Uncompressed files larger than this are cut into ranges scanned in parallel.
pub const DEFAULT_SPLIT: u64 = 32 << 20;

/// What a hit is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Target {
    /// A registered honeypot token: which one, where and when it was planted.
    Honeypot {
        /// The registry entry.
        honeypot: Honeypot,
    },
    /// One of the exact strings the scanner was built with (a canary).
    Canary {
        /// The name it was registered under.
        name: String,
    },
}

/// One place a planted token or canary was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    /// File it was found in (as given or as found while walking a directory).
    pub file: String,
    /// Byte offset of the match (in the decompressed stream for `.gz`/`.zst`).
    pub offset: u64,
    /// 1-based line of the match.
    pub line: u64,
    /// What was found.
    pub target: Target,
}

/// What a scan saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanSummary {
    /// Hits, sorted by file and offset.
    pub hits: Vec<Hit>,
    /// Files scanned.
    pub files: u64,
    /// Bytes scanned (decompressed).
    pub bytes: u64,
    /// Files that could not be read, with the reason. Not silent: the caller reports them.
    pub errors: Vec<String>,
}

/// Builds a [`Scanner`].
#[derive(Debug, Default)]
pub struct ScannerBuilder {
    registry: Option<Registry>,
    exact: Vec<(String, Vec<u8>)>,
    chunk: usize,
    split: u64,
    kind: Option<AhoCorasickKind>,
}

impl ScannerBuilder {
    /// Recognise the tokens of `registry`.
    #[must_use]
    pub fn registry(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Also find the exact string `pattern`, reported as canary `name`.
    #[must_use]
    pub fn exact(mut self, name: impl Into<String>, pattern: impl AsRef<[u8]>) -> Self {
        self.exact.push((name.into(), pattern.as_ref().to_vec()));
        self
    }

    /// Chunk size of streaming reads (at least 4 KiB; for tests of chunk boundaries any size >= 1).
    #[must_use]
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk = bytes;
        self
    }

    /// Size above which an uncompressed file is scanned as parallel ranges.
    #[must_use]
    pub fn split_above(mut self, bytes: u64) -> Self {
        self.split = bytes;
        self
    }

    /// Force an automaton implementation (default: chosen by the aho-corasick crate).
    #[must_use]
    pub fn automaton(mut self, kind: AhoCorasickKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Build the scanner.
    pub fn build(self) -> Result<Scanner> {
        let mut kinds: Vec<HoneypotKind> = Vec::new();
        let mut honeypots = Vec::new();
        let mut digest_key = Vec::new();
        let mut index = HashMap::new();
        let mut max_len = 1usize;
        if let Some(r) = &self.registry {
            digest_key = r.digest_key_bytes()?;
            index = r.digest_index();
            honeypots = r.honeypots.clone();
            kinds = r.honeypots.iter().map(|h| h.kind).collect();
            kinds.sort();
            kinds.dedup();
            for k in &kinds {
                max_len = max_len.max(k.token_len());
            }
        }
        let mut exact = Vec::new();
        let mut exact_bytes = Vec::new();
        for (name, p) in self.exact {
            if p.is_empty() {
                return Err(Error::param(
                    "exact",
                    format!("canary `{name}` is an empty string"),
                ));
            }
            max_len = max_len.max(p.len());
            exact_bytes.push(p);
            exact.push(name);
        }
        let build = |pats: &[&[u8]], kind: MatchKind| -> Result<Option<AhoCorasick>> {
            if pats.is_empty() {
                return Ok(None);
            }
            let mut b = AhoCorasick::builder();
            b.match_kind(kind);
            if let Some(k) = self.kind {
                b.kind(Some(k));
            }
            b.build(pats)
                .map(Some)
                .map_err(|e| Error::param("patterns", e.to_string()))
        };
        // Leftmost-first lets the crate use its SIMD (Teddy) prefilter for the
        // few prefixes; overlapping candidates are found by restarting one byte
        // after each candidate. Exact strings need every overlapping match, so
        // they get a standard-semantics automaton of their own.
        let prefix_pats: Vec<&[u8]> = kinds.iter().map(|k| k.prefix().as_bytes()).collect();
        let prefixes = build(&prefix_pats, MatchKind::LeftmostFirst)?;
        let exact_pats: Vec<&[u8]> = exact_bytes.iter().map(Vec::as_slice).collect();
        let exact_ac = build(&exact_pats, MatchKind::Standard)?;
        Ok(Scanner {
            prefixes,
            kinds,
            exact_ac,
            digest_key,
            index,
            honeypots,
            exact,
            max_len,
            chunk: if self.chunk == 0 {
                DEFAULT_CHUNK
            } else {
                self.chunk
            },
            split: if self.split == 0 {
                DEFAULT_SPLIT
            } else {
                self.split
            },
        })
    }
}

/// A raw hit before it is given a file name and a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Raw {
    offset: u64,
    /// Newlines between the start of the scanned range and the match (negative
    /// when a match that started in the overlap spans newlines).
    nl_before: i64,
    target: RawTarget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawTarget {
    Honeypot(usize),
    Exact(usize),
}

/// Finds registered honeypot tokens and exact canary strings in bytes, streams and files.
#[derive(Debug, Clone)]
pub struct Scanner {
    prefixes: Option<AhoCorasick>,
    kinds: Vec<HoneypotKind>,
    exact_ac: Option<AhoCorasick>,
    digest_key: Vec<u8>,
    index: HashMap<TokenDigest, usize>,
    honeypots: Vec<Honeypot>,
    exact: Vec<String>,
    max_len: usize,
    chunk: usize,
    split: u64,
}

/// Newlines in `b`, counted in blocks with a narrow accumulator so the loop vectorises.
fn count_newlines(b: &[u8]) -> u64 {
    b.chunks(4096)
        .map(|c| u64::from(c.iter().map(|&x| u32::from(x == b'\n')).sum::<u32>()))
        .sum()
}

impl Scanner {
    /// A builder.
    pub fn builder() -> ScannerBuilder {
        ScannerBuilder::default()
    }

    /// A scanner for the tokens of `registry`.
    pub fn for_registry(registry: &Registry) -> Result<Self> {
        Self::builder().registry(registry).build()
    }

    /// Longest pattern (token) length: the overlap kept between chunks is one less.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Number of honeypots the scanner recognises.
    pub fn honeypots(&self) -> usize {
        self.honeypots.len()
    }

    /// Search `buf`, whose first byte is at absolute `base`; keep matches that end
    /// after `min_end` and within `buf` (a match ending at or before `min_end`
    /// was already seen with the previous chunk). Each raw hit carries the
    /// newlines between `buf[0]` and its start.
    fn search(&self, buf: &[u8], base: u64, min_end: usize, out: &mut Vec<Raw>) {
        let mut found: Vec<(usize, RawTarget)> = Vec::new();
        if let Some(ac) = &self.prefixes {
            let mut pos = 0usize;
            while pos < buf.len() {
                let Some(m) = ac.find(aho_corasick::Input::new(buf).range(pos..)) else {
                    break;
                };
                let start = m.start();
                pos = start + 1;
                let kind = self.kinds[m.pattern().as_usize()];
                let end = start + kind.token_len();
                if end > buf.len() || end <= min_end {
                    continue;
                }
                let body = &buf[m.end()..end];
                if !body.iter().all(|&b| is_body_byte(b)) {
                    continue;
                }
                let d = hmac(&self.digest_key, &[&buf[start..end]]);
                if let Some(&i) = self.index.get(&TokenDigest(d)) {
                    if self.honeypots[i].kind == kind {
                        found.push((start, RawTarget::Honeypot(i)));
                    }
                }
            }
        }
        if let Some(ac) = &self.exact_ac {
            for m in ac.find_overlapping_iter(buf) {
                if m.end() > min_end {
                    found.push((m.start(), RawTarget::Exact(m.pattern().as_usize())));
                }
            }
        }
        found.sort_by_key(|f| f.0);
        let mut nl_pos = 0usize;
        let mut nl: u64 = 0;
        for (start, target) in found {
            nl += count_newlines(&buf[nl_pos..start]);
            nl_pos = start;
            out.push(Raw {
                offset: base + start as u64,
                nl_before: nl as i64,
                target,
            });
        }
    }

    /// Scan a stream. `first_min_end` bytes at its start were already searched
    /// as the end of a previous range (their matches belong to it). Returns the
    /// raw hits, the bytes read and the newlines after the first `first_min_end` bytes.
    fn scan_stream<R: Read>(
        &self,
        mut r: R,
        base: u64,
        first_min_end: usize,
    ) -> std::io::Result<(Vec<Raw>, u64, u64)> {
        let keep = self.max_len.saturating_sub(1);
        let mut buf: Vec<u8> = Vec::with_capacity(self.chunk + keep);
        let mut out = Vec::new();
        let mut abs = base; // absolute offset of buf[0]
        let mut min_end = first_min_end;
        let mut nl_total: u64 = 0; // newlines in bytes after the initial skip, before buf[min_end]
        let mut total: u64 = 0;
        loop {
            // The first read of a range must cover the skipped overlap too.
            let target = buf.len().max(min_end) + self.chunk;
            let mut eof = false;
            while buf.len() < target {
                let old = buf.len();
                buf.resize(target, 0);
                match r.read(&mut buf[old..]) {
                    Ok(0) => {
                        buf.truncate(old);
                        eof = true;
                        break;
                    }
                    Ok(n) => buf.truncate(old + n),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => buf.truncate(old),
                    Err(e) => return Err(e),
                }
            }
            let fresh = buf.len().saturating_sub(min_end);
            total += fresh as u64;
            // Newlines before buf[0] relative to the range start: nl_total counts
            // newlines up to buf[min_end]; matches count from buf[0], so subtract
            // the newlines of the overlap.
            let nl_overlap = count_newlines(&buf[..min_end.min(buf.len())]);
            let before = out.len();
            self.search(&buf, abs, min_end, &mut out);
            for h in &mut out[before..] {
                h.nl_before += nl_total as i64 - nl_overlap as i64;
            }
            nl_total += count_newlines(&buf[min_end.min(buf.len())..]);
            if eof {
                break;
            }
            let tail = keep.min(buf.len());
            let drop = buf.len() - tail;
            buf.drain(..drop);
            abs += drop as u64;
            min_end = tail;
        }
        Ok((out, total, nl_total))
    }

    /// Every hit in `bytes`, named `name`. Cut into parallel ranges when large.
    pub fn scan_bytes(&self, bytes: &[u8], name: &str) -> Vec<Hit> {
        let ranges = self.ranges(bytes.len() as u64);
        let parts: Vec<(Vec<Raw>, u64)> = ranges
            .par_iter()
            .map(|&(s, e)| {
                let pre = (s as usize).min(self.max_len.saturating_sub(1));
                let slice = &bytes[s as usize - pre..e as usize];
                self.scan_stream(slice, s - pre as u64, pre)
                    .map(|(h, _, nl)| (h, nl))
                    .unwrap_or_default()
            })
            .collect();
        self.assemble(name, parts)
    }

    fn ranges(&self, len: u64) -> Vec<(u64, u64)> {
        if len <= self.split {
            return vec![(0, len)];
        }
        let threads = rayon::current_num_threads().max(1) as u64;
        let piece = (len / threads).max(self.split / 2).max(self.max_len as u64);
        let mut v = Vec::new();
        let mut s = 0;
        while s < len {
            let e = (s + piece).min(len);
            v.push((s, e));
            s = e;
        }
        v
    }

    /// Turn per-range raw hits (with each range's newline count) into hits with lines.
    fn assemble(&self, name: &str, parts: Vec<(Vec<Raw>, u64)>) -> Vec<Hit> {
        let mut hits = Vec::new();
        let mut nl_before_range = 0u64;
        for (raws, nl) in parts {
            for r in raws {
                hits.push(Hit {
                    file: name.to_owned(),
                    offset: r.offset,
                    line: (nl_before_range as i64 + r.nl_before + 1).max(1) as u64,
                    target: self.target(r.target),
                });
            }
            nl_before_range += nl;
        }
        hits.sort_by_key(|h| h.offset);
        hits
    }

    fn target(&self, t: RawTarget) -> Target {
        match t {
            RawTarget::Honeypot(i) => Target::Honeypot {
                honeypot: self.honeypots[i].clone(),
            },
            RawTarget::Exact(i) => Target::Canary {
                name: self.exact[i].clone(),
            },
        }
    }

    /// Every hit in a stream (read to its end), named `name`.
    pub fn scan_reader<R: Read>(&self, r: R, name: &str) -> Result<Vec<Hit>> {
        let (raws, _, nl) = self.scan_stream(r, 0, 0).map_err(|e| Error::io(name, e))?;
        Ok(self.assemble(name, vec![(raws, nl)]))
    }

    /// Every hit in the file at `path`; `.gz` and `.zst` are decompressed.
    /// Returns the hits and the (decompressed) bytes scanned.
    pub fn scan_file(&self, path: &Path) -> Result<(Vec<Hit>, u64)> {
        let name = path.display().to_string();
        let io = |e| Error::io(path, e);
        let f = File::open(path).map_err(io)?;
        match compression(path) {
            Compression::Gzip => {
                let (raws, n, nl) = self
                    .scan_stream(flate2::read::MultiGzDecoder::new(BufReader::new(f)), 0, 0)
                    .map_err(io)?;
                Ok((self.assemble(&name, vec![(raws, nl)]), n))
            }
            Compression::Zstd => {
                let dec = zstd::stream::read::Decoder::new(f).map_err(io)?;
                let (raws, n, nl) = self.scan_stream(dec, 0, 0).map_err(io)?;
                Ok((self.assemble(&name, vec![(raws, nl)]), n))
            }
            Compression::None => {
                let len = f.metadata().map_err(io)?.len();
                let ranges = self.ranges(len);
                if ranges.len() == 1 {
                    let (raws, n, nl) = self.scan_stream(f, 0, 0).map_err(io)?;
                    return Ok((self.assemble(&name, vec![(raws, nl)]), n));
                }
                let parts: Vec<(Vec<Raw>, u64)> = ranges
                    .par_iter()
                    .map(|&(s, e)| {
                        let pre = s.min(self.max_len.saturating_sub(1) as u64);
                        let mut f = File::open(path)?;
                        f.seek(SeekFrom::Start(s - pre))?;
                        let (h, _, nl) =
                            self.scan_stream(f.take(e - s + pre), s - pre, pre as usize)?;
                        Ok((h, nl))
                    })
                    .collect::<std::io::Result<_>>()
                    .map_err(io)?;
                Ok((self.assemble(&name, parts), len))
            }
        }
    }

    /// Scan files and directories (walked recursively; symbolic links are not
    /// followed into directories). Files are scanned in parallel; unreadable
    /// files are listed in [`ScanSummary::errors`].
    pub fn scan_paths(&self, paths: &[PathBuf]) -> Result<ScanSummary> {
        let mut files = Vec::new();
        for p in paths {
            collect_files(p, &mut files)?;
        }
        let results: Vec<(PathBuf, FileScan)> = files
            .par_iter()
            .map(|p| (p.clone(), self.scan_file(p)))
            .collect();
        let mut s = ScanSummary::default();
        for (p, r) in results {
            match r {
                Ok((h, n)) => {
                    s.files += 1;
                    s.bytes += n;
                    s.hits.extend(h);
                }
                Err(e) => s.errors.push(format!("{}: {e}", p.display())),
            }
        }
        s.hits
            .sort_by(|a, b| (a.file.as_str(), a.offset).cmp(&(b.file.as_str(), b.offset)));
        Ok(s)
    }
}

/// Hits in one file and the bytes scanned.
type FileScan = Result<(Vec<Hit>, u64)>;

/// Compression of a file, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain bytes.
    None,
    /// gzip (`.gz`).
    Gzip,
    /// Zstandard (`.zst`).
    Zstd,
}

/// The compression of `path` by its extension.
pub fn compression(path: &Path) -> Compression {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("gz") => Compression::Gzip,
        Some("zst") => Compression::Zstd,
        _ => Compression::None,
    }
}

fn collect_files(p: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::symlink_metadata(p).map_err(|e| Error::io(p, e))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| Error::io(p, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            let m = std::fs::symlink_metadata(&e).map_err(|err| Error::io(&e, err))?;
            if m.is_dir() {
                collect_files(&e, out)?;
            } else if m.is_file() || (m.file_type().is_symlink() && e.is_file()) {
                out.push(e);
            }
        }
    } else {
        out.push(p.to_path_buf());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Site;
    use crate::token::SecretKey;

    fn reg(n: usize) -> (Registry, Vec<String>) {
        let key = SecretKey::from_seed(9);
        let mut r = Registry::new(&key);
        let mut toks = Vec::new();
        for i in 0..n {
            let kind = HoneypotKind::ALL[i % 4];
            toks.push(r.mint(&key, kind, Site::file("x")).unwrap().0);
        }
        (r, toks)
    }

    #[test]
    fn finds_tokens_with_lines_and_ignores_lookalikes() {
        let (r, t) = reg(4);
        let s = Scanner::for_registry(&r).unwrap();
        let text = format!(
            "hello\n{}\nAKIAAAAAAAAAAAAAAAAA lookalike\nx {} y {}\n",
            t[0], t[1], t[2]
        );
        let hits = s.scan_bytes(text.as_bytes(), "mem");
        assert_eq!(hits.len(), 3, "{hits:?}");
        assert_eq!(
            hits.iter().map(|h| h.line).collect::<Vec<_>>(),
            vec![2, 4, 4]
        );
        assert_eq!(hits[0].offset, 6);
    }

    #[test]
    fn exact_canaries_and_chunk_boundaries() {
        let (r, t) = reg(2);
        let s = Scanner::builder()
            .registry(&r)
            .exact("c1", "purple heron")
            .chunk_size(7)
            .build()
            .unwrap();
        let text = format!("aa purple heron\n\n{}zz{}", t[0], t[1]);
        let hits = s.scan_reader(text.as_bytes(), "mem").unwrap();
        assert_eq!(hits.len(), 3, "{hits:?}");
        assert_eq!(hits[0].target, Target::Canary { name: "c1".into() });
        assert_eq!(hits[1].line, 3);
    }

    #[test]
    fn compressed_files_are_scanned() {
        use std::io::Write;
        let (r, t) = reg(1);
        let s = Scanner::for_registry(&r).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let body = format!("{{\"text\":\"key {}\"}}\n", t[0]);
        let gz = dir.path().join("a.jsonl.gz");
        let mut e = flate2::write::GzEncoder::new(
            File::create(&gz).unwrap(),
            flate2::Compression::default(),
        );
        e.write_all(body.as_bytes()).unwrap();
        e.finish().unwrap();
        let zst = dir.path().join("b.csv.zst");
        std::fs::write(&zst, zstd::encode_all(body.as_bytes(), 3).unwrap()).unwrap();
        std::fs::write(dir.path().join("c.txt"), "nothing here").unwrap();
        let sum = s.scan_paths(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(sum.files, 3);
        assert_eq!(sum.hits.len(), 2, "{sum:?}");
        assert!(sum.errors.is_empty());
    }

    #[test]
    fn split_ranges_find_each_token_once() {
        let (r, t) = reg(8);
        let s = Scanner::builder()
            .registry(&r)
            .split_above(64)
            .chunk_size(16)
            .build()
            .unwrap();
        let mut text = String::new();
        for (i, tok) in t.iter().enumerate() {
            text.push_str(&"ab\n".repeat(7 * i + 3));
            text.push_str(tok);
        }
        let hits = s.scan_bytes(text.as_bytes(), "mem");
        assert_eq!(hits.len(), t.len());
        for h in &hits {
            let expected_line = text[..h.offset as usize].matches('\n').count() as u64 + 1;
            assert_eq!(h.line, expected_line);
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.txt");
        std::fs::write(&p, &text).unwrap();
        let (fh, n) = s.scan_file(&p).unwrap();
        assert_eq!(n, text.len() as u64);
        assert_eq!(
            fh.iter().map(|h| (h.offset, h.line)).collect::<Vec<_>>(),
            hits.iter().map(|h| (h.offset, h.line)).collect::<Vec<_>>()
        );
    }
}
