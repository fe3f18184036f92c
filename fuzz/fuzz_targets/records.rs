#![no_main]
use libfuzzer_sys::fuzz_target;
use mithridate_provenance::records::{record_digests, RecordFormat};
use mithridate_provenance::Blake3;

fuzz_target!(|data: &[u8]| {
    for f in [RecordFormat::Jsonl, RecordFormat::Csv, RecordFormat::Npy] {
        if let Ok(r) = record_digests::<Blake3>(data, f, "id") {
            assert_eq!(r.leaves.len(), 32 * r.count());
        }
    }
});
