//! The storage layer: named immutable files in a repository, reached through OpenDAL.
//!
//! This module owns the only tokio runtime of the engine. Everything above it is synchronous
//! and runs on rayon; the runtime here drives OpenDAL's asynchronous I/O and runs uploads in
//! the background while the caller goes on chunking and compressing.
//!
//! Contract (what every backend must give, local disk and object stores alike):
//! - `write` is atomic: a reader sees the whole file or nothing, never a prefix. On the local
//!   file system this holds because OpenDAL writes into `tmp/` and renames.
//! - Files are written once and never changed; writing the same name twice writes the same
//!   bytes (names are BLAKE3 digests of the contents), so a retried write is harmless.
//! - `read_opt` tells "not there" apart from "could not read".
//!
//! It must never interpret file contents: that is the job of the modules above.

use std::future::IntoFuture;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use opendal::{ErrorKind, Operator};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// How many uploads may be in flight at once; bounds the memory held by queued packs.
const MAX_IN_FLIGHT_UPLOADS: usize = 4;

/// A repository location: what `--repo` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on a local file system.
    Local(PathBuf),
    /// An in-process store, for tests; lives as long as the [`Store`] that opened it.
    Memory,
}

impl Location {
    /// Parses a `--repo` argument: a path, a `file://` URL, or `memory:`.
    pub fn parse(s: &str) -> Result<Location> {
        if s.is_empty() {
            return Err(Error::BadLocation {
                location: s.into(),
                detail: "it is empty; give a path with --repo or set CAIRN_REPO".into(),
            });
        }
        if s == "memory:" {
            return Ok(Location::Memory);
        }
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(Location::Local(absolute(Path::new(path))?));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(Error::BadLocation {
                location: s.into(),
                detail: format!("the {scheme}:// scheme is not supported; use a local path"),
            });
        }
        Ok(Location::Local(absolute(Path::new(s))?))
    }

    /// The local directory, if this is a local location.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Location::Local(p) => Some(p),
            Location::Memory => None,
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Memory => f.write_str("memory:"),
        }
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::io("cannot resolve", p, e))
}

/// A handle on a background upload.
#[derive(Debug)]
pub struct Upload {
    path: String,
    handle: tokio::task::JoinHandle<std::result::Result<(), opendal::Error>>,
}

/// Named files in a repository.
#[derive(Clone)]
pub struct Store {
    op: Operator,
    rt: Arc<Runtime>,
    uploads: Arc<Semaphore>,
    location: Location,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish()
    }
}

impl Store {
    /// Opens the store at `location`. With `create`, a missing local directory is created;
    /// without it, a local directory without a `config` file is [`Error::RepositoryNotFound`].
    pub fn open(location: &Location, create: bool) -> Result<Store> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-io")
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start the I/O runtime for", "cairn", e))?;
        let op = match location {
            Location::Local(path) => {
                // Checked before OpenDAL is set up, because setting it up creates the root
                // and `tmp/`: opening must never write into a directory that is not ours.
                if !create && !path.join("config").is_file() {
                    return Err(Error::RepositoryNotFound {
                        location: location.to_string(),
                    });
                }
                let root = path.to_str().ok_or_else(|| Error::BadLocation {
                    location: path.display().to_string(),
                    detail: "the path is not valid UTF-8".into(),
                })?;
                let tmp = path.join("tmp");
                let builder = opendal::services::Fs::default()
                    .root(root)
                    .atomic_write_dir(tmp.to_str().unwrap_or(root));
                Operator::new(builder)
            }
            Location::Memory => Operator::new(opendal::services::Memory::default()),
        }
        .map_err(|e| storage("open", &location.to_string(), e))?;
        let op = op.layer(opendal::layers::RetryLayer::new().with_max_times(4));
        Ok(Store {
            op,
            rt: Arc::new(rt),
            uploads: Arc::new(Semaphore::new(MAX_IN_FLIGHT_UPLOADS)),
            location: location.clone(),
        })
    }

    /// Where this store lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    fn block_on<F: IntoFuture>(&self, f: F) -> F::Output {
        self.rt.block_on(f.into_future())
    }

    /// Reads a whole file.
    pub fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.block_on(self.op.read(path))
            .map(|b| b.to_vec())
            .map_err(|e| storage("read", path, e))
    }

    /// Reads a whole file, or `None` if it does not exist.
    pub fn read_opt(&self, path: &str) -> Result<Option<Vec<u8>>> {
        match self.block_on(self.op.read(path)) {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(storage("read", path, e)),
        }
    }

    /// Reads `range` of a file. A range past the end is an error, not a short read.
    pub fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let want = range.end.saturating_sub(range.start);
        let truncated = |got: String| {
            Error::corrupt(
                path,
                format!(
                    "bytes {}..{} asked for, {got} (the file is truncated)",
                    range.start, range.end
                ),
            )
        };
        let data = match self.block_on(self.op.read_with(path).range(range.clone())) {
            Ok(b) => b.to_vec(),
            Err(e) if e.kind() == ErrorKind::RangeNotSatisfied => {
                return Err(truncated("but the file ends before".into()));
            }
            Err(e) => return Err(storage("read", path, e)),
        };
        if data.len() as u64 != want {
            return Err(truncated(format!("{} bytes returned", data.len())));
        }
        Ok(data)
    }

    /// Writes a whole file and waits until it is stored durably.
    pub fn write(&self, path: &str, data: Vec<u8>) -> Result<()> {
        self.block_on(self.op.write(path, data))
            .map_err(|e| storage("write", path, e))?;
        sync_dirs(self.location.local_path(), path)
    }

    /// Starts writing a file in the background. At most a few uploads run at once; this call
    /// waits for a free slot, which is what bounds the memory of queued packs.
    pub fn spawn_write(&self, path: &str, data: Vec<u8>) -> Upload {
        let sem = self.uploads.clone();
        let permit = self.block_on(sem.acquire_owned()).ok();
        let op = self.op.clone();
        let p = path.to_string();
        let root = self.location.local_path().map(Path::to_path_buf);
        let handle = self.rt.spawn(async move {
            let _permit = permit;
            op.write(&p, data).await?;
            tokio::task::spawn_blocking(move || sync_dirs(root.as_deref(), &p))
                .await
                .map_err(|e| opendal::Error::new(ErrorKind::Unexpected, e.to_string()))?
                .map_err(|e| opendal::Error::new(ErrorKind::Unexpected, e.to_string()))
        });
        Upload {
            path: path.to_string(),
            handle,
        }
    }

    /// Waits for a background upload to finish.
    pub fn finish(&self, upload: Upload) -> Result<()> {
        match self.block_on(upload.handle) {
            Ok(r) => r.map_err(|e| storage("write", &upload.path, e)),
            Err(join) => Err(Error::InvalidInput(format!(
                "upload of {} did not finish: {join}",
                upload.path
            ))),
        }
    }

    /// The size of a file, or `None` if it does not exist.
    pub fn size(&self, path: &str) -> Result<Option<u64>> {
        match self.block_on(self.op.stat(path)) {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(storage("stat", path, e)),
        }
    }

    /// Names (paths relative to the root) of the files below `dir` (which ends in `/`),
    /// recursively, in no particular order. A missing directory lists as empty.
    pub fn list(&self, dir: &str) -> Result<Vec<String>> {
        let entries = match self.block_on(self.op.list_with(dir).recursive(true)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(storage("list", dir, e)),
        };
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().mode().is_file())
            .map(|e| e.path().to_string())
            .collect())
    }

    /// Names of everything directly at the root (files and directories).
    pub fn list_root(&self) -> Result<Vec<String>> {
        let entries = match self.block_on(self.op.list("/")) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(storage("list", "/", e)),
        };
        Ok(entries
            .into_iter()
            .map(|e| e.path().trim_end_matches('/').to_string())
            .filter(|p| !p.is_empty())
            .collect())
    }

    /// Deletes a file; deleting a missing file succeeds. On a local disk the deletion is
    /// durable when this returns (its directory is synced), so deletions are ordered like
    /// writes: prune relies on an index file being gone for good before the packs it listed go.
    pub fn delete(&self, path: &str) -> Result<()> {
        self.block_on(self.op.delete(path))
            .map_err(|e| storage("delete", path, e))?;
        sync_dirs(self.location.local_path(), path)
    }
}

/// Makes a rename into `path` durable on a local disk: the file itself was synced before its
/// rename, but the directory entries on the way to it must be synced too (POSIX does not order
/// renames across a crash otherwise). Object stores need nothing: a PUT is durable when it returns.
fn sync_dirs(root: Option<&Path>, path: &str) -> Result<()> {
    let Some(root) = root else { return Ok(()) };
    let mut dir = root.join(path);
    while dir.pop() && dir.starts_with(root) {
        let f = match std::fs::File::open(&dir) {
            Ok(f) => f,
            // Deleting a file that was never there leaves nothing to make durable here.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("cannot open", &dir, e)),
        };
        f.sync_all()
            .map_err(|e| Error::io("cannot sync", &dir, e))?;
        if dir == root {
            break;
        }
    }
    Ok(())
}

fn storage(op: &'static str, path: &str, source: opendal::Error) -> Error {
    Error::Storage {
        op,
        path: path.to_string(),
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The conformance suite every store must pass.
    fn conformance(store: &Store) {
        assert_eq!(store.read_opt("index/none").unwrap(), None);
        assert_eq!(store.size("index/none").unwrap(), None);
        assert!(store.list("index/").unwrap().is_empty());
        store.write("index/a", b"hello".to_vec()).unwrap();
        let up = store.spawn_write("data/00/b", b"world!".to_vec());
        store.finish(up).unwrap();
        assert_eq!(store.read("index/a").unwrap(), b"hello");
        assert_eq!(store.read_range("data/00/b", 1..4).unwrap(), b"orl");
        assert!(store.read_range("data/00/b", 4..40).is_err());
        assert_eq!(store.size("data/00/b").unwrap(), Some(6));
        assert_eq!(store.list("data/").unwrap(), vec!["data/00/b".to_string()]);
        store.delete("index/a").unwrap();
        store.delete("index/a").unwrap();
        store.delete("data/zz/never-there").unwrap();
        assert_eq!(store.read_opt("index/a").unwrap(), None);
        assert!(store.list("index/").unwrap().is_empty());
        // A missing file is damage (a pack the index names), not a passing fault.
        assert!(store.read("index/a").unwrap_err().is_damage());
        // Overwriting (the config's retention policy, lock refreshes) replaces the whole file.
        store.write("locks/l", b"first version".to_vec()).unwrap();
        store.write("locks/l", b"second".to_vec()).unwrap();
        assert_eq!(store.read("locks/l").unwrap(), b"second");
        // Large objects, read whole and by ranges up to their last byte.
        let big: Vec<u8> = (0..40u32 << 20).map(|i| (i % 251) as u8).collect();
        store.write("data/ff/big", big.clone()).unwrap();
        assert_eq!(store.size("data/ff/big").unwrap(), Some(big.len() as u64));
        assert_eq!(store.read("data/ff/big").unwrap(), big);
        let n = big.len() as u64;
        assert_eq!(
            store.read_range("data/ff/big", n - 7..n).unwrap(),
            &big[big.len() - 7..]
        );
        assert!(store.read_range("data/ff/big", n - 7..n + 1).is_err());
        let mut listed = store.list("data/").unwrap();
        listed.sort();
        assert_eq!(
            listed,
            vec!["data/00/b".to_string(), "data/ff/big".to_string()]
        );
        // Nothing being written shows under a listed directory.
        assert!(store.list("tmp/").unwrap().is_empty());
        store.delete("data/ff/big").unwrap();
        assert_eq!(store.list("data/").unwrap(), vec!["data/00/b".to_string()]);
    }

    #[test]
    fn memory_store_conforms() {
        conformance(&Store::open(&Location::Memory, true).unwrap());
    }

    #[test]
    fn local_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::Local(dir.path().join("repo"));
        assert!(matches!(
            Store::open(&loc, false),
            Err(Error::RepositoryNotFound { .. })
        ));
        // Opening a foreign directory leaves it untouched.
        let foreign = Location::Local(dir.path().to_path_buf());
        assert!(Store::open(&foreign, false).is_err());
        assert!(!dir.path().join("tmp").exists());
        conformance(&Store::open(&loc, true).unwrap());
    }

    #[test]
    fn locations_parse() {
        assert_eq!(Location::parse("memory:").unwrap(), Location::Memory);
        assert!(matches!(
            Location::parse("/a/b").unwrap(),
            Location::Local(p) if p == Path::new("/a/b")
        ));
        assert!(Location::parse("ftp://x").is_err());
        assert!(Location::parse("").is_err());
    }
}
