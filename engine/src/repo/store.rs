//! The storage layer: named immutable files in a repository, reached through OpenDAL.
//!
//! This module owns the only tokio runtime of the engine. Everything above it is synchronous
//! and runs on rayon; the runtime here drives OpenDAL's asynchronous I/O and runs uploads in
//! the background while the caller goes on chunking and compressing.
//!
//! Contract (what every backend must give, local disk and object stores alike; the
//! conformance suite in `tests/integration/storage.rs` runs on memory, local disk and S3):
//! - `write` is atomic: a reader sees the whole file or nothing, never a prefix. On the local
//!   file system this holds because OpenDAL writes into `tmp/` and renames; on S3 a PUT, or a
//!   multipart upload, becomes visible only when complete.
//! - Files are written once and never changed; writing the same name twice writes the same
//!   bytes (names are BLAKE3 digests of the contents), so a retried write is harmless. The
//!   exceptions (the config, lock files) are whole-file replacements; `write_new` writes only
//!   if nothing is there.
//! - `read_opt` tells "not there" apart from "could not read".
//! - Transient failures are retried here, with back-off; what reaches the caller is final.
//!
//! It must never interpret file contents: that is the job of the modules above.

use std::future::IntoFuture;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use opendal::{ErrorKind, Operator};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// How many uploads may be in flight at once on a local disk; bounds the memory held by queued
/// packs. Object stores use [`S3Settings::connections`].
const MAX_IN_FLIGHT_UPLOADS: usize = 4;

/// Concurrent requests to an object store unless configured otherwise.
pub const DEFAULT_S3_CONNECTIONS: usize = 8;
/// The most connections a store may use: each may hold a pack being uploaded in memory.
pub const MAX_S3_CONNECTIONS: usize = 64;
/// Files larger than this go to object stores as multipart uploads of parts this size, so that
/// each request is small enough to finish within the request timeout on a slow link (and a
/// failed part is retried alone). A multipart upload becomes visible only when completed.
const UPLOAD_PART: usize = 8 << 20;

/// A repository location: what `--repo` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on a local file system.
    Local(PathBuf),
    /// An in-process store, for tests; lives as long as the [`Store`] that opened it.
    Memory,
    /// A prefix in a bucket of an S3-compatible object store.
    S3(S3Location),
}

/// Where in an S3-compatible store a repository lives, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The key prefix of the repository inside the bucket, without leading or trailing `/`
    /// (empty: the whole bucket).
    pub prefix: String,
    /// Endpoint, region and credentials.
    pub settings: S3Settings,
}

/// How to reach an S3-compatible store. Filled from a config file and the standard `AWS_*`
/// environment variables by [`S3Settings::load`]; never from the command line, so that
/// secrets do not show in process listings. `Debug` does not print the secrets.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// Endpoint URL, e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:8333`.
    pub endpoint: Option<String>,
    /// Signing region; `us-east-1` when not given.
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// Address buckets as `BUCKET.endpoint` instead of `endpoint/BUCKET` (path style, the
    /// default, which every S3-compatible server accepts).
    #[serde(default)]
    pub virtual_host_style: bool,
    /// Requests in flight at once (uploads and downloads each).
    pub connections: Option<usize>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "(hidden)");
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &hidden(&self.secret_access_key))
            .field("session_token", &hidden(&self.session_token))
            .field("virtual_host_style", &self.virtual_host_style)
            .field("connections", &self.connections)
            .finish()
    }
}

/// The config file given with `--config`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    s3: S3Settings,
}

/// A config file error that names the line and the fields involved but quotes no value: a
/// mistyped secret must not end up in a terminal or a log.
fn config_error(text: &str, e: &toml::de::Error) -> String {
    const FIELDS: &[&str] = &[
        "s3",
        "endpoint",
        "region",
        "access_key_id",
        "secret_access_key",
        "session_token",
        "virtual_host_style",
        "connections",
    ];
    let mut out = String::new();
    for (i, part) in e.message().split('`').enumerate() {
        let quoted = i % 2 == 1;
        if !quoted {
            out.push_str(part);
        } else if FIELDS.contains(&part) || (i == 1 && e.message().starts_with("unknown field")) {
            // A field name: the unknown one, or those expected.
            out.push('`');
            out.push_str(part);
            out.push('`');
        } else {
            out.push_str("(value hidden)");
        }
    }
    match e.span() {
        Some(span) => format!(
            "line {}: {out}",
            text[..span.start.min(text.len())].lines().count().max(1)
        ),
        None => out,
    }
}

impl S3Settings {
    /// The settings of the standard environment variables: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ENDPOINT_URL_S3` or
    /// `AWS_ENDPOINT_URL`, `AWS_REGION` or `AWS_DEFAULT_REGION`.
    pub fn from_env() -> S3Settings {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        };
        S3Settings {
            endpoint: var(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]),
            region: var(&["AWS_REGION", "AWS_DEFAULT_REGION"]),
            access_key_id: var(&["AWS_ACCESS_KEY_ID"]),
            secret_access_key: var(&["AWS_SECRET_ACCESS_KEY"]),
            session_token: var(&["AWS_SESSION_TOKEN"]),
            virtual_host_style: false,
            connections: None,
        }
    }

    /// The settings of the `[s3]` table of a TOML config file, with what it leaves out taken
    /// from the environment ([`S3Settings::from_env`]): a file given explicitly wins.
    pub fn load(config_file: Option<&Path>) -> Result<S3Settings> {
        let file = match config_file {
            None => S3Settings::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::io("cannot read the config file", path, e))?;
                toml::from_str::<ConfigFile>(&text)
                    .map_err(|e| Error::BadConfigFile {
                        path: path.to_path_buf(),
                        detail: config_error(&text, &e),
                    })?
                    .s3
            }
        };
        let env = S3Settings::from_env();
        let secret_from_file = file.secret_access_key.is_some();
        Ok(S3Settings {
            endpoint: file.endpoint.or(env.endpoint),
            region: file.region.or(env.region),
            access_key_id: file.access_key_id.or(env.access_key_id),
            // A session token belongs to the key pair it was issued with.
            session_token: if secret_from_file {
                file.session_token
            } else {
                file.session_token.or(env.session_token)
            },
            secret_access_key: file.secret_access_key.or(env.secret_access_key),
            virtual_host_style: file.virtual_host_style,
            connections: file.connections,
        })
    }

    fn connections(&self) -> usize {
        self.connections
            .unwrap_or(DEFAULT_S3_CONNECTIONS)
            .clamp(1, MAX_S3_CONNECTIONS)
    }
}

impl Location {
    /// Parses a `--repo` argument: a path, a `file://` URL, `s3://BUCKET/PREFIX`, or
    /// `memory:`. An S3 location has no settings yet: see [`Location::with_s3_settings`].
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
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let bad = |detail: &str| Error::BadLocation {
                location: s.into(),
                detail: detail.into(),
            };
            if bucket.is_empty() {
                return Err(bad("it names no bucket; use s3://BUCKET/PREFIX"));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
                return Err(bad("the prefix must not hold empty, . or .. parts"));
            }
            return Ok(Location::S3(S3Location {
                bucket: bucket.into(),
                prefix: prefix.into(),
                settings: S3Settings::default(),
            }));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(Error::BadLocation {
                location: s.into(),
                detail: format!(
                    "the {scheme}:// scheme is not supported; use a local path or s3://BUCKET/PREFIX"
                ),
            });
        }
        Ok(Location::Local(absolute(Path::new(s))?))
    }

    /// This location with `settings` for reaching it, if it is an S3 location.
    pub fn with_s3_settings(self, settings: S3Settings) -> Location {
        match self {
            Location::S3(s3) => Location::S3(S3Location { settings, ..s3 }),
            other => other,
        }
    }

    /// The local directory, if this is a local location.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Location::Local(p) => Some(p),
            Location::Memory | Location::S3(_) => None,
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Memory => f.write_str("memory:"),
            Location::S3(s3) if s3.prefix.is_empty() => write!(f, "s3://{}", s3.bucket),
            Location::S3(s3) => write!(f, "s3://{}/{}", s3.bucket, s3.prefix),
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
    /// For object stores: threads that each keep one request in flight, so that parallel
    /// reads are bounded by the connection limit rather than by the number of cores.
    io_pool: Option<Arc<rayon::ThreadPool>>,
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
        // rustls needs a process-wide crypto provider; another caller may have installed one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-io")
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start the I/O runtime for", "cairn", e))?;
        let mut uploads = MAX_IN_FLIGHT_UPLOADS;
        let mut io_pool = None;
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
            Location::S3(s3) => {
                uploads = s3.settings.connections();
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(uploads)
                    .thread_name(|i| format!("cairn-fetch-{i}"))
                    .build()
                    .map_err(|e| Error::BadLocation {
                        location: location.to_string(),
                        detail: format!("cannot start the download threads: {e}"),
                    })?;
                io_pool = Some(Arc::new(pool));
                s3_operator(location, s3)?
            }
        }
        .map_err(|e| storage("open", &location.to_string(), e))?;
        // Transient failures (timeouts, 5xx, throttling) are retried with exponential back-off
        // and jitter; permanent ones (403, an unexpected 404) are not. Every write this engine
        // makes is idempotent (content-named files, or whole-file replacements), so a retried
        // write is harmless; reads are retried from where they failed.
        let op = op.layer(
            opendal::layers::RetryLayer::new()
                .with_max_times(6)
                .with_factor(2.0)
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(10))
                .with_jitter(),
        );
        Ok(Store {
            op,
            rt: Arc::new(rt),
            uploads: Arc::new(Semaphore::new(uploads)),
            location: location.clone(),
            io_pool,
        })
    }

    /// Where this store lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Runs `f`, whose rayon parallel iterators each read from this store, with as many
    /// requests in flight as the store allows: on an object store, in a pool of one thread per
    /// connection (latency, not CPU, bounds them); on a local disk, in the global pool.
    pub fn with_parallel_reads<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.io_pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
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
        self.block_on(self.op.write_with(path, data).chunk(UPLOAD_PART))
            .map_err(|e| storage("write", path, e))?;
        sync_dirs(self.location.local_path(), path)
    }

    /// Writes a whole file only if nothing is stored under its name yet, durably; returns
    /// whether it wrote (or an earlier attempt of this call did: a conditional write whose
    /// answer was lost is retried, finds the file, and sees its own bytes there). On S3 this is
    /// atomic (`If-None-Match: *`): of two writers racing, one fails. On a local disk the check
    /// and the rename into place are separate steps.
    pub fn write_new(&self, path: &str, data: Vec<u8>) -> Result<bool> {
        let wrote = if self.op.info().capability().write_with_if_not_exists {
            match self.block_on(self.op.write_with(path, data.clone()).if_not_exists(true)) {
                Ok(_) => true,
                Err(e) if e.kind() == ErrorKind::ConditionNotMatch => false,
                Err(e) => return Err(storage("write", path, e)),
            }
        } else if self.size(path)?.is_some() {
            false
        } else {
            self.block_on(self.op.write(path, data.clone()))
                .map_err(|e| storage("write", path, e))?;
            true
        };
        if wrote {
            sync_dirs(self.location.local_path(), path)?;
            return Ok(true);
        }
        Ok(self.read_opt(path)?.is_some_and(|there| there == data))
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
            op.write_with(&p, data).chunk(UPLOAD_PART).await?;
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

/// The operator of an S3 location, with a timeout on every request (a stalled connection is a
/// transient failure to retry, not a hang).
fn s3_operator(location: &Location, s3: &S3Location) -> Result<opendal::Result<Operator>> {
    let set = &s3.settings;
    let missing = |what: &str| Error::BadLocation {
        location: location.to_string(),
        detail: format!(
            "no {what}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give them in the [s3] table of a --config file"
        ),
    };
    let key = set
        .access_key_id
        .as_deref()
        .ok_or_else(|| missing("access key id"))?;
    let secret = set
        .secret_access_key
        .as_deref()
        .ok_or_else(|| missing("secret access key"))?;
    let mut b = opendal::services::S3::default()
        .bucket(&s3.bucket)
        .root(&format!("/{}", s3.prefix))
        .region(set.region.as_deref().unwrap_or("us-east-1"))
        .access_key_id(key)
        .secret_access_key(secret)
        // Only what was given counts: no profile files, no instance metadata service.
        .disable_config_load()
        .disable_ec2_metadata();
    if let Some(endpoint) = &set.endpoint {
        b = b.endpoint(endpoint);
    }
    if let Some(token) = &set.session_token {
        b = b.session_token(token);
    }
    if set.virtual_host_style {
        b = b.enable_virtual_host_style();
    }
    // One connection pool per store, sized for the requests it keeps in flight.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(set.connections() * 2)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Error::BadLocation {
            location: location.to_string(),
            detail: format!("cannot set up an HTTP client: {e}"),
        })?;
    let transport = opendal::HttpTransporter::new(
        opendal_http_transport_reqwest::ReqwestTransport::new(client),
    );
    Ok(Operator::new(b).map(|op| {
        op.with_context(opendal::OperationContext::new().with_http_transport(transport))
            .layer(
                opendal::layers::TimeoutLayer::new()
                    .with_timeout(Duration::from_secs(120))
                    .with_io_timeout(Duration::from_secs(60)),
            )
    }))
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

    #[test]
    fn opening_a_missing_local_repository_touches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::Local(dir.path().join("repo"));
        assert!(matches!(
            Store::open(&loc, false),
            Err(Error::RepositoryNotFound { .. })
        ));
        let foreign = Location::Local(dir.path().to_path_buf());
        assert!(Store::open(&foreign, false).is_err());
        assert!(!dir.path().join("tmp").exists());
        assert!(!dir.path().join("repo").exists());
    }

    #[test]
    fn settings_hide_secrets_and_file_wins_over_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cairn.toml");
        std::fs::write(
            &file,
            "[s3]\nendpoint = \"http://127.0.0.1:1\"\naccess_key_id = \"AK\"\nsecret_access_key = \"very-secret\"\nconnections = 3\n",
        )
        .unwrap();
        let s = S3Settings::load(Some(&file)).unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(s.secret_access_key.as_deref(), Some("very-secret"));
        assert_eq!(s.connections(), 3);
        assert!(!format!("{s:?}").contains("very-secret"));
        // A typo is an error, and the message does not quote the file (it may hold secrets).
        std::fs::write(&file, "[s3]\nsecret_acces_key = \"very-secret\"\n").unwrap();
        let e = S3Settings::load(Some(&file)).unwrap_err().to_string();
        assert!(
            e.contains("secret_acces_key") || e.contains("unknown field"),
            "{e}"
        );
        assert!(!e.contains("very-secret"), "{e}");
    }

    #[test]
    fn locations_parse() {
        assert_eq!(Location::parse("memory:").unwrap(), Location::Memory);
        assert!(matches!(
            Location::parse("/a/b").unwrap(),
            Location::Local(p) if p == Path::new("/a/b")
        ));
        assert!(Location::parse("ftp://x").is_err());
        let Location::S3(s3) = Location::parse("s3://bkt/a/b/").unwrap() else {
            panic!("not an S3 location")
        };
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("bkt", "a/b"));
        assert_eq!(Location::parse("s3://bkt").unwrap().to_string(), "s3://bkt");
        assert_eq!(
            Location::parse("s3://bkt/p/").unwrap().to_string(),
            "s3://bkt/p"
        );
        assert!(Location::parse("s3:///p").is_err());
        assert!(Location::parse("s3://b/x/../y").is_err());
        assert!(Location::parse("").is_err());
    }
}
