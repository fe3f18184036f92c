//! Ed25519 keys as PKCS#8 / SPKI PEM: generation, storage, parsing.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
use mithridate_core::{Error, Result};
use sha2::Digest;

/// File name stem used by [`write_keypair`].
pub const KEY_STEM: &str = "mithridate";

/// Paths of a written key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPaths {
    /// PKCS#8 PEM private key (mode 0600 on Unix).
    pub private: PathBuf,
    /// SPKI PEM public key.
    pub public: PathBuf,
}

/// A fresh Ed25519 key from the operating system's CSPRNG.
pub fn generate_keypair() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// Generate a key pair and write `dir/mithridate.key` and `dir/mithridate.pub`.
/// Refuses to overwrite an existing private key.
pub fn write_keypair(dir: &Path) -> Result<KeyPaths> {
    write_keypair_with(dir, KEY_STEM, false)
}

/// Like [`write_keypair`] with a chosen file stem, optionally overwriting.
///
/// The private key file is created with mode 0600 before any byte is
/// written (never chmod-ed afterwards, which would leave a window where the
/// key is readable), then renamed into place.
pub fn write_keypair_with(dir: &Path, stem: &str, overwrite: bool) -> Result<KeyPaths> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let key = generate_keypair();
    let paths = KeyPaths {
        private: dir.join(format!("{stem}.key")),
        public: dir.join(format!("{stem}.pub")),
    };
    let sk = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::Crypto(format!("encoding private key: {e}")))?;
    let pk = public_pem(&key.verifying_key())?;
    write_mode(&paths.private, sk.as_bytes(), 0o600, overwrite)?;
    write_mode(&paths.public, pk.as_bytes(), 0o644, overwrite)?;
    Ok(paths)
}

/// SPKI PEM of a public key.
pub fn public_pem(key: &VerifyingKey) -> Result<String> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| Error::Crypto(format!("encoding public key: {e}")))
}

fn write_mode(path: &Path, bytes: &[u8], mode: u32, overwrite: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut b = tempfile::Builder::new();
    b.prefix(".key.").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut tmp = b.tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    if overwrite {
        tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    } else {
        tmp.persist_noclobber(path)
            .map_err(|e| Error::io(path, e.error))?;
    }
    Ok(())
}

/// Which half of a key pair a command needs, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Private,
    Public,
}

impl Want {
    fn label(self) -> &'static str {
        match self {
            Want::Private => "PRIVATE KEY",
            Want::Public => "PUBLIC KEY",
        }
    }
}

/// Why `text` is not the Ed25519 key wanted: names the key type actually
/// found (RSA, ECDSA P-256, X25519...), a public key given where a private
/// one is expected and the other way round, SEC1 / PKCS#1 / certificate PEMs,
/// so a key mix-up is told apart from a corrupt file.
fn diagnose(text: &str, want: Want, err: impl std::fmt::Display) -> String {
    use ed25519_dalek::pkcs8::spki::der::{pem, Decode};
    use ed25519_dalek::pkcs8::spki::SubjectPublicKeyInfoRef;
    use ed25519_dalek::pkcs8::PrivateKeyInfo;
    let expected = match want {
        Want::Private => "an Ed25519 private key (PKCS#8 PEM, as `mithridate keygen` writes)",
        Want::Public => "an Ed25519 public key (SPKI PEM, as `mithridate keygen` writes)",
    };
    let Ok((label, der)) = pem::decode_vec(text.as_bytes()) else {
        return format!("not PEM: {err}; expected {expected}");
    };
    let found = match label {
        "PRIVATE KEY" => PrivateKeyInfo::from_der(&der)
            .map(|k| {
                let params = k.algorithm.parameters_oid().ok();
                format!("{} private key", algorithm_name(k.algorithm.oid, params))
            })
            .unwrap_or_else(|_| "a malformed PKCS#8 private key".into()),
        "PUBLIC KEY" => SubjectPublicKeyInfoRef::from_der(&der)
            .map(|k| {
                let params = k.algorithm.parameters_oid().ok();
                format!("{} public key", algorithm_name(k.algorithm.oid, params))
            })
            .unwrap_or_else(|_| "a malformed SPKI public key".into()),
        "EC PRIVATE KEY" => "an EC private key in SEC1 form".into(),
        "RSA PRIVATE KEY" => "an RSA private key in PKCS#1 form".into(),
        "RSA PUBLIC KEY" => "an RSA public key in PKCS#1 form".into(),
        "ENCRYPTED PRIVATE KEY" => "an encrypted PKCS#8 private key".into(),
        "CERTIFICATE" => "an X.509 certificate".into(),
        other => format!("a PEM block labelled `{other}`"),
    };
    let wrong_half = match (want, label) {
        (Want::Private, "PUBLIC KEY") => " (a public key where the private key is needed)",
        (Want::Public, "PRIVATE KEY") => {
            " (a private key where a public key is needed: never hand out the private key)"
        }
        _ => "",
    };
    if label == want.label() && found.starts_with("an Ed25519 ") {
        // The right type but unreadable: say what the parser saw.
        return format!("malformed {found}: {err}");
    }
    format!("found {found}{wrong_half}; expected {expected}")
}

/// A readable name of a key algorithm OID (and EC curve parameter).
fn algorithm_name(
    oid: ed25519_dalek::pkcs8::ObjectIdentifier,
    params: Option<ed25519_dalek::pkcs8::ObjectIdentifier>,
) -> String {
    let name = match oid.to_string().as_str() {
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        "1.3.101.110" => "X25519",
        "1.3.101.111" => "X448",
        "1.2.840.113549.1.1.1" => "RSA",
        "1.2.840.113549.1.1.10" => "RSA-PSS",
        "1.2.840.10040.4.1" => "DSA",
        "1.2.840.10045.2.1" => {
            let curve = match params.map(|p| p.to_string()).as_deref() {
                Some("1.2.840.10045.3.1.7") => "P-256",
                Some("1.3.132.0.34") => "P-384",
                Some("1.3.132.0.35") => "P-521",
                Some("1.3.132.0.10") => "secp256k1",
                _ => "unknown curve",
            };
            return format!("an ECDSA {curve}");
        }
        other => return format!("an unsupported (OID {other})"),
    };
    // Every name above is read with a vowel sound ("an RSA") but DSA.
    let article = if name == "DSA" { "a" } else { "an" };
    format!("{article} {name}")
}

/// Parse a PKCS#8 PEM Ed25519 private key. Never panics on any bytes; a key
/// of another type is named in the error.
pub fn parse_private_pem(bytes: &[u8]) -> Result<SigningKey> {
    let s = std::str::from_utf8(bytes)
        .map_err(|_| Error::Crypto("private key is not UTF-8 PEM".into()))?;
    SigningKey::from_pkcs8_pem(s.trim())
        .map_err(|e| Error::Crypto(diagnose(s.trim(), Want::Private, e)))
}

/// Parse an SPKI PEM Ed25519 public key. Never panics on any bytes; a key of
/// another type is named in the error.
pub fn parse_public_pem(bytes: &[u8]) -> Result<VerifyingKey> {
    let s = std::str::from_utf8(bytes)
        .map_err(|_| Error::Crypto("public key is not UTF-8 PEM".into()))?;
    VerifyingKey::from_public_key_pem(s.trim())
        .map_err(|e| Error::Crypto(diagnose(s.trim(), Want::Public, e)))
}

/// Read a private key file.
pub fn load_private_key(path: &Path) -> Result<SigningKey> {
    let b = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_private_pem(&b).map_err(|e| with_path(path, e))
}

/// Read a public key file.
pub fn load_public_key(path: &Path) -> Result<VerifyingKey> {
    let b = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_public_pem(&b).map_err(|e| with_path(path, e))
}

/// Prefix a crypto error's message with the file it came from (once).
fn with_path(path: &Path, e: Error) -> Error {
    match e {
        Error::Crypto(m) => Error::Crypto(format!("{}: {m}", path.display())),
        other => other,
    }
}

/// Key id written in DSSE signatures: hex SHA-256 of the raw 32-byte public
/// key. A hint for picking the key, never trusted on its own.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keygen_round_trips_and_protects_the_private_key() {
        let d = tempfile::tempdir().unwrap();
        let p = write_keypair(d.path()).unwrap();
        let sk = load_private_key(&p.private).unwrap();
        let pk = load_public_key(&p.public).unwrap();
        assert_eq!(sk.verifying_key(), pk);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p.private).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(
            write_keypair(d.path()).is_err(),
            "overwrote an existing key"
        );
        assert!(parse_public_pem(std::fs::read(&p.private).unwrap().as_slice()).is_err());
    }

    proptest! {
        #[test]
        fn pem_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_private_pem(&bytes);
            let _ = parse_public_pem(&bytes);
        }

        #[test]
        fn pem_parsers_never_panic_on_pem_like_text(body in "[A-Za-z0-9+/=\n]{0,120}") {
            let s = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
            let _ = parse_private_pem(s.as_bytes());
            let p = format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n");
            let _ = parse_public_pem(p.as_bytes());
        }
    }
}
