//! Many short BLAKE3 hashes at once, one message per SIMD lane.
//!
//! A record-level manifest hashes every record separately, and records are
//! short (a JSONL line is typically a few hundred bytes). Hashing them one
//! at a time runs BLAKE3's compression function on one block at a time,
//! which is about ten times slower per byte than hashing a whole file, where
//! BLAKE3 compresses 8 or 16 independent chunks side by side in vector
//! registers. This module does the same for independent *messages*: each
//! vector lane carries one message (a "multi-buffer" hasher); when a lane's
//! message ends, the lane takes the next one, so every lane stays busy
//! whatever the message lengths.
//!
//! The output is exactly BLAKE3 (the test suite compares it with the
//! `blake3` crate on random inputs). Messages of one chunk or less (at most
//! 1024 bytes including the prefix byte) are hashed in lanes; longer ones,
//! rare in record data, go to the `blake3` crate one by one. The code is
//! portable Rust written so that the compiler vectorises it; on x86-64 it is
//! compiled a second and third time with AVX2 and AVX-512 enabled and the
//! best variant is chosen at run time.

/// BLAKE3 initialisation vector (the SHA-256 IV).
const IV: [u32; 8] = [
    0x6A09_E667,
    0xBB67_AE85,
    0x3C6E_F372,
    0xA54F_F53A,
    0x510E_527F,
    0x9B05_688C,
    0x1F83_D9AB,
    0x5BE0_CD19,
];

/// Message word permutation of each of the seven rounds.
const SCHEDULE: [[usize; 16]; 7] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8],
    [3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1],
    [10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6],
    [12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4],
    [9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7],
    [11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13],
];

const CHUNK_START: u32 = 1;
const CHUNK_END: u32 = 2;
const ROOT: u32 = 8;

/// Longest message hashed in a lane: with its prefix byte it fills one
/// 1024-byte BLAKE3 chunk.
pub(crate) const LANE_MAX: usize = 1023;

/// A message: a byte range of the base buffer.
pub(crate) type Span = std::ops::Range<usize>;

/// Append `BLAKE3(prefix || base[r])` (32 bytes) to `out` for every range
/// `r` of `msgs`, in order. Ranges out of bounds are hashed as empty.
///
/// Messages are ranges of one buffer rather than slices so that a block can
/// be read as one 64-byte load even where it starts one byte before the
/// message (the prefix) or runs past its end (the bytes beyond are masked
/// off), instead of being copied into a scratch block first.
pub(crate) fn hash_prefixed(
    prefix: u8,
    base: &[u8],
    msgs: impl Iterator<Item = Span>,
    out: &mut Vec<u8>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return x86::avx512(prefix, base, msgs, out);
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return x86::avx2(prefix, base, msgs, out);
        }
    }
    run::<8, Portable>(prefix, base, msgs, out)
}

/// Append `BLAKE3(prefix || pair)` for every 64-byte pair of 32-byte child
/// hashes in `children` (a trailing partial pair is ignored): the interior
/// nodes of a Merkle level.
///
/// Every message is 65 bytes, two blocks, so the lanes move in lockstep:
/// no lane ever waits for a new message, and none of the per-lane
/// bookkeeping of [`hash_prefixed`] is needed, which costs as much as the
/// compression itself when messages are this short.
pub(crate) fn hash_pairs(prefix: u8, children: &[u8], out: &mut Vec<u8>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return x86::avx512_pairs(prefix, children, out);
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return x86::avx2_pairs(prefix, children, out);
        }
    }
    pairs::<8, Portable>(prefix, children, out)
}

#[inline(always)]
fn pairs<const L: usize, C: Compress<L>>(prefix: u8, children: &[u8], out: &mut Vec<u8>) {
    let n = children.len() / 64;
    out.reserve(n * 32);
    let mut rows = [[0u32; 16]; L];
    let mut buf = [0u8; 64];
    for group in children[..n * 64].chunks(64 * L) {
        let lanes = group.len() / 64;
        let mut cv = [[0u32; L]; 8];
        for (w, iv) in cv.iter_mut().zip(IV) {
            *w = [iv; L];
        }
        // Block 0: the prefix and the first 63 bytes of the pair.
        for (lane, row) in rows.iter_mut().enumerate() {
            let pair = group.get(64 * lane..64 * lane + 64).unwrap_or(&[0; 64]);
            buf[0] = prefix;
            buf[1..].copy_from_slice(&pair[..63]);
            for (d, c) in row.iter_mut().zip(buf.chunks_exact(4)) {
                *d = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        C::compress(&mut cv, &rows, &[64; L], &[CHUNK_START; L]);
        // Block 1: the pair's last byte.
        for (lane, row) in rows.iter_mut().enumerate() {
            let last = group.get(64 * lane + 63).copied().unwrap_or(0);
            *row = [0; 16];
            row[0] = u32::from(last);
        }
        C::compress(&mut cv, &rows, &[1; L], &[CHUNK_END | ROOT; L]);
        for lane in 0..lanes {
            for w in &cv {
                out.extend_from_slice(&w[lane].to_le_bytes());
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    //! The same code compiled with wider vectors. Calling a function built
    //! for CPU features the CPU may lack is `unsafe`; the callers check the
    //! feature at run time first.

    use super::{Compress, Span, IV, SCHEDULE};
    use std::arch::x86_64::*;

    /// The compression on 16 lanes with AVX-512 instructions: the portable
    /// version keeps its state in memory, this one in 16 `zmm` registers.
    struct Avx512;

    impl Compress<16> for Avx512 {
        #[inline(always)]
        fn compress(
            cv: &mut [[u32; 16]; 8],
            rows: &[[u32; 16]; 16],
            len: &[u32; 16],
            flags: &[u32; 16],
        ) {
            // SAFETY: `Avx512` is only used by `avx512` below, which runs
            // after `is_x86_feature_detected!("avx512f")`.
            unsafe { compress16(cv, rows, len, flags) }
        }
    }

    #[target_feature(enable = "avx512f")]
    fn load(x: &[u32; 16]) -> __m512i {
        // SAFETY: reads exactly the 64 bytes of `x`; unaligned load.
        unsafe { _mm512_loadu_si512(x.as_ptr().cast()) }
    }

    #[target_feature(enable = "avx512f")]
    fn store(x: &mut [u32; 16], v: __m512i) {
        // SAFETY: writes exactly the 64 bytes of `x`; unaligned store.
        unsafe { _mm512_storeu_si512(x.as_mut_ptr().cast(), v) }
    }

    /// The 16 x 16 word transpose of `rows` (row l = lane l's block) into
    /// word vectors (vector w = word w of every lane), in registers: 32-bit
    /// and 64-bit interleaves, then 128-bit lane shuffles.
    #[target_feature(enable = "avx512f")]
    fn transpose(rows: &[[u32; 16]; 16]) -> [__m512i; 16] {
        let r: [__m512i; 16] = std::array::from_fn(|i| load(&rows[i]));
        let mut t = [_mm512_setzero_si512(); 16];
        for p in 0..8 {
            t[2 * p] = _mm512_unpacklo_epi32(r[2 * p], r[2 * p + 1]);
            t[2 * p + 1] = _mm512_unpackhi_epi32(r[2 * p], r[2 * p + 1]);
        }
        // u[4q + c], 128-bit lane j: rows 4q..4q+4 of word 4j + c.
        let mut u = [_mm512_setzero_si512(); 16];
        for q in 0..4 {
            let b = 4 * q;
            u[b] = _mm512_unpacklo_epi64(t[b], t[b + 2]);
            u[b + 1] = _mm512_unpackhi_epi64(t[b], t[b + 2]);
            u[b + 2] = _mm512_unpacklo_epi64(t[b + 1], t[b + 3]);
            u[b + 3] = _mm512_unpackhi_epi64(t[b + 1], t[b + 3]);
        }
        let mut out = [_mm512_setzero_si512(); 16];
        for c in 0..4 {
            let x0 = _mm512_shuffle_i32x4::<0b01_00_01_00>(u[c], u[4 + c]);
            let x1 = _mm512_shuffle_i32x4::<0b11_10_11_10>(u[c], u[4 + c]);
            let y0 = _mm512_shuffle_i32x4::<0b01_00_01_00>(u[8 + c], u[12 + c]);
            let y1 = _mm512_shuffle_i32x4::<0b11_10_11_10>(u[8 + c], u[12 + c]);
            out[c] = _mm512_shuffle_i32x4::<0b10_00_10_00>(x0, y0);
            out[4 + c] = _mm512_shuffle_i32x4::<0b11_01_11_01>(x0, y0);
            out[8 + c] = _mm512_shuffle_i32x4::<0b10_00_10_00>(x1, y1);
            out[12 + c] = _mm512_shuffle_i32x4::<0b11_01_11_01>(x1, y1);
        }
        out
    }

    #[target_feature(enable = "avx512f")]
    fn compress16(
        cv: &mut [[u32; 16]; 8],
        rows: &[[u32; 16]; 16],
        len: &[u32; 16],
        flags: &[u32; 16],
    ) {
        let mw = transpose(rows);
        let mut v = [
            load(&cv[0]),
            load(&cv[1]),
            load(&cv[2]),
            load(&cv[3]),
            load(&cv[4]),
            load(&cv[5]),
            load(&cv[6]),
            load(&cv[7]),
            _mm512_set1_epi32(IV[0] as i32),
            _mm512_set1_epi32(IV[1] as i32),
            _mm512_set1_epi32(IV[2] as i32),
            _mm512_set1_epi32(IV[3] as i32),
            _mm512_setzero_si512(),
            _mm512_setzero_si512(),
            load(len),
            load(flags),
        ];
        macro_rules! g {
            ($a:expr, $b:expr, $c:expr, $d:expr, $x:expr, $y:expr) => {
                v[$a] = _mm512_add_epi32(_mm512_add_epi32(v[$a], v[$b]), $x);
                v[$d] = _mm512_ror_epi32::<16>(_mm512_xor_si512(v[$d], v[$a]));
                v[$c] = _mm512_add_epi32(v[$c], v[$d]);
                v[$b] = _mm512_ror_epi32::<12>(_mm512_xor_si512(v[$b], v[$c]));
                v[$a] = _mm512_add_epi32(_mm512_add_epi32(v[$a], v[$b]), $y);
                v[$d] = _mm512_ror_epi32::<8>(_mm512_xor_si512(v[$d], v[$a]));
                v[$c] = _mm512_add_epi32(v[$c], v[$d]);
                v[$b] = _mm512_ror_epi32::<7>(_mm512_xor_si512(v[$b], v[$c]));
            };
        }
        macro_rules! round {
            ($r:expr) => {
                let s = &SCHEDULE[$r];
                g!(0, 4, 8, 12, mw[s[0]], mw[s[1]]);
                g!(1, 5, 9, 13, mw[s[2]], mw[s[3]]);
                g!(2, 6, 10, 14, mw[s[4]], mw[s[5]]);
                g!(3, 7, 11, 15, mw[s[6]], mw[s[7]]);
                g!(0, 5, 10, 15, mw[s[8]], mw[s[9]]);
                g!(1, 6, 11, 12, mw[s[10]], mw[s[11]]);
                g!(2, 7, 8, 13, mw[s[12]], mw[s[13]]);
                g!(3, 4, 9, 14, mw[s[14]], mw[s[15]]);
            };
        }
        round!(0);
        round!(1);
        round!(2);
        round!(3);
        round!(4);
        round!(5);
        round!(6);
        for (i, c) in cv.iter_mut().enumerate() {
            store(c, _mm512_xor_si512(v[i], v[i + 8]));
        }
    }

    pub(super) fn avx512(
        prefix: u8,
        base: &[u8],
        msgs: impl Iterator<Item = Span>,
        out: &mut Vec<u8>,
    ) {
        #[target_feature(enable = "avx512f,avx512vl,avx2")]
        fn inner(prefix: u8, base: &[u8], msgs: impl Iterator<Item = Span>, out: &mut Vec<u8>) {
            super::run::<16, Avx512>(prefix, base, msgs, out)
        }
        // SAFETY: only called after `is_x86_feature_detected!("avx512f")`
        // (AVX-512F implies AVX2 support on every CPU that has it, and VL is
        // present on every AVX-512 CPU since Skylake-X; `inner` uses only
        // the instructions the compiler emits for these features).
        unsafe { inner(prefix, base, msgs, out) }
    }

    pub(super) fn avx512_pairs(prefix: u8, children: &[u8], out: &mut Vec<u8>) {
        #[target_feature(enable = "avx512f,avx512vl,avx2")]
        fn inner(prefix: u8, children: &[u8], out: &mut Vec<u8>) {
            super::pairs::<16, Avx512>(prefix, children, out)
        }
        // SAFETY: as for `avx512`.
        unsafe { inner(prefix, children, out) }
    }

    pub(super) fn avx2_pairs(prefix: u8, children: &[u8], out: &mut Vec<u8>) {
        #[target_feature(enable = "avx2")]
        fn inner(prefix: u8, children: &[u8], out: &mut Vec<u8>) {
            super::pairs::<8, super::Portable>(prefix, children, out)
        }
        // SAFETY: only called after `is_x86_feature_detected!("avx2")`.
        unsafe { inner(prefix, children, out) }
    }

    pub(super) fn avx2(
        prefix: u8,
        base: &[u8],
        msgs: impl Iterator<Item = Span>,
        out: &mut Vec<u8>,
    ) {
        #[target_feature(enable = "avx2")]
        fn inner(prefix: u8, base: &[u8], msgs: impl Iterator<Item = Span>, out: &mut Vec<u8>) {
            super::run::<8, super::Portable>(prefix, base, msgs, out)
        }
        // SAFETY: only called after `is_x86_feature_detected!("avx2")`.
        unsafe { inner(prefix, base, msgs, out) }
    }
}

/// State of the `L` lanes: each lane's chaining value (word-major, so that
/// word `i` of all lanes is one vector) and the message it is hashing.
struct Lanes<const L: usize> {
    cv: [[u32; L]; 8],
    /// Start of each lane's message in the base buffer, and its length.
    start: [usize; L],
    len: [usize; L],
    /// Next block of each lane's message.
    block: [usize; L],
    /// Number of blocks of each lane's message (prefix included).
    blocks: [usize; L],
    /// Offset in `out` of each lane's digest, `usize::MAX` for an idle lane.
    slot: [usize; L],
}

#[inline(always)]
fn run<const L: usize, C: Compress<L>>(
    prefix: u8,
    base: &[u8],
    mut msgs: impl Iterator<Item = Span>,
    out: &mut Vec<u8>,
) {
    let mut s = Lanes::<L> {
        cv: [[0; L]; 8],
        start: [0; L],
        len: [0; L],
        block: [0; L],
        blocks: [0; L],
        slot: [usize::MAX; L],
    };
    let mut busy = 0;
    for lane in 0..L {
        busy += usize::from(refill(&mut s, lane, prefix, base, &mut msgs, out));
    }
    // Each lane's current block, lane-major; the compression transposes it.
    let mut rows = [[0u32; 16]; L];
    let mut len = [0u32; L];
    let mut flags = [0u32; L];
    while busy > 0 {
        for lane in 0..L {
            if s.slot[lane] == usize::MAX {
                continue;
            }
            let k = s.block[lane];
            let n = block_words(prefix, base, s.start[lane], s.len[lane], k, &mut rows[lane]);
            len[lane] = n;
            let mut f = 0;
            if k == 0 {
                f |= CHUNK_START;
                for (i, iv) in IV.iter().enumerate() {
                    s.cv[i][lane] = *iv;
                }
            }
            if k + 1 == s.blocks[lane] {
                f |= CHUNK_END | ROOT;
            }
            flags[lane] = f;
        }
        C::compress(&mut s.cv, &rows, &len, &flags);
        for lane in 0..L {
            let at = s.slot[lane];
            if at == usize::MAX {
                continue;
            }
            s.block[lane] += 1;
            if s.block[lane] == s.blocks[lane] {
                if let Some(dst) = out.get_mut(at..at + 32) {
                    for (i, d) in dst.chunks_exact_mut(4).enumerate() {
                        d.copy_from_slice(&s.cv[i][lane].to_le_bytes());
                    }
                }
                s.slot[lane] = usize::MAX;
                busy -= 1;
                busy += usize::from(refill(&mut s, lane, prefix, base, &mut msgs, out));
            }
        }
    }
}

/// Give `lane` the next message that fits a lane, reserving its digest's
/// place in `out`; longer messages met on the way are hashed directly.
/// False when the messages are exhausted.
#[inline(always)]
fn refill<const L: usize>(
    s: &mut Lanes<L>,
    lane: usize,
    prefix: u8,
    base: &[u8],
    msgs: &mut impl Iterator<Item = Span>,
    out: &mut Vec<u8>,
) -> bool {
    for r in msgs.by_ref() {
        let msg = base.get(r.clone()).unwrap_or(&[]);
        if msg.len() > LANE_MAX {
            let mut h = blake3::Hasher::new();
            h.update(&[prefix]);
            h.update(msg);
            out.extend_from_slice(h.finalize().as_bytes());
            continue;
        }
        s.slot[lane] = out.len();
        out.extend_from_slice(&[0u8; 32]);
        s.start[lane] = if msg.is_empty() { 0 } else { r.start };
        s.len[lane] = msg.len();
        s.block[lane] = 0;
        s.blocks[lane] = (msg.len() + 64) / 64;
        return true;
    }
    false
}

/// Write the words of block `k` of `prefix || base[start..start + len]`
/// into `w`; returns the block's length in bytes.
#[inline(always)]
fn block_words(
    prefix: u8,
    base: &[u8],
    start: usize,
    len: usize,
    k: usize,
    w: &mut [u32; 16],
) -> u32 {
    // Block k covers bytes [64k, 64k + 64) of prefix || msg, that is
    // base[start + 64k - 1 ..][..64], of which the first n bytes count.
    let n = (len + 1 - 64 * k).min(64);
    let at = (start + 64 * k).wrapping_sub(1);
    if let Some(b) = base.get(at..).and_then(<[u8]>::first_chunk::<64>) {
        for (d, c) in w.iter_mut().zip(b.chunks_exact(4)) {
            *d = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        if n < 64 {
            // Keep the block's first n bytes, zero the rest.
            for (i, d) in w.iter_mut().enumerate() {
                let keep = n.saturating_sub(4 * i).min(4);
                *d &= ((1u64 << (8 * keep)) - 1) as u32;
            }
        }
        if k == 0 {
            w[0] = (w[0] & !0xff) | u32::from(prefix);
        }
        return n as u32;
    }
    // Near either end of the base buffer: assemble the block in a buffer.
    let mut buf = [0u8; 64];
    let msg = base.get(start..start + len).unwrap_or(&[]);
    if k == 0 {
        buf[0] = prefix;
        let m = len.min(63);
        buf[1..1 + m].copy_from_slice(&msg[..m]);
    } else {
        let rest = msg.get(64 * k - 1..).unwrap_or(&[]);
        let m = rest.len().min(64);
        buf[..m].copy_from_slice(&rest[..m]);
    }
    for (d, c) in w.iter_mut().zip(buf.chunks_exact(4)) {
        *d = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    n as u32
}

#[inline(always)]
fn g<const L: usize>(v: &mut [[u32; L]; 16], [a, b, c, d]: [usize; 4], x: &[u32; L], y: &[u32; L]) {
    for i in 0..L {
        v[a][i] = v[a][i].wrapping_add(v[b][i]).wrapping_add(x[i]);
        v[d][i] = (v[d][i] ^ v[a][i]).rotate_right(16);
        v[c][i] = v[c][i].wrapping_add(v[d][i]);
        v[b][i] = (v[b][i] ^ v[c][i]).rotate_right(12);
        v[a][i] = v[a][i].wrapping_add(v[b][i]).wrapping_add(y[i]);
        v[d][i] = (v[d][i] ^ v[a][i]).rotate_right(8);
        v[c][i] = v[c][i].wrapping_add(v[d][i]);
        v[b][i] = (v[b][i] ^ v[c][i]).rotate_right(7);
    }
}

#[inline(always)]
fn round<const L: usize>(v: &mut [[u32; L]; 16], m: &[[u32; L]; 16], s: &[usize; 16]) {
    g(v, [0, 4, 8, 12], &m[s[0]], &m[s[1]]);
    g(v, [1, 5, 9, 13], &m[s[2]], &m[s[3]]);
    g(v, [2, 6, 10, 14], &m[s[4]], &m[s[5]]);
    g(v, [3, 7, 11, 15], &m[s[6]], &m[s[7]]);
    g(v, [0, 5, 10, 15], &m[s[8]], &m[s[9]]);
    g(v, [1, 6, 11, 12], &m[s[10]], &m[s[11]]);
    g(v, [2, 7, 8, 13], &m[s[12]], &m[s[13]]);
    g(v, [3, 4, 9, 14], &m[s[14]], &m[s[15]]);
}

/// A compression function over `L` lanes (counter 0: every message is one
/// chunk), updating the chaining values in place.
pub(crate) trait Compress<const L: usize> {
    /// Compress block `rows[l]` of every lane `l` into its chaining value.
    fn compress(cv: &mut [[u32; L]; 8], rows: &[[u32; 16]; L], len: &[u32; L], flags: &[u32; L]);
}

/// The portable compression, vectorised by the compiler.
struct Portable;

impl<const L: usize> Compress<L> for Portable {
    #[inline(always)]
    fn compress(cv: &mut [[u32; L]; 8], rows: &[[u32; 16]; L], len: &[u32; L], flags: &[u32; L]) {
        let mut m = [[0u32; L]; 16];
        for (l, row) in rows.iter().enumerate() {
            for (w, x) in row.iter().enumerate() {
                m[w][l] = *x;
            }
        }
        let m = &m;
        let mut v = [[0u32; L]; 16];
        v[..8].copy_from_slice(cv);
        for i in 0..4 {
            v[8 + i] = [IV[i]; L];
        }
        v[14] = *len;
        v[15] = *flags;
        for s in &SCHEDULE {
            round(&mut v, m, s);
        }
        for i in 0..8 {
            for l in 0..L {
                cv[i][l] = v[i][l] ^ v[i + 8][l];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(prefix: u8, msgs: &[Vec<u8>]) -> Vec<u8> {
        msgs.iter()
            .flat_map(|m| {
                let mut h = blake3::Hasher::new();
                h.update(&[prefix]);
                h.update(m);
                h.finalize().as_bytes().to_vec()
            })
            .collect()
    }

    /// The messages laid end to end with a separator byte, and their spans.
    fn flat(msgs: &[Vec<u8>]) -> (Vec<u8>, Vec<Span>) {
        let mut base = Vec::new();
        let mut spans = Vec::new();
        for m in msgs {
            spans.push(base.len()..base.len() + m.len());
            base.extend_from_slice(m);
            base.push(0xA5);
        }
        (base, spans)
    }

    #[test]
    fn every_length_around_block_and_chunk_edges() {
        let msgs: Vec<Vec<u8>> = (0..1100usize)
            .map(|n| (0..n).map(|i| (i * 7 + n) as u8).collect())
            .collect();
        let (base, spans) = flat(&msgs);
        let mut out = Vec::new();
        hash_prefixed(0, &base, spans.iter().cloned(), &mut out);
        assert_eq!(out, reference(0, &msgs));
        let mut portable = Vec::new();
        run::<4, Portable>(1, &base, spans.iter().cloned(), &mut portable);
        assert_eq!(portable, reference(1, &msgs));
    }

    proptest! {
        #[test]
        fn pairs_match_blake3(children in proptest::collection::vec(any::<u8>(), 0..64 * 40), prefix in any::<u8>()) {
            let msgs: Vec<Vec<u8>> = children.chunks_exact(64).map(<[u8]>::to_vec).collect();
            let want = reference(prefix, &msgs);
            let mut out = Vec::new();
            hash_pairs(prefix, &children, &mut out);
            prop_assert_eq!(&out, &want);
            let mut portable = Vec::new();
            pairs::<4, Portable>(prefix, &children, &mut portable);
            prop_assert_eq!(&portable, &want);
        }

        #[test]
        fn matches_blake3(msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..1200), 0..40), prefix in any::<u8>()) {
            let (base, spans) = flat(&msgs);
            let mut out = Vec::new();
            hash_prefixed(prefix, &base, spans.iter().cloned(), &mut out);
            prop_assert_eq!(out, reference(prefix, &msgs));
        }
    }
}
