//! Hot paths of the provenance layer: whole-buffer digests, per-record
//! digests of JSONL, Merkle roots and record alignment.
//! The end-to-end comparison with b3sum / sha256sum is `cargo xtask bench provenance`.

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use mithridate_provenance::hash::{digest_bytes, leaf_hash};
use mithridate_provenance::records::record_digests;
use mithridate_provenance::{align, merkle_root, Blake3, RecordFormat};

fn jsonl(records: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(records * 460);
    for i in 0..records {
        let text: String = (0..400)
            .map(|k| (b'a' + ((i * 7 + k * 13) % 26) as u8) as char)
            .collect();
        v.extend_from_slice(
            format!(
                "{{\"id\":\"r{i}\",\"label\":{},\"text\":\"{text}\"}}\n",
                i % 10
            )
            .as_bytes(),
        );
    }
    v
}

fn bench(c: &mut Criterion) {
    let data = jsonl(40_000);
    let mut g = c.benchmark_group("buffer");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("blake3_file_digest", |b| {
        b.iter(|| digest_bytes::<Blake3>(&data))
    });
    g.bench_function("sha256_file_digest", |b| {
        b.iter(|| digest_bytes::<sha2::Sha256>(&data))
    });
    g.bench_function("blake3_jsonl_records", |b| {
        b.iter(|| record_digests::<Blake3>(&data, RecordFormat::Jsonl, "id"))
    });
    g.finish();

    let leaves: Vec<u8> = (0..200_000u32)
        .flat_map(|i| leaf_hash::<Blake3>(&i.to_le_bytes()).to_vec())
        .collect();
    c.bench_function("merkle_root_200k", |b| {
        b.iter(|| merkle_root::<Blake3>(&leaves))
    });

    let mut g = c.benchmark_group("align");
    for n in [10_000usize, 200_000] {
        let a: Vec<u32> = (0..n as u32).collect();
        let mut bseq = a.clone();
        bseq.insert(n / 3, u32::MAX);
        for k in (0..n).step_by(n / 20) {
            bseq[k] = u32::MAX - 1 - k as u32;
        }
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| align(&a, &bseq))
        });
    }
    g.finish();
}

#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
