//! Archiving at the server's pace: one `archive-wal` call stores every segment the server has
//! ready, in one batch, and leaves a mark in a local spool for each; the calls for the next
//! segments find their mark and return at once, without opening the repository.
//!
//! ```text
//! archive_wal_spooled(%p, %f):
//!   a mark for %f whose size and digest match the file?  -> remove it; done (stored)
//!   take the spool's lock (else wait, looking for the mark, for the holder to finish)
//!   batch = %f, then the segments pg_wal/archive_status/*.ready names, oldest first, up to
//!           the batch size                  (PostgreSQL archives in that order)
//!   archive_batch(batch): one lock, one set of packs, one index file, one record each
//!   for each other file stored: write its mark (size and digest), then sync the spool
//!   done: %f stored, or its error
//! ```
//!
//! A mark is written only after the file's record is stored durably, and honoured only if the
//! file still has the size and digest it records: a lost mark costs a second look at the
//! repository (which finds the record), a stale one is ignored. Nothing is acknowledged to
//! PostgreSQL before it is stored.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::archive::{Archived, WalFile, archive_batch, hash_file};
use super::local::{create_private_dir, try_lock};
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::wal::valid_wal_name;

/// How `archive-wal` batches.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// The spool directory: marks of files stored ahead, and the lock of the archiver.
    pub dir: PathBuf,
    /// Most files stored by one call.
    pub batch: usize,
    /// How long a call waits for another call holding the spool to finish.
    pub wait: Duration,
}

const MARK_SUFFIX: &str = ".stored";
const LOCK_NAME: &str = "archiver.lock";

/// Stores the WAL file at `path` under `name` as [`super::archive_wal`] does, and with it the
/// other files the server has ready (see the module's description). `open` opens the
/// repository, only if there is something to store.
pub fn archive_wal_spooled(
    open: &dyn Fn() -> Result<Repository>,
    path: &Path,
    name: &str,
    opts: &SpoolOptions,
) -> Result<Archived> {
    if !valid_wal_name(name) {
        return Err(Error::InvalidInput(format!(
            "{name:?} is not the name of a WAL segment, history or backup file"
        )));
    }
    create_private_dir(&opts.dir)?;
    if take_mark(&opts.dir, name, path)? {
        return Ok(Archived::Stored);
    }
    let lock_path = opts.dir.join(LOCK_NAME);
    let deadline = Instant::now() + opts.wait;
    loop {
        if let Some(_lock) = try_lock(&lock_path)? {
            // The holder before us may have stored this file.
            if take_mark(&opts.dir, name, path)? {
                return Ok(Archived::Stored);
            }
            return store_batch(open, path, name, opts);
        }
        std::thread::sleep(Duration::from_millis(50));
        if take_mark(&opts.dir, name, path)? {
            return Ok(Archived::Stored);
        }
        if Instant::now() > deadline {
            return Err(Error::InvalidInput(format!(
                "another archive-wal has held {} for more than {} s; is it stuck?",
                lock_path.display(),
                opts.wait.as_secs()
            )));
        }
    }
}

/// Stores `name` and the files ready after it; marks the others once stored.
fn store_batch(
    open: &dyn Fn() -> Result<Repository>,
    path: &Path,
    name: &str,
    opts: &SpoolOptions,
) -> Result<Archived> {
    let mut batch = vec![WalFile {
        path: path.to_path_buf(),
        name: name.to_string(),
    }];
    let wal_dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let wal_dir = wal_dir.unwrap_or(Path::new("."));
    batch.extend(
        ready_files(wal_dir)
            .into_iter()
            .filter(|f| f.name != name && !opts.dir.join(mark_name(&f.name)).exists())
            .take(opts.batch.saturating_sub(1)),
    );
    let mut repo = open()?;
    let mut outcomes = archive_batch(&mut repo, &batch)?.into_iter();
    let own = outcomes
        .next()
        .unwrap_or_else(|| Err(Error::InvalidInput("nothing was archived".into())));
    let mut marked = false;
    for (f, outcome) in batch[1..].iter().zip(outcomes) {
        // A file that failed is left to its own call, which reports the error.
        if let Ok((_, size, digest)) = outcome {
            write_mark(&opts.dir, &f.name, size, &digest)?;
            marked = true;
        }
    }
    if marked {
        sync_dir(&opts.dir)?;
    }
    remove_stale_marks(&opts.dir, wal_dir);
    own.map(|(a, _, _)| a)
}

/// The files `pg_wal/archive_status` says are ready to archive, oldest first.
fn ready_files(wal_dir: &Path) -> Vec<WalFile> {
    let Ok(entries) = std::fs::read_dir(wal_dir.join("archive_status")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            let name = n.strip_suffix(".ready")?;
            valid_wal_name(name).then(|| name.to_string())
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| WalFile {
            path: wal_dir.join(&name),
            name,
        })
        .filter(|f| f.path.is_file())
        .collect()
}

fn mark_name(name: &str) -> String {
    format!("{name}{MARK_SUFFIX}")
}

/// If a mark says `name` is stored and the file at `path` is the one it describes, removes
/// the mark and says so.
fn take_mark(dir: &Path, name: &str, path: &Path) -> Result<bool> {
    let mark = dir.join(mark_name(name));
    let Ok(text) = std::fs::read_to_string(&mark) else {
        return Ok(false);
    };
    let matches = match text.trim().split_once(' ') {
        Some((size, digest)) => {
            let (got_size, got_digest) = hash_file(path)?;
            size.parse() == Ok(got_size) && digest == got_digest
        }
        None => false,
    };
    let _ = std::fs::remove_file(&mark);
    Ok(matches)
}

fn write_mark(dir: &Path, name: &str, size: u64, digest: &str) -> Result<()> {
    let mark = dir.join(mark_name(name));
    let tmp = dir.join(format!(".{}.tmp", mark_name(name)));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{size} {digest}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &mark)
    };
    write().map_err(|e| Error::io("cannot write", &mark, e))
}

/// Removes marks whose file PostgreSQL no longer has (it archived them elsewhere, or the
/// server was rebuilt). Best effort.
fn remove_stale_marks(dir: &Path, wal_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(n) = e.file_name().into_string() else {
            continue;
        };
        if let Some(name) = n.strip_suffix(MARK_SUFFIX)
            && !wal_dir.join(name).exists()
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("cannot sync", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_honoured_only_for_the_file_they_describe() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        create_private_dir(&spool).unwrap();
        let seg = dir.path().join("000000010000000000000001");
        std::fs::write(&seg, b"segment bytes").unwrap();
        let (size, digest) = hash_file(&seg).unwrap();
        let name = "000000010000000000000001";
        write_mark(&spool, name, size, &digest).unwrap();
        assert!(take_mark(&spool, name, &seg).unwrap());
        // Taken once: gone.
        assert!(!take_mark(&spool, name, &seg).unwrap());
        // A mark for other contents is ignored (and removed).
        write_mark(&spool, name, size, &digest).unwrap();
        std::fs::write(&seg, b"other segment").unwrap();
        assert!(!take_mark(&spool, name, &seg).unwrap());
        assert!(!spool.join(mark_name(name)).exists());
    }

    #[test]
    fn ready_files_come_oldest_first_and_only_wal_names() {
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("archive_status");
        std::fs::create_dir_all(&status).unwrap();
        for n in [
            "000000010000000000000003",
            "000000010000000000000002",
            "00000002.history",
            "not-wal",
        ] {
            std::fs::write(dir.path().join(n), b"x").unwrap();
            std::fs::write(status.join(format!("{n}.ready")), b"").unwrap();
        }
        std::fs::write(status.join("000000010000000000000001.done"), b"").unwrap();
        let names: Vec<String> = ready_files(dir.path())
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(
            names,
            [
                "000000010000000000000002",
                "000000010000000000000003",
                "00000002.history"
            ]
        );
    }
}
