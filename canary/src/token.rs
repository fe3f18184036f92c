//! Honeypot tokens: unique strings minted from a secret key with HMAC-SHA256.
//!
//! A token is a fixed, plausible prefix (`AKIA` for a fake AWS access key id,
//! `sk_live_` for an API key...) followed by 16 base32 characters taken from
//! `HMAC-SHA256(key, domain || kind || id)`. Whoever holds the key can mint
//! the token of any honeypot again; whoever holds only the registry cannot,
//! because the registry keeps a keyed digest of each token, never the token.
//!
//! Why a fixed prefix: a scanner recognises tokens by their shape (prefix,
//! then 16 characters of the base32 alphabet) and confirms each candidate by
//! its digest, so the scan costs the same with ten tokens or ten million and
//! needs no secret.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use mithridate_core::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// Length of the random body of every token, in base32 characters (80 bits).
pub const BODY_LEN: usize = 16;

/// The RFC 4648 base32 alphabet: upper-case letters and 2..=7, so a token
/// survives JSON and CSV quoting unchanged and never needs escaping.
pub const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Domain separation for token minting, so the same key used elsewhere never
/// yields a token.
const MINT_DOMAIN: &[u8] = b"mithridate/honeypot-token/v1\0";

/// What a honeypot pretends to be. Each kind has its own token prefix and its
/// own bait (see [`crate::honeypot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HoneypotKind {
    /// A fake AWS access key pair; the token is the 20-character key id.
    AwsKey,
    /// A fake payment-API secret key.
    ApiKey,
    /// A fake "system prompt" instruction carrying an internal reference code.
    SystemPrompt,
    /// A fake customer record (name, email, phone, national id) with a customer id.
    Pii,
}

impl HoneypotKind {
    /// Every kind, in a fixed order.
    pub const ALL: [HoneypotKind; 4] = [
        HoneypotKind::AwsKey,
        HoneypotKind::ApiKey,
        HoneypotKind::SystemPrompt,
        HoneypotKind::Pii,
    ];

    /// The fixed prefix of this kind's tokens.
    pub fn prefix(self) -> &'static str {
        match self {
            HoneypotKind::AwsKey => "AKIA",
            HoneypotKind::ApiKey => "sk_live_",
            HoneypotKind::SystemPrompt => "SYSREF-",
            HoneypotKind::Pii => "CUST-",
        }
    }

    /// Full token length in bytes (prefix and body).
    pub fn token_len(self) -> usize {
        self.prefix().len() + BODY_LEN
    }

    fn tag(self) -> u8 {
        match self {
            HoneypotKind::AwsKey => 1,
            HoneypotKind::ApiKey => 2,
            HoneypotKind::SystemPrompt => 3,
            HoneypotKind::Pii => 4,
        }
    }

    /// Parse the kebab-case name (`aws-key`, `api-key`, `system-prompt`, `pii`).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "aws-key" => Ok(HoneypotKind::AwsKey),
            "api-key" => Ok(HoneypotKind::ApiKey),
            "system-prompt" => Ok(HoneypotKind::SystemPrompt),
            "pii" => Ok(HoneypotKind::Pii),
            other => Err(Error::param(
                "kind",
                format!("unknown honeypot kind `{other}` (expected aws-key, api-key, system-prompt or pii)"),
            )),
        }
    }
}

impl fmt::Display for HoneypotKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HoneypotKind::AwsKey => "aws-key",
            HoneypotKind::ApiKey => "api-key",
            HoneypotKind::SystemPrompt => "system-prompt",
            HoneypotKind::Pii => "pii",
        })
    }
}

/// The secret that mints tokens and canary sets. 32 bytes; keep it out of the
/// data paths (the registry is safe to store beside the data, the key is not).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key itself, only its public fingerprint.
        write!(f, "SecretKey({})", self.fingerprint())
    }
}

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }

    /// A key derived from a seed. Reproducible, so **not secret** unless the
    /// seed is: for tests, demos and pipelines whose seed is itself secret.
    pub fn from_seed(seed: u64) -> Self {
        use rand::RngCore;
        let mut k = [0u8; 32];
        mithridate_core::rng::seeded(mithridate_core::rng::derive_seed(seed, "canary-secret-key"))
            .fill_bytes(&mut k);
        Self(k)
    }

    /// The key from raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parse 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(s: &str) -> Result<Self> {
        let raw = hex::decode(s.trim())
            .map_err(|e| Error::Crypto(format!("secret key is not hex: {e}")))?;
        let arr: [u8; 32] = raw.try_into().map_err(|v: Vec<u8>| {
            Error::Crypto(format!("secret key has {} bytes, expected 32", v.len()))
        })?;
        Ok(Self(arr))
    }

    /// The key as 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Read a key file (64 hex digits).
    pub fn read(path: &Path) -> Result<Self> {
        let s = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_hex(&s).map_err(|e| Error::Crypto(format!("{}: {e}", path.display())))
    }

    /// Write the key to `path` atomically. The temporary file is created with
    /// owner-only permissions, and the rename keeps them.
    pub fn write(&self, path: &Path) -> Result<()> {
        mithridate_core::io::atomic::write_bytes_atomic(
            path,
            format!("{}\n", self.to_hex()).as_bytes(),
        )
    }

    /// HMAC-SHA256 of `parts` (concatenated) under this key.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        hmac(&self.0, parts)
    }

    /// A public fingerprint (16 hex digits) that names the key in registries
    /// and reports without revealing it.
    pub fn fingerprint(&self) -> String {
        hex::encode(&self.mac(&[b"mithridate/key-id/v1"])[..8])
    }

    /// A 64-bit seed derived from the key for a named purpose, so canary sets
    /// and exposure secrets are as secret as the key.
    pub fn derive_seed(&self, purpose: &str) -> u64 {
        let m = self.mac(&[b"mithridate/seed/v1\0", purpose.as_bytes()]);
        u64::from_le_bytes([m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7]])
    }

    /// Mint the token of honeypot `id` of `kind`.
    pub fn mint(&self, kind: HoneypotKind, id: u64) -> String {
        let m = self.mac(&[MINT_DOMAIN, &[kind.tag()], &id.to_be_bytes()]);
        let mut t = String::with_capacity(kind.token_len());
        t.push_str(kind.prefix());
        t.push_str(&base32_body(&m[..10]));
        t
    }

    /// `n` bytes of deterministic filler for honeypot bait (fake secret
    /// halves, phone digits...), derived from the key, `label` and `id`.
    pub fn filler(&self, label: &str, id: u64) -> [u8; 32] {
        self.mac(&[
            b"mithridate/filler/v1\0",
            label.as_bytes(),
            &id.to_be_bytes(),
        ])
    }
}

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match <HmacSha256 as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable_hmac(),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

#[cold]
fn unreachable_hmac() -> HmacSha256 {
    // `new_from_slice` only fails for fixed-size-key MACs; HMAC has none.
    // Fall back to an empty-key HMAC rather than panicking.
    <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default())
}

/// Encode the first 80 bits of `bytes` (10 bytes) as 16 base32 characters.
fn base32_body(bytes: &[u8]) -> String {
    let mut acc: u128 = 0;
    for &b in bytes.iter().take(10) {
        acc = (acc << 8) | u128::from(b);
    }
    (0..BODY_LEN)
        .rev()
        .map(|i| char::from(ALPHABET[((acc >> (5 * i)) & 31) as usize]))
        .collect()
}

/// True when `b` is in the token body alphabet.
#[inline]
pub fn is_body_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_their_kind_shape_and_are_reproducible() {
        let k = SecretKey::from_seed(1);
        for kind in HoneypotKind::ALL {
            let t = k.mint(kind, 7);
            assert_eq!(t.len(), kind.token_len());
            assert!(t.starts_with(kind.prefix()));
            assert!(
                t.as_bytes()[kind.prefix().len()..]
                    .iter()
                    .all(|&b| is_body_byte(b)),
                "{t}"
            );
            assert_eq!(t, k.mint(kind, 7));
            assert_ne!(t, SecretKey::from_seed(2).mint(kind, 7));
            assert_eq!(HoneypotKind::parse(&kind.to_string()).unwrap(), kind);
        }
        assert_eq!(
            k.mint(HoneypotKind::AwsKey, 0).len(),
            20,
            "AWS key ids are 20 characters"
        );
    }

    #[test]
    fn key_hex_round_trips_and_rejects_bad_input() {
        let k = SecretKey::generate();
        assert_eq!(SecretKey::from_hex(&k.to_hex()).unwrap(), k);
        assert!(SecretKey::from_hex("zz").is_err());
        assert!(SecretKey::from_hex("abcd").is_err());
        assert!(!format!("{k:?}").contains(&k.to_hex()));
    }
}
