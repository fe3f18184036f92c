#![no_main]
use libfuzzer_sys::fuzz_target;
use mithridate_validation::predictor::fuzz_parse_responses;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let n = text.lines().count().clamp(1, 8);
        let _ = fuzz_parse_responses(text, n);
    }
});
