//! The repository config: the one object not named by its digest, saying how the repository is
//! made.
//!
//! Stored at `config` as compact JSON (see `format-spec/config.md`). It is written once by
//! `init`; everything in it but the retention policy is fixed for the life of the repository.

use serde::{Deserialize, Serialize};

use crate::crypto::{
    Aead, Cipher, KeySetRecord, Keys, Sealed, SecretKey, envelope_header, open_object, seal_object,
};
use crate::error::{Error, Result};
use crate::id::Id;

/// The newest repository format version this build writes and reads: 3, blobs in frames,
/// encrypted or not. Versions 1 (unencrypted) and 2 (encrypted) are still read and written
/// (`init --format-version`).
pub const FORMAT_VERSION: u32 = 3;
/// The unencrypted format of one blob per stored unit.
pub const PLAIN_FORMAT_VERSION: u32 = 1;
/// The encrypted format of one blob per stored unit.
pub const SEALED_FORMAT_VERSION: u32 = 2;

/// Default raw size at which a frame of new blobs is closed and compressed (version 3): chosen
/// by the measurement in `benches/SPACE.md`.
pub const DEFAULT_FRAME_SIZE: u32 = 512 * 1024;
/// The chunker of version 1: FastCDC with the crate's default gear table.
pub const CHUNKER_PLAIN: &str = "fastcdc-2020";
/// The chunker of version 2: FastCDC with a gear table derived from the chunker key.
pub const CHUNKER_KEYED: &str = "fastcdc-2020-keyed";

/// Default average chunk size; chosen by the measurement in `benches/CHUNK_SIZE.md`.
pub const DEFAULT_AVG_CHUNK: u32 = 8 * 1024;

/// Default target size of a pack file.
pub const DEFAULT_PACK_SIZE: u32 = 32 * 1024 * 1024;

/// Default zstd level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// The repository config object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version of the repository; readers refuse versions they do not know.
    pub version: u32,
    /// Random id of the repository; names the local cache.
    pub id: Id,
    /// When `init` ran (RFC 3339).
    pub created: String,
    /// How files are cut into chunks.
    pub chunker: ChunkerParams,
    /// How blobs are compressed.
    pub compression: CompressionParams,
    /// Target size in bytes of a pack file.
    pub pack_size: u32,
    /// How long chunk lists are split into content-defined sub-lists.
    pub list_split: ListSplitParams,
    /// `"none"` in format version 1; the cipher's name in version 2; either in version 3.
    pub encryption: String,
    /// Version 3: new blobs are gathered into frames of about this many raw bytes, each
    /// compressed (and sealed) as one unit. Absent in versions 1 and 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_size: Option<u32>,
    /// Version 3: which files are cut into whole pages, and how many pages make a chunk
    /// (`pages`); absent: every file is cut by content. Absent in versions 1 and 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<crate::pages::PageRule>,
    /// The retention policy a plain `cairn forget` applies; the one field changed after init
    /// (by `cairn policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<crate::policy::RetentionPolicy>,
}

/// FastCDC parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkerParams {
    /// `"fastcdc-2020"` in version 1, `"fastcdc-2020-keyed"` in version 2.
    pub algorithm: String,
    /// Smallest chunk, bytes (except the last chunk of a file).
    pub min_size: u32,
    /// Average chunk size, bytes.
    pub avg_size: u32,
    /// Largest chunk, bytes.
    pub max_size: u32,
    /// FastCDC normalisation level, 0..=3.
    pub normalization: u8,
}

/// Blob compression parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionParams {
    /// `"zstd"` or `"none"`.
    pub algorithm: String,
    /// The zstd level used when writing.
    pub level: i32,
}

/// Parameters of the content-defined splitting of chunk lists (see `manifest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSplitParams {
    /// A list entry ends a sub-list when the low `bits` bits of its id's first 8 bytes
    /// (little-endian) are all one: sub-lists hold 2^bits entries on average.
    pub bits: u8,
    /// No sub-list holds more than this many entries.
    pub max_entries: u32,
    /// A file's top-level list holds at most this many entries inline in its tree node.
    pub max_inline: u32,
}

impl ChunkerParams {
    /// Parameters around an average size: min = avg/4, max = avg*4.
    pub fn with_average(avg: u32) -> Result<ChunkerParams> {
        if !(1024..=4 * 1024 * 1024).contains(&avg) || !avg.is_power_of_two() {
            return Err(Error::InvalidInput(format!(
                "chunk size {avg} is not a power of two between 1 KiB and 4 MiB"
            )));
        }
        Ok(ChunkerParams {
            algorithm: CHUNKER_PLAIN.into(),
            min_size: avg / 4,
            avg_size: avg,
            max_size: avg * 4,
            normalization: 1,
        })
    }
}

impl Config {
    /// A new config with a fresh random id.
    pub fn new(avg_chunk: u32, zstd_level: Option<i32>, pack_size: u32) -> Result<Config> {
        let chunker = ChunkerParams::with_average(avg_chunk)?;
        if !(1024 * 1024..=1024 * 1024 * 1024).contains(&pack_size) {
            return Err(Error::InvalidInput(format!(
                "pack size {pack_size} is not between 1 MiB and 1 GiB"
            )));
        }
        let compression = match zstd_level {
            None => CompressionParams {
                algorithm: "none".into(),
                level: 0,
            },
            Some(level) if (1..=22).contains(&level) => CompressionParams {
                algorithm: "zstd".into(),
                level,
            },
            Some(level) => {
                return Err(Error::InvalidInput(format!(
                    "zstd level {level} is not between 1 and 22"
                )));
            }
        };
        Ok(Config {
            version: FORMAT_VERSION,
            id: Id::random(),
            created: jiff::Timestamp::now().to_string(),
            chunker,
            compression,
            pack_size,
            list_split: ListSplitParams {
                bits: 3,
                max_entries: 128,
                max_inline: 16,
            },
            encryption: "none".into(),
            frame_size: Some(DEFAULT_FRAME_SIZE),
            pages: Some(crate::pages::PageRule::default()),
            retention: None,
        })
    }

    /// The same config in an older format version (1, or 2 once encrypted): for repositories
    /// that older cairn must read.
    pub fn with_format_version(mut self, version: u32) -> Result<Config> {
        match version {
            FORMAT_VERSION => {}
            PLAIN_FORMAT_VERSION | SEALED_FORMAT_VERSION => {
                self.version = PLAIN_FORMAT_VERSION;
                self.frame_size = None;
                self.pages = None;
            }
            v => {
                return Err(Error::InvalidInput(format!(
                    "format version {v} is not one this build writes (1, 2 or 3)"
                )));
            }
        }
        Ok(self)
    }

    /// Whether packs hold frames (format version 3).
    pub fn framed(&self) -> bool {
        self.frame_size.is_some()
    }

    /// The frame size; 0 (every blob alone) before version 3.
    pub fn frame_size(&self) -> u32 {
        self.frame_size.unwrap_or(0)
    }

    /// The config of an encrypted repository with these parameters: version 3 stays 3, and
    /// version 1 becomes 2.
    pub(crate) fn encrypted(mut self, cipher: Cipher) -> Config {
        if self.version == PLAIN_FORMAT_VERSION {
            self.version = SEALED_FORMAT_VERSION;
        }
        self.encryption = cipher.name().into();
        self.chunker.algorithm = CHUNKER_KEYED.into();
        self
    }

    /// The cipher, or `None` for an unencrypted repository.
    pub fn cipher(&self) -> Option<Cipher> {
        Cipher::from_name(&self.encryption)
    }

    /// Encodes an unencrypted (version 1) config as stored.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Decodes and validates a stored version-1 config.
    pub fn decode(bytes: &[u8]) -> Result<Config> {
        match ConfigFile::decode(bytes)? {
            ConfigFile::Plain(c) => Ok(*c),
            ConfigFile::Sealed(_) => Err(Error::corrupt("config", "is encrypted")),
        }
    }

    /// Encodes a version-2 config: the clear header and the body sealed under the config key.
    pub(crate) fn encode_sealed(&self, keys: &Keys, config_key: &SecretKey) -> Vec<u8> {
        let body = ConfigBody {
            created: self.created.clone(),
            chunker: self.chunker.clone(),
            compression: self.compression.clone(),
            pack_size: self.pack_size,
            list_split: self.list_split,
            frame_size: self.frame_size,
            pages: self.pages.clone(),
            retention: self.retention.clone(),
            keys: keys.record().clone(),
        };
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(&body).unwrap_or_default());
        let sealed = seal_object(
            &Aead::new(keys.cipher(), config_key),
            keys.cipher(),
            0,
            Sealed::Config,
            &self.id.to_hex(),
            &plain,
        );
        let header = SealedConfig {
            version: self.version,
            id: self.id,
            encryption: self.encryption.clone(),
            sealed: hex::encode(sealed),
        };
        let mut out = serde_json::to_vec(&header).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Checks a config about to be written, as a reader would check it; says what is wrong
    /// as bad input.
    pub(crate) fn check(&self) -> Result<()> {
        self.validate().map_err(|e| match e {
            Error::Corrupt { detail, .. } => Error::InvalidInput(detail),
            other => other,
        })
    }

    fn validate(&self) -> Result<()> {
        let bad = |d: String| Err(Error::corrupt("config", d));
        let ch = &self.chunker;
        let plain = self.encryption == "none";
        let (chunker, encryption_ok) = match self.version {
            PLAIN_FORMAT_VERSION => (CHUNKER_PLAIN, plain),
            SEALED_FORMAT_VERSION => (CHUNKER_KEYED, self.cipher().is_some()),
            _ if plain => (CHUNKER_PLAIN, true),
            _ => (CHUNKER_KEYED, self.cipher().is_some()),
        };
        match (self.version, self.frame_size) {
            (FORMAT_VERSION, Some(f)) if (4096..=4 << 20).contains(&f) => {}
            (FORMAT_VERSION, f) => {
                return bad(format!("frame size {f:?} is not between 4 KiB and 4 MiB"));
            }
            (_, Some(_)) => {
                return bad(format!(
                    "a frame size in a version-{} repository",
                    self.version
                ));
            }
            (_, None) => {}
        }
        if let Some(pages) = &self.pages {
            if self.version != FORMAT_VERSION {
                return bad(format!(
                    "a page rule in a version-{} repository",
                    self.version
                ));
            }
            pages.validate().map_err(|d| Error::corrupt("config", d))?;
        }
        if ch.algorithm != chunker {
            return bad(format!(
                "chunker {:?} in a version-{} repository",
                ch.algorithm, self.version
            ));
        }
        if !encryption_ok {
            return bad(format!(
                "encryption {:?} in a version-{} repository",
                self.encryption, self.version
            ));
        }
        let sizes_ok = (64..=1 << 20).contains(&ch.min_size)
            && (256..=4 << 20).contains(&ch.avg_size)
            && (1024..=16 << 20).contains(&ch.max_size)
            && ch.min_size <= ch.avg_size
            && ch.avg_size <= ch.max_size
            && ch.min_size.is_multiple_of(2)
            && ch.avg_size.is_multiple_of(2)
            && ch.max_size.is_multiple_of(2)
            && ch.normalization <= 3;
        if !sizes_ok {
            return bad(format!("chunker parameters out of range: {ch:?}"));
        }
        if !matches!(self.compression.algorithm.as_str(), "zstd" | "none") {
            return bad(format!(
                "unknown compression {:?}",
                self.compression.algorithm
            ));
        }
        let ls = &self.list_split;
        if !(1..=16).contains(&ls.bits) || ls.max_entries < 2 || ls.max_inline < 1 {
            return bad(format!("list split parameters out of range: {ls:?}"));
        }
        if !(1024 * 1024..=1024 * 1024 * 1024).contains(&self.pack_size) {
            return bad(format!(
                "pack size {} is not between 1 MiB and 1 GiB",
                self.pack_size
            ));
        }
        if !(-7..=22).contains(&self.compression.level) {
            return bad(format!(
                "zstd level {} out of range",
                self.compression.level
            ));
        }
        if ls.max_entries > 1 << 20 || ls.max_inline > 1 << 20 {
            return bad(format!("list split parameters out of range: {ls:?}"));
        }
        if self.created.parse::<jiff::Timestamp>().is_err() {
            return bad(format!(
                "creation time {:?} is not an RFC 3339 time",
                self.created
            ));
        }
        Ok(())
    }

    /// The zstd level to write with, or `None` for no compression.
    pub fn zstd_level(&self) -> Option<i32> {
        (self.compression.algorithm == "zstd").then_some(self.compression.level)
    }
}

/// A stored config as read, before any key is known.
#[derive(Debug, Clone)]
pub enum ConfigFile {
    /// Unencrypted (version 1 or 3): the config itself.
    Plain(Box<Config>),
    /// Encrypted (version 2 or 3): the clear header; the body needs the master key.
    Sealed(SealedConfig),
}

/// The clear part of a version-2 config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedConfig {
    /// 2.
    pub version: u32,
    /// The repository id: names the local cache and the key files' repository.
    pub id: Id,
    /// The cipher's name.
    pub encryption: String,
    /// The body, sealed (format-spec/encryption.md), hex.
    sealed: String,
}

/// The sealed body of a version-2 config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigBody {
    created: String,
    chunker: ChunkerParams,
    compression: CompressionParams,
    pack_size: u32,
    list_split: ListSplitParams,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    frame_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pages: Option<crate::pages::PageRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retention: Option<crate::policy::RetentionPolicy>,
    keys: KeySetRecord,
}

impl ConfigFile {
    /// Decodes a stored config of either version; the body of a version-2 config stays sealed.
    pub fn decode(bytes: &[u8]) -> Result<ConfigFile> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
            #[serde(default)]
            encryption: Option<String>,
        }
        let v: VersionOnly = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt("config", format!("not a config object: {e}")))?;
        let sealed = match v.version {
            PLAIN_FORMAT_VERSION => false,
            SEALED_FORMAT_VERSION => true,
            FORMAT_VERSION => v.encryption.as_deref() != Some("none"),
            found => {
                return Err(Error::UnsupportedVersion {
                    object: "repository config".into(),
                    found,
                    supported: FORMAT_VERSION,
                });
            }
        };
        match sealed {
            false => {
                let c: Config = serde_json::from_slice(bytes)
                    .map_err(|e| Error::corrupt("config", e.to_string()))?;
                c.validate()?;
                Ok(ConfigFile::Plain(Box::new(c)))
            }
            true => {
                let c: SealedConfig = serde_json::from_slice(bytes)
                    .map_err(|e| Error::corrupt("config", e.to_string()))?;
                if Cipher::from_name(&c.encryption).is_none() {
                    return Err(Error::corrupt(
                        "config",
                        format!("unknown encryption {:?}", c.encryption),
                    ));
                }
                Ok(ConfigFile::Sealed(c))
            }
        }
    }

    /// The repository id.
    pub fn id(&self) -> Id {
        match self {
            ConfigFile::Plain(c) => c.id,
            ConfigFile::Sealed(s) => s.id,
        }
    }
}

impl SealedConfig {
    /// Opens the body with the config key; `Ok(None)` if the key is not this config's.
    #[doc(hidden)]
    pub fn open(&self, config_key: &SecretKey) -> Result<Option<(Config, Keys)>> {
        let bad = |d: String| Error::corrupt("config", d);
        let lower_hex = self
            .sealed
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let sealed = hex::decode(&self.sealed)
            .ok()
            .filter(|_| lower_hex)
            .ok_or_else(|| bad("sealed body is not lowercase hex".into()))?;
        let header = envelope_header(&sealed, Sealed::Config).map_err(|m| m.about("config"))?;
        let cipher = Cipher::from_name(&self.encryption)
            .filter(|c| *c == header.cipher)
            .ok_or_else(|| bad("the sealed body's cipher is not the config's".into()))?;
        if header.epoch != 0 {
            return Err(bad(format!(
                "sealed body has epoch {}, not 0",
                header.epoch
            )));
        }
        let Ok(plain) = open_object(&Aead::new(cipher, config_key), &self.id.to_hex(), &sealed)
        else {
            return Ok(None);
        };
        let plain = zeroize::Zeroizing::new(plain);
        let body: ConfigBody =
            serde_json::from_slice(&plain).map_err(|e| bad(format!("body: {e}")))?;
        let keys = Keys::from_record(cipher, body.keys).map_err(bad)?;
        let config = Config {
            version: self.version,
            id: self.id,
            created: body.created,
            chunker: body.chunker,
            compression: body.compression,
            pack_size: body.pack_size,
            list_split: body.list_split,
            frame_size: body.frame_size,
            pages: body.pages,
            encryption: self.encryption.clone(),
            retention: body.retention,
        };
        config.validate()?;
        Ok(Some((config, keys)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut c = Config::new(DEFAULT_AVG_CHUNK, Some(3), DEFAULT_PACK_SIZE).unwrap();
        assert_eq!(Config::decode(&c.encode()).unwrap(), c);
        // Without a policy the field is absent, as in configs written before it existed.
        assert!(!String::from_utf8_lossy(&c.encode()).contains("retention"));
        c.retention = Some(crate::policy::RetentionPolicy {
            keep_daily: Some(7),
            keep_within: Some("36h".into()),
            keep_tags: vec!["golden".into()],
            ..Default::default()
        });
        assert_eq!(Config::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Config::new(1000, Some(3), DEFAULT_PACK_SIZE).is_err());
        assert!(Config::new(DEFAULT_AVG_CHUNK, Some(30), DEFAULT_PACK_SIZE).is_err());
        assert!(Config::decode(b"{").is_err());
        let mut c = Config::new(DEFAULT_AVG_CHUNK, Some(3), DEFAULT_PACK_SIZE).unwrap();
        c.version = 9;
        assert!(matches!(
            Config::decode(&c.encode()),
            Err(Error::UnsupportedVersion { found: 9, .. })
        ));
        c.version = 1;
        c.pack_size = 7;
        assert!(Config::decode(&c.encode()).is_err());
        c.pack_size = DEFAULT_PACK_SIZE;
        c.encryption = "aes-256-gcm".into();
        assert!(Config::decode(&c.encode()).is_err());
        c.version = 9;
        assert!(matches!(
            Config::decode(&c.encode()),
            Err(Error::UnsupportedVersion { found: 9, .. })
        ));
    }

    #[test]
    fn version_three_keeps_frames_and_pages_and_older_versions_refuse_them() {
        let c = Config::new(DEFAULT_AVG_CHUNK, Some(3), DEFAULT_PACK_SIZE).unwrap();
        assert_eq!((c.version, c.frame_size), (3, Some(DEFAULT_FRAME_SIZE)));
        assert!(c.pages.is_some());
        let text = String::from_utf8(c.encode()).unwrap();
        assert!(text.contains("\"frame_size\":524288") && text.contains("\"pages\""));
        assert_eq!(Config::decode(&c.encode()).unwrap(), c);
        // Version 1 has neither; a stored version-1 config that claims them is refused.
        let old = c.clone().with_format_version(1).unwrap();
        assert_eq!(
            (old.version, old.frame_size, old.pages.clone()),
            (1, None, None)
        );
        assert_eq!(Config::decode(&old.encode()).unwrap(), old);
        let mut forged = old.clone();
        forged.frame_size = Some(DEFAULT_FRAME_SIZE);
        assert!(Config::decode(&forged.encode()).is_err());
        let mut forged = c.clone();
        forged.frame_size = None;
        assert!(Config::decode(&forged.encode()).is_err());
        // An encrypted version 3 stays version 3, its body sealed.
        let keys = Keys::generate(Cipher::ChaCha20Poly1305);
        let ck = crate::crypto::config_key(&SecretKey::random());
        let sealed = c.encrypted(Cipher::ChaCha20Poly1305);
        assert_eq!(sealed.version, 3);
        let bytes = sealed.encode_sealed(&keys, &ck);
        assert!(!String::from_utf8_lossy(&bytes).contains("frame_size"));
        let ConfigFile::Sealed(s) = ConfigFile::decode(&bytes).unwrap() else {
            panic!("not sealed")
        };
        assert_eq!(s.open(&ck).unwrap().unwrap().0, sealed);
    }

    #[test]
    fn sealed_round_trip() {
        let keys = Keys::generate(Cipher::Aes256Gcm);
        let master = SecretKey::random();
        let ck = crate::crypto::config_key(&master);
        let mut c = Config::new(DEFAULT_AVG_CHUNK, Some(3), DEFAULT_PACK_SIZE)
            .unwrap()
            .encrypted(Cipher::Aes256Gcm);
        c.retention = Some(crate::policy::RetentionPolicy {
            keep_last: Some(3),
            ..Default::default()
        });
        let bytes = c.encode_sealed(&keys, &ck);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(!text.contains("fastcdc") && !text.contains("keep_last"));
        let ConfigFile::Sealed(s) = ConfigFile::decode(&bytes).unwrap() else {
            panic!("not sealed")
        };
        let (back, back_keys) = s.open(&ck).unwrap().unwrap();
        assert_eq!(back, c);
        assert!(back_keys.same_content_keys(&keys));
        assert!(s.open(&SecretKey::random()).unwrap().is_none());
        // Another repository's id in the clear header: the body no longer opens.
        let mut moved = s.clone();
        moved.id = Id::random();
        assert!(moved.open(&ck).unwrap().is_none());
        assert!(Config::decode(&bytes).is_err());
    }
}
