#![no_main]
use libfuzzer_sys::fuzz_target;
use mithridate_core::io::npy::parse_npy;
use mithridate_core::Location;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = parse_npy(data, &Location::default()) {
        let n: usize = a.shape.iter().product();
        assert_eq!(n, a.data.len());
    }
});
