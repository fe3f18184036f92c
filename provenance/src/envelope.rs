//! Signing: the manifest as an in-toto Statement v1 inside a DSSE envelope,
//! signed with Ed25519.
//!
//! DSSE signs the pre-authentication encoding (PAE) of the payload *and its
//! type*, so a signature over a manifest cannot be replayed as a signature
//! over anything else, and the signed bytes are exactly the bytes verified
//! (no JSON canonicalisation to get wrong).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use mithridate_core::{Error, Location, Result};
use serde::{Deserialize, Serialize};

use crate::keys::key_id;
use crate::manifest::{json_error, relocate, Manifest};

/// DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// in-toto Statement v1 type URI.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// Predicate type of a mithridate dataset manifest.
pub const PREDICATE_TYPE: &str = "https://mithridate.dev/provenance/manifest/v1";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One subject of a statement: a file and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// Path relative to the dataset root.
    pub name: String,
    /// Algorithm name → hex digest.
    pub digest: BTreeMap<String, String>,
}

/// An in-toto Statement v1 whose predicate is a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// Always [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub type_: String,
    /// The files, with digests.
    pub subject: Vec<Subject>,
    /// Always [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The manifest.
    pub predicate: Manifest,
}

impl Statement {
    /// The statement for `m`: one subject per file.
    pub fn for_manifest(m: &Manifest) -> Self {
        let subject = m
            .files
            .iter()
            .map(|f| Subject {
                name: f.path.clone(),
                digest: BTreeMap::from([(m.algorithm.name().to_owned(), f.digest.clone())]),
            })
            .collect();
        Self {
            type_: STATEMENT_TYPE.into(),
            subject,
            predicate_type: PREDICATE_TYPE.into(),
            predicate: m.clone(),
        }
    }
}

/// One DSSE signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Hint for which key signed (see [`key_id`]); may be empty.
    #[serde(default)]
    pub keyid: String,
    /// Base64 Ed25519 signature over the PAE.
    pub sig: String,
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Type of the payload; bound into the signature.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Base64 payload.
    pub payload: String,
    /// Signatures over PAE(payloadType, payload).
    pub signatures: Vec<Signature>,
}

/// A manifest whose envelope signature checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The manifest (the statement's predicate, validated).
    pub manifest: Manifest,
    /// Key id of the trusted key that verified.
    pub keyid: String,
}

/// DSSE v1 pre-authentication encoding:
/// `"DSSEv1" SP len(type) SP type SP len(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    v.extend_from_slice(
        format!(
            "DSSEv1 {} {payload_type} {} ",
            payload_type.len(),
            payload.len()
        )
        .as_bytes(),
    );
    v.extend_from_slice(payload);
    v
}

/// Sign `m` with `key`: statement → JSON → DSSE envelope.
pub fn sign_manifest(m: &Manifest, key: &SigningKey) -> Result<Envelope> {
    m.validate()?;
    let body = serde_json::to_vec(&Statement::for_manifest(m))
        .map_err(|e| Error::data(format!("serializing statement: {e}")))?;
    let sig = key.sign(&pae(PAYLOAD_TYPE, &body));
    Ok(Envelope {
        payload_type: PAYLOAD_TYPE.into(),
        payload: B64.encode(&body),
        signatures: vec![Signature {
            keyid: key_id(&key.verifying_key()),
            sig: B64.encode(sig.to_bytes()),
        }],
    })
}

impl Envelope {
    /// Parse an envelope from JSON bytes. Never panics, whatever the bytes.
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| json_error(None, &e))
    }

    /// Write to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        mithridate_core::io::atomic::write_atomic(path, |w| {
            serde_json::to_writer_pretty(&mut *w, self).map_err(std::io::Error::other)?;
            w.write_all(b"\n")
        })
    }

    /// Read an envelope file.
    pub fn load(path: &Path) -> Result<Self> {
        let b = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_slice(&b).map_err(|e| relocate(e, path))
    }

    /// The statement inside, *without* checking any signature: for
    /// inspection only, never for trust decisions.
    pub fn statement_unverified(&self) -> Result<Statement> {
        let err = |f: &str, m: String| Error::parse(Location::default().at_field(f), m);
        if self.payload_type != PAYLOAD_TYPE {
            return Err(err(
                "payloadType",
                format!("expected {PAYLOAD_TYPE:?}, got {:?}", self.payload_type),
            ));
        }
        let body = B64
            .decode(self.payload.as_bytes())
            .map_err(|e| err("payload", format!("not base64: {e}")))?;
        let st: Statement = serde_json::from_slice(&body)
            .map_err(|e| err("payload", format!("not an in-toto statement: {e}")))?;
        if st.type_ != STATEMENT_TYPE {
            return Err(err(
                "payload._type",
                format!("expected {STATEMENT_TYPE:?}, got {:?}", st.type_),
            ));
        }
        if st.predicate_type != PREDICATE_TYPE {
            return Err(err(
                "payload.predicateType",
                format!("expected {PREDICATE_TYPE:?}, got {:?}", st.predicate_type),
            ));
        }
        st.predicate.validate()?;
        if st.subject != Statement::for_manifest(&st.predicate).subject {
            return Err(err(
                "payload.subject",
                "subjects do not match the manifest's files".into(),
            ));
        }
        Ok(st)
    }
}

/// Check that some signature on `env` verifies under one of `trusted`, then
/// return the manifest it carries.
///
/// Signature failures are [`Error::Crypto`] (the envelope is not what a
/// trusted key signed: reject the data); malformed envelopes are
/// [`Error::Parse`].
pub fn verify_envelope(env: &Envelope, trusted: &[VerifyingKey]) -> Result<Verified> {
    if trusted.is_empty() {
        return Err(Error::param("trusted", "no trusted public key given"));
    }
    if env.payload_type != PAYLOAD_TYPE {
        // Checked by the signature too (PAE binds the type); said plainly here.
        return Err(Error::Crypto(format!(
            "payloadType {:?} is not {PAYLOAD_TYPE:?}",
            env.payload_type
        )));
    }
    let body = B64.decode(env.payload.as_bytes()).map_err(|e| {
        Error::parse(
            Location::default().at_field("payload"),
            format!("not base64: {e}"),
        )
    })?;
    if env.signatures.is_empty() {
        return Err(Error::Crypto("envelope has no signatures".into()));
    }
    let msg = pae(&env.payload_type, &body);
    let mut good = None;
    'outer: for s in &env.signatures {
        let Ok(raw) = B64.decode(s.sig.as_bytes()) else {
            continue;
        };
        let Ok(sig) = ed25519_dalek::Signature::from_slice(&raw) else {
            continue;
        };
        for k in trusted {
            if k.verify_strict(&msg, &sig).is_ok() {
                good = Some(key_id(k));
                break 'outer;
            }
        }
    }
    let Some(keyid) = good else {
        let ids: Vec<&str> = env.signatures.iter().map(|s| s.keyid.as_str()).collect();
        let known = trusted
            .iter()
            .map(key_id)
            .any(|k| ids.contains(&k.as_str()));
        return Err(Error::Crypto(if known {
            "signature does not verify: the envelope was modified after signing".into()
        } else {
            format!("signature does not verify under any of the {} trusted key(s) (signed by key id {})", trusted.len(), ids.join(", "))
        }));
    };
    let st = env.statement_unverified()?;
    Ok(Verified {
        manifest: st.predicate,
        keyid,
    })
}

/// Read `path` and return its manifest only if it is a DSSE envelope signed
/// by one of `trusted`. The signature is checked *before* the payload is
/// parsed, so a tampered payload is reported as a signature failure
/// ([`Error::Crypto`]), never as a parse error; a plain (unsigned) manifest
/// is also [`Error::Crypto`]. Unreadable or malformed files are I/O or parse
/// errors.
pub fn load_trusted(path: &Path, trusted: &[VerifyingKey]) -> Result<Verified> {
    let b = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let v: serde_json::Value =
        serde_json::from_slice(&b).map_err(|e| json_error(Some(path), &e))?;
    if v.get("payloadType").is_none() {
        return Err(Error::Crypto(format!(
            "{}: manifest is not signed, but trusted keys were given",
            path.display()
        )));
    }
    let env: Envelope = serde_json::from_value(v).map_err(|e| json_error(Some(path), &e))?;
    verify_envelope(&env, trusted).map_err(|e| match e {
        Error::Crypto(m) => Error::Crypto(format!("{}: {m}", path.display())),
        other => relocate(other, path),
    })
}

/// A manifest file that may be plain or a signed envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The manifest (for an envelope: its predicate, signature not yet checked).
    pub manifest: Manifest,
    /// The envelope, when the file was one.
    pub envelope: Option<Envelope>,
}

/// Read a manifest or a DSSE envelope holding one (told apart by the
/// `payloadType` key).
pub fn load_any(path: &Path) -> Result<Loaded> {
    let b = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    from_json_slice_any(&b).map_err(|e| relocate(e, path))
}

/// [`load_any`] on bytes. Never panics.
pub fn from_json_slice_any(bytes: &[u8]) -> Result<Loaded> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| json_error(None, &e))?;
    if v.get("payloadType").is_some() {
        let env: Envelope = serde_json::from_value(v).map_err(|e| json_error(None, &e))?;
        let st = env.statement_unverified()?;
        Ok(Loaded {
            manifest: st.predicate,
            envelope: Some(env),
        })
    } else {
        let m: Manifest = serde_json::from_value(v).map_err(|e| json_error(None, &e))?;
        m.validate()?;
        Ok(Loaded {
            manifest: m,
            envelope: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{create_manifest, CreateOptions};
    use proptest::prelude::*;

    fn signed() -> (Manifest, SigningKey, Envelope) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.jsonl"), b"{\"id\":1}\n").unwrap();
        let m = create_manifest(
            d.path(),
            &CreateOptions {
                records: true,
                ..Default::default()
            },
        )
        .unwrap();
        let k = SigningKey::from_bytes(&[9u8; 32]);
        let env = sign_manifest(&m, &k).unwrap();
        (m, k, env)
    }

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn sign_verify_and_reject_tampering() {
        let (m, k, env) = signed();
        let vk = k.verifying_key();
        let ok = verify_envelope(&env, &[vk]).unwrap();
        assert_eq!(ok.manifest, m);
        let st = env.statement_unverified().unwrap();
        assert_eq!(st.subject[0].name, "a.jsonl");
        assert!(st.subject[0].digest.contains_key("blake3"));

        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        let e = verify_envelope(&env, &[other]).unwrap_err().to_string();
        assert!(e.contains("any of the 1 trusted key"), "{e}");

        let mut bad = env.clone();
        let mut body = B64.decode(&bad.payload).unwrap();
        let at = body.len() / 2;
        body[at] ^= 1;
        bad.payload = B64.encode(&body);
        let e = verify_envelope(&bad, &[vk]).unwrap_err().to_string();
        assert!(e.contains("modified after signing"), "{e}");

        let mut bad = env.clone();
        bad.payload_type = "application/json".into();
        assert!(verify_envelope(&bad, &[vk]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn envelope_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(env) = Envelope::from_json_slice(&bytes) {
                let _ = env.statement_unverified();
                let _ = verify_envelope(&env, &[SigningKey::from_bytes(&[1u8; 32]).verifying_key()]);
            }
            let _ = from_json_slice_any(&bytes);
        }

        #[test]
        fn mutated_envelopes_never_verify_or_panic(pos in any::<usize>(), byte in any::<u8>()) {
            let (_m, k, env) = signed();
            let mut bytes = serde_json::to_vec(&env).unwrap();
            let i = pos % bytes.len();
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
            if let Ok(e2) = Envelope::from_json_slice(&bytes) {
                if let Ok(v) = verify_envelope(&e2, &[k.verifying_key()]) {
                    // Only a change outside the signed content (e.g. the keyid hint) may pass.
                    prop_assert_eq!(e2.payload, env.payload.clone());
                    prop_assert_eq!(v.manifest, _m);
                }
            }
        }
    }
}
