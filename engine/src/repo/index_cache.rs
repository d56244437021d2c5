//! The local RocksDB cache of the repository's index files (see the module above for its
//! invariant: it only ever holds what a stored index file records).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rocksdb::{DB, Options, WriteBatch, WriteOptions};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::index_file::{BlobLocation, PackRecord};
use crate::pack::{BlobEntry, BlobKind, ENTRY_LEN};
use crate::wire::{Put, Reader};

use super::index::load_index_files;
use super::layout::Kind;
use super::objects::Objects;

/// Version 2: entries carry their place in a frame (repository format version 3).
const CACHE_VERSION: &[u8] = b"cairn-index-cache-2";
const KEY_VERSION: &[u8] = b"v";
const PREFIX_BLOB: u8 = b'b';
const PREFIX_ABSORBED: u8 = b'i';

/// The local RocksDB cache of the repository's index.
#[derive(Debug)]
pub struct IndexCache {
    /// `None` for a repository opened to append only (see [`IndexCache::detached`]).
    db: Option<DB>,
    path: PathBuf,
    /// Set when the shared cache was locked by another process and this one uses a private
    /// copy, removed on drop.
    private: bool,
}

impl Drop for IndexCache {
    fn drop(&mut self) {
        // Leave nothing in the write-ahead log: replaying it would cost the next command
        // more than this flush costs now.
        if let Some(db) = &self.db {
            let _ = db.flush();
        }
        if self.private {
            let _ = DB::destroy(&Options::default(), &self.path);
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Sorted batches at least this long, with at most [`MERGE_STEPS`] cache entries per id,
/// are looked up by [`IndexCache::get_sorted`].
const MERGE_MIN: usize = 64;
/// Entries an iterator steps over before it seeks instead (a seek costs about as much as
/// a few dozen steps).
const MERGE_STEPS: usize = 16;

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
        Self::open_noting(dir, &mut Vec::new())
    }

    /// [`IndexCache::open`], adding to `warnings` what was found damaged and rebuilt.
    pub(crate) fn open_noting(dir: &Path, warnings: &mut Vec<String>) -> Result<IndexCache> {
        let cache_err = |detail: String| Error::Cache {
            path: dir.to_path_buf(),
            detail,
        };
        // Something else where the cache belongs is moved aside, not deleted: cairn did not
        // put it there.
        if std::fs::symlink_metadata(dir).is_ok_and(|m| !m.is_dir()) {
            let mut aside = dir.as_os_str().to_owned();
            aside.push(format!(".not-a-cache-{}", std::process::id()));
            std::fs::rename(dir, &aside).map_err(|e| Error::io("cannot move aside", dir, e))?;
            warnings.push(format!(
                "{} was not a directory: moved to {} and the index cache rebuilt in its place",
                dir.display(),
                Path::new(&aside).display()
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
        let shared = dir.join("index");
        remove_stale_private_caches(dir);
        let (db, path, private) = match open_db(&shared) {
            Ok(db) => (db, shared, false),
            // A cache held by another process (or handle) is reported as a failure to lock its
            // LOCK file; other errors (a damaged cache) do not name that file.
            Err(e) if e.contains("/LOCK") => {
                let private = dir.join(format!("index-private-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&private);
                (open_db(&private).map_err(cache_err)?, private, true)
            }
            Err(e) => {
                // A damaged cache is rebuilt rather than reported as an error: it holds
                // nothing of its own.
                warnings.push(format!(
                    "the local index cache at {} is damaged ({e}); rebuilding it from the repository",
                    shared.display()
                ));
                remove_cache_files(&shared);
                (
                    open_db(&shared).map_err(|e2| cache_err(format!("{e}; then {e2}")))?,
                    shared,
                    false,
                )
            }
        };
        let version = db.get(KEY_VERSION);
        let mut cache = IndexCache {
            db: Some(db),
            path,
            private,
        };
        match version.map_err(|e| cache.err(e)) {
            Ok(Some(v)) if v == CACHE_VERSION => {}
            Ok(_) => cache.clear()?,
            Err(e @ Error::CacheDamaged { .. }) => {
                warnings.push(format!("{e}"));
                cache.rebuild()?;
            }
            Err(e) => return Err(e),
        }
        Ok(cache)
    }

    /// No cache at all, for a command that only adds new objects (WAL archiving): every blob
    /// looks absent, so nothing is deduplicated against what the repository already holds,
    /// and what is added is not recorded. Opening RocksDB would cost a WAL segment's archiving
    /// more than its compression (benches/SPACE.md).
    pub(crate) fn detached() -> IndexCache {
        IndexCache {
            db: None,
            path: PathBuf::new(),
            private: false,
        }
    }

    fn err(&self, e: rocksdb::Error) -> Error {
        match e.kind() {
            rocksdb::ErrorKind::Corruption => self.damaged(e.to_string()),
            _ => Error::Cache {
                path: self.path.clone(),
                detail: e.to_string(),
            },
        }
    }

    fn damaged(&self, detail: String) -> Error {
        Error::CacheDamaged {
            path: self.path.clone(),
            detail,
        }
    }

    /// Throws the cache away and starts an empty one in its place, for a cache found
    /// damaged while in use; the caller absorbs the index files again ([`IndexCache::sync`]).
    pub(crate) fn rebuild(&mut self) -> Result<()> {
        let Some(db) = self.db.take() else {
            return Ok(());
        };
        drop(db);
        remove_cache_files(&self.path);
        let db = open_db(&self.path).map_err(|detail| Error::Cache {
            path: self.path.clone(),
            detail,
        })?;
        self.db = Some(db);
        self.clear()
    }

    /// Where the cache's files are.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True if this process uses a private cache because the shared one is in use.
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// Empties the cache.
    pub(crate) fn clear(&self) -> Result<()> {
        let Some(db) = &self.db else {
            return Ok(());
        };
        let mut batch = WriteBatch::default();
        batch.delete_range(&[0u8][..], &[0xffu8; 40][..]);
        batch.put(KEY_VERSION, CACHE_VERSION);
        db.write(batch).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The index files absorbed so far.
    fn absorbed(&self) -> Result<HashSet<Id>> {
        let mut out = HashSet::new();
        let Some(db) = &self.db else {
            return Ok(out);
        };
        for item in db.prefix_iterator([PREFIX_ABSORBED]) {
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

    /// The fingerprint of what the cache holds (see [`Fingerprint`]), and the index files it
    /// has absorbed.
    pub fn fingerprint(&self) -> Result<(Fingerprint, HashSet<Id>)> {
        let mut fp = Fingerprint::default();
        let Some(db) = &self.db else {
            return Ok((fp, HashSet::new()));
        };
        for item in db.prefix_iterator([PREFIX_BLOB]) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if k.first() != Some(&PREFIX_BLOB) {
                break;
            }
            fp.add(&k, &v);
        }
        Ok((fp, self.absorbed()?))
    }

    /// Records the blobs of `packs` as described by index file `index_id`.
    pub fn absorb(&self, index_id: &Id, packs: &[PackRecord]) -> Result<()> {
        let Some(db) = &self.db else {
            return Ok(());
        };
        let mut batch = WriteBatch::default();
        for p in packs {
            for b in &p.blobs {
                let mut v = Vec::with_capacity(32 + ENTRY_LEN);
                v.put_id(&p.id);
                b.encode_cached(&mut v);
                batch.put(blob_key(b.kind, &b.id), v);
            }
        }
        batch.put(absorbed_key(index_id), b"");
        // Without the write-ahead log: a crash loses the whole batch, the entries and the
        // mark together, and the next sync absorbs the file again. Logging every entry of a
        // rebuild would cost more than the rebuild's inserts.
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        db.write_opt(batch, &wo).map_err(|e| self.err(e))
    }

    /// Where a blob is, if the repository has it.
    pub fn get(&self, kind: BlobKind, id: &Id) -> Result<Option<BlobLocation>> {
        let Some(db) = &self.db else {
            return Ok(None);
        };
        let Some(v) = db.get_pinned(blob_key(kind, id)).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        decode_location(&v)
            .map(Some)
            .map_err(|m| self.damaged(format!("entry for {} unreadable: {}", id.short(), m.0)))
    }

    /// Where each of many blobs of one kind is, in one batched lookup. Sorted ids that lie
    /// close together in the cache (a batch that covers a good part of it) are found by one
    /// pass of an iterator; others by a multi-get, whose bloom filters answer absent ids
    /// without reading a block.
    pub fn get_many(&self, kind: BlobKind, ids: &[Id]) -> Result<Vec<Option<BlobLocation>>> {
        let Some(db) = &self.db else {
            return Ok(vec![None; ids.len()]);
        };
        if ids.len() >= MERGE_MIN && ids.is_sorted() {
            let entries = db
                .property_int_value(rocksdb::properties::ESTIMATE_NUM_KEYS)
                .ok()
                .flatten()
                .unwrap_or(u64::MAX);
            if entries / ids.len() as u64 <= MERGE_STEPS as u64 {
                return self.get_sorted(db, kind, ids);
            }
        }
        let Some(cf) = db.cf_handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME) else {
            return ids.iter().map(|id| self.get(kind, id)).collect();
        };
        let keys: Vec<[u8; 34]> = ids.iter().map(|id| blob_key(kind, id)).collect();
        db.batched_multi_get_cf(&cf, &keys, keys.is_sorted())
            .into_iter()
            .zip(ids)
            .map(|(r, id)| {
                let Some(v) = r.map_err(|e| self.err(e))? else {
                    return Ok(None);
                };
                decode_location(&v).map(Some).map_err(|m| {
                    self.damaged(format!("entry for {} unreadable: {}", id.short(), m.0))
                })
            })
            .collect()
    }

    /// `get_many` for sorted ids: one iterator walks the cache alongside them, stepping to the
    /// next id when it is a few entries on and seeking when it is further. A batch that
    /// covers much of the cache (an audit of every chunk) then costs a step per entry rather
    /// than a search per id.
    fn get_sorted(&self, db: &DB, kind: BlobKind, ids: &[Id]) -> Result<Vec<Option<BlobLocation>>> {
        let mut it = db.raw_iterator();
        let mut out = Vec::with_capacity(ids.len());
        let mut positioned = false;
        for id in ids {
            let key = blob_key(kind, id);
            let mut steps = 0;
            loop {
                if !positioned {
                    it.seek(key);
                    positioned = true;
                    break;
                }
                match it.key() {
                    Some(k) if k < &key[..] => {
                        if steps == MERGE_STEPS {
                            it.seek(key);
                            break;
                        }
                        it.next();
                        steps += 1;
                    }
                    // At or past the id, or at the end of the cache.
                    _ => break,
                }
            }
            it.status().map_err(|e| self.err(e))?;
            out.push(match (it.key(), it.value()) {
                (Some(k), Some(v)) if k == &key[..] => Some(decode_location(v).map_err(|m| {
                    self.damaged(format!("entry for {} unreadable: {}", id.short(), m.0))
                })?),
                _ => None,
            });
        }
        Ok(out)
    }

    /// True if the repository has the blob.
    pub fn contains(&self, kind: BlobKind, id: &Id) -> Result<bool> {
        let Some(db) = &self.db else {
            return Ok(false);
        };
        Ok(db
            .get_pinned(blob_key(kind, id))
            .map_err(|e| self.err(e))?
            .is_some())
    }

    /// Brings the cache up to date with the repository's index files. Index files that cannot
    /// be read are skipped and described in the returned warnings; if an absorbed index file
    /// has gone from the repository, the cache is rebuilt from scratch.
    pub(crate) fn sync(&mut self, objects: &Objects) -> Result<Vec<String>> {
        if self.db.is_none() {
            return Ok(Vec::new());
        }
        let listed: HashSet<Id> = objects.list_ids(Kind::Index)?.into_iter().collect();
        let absorbed = self.absorbed()?;
        if !absorbed.is_subset(&listed) {
            self.clear()?;
            return self.absorb_new(objects, &listed, &HashSet::new());
        }
        self.absorb_new(objects, &listed, &absorbed)
    }

    fn absorb_new(
        &self,
        objects: &Objects,
        listed: &HashSet<Id>,
        absorbed: &HashSet<Id>,
    ) -> Result<Vec<String>> {
        let todo: Vec<Id> = listed.difference(absorbed).copied().collect();
        let mut warnings = Vec::new();
        // Read and decode in parallel, a bounded group at a time, and write sequentially.
        for group in todo.chunks(64) {
            for (id, res) in load_index_files(objects, group) {
                match res {
                    Ok(packs) => self.absorb(&id, &packs)?,
                    Err(e) => warnings.push(format!("skipped index file {}: {e}", id.short())),
                }
            }
        }
        Ok(warnings)
    }
}

/// An order-independent digest of a set of cache entries: their count and the sum (mod 2^256)
/// of the BLAKE3 digests of each key and value. Computed over the cache by one sequential scan
/// and over index files as they are decoded, it tells whether the cache holds exactly what the
/// index files say without rebuilding it or holding either in memory.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    entries: u64,
    sum: [u64; 4],
}

impl Fingerprint {
    fn add(&mut self, key: &[u8], value: &[u8]) {
        let mut h = blake3::Hasher::new();
        h.update(&(key.len() as u32).to_le_bytes());
        h.update(key);
        h.update(value);
        let d = h.finalize();
        for (lane, word) in self.sum.iter_mut().zip(d.as_bytes().chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            *lane = lane.wrapping_add(u64::from_le_bytes(w));
        }
        self.entries += 1;
    }

    /// Adds the entries the cache would hold for `packs`.
    pub fn add_packs(&mut self, packs: &[PackRecord]) {
        let mut v = Vec::with_capacity(32 + ENTRY_LEN);
        for p in packs {
            for b in &p.blobs {
                v.clear();
                v.put_id(&p.id);
                b.encode_cached(&mut v);
                self.add(&blob_key(b.kind, &b.id), &v);
            }
        }
    }
}

fn decode_location(v: &[u8]) -> crate::wire::DecodeResult<BlobLocation> {
    let mut r = Reader::new(v);
    let pack = r.id()?;
    let entry = BlobEntry::decode_cached(&mut r)?;
    Ok(BlobLocation { pack, entry })
}

/// Removes a cache's files, whatever is at `path` (a directory of RocksDB's, or anything else).
fn remove_cache_files(path: &Path) {
    let _ = DB::destroy(&Options::default(), path);
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}

/// Removes private caches left by processes that are gone (killed before they could clean up).
fn remove_stale_private_caches(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("index-private-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn open_db(path: &Path) -> std::result::Result<DB, String> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_max_open_files(256);
    opts.set_write_buffer_size(16 << 20);
    opts.set_keep_log_file_num(2);
    opts.increase_parallelism(2);
    // Every lookup is a point lookup of a random id, most of them (during a backup of new
    // data) of ids that are absent: bloom filters answer those without reading a block.
    opts.optimize_for_point_lookup(64);
    // The default column family is named, with these same options (bloom filters, block
    // cache), so that `cf_handle` finds it: batched lookups need the handle, and without it
    // `get_many` would fall back to one lookup per key.
    DB::open_cf_with_opts(
        &opts,
        path,
        [(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, opts.clone())],
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index_file::encode_index;
    use crate::index_file::tests::record;
    use crate::repo::layout::Object;
    use crate::repo::store::{Location, Store};

    #[test]
    fn cache_absorbs_and_rebuilds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Objects::new(Store::open(&Location::Memory, true).unwrap());
        let p = record();
        let bytes = encode_index(std::slice::from_ref(&p));
        let iid = Id::of(&bytes);
        store.write(&Object::Index(iid), bytes).unwrap();
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
        store.delete(&Object::Index(iid)).unwrap();
        cache.sync(&store).unwrap();
        assert!(!cache.contains(BlobKind::Data, &b.id).unwrap());
    }

    #[test]
    fn a_detached_cache_reads_nothing_and_finds_nothing() {
        let store = Objects::new(Store::open(&Location::Memory, true).unwrap());
        let p = record();
        let bytes = encode_index(std::slice::from_ref(&p));
        let iid = Id::of(&bytes);
        store.write(&Object::Index(iid), bytes).unwrap();
        let mut cache = IndexCache::detached();
        assert!(cache.sync(&store).unwrap().is_empty());
        let b = p.blobs[2];
        assert!(!cache.contains(BlobKind::Data, &b.id).unwrap());
        assert_eq!(cache.get(BlobKind::Data, &b.id).unwrap(), None);
        assert_eq!(cache.get_many(BlobKind::Data, &[b.id]).unwrap(), vec![None]);
        cache.absorb(&iid, std::slice::from_ref(&p)).unwrap();
        assert!(!cache.contains(BlobKind::Data, &b.id).unwrap());
        assert!(cache.fingerprint().unwrap().1.is_empty());
    }

    #[test]
    fn fingerprint_tells_whether_the_cache_holds_exactly_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let cache = IndexCache::open(dir.path()).unwrap();
        let p = record();
        let iid = Id::of(b"index file");
        cache.absorb(&iid, std::slice::from_ref(&p)).unwrap();
        let mut expected = Fingerprint::default();
        expected.add_packs(std::slice::from_ref(&p));
        let (fp, absorbed) = cache.fingerprint().unwrap();
        assert_eq!(fp, expected);
        assert_eq!(absorbed, HashSet::from([iid]));
        // An entry that no index file gave, or a changed one, shows.
        let mut other = p.clone();
        other.blobs[0].offset += 1;
        cache.absorb(&iid, std::slice::from_ref(&other)).unwrap();
        assert_ne!(cache.fingerprint().unwrap().0, expected);
        let mut both = Fingerprint::default();
        both.add_packs(std::slice::from_ref(&other));
        assert_eq!(cache.fingerprint().unwrap().0, both);
    }

    #[test]
    fn sorted_lookups_agree_with_single_ones() {
        let dir = tempfile::tempdir().unwrap();
        let cache = IndexCache::open(dir.path()).unwrap();
        // Data and tree entries over the same id range, so the walk crosses kinds; ids far
        // apart and close together, so it both seeks and steps.
        let entry = |i: u32, kind| BlobEntry {
            cipher: None,
            id: Id::of(&i.to_le_bytes()),
            kind,
            compression: crate::pack::Compression::None,
            offset: u64::from(i) * 4096,
            stored_len: 100 + i,
            raw_len: 100 + i,
            frame: None,
        };
        let blobs: Vec<BlobEntry> = (0..2000)
            .filter(|i| i % 3 != 0)
            .map(|i| {
                entry(
                    i,
                    if i % 7 == 0 {
                        BlobKind::Tree
                    } else {
                        BlobKind::Data
                    },
                )
            })
            .collect();
        let pack = PackRecord {
            id: Id::of(b"pack"),
            len: 1 << 30,
            blobs,
        };
        // From table files, and from a memtable over a range tombstone (a cleared cache
        // absorbed again), as well as straight from the memtable.
        cache
            .absorb(&Id::of(b"index"), std::slice::from_ref(&pack))
            .unwrap();
        check_lookups(&cache);
        cache.db.as_ref().unwrap().flush().unwrap();
        // The tuning reaches the column family lookups use: its table files carry filters.
        let props = cache
            .db
            .as_ref()
            .unwrap()
            .property_value(rocksdb::properties::AGGREGATED_TABLE_PROPERTIES)
            .unwrap()
            .unwrap_or_default();
        let filter_bytes: u64 = props
            .split(';')
            .find_map(|p| p.trim().strip_prefix("filter block size="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(filter_bytes > 0, "no bloom filters: {props}");
        check_lookups(&cache);
        cache.clear().unwrap();
        cache
            .absorb(&Id::of(b"index"), std::slice::from_ref(&pack))
            .unwrap();
        check_lookups(&cache);
        cache.db.as_ref().unwrap().flush().unwrap();
        check_lookups(&cache);
    }

    fn check_lookups(cache: &IndexCache) {
        for kind in [BlobKind::Data, BlobKind::Tree] {
            for take in [64, 100, 2000] {
                // Present, absent (every third), and the other kind's ids.
                let mut ids: Vec<Id> = (0..2000u32)
                    .step_by(2000 / take)
                    .map(|i| Id::of(&i.to_le_bytes()))
                    .collect();
                ids.sort();
                let single: Vec<Option<BlobLocation>> =
                    ids.iter().map(|id| cache.get(kind, id).unwrap()).collect();
                assert!(single.iter().any(Option::is_some) && single.iter().any(Option::is_none));
                assert_eq!(
                    cache.get_many(kind, &ids).unwrap(),
                    single,
                    "{kind:?} {take}"
                );
                assert_eq!(
                    cache
                        .get_sorted(cache.db.as_ref().unwrap(), kind, &ids)
                        .unwrap(),
                    single,
                    "{kind:?} {take}"
                );
            }
        }
        // Past the last entry and before the first.
        let ends = [Id([0; 32]), Id([0xff; 32])];
        assert_eq!(
            cache
                .get_sorted(cache.db.as_ref().unwrap(), BlobKind::Data, &ends)
                .unwrap(),
            vec![None, None]
        );
    }
}
