//! The repository config: the one object not named by its digest, saying how the repository is
//! made.
//!
//! Stored at `config` as compact JSON (see `format-spec/config.md`). It is written once by
//! `init`; everything in it but the retention policy is fixed for the life of the repository.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::Id;

/// The repository format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

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
    /// Encryption of blobs; `"none"` in format version 1.
    pub encryption: String,
    /// The retention policy a plain `cairn forget` applies; the one field changed after init
    /// (by `cairn policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<crate::policy::RetentionPolicy>,
}

/// FastCDC parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkerParams {
    /// Always `"fastcdc-2020"` in version 1.
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
            algorithm: "fastcdc-2020".into(),
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
            retention: None,
        })
    }

    /// Encodes the config as stored.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Decodes and validates a stored config.
    pub fn decode(bytes: &[u8]) -> Result<Config> {
        let c: Config = crate::wire::decode_versioned_json(
            bytes,
            "repository config",
            "a config object",
            FORMAT_VERSION,
        )?;
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<()> {
        let bad = |d: String| Err(Error::corrupt("config", d));
        let ch = &self.chunker;
        if ch.algorithm != "fastcdc-2020" {
            return bad(format!("unknown chunker {:?}", ch.algorithm));
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
        if self.encryption != "none" {
            return Err(Error::UnsupportedVersion {
                object: format!("repository encryption {:?}", self.encryption),
                found: self.version,
                supported: FORMAT_VERSION,
            });
        }
        let ls = &self.list_split;
        if !(1..=16).contains(&ls.bits) || ls.max_entries < 2 || ls.max_inline < 1 {
            return bad(format!("list split parameters out of range: {ls:?}"));
        }
        if self.pack_size < 1024 {
            return bad(format!("pack size {} too small", self.pack_size));
        }
        Ok(())
    }

    /// The zstd level to write with, or `None` for no compression.
    pub fn zstd_level(&self) -> Option<i32> {
        (self.compression.algorithm == "zstd").then_some(self.compression.level)
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
    }
}
