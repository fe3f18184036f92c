#![no_main]
use libfuzzer_sys::fuzz_target;
use mithridate_provenance::{parse_private_pem, parse_public_pem};

fuzz_target!(|data: &[u8]| {
    let _ = parse_private_pem(data);
    let _ = parse_public_pem(data);
});
