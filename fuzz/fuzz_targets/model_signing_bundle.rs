#![no_main]
use libfuzzer_sys::fuzz_target;
use mithridate_provenance::model_signing as ms;

fuzz_target!(|data: &[u8]| {
    let _ = ms::is_bundle(data);
    if let Ok(b) = ms::Bundle::from_json_slice(data) {
        let _ = b.statement_unverified();
        let mut secret = [0u8; 32];
        secret[31] = 7;
        if let Ok(key) = ms::EcSigningKey::from_bytes(&secret.into()) {
            // A fuzzer cannot forge an ECDSA P-256 signature by this key.
            assert!(ms::verify_bundle(&b, &[*key.verifying_key()]).is_err());
        }
    }
    let _ = ms::parse_ec_private_pem(data);
    let _ = ms::parse_ec_public_pem(data);
});
