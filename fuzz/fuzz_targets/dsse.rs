#![no_main]
use libfuzzer_sys::fuzz_target;
use mithridate_provenance::{from_json_slice_any, verify_envelope, Envelope};

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::from_json_slice(data) {
        let key = mithridate_provenance::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        // A fuzzer cannot forge an Ed25519 signature by this key.
        assert!(verify_envelope(&env, &[key]).is_err());
        let _ = env.statement_unverified();
    }
    let _ = from_json_slice_any(data);
});
