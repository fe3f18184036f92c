//! Splitting a file's bytes into records and hashing each one.
//!
//! A record is the unit a poisoner edits: a JSONL line, a CSV data row, an NPY
//! row. Each gets a Merkle leaf hash over its exact bytes (no parsing, no
//! normalisation: a changed byte is a changed record), and, where the format
//! has one, an id for the report. Splitting works on byte slices so it can run
//! on a memory map and on fuzzer input alike, and never panics on any input.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::hash::{leaf_hash, StreamDigest};

/// Record formats with per-record digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordFormat {
    /// One record per line (`.jsonl`, `.ndjson`); the id is the top-level
    /// id field of the object when present.
    Jsonl,
    /// One record per data row after the header (`.csv`); quoted newlines stay
    /// inside their row; the id is the id column when the header has one.
    Csv,
    /// One record per row of a C-order `.npy` array; the id is the row index.
    Npy,
}

impl RecordFormat {
    /// The format implied by a file name's extension, if any.
    pub fn from_path(path: &str) -> Option<Self> {
        let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
        match ext.as_str() {
            "jsonl" | "ndjson" => Some(RecordFormat::Jsonl),
            "csv" => Some(RecordFormat::Csv),
            "npy" => Some(RecordFormat::Npy),
            _ => None,
        }
    }
}

/// Record ids, one per record (each may be missing), stored as one string
/// and offsets rather than a `String` per record: a large file has millions
/// of records, and an allocation per id would cost more than hashing it.
/// In JSON it is an array of strings and nulls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordIds {
    text: String,
    ends: Vec<usize>,
    present: Vec<bool>,
}

impl RecordIds {
    /// Append the id of the next record.
    pub fn push(&mut self, id: Option<&str>) {
        self.text.push_str(id.unwrap_or(""));
        self.ends.push(self.text.len());
        self.present.push(id.is_some());
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are no records.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// True when at least one record has an id.
    pub fn any(&self) -> bool {
        self.present.iter().any(|&p| p)
    }

    /// Id of record `i`, if it has one.
    pub fn get(&self, i: usize) -> Option<&str> {
        if !*self.present.get(i)? {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.get(start..self.ends[i])
    }

    /// Every record's id, in order.
    pub fn iter(&self) -> impl Iterator<Item = Option<&str>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Append the ids of records `range` to `out` as the elements of a JSON
    /// array (comma-separated, no brackets), byte for byte as `serde_json`
    /// writes them: ids are copied between quotes unless they hold a byte
    /// JSON must escape, and only those go through `serde_json`. A manifest
    /// holds millions of ids, and the generic serializer costs several times
    /// more per id than the copy.
    pub(crate) fn write_json(&self, range: std::ops::Range<usize>, out: &mut Vec<u8>) {
        for i in range {
            if i > 0 {
                out.push(b',');
            }
            match self.get(i) {
                None => out.extend_from_slice(b"null"),
                Some(s) if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') => {
                    out.push(b'"');
                    out.extend_from_slice(s.as_bytes());
                    out.push(b'"');
                }
                Some(s) => {
                    // Writing a string into a Vec cannot fail.
                    let _ = serde_json::to_writer(&mut *out, s);
                }
            }
        }
    }

    /// Append all of `other`.
    pub fn append(&mut self, other: &RecordIds) {
        let base = self.text.len();
        self.text.push_str(&other.text);
        self.ends.extend(other.ends.iter().map(|e| e + base));
        self.present.extend_from_slice(&other.present);
    }
}

impl<S: AsRef<str>> FromIterator<Option<S>> for RecordIds {
    fn from_iter<I: IntoIterator<Item = Option<S>>>(iter: I) -> Self {
        let mut ids = RecordIds::default();
        for id in iter {
            ids.push(id.as_ref().map(AsRef::as_ref));
        }
        ids
    }
}

impl Serialize for RecordIds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for RecordIds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = RecordIds;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of record ids (strings or null)")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RecordIds, A::Error> {
                let mut ids = RecordIds::default();
                while let Some(id) = seq.next_element::<Option<std::borrow::Cow<'de, str>>>()? {
                    ids.push(id.as_deref());
                }
                Ok(ids)
            }
        }
        d.deserialize_seq(Visit)
    }
}

/// Per-record digests of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordDigests {
    /// The format the file was split as.
    pub format: RecordFormat,
    /// Leaf hashes, concatenated (32 bytes each).
    pub leaves: Vec<u8>,
    /// Record ids, one per record (missing when the record has none).
    pub ids: RecordIds,
    /// Leaf hash of the header (CSV header row, NPY header), if the format has one.
    pub header: Option<Vec<u8>>,
}

impl RecordDigests {
    /// Number of records.
    pub fn count(&self) -> usize {
        self.ids.len()
    }
}

/// Split `bytes` as `format` and hash every record with `D`. `id_field` names
/// the JSON field or CSV column holding record ids.
///
/// Only an NPY file can fail (its header must parse and be C-order): a
/// JSONL or CSV file always splits, because records are hashed as bytes.
pub fn record_digests<D: StreamDigest>(
    bytes: &[u8],
    format: RecordFormat,
    id_field: &str,
) -> Result<RecordDigests, String> {
    match format {
        RecordFormat::Jsonl => Ok(jsonl::<D>(bytes, id_field)),
        RecordFormat::Csv => Ok(csv::<D>(bytes, id_field)),
        RecordFormat::Npy => npy::<D>(bytes),
    }
}

/// Size of the pieces a file is cut into for parallel work: large enough
/// that the per-piece overhead vanishes, small enough to keep both cores busy
/// on one shard. A power of two, so that with BLAKE3 each piece is a whole
/// subtree of the file's hash tree.
pub(crate) const PIECE: usize = 4 << 20;

/// Bytes of lines gathered before they are hashed: small enough that the
/// lines are still in cache when hashed, large enough to keep every lane busy.
const WINDOW: usize = 256 << 10;

fn jsonl<D: StreamDigest>(bytes: &[u8], id_field: &str) -> RecordDigests {
    let parts: Vec<(Vec<u8>, RecordIds)> = (0..pieces(bytes.len(), PIECE))
        .into_par_iter()
        .map(|i| jsonl_piece::<D>(bytes, i, PIECE, id_field, |_| {}))
        .collect();
    join_jsonl(parts.into_iter())
}

/// JSONL record digests and the BLAKE3 digest of the whole file in one
/// pass over the bytes: each piece of the file is hashed as a BLAKE3
/// subtree window by window, right before the records of the same window,
/// so that every byte is read from memory once, while it is in cache, rather
/// than once for the file digest and again for the records. The subtrees
/// are merged into exactly `blake3::hash(bytes)`. `piece` must be a power of
/// two of at least one BLAKE3 chunk (1024 bytes), so that pieces are whole
/// subtrees.
pub(crate) fn jsonl_blake3_fused(
    bytes: &[u8],
    id_field: &str,
    piece: usize,
) -> (RecordDigests, [u8; 32]) {
    use blake3::hazmat::HasherExt;
    debug_assert!(piece.is_power_of_two() && piece >= blake3::CHUNK_LEN);
    let n = pieces(bytes.len(), piece);
    let parts: Vec<((Vec<u8>, RecordIds), blake3::Hasher)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let (lo, hi) = (i * piece, ((i + 1) * piece).min(bytes.len()));
            let mut h = blake3::Hasher::new();
            if i > 0 {
                h.set_input_offset(lo as u64);
            }
            let mut done = lo;
            let r = jsonl_piece::<crate::hash::Blake3>(bytes, i, piece, id_field, |upto| {
                // Fed a few windows at a time: every `update` hashes its
                // last chunk one block at a time, and the windows just split
                // are still in cache.
                let upto = upto.clamp(done, hi);
                if upto - done >= DIGEST_FEED {
                    h.update(&bytes[done..upto]);
                    done = upto;
                }
            });
            h.update(&bytes[done..hi]);
            (r, h)
        })
        .collect();
    let (recs, hashers): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
    let digest = crate::hash::blake3_merge_pieces(&hashers, piece as u64, bytes.len() as u64);
    (join_jsonl(recs.into_iter()), digest)
}

/// Least bytes given to the file hasher at once in the fused pass.
const DIGEST_FEED: usize = 1 << 20;

/// Number of pieces of `len` bytes (one, possibly empty, for an empty file).
fn pieces(len: usize, piece: usize) -> usize {
    len.div_ceil(piece).max(1)
}

/// Start of the first record starting at or after `at`: JSON strings cannot
/// hold a raw newline, so a record starts at 0 and after every '\n'.
fn record_start(bytes: &[u8], at: usize) -> usize {
    if at == 0 {
        return 0;
    }
    match bytes.get(at - 1..).and_then(find_newline) {
        Some(i) => at + i,
        None => bytes.len(),
    }
}

/// Leaves and ids of the records that start in piece `i`, the records
/// split and hashed window by window. `window_done(end)` is called before a
/// window's records are hashed, with the end of the window's last record,
/// so that the caller can hash the same bytes while they are in cache.
fn jsonl_piece<D: StreamDigest>(
    bytes: &[u8],
    i: usize,
    piece: usize,
    id_field: &str,
    mut window_done: impl FnMut(usize),
) -> (Vec<u8>, RecordIds) {
    let (mut pos, end) = (
        record_start(bytes, i * piece),
        record_start(bytes, (i + 1) * piece),
    );
    let mut leaves = Vec::with_capacity((end - pos) / 8);
    let mut ids = RecordIds::default();
    let mut spans = Vec::new();
    while pos < end {
        spans.clear();
        let stop = pos.saturating_add(WINDOW);
        while pos < end && pos < stop {
            let line_end = find_newline(&bytes[pos..end]).map_or(end, |j| pos + j);
            spans.push(pos..line_end);
            pos = line_end + 1;
        }
        window_done(pos.min(end));
        D::leaf_hashes(bytes, spans.iter().cloned(), &mut leaves);
        for s in &spans {
            ids.push(json_id(&bytes[s.clone()], id_field).as_deref());
        }
    }
    (leaves, ids)
}

fn join_jsonl(parts: impl ExactSizeIterator<Item = (Vec<u8>, RecordIds)>) -> RecordDigests {
    let mut out = RecordDigests {
        format: RecordFormat::Jsonl,
        leaves: Vec::new(),
        ids: RecordIds::default(),
        header: None,
    };
    let parts: Vec<_> = parts.collect();
    out.leaves.reserve(parts.iter().map(|p| p.0.len()).sum());
    for (l, i) in parts {
        out.leaves.extend_from_slice(&l);
        out.ids.append(&i);
    }
    out
}

/// Lines of `bytes` without their '\n'; a final line without a newline is a
/// line, a final newline does not start an empty one.
#[cfg(test)]
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match find_newline(rest) {
            Some(i) => {
                let line = &rest[..i];
                rest = &rest[i + 1..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = &[];
                Some(line)
            }
        }
    })
}

/// Position of the first '\n' (memchr: vectorised, so line splitting keeps
/// up with hashing).
fn find_newline(s: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', s)
}

/// The value of top-level key `field` of a JSON object line, if it is a
/// string or a number. A fast scan, not a validating parse: ids only label
/// records in reports, the digests are what is verified, and usually the id
/// is the first key so the scan stops after a few bytes.
pub fn json_top_level_id(line: &[u8], field: &str) -> Option<String> {
    json_id(line, field).map(std::borrow::Cow::into_owned)
}

/// [`json_top_level_id`] without a copy when the id has no escapes.
fn json_id<'a>(line: &'a [u8], field: &str) -> Option<std::borrow::Cow<'a, str>> {
    use std::borrow::Cow;
    let mut p = Scan { b: line, i: 0 };
    p.ws();
    p.eat(b'{')?;
    loop {
        p.ws();
        if p.peek()? == b'}' {
            return None;
        }
        let (ks, ke) = p.string()?;
        let key = &line[ks + 1..ke - 1];
        p.ws();
        p.eat(b':')?;
        p.ws();
        if key == field.as_bytes() {
            return match p.peek()? {
                b'"' => {
                    let (s, e) = p.string()?;
                    let raw = &line[s + 1..e - 1];
                    if raw.contains(&b'\\') {
                        serde_json::from_slice::<String>(&line[s..e])
                            .ok()
                            .map(Cow::Owned)
                    } else {
                        std::str::from_utf8(raw).ok().map(Cow::Borrowed)
                    }
                }
                b'-' | b'0'..=b'9' => {
                    let s = p.i;
                    while matches!(
                        p.peek(),
                        Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    ) {
                        p.i += 1;
                    }
                    std::str::from_utf8(&line[s..p.i]).ok().map(Cow::Borrowed)
                }
                _ => None,
            };
        }
        p.skip_value()?;
        p.ws();
        match p.peek()? {
            b',' => p.i += 1,
            _ => return None,
        }
    }
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }
    /// A string starting at the cursor; returns its span including quotes.
    fn string(&mut self) -> Option<(usize, usize)> {
        let s = self.i;
        self.eat(b'"')?;
        loop {
            match self.peek()? {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return Some((s, self.i));
                }
                _ => self.i += 1,
            }
        }
    }
    fn skip_value(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'"' => {
                    self.string()?;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.i += 1;
                }
                b'}' | b']' => {
                    if depth == 0 {
                        return Some(());
                    }
                    depth -= 1;
                    self.i += 1;
                }
                b',' if depth == 0 => return Some(()),
                _ => self.i += 1,
            }
            if depth == 0 && matches!(self.peek(), Some(b',' | b'}')) {
                return Some(());
            }
        }
    }
}

/// Rows hashed per parallel task (CSV and NPY).
const ROWS_PER_TASK: usize = 4096;

fn csv<D: StreamDigest>(bytes: &[u8], id_field: &str) -> RecordDigests {
    // Quotes decide where a row ends, so boundaries are found in one
    // sequential pass; hashing the rows is then parallel.
    let mut rows: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => {
                rows.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < bytes.len() {
        rows.push((start, bytes.len()));
    }
    let mut out = RecordDigests {
        format: RecordFormat::Csv,
        leaves: Vec::new(),
        ids: RecordIds::default(),
        header: None,
    };
    let Some((&(hs, he), data)) = rows.split_first() else {
        return out;
    };
    let header = &bytes[hs..he];
    out.header = Some(leaf_hash::<D>(header).to_vec());
    let id_col = csv_fields(header).iter().position(|f| f.trim() == id_field);
    let parts: Vec<(Vec<u8>, RecordIds)> = data
        .par_chunks(ROWS_PER_TASK)
        .map(|rows| {
            let mut leaves = Vec::with_capacity(rows.len() * 32);
            D::leaf_hashes(bytes, rows.iter().map(|&(s, e)| s..e), &mut leaves);
            let ids = rows
                .iter()
                .map(|&(s, e)| {
                    id_col
                        .and_then(|c| csv_fields(&bytes[s..e]).into_iter().nth(c))
                        .map(|f| f.trim().to_owned())
                })
                .collect();
            (leaves, ids)
        })
        .collect();
    for (l, ids) in parts {
        out.leaves.extend_from_slice(&l);
        out.ids.append(&ids);
    }
    out
}

/// Fields of one CSV row (RFC 4180 quoting, `""` inside quotes is a quote).
fn csv_fields(row: &[u8]) -> Vec<String> {
    let row = row.strip_suffix(b"\r").unwrap_or(row);
    let mut fields = Vec::new();
    let mut cur = Vec::new();
    let mut quoted = false;
    let mut i = 0;
    while i < row.len() {
        let b = row[i];
        match (quoted, b) {
            (true, b'"') if row.get(i + 1) == Some(&b'"') => {
                cur.push(b'"');
                i += 1;
            }
            (_, b'"') => quoted = !quoted,
            (false, b',') => {
                fields.push(String::from_utf8_lossy(&std::mem::take(&mut cur)).into_owned())
            }
            _ => cur.push(b),
        }
        i += 1;
    }
    fields.push(String::from_utf8_lossy(&cur).into_owned());
    fields
}

fn npy<D: StreamDigest>(bytes: &[u8]) -> Result<RecordDigests, String> {
    let loc = mithridate_core::Location::default();
    let head = &bytes[..bytes.len().min((1 << 20) + 12)];
    let h = mithridate_core::io::npy::parse_header(head, bytes.len() as u64, &loc)
        .map_err(|e| e.to_string())?;
    if h.fortran_order {
        return Err(
            "Fortran-order NPY rows are not contiguous; only C order has record digests".into(),
        );
    }
    let data = bytes
        .get(h.data_offset..)
        .ok_or("NPY data offset beyond end of file")?;
    let rows = h.shape.first().copied().unwrap_or(1);
    let mut out = RecordDigests {
        format: RecordFormat::Npy,
        leaves: Vec::new(),
        ids: RecordIds::default(),
        header: Some(leaf_hash::<D>(&bytes[..h.data_offset]).to_vec()),
    };
    if rows == 0 {
        return Ok(out);
    }
    let row_len = data.len() / rows;
    if row_len == 0 || row_len * rows != data.len() {
        return Err(format!(
            "NPY data of {} bytes does not divide into {rows} rows",
            data.len()
        ));
    }
    let leaves: Vec<Vec<u8>> = (0..rows.div_ceil(ROWS_PER_TASK))
        .into_par_iter()
        .map(|t| {
            let (lo, hi) = (t * ROWS_PER_TASK, ((t + 1) * ROWS_PER_TASK).min(rows));
            let mut v = Vec::with_capacity((hi - lo) * 32);
            D::leaf_hashes(
                data,
                (lo..hi).map(|i| i * row_len..(i + 1) * row_len),
                &mut v,
            );
            v
        })
        .collect();
    out.leaves = leaves.concat();
    out.ids = std::iter::repeat_n(None::<&str>, rows).collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type B = crate::hash::Blake3;

    #[test]
    fn jsonl_lines_ids_and_framing() {
        let text = b"{\"id\": \"a\", \"x\": 1}\n{\"x\": {\"id\": 9}, \"id\": 7}\n\n{\"y\":2}";
        let r = record_digests::<B>(text, RecordFormat::Jsonl, "id").unwrap();
        assert_eq!(r.count(), 4);
        assert_eq!(
            r.ids.iter().collect::<Vec<_>>(),
            [Some("a"), Some("7"), None, None]
        );
        assert_eq!(
            &r.leaves[..32],
            leaf_hash::<B>(b"{\"id\": \"a\", \"x\": 1}").as_slice()
        );
        let with_final = record_digests::<B>(b"a\nb\n", RecordFormat::Jsonl, "id").unwrap();
        assert_eq!(with_final.count(), 2);
    }

    #[test]
    fn jsonl_chunked_equals_serial() {
        let mut text = Vec::new();
        for i in 0..60_000 {
            text.extend_from_slice(
                format!("{{\"id\":{i},\"text\":\"{}\"}}\n", "z".repeat(i % 300)).as_bytes(),
            );
        }
        assert!(text.len() > 2 * PIECE);
        let r = record_digests::<B>(&text, RecordFormat::Jsonl, "id").unwrap();
        assert_eq!(r.count(), 60_000);
        assert_eq!(r.ids.get(59_999), Some("59999"));
        let serial: Vec<u8> = lines(&text)
            .flat_map(|l| leaf_hash::<B>(l).to_vec())
            .collect();
        assert_eq!(r.leaves, serial);
        let (fused, digest) = jsonl_blake3_fused(&text, "id", PIECE);
        assert_eq!(fused, r);
        assert_eq!(digest, *blake3::hash(&text).as_bytes());
    }

    #[test]
    fn csv_rows_respect_quotes_and_find_id_column() {
        let text = b"label,id,text\n1,r1,\"two\nlines\"\n0,\"r,2\",plain\r\n";
        let r = record_digests::<B>(text, RecordFormat::Csv, "id").unwrap();
        assert_eq!(r.count(), 2);
        assert_eq!(r.ids.iter().collect::<Vec<_>>(), [Some("r1"), Some("r,2")]);
        assert!(r.header.is_some());
    }

    #[test]
    fn npy_rows() {
        let a = ndarray::Array2::<f32>::from_shape_fn((5, 3), |(i, j)| (i * 3 + j) as f32);
        let bytes = mithridate_core::io::npy::npy_bytes_f32(&a);
        let r = record_digests::<B>(&bytes, RecordFormat::Npy, "id").unwrap();
        assert_eq!(r.count(), 5);
        assert!(record_digests::<B>(b"not npy", RecordFormat::Npy, "id").is_err());
    }

    proptest! {
        #[test]
        fn splitting_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), fmt in 0u8..3) {
            let f = [RecordFormat::Jsonl, RecordFormat::Csv, RecordFormat::Npy][fmt as usize];
            if let Ok(r) = record_digests::<B>(&bytes, f, "id") {
                prop_assert_eq!(r.leaves.len(), 32 * r.count());
            }
            let _ = json_top_level_id(&bytes, "id");
        }

        #[test]
        fn record_ids_are_a_json_array_of_optional_strings(ids in proptest::collection::vec(proptest::option::of(".{0,6}"), 0..20)) {
            let compact: RecordIds = ids.iter().cloned().collect();
            prop_assert_eq!(compact.iter().map(|x| x.map(str::to_owned)).collect::<Vec<_>>(), ids.clone());
            let json = serde_json::to_string(&compact).unwrap();
            prop_assert_eq!(&json, &serde_json::to_string(&ids).unwrap());
            prop_assert_eq!(serde_json::from_str::<RecordIds>(&json).unwrap(), compact);
        }

        #[test]
        fn fused_pass_is_blake3_and_the_same_records(
            len in prop_oneof![
                0usize..5000,
                // Around piece boundaries of every piece size used below.
                (1usize..9, 0usize..3).prop_map(|(k, d)| (k * 1024 + d).saturating_sub(1)),
                (1usize..5, 0usize..3).prop_map(|(k, d)| (k * 4096 + d).saturating_sub(1)),
                5000usize..40_000,
            ],
            every in prop_oneof![Just(0u64), 1u64..3000],
            seed in any::<u64>(),
            piece_log in 10u32..13,
        ) {
            // Bytes with a newline about every `every` bytes (none at all
            // when 0: one record across every piece).
            let mut x = seed | 1;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if every > 0 && x % every == 0 { b'\n' } else { b'a' + (x % 26) as u8 }
                })
                .collect();
            let (fused, digest) = jsonl_blake3_fused(&bytes, "id", 1 << piece_log);
            prop_assert_eq!(digest, *blake3::hash(&bytes).as_bytes());
            let two_pass = record_digests::<B>(&bytes, RecordFormat::Jsonl, "id").unwrap();
            prop_assert_eq!(&fused, &two_pass);
            let serial: Vec<u8> = lines(&bytes).flat_map(|l| leaf_hash::<B>(l).to_vec()).collect();
            prop_assert_eq!(fused.leaves, serial);
        }

        #[test]
        fn find_newline_matches_naive(bytes in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..100)) {
            prop_assert_eq!(find_newline(&bytes), bytes.iter().position(|&b| b == b'\n'));
        }
    }
}
