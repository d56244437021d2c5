//! cairn's engine: a content-addressed, deduplicating backup repository for database files.
//!
//! Files are cut into content-defined chunks (FastCDC), each chunk is named by its BLAKE3
//! digest and stored once, compressed, in pack files; snapshots are Merkle trees of directory
//! listings and chunk lists. The repository is reached through OpenDAL; a local RocksDB cache
//! indexes it and can always be rebuilt from it.
//!
//! ```
//! use cairn_engine::{
//!     BackupOptions, InitOptions, Location, NoProgress, Repository, RestoreOptions, backup, restore,
//! };
//! # fn main() -> cairn_engine::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let data = dir.path().join("pgdata");
//! std::fs::create_dir(&data).unwrap();
//! std::fs::write(data.join("16384"), vec![7u8; 100_000]).unwrap();
//!
//! let location = Location::parse(dir.path().join("repo").to_str().unwrap())?;
//! Repository::init(&location, &InitOptions::default())?;
//! let mut repo = Repository::open(&location, &dir.path().join("cache"))?;
//!
//! let opts = BackupOptions { paths: vec![data], ..Default::default() };
//! let done = backup(&mut repo, &opts, None, &NoProgress)?;
//!
//! let (_, snapshot) = repo.resolve(&done.id.short())?;
//! let target = dir.path().join("restored");
//! let opts = RestoreOptions { target: target.clone(), ..Default::default() };
//! restore(&mut repo, &snapshot, &opts, &NoProgress)?;
//! assert_eq!(std::fs::read(target.join("16384")).unwrap(), vec![7u8; 100_000]);
//! # Ok(())
//! # }
//! ```

// Without the repository feature only the format remains; parts of it serve only the pipelines.
#![cfg_attr(not(feature = "repository"), allow(dead_code, unused_imports))]

#[cfg(feature = "repository")]
mod backup;
#[cfg(feature = "repository")]
mod check;
mod chunker;
mod config;
#[cfg(feature = "repository")]
mod copy;
mod crypto;
mod error;
#[cfg(feature = "repository")]
mod filter;
#[cfg(feature = "repository")]
mod forget;
mod id;
mod index_file;
mod lock_file;
#[cfg(feature = "repository")]
mod ls;
mod manifest;
mod pack;
mod pages;
#[cfg(feature = "repository")]
mod pg;
mod pitr;
mod policy;
mod progress;
#[cfg(feature = "repository")]
mod prune;
#[cfg(feature = "repository")]
mod reach;
#[cfg(feature = "repository")]
mod repo;
#[cfg(feature = "repository")]
mod restore;
#[cfg(feature = "repository")]
mod rotate;
mod sealing;
mod snapshot;
#[cfg(feature = "repository")]
mod stats;
mod wal;
mod wire;

#[cfg(feature = "repository")]
pub use backup::{Additions, BackupOptions, BackupResult, backup, backup_with};
#[cfg(feature = "repository")]
pub use check::{Affected, CheckOptions, CheckReport, CheckStats, Problem, ReadData, check};
pub use config::{
    Config, ConfigFile, DEFAULT_AVG_CHUNK, DEFAULT_PACK_SIZE, FORMAT_VERSION, PLAIN_FORMAT_VERSION,
    SEALED_FORMAT_VERSION,
};
#[cfg(feature = "repository")]
pub use copy::{CopyReport, copy};
pub use crypto::{Cipher, KdfParams, KeyFile, Password};
pub use error::{Error, Result};
#[cfg(feature = "repository")]
pub use forget::{delete_snapshots, forget};
pub use id::{Id, IdHasher};
pub use lock_file::LockKind;
#[cfg(feature = "repository")]
pub use ls::walk;
pub use manifest::{Node, NodeKind};
pub use pages::{PageGlob, PageGroup, PageRule, single_pages};
#[cfg(feature = "repository")]
pub use pg::{
    Archived, PG_BASE_TAG, PG_EXCLUDES, PgBackupOptions, PgConnect, PgRestoreOptions,
    PgRestoreReport, PgTarget, PrefetchOptions, SpoolOptions, WalFile, archive_wal,
    archive_wal_batch, archive_wal_spooled, base_backup, expire_wal, fetch_wal, pg_inventory,
    pg_restore, prefetch_wal, prefetch_wanted, take_prefetched,
};
pub use pitr::{PgBaseBackup, PgInventory, PgTimeline};
pub use policy::{Group, RetentionPolicy, Verdict, apply_policy, parse_duration};
pub use progress::{NoProgress, Progress};
#[cfg(feature = "repository")]
pub use prune::{DEFAULT_MAX_UNUSED, PruneOptions, PruneReport, prune};
#[cfg(feature = "repository")]
pub use repo::Lock;
#[cfg(feature = "repository")]
pub use repo::{
    DEFAULT_LOCK_WAIT, InitOptions, KeyInfo, Location, Repository, S3Location, S3Settings, Store,
    default_cache_dir, load_wal_record, wal_names,
};
#[cfg(feature = "repository")]
pub use restore::{RestoreOptions, RestoreSummary, restore};
#[cfg(feature = "repository")]
pub use rotate::{RotateReport, rotate_keys};
pub use snapshot::{PgInfo, Snapshot, SnapshotFilter, Summary};
#[cfg(feature = "repository")]
pub use stats::{RepoStats, SnapshotStats, stats};
pub use wal::{WalRecord, parse_lsn, segment_name};

/// Decoders of untrusted bytes and the pipeline's stages, exposed for the fuzz targets, format
/// tests and micro-benchmarks. Not a stable API.
#[doc(hidden)]
pub mod decode {
    pub use crate::chunker::{Chunker, keyed_gear};
    pub use crate::config::{ChunkerParams, Config, ListSplitParams};
    pub use crate::crypto::{Keys, Sealed, SecretKey, padme};
    pub use crate::index_file::{PackRecord, decode_index, encode_index};
    pub use crate::lock_file::LockFile;
    pub use crate::manifest::{Content, ContentRef, Tree, decode_list, encode_list};
    pub use crate::pack::{
        BlobEntry, BlobKind, Compression, PackWriter, compress, decode_pack, open_blob, verify_blob,
    };
    #[cfg(feature = "repository")]
    pub use crate::repo::IndexCache;
    pub use crate::sealing::Sealing;
    pub use crate::snapshot::Snapshot;
    pub use crate::wal::WalRecord;
}
