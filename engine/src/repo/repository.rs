//! Opening a repository: the entry point of every operation.
//!
//! [`Repository::init`] creates one; [`Repository::open`] reads its config and brings the local
//! index cache up to date, so that an open `Repository` is always indexed: operations that need
//! the index take `&Repository` and cannot run before it is loaded.

use std::collections::HashMap;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, PoisonError};

use rayon::prelude::*;

use crate::chunker::Chunker;
use crate::config::{Config, ConfigFile, SealedConfig};
use crate::crypto::{Cipher, KdfParams, KeyFile, Keys, Password, SecretKey, config_key};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::id::IdHasher;
use crate::index_file::{BlobLocation, PackRecord};
use crate::lock_file::LockKind;
use crate::manifest::{Content, Tree, decode_list};
use crate::pack::BlobKind;
use crate::sealing::Sealing;
use crate::snapshot::{Snapshot, SnapshotFilter};

use super::index_cache::{Fingerprint, IndexCache};
use super::layout::{Kind, Object};
use super::lock::{Held, Lock};
use super::objects::Objects;
use super::pack_reader::Segment;
use super::store::{Location, Store};

/// Options of `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Average chunk size in bytes (a power of two).
    pub avg_chunk_size: u32,
    /// zstd level, or `None` for no compression.
    pub zstd_level: Option<i32>,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// The cipher, or `None` for an unencrypted (format version 1) repository.
    pub encryption: Option<Cipher>,
    /// The first key's password (required when encrypted).
    pub password: Option<Password>,
    /// How the first key's password is stretched.
    pub kdf: KdfParams,
    /// The format version to write: the newest (3) unless an older cairn must read the
    /// repository (1 unencrypted, 2 encrypted).
    pub format_version: u32,
    /// Format version 3: the raw size of a frame of new blobs.
    pub frame_size: u32,
    /// Format version 3: which files are cut into whole pages (`None`: none).
    pub pages: Option<crate::pages::PageRule>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            avg_chunk_size: crate::config::DEFAULT_AVG_CHUNK,
            zstd_level: Some(crate::config::DEFAULT_ZSTD_LEVEL),
            pack_size: crate::config::DEFAULT_PACK_SIZE,
            encryption: None,
            password: None,
            kdf: KdfParams::default(),
            format_version: crate::config::FORMAT_VERSION,
            frame_size: crate::config::DEFAULT_FRAME_SIZE,
            pages: Some(crate::pages::PageRule::default()),
        }
    }
}

/// Bytes of metadata packs kept in memory.
const META_CACHE_BYTES: u64 = 256 << 20;

/// Weighs cached packs by their size.
#[derive(Debug, Clone, Copy)]
struct PackBytes;

impl quick_cache::Weighter<Id, Arc<Vec<u8>>> for PackBytes {
    fn weight(&self, _: &Id, v: &Arc<Vec<u8>>) -> u64 {
        v.len() as u64
    }
}

/// An open, indexed repository.
pub struct Repository {
    objects: Objects,
    config: Config,
    /// The master key and the key file it was opened with (encrypted repositories).
    unlocked: Option<Unlocked>,
    /// Behind a lock only so that a cache found damaged in use can be rebuilt in place
    /// ([`Repository::with_index`]); every other access reads.
    index: std::sync::RwLock<IndexCache>,
    /// How many times the cache was rebuilt in use.
    index_rebuilds: AtomicU64,
    warnings: Vec<String>,
    /// Where warnings met after opening go (a cache rebuilt mid-command).
    warn: Box<dyn Fn(&str) + Send + Sync>,
    /// Whole metadata packs (trees and lists), fetched once: walking a snapshot reads many
    /// small blobs from few packs, and one read per pack beats one per blob on any store.
    meta_packs: quick_cache::sync::Cache<Id, Arc<Vec<u8>>, PackBytes>,
    lock_wait: std::time::Duration,
    /// The locks taken through [`Repository::lock`] (those still held upgrade), confirmed
    /// before each index file is written.
    locks: std::sync::Mutex<Vec<std::sync::Weak<Held>>>,
}

/// What opening an encrypted repository unlocked.
struct Unlocked {
    master: SecretKey,
    key_id: Id,
    kdf: KdfParams,
    /// Kept to wrap a new master key for this key when a rotation starts.
    password: Password,
}

/// A key of an encrypted repository, as `key list` shows it.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// The key file's id.
    pub id: Id,
    /// The key this repository was opened with.
    pub current: bool,
    /// When and where it was added, and how it is stretched.
    pub file: KeyFile,
}

/// The snapshots that read, oldest first, and the damaged ones with what is wrong.
pub type ReadSnapshots = (Vec<(Id, Snapshot)>, Vec<(Id, Error)>);

/// How long a command waits for a conflicting lock unless told otherwise.
pub const DEFAULT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10 * 60);

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", self.objects.location())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Finds the key that `password` opens and, with it, the config body and the key set.
fn unlock(
    objects: &Objects,
    location: &Location,
    sealed: &SealedConfig,
    password: &Password,
) -> Result<(Config, Keys, Unlocked)> {
    let ids = objects.list_ids(Kind::Key)?;
    if ids.is_empty() {
        return Err(Error::corrupt(
            format!("repository {location}"),
            "it is encrypted but has no key files under keys/",
        ));
    }
    // Each try costs the key derivation (a quarter of a second, 64 MiB): try them in
    // parallel, and stop at the first that opens.
    let files: Vec<(Id, Result<KeyFile>)> = objects.with_parallel_reads(|| {
        ids.par_iter()
            .map(|id| {
                let file = objects
                    .read(&Object::Key(*id))
                    .and_then(|b| KeyFile::decode(&b, id));
                (*id, file)
            })
            .collect()
    });
    let mut ours = Vec::new();
    let mut damaged = Vec::new();
    for (id, file) in files {
        match file {
            Ok(f) if f.repository == sealed.id => ours.push((id, f)),
            Ok(_) => {}
            Err(e) if e.is_damage() => damaged.push(id),
            Err(e) => return Err(e),
        }
    }
    if ours.is_empty() && damaged.is_empty() {
        return Err(Error::corrupt(
            "config",
            format!(
                "it names repository {}, but no readable key file under keys/ belongs to that repository (was the config replaced?)",
                sealed.id.short()
            ),
        ));
    }
    // A key may unwrap and still not open the config: one a rotation stopped midway left
    // behind (format-spec/encryption.md). The config decides.
    // Cheapest key derivation first, one at a time: a key with light parameters kept for a
    // frequent job (`pg archive-wal` runs once per WAL segment) costs only its own derivation.
    ours.sort_by_key(|(id, f)| {
        (
            u64::from(f.kdf.memory_kib) * u64::from(f.kdf.iterations),
            *id,
        )
    });
    let mut unwrapped = false;
    let mut found = None;
    for (id, file) in &ours {
        let Some(master) = file.unwrap_master(id, password)? else {
            continue;
        };
        unwrapped = true;
        match sealed.open(&config_key(&master)) {
            Ok(Some((config, keys))) => {
                found = Some(Ok((*id, master, file.kdf, config, keys)));
                break;
            }
            Ok(None) => {}
            Err(e) => {
                found = Some(Err(e));
                break;
            }
        }
    }
    let Some(found) = found else {
        if unwrapped {
            return Err(Error::corrupt(
                "config",
                "it does not authenticate under the master key this password opens (replaced or changed)",
            ));
        }
        if let Some(d) = damaged.first() {
            // The password may be that key's: say so rather than "wrong password".
            return Err(Error::corrupt(
                format!("key {}", d.short()),
                "the key file does not parse, and no other key opens with this password",
            ));
        }
        return Err(Error::WrongPassword {
            location: location.to_string(),
        });
    };
    let (key_id, master, kdf, config, keys) = found?;
    Ok((
        config,
        keys,
        Unlocked {
            master,
            key_id,
            kdf,
            password: password.clone(),
        },
    ))
}

/// Sorts snapshots oldest first, by their parsed start time (timestamps print a varying number
/// of fractional digits, so their strings do not sort), then by id.
pub(crate) fn sort_by_time(snaps: &mut [(Id, Snapshot)]) {
    snaps.sort_by(|a, b| a.1.start().cmp(&b.1.start()).then(a.0.cmp(&b.0)));
}

/// The default local cache directory: `$CAIRN_CACHE_DIR`, else `$XDG_CACHE_HOME/cairn`, else
/// `~/.cache/cairn`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CAIRN_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("cairn");
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache").join("cairn")
}

impl Repository {
    /// Creates a repository at `location`. Refuses a location that already holds a
    /// repository or anything else.
    pub fn init(location: &Location, opts: &InitOptions) -> Result<Config> {
        let mut config = Config::new(opts.avg_chunk_size, opts.zstd_level, opts.pack_size)?;
        config.frame_size = Some(opts.frame_size);
        config.pages = opts.pages.clone();
        let config = config.with_format_version(opts.format_version)?;
        config.check()?;
        let wants_keys = opts.format_version == crate::config::SEALED_FORMAT_VERSION;
        if wants_keys != opts.encryption.is_some()
            && opts.format_version != crate::config::FORMAT_VERSION
        {
            return Err(Error::InvalidInput(format!(
                "format version {} is {}encrypted",
                opts.format_version,
                if wants_keys { "always " } else { "never " }
            )));
        }
        let secrets = opts.encryption.map(Keys::generate);
        Self::init_with(location, config, secrets, opts)
    }

    /// Creates a repository at `location` whose chunking, list splitting, compression and
    /// pack size are those of `source` (a copy's destination), under a new id. An encrypted
    /// source gives an encrypted destination that shares only its id key and chunker key (so
    /// blobs keep their ids and copy sends only what is missing), with its own data key and
    /// master key, wrapped under `password`.
    pub fn init_like(
        location: &Location,
        source: &Repository,
        password: Option<Password>,
        kdf: KdfParams,
    ) -> Result<Config> {
        let template = source.config();
        let mut config = Config::new(
            template.chunker.avg_size,
            Some(crate::config::DEFAULT_ZSTD_LEVEL),
            template.pack_size,
        )?;
        config.chunker = template.chunker.clone();
        config.list_split = template.list_split;
        config.compression = template.compression.clone();
        // Files are cut as the source cuts them, so that later backups into the copy find
        // the copied chunks; frames are the newest format's either way.
        config.pages = template.pages.clone();
        if template.framed() {
            config.frame_size = template.frame_size;
        }
        let keys = source.objects.sealing().keys();
        let opts = InitOptions {
            encryption: keys.map(|k| k.cipher()),
            password,
            kdf,
            ..InitOptions::default()
        };
        let secrets = keys.map(|k| k.sharing_content_keys(k.cipher()));
        Self::init_with(location, config, secrets, &opts)
    }

    fn init_with(
        location: &Location,
        config: Config,
        secrets: Option<Keys>,
        opts: &InitOptions,
    ) -> Result<Config> {
        if let Some(path) = location.local_path()
            && path.exists()
        {
            if !path.is_dir() {
                return Err(Error::LocationNotEmpty {
                    location: location.to_string(),
                });
            }
            let mut entries =
                std::fs::read_dir(path).map_err(|e| Error::io("cannot read", path, e))?;
            if entries.next().is_some() {
                return Err(if path.join(Object::Config.path()).exists() {
                    Error::RepositoryExists {
                        location: location.to_string(),
                    }
                } else {
                    Error::LocationNotEmpty {
                        location: location.to_string(),
                    }
                });
            }
        }
        let objects = Objects::new(Store::open(location, true)?);
        let exists = || Error::RepositoryExists {
            location: location.to_string(),
        };
        if location.local_path().is_none() {
            let found = objects.list_root()?;
            if found.iter().any(|p| *p == Object::Config.path()) {
                return Err(exists());
            }
            if !found.is_empty() {
                return Err(Error::LocationNotEmpty {
                    location: location.to_string(),
                });
            }
        }
        let (config, bytes, key) = match secrets {
            None => {
                let bytes = config.encode();
                (config, bytes, None)
            }
            Some(keys) => {
                let password = opts
                    .password
                    .as_ref()
                    .ok_or_else(|| Error::PasswordRequired {
                        location: location.to_string(),
                    })?;
                let config = config.encrypted(keys.cipher());
                let master = SecretKey::random();
                let key_id = Id::random();
                let file = KeyFile::wrap(
                    config.id,
                    &key_id,
                    keys.cipher(),
                    opts.kdf,
                    password,
                    &master,
                )?;
                let bytes = config.encode_sealed(&keys, &config_key(&master));
                (config, bytes, Some((key_id, file)))
            }
        };
        // The key first: a config whose key never got written would lock everyone out.
        if let Some((key_id, file)) = &key {
            objects.write(&Object::Key(*key_id), file.encode())?;
        }
        // A conditional write: of two `init`s racing for one place, one fails.
        if !objects.write_new(&Object::Config, bytes)? {
            if let Some((key_id, _)) = &key {
                objects.delete(&Object::Key(*key_id))?;
            }
            return Err(exists());
        }
        Ok(config)
    }

    /// Opens the unencrypted repository at `location` with its local cache under `cache_dir`;
    /// an encrypted one is refused with [`Error::PasswordRequired`].
    pub fn open(location: &Location, cache_dir: &Path) -> Result<Repository> {
        Self::open_with(location, cache_dir, &|| {
            Err(Error::PasswordRequired {
                location: location.to_string(),
            })
        })
    }

    /// Opens the repository at `location` with its local cache under `cache_dir`. If it is
    /// encrypted, `password` is asked once, before anything else is read.
    pub fn open_with(
        location: &Location,
        cache_dir: &Path,
        password: &dyn Fn() -> Result<Password>,
    ) -> Result<Repository> {
        Self::open_cached(location, Some(cache_dir), password)
    }

    /// Opens the repository at `location` to add new objects only, without the local index
    /// cache: what is added is not deduplicated against what the repository holds, and blobs
    /// cannot be looked up. For WAL archiving (WAL does not repeat), where opening the cache
    /// would cost more than storing a segment; everything else uses [`Repository::open_with`].
    pub fn open_append_only(
        location: &Location,
        password: &dyn Fn() -> Result<Password>,
    ) -> Result<Repository> {
        Self::open_cached(location, None, password)
    }

    fn open_cached(
        location: &Location,
        cache_dir: Option<&Path>,
        password: &dyn Fn() -> Result<Password>,
    ) -> Result<Repository> {
        let mut objects = Objects::new(Store::open(location, false)?);
        let bytes =
            objects
                .read_opt(&Object::Config)?
                .ok_or_else(|| Error::RepositoryNotFound {
                    location: location.to_string(),
                })?;
        let (config, unlocked) = match ConfigFile::decode(&bytes)? {
            ConfigFile::Plain(config) => (*config, None),
            ConfigFile::Sealed(sealed) => {
                let (config, keys, unlocked) = unlock(&objects, location, &sealed, &password()?)?;
                objects.set_sealing(Sealing::encrypted(Arc::new(keys)));
                (config, Some(unlocked))
            }
        };
        objects.set_framed(config.framed());
        let mut warnings = Vec::new();
        let mut index = match cache_dir {
            Some(dir) => IndexCache::open_noting(&dir.join(config.id.to_hex()), &mut warnings)?,
            None => IndexCache::detached(),
        };
        let synced = match index.sync(&objects) {
            Err(e @ Error::CacheDamaged { .. }) => {
                warnings.push(e.to_string());
                index.rebuild()?;
                index.sync(&objects)
            }
            other => other,
        };
        warnings.extend(synced?);
        Ok(Repository {
            objects,
            config,
            unlocked,
            index: std::sync::RwLock::new(index),
            index_rebuilds: AtomicU64::new(0),
            warnings,
            warn: Box::new(|_| {}),
            meta_packs: quick_cache::sync::Cache::with_weighter(64, META_CACHE_BYTES, PackBytes),
            lock_wait: DEFAULT_LOCK_WAIT,
            locks: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// What computes blob and object ids (keyed in an encrypted repository).
    pub fn hasher(&self) -> &IdHasher {
        self.objects.sealing().hasher()
    }

    /// How the repository seals what it stores.
    pub fn sealing(&self) -> &Sealing {
        self.objects.sealing()
    }

    /// The chunker of this repository (keyed in an encrypted one).
    pub(crate) fn chunker(&self) -> Chunker {
        Chunker::for_repository(
            &self.config.chunker,
            self.objects.sealing().keys().map(|k| k.chunker_key()),
        )
    }

    /// The keys of an encrypted repository (none for an unencrypted one).
    pub fn keys(&self) -> Result<Vec<KeyInfo>> {
        let current = self.unlocked.as_ref().map(|u| u.key_id);
        let mut out = Vec::new();
        for id in self.objects.list_ids(Kind::Key)? {
            let bytes = self.objects.read(&Object::Key(id))?;
            out.push(KeyInfo {
                id,
                current: current == Some(id),
                file: KeyFile::decode(&bytes, &id)?,
            });
        }
        out.sort_by(|a, b| a.file.created.cmp(&b.file.created));
        Ok(out)
    }

    fn unlocked(&self) -> Result<&Unlocked> {
        self.unlocked.as_ref().ok_or_else(|| {
            Error::KeyRefused(format!(
                "{} is not encrypted: it has no keys",
                self.location()
            ))
        })
    }

    /// Adds a key: the master key wrapped under `password`. Returns its id.
    pub fn add_key(&self, password: &Password, kdf: KdfParams) -> Result<Id> {
        let unlocked = self.unlocked()?;
        let cipher = self.objects.sealing().cipher().unwrap_or(Cipher::Aes256Gcm);
        let key_id = Id::random();
        let file = KeyFile::wrap(
            self.config.id,
            &key_id,
            cipher,
            kdf,
            password,
            &unlocked.master,
        )?;
        self.objects.write(&Object::Key(key_id), file.encode())?;
        Ok(key_id)
    }

    /// Starts a key rotation: a new master key, wrapped for the password given now (the other
    /// keys wrap the old one and are removed: add them again), and a new data-key epoch that
    /// every object written from now on uses; the old epochs' keys stay, to read what they
    /// sealed, until [`Repository::finish_rotation`]. Returns the new epoch and the keys
    /// removed. Call under the exclusive lock.
    pub(crate) fn start_rotation(&mut self) -> Result<(u32, Vec<Id>)> {
        let unlocked = self.unlocked()?;
        let keys = self.encrypted_keys()?.with_new_epoch();
        let master = SecretKey::random();
        let key_id = Id::random();
        let file = KeyFile::wrap(
            self.config.id,
            &key_id,
            keys.cipher(),
            unlocked.kdf,
            &unlocked.password,
            &master,
        )?;
        // The new key first, then the config it opens, then the old keys: stopped anywhere,
        // some key opens the config (format-spec/encryption.md, "Rotation").
        self.objects.write(&Object::Key(key_id), file.encode())?;
        self.objects.write(
            &Object::Config,
            self.config.encode_sealed(&keys, &config_key(&master)),
        )?;
        let epoch = keys.current().0;
        let replaced = unlocked.key_id;
        if let Some(u) = self.unlocked.as_mut() {
            u.master = master;
            u.key_id = key_id;
        }
        self.objects.set_sealing(Sealing::encrypted(Arc::new(keys)));
        let mut removed = self.remove_keys_older_than_epoch()?;
        // The key of the password given now was replaced, not lost.
        removed.retain(|k| *k != replaced);
        Ok((epoch, removed))
    }

    /// Removes every key file but the current one made before the current epoch began: they
    /// wrap a master key a rotation replaced. Returns their ids.
    pub(crate) fn remove_keys_older_than_epoch(&self) -> Result<Vec<Id>> {
        let since = self.encrypted_keys()?.current_created().to_string();
        let since: Option<jiff::Timestamp> = since.parse().ok();
        let mut removed = Vec::new();
        for k in self.keys()? {
            let created: Option<jiff::Timestamp> = k.file.created.parse().ok();
            if !k.current && created.zip(since).is_some_and(|(c, s)| c < s) {
                self.objects.delete(&Object::Key(k.id))?;
                removed.push(k.id);
            }
        }
        Ok(removed)
    }

    /// Ends a key rotation: the config keeps only the current epoch's data key; the old ones
    /// are destroyed. Only when nothing in the repository is sealed under them any more (the
    /// caller checks, under the exclusive lock). Returns the epochs destroyed.
    pub(crate) fn finish_rotation(&mut self) -> Result<Vec<u32>> {
        let unlocked = self.unlocked()?;
        let keys = self.encrypted_keys()?;
        let current = keys.current().0;
        let destroyed: Vec<u32> = keys
            .epochs()
            .into_iter()
            .filter(|e| *e != current)
            .collect();
        if destroyed.is_empty() {
            return Ok(destroyed);
        }
        let keys = keys.only_current();
        self.objects.write(
            &Object::Config,
            self.config
                .encode_sealed(&keys, &config_key(&unlocked.master)),
        )?;
        self.objects.set_sealing(Sealing::encrypted(Arc::new(keys)));
        Ok(destroyed)
    }

    /// Seals `object` (an index file, snapshot or WAL record) again under the current epoch,
    /// under the same name; returns whether it was under another one.
    pub(crate) fn reseal(&self, object: &Object) -> Result<bool> {
        let current = self.encrypted_keys()?.current().0;
        if self.objects.object_epoch(object)? == Some(current) {
            return Ok(false);
        }
        let plain = self.objects.read(object)?;
        self.objects.write(object, plain)?;
        Ok(true)
    }

    /// The key set of an encrypted repository.
    pub fn encrypted_keys(&self) -> Result<&Arc<Keys>> {
        self.objects.sealing().keys().ok_or_else(|| {
            Error::KeyRefused(format!(
                "{} is not encrypted: it has no keys",
                self.location()
            ))
        })
    }

    /// Removes the key `id`. Refuses the key this repository was opened with (open it with
    /// another to remove this one) and, with it, the last key.
    pub fn remove_key(&self, id: &Id) -> Result<()> {
        let unlocked = self.unlocked()?;
        if *id == unlocked.key_id {
            return Err(Error::KeyRefused(format!(
                "key {} is the one this password opens; open the repository with another key's password to remove it (the last key is never removed)",
                id.short()
            )));
        }
        if self.objects.read_opt(&Object::Key(*id))?.is_none() {
            return Err(Error::KeyRefused(format!(
                "no key {} in {}; run `cairn key list`",
                id.short(),
                self.location()
            )));
        }
        self.objects.delete(&Object::Key(*id))
    }

    /// Changes the password of the key this repository was opened with: a new key file under
    /// `password` is written, then the old one removed. Returns the new key's id.
    pub fn change_password(&mut self, password: &Password, kdf: KdfParams) -> Result<Id> {
        let old = self.unlocked()?.key_id;
        let new = self.add_key(password, kdf)?;
        self.objects.delete(&Object::Key(old))?;
        if let Some(u) = self.unlocked.as_mut() {
            u.key_id = new;
            u.kdf = kdf;
        }
        Ok(new)
    }

    /// How long commands wait for a conflicting lock (see [`Repository::lock`]).
    pub fn set_lock_wait(&mut self, wait: std::time::Duration) {
        self.lock_wait = wait;
    }

    /// Takes a lock on the repository for `operation`, waiting for conflicting holders up to
    /// the lock wait, then brings the index cache up to date: what the cache says exists is
    /// then safe to rely on until the lock is dropped. Shared for commands that read or add
    /// data, exclusive for prune.
    pub fn lock(&mut self, kind: LockKind, operation: &str) -> Result<Lock> {
        let lock = Lock::acquire(&self.objects, kind, operation, self.lock_wait)?;
        self.refresh_keys()?;
        self.resync()?;
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(lock.shared());
        Ok(lock)
    }

    /// Confirms every lock still held through this repository ([`Lock::confirm`]). Called
    /// before an index file is written: one written after the lock was lost could list packs
    /// that a prune, judging the lock stale, has deleted, and later backups would take their
    /// blobs for stored.
    pub(crate) fn confirm_locks(&self) -> Result<()> {
        let held: Vec<_> = {
            let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            locks.retain(|l| l.strong_count() > 0);
            locks.iter().filter_map(std::sync::Weak::upgrade).collect()
        };
        held.iter().try_for_each(|l| l.confirm())
    }

    /// Reads the config again and takes up a key rotation another command began since this
    /// repository was opened: new objects must be sealed under the newest epoch, or that
    /// rotation could never finish.
    fn refresh_keys(&mut self) -> Result<()> {
        let Some(unlocked) = &self.unlocked else {
            return Ok(());
        };
        let bytes = self.objects.read(&Object::Config)?;
        let ConfigFile::Sealed(sealed) = ConfigFile::decode(&bytes)? else {
            return Err(Error::corrupt("config", "it is no longer encrypted"));
        };
        match sealed.open(&config_key(&unlocked.master))? {
            Some((_, keys)) => {
                let now = self
                    .objects
                    .sealing()
                    .keys()
                    .map(|k| (k.epochs(), k.current().0));
                if now != Some((keys.epochs(), keys.current().0)) {
                    self.objects.set_sealing(Sealing::encrypted(Arc::new(keys)));
                }
                Ok(())
            }
            None => Err(Error::KeyRefused(format!(
                "the keys of {} were rotated since this command started; run it again",
                self.location()
            ))),
        }
    }

    /// Brings the index cache up to date with the index files stored now.
    pub(crate) fn resync(&mut self) -> Result<()> {
        let index = self.index.get_mut().unwrap_or_else(PoisonError::into_inner);
        self.warnings = match index.sync(&self.objects) {
            Err(e @ Error::CacheDamaged { .. }) => {
                (self.warn)(&e.to_string());
                index.rebuild()?;
                index.sync(&self.objects)?
            }
            other => other?,
        };
        Ok(())
    }

    /// Saves `policy` as the repository's retention policy (`None` removes it), rewriting the
    /// config atomically.
    pub fn set_retention(&mut self, policy: Option<crate::policy::RetentionPolicy>) -> Result<()> {
        if let Some(p) = &policy {
            p.validate()?;
        }
        let mut config = self.config.clone();
        config.retention = policy;
        let bytes = match (&self.unlocked, self.objects.sealing().keys()) {
            (Some(u), Some(keys)) => config.encode_sealed(keys, &config_key(&u.master)),
            _ => config.encode(),
        };
        self.objects.write(&Object::Config, bytes)?;
        self.config = config;
        Ok(())
    }

    /// The repository's config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where the repository is.
    pub fn location(&self) -> &Location {
        self.objects.location()
    }

    /// The repository's objects: the only way to its store.
    pub(crate) fn objects(&self) -> &Objects {
        &self.objects
    }

    /// Runs `f` on the local index cache. If the cache turns out damaged, it is rebuilt from
    /// the repository's index files (with one warning) and `f` runs again: the cache holds
    /// nothing of its own, so no command need fail for it.
    pub(crate) fn with_index<T>(&self, f: impl Fn(&IndexCache) -> Result<T>) -> Result<T> {
        let seen = self.index_rebuilds.load(SeqCst);
        let first = f(&self.index.read().unwrap_or_else(PoisonError::into_inner));
        match first {
            Err(Error::CacheDamaged { .. }) => {
                self.rebuild_index(seen)?;
                f(&self.index.read().unwrap_or_else(PoisonError::into_inner))
            }
            other => other,
        }
    }

    /// Rebuilds a damaged cache that was last rebuilt `seen` times: threads that found it
    /// damaged together rebuild it once.
    fn rebuild_index(&self, seen: u64) -> Result<()> {
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        if self.index_rebuilds.load(SeqCst) != seen {
            return Ok(());
        }
        (self.warn)(&format!(
            "the local index cache at {} is damaged; rebuilding it from the repository",
            index.path().display()
        ));
        index.rebuild()?;
        self.index_rebuilds.fetch_add(1, SeqCst);
        for w in index.sync(&self.objects)? {
            (self.warn)(&w);
        }
        Ok(())
    }

    /// Sends warnings met from now on (a local cache rebuilt mid-command) to `sink`, such as
    /// a line on standard error; without one they are dropped.
    pub fn set_warning_sink(&mut self, sink: Box<dyn Fn(&str) + Send + Sync>) {
        self.warn = sink;
    }

    /// Whether the repository holds the blob (by the local index).
    pub fn has_blob(&self, kind: BlobKind, id: &Id) -> Result<bool> {
        self.with_index(|i| i.contains(kind, id))
    }

    /// Where each of `ids` is stored, if anywhere (by the local index), in one batch.
    pub fn blob_locations(&self, kind: BlobKind, ids: &[Id]) -> Result<Vec<Option<BlobLocation>>> {
        self.with_index(|i| i.get_many(kind, ids))
    }

    /// Records the packs of index file `id` in the local index.
    pub(crate) fn absorb_index(&self, id: &Id, packs: &[PackRecord]) -> Result<()> {
        self.with_index(|i| i.absorb(id, packs))
    }

    /// The local index's fingerprint and the index files it absorbed.
    pub(crate) fn index_fingerprint(&self) -> Result<(Fingerprint, HashSet<Id>)> {
        self.with_index(IndexCache::fingerprint)
    }

    /// Empties the local index cache, for a caller about to absorb every index file again.
    pub(crate) fn clear_index(&self) -> Result<()> {
        self.meta_packs.clear();
        self.with_index(IndexCache::clear)
    }

    /// Problems met while opening that did not stop it (unreadable index files, a local
    /// cache rebuilt).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Where a blob is stored, if the repository has it.
    pub fn find_blob(&self, kind: BlobKind, id: &Id) -> Result<Option<BlobLocation>> {
        self.with_index(|i| i.get(kind, id))
    }

    /// Where a blob is stored.
    pub fn locate(&self, kind: BlobKind, id: &Id) -> Result<BlobLocation> {
        self.find_blob(kind, id)?.ok_or_else(|| Error::MissingBlob {
            kind: kind.name(),
            id: id.to_hex(),
        })
    }

    /// Reads, verifies and decompresses one blob.
    pub fn load_blob(&self, kind: BlobKind, id: &Id) -> Result<Vec<u8>> {
        let loc = self.locate(kind, id)?;
        self.load_blob_at(kind, &loc)
    }

    /// Reads, verifies and decompresses the blob at `loc` (from [`Repository::locate`]).
    /// Chunks are read alone; trees and lists out of their whole pack, kept in memory for the
    /// next ones.
    pub(crate) fn load_blob_at(&self, kind: BlobKind, loc: &BlobLocation) -> Result<Vec<u8>> {
        let e = loc.entry;
        if kind == BlobKind::Data {
            return self
                .objects
                .read_segment(&loc.pack, e.offset..e.end())?
                .blob(&e);
        }
        let pack = self.meta_packs.get_or_insert_with(&loc.pack, || {
            self.objects.read(&Object::Pack(loc.pack)).map(Arc::new)
        })?;
        Segment::new(self.objects.sealing(), loc.pack, 0, pack.as_slice()).blob(&e)
    }

    /// Loads a tree.
    pub fn load_tree(&self, id: &Id) -> Result<Tree> {
        let bytes = self.load_blob(BlobKind::Tree, id)?;
        Tree::decode(&bytes).map_err(|m| m.about(format!("tree {}", id.short())))
    }

    /// Expands a file's content to its chunk list, loading sub-lists as needed, and calls `f`
    /// for each chunk in file order.
    pub fn for_each_chunk(
        &self,
        content: &Content,
        f: &mut dyn FnMut(&crate::manifest::ContentRef) -> Result<()>,
    ) -> Result<()> {
        if content.depth == 0 {
            for r in &content.refs {
                f(r)?;
            }
            return Ok(());
        }
        for r in &content.refs {
            let bytes = self.load_blob(BlobKind::List, &r.id)?;
            let sub = decode_list(&bytes).map_err(|m| m.about(format!("list {}", r.id.short())))?;
            if sub.depth + 1 != content.depth || sub.len() != r.len {
                return Err(Error::corrupt(
                    format!("list {}", r.id.short()),
                    "its depth or length does not match the reference to it",
                ));
            }
            self.for_each_chunk(&sub, f)?;
        }
        Ok(())
    }

    /// The packs stored with their sizes, and the paths among them that are not pack names in
    /// their place.
    pub(crate) fn list_packs(&self) -> Result<(HashMap<Id, u64>, Vec<String>)> {
        let listing = self.objects.list(Kind::Pack)?;
        let sized: Vec<(Id, Option<u64>)> = self.objects.with_parallel_reads(|| {
            listing
                .objects
                .par_iter()
                .filter_map(|o| o.id().map(|id| (id, o)))
                .map(|(id, o)| self.objects.size(o).map(|s| (id, s)))
                .collect::<Result<_>>()
        })?;
        let stray = listing.stray;
        let packs = sized
            .into_iter()
            .filter_map(|(id, s)| s.map(|s| (id, s)))
            .collect();
        Ok((packs, stray))
    }

    /// Every snapshot that reads, oldest first. A damaged snapshot is left out: one damaged
    /// file must not hide every other snapshot (`list` and `check` report it; see
    /// [`Repository::snapshots_and_damaged`]). Other failures (storage) are errors.
    pub fn snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        Ok(self.snapshots_and_damaged()?.0)
    }

    /// Every snapshot, oldest first; a damaged one is an error. For what must know every
    /// snapshot's needs before deleting anything (prune, WAL expiry).
    pub fn snapshots_strict(&self) -> Result<Vec<(Id, Snapshot)>> {
        let mut out = self.load_listed(&self.snapshot_ids()?)?;
        sort_by_time(&mut out);
        Ok(out)
    }

    /// Every snapshot that reads, oldest first, and the damaged ones, with what is wrong.
    /// Other failures are errors.
    pub fn snapshots_and_damaged(&self) -> Result<ReadSnapshots> {
        let ids = self.snapshot_ids()?;
        type Read = Option<std::result::Result<(Id, Snapshot), (Id, Error)>>;
        let read: Vec<Read> = self.objects.with_parallel_reads(|| {
            ids.par_iter()
                .map(|id| match self.load_snapshot(id) {
                    Ok(s) => Ok(Some(Ok((*id, s)))),
                    Err(Error::SnapshotNotFound(_)) => Ok(None),
                    Err(e) if e.is_damage() => Ok(Some(Err((*id, e)))),
                    Err(e) => Err(e),
                })
                .collect::<Result<_>>()
        })?;
        let (ok, damaged): (Vec<_>, Vec<_>) = read.into_iter().flatten().partition(|r| r.is_ok());
        let mut ok: Vec<(Id, Snapshot)> = ok.into_iter().filter_map(|r| r.ok()).collect();
        sort_by_time(&mut ok);
        Ok((ok, damaged.into_iter().filter_map(|r| r.err()).collect()))
    }

    fn snapshot_ids(&self) -> Result<Vec<Id>> {
        self.objects.list_ids(Kind::Snapshot)
    }

    /// Reads the snapshots `ids`, listed a moment ago. One that has gone since (forgotten or
    /// deleted meanwhile: a caller without a lock, such as `list`, does not keep those out) is
    /// left out, not an error.
    fn load_listed(&self, ids: &[Id]) -> Result<Vec<(Id, Snapshot)>> {
        let read: Vec<Option<(Id, Snapshot)>> = self.objects.with_parallel_reads(|| {
            ids.par_iter()
                .map(|id| match self.load_snapshot(id) {
                    Ok(s) => Ok(Some((*id, s))),
                    Err(Error::SnapshotNotFound(_)) => Ok(None),
                    Err(e) => Err(e),
                })
                .collect::<Result<_>>()
        })?;
        Ok(read.into_iter().flatten().collect())
    }

    /// Reads one snapshot and checks it against its name.
    pub fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        Snapshot::decode(&self.load_snapshot_bytes(id)?, id)
    }

    /// Reads one snapshot's bytes and checks them against its name: what `copy` writes to
    /// another repository unchanged.
    pub(crate) fn load_snapshot_bytes(&self, id: &Id) -> Result<Vec<u8>> {
        let bytes = self
            .objects
            .read_opt(&Object::Snapshot(*id))?
            .ok_or_else(|| Error::SnapshotNotFound(id.to_hex()))?;
        if self.objects.sealing().hasher().id(&bytes) != *id {
            return Err(Error::corrupt(
                format!("snapshot {}", id.short()),
                "contents do not match its name",
            ));
        }
        Ok(bytes)
    }

    /// Finds the snapshot `spec` names: `latest`, a full id, a unique id prefix, or a name
    /// given with `--name` (the latest snapshot of that name).
    /// A damaged snapshot is not considered, except that naming it by id (or a prefix only
    /// it has) reports its damage.
    pub fn resolve(&self, spec: &str) -> Result<(Id, Snapshot)> {
        self.resolve_filtered(spec, &SnapshotFilter::default())
    }

    /// [`Repository::resolve`], choosing `latest` and names among the snapshots `filter`
    /// lets through (an id or prefix names its snapshot whatever the filter).
    pub fn resolve_filtered(&self, spec: &str, filter: &SnapshotFilter) -> Result<(Id, Snapshot)> {
        let (readable, damaged) = self.snapshots_and_damaged()?;
        match resolve_in_filtered(readable, spec, filter) {
            Err(Error::SnapshotNotFound(_)) if is_id_prefix(spec) => {
                let lower = spec.to_ascii_lowercase();
                let mut hits = damaged
                    .into_iter()
                    .filter(|(id, _)| id.to_hex().starts_with(&lower));
                match (hits.next(), hits.next()) {
                    (Some((_, e)), None) => Err(e),
                    _ => Err(Error::SnapshotNotFound(spec.into())),
                }
            }
            other => other,
        }
    }
}

/// True if `spec` could be a snapshot id or a prefix of one.
fn is_id_prefix(spec: &str) -> bool {
    !spec.is_empty() && spec.len() <= 64 && spec.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Finds the snapshot `spec` names among `all` (oldest first).
pub(crate) fn resolve_in(all: Vec<(Id, Snapshot)>, spec: &str) -> Result<(Id, Snapshot)> {
    resolve_in_filtered(all, spec, &SnapshotFilter::default())
}

/// [`resolve_in`], `latest` and names chosen among the snapshots `filter` lets through.
pub(crate) fn resolve_in_filtered(
    all: Vec<(Id, Snapshot)>,
    spec: &str,
    filter: &SnapshotFilter,
) -> Result<(Id, Snapshot)> {
    let not_found = || Error::SnapshotNotFound(format!("{spec}{}", filter.describe()));
    if spec == "latest" {
        return all
            .into_iter()
            .rev()
            .find(|(_, s)| filter.matches(s))
            .ok_or_else(not_found);
    }
    let lower = spec.to_ascii_lowercase();
    if is_id_prefix(spec) {
        let matches: Vec<&(Id, Snapshot)> = all
            .iter()
            .filter(|(id, _)| id.to_hex().starts_with(&lower))
            .collect();
        match matches.len() {
            1 => return Ok(matches[0].clone()),
            0 => {}
            n => {
                let mut ids: Vec<String> =
                    matches.iter().take(4).map(|(id, _)| id.short()).collect();
                if n > 4 {
                    ids.push(format!("and {} more", n - 4));
                }
                return Err(Error::AmbiguousSnapshot {
                    prefix: spec.into(),
                    candidates: ids.join(", "),
                });
            }
        }
    }
    all.into_iter()
        .rev()
        .find(|(_, s)| s.name.as_deref() == Some(spec) && filter.matches(s))
        .ok_or_else(not_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_gone_since_listing_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::Local(dir.path().join("repo"));
        Repository::init(&location, &InitOptions::default()).unwrap();
        let repo = Repository::open(&location, &dir.path().join("cache")).unwrap();
        assert!(
            repo.load_listed(&[Id::of(b"forgotten")])
                .unwrap()
                .is_empty()
        );
        // Damage is still an error.
        let bad = Id::of(b"not a snapshot");
        repo.objects()
            .write(&Object::Snapshot(bad), b"not a snapshot".to_vec())
            .unwrap();
        assert!(matches!(
            repo.load_listed(&[bad]),
            Err(Error::Corrupt { .. })
        ));
    }
}
