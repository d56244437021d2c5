//! The two encrypted layouts of format version 2 (byte-exact in `format-spec/encryption.md`):
//!
//! ```text
//! whole object (config body, index file, snapshot, WAL record, lock, pack directory):
//!   "CAIRNENC" version:u8=1 cipher:u8 kind:u8 reserved:u8=0 epoch:u32 nonce:12  ciphertext tag:16
//!   associated data: the 28-byte header, then the object's name (its path in the repository)
//!
//! blob inside a pack:
//!   epoch:u32 nonce:12  ciphertext tag:16
//!   plaintext: payload_len:u32 payload zero-padding   (padded to padmé(4 + payload_len))
//!   associated data: "cairn blob" kind:u8 compression:u8 raw_len:u32 id:32
//! ```
//!
//! Binding the name (or the blob's id and kind) into the associated data is what makes a
//! swapped or moved object fail to open instead of being read as another.

use crate::wire::{DecodeResult, Malformed, Put, Reader};

use super::cipher::{Aead, Cipher, NONCE_LEN, NotAuthentic, TAG_LEN, random_nonce};

/// First 8 bytes of every sealed whole object.
pub const ENVELOPE_MAGIC: &[u8; 8] = b"CAIRNENC";
/// Version of the whole-object envelope.
pub const ENVELOPE_VERSION: u8 = 1;
/// Bytes before an envelope's ciphertext.
pub const ENVELOPE_HEADER_LEN: usize = 28;
/// Bytes before a sealed blob's ciphertext (epoch and nonce).
pub const BLOB_PREFIX_LEN: usize = 4 + NONCE_LEN;
/// What sealing adds to a blob, besides padding: the prefix, the payload length and the tag.
pub const BLOB_OVERHEAD: usize = BLOB_PREFIX_LEN + 4 + TAG_LEN;

/// What a sealed whole object is; bound into its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    /// The config's body.
    Config,
    /// An index file.
    Index,
    /// A snapshot.
    Snapshot,
    /// A WAL record.
    Wal,
    /// A lock file.
    Lock,
    /// A pack's directory.
    PackDirectory,
}

impl Sealed {
    fn code(self) -> u8 {
        match self {
            Sealed::Config => 1,
            Sealed::Index => 2,
            Sealed::Snapshot => 3,
            Sealed::Wal => 4,
            Sealed::Lock => 5,
            Sealed::PackDirectory => 6,
        }
    }
}

/// The parsed header of a sealed whole object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EnvelopeHeader {
    pub(crate) cipher: Cipher,
    pub(crate) epoch: u32,
}

/// Reads an envelope's header, checking it is of `kind`.
pub(crate) fn envelope_header(sealed: &[u8], kind: Sealed) -> DecodeResult<EnvelopeHeader> {
    let mut r = Reader::new(sealed);
    if r.take(8)? != ENVELOPE_MAGIC {
        return Err(Malformed::new("not an encrypted object: magic is wrong"));
    }
    let version = r.u8()?;
    if version != ENVELOPE_VERSION {
        return Err(Malformed::new(format!(
            "envelope version {version}, this build reads {ENVELOPE_VERSION}"
        )));
    }
    let cipher = r.u8()?;
    let cipher = Cipher::from_code(cipher)
        .ok_or_else(|| Malformed::new(format!("unknown cipher {cipher}")))?;
    let k = r.u8()?;
    if k != kind.code() {
        return Err(Malformed::new(format!(
            "holds object kind {k}, not {}",
            kind.code()
        )));
    }
    let reserved = r.u8()?;
    if reserved != 0 {
        return Err(Malformed::new(format!(
            "reserved byte is {reserved}, not 0"
        )));
    }
    let epoch = r.u32()?;
    if r.remaining() < NONCE_LEN + TAG_LEN {
        return Err(Malformed::new("too short for a nonce and a tag"));
    }
    Ok(EnvelopeHeader { cipher, epoch })
}

fn object_aad(header: &[u8], name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + name.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// Seals `plaintext` as the object `kind` named `name`, under `aead` of `epoch`.
pub(crate) fn seal_object(
    aead: &Aead,
    cipher: Cipher,
    epoch: u32,
    kind: Sealed,
    name: &str,
    plaintext: &[u8],
) -> Vec<u8> {
    let nonce = random_nonce();
    let mut out = Vec::with_capacity(ENVELOPE_HEADER_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(ENVELOPE_MAGIC);
    out.put_u8(ENVELOPE_VERSION);
    out.put_u8(cipher.code());
    out.put_u8(kind.code());
    out.put_u8(0);
    out.put_u32(epoch);
    out.extend_from_slice(&nonce);
    let aad = object_aad(&out, name);
    out.extend_from_slice(plaintext);
    aead.seal_tail(&nonce, &aad, &mut out, ENVELOPE_HEADER_LEN);
    out
}

/// Opens a sealed object whose header [`envelope_header`] read, with `aead`, the key of
/// that header's epoch.
pub(crate) fn open_object(aead: &Aead, name: &str, sealed: &[u8]) -> Result<Vec<u8>, NotAuthentic> {
    if sealed.len() < ENVELOPE_HEADER_LEN + TAG_LEN {
        return Err(NotAuthentic);
    }
    let (header, body) = sealed.split_at(ENVELOPE_HEADER_LEN);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&header[16..28]);
    aead.open(&nonce, &object_aad(header, name), body)
}

/// The associated data of a blob.
pub(crate) fn blob_aad(kind: u8, compression: u8, raw_len: u32, id: &[u8; 32]) -> [u8; 48] {
    let mut aad = [0u8; 48];
    aad[..10].copy_from_slice(b"cairn blob");
    aad[10] = kind;
    aad[11] = compression;
    aad[12..16].copy_from_slice(&raw_len.to_le_bytes());
    aad[16..].copy_from_slice(id);
    aad
}

/// The associated data of a frame (format version 3): what its stored bytes decode to.
pub(crate) fn frame_aad(compression: u8, frame_len: u32) -> [u8; 16] {
    let mut aad = [0u8; 16];
    aad[..11].copy_from_slice(b"cairn frame");
    aad[11] = compression;
    aad[12..16].copy_from_slice(&frame_len.to_le_bytes());
    aad
}

/// The plaintext length of a sealed blob or frame whose payload is `len` bytes: padded with
/// Padmé for a blob stored alone (version 2), exact for a frame (version 3), whose length
/// covers many chunks and so says little about any one of them.
fn plain_len(len: usize, pad: bool) -> usize {
    if pad {
        padme(4 + len as u64) as usize
    } else {
        4 + len
    }
}

/// Appends the sealed form of a blob (or frame) whose stored bytes are `payload` to `out`.
pub(crate) fn seal_blob(
    aead: &Aead,
    epoch: u32,
    aad: &[u8],
    payload: &[u8],
    pad: bool,
    out: &mut Vec<u8>,
) {
    let nonce = random_nonce();
    out.put_u32(epoch);
    out.extend_from_slice(&nonce);
    let from = out.len();
    let plain = plain_len(payload.len(), pad);
    out.reserve(plain + TAG_LEN);
    out.put_u32(payload.len() as u32);
    out.extend_from_slice(payload);
    out.resize(from + plain, 0);
    aead.seal_tail(&nonce, aad, out, from);
}

/// The epoch a sealed blob was written under.
pub(crate) fn blob_epoch(sealed: &[u8]) -> DecodeResult<u32> {
    if sealed.len() < BLOB_OVERHEAD {
        return Err(Malformed::new(format!(
            "a sealed blob of {} bytes is too short",
            sealed.len()
        )));
    }
    Reader::new(sealed).u32()
}

/// Why a sealed blob did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BlobOpenError {
    /// Its tag did not verify.
    NotAuthentic,
    /// It authenticated but its padding is not as written.
    Malformed(String),
}

/// Opens a sealed blob; returns the plaintext and where the payload (the stored bytes:
/// compressed or raw) lies in it (not moved: a blob is copied once, when it is decrypted).
pub(crate) fn open_blob_payload(
    aead: &Aead,
    aad: &[u8],
    sealed: &[u8],
    padded: bool,
) -> Result<(Vec<u8>, std::ops::Range<usize>), BlobOpenError> {
    if sealed.len() < BLOB_OVERHEAD {
        return Err(BlobOpenError::NotAuthentic);
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[4..BLOB_PREFIX_LEN]);
    let plain = aead
        .open(&nonce, aad, &sealed[BLOB_PREFIX_LEN..])
        .map_err(|NotAuthentic| BlobOpenError::NotAuthentic)?;
    let len = u32::from_le_bytes([plain[0], plain[1], plain[2], plain[3]]) as u64;
    let bad = |d: String| Err(BlobOpenError::Malformed(d));
    if 4 + len > plain.len() as u64 || plain_len(len as usize, padded) != plain.len() {
        return bad(format!(
            "payload length {len} does not match its padded length {}",
            plain.len()
        ));
    }
    if plain[4 + len as usize..].iter().any(|b| *b != 0) {
        return bad("padding is not zero".into());
    }
    Ok((plain, 4..4 + len as usize))
}

/// The length Padmé pads `len` to (Nikitin et al., "Reducing Metadata Leakage from Encrypted
/// Files and Communication with PURBs", PETS 2019): the low `floor(log2 E) + 1` bits of the
/// length's exponent E are kept, the rest rounded up, so at most about 12% is added (under 3%
/// above 2 KiB... see the spec) and a length reveals O(log log len) bits.
pub fn padme(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let e = 63 - u64::from(len.leading_zeros()); // floor(log2 len)
    let s = 64 - u64::from(e.leading_zeros()); // floor(log2 e) + 1
    let last_bits = e - s;
    let mask = (1u64 << last_bits) - 1;
    (len + mask) & !mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    #[test]
    fn padme_matches_the_paper() {
        // Values from the definition: E = floor(log2 L), S = floor(log2 E) + 1,
        // round up to a multiple of 2^(E - S).
        assert_eq!(padme(0), 0);
        assert_eq!(padme(1), 1);
        assert_eq!(padme(7), 7);
        assert_eq!(padme(9), 10);
        assert_eq!(padme(100), 104);
        assert_eq!(padme(1000), 1024);
        assert_eq!(padme(4100), 4352);
        assert_eq!(padme(8192), 8192);
        assert_eq!(padme(8193), 8704);
        for l in 2..100_000u64 {
            let p = padme(l);
            assert!(p >= l && p - l <= l / 8 + 1, "{l} -> {p}");
            assert_eq!(padme(p), p);
        }
    }

    #[test]
    fn objects_round_trip_and_bind_name_and_kind() {
        let aead = Aead::new(Cipher::Aes256Gcm, &SecretKey::random());
        let s = seal_object(
            &aead,
            Cipher::Aes256Gcm,
            3,
            Sealed::Snapshot,
            "object ab",
            b"rows",
        );
        let h = envelope_header(&s, Sealed::Snapshot).unwrap();
        assert_eq!((h.cipher, h.epoch), (Cipher::Aes256Gcm, 3));
        assert_eq!(open_object(&aead, "object ab", &s).unwrap(), b"rows");
        assert!(open_object(&aead, "object cd", &s).is_err());
        assert!(envelope_header(&s, Sealed::Index).is_err());
        let mut other_kind = s.clone();
        other_kind[10] = Sealed::Index.code();
        assert!(open_object(&aead, "object ab", &other_kind).is_err());
    }

    #[test]
    fn blobs_round_trip_padded() {
        let aead = Aead::new(Cipher::ChaCha20Poly1305, &SecretKey::random());
        let id = [5u8; 32];
        for n in [0usize, 1, 100, 4096, 5000] {
            let payload = vec![0xa5u8; n];
            let aad = blob_aad(1, 0, n as u32, &id);
            let mut out = b"xx".to_vec();
            seal_blob(&aead, 7, &aad, &payload, true, &mut out);
            let sealed = &out[2..];
            assert_eq!(
                sealed.len() as u64,
                BLOB_PREFIX_LEN as u64 + padme(4 + n as u64) + TAG_LEN as u64
            );
            assert_eq!(blob_epoch(sealed).unwrap(), 7);
            let (plain, at) = open_blob_payload(&aead, &aad, sealed, true).unwrap();
            assert_eq!(plain[at], payload[..]);
            let other = blob_aad(2, 0, n as u32, &id);
            assert_eq!(
                open_blob_payload(&aead, &other, sealed, true).err(),
                Some(BlobOpenError::NotAuthentic)
            );
        }
    }
}
