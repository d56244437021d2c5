//! The secrets of an encrypted repository, and the key files that wrap them for each password.
//!
//! ```text
//! password ──Argon2id(salt, params in the key file)──▶ key-encryption key
//!   key-encryption key opens keys/<key id>            ──▶ master key (32 random bytes)
//!   master key ──derive "cairn 2026-12 config key"──▶ config key, opens the config body
//!   config body holds the key set: id key, chunker key, data keys by epoch
//! ```
//!
//! Every password wraps the same master key, so adding, changing or removing a password
//! rewrites one key file. Data keys live in the config body, so a rotation (a new epoch)
//! rewrites only the config.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::id::Id;

use super::cipher::{Aead, Cipher, NONCE_LEN, SecretKey, TAG_LEN, random_nonce};

/// Key file format version.
pub const KEY_FILE_VERSION: u32 = 1;
/// Derivation context of the config key.
const CONFIG_KEY_CONTEXT: &str = "cairn 2026-12-03 config key";

/// A password, wiped from memory when dropped.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    /// Wraps a password. Refuses an empty one.
    pub fn new(s: String) -> Result<Password> {
        let s = Zeroizing::new(s);
        if s.is_empty() {
            return Err(Error::InvalidInput("the password is empty".into()));
        }
        Ok(Password(s))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Argon2id parameters, stored in each key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about a quarter of a second here (see `benches/RESULTS.md`).
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

impl KdfParams {
    /// The bounds a reader accepts: at least what RFC 9106 calls the second recommended option
    /// for the memory (to refuse a key file weakened by an attacker), at most 4 GiB.
    fn validate(&self) -> std::result::Result<(), String> {
        if !(8 * 1024..=4 * 1024 * 1024).contains(&self.memory_kib)
            || !(1..=64).contains(&self.iterations)
            || !(1..=16).contains(&self.parallelism)
        {
            return Err(format!("key derivation parameters out of range: {self:?}"));
        }
        Ok(())
    }

    fn derive(&self, password: &Password, salt: &[u8]) -> Result<SecretKey> {
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .map_err(|e| Error::InvalidInput(format!("key derivation parameters: {e}")))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(password.bytes(), salt, out.as_mut())
            .map_err(|e| Error::InvalidInput(format!("key derivation failed: {e}")))?;
        Ok(SecretKey::from_bytes(*out))
    }
}

/// A key file: the master key, wrapped under one password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Key file format version (1).
    pub version: u32,
    /// The repository this key opens.
    pub repository: Id,
    /// When the key was added (RFC 3339).
    pub created: String,
    /// The host it was added on, for `key list`.
    pub host: String,
    /// The cipher that wraps the master key.
    pub cipher: String,
    /// Argon2id parameters.
    pub kdf: KdfParams,
    /// Argon2id salt, 32 bytes, hex.
    pub salt: String,
    /// nonce (12) ‖ encrypted master key (32) ‖ tag (16), hex.
    pub wrapped: String,
}

impl KeyFile {
    fn aad(repository: &Id, key_id: &Id) -> Vec<u8> {
        let mut aad = b"cairn key file".to_vec();
        aad.extend_from_slice(&repository.0);
        aad.extend_from_slice(&key_id.0);
        aad
    }

    /// Wraps `master` under `password` as the key `key_id` of `repository`.
    pub(crate) fn wrap(
        repository: Id,
        key_id: &Id,
        cipher: Cipher,
        kdf: KdfParams,
        password: &Password,
        master: &SecretKey,
    ) -> Result<KeyFile> {
        kdf.validate().map_err(Error::InvalidInput)?;
        let salt: [u8; 32] = rand::random();
        let kek = kdf.derive(password, &salt)?;
        let nonce = random_nonce();
        let mut buf = nonce.to_vec();
        buf.extend_from_slice(master.as_bytes());
        Aead::new(cipher, &kek).seal_tail(
            &nonce,
            &Self::aad(&repository, key_id),
            &mut buf,
            NONCE_LEN,
        );
        Ok(KeyFile {
            version: KEY_FILE_VERSION,
            repository,
            created: jiff::Timestamp::now().to_string(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            cipher: cipher.name().into(),
            kdf,
            salt: hex::encode(salt),
            wrapped: hex::encode(buf),
        })
    }

    /// The master key, if `password` is this key's; `Ok(None)` if it is not.
    pub(crate) fn unwrap_master(
        &self,
        key_id: &Id,
        password: &Password,
    ) -> Result<Option<SecretKey>> {
        let cipher = Cipher::from_name(&self.cipher).ok_or_else(|| {
            Error::corrupt(
                format!("key {}", key_id.short()),
                format!("unknown cipher {:?}", self.cipher),
            )
        })?;
        let salt = hex::decode(&self.salt).unwrap_or_default();
        let kek = self.kdf.derive(password, &salt)?;
        let wrapped = hex::decode(&self.wrapped).unwrap_or_default();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&wrapped[..NONCE_LEN]);
        match Aead::new(cipher, &kek).open(
            &nonce,
            &Self::aad(&self.repository, key_id),
            &wrapped[NONCE_LEN..],
        ) {
            Ok(plain) => {
                let plain = Zeroizing::new(plain);
                let mut out = [0u8; 32];
                out.copy_from_slice(&plain);
                Ok(Some(SecretKey::from_bytes(out)))
            }
            Err(_) => Ok(None),
        }
    }

    /// Encodes the key file as stored (compact JSON and a newline).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Decodes and validates a stored key file.
    pub fn decode(bytes: &[u8], key_id: &Id) -> Result<KeyFile> {
        let what = format!("key {}", key_id.short());
        let k: KeyFile =
            crate::wire::decode_versioned_json(bytes, &what, "a key file", KEY_FILE_VERSION)?;
        let bad = |d: String| Err(Error::corrupt(what.clone(), d));
        if Cipher::from_name(&k.cipher).is_none() {
            return bad(format!("unknown cipher {:?}", k.cipher));
        }
        if let Err(d) = k.kdf.validate() {
            return bad(d);
        }
        let hex_len = |s: &str, n: usize| {
            s.len() == 2 * n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !hex_len(&k.salt, 32) {
            return bad("salt is not 64 lowercase hex digits".into());
        }
        if !hex_len(&k.wrapped, NONCE_LEN + 32 + TAG_LEN) {
            return bad(format!(
                "wrapped key is not {} lowercase hex digits",
                2 * (NONCE_LEN + 32 + TAG_LEN)
            ));
        }
        Ok(k)
    }
}

/// The config key: what seals the config body, derived from the master key.
pub(crate) fn config_key(master: &SecretKey) -> SecretKey {
    master.derive(CONFIG_KEY_CONTEXT)
}

/// One data key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochKey {
    /// The epoch, from 1; objects record the epoch whose key sealed them.
    pub epoch: u32,
    /// When it was made (RFC 3339).
    pub created: String,
    /// The key, 64 hex digits.
    pub key: String,
}

/// The secrets kept in the config body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySetRecord {
    /// Keys BLAKE3 for blob and object ids, 64 hex digits.
    pub id_key: String,
    /// Derives the chunker's gear table, 64 hex digits.
    pub chunker_key: String,
    /// Data keys, oldest first.
    pub epochs: Vec<EpochKey>,
    /// The epoch new objects are sealed under.
    pub current: u32,
}

/// The secrets of an open encrypted repository.
#[derive(Debug)]
pub struct Keys {
    cipher: Cipher,
    id_key: SecretKey,
    chunker_key: SecretKey,
    epochs: BTreeMap<u32, Aead>,
    current: u32,
    record: KeySetRecord,
}

impl Keys {
    /// A fresh key set for a new repository: epoch 1.
    pub(crate) fn generate(cipher: Cipher) -> Keys {
        let record = KeySetRecord {
            id_key: SecretKey::random().to_hex(),
            chunker_key: SecretKey::random().to_hex(),
            epochs: vec![EpochKey {
                epoch: 1,
                created: jiff::Timestamp::now().to_string(),
                key: SecretKey::random().to_hex(),
            }],
            current: 1,
        };
        // Freshly generated hex always parses.
        Keys::from_record(cipher, record).unwrap_or_else(|_| unreachable!())
    }

    /// The key set of a config body, validated.
    pub(crate) fn from_record(
        cipher: Cipher,
        record: KeySetRecord,
    ) -> std::result::Result<Keys, String> {
        let key = |s: &str, what: &str| {
            SecretKey::from_hex(s).ok_or_else(|| format!("{what} is not 64 hex digits"))
        };
        let id_key = key(&record.id_key, "the id key")?;
        let chunker_key = key(&record.chunker_key, "the chunker key")?;
        let mut epochs = BTreeMap::new();
        for e in &record.epochs {
            if e.epoch == 0
                || epochs
                    .insert(e.epoch, Aead::new(cipher, &key(&e.key, "a data key")?))
                    .is_some()
            {
                return Err(format!("data key epoch {} is 0 or repeated", e.epoch));
            }
        }
        if !epochs.contains_key(&record.current) {
            return Err(format!("the current epoch {} has no key", record.current));
        }
        Ok(Keys {
            cipher,
            id_key,
            chunker_key,
            epochs,
            current: record.current,
            record,
        })
    }

    /// A key set of fixed, public keys: for fuzz targets and format tests only.
    #[doc(hidden)]
    pub fn fixed(cipher: Cipher) -> Keys {
        let hex = |b: u8| hex::encode([b; 32]);
        let record = KeySetRecord {
            id_key: hex(0x11),
            chunker_key: hex(0x22),
            epochs: vec![EpochKey {
                epoch: 1,
                created: "2026-12-03T00:00:00Z".into(),
                key: hex(0x33),
            }],
            current: 1,
        };
        Keys::from_record(cipher, record).unwrap_or_else(|_| unreachable!())
    }

    /// What the config body stores.
    pub(crate) fn record(&self) -> &KeySetRecord {
        &self.record
    }

    /// The cipher.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// The key that ids are keyed with.
    pub(crate) fn id_key(&self) -> &SecretKey {
        &self.id_key
    }

    /// The secret the chunker's gear table is derived from.
    pub(crate) fn chunker_key(&self) -> &SecretKey {
        &self.chunker_key
    }

    /// The epoch new objects are sealed under, and its key.
    pub(crate) fn current(&self) -> (u32, &Aead) {
        (self.current, &self.epochs[&self.current])
    }

    /// The key of `epoch`, if the repository still has it.
    pub(crate) fn epoch(&self, epoch: u32) -> Option<&Aead> {
        self.epochs.get(&epoch)
    }

    /// Whether this key set and `other` make the same ids and chunks (so blobs can be copied
    /// between their repositories as they are).
    pub fn same_content_keys(&self, other: &Keys) -> bool {
        self.id_key == other.id_key && self.chunker_key == other.chunker_key
    }

    /// The epochs whose keys this set holds, oldest first.
    pub fn epochs(&self) -> Vec<u32> {
        self.epochs.keys().copied().collect()
    }

    /// This set with a new data key, of the next epoch, made current (a rotation's start).
    pub(crate) fn with_new_epoch(&self) -> Keys {
        let mut record = self.record.clone();
        let next = self.epochs.keys().max().copied().unwrap_or(0) + 1;
        record.epochs.push(EpochKey {
            epoch: next,
            created: jiff::Timestamp::now().to_string(),
            key: SecretKey::random().to_hex(),
        });
        record.current = next;
        Keys::from_record(self.cipher, record).unwrap_or_else(|_| unreachable!())
    }

    /// This set with only the current epoch's data key (a rotation's end: the old keys are
    /// destroyed).
    pub(crate) fn only_current(&self) -> Keys {
        let mut record = self.record.clone();
        record.epochs.retain(|e| e.epoch == self.current);
        Keys::from_record(self.cipher, record).unwrap_or_else(|_| unreachable!())
    }

    /// When the current epoch began.
    pub(crate) fn current_created(&self) -> &str {
        self.record
            .epochs
            .iter()
            .find(|e| e.epoch == self.current)
            .map_or("", |e| e.created.as_str())
    }

    /// A new key set for a repository that shares this one's id key and chunker key (copy's
    /// destination), with its own data key.
    pub(crate) fn sharing_content_keys(&self, cipher: Cipher) -> Keys {
        let mut record = Keys::generate(cipher).record;
        record.id_key = self.record.id_key.clone();
        record.chunker_key = self.record.chunker_key.clone();
        Keys::from_record(cipher, record).unwrap_or_else(|_| unreachable!())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> KdfParams {
        KdfParams {
            memory_kib: 8 * 1024,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[test]
    fn key_file_round_trip_and_wrong_password() {
        let repo = Id::random();
        let key_id = Id::random();
        let master = SecretKey::random();
        let pw = Password::new("correct horse".into()).unwrap();
        let kf = KeyFile::wrap(repo, &key_id, Cipher::Aes256Gcm, fast(), &pw, &master).unwrap();
        let back = KeyFile::decode(&kf.encode(), &key_id).unwrap();
        assert_eq!(back, kf);
        assert_eq!(
            back.unwrap_master(&key_id, &pw).unwrap(),
            Some(master.clone())
        );
        let wrong = Password::new("wrong".into()).unwrap();
        assert_eq!(back.unwrap_master(&key_id, &wrong).unwrap(), None);
        // Renamed (another key id) it no longer opens.
        assert_eq!(back.unwrap_master(&Id::random(), &pw).unwrap(), None);
        assert!(Password::new(String::new()).is_err());
    }

    #[test]
    fn weakened_or_malformed_key_files_are_refused() {
        let key_id = Id::random();
        let pw = Password::new("pw".into()).unwrap();
        let kf = KeyFile::wrap(
            Id::random(),
            &key_id,
            Cipher::ChaCha20Poly1305,
            fast(),
            &pw,
            &SecretKey::random(),
        )
        .unwrap();
        let mut weak = kf.clone();
        weak.kdf.memory_kib = 16;
        assert!(KeyFile::decode(&weak.encode(), &key_id).is_err());
        let mut short = kf.clone();
        short.wrapped.pop();
        assert!(KeyFile::decode(&short.encode(), &key_id).is_err());
        let mut upper = kf;
        upper.salt = upper.salt.to_uppercase();
        assert!(
            KeyFile::decode(&upper.encode(), &key_id).is_err()
                || !upper.salt.bytes().any(|b| b.is_ascii_alphabetic())
        );
        assert!(KeyFile::decode(b"{}", &key_id).is_err());
    }

    #[test]
    fn key_sets_round_trip() {
        let k = Keys::generate(Cipher::Aes256Gcm);
        let back = Keys::from_record(Cipher::Aes256Gcm, k.record().clone()).unwrap();
        assert!(back.same_content_keys(&k));
        assert_eq!(back.current().0, 1);
        let copy = k.sharing_content_keys(Cipher::ChaCha20Poly1305);
        assert!(copy.same_content_keys(&k));
        assert_ne!(copy.record().epochs[0].key, k.record().epochs[0].key);
        let mut bad = k.record().clone();
        bad.current = 2;
        assert!(Keys::from_record(Cipher::Aes256Gcm, bad).is_err());
    }
}
