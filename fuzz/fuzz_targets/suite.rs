#![no_main]
use libfuzzer_sys::fuzz_target;
use mithridate_validation::{ProbeSuite, TriggerSuite};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = TriggerSuite::parse(text, Path::new("suite.toml"));
        let _ = TriggerSuite::parse(text, Path::new("suite.json"));
        let _ = ProbeSuite::parse(text, Path::new("probes.toml"));
    }
});
