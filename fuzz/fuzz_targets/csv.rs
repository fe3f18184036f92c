#![no_main]
use libfuzzer_sys::fuzz_target;
use mithridate_core::io::{csv::read_csv_bytes, ReadOptions};

fuzz_target!(|data: &[u8]| {
    for skip_bad in [false, true] {
        let o = ReadOptions { skip_bad, max_record_bytes: 4096, id_column: Some("id".into()), ..Default::default() };
        if let Ok((ds, stats)) = read_csv_bytes(data, &o) {
            assert!(ds.validate().is_ok());
            assert_eq!(stats.records as usize, ds.len());
        }
    }
});
