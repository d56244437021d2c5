//! Storing WAL files in the repository and fetching them back (format-spec/wal.md).
//!
//! ```text
//! archive_wal_batch(files):
//!   for each file: its record exists? -> hash the file: same contents (done) or refused
//!   one shared lock; one StreamStore: each new file streamed through the chunker while it is
//!   hashed (never held whole), packs of at most 4 MiB, one index file for the batch
//!   then one record per file, each written once (a record exists only once its data is durable)
//! ```

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::backup::StreamStore;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::lock_file::LockKind;
use crate::manifest::NodeKind;
use crate::pack::{BlobEntry, BlobKind};
use crate::repo::{Repository, STALE_TMP, add_wal_record, load_wal_record, modified_before};
use crate::wal::{WAL_RECORD_VERSION, WalRecord, valid_wal_name};

/// Packs of archived WAL are sealed at this size: a batch then holds at most one pack being
/// filled and the ones being uploaded in memory, whatever its length.
const WAL_PACK_SIZE: u32 = 2 << 20;

/// What `archive-wal` did with one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archived {
    /// The file is now stored.
    Stored,
    /// The same file was already stored under this name.
    AlreadyThere,
}

/// A WAL file to archive: where it is (`%p`) and its name (`%f`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalFile {
    /// Its path.
    pub path: PathBuf,
    /// Its name, as PostgreSQL gives it.
    pub name: String,
}

/// Stores the WAL file at `path` under `name` (`%p` and `%f` of `archive_command`). Returns
/// only once the file and its record are stored durably. Archiving the same contents again
/// succeeds; other contents under an archived name are refused.
pub fn archive_wal(repo: &mut Repository, path: &Path, name: &str) -> Result<Archived> {
    let file = WalFile {
        path: path.to_path_buf(),
        name: name.to_string(),
    };
    archive_wal_batch(repo, std::slice::from_ref(&file))?
        .pop()
        .unwrap_or_else(|| Err(Error::InvalidInput("no WAL file was archived".into())))
}

/// Stores several WAL files in one batch: one lock, one set of packs and one index file, then
/// one record each. Returns each file's outcome, in order; the whole batch fails only on an
/// error that is not about one file (the repository unreachable, the lock lost). A file's
/// outcome is `Ok` only once its record is stored durably.
pub fn archive_wal_batch(
    repo: &mut Repository,
    files: &[WalFile],
) -> Result<Vec<Result<Archived>>> {
    Ok(archive_batch(repo, files)?
        .into_iter()
        .map(|o| o.map(|(a, _, _)| a))
        .collect())
}

/// [`archive_wal_batch`], with each stored file's size and digest.
pub(crate) fn archive_batch(
    repo: &mut Repository,
    files: &[WalFile],
) -> Result<Vec<Result<(Archived, u64, String)>>> {
    let mut outcomes: Vec<Option<Result<(Archived, u64, String)>>> =
        Vec::with_capacity(files.len());
    let mut new = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if !valid_wal_name(&f.name) {
            outcomes.push(Some(Err(Error::InvalidInput(format!(
                "{:?} is not the name of a WAL segment, history or backup file",
                f.name
            )))));
            continue;
        }
        match load_wal_record(repo, &f.name)? {
            Some(existing) => outcomes.push(Some(hash_file(&f.path).and_then(|(size, digest)| {
                same_as(&existing, &f.name, size, &digest).map(|a| (a, size, digest))
            }))),
            None => {
                outcomes.push(None);
                new.push(i);
            }
        }
    }
    if !new.is_empty() {
        let lock = repo.lock(LockKind::Shared, "archive-wal")?;
        let store = StreamStore::new(repo, WAL_PACK_SIZE);
        let mut stored = Vec::new();
        for &i in &new {
            let f = &files[i];
            match store_one(&store, f) {
                Ok(record) => stored.push((i, record)),
                // A file that cannot be read fails alone; the others are still stored.
                Err(e @ Error::Io { .. }) if io_path(&e) == Some(f.path.as_path()) => {
                    outcomes[i] = Some(Err(e));
                }
                Err(e) => return Err(e),
            }
        }
        store.finish()?;
        lock.confirm()?;
        for (i, record) in stored {
            let name = &files[i].name;
            let outcome = match add_wal_record(repo, name, record.encode())? {
                None => Ok(Archived::Stored),
                // Another archiver got there first.
                Some(existing) => same_as(&existing, name, record.size, &record.digest),
            };
            outcomes[i] = Some(outcome.map(|a| (a, record.size, record.digest)));
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                Err(Error::InvalidInput(
                    "a WAL file was left out of its batch".into(),
                ))
            })
        })
        .collect())
}

/// Streams one file into `store`, hashing it on the way; its record, not yet written.
fn store_one(store: &StreamStore<'_>, f: &WalFile) -> Result<WalRecord> {
    let file = std::fs::File::open(&f.path).map_err(|e| Error::io("cannot read", &f.path, e))?;
    let mut reader = Hashing::new(file);
    let tree = store.add(&f.name, &mut reader).map_err(|e| match e {
        Error::Io { action, source, .. } => Error::io(action, &f.path, source),
        other => other,
    })?;
    let (size, digest) = reader.finish();
    Ok(WalRecord {
        version: WAL_RECORD_VERSION,
        name: f.name.clone(),
        size,
        digest,
        tree,
        time: jiff::Timestamp::now().to_string(),
    })
}

/// The path an I/O error is about.
fn io_path(e: &Error) -> Option<&Path> {
    match e {
        Error::Io { path, .. } => Some(path),
        _ => None,
    }
}

/// Whether a stored record holds exactly this file.
fn same_as(record: &WalRecord, name: &str, size: u64, digest: &str) -> Result<Archived> {
    if record.digest == digest && record.size == size {
        Ok(Archived::AlreadyThere)
    } else {
        Err(Error::WalConflict {
            name: name.to_string(),
        })
    }
}

/// The size and BLAKE3 digest (hex) of the file at `path`, read in pieces.
pub(crate) fn hash_file(path: &Path) -> Result<(u64, String)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    let mut reader = Hashing::new(file);
    std::io::copy(&mut reader, &mut std::io::sink())
        .map_err(|e| Error::io("cannot read", path, e))?;
    Ok(reader.finish())
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: blake3::Hasher,
    len: u64,
}

impl<R> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: blake3::Hasher::new(),
            len: 0,
        }
    }

    /// The bytes read and their digest (hex).
    fn finish(self) -> (u64, String) {
        (self.len, self.hasher.finalize().to_hex().to_string())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Writes the archived WAL file `name` to `dest` (`%f` and `%p` of `restore_command`);
/// returns false if it is not archived. The file appears at `dest` whole or not at all.
pub fn fetch_wal(repo: &mut Repository, name: &str, dest: &Path) -> Result<bool> {
    if !valid_wal_name(name) {
        return Err(Error::InvalidInput(format!(
            "{name:?} is not the name of a WAL segment, history or backup file"
        )));
    }
    let Some(record) = load_wal_record(repo, name)? else {
        return Ok(false);
    };
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    remove_stale_fetches(dir);
    let tmp = dir.join(format!("{FETCH_PREFIX}{}", Id::random().short()));
    let result = (|| {
        let mut out =
            std::fs::File::create_new(&tmp).map_err(|e| Error::io("cannot create", &tmp, e))?;
        // PostgreSQL fetches the segment again if it crashes before using it: no fsync here.
        let (size, digest) = write_wal(repo, &record, &mut out, &tmp)?;
        if size != record.size || digest != record.digest {
            return Err(Error::corrupt(
                format!("WAL record {name}"),
                "the file read back does not match its size and digest",
            ));
        }
        std::fs::rename(&tmp, dest).map_err(|e| Error::io("cannot move into place", dest, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| true)
}

/// Writes the file `record` holds to `out` (at `path`), chunk by chunk in file order, each
/// verified by its id; the chunks of one frame are read and opened together. Returns the
/// bytes written and their digest. A WAL file is read whole, so this skips the restore
/// machinery (planning, threads, a directory per fetch): it doubled a fetch's time.
fn write_wal(
    repo: &Repository,
    record: &WalRecord,
    out: &mut std::fs::File,
    path: &Path,
) -> Result<(u64, String)> {
    let tree = repo.load_tree(&record.tree)?;
    let Some(NodeKind::File(content)) = tree.find(record.name.as_bytes()).map(|n| &n.kind) else {
        return Err(Error::corrupt(
            format!("WAL record {}", record.name),
            "its tree holds no file of that name",
        ));
    };
    let mut locations = Vec::new();
    repo.for_each_chunk(content, &mut |r| {
        locations.push(repo.locate(BlobKind::Data, &r.id)?);
        Ok(())
    })?;
    let mut hasher = blake3::Hasher::new();
    let mut len = 0u64;
    for frame in locations.chunk_by(|a, b| a.pack == b.pack && a.entry.offset == b.entry.offset) {
        let entries: Vec<BlobEntry> = frame.iter().map(|l| l.entry).collect();
        let start = entries[0].offset;
        let end = entries.iter().map(BlobEntry::end).max().unwrap_or(start);
        let segment = repo.objects().read_segment(&frame[0].pack, start..end)?;
        segment.for_each_blob(&entries, |_, bytes| {
            let bytes = bytes?;
            hasher.update(&bytes);
            len += bytes.len() as u64;
            out.write_all(&bytes)
                .map_err(|e| Error::io("cannot write", path, e))
        })?;
    }
    Ok((len, hasher.finalize().to_hex().to_string()))
}

/// The name of the file a fetch writes, beside its destination, before the rename.
const FETCH_PREFIX: &str = ".cairn-fetch-";

/// Removes what fetches killed midway left in `dir` (pg_wal), an hour on: PostgreSQL runs one
/// fetch at a time, and a fetch takes seconds. Best effort: what cannot go stays.
fn remove_stale_fetches(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let stale = e
            .file_name()
            .as_bytes()
            .starts_with(FETCH_PREFIX.as_bytes())
            && std::fs::symlink_metadata(e.path()).is_ok_and(|m| modified_before(&m, STALE_TMP));
        if stale {
            // Files now; directories from earlier versions, which restored into one.
            let _ = std::fs::remove_file(e.path()).or_else(|_| std::fs::remove_dir_all(e.path()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetches_killed_midway_are_cleared_an_hour_on() {
        let dir = tempfile::tempdir().unwrap();
        let two_hours_ago =
            filetime::FileTime::from_unix_time(filetime::FileTime::now().unix_seconds() - 7200, 0);
        let old = dir.path().join(format!("{FETCH_PREFIX}old"));
        let old_file = dir.path().join(format!("{FETCH_PREFIX}oldfile"));
        let new = dir.path().join(format!("{FETCH_PREFIX}new"));
        let segment = dir.path().join("000000010000000000000001");
        std::fs::create_dir_all(old.join("x")).unwrap();
        std::fs::write(&old_file, b"half a segment").unwrap();
        std::fs::write(&new, b"being written").unwrap();
        std::fs::write(&segment, b"wal").unwrap();
        for p in [&old, &old_file, &segment] {
            filetime::set_file_mtime(p, two_hours_ago).unwrap();
        }
        remove_stale_fetches(dir.path());
        assert!(!old.exists() && !old_file.exists());
        assert!(new.exists() && segment.exists());
    }
}
