//! Interoperability with OpenSSF model-signing (the `model_signing` tool on
//! PyPI, <https://github.com/sigstore/model-transparency>), private-key
//! method.
//!
//! A dataset directory is signed the way `model_signing sign key` signs a
//! model, so that `model_signing verify key` accepts what mithridate signs and
//! `mithridate manifest verify` accepts what model-signing signs. The format:
//!
//! - a Sigstore bundle (media type [`BUNDLE_MEDIA_TYPE`]) whose
//!   `verificationMaterial.publicKey.hint` is the hex SHA-256 of the signer's
//!   SPKI PEM public key and whose `tlogEntries` is empty (no transparency
//!   log: the trust is the key);
//! - a DSSE envelope in it, payload type `application/vnd.in-toto+json`,
//!   signed with ECDSA P-256 / SHA-256 (ASN.1 DER signature) over the DSSE
//!   pre-authentication encoding;
//! - an in-toto Statement v1 with predicate type [`MS_PREDICATE_TYPE`]: one
//!   subject named after the directory whose `sha256` digest is SHA-256 over
//!   the concatenated raw file digests, and a predicate listing every file
//!   (`resources`: name, algorithm, hex digest, in path-component order) and
//!   how the list was made (`serialization`: method `files`, `hash_type`
//!   `sha256`, `allow_symlinks`, `ignore_paths`).
//!
//! model-signing supports only elliptic-curve keys for this method (P-256,
//! P-384, P-521); mithridate signs and verifies with P-256, the one curve the
//! `model_signing` CLI and most key tooling default to. Keys are PKCS#8 (or
//! SEC1) PEM private keys and SPKI PEM public keys, as `openssl` writes them.
//!
//! Verification checks the signature *before* reading the statement, then the
//! statement's internal consistency (subject digest over the resources), then
//! every file on disk, and names each changed, added and removed file.
//!
//! ```
//! use mithridate_provenance::model_signing as ms;
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("weights.bin"), b"\x00\x01\x02")?;
//! let key = ms::generate_p256();
//! let bundle = ms::sign_dir(dir.path(), &key, &ms::SignOptions::default())?;
//! let out = ms::verify_dir(dir.path(), &bundle, &[*key.verifying_key()], &ms::VerifyOptions::default())?;
//! assert!(out.ok());
//!
//! std::fs::write(dir.path().join("weights.bin"), b"\x00\x01\x03")?;
//! let out = ms::verify_dir(dir.path(), &bundle, &[*key.verifying_key()], &ms::VerifyOptions::default())?;
//! assert_eq!(out.changes[0].to_string(), "changed: weights.bin");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use mithridate_core::{Error, Location, Result};
use p256::ecdsa::signature::{Signer, Verifier};
pub use p256::ecdsa::{SigningKey as EcSigningKey, VerifyingKey as EcVerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::diff::FileChangeKind;
use crate::envelope::{pae, Envelope, Signature, Subject, PAYLOAD_TYPE, STATEMENT_TYPE};
use crate::keys::KeyPaths;
use crate::manifest::{json_error, relocate};
use crate::walk::{canonical_root, check_rel_path, rel_string};

/// Media type of the Sigstore bundle model-signing writes and requires.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// Predicate type of a model-signing v1.0 signature.
pub const MS_PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// Paths model-signing ignores by default (its `--ignore-git-paths`), and
/// records in `ignore_paths` when signing.
pub const GIT_PATHS: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];
/// Serialization method signed and verified here: one digest per file.
pub const METHOD_FILES: &str = "files";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

// ---------------------------------------------------------------- format

/// A Sigstore bundle as model-signing writes it for the private-key method.
///
/// Unknown fields are ignored on reading, like model-signing does; a
/// certificate chain or transparency-log entries are not used (this module
/// verifies against trusted public keys only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    /// Always [`BUNDLE_MEDIA_TYPE`].
    pub media_type: String,
    /// Which key signed (a hint, checked against the trusted keys).
    pub verification_material: VerificationMaterial,
    /// The signed statement.
    pub dsse_envelope: Envelope,
}

/// `verificationMaterial` of a [`Bundle`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    /// Public-key identifier; absent in bundles signed with a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKeyIdentifier>,
    /// Transparency-log entries: always empty for the private-key method.
    #[serde(default)]
    pub tlog_entries: Vec<serde_json::Value>,
}

/// `verificationMaterial.publicKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyIdentifier {
    /// Hex SHA-256 of the signer's SPKI PEM public key (see [`key_hint`]).
    /// Older model-signing versions left it out.
    #[serde(default)]
    pub hint: Option<String>,
}

/// The in-toto statement model-signing signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsStatement {
    /// Always `https://in-toto.io/Statement/v1`.
    #[serde(rename = "_type")]
    pub type_: String,
    /// Exactly one: the model (dataset) name and the SHA-256 over all
    /// resource digests.
    pub subject: Vec<Subject>,
    /// Always [`MS_PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// Files and how they were hashed.
    pub predicate: MsPredicate,
}

/// The predicate of an [`MsStatement`]. Fields other than these two are
/// ignored, as the v1.0 predicate specifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsPredicate {
    /// One entry per file, in path-component order.
    pub resources: Vec<Resource>,
    /// How the resource list was made.
    pub serialization: Serialization,
}

/// One file of the signed directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// `/`-separated path relative to the directory.
    pub name: String,
    /// Digest algorithm (`sha256`).
    pub algorithm: String,
    /// Hex digest of the whole file.
    pub digest: String,
}

/// `predicate.serialization`: the parameters needed to hash the directory
/// again the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Serialization {
    /// `files` (one digest per file); `shards` is not supported here.
    pub method: String,
    /// Per-file digest algorithm.
    pub hash_type: String,
    /// Whether symlinks were followed when signing.
    pub allow_symlinks: bool,
    /// Paths (relative to the directory) left out of the signature; a
    /// directory leaves out everything under it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_paths: Vec<String>,
}

/// True when `bytes` look like a Sigstore bundle (a JSON object with a
/// `mediaType` naming one), so a caller can tell it from a mithridate
/// manifest or DSSE envelope without a full parse. Never panics.
pub fn is_bundle(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Sniff {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Sniff>(bytes)
        .ok()
        .and_then(|s| s.media_type)
        .is_some_and(|m| m.starts_with("application/vnd.dev.sigstore.bundle"))
}

impl Bundle {
    /// Parse a bundle from JSON bytes. Never panics, whatever the bytes.
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| json_error(None, &e))
    }

    /// Read a bundle file.
    pub fn load(path: &Path) -> Result<Self> {
        let b = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_slice(&b).map_err(|e| relocate(e, path))
    }

    /// Compact JSON, as model-signing writes it.
    pub fn to_json_vec(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::data(format!("serializing bundle: {e}")))
    }

    /// Write to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let b = self.to_json_vec()?;
        mithridate_core::io::atomic::write_bytes_atomic(path, &b)
    }

    /// The key hint, if the bundle carries one.
    pub fn hint(&self) -> Option<&str> {
        self.verification_material
            .public_key
            .as_ref()
            .and_then(|k| k.hint.as_deref())
    }

    /// The statement inside, checked for shape and internal consistency but
    /// *without* checking the signature: for inspection only, never for
    /// trust decisions.
    pub fn statement_unverified(&self) -> Result<MsStatement> {
        if self.media_type != BUNDLE_MEDIA_TYPE {
            return Err(perr(
                "mediaType",
                format!("expected {BUNDLE_MEDIA_TYPE:?}, got {:?}", self.media_type),
            ));
        }
        let env = &self.dsse_envelope;
        if env.payload_type != PAYLOAD_TYPE {
            return Err(perr(
                "dsseEnvelope.payloadType",
                format!("expected {PAYLOAD_TYPE:?}, got {:?}", env.payload_type),
            ));
        }
        let body = B64
            .decode(env.payload.as_bytes())
            .map_err(|e| perr("dsseEnvelope.payload", format!("not base64: {e}")))?;
        let st: MsStatement = serde_json::from_slice(&body).map_err(|e| {
            perr(
                "dsseEnvelope.payload",
                format!("not a model-signing v1.0 in-toto statement: {e}"),
            )
        })?;
        st.validate()?;
        Ok(st)
    }
}

fn perr(field: &str, msg: String) -> Error {
    Error::parse(Location::default().at_field(field), msg)
}

impl MsStatement {
    /// The model (dataset) name recorded as the subject.
    pub fn model_name(&self) -> &str {
        self.subject.first().map_or("", |s| s.name.as_str())
    }

    /// The subject's SHA-256: the digest over all resource digests.
    pub fn root(&self) -> &str {
        self.subject
            .first()
            .and_then(|s| s.digest.get("sha256"))
            .map_or("", String::as_str)
    }

    /// Check types, supported serialization, resource paths and digests, and
    /// that the subject digest is the SHA-256 of the resource digests in
    /// order (model-signing checks the same).
    pub fn validate(&self) -> Result<()> {
        if self.type_ != STATEMENT_TYPE {
            return Err(perr(
                "payload._type",
                format!("expected {STATEMENT_TYPE:?}, got {:?}", self.type_),
            ));
        }
        if self.predicate_type != MS_PREDICATE_TYPE {
            return Err(perr(
                "payload.predicateType",
                format!(
                    "expected {MS_PREDICATE_TYPE:?}, got {:?} (model-signing v0.x \
                     `Digests/v0.1` signatures are not supported)",
                    self.predicate_type
                ),
            ));
        }
        if self.subject.len() != 1 {
            return Err(perr(
                "payload.subject",
                format!("expected exactly one subject, got {}", self.subject.len()),
            ));
        }
        let s = &self.predicate.serialization;
        if s.method != METHOD_FILES {
            return Err(perr(
                "payload.predicate.serialization.method",
                format!(
                    "serialization method {:?} is not supported (only {METHOD_FILES:?}: \
                     sign with model-signing's default file serialization)",
                    s.method
                ),
            ));
        }
        HashType::parse(&s.hash_type)
            .map_err(|m| perr("payload.predicate.serialization.hash_type", m))?;
        let mut seen = BTreeSet::new();
        let mut root = sha2::Sha256::new();
        for (i, r) in self.predicate.resources.iter().enumerate() {
            let field = |f: &str| format!("payload.predicate.resources[{i}].{f}");
            check_rel_path(&r.name).map_err(|m| perr(&field("name"), m))?;
            if !seen.insert(r.name.as_str()) {
                return Err(perr(
                    &field("name"),
                    format!("duplicate resource {:?}", r.name),
                ));
            }
            let ht = HashType::parse(&r.algorithm).map_err(|m| perr(&field("algorithm"), m))?;
            let raw = match hex::decode(&r.digest) {
                Ok(b) if b.len() == ht.len() => b,
                Ok(b) => {
                    return Err(perr(
                        &field("digest"),
                        format!("{} bytes, expected {}", b.len(), ht.len()),
                    ))
                }
                Err(e) => return Err(perr(&field("digest"), format!("not hex: {e}"))),
            };
            root.update(&raw);
        }
        let want = hex::encode(root.finalize());
        let got = self.root();
        if !got.eq_ignore_ascii_case(&want) {
            return Err(perr(
                "payload.subject[0].digest.sha256",
                format!(
                    "manifest is inconsistent: subject digest is {got:?} but the resources \
                     hash to {want}"
                ),
            ));
        }
        Ok(())
    }
}

/// Per-file digest algorithms a model-signing statement may name and this
/// module can recompute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashType {
    Sha256,
    Blake3,
}

impl HashType {
    fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "sha256" => Ok(Self::Sha256),
            "blake3" => Ok(Self::Blake3),
            other => Err(format!(
                "hash type {other:?} is not supported (sha256 or blake3)"
            )),
        }
    }

    fn len(self) -> usize {
        32
    }

    fn hash_file(self, path: &Path) -> Result<String> {
        match self {
            HashType::Sha256 => {
                let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
                let mut h = sha2::Sha256::new();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = match f.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(Error::io(path, e)),
                    };
                    h.update(&buf[..n]);
                }
                Ok(hex::encode(h.finalize()))
            }
            HashType::Blake3 => {
                let mut h = blake3::Hasher::new();
                h.update_mmap_rayon(path).map_err(|e| Error::io(path, e))?;
                Ok(h.finalize().to_hex().to_string())
            }
        }
    }
}

// ---------------------------------------------------------------- keys

/// A fresh P-256 key from the operating system's CSPRNG.
pub fn generate_p256() -> EcSigningKey {
    EcSigningKey::random(&mut rand::rngs::OsRng)
}

/// SPKI PEM of a P-256 public key, byte for byte as OpenSSL and Python's
/// `cryptography` write it (64-column base64, LF line ends).
pub fn ec_public_pem(key: &EcVerifyingKey) -> Result<String> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| Error::Crypto(format!("encoding public key: {e}")))
}

/// The `publicKey.hint` model-signing writes and checks: hex SHA-256 of the
/// SPKI PEM text of the public key.
pub fn key_hint(key: &EcVerifyingKey) -> Result<String> {
    Ok(hex::encode(sha2::Sha256::digest(
        ec_public_pem(key)?.as_bytes(),
    )))
}

/// Generate a P-256 key pair and write `dir/<stem>.key` (PKCS#8 PEM, mode
/// 0600) and `dir/<stem>.pub` (SPKI PEM). Refuses to replace an existing
/// private key unless `overwrite`.
pub fn write_p256_keypair(dir: &Path, stem: &str, overwrite: bool) -> Result<KeyPaths> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let paths = KeyPaths {
        private: dir.join(format!("{stem}.key")),
        public: dir.join(format!("{stem}.pub")),
    };
    if !overwrite {
        for p in [&paths.private, &paths.public] {
            if p.exists() {
                return Err(Error::io(
                    p,
                    std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "key file exists (use --force to replace it)",
                    ),
                ));
            }
        }
    }
    let key = generate_p256();
    let sk = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::Crypto(format!("encoding private key: {e}")))?;
    let pk = ec_public_pem(key.verifying_key())?;
    // The temporary file is created 0600 and renamed into place, so the key
    // is never readable by others, not even briefly.
    mithridate_core::io::atomic::write_atomic_mode(&paths.private, Some(0o600), |w| {
        w.write_all(sk.as_bytes())
    })?;
    mithridate_core::io::atomic::write_atomic_mode(&paths.public, Some(0o644), |w| {
        w.write_all(pk.as_bytes())
    })?;
    Ok(paths)
}

/// Parse a P-256 private key: PKCS#8 PEM (`BEGIN PRIVATE KEY`) or SEC1 PEM
/// (`BEGIN EC PRIVATE KEY`, what `openssl ecparam -genkey` writes). Another
/// key type is named in the error. Never panics.
pub fn parse_ec_private_pem(bytes: &[u8]) -> Result<EcSigningKey> {
    let s = std::str::from_utf8(bytes)
        .map_err(|_| Error::Crypto("private key is not UTF-8 PEM".into()))?
        .trim();
    if s.contains("BEGIN EC PRIVATE KEY") {
        return p256::SecretKey::from_sec1_pem(s)
            .map(EcSigningKey::from)
            .map_err(|e| {
                Error::Crypto(format!(
                    "SEC1 EC private key is not a P-256 key or is malformed: {e}"
                ))
            });
    }
    EcSigningKey::from_pkcs8_pem(s).map_err(|e| Error::Crypto(diagnose(s, true, e)))
}

/// Parse a P-256 public key (SPKI PEM). Another key type is named in the
/// error. Never panics.
pub fn parse_ec_public_pem(bytes: &[u8]) -> Result<EcVerifyingKey> {
    let s = std::str::from_utf8(bytes)
        .map_err(|_| Error::Crypto("public key is not UTF-8 PEM".into()))?
        .trim();
    EcVerifyingKey::from_public_key_pem(s).map_err(|e| Error::Crypto(diagnose(s, false, e)))
}

/// Read a P-256 private key file.
pub fn load_ec_private_key(path: &Path) -> Result<EcSigningKey> {
    let b = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_ec_private_pem(&b).map_err(|e| with_path(path, e))
}

/// Read a P-256 public key file.
pub fn load_ec_public_key(path: &Path) -> Result<EcVerifyingKey> {
    let b = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_ec_public_pem(&b).map_err(|e| with_path(path, e))
}

fn with_path(path: &Path, e: Error) -> Error {
    match e {
        Error::Crypto(m) => Error::Crypto(format!("{}: {m}", path.display())),
        other => other,
    }
}

/// Why `text` is not the P-256 key wanted: names the algorithm found (an
/// Ed25519 key from `mithridate keygen` is the likely mix-up).
fn diagnose(text: &str, private: bool, err: impl std::fmt::Display) -> String {
    use p256::pkcs8::der::{pem, Decode};
    use p256::pkcs8::spki::SubjectPublicKeyInfoRef;
    use p256::pkcs8::PrivateKeyInfo;
    let expected = if private {
        "an ECDSA P-256 private key (PKCS#8 or SEC1 PEM; `mithridate keygen --type ecdsa-p256`)"
    } else {
        "an ECDSA P-256 public key (SPKI PEM; `mithridate keygen --type ecdsa-p256`)"
    };
    let Ok((label, der)) = pem::decode_vec(text.as_bytes()) else {
        return format!("not PEM: {err}; expected {expected}");
    };
    let alg = match label {
        "PRIVATE KEY" => PrivateKeyInfo::from_der(&der)
            .ok()
            .map(|k| (k.algorithm.oid, k.algorithm.parameters_oid().ok())),
        "PUBLIC KEY" => SubjectPublicKeyInfoRef::from_der(&der)
            .ok()
            .map(|k| (k.algorithm.oid, k.algorithm.parameters_oid().ok())),
        other => return format!("found a PEM block labelled `{other}`; expected {expected}"),
    };
    let kind = if label == "PRIVATE KEY" {
        "private key"
    } else {
        "public key"
    };
    let found = match alg.map(|(o, p)| (o.to_string(), p.map(|p| p.to_string()))) {
        None => format!("a malformed {kind}"),
        Some((o, p)) => match (o.as_str(), p.as_deref()) {
            ("1.3.101.112", _) => format!("an Ed25519 {kind}"),
            ("1.2.840.113549.1.1.1", _) => format!("an RSA {kind}"),
            ("1.2.840.10045.2.1", Some("1.2.840.10045.3.1.7")) => {
                if (label == "PRIVATE KEY") == private {
                    return format!("malformed P-256 {kind}: {err}");
                }
                format!("an ECDSA P-256 {kind}")
            }
            ("1.2.840.10045.2.1", Some("1.3.132.0.34")) => {
                format!("an ECDSA P-384 {kind} (only P-256 is supported)")
            }
            ("1.2.840.10045.2.1", Some("1.3.132.0.35")) => {
                format!("an ECDSA P-521 {kind} (only P-256 is supported)")
            }
            ("1.2.840.10045.2.1", _) => format!("an ECDSA {kind} on another curve"),
            (o, _) => format!("a {kind} of algorithm OID {o}"),
        },
    };
    let half = match (private, label) {
        (true, "PUBLIC KEY") => " (a public key where the private key is needed)",
        (false, "PRIVATE KEY") => {
            " (a private key where a public key is needed: never hand out the private key)"
        }
        _ => "",
    };
    format!("found {found}{half}; expected {expected}")
}

// ---------------------------------------------------------------- listing

/// Paths to leave out, as component lists; a path is ignored when one of
/// them is a prefix of its components (model-signing's `is_relative_to`).
#[derive(Debug, Default)]
struct IgnoreSet(Vec<Vec<String>>);

impl IgnoreSet {
    /// Add a path given relative to the root. Entries that are absolute or
    /// climb out with `..` match nothing under the root and are dropped.
    fn add_rel(&mut self, rel: &str) {
        let mut parts = Vec::new();
        if rel.starts_with('/') {
            return;
        }
        for p in rel.split('/') {
            match p {
                "" | "." => {}
                ".." => return,
                p => parts.push(p.to_owned()),
            }
        }
        if !parts.is_empty() && !self.0.contains(&parts) {
            self.0.push(parts);
        }
    }

    fn matches(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').collect();
        self.0
            .iter()
            .any(|ig| ig.len() <= parts.len() && ig.iter().zip(&parts).all(|(a, b)| a == b))
    }
}

/// The path of `p` (absolute, or relative to the working directory)
/// relative to the canonical `root`, if it lies under it. The file need not
/// exist (a signature about to be written).
fn rel_under(root: &Path, p: &Path) -> Option<String> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(p)
    };
    // Canonicalise the parent (the file itself may not exist yet).
    let canon = match abs.canonicalize() {
        Ok(c) => c,
        Err(_) => {
            let parent = abs.parent()?.canonicalize().ok()?;
            parent.join(abs.file_name()?)
        }
    };
    let rel = canon.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    let s = parts?.join("/");
    (!s.is_empty()).then_some(s)
}

/// What a listing found.
#[derive(Debug, Default)]
struct Listing {
    /// Regular files (and, when allowed, symlinks to files inside the root):
    /// relative path → path to read.
    files: BTreeMap<String, PathBuf>,
    /// Symlinks not followed: relative path → why.
    refused: BTreeMap<String, (FileChangeKind, String)>,
}

/// Every file under the canonical `root` not covered by `ignore`, the way
/// model-signing lists a model: regular files only; FIFOs, sockets and
/// devices are an error (model-signing refuses them too); a symlink is
/// refused unless `allow_symlinks`, and even then only followed to a file
/// inside the root (a symlink to a directory is not descended).
fn list(root: &Path, ignore: &IgnoreSet, allow_symlinks: bool) -> Result<Listing> {
    let mut out = Listing::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let path = entry.path();
            let rel = rel_string(root, &path)?;
            if ignore.matches(&rel) {
                continue;
            }
            let ft = entry.file_type().map_err(|e| Error::io(&path, e))?;
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                out.files.insert(rel, path);
            } else if ft.is_symlink() {
                if !allow_symlinks {
                    out.refused.insert(
                        rel,
                        (
                            FileChangeKind::Added,
                            "a symlink; the signature was made with allow_symlinks: false".into(),
                        ),
                    );
                    continue;
                }
                match path.canonicalize() {
                    Ok(t) if t.starts_with(root) => {
                        if t.is_file() {
                            out.files.insert(rel, t);
                        }
                    }
                    Ok(t) => {
                        out.refused.insert(
                            rel,
                            (
                                FileChangeKind::SymlinkEscape,
                                format!(
                                    "points to {}, outside the dataset root; not followed",
                                    t.display()
                                ),
                            ),
                        );
                    }
                    Err(_) => {
                        out.refused.insert(
                            rel,
                            (FileChangeKind::SymlinkEscape, "dangling symlink".into()),
                        );
                    }
                }
            } else {
                return Err(Error::data(format!(
                    "{}: not a regular file or directory (FIFO, socket or device); \
                     model-signing refuses these too",
                    path.display()
                )));
            }
        }
    }
    Ok(out)
}

/// model-signing's resource order: Python `PurePosixPath` ordering, which
/// compares path components, not whole strings (`a/b` sorts before `a-c`).
fn path_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

// ---------------------------------------------------------------- signing

/// Options for [`sign_dir`].
#[derive(Debug, Clone)]
pub struct SignOptions {
    /// Paths to leave out (absolute or relative to the working directory),
    /// e.g. the signature file when it is written inside the directory.
    /// Those under the directory are recorded in `ignore_paths`.
    pub ignore: Vec<PathBuf>,
    /// Also leave out `.git`, `.gitattributes`, `.github`, `.gitignore`
    /// (model-signing's default).
    pub ignore_git_paths: bool,
    /// Subject name; default: the directory's name.
    pub model_name: Option<String>,
}

impl Default for SignOptions {
    fn default() -> Self {
        Self {
            ignore: Vec::new(),
            ignore_git_paths: true,
            model_name: None,
        }
    }
}

/// Hash the files under `root` into a model-signing statement (SHA-256 per
/// file, `files` serialization, no symlinks: a symlink is an error naming
/// it, as in model-signing).
pub fn statement_for_dir(root: &Path, opts: &SignOptions) -> Result<MsStatement> {
    let span = tracing::info_span!("model_signing_statement", root = %root.display());
    let _g = span.enter();
    let croot = canonical_root(root)?;
    let mut ignore_paths: BTreeSet<String> = BTreeSet::new();
    if opts.ignore_git_paths {
        ignore_paths.extend(GIT_PATHS.iter().map(|s| (*s).to_owned()));
    }
    ignore_paths.extend(opts.ignore.iter().filter_map(|p| rel_under(&croot, p)));
    let mut set = IgnoreSet::default();
    for p in &ignore_paths {
        set.add_rel(p);
    }
    let listing = list(&croot, &set, false)?;
    if let Some((rel, _)) = listing.refused.iter().next() {
        return Err(Error::data(format!(
            "{}: is a symlink; the model-signing format signs regular files only \
             (replace the link with the file, or leave it out)",
            croot.join(rel).display()
        )));
    }
    let mut resources = listing
        .files
        .par_iter()
        .map(|(rel, abs)| {
            Ok(Resource {
                name: rel.clone(),
                algorithm: "sha256".into(),
                digest: HashType::Sha256.hash_file(abs)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    resources.sort_by(|a, b| path_order(&a.name, &b.name));
    let mut root_hash = sha2::Sha256::new();
    for r in &resources {
        let raw = hex::decode(&r.digest).map_err(|e| Error::data(format!("internal hex: {e}")))?;
        root_hash.update(&raw);
    }
    let name = match &opts.model_name {
        Some(n) => n.clone(),
        None => croot
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    Ok(MsStatement {
        type_: STATEMENT_TYPE.into(),
        subject: vec![Subject {
            name,
            digest: BTreeMap::from([("sha256".to_owned(), hex::encode(root_hash.finalize()))]),
        }],
        predicate_type: MS_PREDICATE_TYPE.into(),
        predicate: MsPredicate {
            resources,
            serialization: Serialization {
                method: METHOD_FILES.into(),
                hash_type: "sha256".into(),
                allow_symlinks: false,
                ignore_paths: ignore_paths.into_iter().collect(),
            },
        },
    })
}

/// Sign a statement: JSON payload, ECDSA P-256 / SHA-256 over the DSSE PAE,
/// DER signature, Sigstore bundle with the key hint. RFC 6979 nonces, so the
/// same statement and key always give the same bundle.
pub fn sign_statement(st: &MsStatement, key: &EcSigningKey) -> Result<Bundle> {
    st.validate()?;
    let body = serde_json::to_vec_pretty(st)
        .map_err(|e| Error::data(format!("serializing statement: {e}")))?;
    let sig: p256::ecdsa::Signature = key.sign(&pae(PAYLOAD_TYPE, &body));
    Ok(Bundle {
        media_type: BUNDLE_MEDIA_TYPE.into(),
        verification_material: VerificationMaterial {
            public_key: Some(PublicKeyIdentifier {
                hint: Some(key_hint(key.verifying_key())?),
            }),
            tlog_entries: Vec::new(),
        },
        dsse_envelope: Envelope {
            payload_type: PAYLOAD_TYPE.into(),
            payload: B64.encode(&body),
            signatures: vec![Signature {
                keyid: String::new(),
                sig: B64.encode(sig.to_der().as_bytes()),
            }],
        },
    })
}

/// Hash `root` and sign it in the model-signing format
/// ([`statement_for_dir`] then [`sign_statement`]).
pub fn sign_dir(root: &Path, key: &EcSigningKey, opts: &SignOptions) -> Result<Bundle> {
    sign_statement(&statement_for_dir(root, opts)?, key)
}

// ---------------------------------------------------------------- verifying

/// A statement whose bundle signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsVerified {
    /// The statement (validated).
    pub statement: MsStatement,
    /// Hint ([`key_hint`]) of the trusted key that verified.
    pub keyid: String,
}

/// Check the bundle's signature against `trusted` keys, *then* parse and
/// validate the statement it carries.
///
/// When the bundle names a key hint, only the trusted key with that hint is
/// tried (model-signing refuses a hint that does not match its key); without
/// one, every trusted key is tried. Signature failures are
/// [`Error::Crypto`]: the bundle is not what a trusted key signed, reject the
/// data. Malformed bundles are [`Error::Parse`].
pub fn verify_bundle(b: &Bundle, trusted: &[EcVerifyingKey]) -> Result<MsVerified> {
    if trusted.is_empty() {
        return Err(Error::param("trusted", "no trusted public key given"));
    }
    if b.media_type != BUNDLE_MEDIA_TYPE {
        return Err(perr(
            "mediaType",
            format!("expected {BUNDLE_MEDIA_TYPE:?}, got {:?}", b.media_type),
        ));
    }
    let env = &b.dsse_envelope;
    if env.payload_type != PAYLOAD_TYPE {
        return Err(Error::Crypto(format!(
            "payloadType {:?} is not {PAYLOAD_TYPE:?}",
            env.payload_type
        )));
    }
    let body = B64
        .decode(env.payload.as_bytes())
        .map_err(|e| perr("dsseEnvelope.payload", format!("not base64: {e}")))?;
    if env.signatures.is_empty() {
        return Err(Error::Crypto("bundle has no signatures".into()));
    }
    let hinted: Vec<(String, &EcVerifyingKey)> = trusted
        .iter()
        .map(|k| Ok((key_hint(k)?, k)))
        .collect::<Result<_>>()?;
    let candidates: Vec<&(String, &EcVerifyingKey)> = match b.hint() {
        Some(h) if !h.is_empty() => {
            let c: Vec<_> = hinted
                .iter()
                .filter(|(kh, _)| kh.eq_ignore_ascii_case(h))
                .collect();
            if c.is_empty() {
                return Err(Error::Crypto(format!(
                    "signed by the key with hint {h}, which is none of the {} trusted key(s)",
                    trusted.len()
                )));
            }
            c
        }
        _ => hinted.iter().collect(),
    };
    let msg = pae(&env.payload_type, &body);
    let mut good = None;
    'outer: for s in &env.signatures {
        let Ok(raw) = B64.decode(s.sig.as_bytes()) else {
            continue;
        };
        let Ok(sig) = p256::ecdsa::Signature::from_der(&raw) else {
            continue;
        };
        // OpenSSL (model-signing's backend) accepts both `s` and `n - s`;
        // (r, s) verifies exactly when (r, n - s) does, so normalising to low
        // S accepts the same signatures whatever this crate's policy on high S.
        let sig = sig.normalize_s().unwrap_or(sig);
        for (kh, k) in &candidates {
            if k.verify(&msg, &sig).is_ok() {
                good = Some(kh.clone());
                break 'outer;
            }
        }
    }
    let Some(keyid) = good else {
        return Err(Error::Crypto(if b.hint().is_some_and(|h| !h.is_empty()) {
            "signature does not verify: the bundle was modified after signing".into()
        } else {
            format!(
                "signature does not verify under any of the {} trusted key(s)",
                trusted.len()
            )
        }));
    };
    let statement = b.statement_unverified()?;
    Ok(MsVerified { statement, keyid })
}

/// Options for [`verify_dir`] and [`check_dir`].
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Paths to leave out in addition to the statement's `ignore_paths`
    /// (absolute or relative to the working directory), e.g. the bundle file.
    pub ignore: Vec<PathBuf>,
    /// Also leave out the git paths ([`GIT_PATHS`]), as model-signing does
    /// by default.
    pub ignore_git_paths: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            ignore: Vec::new(),
            ignore_git_paths: true,
        }
    }
}

/// One file that differs from the signed list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsChange {
    /// Path relative to the directory.
    pub path: String,
    /// What happened.
    pub kind: FileChangeKind,
    /// Signed digest (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// Digest on disk (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    /// Anything else a person should know (symlinks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl std::fmt::Display for MsChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            FileChangeKind::Added => write!(f, "added: {}", self.path)?,
            FileChangeKind::Removed => write!(f, "removed: {}", self.path)?,
            FileChangeKind::Changed => write!(f, "changed: {}", self.path)?,
            FileChangeKind::SymlinkEscape => {
                write!(f, "symlink escapes the dataset root: {}", self.path)?
            }
        }
        if let Some(n) = &self.note {
            write!(f, "; {n}")?;
        }
        Ok(())
    }
}

/// The result of verifying a directory against a model-signing statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsOutcome {
    /// The subject name (the directory's name when signed).
    pub model_name: String,
    /// The subject digest (SHA-256 over the file digests).
    pub root: String,
    /// Per-file digest algorithm.
    pub algorithm: String,
    /// Hint of the trusted key that verified the signature; `None` when the
    /// signature was not checked ([`check_dir`]).
    pub keyid: Option<String>,
    /// Files listed in the statement.
    pub files_checked: u64,
    /// Every difference, sorted by path.
    pub changes: Vec<MsChange>,
}

impl MsOutcome {
    /// True when the directory matches the signed list exactly.
    pub fn ok(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Verify the bundle's signature against `trusted` ([`verify_bundle`]), then
/// the files under `root` against the signed list ([`check_dir`]).
pub fn verify_dir(
    root: &Path,
    bundle: &Bundle,
    trusted: &[EcVerifyingKey],
    opts: &VerifyOptions,
) -> Result<MsOutcome> {
    let v = verify_bundle(bundle, trusted)?;
    let mut out = check_dir(root, &v.statement, opts)?;
    out.keyid = Some(v.keyid);
    Ok(out)
}

/// Compare the files under `root` with a statement's resources, hashing them
/// as its `serialization` says, and name every changed, added and removed
/// file. Does not check any signature: use [`verify_dir`] for trust
/// decisions.
pub fn check_dir(root: &Path, st: &MsStatement, opts: &VerifyOptions) -> Result<MsOutcome> {
    let span = tracing::info_span!("model_signing_check", root = %root.display());
    let _g = span.enter();
    st.validate()?;
    let croot = canonical_root(root)?;
    let ser = &st.predicate.serialization;
    let ht = HashType::parse(&ser.hash_type).map_err(Error::data)?;
    let mut set = IgnoreSet::default();
    for p in &ser.ignore_paths {
        set.add_rel(p);
    }
    if opts.ignore_git_paths {
        for p in GIT_PATHS {
            set.add_rel(p);
        }
    }
    for p in opts.ignore.iter().filter_map(|p| rel_under(&croot, p)) {
        set.add_rel(&p);
    }
    let listing = list(&croot, &set, ser.allow_symlinks)?;
    let expected: BTreeMap<&str, &Resource> = st
        .predicate
        .resources
        .iter()
        .map(|r| (r.name.as_str(), r))
        .collect();
    let mut changes = st
        .predicate
        .resources
        .par_iter()
        .map(|r| -> Result<Option<MsChange>> {
            let change = |kind, actual, note| MsChange {
                path: r.name.clone(),
                kind,
                expected: Some(r.digest.to_ascii_lowercase()),
                actual,
                note,
            };
            if let Some(abs) = listing.files.get(&r.name) {
                // A resource whose algorithm differs from the serialization's
                // can never match what model-signing recomputes.
                let d = ht.hash_file(abs)?;
                if r.algorithm == ser.hash_type && d.eq_ignore_ascii_case(&r.digest) {
                    return Ok(None);
                }
                Ok(Some(change(FileChangeKind::Changed, Some(d), None)))
            } else if let Some((kind, why)) = listing.refused.get(&r.name) {
                let kind = if *kind == FileChangeKind::Added {
                    FileChangeKind::Changed
                } else {
                    *kind
                };
                Ok(Some(change(kind, None, Some(why.clone()))))
            } else {
                Ok(Some(change(FileChangeKind::Removed, None, None)))
            }
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    let added: Vec<(&String, &PathBuf)> = listing
        .files
        .iter()
        .filter(|(rel, _)| !expected.contains_key(rel.as_str()))
        .collect();
    let added = added
        .par_iter()
        .map(|(rel, abs)| {
            Ok(MsChange {
                path: (*rel).clone(),
                kind: FileChangeKind::Added,
                expected: None,
                actual: Some(ht.hash_file(abs)?),
                note: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    changes.extend(added);
    for (rel, (kind, why)) in &listing.refused {
        if !expected.contains_key(rel.as_str()) {
            changes.push(MsChange {
                path: rel.clone(),
                kind: *kind,
                expected: None,
                actual: None,
                note: Some(why.clone()),
            });
        }
    }
    changes.sort_by(|a, b| path_order(&a.path, &b.path));
    Ok(MsOutcome {
        model_name: st.model_name().to_owned(),
        root: st.root().to_ascii_lowercase(),
        algorithm: ser.hash_type.clone(),
        keyid: None,
        files_checked: st.predicate.resources.len() as u64,
        changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(n: u8) -> EcSigningKey {
        let mut b = [0u8; 32];
        b[31] = n;
        b[0] = 1;
        EcSigningKey::from_bytes(&b.into()).unwrap()
    }

    fn dataset() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a")).unwrap();
        std::fs::create_dir_all(d.path().join(".git")).unwrap();
        std::fs::write(d.path().join("a/b"), b"ab").unwrap();
        std::fs::write(d.path().join("a-c"), b"ac").unwrap();
        std::fs::write(d.path().join(".git/HEAD"), b"ref").unwrap();
        std::fs::write(d.path().join("z.jsonl"), b"{\"id\":1}\n").unwrap();
        d
    }

    #[test]
    fn resources_follow_python_path_order_and_root_digest() {
        let d = dataset();
        let st = statement_for_dir(d.path(), &SignOptions::default()).unwrap();
        let names: Vec<&str> = st
            .predicate
            .resources
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        // `a/b` before `a-c`: component order, not string order.
        assert_eq!(names, ["a/b", "a-c", "z.jsonl"]);
        assert_eq!(
            st.predicate.resources[0].digest,
            hex::encode(sha2::Sha256::digest(b"ab"))
        );
        let mut h = sha2::Sha256::new();
        for r in &st.predicate.resources {
            h.update(hex::decode(&r.digest).unwrap());
        }
        assert_eq!(st.root(), hex::encode(h.finalize()));
        assert_eq!(
            st.predicate.serialization.ignore_paths,
            [".git", ".gitattributes", ".github", ".gitignore"]
        );
    }

    #[test]
    fn sign_verify_roundtrip_and_tamper() {
        let d = dataset();
        let k = key(7);
        let sig_path = d.path().join("model.sig");
        let b = sign_dir(
            d.path(),
            &k,
            &SignOptions {
                ignore: vec![sig_path.clone()],
                ..Default::default()
            },
        )
        .unwrap();
        b.save(&sig_path).unwrap();
        let b2 = Bundle::load(&sig_path).unwrap();
        assert_eq!(b, b2);
        assert!(b2
            .statement_unverified()
            .unwrap()
            .predicate
            .serialization
            .ignore_paths
            .contains(&"model.sig".to_owned()));
        let vk = *k.verifying_key();
        let opts = VerifyOptions::default();
        let out = verify_dir(d.path(), &b2, &[vk], &opts).unwrap();
        assert!(out.ok(), "{:?}", out.changes);
        assert_eq!(out.keyid.as_deref(), Some(key_hint(&vk).unwrap().as_str()));
        assert_eq!(out.files_checked, 3);

        std::fs::write(d.path().join("a/b"), b"AB").unwrap();
        std::fs::remove_file(d.path().join("z.jsonl")).unwrap();
        std::fs::write(d.path().join("new.txt"), b"n").unwrap();
        let out = verify_dir(d.path(), &b2, &[vk], &opts).unwrap();
        let got: Vec<String> = out.changes.iter().map(ToString::to_string).collect();
        assert_eq!(got, ["changed: a/b", "added: new.txt", "removed: z.jsonl"]);

        // Another key, with or without the hint.
        let other = *key(8).verifying_key();
        let e = verify_bundle(&b2, &[other]).unwrap_err().to_string();
        assert!(e.contains("none of the 1 trusted"), "{e}");
        let mut nohint = b2.clone();
        nohint.verification_material.public_key = None;
        let e = verify_bundle(&nohint, &[other]).unwrap_err().to_string();
        assert!(e.contains("any of the 1 trusted"), "{e}");
        assert!(verify_bundle(&nohint, &[other, vk]).is_ok());
    }

    #[test]
    fn tampered_payload_is_a_signature_failure() {
        let d = dataset();
        let k = key(3);
        let b = sign_dir(d.path(), &k, &SignOptions::default()).unwrap();
        let mut body = B64.decode(&b.dsse_envelope.payload).unwrap();
        let s = String::from_utf8(body.clone()).unwrap();
        // Swap in the digest of different content for `a/b`.
        let forged = s.replace(
            &hex::encode(sha2::Sha256::digest(b"ab")),
            &hex::encode(sha2::Sha256::digest(b"AB")),
        );
        assert_ne!(forged, s);
        body = forged.into_bytes();
        let mut bad = b.clone();
        bad.dsse_envelope.payload = B64.encode(&body);
        let e = verify_bundle(&bad, &[*k.verifying_key()]).unwrap_err();
        assert!(matches!(e, Error::Crypto(_)), "{e}");
        assert!(e.to_string().contains("modified after signing"), "{e}");
    }

    #[test]
    fn high_s_signatures_verify_like_openssl() {
        let d = dataset();
        let k = key(4);
        let b = sign_dir(d.path(), &k, &SignOptions::default()).unwrap();
        let raw = B64.decode(&b.dsse_envelope.signatures[0].sig).unwrap();
        let sig = p256::ecdsa::Signature::from_der(&raw).unwrap();
        let (r, s) = sig.split_scalars();
        let flipped =
            p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s.as_ref()).to_bytes()).unwrap();
        assert_ne!(flipped, sig);
        let mut b2 = b.clone();
        b2.dsse_envelope.signatures[0].sig = B64.encode(flipped.to_der().as_bytes());
        assert!(verify_bundle(&b2, &[*k.verifying_key()]).is_ok());
    }

    #[test]
    fn inconsistent_root_and_bad_paths_are_refused() {
        let d = dataset();
        let mut st = statement_for_dir(d.path(), &SignOptions::default()).unwrap();
        st.subject[0]
            .digest
            .insert("sha256".into(), "00".repeat(32));
        let e = st.validate().unwrap_err().to_string();
        assert!(e.contains("inconsistent"), "{e}");
        let mut st = statement_for_dir(d.path(), &SignOptions::default()).unwrap();
        st.predicate.resources[0].name = "../etc/passwd".into();
        assert!(st.validate().unwrap_err().to_string().contains(".."));
        let mut st2 = statement_for_dir(d.path(), &SignOptions::default()).unwrap();
        st2.predicate.serialization.method = "shards".into();
        assert!(st2.validate().unwrap_err().to_string().contains("shards"));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_refused_when_signing_and_named_when_verifying() {
        let d = dataset();
        std::os::unix::fs::symlink(d.path().join("a/b"), d.path().join("link")).unwrap();
        let e = statement_for_dir(d.path(), &SignOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("link") && e.contains("symlink"), "{e}");
        std::fs::remove_file(d.path().join("link")).unwrap();
        let st = statement_for_dir(d.path(), &SignOptions::default()).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("link")).unwrap();
        let out = check_dir(d.path(), &st, &VerifyOptions::default()).unwrap();
        assert_eq!(out.changes.len(), 1);
        assert_eq!(out.changes[0].path, "link");
        assert!(out.changes[0].to_string().contains("symlink"));
    }

    #[test]
    fn ignore_set_matches_components() {
        let mut s = IgnoreSet::default();
        s.add_rel(".git");
        s.add_rel("../x");
        s.add_rel("/abs");
        s.add_rel("./sub/model.sig");
        assert!(s.matches(".git"));
        assert!(s.matches(".git/HEAD"));
        assert!(!s.matches(".github2"));
        assert!(!s.matches(".gitx/HEAD"));
        assert!(s.matches("sub/model.sig"));
        assert!(!s.matches("x"));
        assert_eq!(s.0.len(), 2);
    }

    #[test]
    fn key_files_round_trip_and_name_wrong_types() {
        let d = tempfile::tempdir().unwrap();
        let p = write_p256_keypair(d.path(), "ms", false).unwrap();
        let sk = load_ec_private_key(&p.private).unwrap();
        let pk = load_ec_public_key(&p.public).unwrap();
        assert_eq!(sk.verifying_key(), &pk);
        assert!(write_p256_keypair(d.path(), "ms", false).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p.private).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let e = parse_ec_public_pem(&std::fs::read(&p.private).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a private key where a public key is needed"),
            "{e}"
        );
        let ed = crate::keys::write_keypair(d.path()).unwrap();
        let e = load_ec_public_key(&ed.public).unwrap_err().to_string();
        assert!(e.contains("Ed25519 public key"), "{e}");
        let e = load_ec_private_key(&ed.private).unwrap_err().to_string();
        assert!(e.contains("Ed25519 private key"), "{e}");
        // SEC1 private keys (`openssl ecparam -genkey`) are accepted.
        let sec1 = p256::SecretKey::from(sk.clone())
            .to_sec1_pem(LineEnding::LF)
            .unwrap();
        assert_eq!(
            parse_ec_private_pem(sec1.as_bytes())
                .unwrap()
                .verifying_key(),
            &pk
        );
    }

    #[test]
    fn sniffing_tells_bundles_from_envelopes() {
        let d = dataset();
        let b = sign_dir(d.path(), &key(1), &SignOptions::default()).unwrap();
        assert!(is_bundle(&b.to_json_vec().unwrap()));
        assert!(!is_bundle(b"{\"payloadType\":\"x\"}"));
        assert!(!is_bundle(b"not json"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn bundle_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = is_bundle(&bytes);
            if let Ok(b) = Bundle::from_json_slice(&bytes) {
                let _ = b.statement_unverified();
                let _ = verify_bundle(&b, &[*key(1).verifying_key()]);
            }
            let _ = parse_ec_private_pem(&bytes);
            let _ = parse_ec_public_pem(&bytes);
        }

        #[test]
        fn mutated_bundles_never_verify_or_panic(pos in any::<usize>(), byte in any::<u8>()) {
            static SIGNED: std::sync::OnceLock<Bundle> = std::sync::OnceLock::new();
            let k = key(5);
            let b = SIGNED.get_or_init(|| {
                let d = dataset();
                sign_dir(d.path(), &k, &SignOptions::default()).unwrap()
            });
            let mut bytes = b.to_json_vec().unwrap();
            let i = pos % bytes.len();
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
            if let Ok(b2) = Bundle::from_json_slice(&bytes) {
                if let Ok(v) = verify_bundle(&b2, &[*k.verifying_key()]) {
                    // Only a change outside the signed content may pass.
                    prop_assert_eq!(&b2.dsse_envelope.payload, &b.dsse_envelope.payload);
                    prop_assert_eq!(v.statement, b.statement_unverified().unwrap());
                }
            }
        }

        #[test]
        fn statement_json_never_panics(body in "\\{\"_type\":\"[a-z:/.]{0,12}\",\"subject\":\\[\\],\"predicateType\":\"x\",\"predicate\":\\{\"resources\":\\[\\{\"name\":\"[a-z./]{0,8}\",\"algorithm\":\"sha256\",\"digest\":\"[0-9a-f]{0,64}\"\\}\\],\"serialization\":\\{\"method\":\"files\",\"hash_type\":\"sha256\",\"allow_symlinks\":false\\}\\}\\}") {
            if let Ok(st) = serde_json::from_str::<MsStatement>(&body) {
                let _ = st.validate();
            }
        }
    }
}
