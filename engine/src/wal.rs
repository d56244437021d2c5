//! WAL records: one per archived PostgreSQL WAL file, at `wal/<name>` (format-spec/wal.md), and
//! the LSN and segment-name arithmetic around them. Decoding lives here, outside the
//! `repository` feature, so that the fuzz targets reach it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::Id;

/// Version of WAL records written and read by this build.
pub const WAL_RECORD_VERSION: u32 = 1;

/// An LSN as PostgreSQL prints it (`16/B374D848`).
pub fn parse_lsn(s: &str) -> Result<u64> {
    let bad = || Error::InvalidInput(format!("{s:?} is not an LSN such as 0/16B3748"));
    let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
    let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
    let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
    Ok(u64::from(hi) << 32 | u64::from(lo))
}

/// The name of the WAL segment file holding `lsn` on `timeline`.
pub fn segment_name(timeline: u32, lsn: u64, segment_size: u64) -> String {
    segment_file(
        timeline,
        lsn / sane_segment_size(segment_size),
        segment_size,
    )
}

/// The name of WAL segment number `segno` on `timeline`.
pub fn segment_file(timeline: u32, segno: u64, segment_size: u64) -> String {
    let per_id = 0x1_0000_0000 / sane_segment_size(segment_size);
    format!("{timeline:08X}{:08X}{:08X}", segno / per_id, segno % per_id)
}

/// PostgreSQL's WAL segments are a power of two from 1 MiB to 1 GiB; anything else (a damaged
/// or crafted snapshot) is taken as the default 16 MiB rather than divided by.
fn sane_segment_size(size: u64) -> u64 {
    if size.is_power_of_two() && (1 << 20..=1 << 30).contains(&size) {
        size
    } else {
        16 << 20
    }
}

/// Timeline and segment number of a WAL segment file name, if it is one.
pub fn parse_segment(name: &str, segment_size: u64) -> Option<(u32, u64)> {
    if name.len() != 24 || !name.bytes().all(is_upper_hex) {
        return None;
    }
    let tli = u32::from_str_radix(&name[..8], 16).ok()?;
    let log = u64::from_str_radix(&name[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&name[16..], 16).ok()?;
    let per_id = 0x1_0000_0000 / sane_segment_size(segment_size);
    (seg < per_id).then_some((tli, log * per_id + seg))
}

/// PostgreSQL names WAL files in uppercase hex.
fn is_upper_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'A'..=b'F').contains(&b)
}

/// Whether `name` is a file PostgreSQL archives: a segment, a `.partial` segment, a timeline
/// `.history` file, or a `.backup` history file.
pub fn valid_wal_name(name: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(is_upper_hex);
    if let Some(base) = name.strip_suffix(".history") {
        return hex(base, 8);
    }
    if let Some(base) = name.strip_suffix(".partial") {
        return hex(base, 24);
    }
    if let Some((seg, rest)) = name.split_once('.') {
        return hex(seg, 24) && rest.strip_suffix(".backup").is_some_and(|off| hex(off, 8));
    }
    hex(name, 24)
}

/// One archived WAL file: `wal/<name>` (format-spec/wal.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalRecord {
    /// Format version.
    pub version: u32,
    /// The file name PostgreSQL gave (`%f`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// BLAKE3 of its contents, in hex.
    pub digest: String,
    /// A tree holding the file under `name`.
    pub tree: Id,
    /// When it was archived (RFC 3339, UTC).
    pub time: String,
}

impl WalRecord {
    /// Encodes the record as stored.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Decodes a stored record, checking it against the name it is stored under.
    pub fn decode(bytes: &[u8], name: &str) -> Result<WalRecord> {
        let what = || format!("WAL record {name}");
        let r: WalRecord =
            crate::wire::decode_versioned_json(bytes, &what(), "a WAL record", WAL_RECORD_VERSION)?;
        if r.name != name || !valid_wal_name(&r.name) || r.digest.len() != 64 {
            return Err(Error::corrupt(what(), "its name or digest is not valid"));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_and_segment_names() {
        assert_eq!(parse_lsn("0/2000028").unwrap(), 0x2000028);
        assert_eq!(parse_lsn("16/B374D848").unwrap(), 0x16_B374_D848);
        assert!(parse_lsn("x/1").is_err());
        assert!(parse_lsn("12").is_err());
        let seg = 16 << 20;
        assert_eq!(segment_name(1, 0x2000028, seg), "000000010000000000000002");
        assert_eq!(
            segment_name(3, 0x16_B374_D848, seg),
            "0000000300000016000000B3"
        );
        assert_eq!(
            parse_segment("0000000300000016000000B3", seg),
            Some((3, 0x16 * 256 + 0xB3))
        );
        assert_eq!(parse_segment("00000003.history", seg), None);
        // Out of range for the segment size, lowercase, absurd sizes: no panic, no answer.
        assert_eq!(parse_segment("000000010000000000000100", seg), None);
        assert_eq!(parse_segment("0000000300000016000000b3", seg), None);
        assert_eq!(
            segment_name(1, u64::MAX, u64::MAX),
            segment_name(1, u64::MAX, 16 << 20)
        );
        for ok in [
            "000000010000000000000002",
            "00000002.history",
            "000000010000000000000002.partial",
            "000000010000000000000002.00000028.backup",
        ] {
            assert!(valid_wal_name(ok), "{ok}");
        }
        for bad in [
            "../x",
            "0000000100000000000000",
            "x.history",
            "",
            "a/b",
            "0000000a.history",
        ] {
            assert!(!valid_wal_name(bad), "{bad}");
        }
    }

    #[test]
    fn wal_record_round_trips() {
        let r = WalRecord {
            version: WAL_RECORD_VERSION,
            name: "000000010000000000000002".into(),
            size: 16 << 20,
            digest: "ab".repeat(32),
            tree: Id::of(b"t"),
            time: "2026-11-22T10:00:00Z".into(),
        };
        let bytes = r.encode();
        assert_eq!(WalRecord::decode(&bytes, &r.name).unwrap(), r);
        assert!(WalRecord::decode(&bytes, "000000010000000000000003").is_err());
        assert!(WalRecord::decode(b"{}", &r.name).is_err());
    }

    #[test]
    fn the_frozen_wal_record_still_reads() {
        let bytes = include_bytes!("../../tests/fixtures/wal-record-v1.json");
        let r = WalRecord::decode(bytes, "000000010000000000000003").unwrap();
        assert_eq!(r.size, 16 << 20);
        assert_eq!(r.digest, "cafe".repeat(16));
    }
}
