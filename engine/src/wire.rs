//! Little helpers to write and read the binary encodings of `format-spec/`.
//!
//! Integers are little-endian; `varint` is unsigned LEB128 of at most 10 bytes. The reader
//! never panics on malformed input: every read checks the remaining length and returns a
//! [`Malformed`] that the caller turns into [`crate::Error::Corrupt`] naming the object.

use crate::id::Id;

/// Why a byte string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl Malformed {
    pub(crate) fn new(detail: impl Into<String>) -> Self {
        Malformed(detail.into())
    }

    /// Turns this into an engine error about `object`.
    pub(crate) fn about(self, object: impl Into<String>) -> crate::Error {
        crate::Error::corrupt(object, self.0)
    }
}

pub(crate) type DecodeResult<T> = Result<T, Malformed>;

/// Appends encodings to a byte vector.
pub(crate) trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_i64(&mut self, v: i64);
    fn put_varint(&mut self, v: u64);
    fn put_id(&mut self, id: &Id);
    fn put_bytes(&mut self, b: &[u8]);
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.push(v as u8);
    }
    fn put_id(&mut self, id: &Id) {
        self.extend_from_slice(&id.0);
    }
    fn put_bytes(&mut self, b: &[u8]) {
        self.put_varint(b.len() as u64);
        self.extend_from_slice(b);
    }
}

/// Reads encodings from a byte slice.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        if n > self.remaining() {
            return Err(Malformed::new(format!(
                "unexpected end at byte {} (wanted {n} more, {} left)",
                self.pos,
                self.remaining()
            )));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> DecodeResult<u8> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> DecodeResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> DecodeResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(crate) fn i64(&mut self) -> DecodeResult<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub(crate) fn id(&mut self) -> DecodeResult<Id> {
        Ok(Id(self.array()?))
    }

    pub(crate) fn varint(&mut self) -> DecodeResult<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if i == 9 && b > 1 {
                return Err(Malformed::new("varint overflows 64 bits"));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                // One encoding per value: content-addressed bytes must be canonical.
                if b == 0 && i > 0 {
                    return Err(Malformed::new("varint is not in its shortest form"));
                }
                return Ok(v);
            }
        }
        Err(Malformed::new("varint longer than 10 bytes"))
    }

    /// A varint count of items each at least `min_item` bytes long; rejects counts that cannot
    /// fit in what is left, so a corrupt count never triggers a huge allocation.
    pub(crate) fn count(&mut self, min_item: usize) -> DecodeResult<usize> {
        let n = self.varint()?;
        let fits = (self.remaining() / min_item.max(1)) as u64;
        if n > fits {
            return Err(Malformed::new(format!(
                "count {n} cannot fit in the {} bytes left",
                self.remaining()
            )));
        }
        Ok(n as usize)
    }

    pub(crate) fn bytes(&mut self) -> DecodeResult<&'a [u8]> {
        let n = self.count(1)?;
        self.take(n)
    }

    pub(crate) fn expect_end(&self) -> DecodeResult<()> {
        if self.remaining() != 0 {
            return Err(Malformed::new(format!(
                "{} unexpected bytes after the end",
                self.remaining()
            )));
        }
        Ok(())
    }
}

/// Decodes a JSON object that carries its format `version` (config, snapshot, WAL record):
/// a version other than `supported` is refused as unsupported (asking for a newer cairn)
/// before the rest is read; anything that does not parse is damage to `object`, which is
/// `a` of its `kind` (e.g. "a snapshot object").
pub(crate) fn decode_versioned_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    object: &str,
    kind: &str,
    supported: u32,
) -> crate::Result<T> {
    #[derive(serde::Deserialize)]
    struct VersionOnly {
        version: u32,
    }
    let v: VersionOnly = serde_json::from_slice(bytes)
        .map_err(|e| crate::Error::corrupt(object, format!("not {kind}: {e}")))?;
    if v.version != supported {
        return Err(crate::Error::UnsupportedVersion {
            object: object.to_string(),
            found: v.version,
            supported,
        });
    }
    serde_json::from_slice(bytes).map_err(|e| crate::Error::corrupt(object, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trip(v: u64) {
            let mut buf = Vec::new();
            buf.put_varint(v);
            let mut r = Reader::new(&buf);
            prop_assert_eq!(r.varint().unwrap(), v);
            prop_assert!(r.expect_end().is_ok());
        }

        #[test]
        fn reader_never_panics(bytes: Vec<u8>) {
            let mut r = Reader::new(&bytes);
            let _ = r.varint();
            let _ = r.bytes();
            let _ = r.count(40);
            let _ = r.u64();
        }
    }

    #[test]
    fn overlong_varint_is_rejected() {
        assert!(Reader::new(&[0x80, 0x00]).varint().is_err());
        let buf = [0xffu8; 11];
        assert!(Reader::new(&buf).varint().is_err());
        let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02];
        assert!(Reader::new(&huge).varint().is_err());
    }
}
