//! The honeypot registry: which honeypots exist, where and when each was
//! planted, and the keyed digest that recognises its token.
//!
//! The registry never holds a token in clear. Each entry keeps
//! `HMAC-SHA256(digest_key, token)`, where `digest_key` is a random per-registry
//! key stored in the registry itself: enough for a scanner to confirm that a
//! candidate string found in the wild *is* a planted token, useless for
//! producing one (a token has 80 unguessable bits minted from the secret key,
//! which the registry does not contain). So the registry can live beside the
//! data it protects and be handed to whoever runs scans.

use std::collections::HashMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use mithridate_core::{Error, Location, Result};

use crate::token::{hmac, HoneypotKind, SecretKey};

/// The registry file format tag.
pub const REGISTRY_FORMAT: &str = "mithridate-honeypot-registry/v1";

/// A token's recognition digest, `HMAC-SHA256(digest_key, token)`.
///
/// Equality is constant-time ([`subtle`]): a scanner compares the digest of
/// every candidate string it meets, attacker-chosen text included, against
/// the registry's digests, so the comparison must not reveal how many leading
/// bytes matched. (The hash map that holds them hashes with a per-process
/// random SipHash key, which leaks nothing useful either.)
#[derive(Debug, Clone, Copy, Eq)]
pub struct TokenDigest(pub [u8; 32]);

impl std::hash::Hash for TokenDigest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Consistent with `eq`: equal digests have equal bytes.
        self.0.hash(state);
    }
}

impl PartialEq for TokenDigest {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(&other.0).into()
    }
}

/// Where a honeypot was planted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// File the honeypot was written into (a dataset copy or a honeypot file).
    pub path: String,
    /// 1-based line of the planted record, when planted into a line-oriented file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Id of the planted record, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
}

impl Site {
    /// A site in `path` with no line or record id.
    pub fn file(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            line: None,
            record_id: None,
        }
    }
}

/// What a honeypot file looked like when planted, to tell later whether it
/// was read, changed, moved or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Modification time, seconds since the Unix epoch.
    pub mtime_s: i64,
    /// Modification time, nanoseconds within the second.
    pub mtime_ns: u32,
    /// Unix permission bits (0 where the platform has none).
    pub mode: u32,
    /// Inode number (0 where the platform has none): a replaced file has a new one.
    #[serde(default)]
    pub inode: u64,
}

impl FileState {
    /// The state of the file at `path` now.
    pub fn of(path: &Path) -> Result<Self> {
        use sha2::{Digest, Sha256};
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (mtime_s, mtime_ns) = split_time(meta.modified().ok());
        Ok(Self {
            size: meta.len(),
            sha256: hex::encode(Sha256::digest(&bytes)),
            mtime_s,
            mtime_ns,
            mode: mode_of(&meta),
            inode: inode_of(&meta),
        })
    }
}

/// Seconds and nanoseconds of `t` relative to the Unix epoch (negative before it).
pub(crate) fn split_time(t: Option<SystemTime>) -> (i64, u32) {
    match t {
        Some(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            ),
            Err(e) => (
                -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
                0,
            ),
        },
        None => (0, 0),
    }
}

#[cfg(unix)]
fn mode_of(m: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o7777
}
#[cfg(not(unix))]
fn mode_of(_: &std::fs::Metadata) -> u32 {
    0
}
#[cfg(unix)]
fn inode_of(m: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    m.ino()
}
#[cfg(not(unix))]
fn inode_of(_: &std::fs::Metadata) -> u64 {
    0
}

/// One planted honeypot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Honeypot {
    /// Registry-unique id; with the secret key it re-mints the token.
    pub id: u64,
    /// What it pretends to be.
    pub kind: HoneypotKind,
    /// `HMAC-SHA256(digest_key, token)`, hex.
    pub digest: String,
    /// When it was planted (RFC 3339, UTC).
    pub planted_at: String,
    /// Where it was planted.
    pub site: Site,
    /// For honeypot files: the file as planted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileState>,
    /// Free-form note (campaign, collection path, owner).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// The registry of every honeypot planted under one secret key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    /// Always [`REGISTRY_FORMAT`].
    pub format: String,
    /// Fingerprint of the secret key that minted the tokens.
    pub key_fingerprint: String,
    /// Random key of the recognition digests, hex. Public by design.
    pub digest_key: String,
    /// When the registry was created (RFC 3339).
    pub created: String,
    /// Next honeypot id to try.
    pub next_id: u64,
    /// The honeypots.
    pub honeypots: Vec<Honeypot>,
}

/// Now as RFC 3339 with seconds, UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

impl Registry {
    /// An empty registry for tokens minted by `key`.
    pub fn new(key: &SecretKey) -> Self {
        use rand::RngCore;
        let mut dk = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut dk);
        Self {
            format: REGISTRY_FORMAT.into(),
            key_fingerprint: key.fingerprint(),
            digest_key: hex::encode(dk),
            created: now_rfc3339(),
            next_id: 0,
            honeypots: Vec::new(),
        }
    }

    /// Read a registry file. Errors name the file and what is wrong.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let r: Registry = serde_json::from_slice(&bytes).map_err(|e| {
            Error::parse(
                Location::file(path).at_line(e.line() as u64),
                format!("not a honeypot registry: {e}"),
            )
        })?;
        if r.format != REGISTRY_FORMAT {
            return Err(Error::parse(
                Location::file(path).at_field("format"),
                format!("format `{}` is not `{REGISTRY_FORMAT}`", r.format),
            ));
        }
        r.digest_key_bytes().map_err(|e| {
            Error::parse(Location::file(path).at_field("digest_key"), e.to_string())
        })?;
        for (i, h) in r.honeypots.iter().enumerate() {
            if hex::decode(&h.digest).map(|d| d.len()) != Ok(32) {
                return Err(Error::parse(
                    Location::file(path).at_field(format!("honeypots[{i}].digest")),
                    "not 64 hex digits",
                ));
            }
        }
        Ok(r)
    }

    /// Read `path` if it exists, else start a new registry for `key`.
    pub fn load_or_new(path: &Path, key: &SecretKey) -> Result<Self> {
        if path.exists() {
            let r = Self::load(path)?;
            r.check_key(key)?;
            Ok(r)
        } else {
            Ok(Self::new(key))
        }
    }

    /// Write the registry atomically as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| Error::data(format!("registry: {e}")))?;
        mithridate_core::io::atomic::write_bytes_atomic(path, &bytes)
    }

    /// An error unless `key` minted this registry's tokens. The fingerprints
    /// compare in constant time: one of them is derived from the secret key.
    pub fn check_key(&self, key: &SecretKey) -> Result<()> {
        use subtle::ConstantTimeEq;
        let same: bool = key
            .fingerprint()
            .as_bytes()
            .ct_eq(self.key_fingerprint.as_bytes())
            .into();
        if same {
            Ok(())
        } else {
            Err(Error::Crypto(format!(
                "the secret key (fingerprint {}) did not mint this registry (fingerprint {})",
                key.fingerprint(),
                self.key_fingerprint
            )))
        }
    }

    /// The digest key as bytes.
    pub fn digest_key_bytes(&self) -> Result<Vec<u8>> {
        let k = hex::decode(&self.digest_key)
            .map_err(|e| Error::Crypto(format!("digest key is not hex: {e}")))?;
        if k.len() < 16 {
            return Err(Error::Crypto("digest key is shorter than 16 bytes".into()));
        }
        Ok(k)
    }

    /// The recognition digest of `token` under this registry.
    pub fn digest_of(&self, token: &str) -> Result<[u8; 32]> {
        Ok(hmac(&self.digest_key_bytes()?, &[token.as_bytes()]))
    }

    /// Mint a new honeypot of `kind` planted at `site`, record it and return
    /// its token. The token differs from every token already in the registry:
    /// in the (2^-80) event that a minted token repeats one, the next id is
    /// used instead.
    pub fn mint(
        &mut self,
        key: &SecretKey,
        kind: HoneypotKind,
        site: Site,
    ) -> Result<(String, &Honeypot)> {
        self.check_key(key)?;
        let dk = self.digest_key_bytes()?;
        let taken: std::collections::HashSet<&str> =
            self.honeypots.iter().map(|h| h.digest.as_str()).collect();
        let (id, token, digest) = loop {
            let id = self.next_id;
            self.next_id = self
                .next_id
                .checked_add(1)
                .ok_or_else(|| Error::data("honeypot ids exhausted"))?;
            let token = key.mint(kind, id);
            let digest = hex::encode(hmac(&dk, &[token.as_bytes()]));
            if !taken.contains(digest.as_str()) {
                break (id, token, digest);
            }
        };
        self.honeypots.push(Honeypot {
            id,
            kind,
            digest,
            planted_at: now_rfc3339(),
            site,
            file: None,
            note: String::new(),
        });
        let h = self
            .honeypots
            .last()
            .ok_or_else(|| Error::data("internal: registry empty after push"))?;
        Ok((token, h))
    }

    /// Re-mint the token of every honeypot (needs the secret key).
    pub fn tokens(&self, key: &SecretKey) -> Result<Vec<(u64, String)>> {
        self.check_key(key)?;
        Ok(self
            .honeypots
            .iter()
            .map(|h| (h.id, key.mint(h.kind, h.id)))
            .collect())
    }

    /// Index from digest to honeypot position, for recognisers. Keys compare
    /// in constant time (see [`TokenDigest`]).
    pub fn digest_index(&self) -> HashMap<TokenDigest, usize> {
        let mut m = HashMap::with_capacity(self.honeypots.len());
        for (i, h) in self.honeypots.iter().enumerate() {
            if let Ok(d) = hex::decode(&h.digest) {
                if let Ok(arr) = <[u8; 32]>::try_from(d.as_slice()) {
                    m.entry(TokenDigest(arr)).or_insert(i);
                }
            }
        }
        m
    }

    /// The honeypot with `id`.
    pub fn get(&self, id: u64) -> Option<&Honeypot> {
        self.honeypots.iter().find(|h| h.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_round_trips_and_hides_tokens() {
        let key = SecretKey::from_seed(3);
        let mut r = Registry::new(&key);
        let (t, h) = r
            .mint(&key, HoneypotKind::ApiKey, Site::file("data/x.jsonl"))
            .unwrap();
        let (t, id) = (t, h.id);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("reg.json");
        r.save(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains(&t), "token in clear in the registry");
        assert!(!text.contains(&t[HoneypotKind::ApiKey.prefix().len()..]));
        let back = Registry::load(&p).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.tokens(&key).unwrap(), vec![(id, t)]);
        assert!(back.check_key(&SecretKey::from_seed(4)).is_err());
    }

    #[test]
    fn token_digests_compare_by_every_byte() {
        let a = TokenDigest([7u8; 32]);
        let mut last = [7u8; 32];
        last[31] = 8;
        let mut first = [7u8; 32];
        first[0] = 8;
        assert_eq!(a, TokenDigest([7u8; 32]));
        assert_ne!(a, TokenDigest(last));
        assert_ne!(a, TokenDigest(first));
        let key = SecretKey::from_seed(3);
        let mut reg = Registry::new(&key);
        let (token, h) = reg
            .mint(&key, HoneypotKind::ApiKey, Site::file("x"))
            .unwrap();
        let id = h.id;
        let index = reg.digest_index();
        let d = TokenDigest(reg.digest_of(&token).unwrap());
        assert_eq!(index.get(&d).map(|&i| reg.honeypots[i].id), Some(id));
        assert!(reg.check_key(&key).is_ok());
        assert!(reg.check_key(&SecretKey::from_seed(4)).is_err());
    }

    #[test]
    fn load_names_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("reg.json");
        std::fs::write(&p, "{\"format\": 3}").unwrap();
        let e = Registry::load(&p).unwrap_err().to_string();
        assert!(e.contains("reg.json"), "{e}");
        let mut r = Registry::new(&SecretKey::from_seed(1));
        r.digest_key = "nothex".into();
        r.save(&p).unwrap();
        let e = Registry::load(&p).unwrap_err().to_string();
        assert!(e.contains("digest_key"), "{e}");
    }
}
