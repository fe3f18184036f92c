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

/// Parse a PKCS#8 PEM Ed25519 private key. Never panics on any bytes.
pub fn parse_private_pem(bytes: &[u8]) -> Result<SigningKey> {
    let s = std::str::from_utf8(bytes)
        .map_err(|_| Error::Crypto("private key is not UTF-8 PEM".into()))?;
    SigningKey::from_pkcs8_pem(s.trim())
        .map_err(|e| Error::Crypto(format!("not a PKCS#8 PEM Ed25519 private key: {e}")))
}

/// Parse an SPKI PEM Ed25519 public key. Never panics on any bytes.
pub fn parse_public_pem(bytes: &[u8]) -> Result<VerifyingKey> {
    let s = std::str::from_utf8(bytes)
        .map_err(|_| Error::Crypto("public key is not UTF-8 PEM".into()))?;
    VerifyingKey::from_public_key_pem(s.trim())
        .map_err(|e| Error::Crypto(format!("not an SPKI PEM Ed25519 public key: {e}")))
}

/// Read a private key file.
pub fn load_private_key(path: &Path) -> Result<SigningKey> {
    let b = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_private_pem(&b).map_err(|e| Error::Crypto(format!("{}: {e}", path.display())))
}

/// Read a public key file.
pub fn load_public_key(path: &Path) -> Result<VerifyingKey> {
    let b = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_public_pem(&b).map_err(|e| Error::Crypto(format!("{}: {e}", path.display())))
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
