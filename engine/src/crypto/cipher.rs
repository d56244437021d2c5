//! The two AEADs a repository may use, behind one type, and the 256-bit secrets they take.
//!
//! Both come from `ring` (BoringSSL's implementations, already here for TLS); nothing here
//! implements a cipher. `init` picks AES-256-GCM by default: 6 to 7 GB/s per core here against
//! 1.5 for ChaCha20-Poly1305 (and 1.1 and 0.8 for the RustCrypto crates), figures in
//! `benches/RESULTS.md`; ChaCha20-Poly1305 is there for CPUs without AES instructions.

use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Bytes of a nonce (both ciphers use 96-bit nonces).
pub const NONCE_LEN: usize = 12;
/// Bytes of an authentication tag.
pub const TAG_LEN: usize = 16;

/// An authenticated cipher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cipher {
    /// AES-256 in Galois/Counter Mode.
    Aes256Gcm,
    /// ChaCha20 with Poly1305 (RFC 8439).
    ChaCha20Poly1305,
}

impl Cipher {
    /// The byte stored in envelopes, blob entries and key files.
    pub fn code(self) -> u8 {
        match self {
            Cipher::Aes256Gcm => 1,
            Cipher::ChaCha20Poly1305 => 2,
        }
    }

    /// Parses the stored byte.
    pub fn from_code(b: u8) -> Option<Cipher> {
        match b {
            1 => Some(Cipher::Aes256Gcm),
            2 => Some(Cipher::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// The name in the config and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::Aes256Gcm => "aes-256-gcm",
            Cipher::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    /// Parses a name.
    pub fn from_name(s: &str) -> Option<Cipher> {
        [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305]
            .into_iter()
            .find(|c| c.name() == s)
    }
}

/// A 256-bit secret, wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// A fresh key from the operating system's generator.
    pub fn random() -> SecretKey {
        SecretKey(rand::random())
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> SecretKey {
        SecretKey(bytes)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key derived from this one for one purpose (BLAKE3's key derivation mode), so that
    /// one secret never keys two different uses.
    pub fn derive(&self, context: &str) -> SecretKey {
        SecretKey(blake3::derive_key(context, &self.0))
    }

    /// Lowercase hex, for the sealed config body.
    pub(crate) fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub(crate) fn from_hex(s: &str) -> Option<SecretKey> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(SecretKey(out))
    }
}

/// A key ready to seal and open with its cipher (the key schedule computed once).
pub(crate) struct Aead {
    cipher: Cipher,
    key: LessSafeKey,
}

impl std::fmt::Debug for Aead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Aead({})", self.cipher.name())
    }
}

/// The authentication tag did not verify: wrong key, or bytes changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotAuthentic;

impl Aead {
    pub(crate) fn new(cipher: Cipher, key: &SecretKey) -> Aead {
        let alg = match cipher {
            Cipher::Aes256Gcm => &AES_256_GCM,
            Cipher::ChaCha20Poly1305 => &CHACHA20_POLY1305,
        };
        // Both algorithms take 32-byte keys, which is all `UnboundKey::new` checks.
        let key = match UnboundKey::new(alg, key.as_bytes()) {
            Ok(k) => LessSafeKey::new(k),
            Err(_) => unreachable_seal(),
        };
        Aead { cipher, key }
    }

    /// Encrypts `buf[from..]` in place and appends the tag; `buf[..from]` is left as is.
    pub(crate) fn seal_tail(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
        from: usize,
    ) {
        let tag = self.key.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            &mut buf[from..],
        );
        // Sealing fails only for messages longer than the cipher's limit (64 GiB), far above
        // the largest object cairn writes.
        match tag {
            Ok(tag) => buf.extend_from_slice(tag.as_ref()),
            Err(_) => unreachable_seal(),
        }
    }

    /// Decrypts `sealed` (ciphertext followed by the tag) and returns the plaintext.
    pub(crate) fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, NotAuthentic> {
        if sealed.len() < TAG_LEN {
            return Err(NotAuthentic);
        }
        let mut buf = sealed.to_vec();
        let n = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| NotAuthentic)?
            .len();
        buf.truncate(n);
        Ok(buf)
    }
}

#[cold]
fn unreachable_seal() -> ! {
    panic!("the AEAD refused a 32-byte key or an object under 64 GiB")
}

/// A fresh random nonce.
pub(crate) fn random_nonce() -> [u8; NONCE_LEN] {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        for cipher in [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305] {
            assert_eq!(Cipher::from_code(cipher.code()), Some(cipher));
            assert_eq!(Cipher::from_name(cipher.name()), Some(cipher));
            let key = SecretKey::random();
            let aead = Aead::new(cipher, &key);
            let nonce = random_nonce();
            let mut buf = b"head".to_vec();
            buf.extend_from_slice(b"secret rows");
            aead.seal_tail(&nonce, b"aad", &mut buf, 4);
            assert_eq!(&buf[..4], b"head");
            assert_eq!(buf.len(), 4 + 11 + TAG_LEN);
            assert_eq!(
                aead.open(&nonce, b"aad", &buf[4..]).unwrap(),
                b"secret rows"
            );
            assert!(aead.open(&nonce, b"aaD", &buf[4..]).is_err());
            let mut bad = buf.clone();
            bad[6] ^= 1;
            assert!(aead.open(&nonce, b"aad", &bad[4..]).is_err());
            let other = Aead::new(cipher, &SecretKey::random());
            assert!(other.open(&nonce, b"aad", &buf[4..]).is_err());
            assert!(aead.open(&nonce, b"aad", &buf[..3]).is_err());
        }
    }
}
