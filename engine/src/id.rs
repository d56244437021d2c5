//! Content identifiers: every object in a repository is named by the BLAKE3 digest of its bytes.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A 32-byte BLAKE3 digest naming a blob, pack, index file or snapshot.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// Length of an id in bytes.
    pub const LEN: usize = 32;

    /// The plain BLAKE3 digest of `bytes`: the name of a pack (and, in unencrypted
    /// repositories, of every object; see [`IdHasher`]).
    pub fn of(bytes: &[u8]) -> Id {
        Id(*blake3::hash(bytes).as_bytes())
    }

    /// The id as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, for display.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    /// Reads an id from exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Id> {
        bytes.try_into().ok().map(Id)
    }

    /// A fresh random id (used for repository ids).
    pub fn random() -> Id {
        Id(rand::random())
    }
}

/// Computes the ids of blobs, index files and snapshots: plain BLAKE3 in an unencrypted
/// repository, BLAKE3 keyed with the repository's secret id key in an encrypted one, so that an
/// id reveals nothing about contents to whoever lacks the key.
#[derive(Clone, Default)]
pub struct IdHasher {
    key: Option<std::sync::Arc<crate::crypto::SecretKey>>,
}

impl fmt::Debug for IdHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.key.is_some() {
            "IdHasher(keyed)"
        } else {
            "IdHasher(plain)"
        })
    }
}

impl IdHasher {
    /// Plain BLAKE3 (format version 1).
    pub fn plain() -> IdHasher {
        IdHasher { key: None }
    }

    /// BLAKE3 keyed with `key` (format version 2).
    pub fn keyed(key: &crate::crypto::SecretKey) -> IdHasher {
        IdHasher {
            key: Some(std::sync::Arc::new(key.clone())),
        }
    }

    /// The id of `bytes`.
    pub fn id(&self, bytes: &[u8]) -> Id {
        match &self.key {
            None => Id::of(bytes),
            Some(k) => Id(*blake3::keyed_hash(k.as_bytes(), bytes).as_bytes()),
        }
    }

    /// Whether ids are keyed.
    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl FromStr for Id {
    type Err = Error;

    fn from_str(s: &str) -> Result<Id> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| Error::InvalidInput(format!("{s:?} is not a 64-digit hex id")))?;
        Ok(Id(out))
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    /// Ids in stored objects are exactly 64 lowercase hex digits (format-spec/README.md):
    /// one spelling per id.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Id, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(serde::de::Error::custom(format!(
                "{s:?} is not in lowercase hex"
            )));
        }
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = Id::of(b"cairn");
        assert_eq!(id.to_hex().parse::<Id>().unwrap(), id);
        assert_eq!(id.short().len(), 8);
        assert!(id.to_hex().starts_with(&id.short()));
        assert!("xyz".parse::<Id>().is_err());
    }

    #[test]
    fn keyed_ids_differ_by_key() {
        let k1 = crate::crypto::SecretKey::from_bytes([1; 32]);
        let k2 = crate::crypto::SecretKey::from_bytes([2; 32]);
        let a = IdHasher::keyed(&k1).id(b"page");
        assert_eq!(a, IdHasher::keyed(&k1).id(b"page"));
        assert_ne!(a, IdHasher::keyed(&k2).id(b"page"));
        assert_ne!(a, IdHasher::plain().id(b"page"));
        assert_eq!(IdHasher::plain().id(b"page"), Id::of(b"page"));
        // Test vector: BLAKE3 keyed with 32 bytes of 0x01, of "page".
        assert_eq!(
            a.to_hex(),
            blake3::keyed_hash(&[1; 32], b"page").to_hex().as_str()
        );
    }
}
