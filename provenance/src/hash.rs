//! The digest abstraction and the RFC 6962-style Merkle tree built on it.
//!
//! Every hashing function in this crate is generic over [`StreamDigest`], a
//! thin extension of RustCrypto's [`digest::Digest`]: the hash is a type
//! parameter, not a branch. The extension exists for one reason: BLAKE3 can
//! hash one large buffer on several cores (`update_rayon`), which the `Digest`
//! trait cannot express, and without it a file-level manifest of one large file
//! would be several times slower than `b3sum`.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Digest algorithms a manifest can name. The set is closed because a
/// manifest must be verifiable by any build of this crate: a name that maps
/// to no type would make a manifest that nobody can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// BLAKE3 (default): fast, parallel, 32-byte output.
    #[default]
    Blake3,
    /// SHA-256, for environments that require a FIPS-approved hash.
    Sha256,
}

impl Algorithm {
    /// Name used in manifests and in in-toto digest sets.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Blake3 => "blake3",
            Algorithm::Sha256 => "sha256",
        }
    }

    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        32
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A [`digest::Digest`] usable for manifests: cloneable, sendable, with a
/// manifest name and an optional fast path for large buffers.
///
/// Implementing it for another RustCrypto hash takes one line plus an
/// [`Algorithm`] variant.
pub trait StreamDigest: digest::Digest + Clone + Send + Sync + 'static {
    /// The algorithm this type implements, as written in manifests.
    const ALGORITHM: Algorithm;

    /// Absorb a large buffer. The default is [`digest::Digest::update`];
    /// BLAKE3 overrides it to use several cores on one buffer.
    fn update_bulk(&mut self, data: &[u8]) {
        digest::Digest::update(self, data);
    }

    /// Append the Merkle leaf hash ([`leaf_hash`]) of every record
    /// `base[r]`, `r` in `records`, to `out` (a range out of bounds is hashed
    /// as an empty record). BLAKE3 overrides it to hash many records at
    /// once, one per vector lane.
    fn leaf_hashes(
        base: &[u8],
        records: impl Iterator<Item = std::ops::Range<usize>>,
        out: &mut Vec<u8>,
    ) {
        for r in records {
            out.extend_from_slice(&leaf_hash::<Self>(base.get(r).unwrap_or(&[])));
        }
    }

    /// Append the node hash ([`node_hash`]) of each pair of adjacent child
    /// hashes in `children` (a flat buffer of an even number of hashes).
    fn node_hashes(children: &[u8], out: &mut Vec<u8>) {
        let w = <Self as digest::Digest>::output_size();
        for pair in children.chunks_exact(2 * w) {
            out.extend_from_slice(&node_hash::<Self>(&pair[..w], &pair[w..]));
        }
    }
}

impl StreamDigest for sha2::Sha256 {
    const ALGORITHM: Algorithm = Algorithm::Sha256;
}

/// BLAKE3 as a RustCrypto `digest` 0.10 hash.
///
/// An adapter rather than blake3's own `traits-preview` feature: that
/// feature follows `digest` 0.11 while `sha2` and the rest of RustCrypto
/// used here are on 0.10, and one trait version must serve both hashes.
#[derive(Debug, Clone, Default)]
pub struct Blake3(blake3::Hasher);

impl digest::HashMarker for Blake3 {}

impl digest::OutputSizeUser for Blake3 {
    type OutputSize = digest::consts::U32;
}

impl digest::Update for Blake3 {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
}

impl digest::FixedOutput for Blake3 {
    fn finalize_into(self, out: &mut digest::Output<Self>) {
        out.copy_from_slice(self.0.finalize().as_bytes());
    }
}

impl digest::Reset for Blake3 {
    fn reset(&mut self) {
        self.0.reset();
    }
}

impl digest::FixedOutputReset for Blake3 {
    fn finalize_into_reset(&mut self, out: &mut digest::Output<Self>) {
        out.copy_from_slice(self.0.finalize().as_bytes());
        self.0.reset();
    }
}

impl StreamDigest for Blake3 {
    const ALGORITHM: Algorithm = Algorithm::Blake3;

    fn update_bulk(&mut self, data: &[u8]) {
        // Below ~128 KiB the thread hand-off costs more than it saves
        // (the threshold blake3's documentation recommends).
        if data.len() >= 128 * 1024 {
            self.0.update_rayon(data);
        } else {
            self.0.update(data);
        }
    }

    fn leaf_hashes(
        base: &[u8],
        records: impl Iterator<Item = std::ops::Range<usize>>,
        out: &mut Vec<u8>,
    ) {
        crate::lanes::hash_prefixed(LEAF, base, records, out);
    }

    fn node_hashes(children: &[u8], out: &mut Vec<u8>) {
        crate::lanes::hash_pairs(NODE, children, out);
    }
}

/// Run `$body` with `$d` bound to the digest type of `$alg`.
macro_rules! with_digest {
    ($alg:expr, $d:ident => $body:expr) => {
        match $alg {
            $crate::hash::Algorithm::Blake3 => {
                type $d = $crate::hash::Blake3;
                $body
            }
            $crate::hash::Algorithm::Sha256 => {
                type $d = sha2::Sha256;
                $body
            }
        }
    };
}
pub(crate) use with_digest;

/// Domain-separation prefix of a Merkle leaf (RFC 6962 §2.1).
const LEAF: u8 = 0x00;
/// Domain-separation prefix of an interior node (RFC 6962 §2.1).
const NODE: u8 = 0x01;

/// Hash of a whole byte string, as a vector.
pub fn digest_bytes<D: StreamDigest>(data: &[u8]) -> Vec<u8> {
    let mut h = D::new();
    h.update_bulk(data);
    h.finalize().to_vec()
}

/// Merkle leaf hash `H(0x00 || data)`: a leaf can never be confused with an
/// interior node, so no second preimage can be built from node values.
pub fn leaf_hash<D: StreamDigest>(data: &[u8]) -> digest::Output<D> {
    let mut h = D::new();
    digest::Digest::update(&mut h, [LEAF]);
    digest::Digest::update(&mut h, data);
    h.finalize()
}

/// Merkle node hash `H(0x01 || left || right)`.
pub fn node_hash<D: StreamDigest>(left: &[u8], right: &[u8]) -> digest::Output<D> {
    let mut h = D::new();
    digest::Digest::update(&mut h, [NODE]);
    digest::Digest::update(&mut h, left);
    digest::Digest::update(&mut h, right);
    h.finalize()
}

/// Root of the Merkle tree over `leaves`, a flat buffer of leaf hashes of
/// `D`'s output size, shaped as in RFC 6962: the left subtree holds the
/// largest power of two strictly below the leaf count. The empty tree's root
/// is `H("")`.
///
/// Built level by level: pairing adjacent nodes and carrying an odd last
/// node up unchanged gives exactly the RFC 6962 shape, and a level's pairs
/// are independent, so they are hashed in parallel and, for BLAKE3, many at
/// a time in vector lanes.
pub fn merkle_root<D: StreamDigest>(leaves: &[u8]) -> Vec<u8> {
    let w = <D as digest::Digest>::output_size();
    let n = leaves.len() / w;
    if n == 0 {
        return D::new().finalize().to_vec();
    }
    let mut level: std::borrow::Cow<'_, [u8]> = std::borrow::Cow::Borrowed(&leaves[..n * w]);
    while level.len() > w {
        let pairs = level.len() / (2 * w);
        let (paired, odd) = level.split_at(pairs * 2 * w);
        let mut next = Vec::with_capacity((pairs + 1) * w);
        if pairs > PAR_PAIRS {
            let parts: Vec<Vec<u8>> = paired
                .par_chunks(PAR_PAIRS * 2 * w)
                .map(|c| {
                    let mut v = Vec::with_capacity(c.len() / 2);
                    D::node_hashes(c, &mut v);
                    v
                })
                .collect();
            for p in parts {
                next.extend_from_slice(&p);
            }
        } else {
            D::node_hashes(paired, &mut next);
        }
        next.extend_from_slice(odd);
        level = std::borrow::Cow::Owned(next);
    }
    level.into_owned()
}

/// The BLAKE3 digest of an input of `len` bytes from `hashers`, one per
/// consecutive piece of `piece` bytes (a power of two, at least one BLAKE3
/// chunk), each hasher having been given its piece's offset
/// (`set_input_offset`) and bytes: exactly `blake3::hash(input)`.
///
/// BLAKE3's tree splits an input of `n` bytes into a left subtree of
/// `left_subtree_len(n)` bytes, a power of two, and the rest; any split of
/// more than `piece` bytes is a multiple of `piece`, so the pieces are whole
/// subtrees and merging their chaining values along the same splits
/// rebuilds the tree.
pub(crate) fn blake3_merge_pieces(hashers: &[blake3::Hasher], piece: u64, len: u64) -> [u8; 32] {
    use blake3::hazmat::{left_subtree_len, merge_subtrees_root, HasherExt, Mode};
    fn subtree(h: &[blake3::Hasher], piece: u64, len: u64) -> blake3::hazmat::ChainingValue {
        match h {
            [] => [0; 32],
            [one] => one.finalize_non_root(),
            _ => {
                let (l, r) = split(h, piece, len);
                blake3::hazmat::merge_subtrees_non_root(
                    &subtree(l.0, piece, l.1),
                    &subtree(r.0, piece, r.1),
                    Mode::Hash,
                )
            }
        }
    }
    type Side<'a> = (&'a [blake3::Hasher], u64);
    fn split(h: &[blake3::Hasher], piece: u64, len: u64) -> (Side<'_>, Side<'_>) {
        let left = left_subtree_len(len);
        let k = usize::try_from(left / piece)
            .unwrap_or(usize::MAX)
            .min(h.len());
        let (l, r) = h.split_at(k);
        ((l, left), (r, len - left))
    }
    match hashers {
        [] => *blake3::hash(&[]).as_bytes(),
        [one] => *one.finalize().as_bytes(),
        _ => {
            let (l, r) = split(hashers, piece, len);
            *merge_subtrees_root(
                &subtree(l.0, piece, l.1),
                &subtree(r.0, piece, r.1),
                Mode::Hash,
            )
            .as_bytes()
        }
    }
}

/// Pairs per parallel task when hashing a Merkle level.
const PAR_PAIRS: usize = 8192;

/// Largest power of two strictly less than `n` (n ≥ 2).
#[cfg(test)]
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves<D: StreamDigest>(items: &[&[u8]]) -> Vec<u8> {
        items
            .iter()
            .flat_map(|i| leaf_hash::<D>(i).to_vec())
            .collect()
    }

    #[test]
    fn rfc6962_shape_and_domain_separation() {
        type D = sha2::Sha256;
        let l = leaves::<D>(&[b"a", b"b", b"c"]);
        let (a, b, c) = (&l[0..32], &l[32..64], &l[64..96]);
        let ab = node_hash::<D>(a, b);
        let want = node_hash::<D>(&ab, c);
        assert_eq!(merkle_root::<D>(&l), want.to_vec());
        // A leaf is not a node: hashing "a" as a leaf differs from its raw digest.
        assert_ne!(leaf_hash::<D>(b"a").to_vec(), digest_bytes::<D>(b"a"));
        assert_eq!(merkle_root::<D>(&[]), digest_bytes::<D>(b""));
    }

    #[test]
    fn parallel_and_serial_roots_agree() {
        type D = Blake3;
        let items: Vec<Vec<u8>> = (0..20_000u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
        let l = leaves::<D>(&refs);
        let root = merkle_root::<D>(&l);
        // Recompute with a serial reference implementation.
        fn serial(l: &[u8]) -> Vec<u8> {
            let n = l.len() / 32;
            if n == 1 {
                return l.to_vec();
            }
            let k = split_point(n);
            node_hash::<Blake3>(&serial(&l[..k * 32]), &serial(&l[k * 32..])).to_vec()
        }
        assert_eq!(root, serial(&l));
    }

    /// The RFC 6962 recursion, as the reference for the level-wise build.
    fn rfc6962<D: StreamDigest>(l: &[u8]) -> Vec<u8> {
        let n = l.len() / 32;
        if n == 1 {
            return l.to_vec();
        }
        let k = split_point(n);
        node_hash::<D>(&rfc6962::<D>(&l[..k * 32]), &rfc6962::<D>(&l[k * 32..])).to_vec()
    }

    proptest::proptest! {
        #[test]
        fn level_wise_root_is_rfc6962(n in 1usize..300) {
            let items: Vec<Vec<u8>> = (0..n as u32).map(|i| i.to_le_bytes().to_vec()).collect();
            let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
            let b = leaves::<Blake3>(&refs);
            proptest::prop_assert_eq!(merkle_root::<Blake3>(&b), rfc6962::<Blake3>(&b));
            let s = leaves::<sha2::Sha256>(&refs);
            proptest::prop_assert_eq!(merkle_root::<sha2::Sha256>(&s), rfc6962::<sha2::Sha256>(&s));
            let base: Vec<u8> = items.concat();
            let mut fast = Vec::new();
            Blake3::leaf_hashes(&base, (0..n).map(|i| 4 * i..4 * i + 4), &mut fast);
            proptest::prop_assert_eq!(fast, b);
        }
    }

    #[test]
    fn blake3_bulk_update_matches_plain() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            digest_bytes::<Blake3>(&data),
            blake3::hash(&data).as_bytes().to_vec()
        );
    }
}
