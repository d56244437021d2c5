//! The index: which pack holds each blob.
//!
//! Two halves (this module reads the first; `index_cache` owns the second):
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

use crate::error::{Error, Result};
use crate::id::Id;
use crate::index_file::{PackRecord, decode_index};

use super::layout::Object;
use super::objects::Objects;

/// Reads, verifies and decodes the index files `ids` in parallel, each with its own outcome:
/// callers decide whether an unreadable one is a warning (the cache), a finding (check) or a
/// reason to stop (prune).
pub(crate) fn load_index_files(
    objects: &Objects,
    ids: &[Id],
) -> Vec<(Id, Result<Vec<PackRecord>>)> {
    use rayon::prelude::*;
    objects.with_parallel_reads(|| {
        ids.par_iter()
            .map(|id| (*id, load_index_file(objects, id)))
            .collect()
    })
}

/// Reads, verifies and decodes one index file.
pub(crate) fn load_index_file(objects: &Objects, id: &Id) -> Result<Vec<PackRecord>> {
    let what = || format!("index file {}", id.short());
    let bytes = objects.read(&Object::Index(*id))?;
    if objects.sealing().hasher().id(&bytes) != *id {
        return Err(Error::corrupt(what(), "contents do not match its name"));
    }
    decode_index(&bytes).map_err(|m| m.about(what()))
}
