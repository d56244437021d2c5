//! Typed access to a repository's objects: the only holder of the [`Store`] above the storage
//! layer. Pipelines name objects ([`Object`]) and never paths; whatever a repository does to
//! every object it stores (the layout today, encryption next) happens here.

use std::ops::Range;

use crate::error::Result;
use crate::id::Id;
use crate::sealing::Sealing;

use super::layout::{Kind, Object};
use super::store::{Location, Store, Upload};

/// A repository's objects in its store, sealed as the repository's format wants.
#[derive(Debug, Clone)]
pub(crate) struct Objects {
    store: Store,
    sealing: Sealing,
}

/// What a directory of the repository holds: its objects, and paths there that are not where
/// an object of its kind would be (strays, which `check` reports and nothing else reads).
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) objects: Vec<Object>,
    pub(crate) stray: Vec<String>,
}

impl Objects {
    /// Objects in `store`, unsealed until [`Objects::set_sealing`] (which opening an
    /// encrypted repository calls once it has its keys).
    pub(crate) fn new(store: Store) -> Objects {
        Objects {
            store,
            sealing: Sealing::plain(),
        }
    }

    /// Seals and opens objects as `sealing` says from now on.
    /// Seals with `sealing` from now on, keeping whether packs hold frames.
    pub(crate) fn set_sealing(&mut self, sealing: Sealing) {
        let framed = self.sealing.is_framed();
        self.sealing = sealing.with_frames(framed);
    }

    /// Whether packs hold frames (the config's format version 3).
    pub(crate) fn set_framed(&mut self, framed: bool) {
        self.sealing = self.sealing.clone().with_frames(framed);
    }

    /// How objects and blobs are sealed.
    pub(crate) fn sealing(&self) -> &Sealing {
        &self.sealing
    }

    fn open(&self, object: &Object, stored: Vec<u8>) -> Result<Vec<u8>> {
        match object.sealed() {
            Some(kind) => self.sealing.open_object(kind, &object.path(), stored),
            None => Ok(stored),
        }
    }

    fn seal(&self, object: &Object, plain: Vec<u8>) -> Vec<u8> {
        match object.sealed() {
            Some(kind) => self.sealing.seal_object(kind, &object.path(), plain),
            None => plain,
        }
    }

    /// Where the repository is.
    pub(crate) fn location(&self) -> &Location {
        self.store.location()
    }

    /// Runs `f`, whose parallel reads go through the store's I/O threads (see
    /// [`Store::with_parallel_reads`]).
    pub(crate) fn with_parallel_reads<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.store.with_parallel_reads(f)
    }

    /// Reads a whole object (opened, if it is sealed: what its writer gave [`Objects::write`]).
    pub(crate) fn read(&self, object: &Object) -> Result<Vec<u8>> {
        self.open(object, self.store.read(&object.path())?)
    }

    /// Reads a whole object, or `None` if it is not there.
    pub(crate) fn read_opt(&self, object: &Object) -> Result<Option<Vec<u8>>> {
        match self.store.read_opt(&object.path())? {
            Some(stored) => self.open(object, stored).map(Some),
            None => Ok(None),
        }
    }

    /// The data-key epoch a sealed whole object (index file, snapshot, WAL record) was
    /// written under, from its header; `None` in an unencrypted repository.
    pub(crate) fn object_epoch(&self, object: &Object) -> Result<Option<u32>> {
        if self.sealing.keys().is_none() {
            return Ok(None);
        }
        let head = self.store.read_range(&object.path(), 0..16)?;
        Ok(Some(u32::from_le_bytes([
            head[12], head[13], head[14], head[15],
        ])))
    }

    /// The data-key epoch of a pack of `len` bytes (its sealed directory's); `None` in an
    /// unencrypted repository.
    pub(crate) fn pack_epoch(&self, pack: &Id, len: u64) -> Result<Option<u32>> {
        if self.sealing.keys().is_none() {
            return Ok(None);
        }
        let what = || format!("pack {}", pack.short());
        let trailer = self.read_pack_range(pack, len.saturating_sub(12)..len)?;
        let dir_len = crate::pack::decode_trailer(&trailer, len).map_err(|m| m.about(what()))?;
        let dir_start = len - 12 - u64::from(dir_len);
        let head = self.read_pack_range(pack, dir_start..dir_start + 16)?;
        Ok(Some(u32::from_le_bytes([
            head[12], head[13], head[14], head[15],
        ])))
    }

    /// Reads `range` of a pack.
    pub(crate) fn read_pack_range(&self, pack: &Id, range: Range<u64>) -> Result<Vec<u8>> {
        self.store.read_range(&Object::Pack(*pack).path(), range)
    }

    /// Writes an object whole, replacing what was there (atomically: readers see the old
    /// object or the new one).
    pub(crate) fn write(&self, object: &Object, data: Vec<u8>) -> Result<()> {
        self.store.write(&object.path(), self.seal(object, data))
    }

    /// Writes an object only if nothing is there; false if something was.
    pub(crate) fn write_new(&self, object: &Object, data: Vec<u8>) -> Result<bool> {
        self.store
            .write_new(&object.path(), self.seal(object, data))
    }

    /// Starts writing a pack in the background.
    pub(crate) fn spawn_write_pack(&self, id: &Id, data: Vec<u8>) -> Upload {
        self.store.spawn_write(&Object::Pack(*id).path(), data)
    }

    /// Waits for a background write.
    pub(crate) fn finish(&self, upload: Upload) -> Result<()> {
        self.store.finish(upload)
    }

    /// An object's size, or `None` if it is not there.
    pub(crate) fn size(&self, object: &Object) -> Result<Option<u64>> {
        self.store.size(&object.path())
    }

    /// Deletes an object (durably, on a local disk); deleting a missing one succeeds.
    pub(crate) fn delete(&self, object: &Object) -> Result<()> {
        self.store.delete(&object.path())
    }

    /// Everything in `kind`'s directory.
    pub(crate) fn list(&self, kind: Kind) -> Result<Listing> {
        let mut listing = Listing::default();
        for path in self.store.list(kind.dir())? {
            match Object::parse(kind, &path) {
                Some(o) => listing.objects.push(o),
                None => listing.stray.push(path),
            }
        }
        Ok(listing)
    }

    /// The ids of the packs, index files or snapshots stored; strays left out.
    pub(crate) fn list_ids(&self, kind: Kind) -> Result<Vec<Id>> {
        Ok(self
            .list(kind)?
            .objects
            .iter()
            .filter_map(Object::id)
            .collect())
    }

    /// The bytes of the config, packs, index files and snapshots: what the repository takes
    /// for its snapshots (WAL records and locks are not counted).
    pub(crate) fn stored_bytes(&self) -> Result<u64> {
        let mut total = self.size(&Object::Config)?.unwrap_or(0);
        for kind in [Kind::Pack, Kind::Index, Kind::Snapshot] {
            let paths = self.store.list(kind.dir())?;
            let sizes: Vec<u64> = self.with_parallel_reads(|| {
                use rayon::prelude::*;
                paths
                    .par_iter()
                    .map(|p| self.store.size(p).map(Option::unwrap_or_default))
                    .collect::<Result<_>>()
            })?;
            total += sizes.iter().sum::<u64>();
        }
        Ok(total)
    }

    /// Removes what failed or killed writes left in `tmp/` an hour ago or more (local disks
    /// only: an object store shows a write whole or not at all); returns how many files went.
    /// Only prune calls it: nothing writes there under its exclusive lock but `policy`, which
    /// takes no lock and is done in a moment.
    pub(crate) fn remove_stale_tmp(&self) -> Result<u64> {
        match self.location().local_path() {
            Some(root) => super::tmp::remove_old_files(&root.join("tmp"), super::tmp::STALE_TMP),
            None => Ok(0),
        }
    }

    /// Names of everything at the root: for `init`, which refuses a place in use.
    pub(crate) fn list_root(&self) -> Result<Vec<String>> {
        self.store.list_root()
    }
}
