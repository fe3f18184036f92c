#![no_main]
use libfuzzer_sys::fuzz_target;
use mithridate_provenance::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::from_json_slice(data) {
        // A manifest that parses is valid: no absolute, `..` or duplicate paths.
        assert!(m.validate().is_ok());
        for f in &m.files {
            assert!(!f.path.starts_with('/') && !f.path.split('/').any(|c| c == ".."));
        }
    }
});
