//! The repository layer: the one owner of every object a repository stores.
//!
//! Everything that touches the store goes through here: the typed layout (which object lives
//! at which path), the store itself, the one pack reader (every blob read from a pack is
//! verified in one place), the packer (the only writer of packs), index files and their local
//! cache, locks, and the records of archived WAL files. The pipelines above (backup, restore,
//! check, prune, copy, stats, ls, forget) name objects and never paths, and never reach the
//! store; so whatever a repository does to every object (encryption, next) happens here.
//!
//! It must never import a pipeline or an integration.

mod index;
mod index_cache;
mod layout;
mod lock;
mod objects;
mod pack_reader;
mod packer;
mod repository;
mod store;
mod tmp;
mod wal_store;

pub(crate) use index::{load_index_file, load_index_files};
pub use index_cache::{Fingerprint, IndexCache};
pub(crate) use layout::{Kind, Object};
pub use lock::Lock;
pub(crate) use pack_reader::Coalesce;
pub(crate) use packer::{Packed, Packer};
pub use repository::{DEFAULT_LOCK_WAIT, InitOptions, KeyInfo, Repository, default_cache_dir};
pub(crate) use repository::{resolve_in, resolve_in_filtered, sort_by_time};
pub use store::{Location, S3Location, S3Settings, Store};
pub(crate) use tmp::{STALE_TMP, modified_before};
pub(crate) use wal_store::{add_wal_record, delete_wal_record, read_wal_record, wal_records};
pub use wal_store::{load_wal_record, wal_names};
