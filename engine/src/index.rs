//! The index: which pack holds each blob.
//!
//! Two halves:
//! - **Index files** in the repository (`index/<id>`), immutable, each describing a set of packs
//!   that were fully stored before the index file was written. They are the truth.
//! - **The local cache**, a RocksDB database under the cache directory, mapping
//!   `kind ‖ blob id → pack id ‖ location` and recording which index files it has absorbed.
//!   It is only ever derived from index files: deleting it loses nothing, and the next command
//!   rebuilds it. Lookups go to RocksDB, so memory stays bounded however large the repository.
//!
//! The cache must never hold an entry that no index file in the repository records: that would
//! let a backup skip uploading a chunk the repository does not have. Entries therefore enter
//! the cache only by absorbing an index file that has already been stored.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rocksdb::{DB, Options, WriteBatch};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::{BLOB_HEADER_LEN, BlobEntry, BlobKind, ENTRY_LEN, PREAMBLE_LEN};
use crate::store::Store;
use crate::wire::{DecodeResult, Malformed, Put, Reader};

/// Index file format version written and read by this build.
pub const INDEX_VERSION: u32 = 1;
const INDEX_MAGIC: &[u8; 8] = b"CAIRNIDX";

/// One pack as an index file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackRecord {
    /// The pack's id (BLAKE3 of its bytes).
    pub id: Id,
    /// Its size in bytes.
    pub len: u64,
    /// Its blobs, in pack order.
    pub blobs: Vec<BlobEntry>,
}

/// Encodes an index file.
pub fn encode_index(packs: &[PackRecord]) -> Vec<u8> {
    let blobs: usize = packs.iter().map(|p| p.blobs.len()).sum();
    let mut out = Vec::with_capacity(20 + packs.len() * 44 + blobs * ENTRY_LEN);
    out.extend_from_slice(INDEX_MAGIC);
    out.put_u32(INDEX_VERSION);
    out.put_u32(0);
    out.put_u32(packs.len() as u32);
    for p in packs {
        out.put_id(&p.id);
        out.put_u64(p.len);
        out.put_u32(p.blobs.len() as u32);
        for b in &p.blobs {
            b.encode_into(&mut out);
        }
    }
    out
}

/// Decodes an index file, checking that every entry lies inside its pack.
pub fn decode_index(bytes: &[u8]) -> DecodeResult<Vec<PackRecord>> {
    let mut r = Reader::new(bytes);
    if r.take(8)? != INDEX_MAGIC {
        return Err(Malformed::new("not an index file: magic is wrong"));
    }
    let version = r.u32()?;
    if version != INDEX_VERSION {
        return Err(Malformed::new(format!(
            "index version {version}, this build reads {INDEX_VERSION}"
        )));
    }
    let flags = r.u32()?;
    if flags != 0 {
        return Err(Malformed::new(format!("unknown index flags {flags:#x}")));
    }
    let count = r.u32()? as usize;
    if count > r.remaining() / 44 {
        return Err(Malformed::new(format!("{count} packs cannot fit")));
    }
    let mut packs = Vec::with_capacity(count);
    for _ in 0..count {
        let id = r.id()?;
        let len = r.u64()?;
        let n = r.u32()? as usize;
        if n > r.remaining() / ENTRY_LEN {
            return Err(Malformed::new(format!(
                "pack {} claims {n} blobs that cannot fit",
                id.short()
            )));
        }
        let mut blobs = Vec::with_capacity(n);
        for _ in 0..n {
            let b = BlobEntry::decode_from(&mut r)?;
            if b.offset < PREAMBLE_LEN || b.end() > len {
                return Err(Malformed::new(format!(
                    "blob {} at {}..{} lies outside pack {} of {len} bytes",
                    b.id.short(),
                    b.offset,
                    b.offset + BLOB_HEADER_LEN + u64::from(b.stored_len),
                    id.short()
                )));
            }
            blobs.push(b);
        }
        packs.push(PackRecord { id, len, blobs });
    }
    r.expect_end()?;
    Ok(packs)
}

/// Where a blob is: its pack and its entry there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack holding the blob.
    pub pack: Id,
    /// The blob's entry in that pack.
    pub entry: BlobEntry,
}

/// Storage path of an index file.
pub fn index_path(id: &Id) -> String {
    format!("index/{id}")
}

/// Storage path of a pack.
pub fn pack_path(id: &Id) -> String {
    format!("data/{}/{id}", &id.to_hex()[..2])
}

/// Parses the id out of a pack or index path; `None` for anything else.
pub fn id_from_path(path: &str) -> Option<Id> {
    path.rsplit('/').next().and_then(|n| n.parse().ok())
}

const CACHE_VERSION: &[u8] = b"cairn-index-cache-1";
const KEY_VERSION: &[u8] = b"v";
const PREFIX_BLOB: u8 = b'b';
const PREFIX_ABSORBED: u8 = b'i';

/// The local RocksDB cache of the repository's index.
#[derive(Debug)]
pub struct IndexCache {
    db: DB,
    path: PathBuf,
    /// Set when the shared cache was locked by another process and this one uses a private
    /// copy, removed on drop.
    private: bool,
}

impl Drop for IndexCache {
    fn drop(&mut self) {
        if self.private {
            let _ = DB::destroy(&Options::default(), &self.path);
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn blob_key(kind: BlobKind, id: &Id) -> [u8; 34] {
    let mut k = [0u8; 34];
    k[0] = PREFIX_BLOB;
    k[1] = kind.code();
    k[2..].copy_from_slice(&id.0);
    k
}

fn absorbed_key(id: &Id) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = PREFIX_ABSORBED;
    k[1..].copy_from_slice(&id.0);
    k
}

impl IndexCache {
    /// Opens (creating if needed) the cache in `dir`. If another cairn process holds it, a
    /// private cache is built beside it instead, so that two commands can run at once.
    pub fn open(dir: &Path) -> Result<IndexCache> {
        let cache_err = |detail: String| Error::Cache {
            path: dir.to_path_buf(),
            detail,
        };
        std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
        let shared = dir.join("index");
        let (db, path, private) = match open_db(&shared) {
            Ok(db) => (db, shared, false),
            Err(e) if e.contains("lock") => {
                let private = dir.join(format!("index-private-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&private);
                (open_db(&private).map_err(cache_err)?, private, true)
            }
            Err(e) => {
                // A damaged cache is rebuilt rather than reported: it holds nothing of its own.
                let _ = DB::destroy(&Options::default(), &shared);
                let _ = std::fs::remove_dir_all(&shared);
                (
                    open_db(&shared).map_err(|e2| cache_err(format!("{e}; then {e2}")))?,
                    shared,
                    false,
                )
            }
        };
        let mut cache = IndexCache { db, path, private };
        match cache.db.get(KEY_VERSION).map_err(|e| cache.err(e))? {
            Some(v) if v == CACHE_VERSION => {}
            _ => {
                cache.clear()?;
            }
        }
        Ok(cache)
    }

    fn err(&self, e: rocksdb::Error) -> Error {
        Error::Cache {
            path: self.path.clone(),
            detail: e.to_string(),
        }
    }

    /// True if this process uses a private cache because the shared one is in use.
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// Empties the cache.
    fn clear(&mut self) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range(&[0u8][..], &[0xffu8; 40][..]);
        batch.put(KEY_VERSION, CACHE_VERSION);
        self.db.write(batch).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The index files absorbed so far.
    fn absorbed(&self) -> Result<HashSet<Id>> {
        let mut out = HashSet::new();
        for item in self.db.prefix_iterator([PREFIX_ABSORBED]) {
            let (k, _) = item.map_err(|e| self.err(e))?;
            if k.first() != Some(&PREFIX_ABSORBED) {
                break;
            }
            if let Some(id) = Id::from_slice(&k[1..]) {
                out.insert(id);
            }
        }
        Ok(out)
    }

    /// Records the blobs of `packs` as described by index file `index_id`.
    pub fn absorb(&self, index_id: &Id, packs: &[PackRecord]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for p in packs {
            for b in &p.blobs {
                let mut v = Vec::with_capacity(32 + ENTRY_LEN);
                v.put_id(&p.id);
                b.encode_into(&mut v);
                batch.put(blob_key(b.kind, &b.id), v);
            }
        }
        batch.put(absorbed_key(index_id), b"");
        self.db.write(batch).map_err(|e| self.err(e))
    }

    /// Where a blob is, if the repository has it.
    pub fn get(&self, kind: BlobKind, id: &Id) -> Result<Option<BlobLocation>> {
        let Some(v) = self
            .db
            .get_pinned(blob_key(kind, id))
            .map_err(|e| self.err(e))?
        else {
            return Ok(None);
        };
        let mut r = Reader::new(&v);
        let decoded = r.id().and_then(|pack| {
            let entry = BlobEntry::decode_from(&mut r)?;
            Ok(BlobLocation { pack, entry })
        });
        decoded.map(Some).map_err(|m| Error::Cache {
            path: self.path.clone(),
            detail: format!("entry for {} unreadable: {}", id.short(), m.0),
        })
    }

    /// True if the repository has the blob.
    pub fn contains(&self, kind: BlobKind, id: &Id) -> Result<bool> {
        Ok(self
            .db
            .get_pinned(blob_key(kind, id))
            .map_err(|e| self.err(e))?
            .is_some())
    }

    /// Brings the cache up to date with the repository's index files. Index files that cannot
    /// be read are skipped and described in the returned warnings; if an absorbed index file
    /// has gone from the repository, the cache is rebuilt from scratch.
    pub fn sync(&mut self, store: &Store) -> Result<Vec<String>> {
        let listed: HashSet<Id> = store
            .list("index/")?
            .iter()
            .filter_map(|p| id_from_path(p))
            .collect();
        let absorbed = self.absorbed()?;
        if !absorbed.is_subset(&listed) {
            self.clear()?;
            return self.absorb_new(store, &listed, &HashSet::new());
        }
        self.absorb_new(store, &listed, &absorbed)
    }

    fn absorb_new(
        &self,
        store: &Store,
        listed: &HashSet<Id>,
        absorbed: &HashSet<Id>,
    ) -> Result<Vec<String>> {
        let todo: Vec<Id> = listed.difference(absorbed).copied().collect();
        let mut warnings = Vec::new();
        // Read and decode in parallel, a bounded group at a time, and write sequentially.
        for group in todo.chunks(64) {
            let loaded: Vec<(Id, Result<Vec<PackRecord>>)> = group
                .par_iter()
                .map(|id| (*id, load_index_file(store, id)))
                .collect();
            for (id, res) in loaded {
                match res {
                    Ok(packs) => self.absorb(&id, &packs)?,
                    Err(e) => warnings.push(format!("skipped index file {}: {e}", id.short())),
                }
            }
        }
        Ok(warnings)
    }
}

/// Reads, verifies and decodes one index file.
pub fn load_index_file(store: &Store, id: &Id) -> Result<Vec<PackRecord>> {
    let what = || format!("index file {}", id.short());
    let bytes = store.read(&index_path(id))?;
    if Id::of(&bytes) != *id {
        return Err(Error::corrupt(what(), "contents do not match its name"));
    }
    decode_index(&bytes).map_err(|m| m.about(what()))
}

fn open_db(path: &Path) -> std::result::Result<DB, String> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_max_open_files(256);
    opts.set_write_buffer_size(16 << 20);
    opts.set_keep_log_file_num(2);
    opts.increase_parallelism(2);
    DB::open(&opts, path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::{Compression, PackWriter};
    use proptest::prelude::*;

    fn record() -> PackRecord {
        let mut w = PackWriter::new();
        for i in 0..5u8 {
            let raw = vec![i; 100 + usize::from(i)];
            w.add(
                BlobKind::Data,
                Id::of(&raw),
                raw.len() as u32,
                Compression::None,
                &raw,
            );
        }
        let (id, bytes, blobs) = w.finish();
        PackRecord {
            id,
            len: bytes.len() as u64,
            blobs,
        }
    }

    #[test]
    fn index_file_round_trip() {
        let packs = vec![record(), record()];
        assert_eq!(decode_index(&encode_index(&packs)).unwrap(), packs);
        assert_eq!(decode_index(&encode_index(&[])).unwrap(), vec![]);
    }

    #[test]
    fn entry_outside_pack_is_rejected() {
        let mut p = record();
        p.len = 50;
        assert!(decode_index(&encode_index(&[p])).is_err());
    }

    #[test]
    fn cache_absorbs_and_rebuilds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::Location::Memory, true).unwrap();
        let p = record();
        let bytes = encode_index(std::slice::from_ref(&p));
        let iid = Id::of(&bytes);
        store.write(&index_path(&iid), bytes).unwrap();
        let mut cache = IndexCache::open(dir.path()).unwrap();
        assert!(cache.sync(&store).unwrap().is_empty());
        let b = p.blobs[2];
        let loc = cache.get(BlobKind::Data, &b.id).unwrap().unwrap();
        assert_eq!(
            loc,
            BlobLocation {
                pack: p.id,
                entry: b
            }
        );
        assert!(!cache.contains(BlobKind::Tree, &b.id).unwrap());
        // A second process sees the lock and works on a private copy.
        let mut other = IndexCache::open(dir.path()).unwrap();
        assert!(other.is_private());
        other.sync(&store).unwrap();
        assert!(other.contains(BlobKind::Data, &b.id).unwrap());
        drop(other);
        // An index file removed from the repository forces a rebuild.
        store.delete(&index_path(&iid)).unwrap();
        cache.sync(&store).unwrap();
        assert!(!cache.contains(BlobKind::Data, &b.id).unwrap());
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes: Vec<u8>) {
            let _ = decode_index(&bytes);
        }
    }
}
