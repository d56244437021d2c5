//! The engine's error type.
//!
//! # Error policy
//!
//! - Every fallible public function returns [`Result<T>`] with this one [`Error`] type. The
//!   variants are grouped by what the operator has to do next, not by which module failed.
//! - A message is one line, names the object or path it is about, and, where there is one,
//!   says what to do next ("run `cairn init`", "give more characters", "run `cairn check`").
//!   Causes are attached as `#[source]` and are not repeated in the message, so a caller that
//!   prints the chain joined with `: ` gets one complete line.
//! - Bytes that come from the repository or from a snapshot are untrusted. Decoders never
//!   panic on them; they return [`Error::Corrupt`] naming the object.
//! - The engine never prints. Warnings that do not stop an operation (a socket skipped during
//!   a backup, say) are reported through [`crate::Progress`] and in the operation's summary.

use std::io;
use std::path::PathBuf;

/// The result type of every fallible engine operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No repository exists at the location.
    #[error(
        "no cairn repository at {location}: check the path, or create one with `cairn init --repo {location}`"
    )]
    RepositoryNotFound {
        /// Where the repository was looked for.
        location: String,
    },

    /// `init` was asked to create a repository where one already is.
    #[error(
        "{location} already holds a cairn repository; use it as it is, or choose another location"
    )]
    RepositoryExists {
        /// The location given.
        location: String,
    },

    /// `init` was asked to create a repository in a directory holding other files.
    #[error(
        "{location} is not empty and is not a cairn repository; initialise into a new or empty directory"
    )]
    LocationNotEmpty {
        /// The location given.
        location: String,
    },

    /// The repository location could not be understood.
    #[error("cannot use repository location {location:?}: {detail}")]
    BadLocation {
        /// The location given.
        location: String,
        /// What is wrong with it.
        detail: String,
    },

    /// The repository is encrypted and no password was given.
    #[error(
        "{location} is encrypted: give its password with CAIRN_PASSWORD, --password-file or --password-command, or type it at the prompt"
    )]
    PasswordRequired {
        /// The repository.
        location: String,
    },

    /// No key of the repository opens with the password given.
    #[error(
        "wrong password for {location}: no key of the repository opens with it (see `cairn key list` with a password that works)"
    )]
    WrongPassword {
        /// The repository.
        location: String,
    },

    /// A key operation that would leave the repository unopenable, or is otherwise refused.
    #[error("{0}")]
    KeyRefused(String),

    /// An object was written by a newer format version than this build reads.
    #[error(
        "{object} has format version {found}, but this cairn reads only version {supported}; upgrade cairn"
    )]
    UnsupportedVersion {
        /// The object.
        object: String,
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },

    /// Bytes read from the repository or from a snapshot are damaged or malformed.
    #[error("{object} is damaged: {detail}; run `cairn check` to see what is affected")]
    Corrupt {
        /// The damaged object, e.g. `pack 3fa2…` or `tree 91c0…`.
        object: String,
        /// What is wrong with it.
        detail: String,
    },

    /// A chunk or tree that a snapshot needs is not in any index file of the repository.
    #[error(
        "{kind} {id} is referenced but not stored in the repository; run `cairn check` to see which snapshots are affected"
    )]
    MissingBlob {
        /// `chunk`, `tree` or `list`.
        kind: &'static str,
        /// The blob's id.
        id: String,
    },

    /// A PostgreSQL server refused or failed a request.
    #[error("PostgreSQL: cannot {doing}: {detail}")]
    Postgres {
        /// What cairn was doing.
        doing: String,
        /// The server's message.
        detail: String,
    },

    /// `archive-wal` was given a WAL file whose name is archived with other contents.
    #[error(
        "WAL file {name} is already archived with different contents; refusing to replace it (is another cluster archiving into this repository?)"
    )]
    WalConflict {
        /// The file name.
        name: String,
    },

    /// Two repositories cannot exchange blobs.
    #[error(
        "cannot copy between these repositories: {detail}; copy into a new repository (created with the source's parameters when it does not exist)"
    )]
    IncompatibleRepositories {
        /// How they differ.
        detail: String,
    },

    /// The config file given with `--config` cannot be used.
    #[error("config file {}: {detail}", path.display())]
    BadConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// A storage operation failed.
    #[error("storage operation {op} on {path} failed{}", storage_hint(source))]
    Storage {
        /// `read`, `write`, `list`, `stat` or `delete`.
        op: &'static str,
        /// The path inside the repository.
        path: String,
        /// The cause (boxed: OpenDAL errors are large).
        #[source]
        source: Box<opendal::Error>,
    },

    /// What a restore wrote could not be made durable: the disk failed a write, or ran out of
    /// space, after the write had returned.
    #[error(
        "the files restored under {path} did not all reach the disk, so that copy cannot be trusted even where it reads right; fix the disk or free space, then restore into an empty directory"
    )]
    NotDurable {
        /// The restore's target.
        path: PathBuf,
        /// What the disk reported.
        #[source]
        source: io::Error,
    },

    /// A local file operation failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done, e.g. `cannot read`.
        action: &'static str,
        /// The local path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// The local index cache is damaged (a checksum failed, an entry does not decode). It
    /// holds nothing of its own: the repository rebuilds it and goes on.
    #[error("local index cache at {path} is damaged ({detail}); it is rebuilt from the repository")]
    CacheDamaged {
        /// The cache directory.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },

    /// The local index cache could not be used.
    #[error(
        "local index cache at {path} cannot be used ({detail}); delete that directory and it will be rebuilt from the repository"
    )]
    Cache {
        /// The cache directory.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },

    /// No snapshot matches what the user named.
    #[error("no snapshot matches {0:?}; run `cairn list` to see the snapshots")]
    SnapshotNotFound(String),

    /// A snapshot id prefix matches more than one snapshot.
    #[error(
        "snapshot prefix {prefix:?} is ambiguous: it matches {candidates}; give more characters"
    )]
    AmbiguousSnapshot {
        /// The prefix given.
        prefix: String,
        /// Some of the matching ids.
        candidates: String,
    },

    /// A path was not found inside a snapshot.
    #[error("{path:?} is not in snapshot {snapshot}; run `cairn ls {snapshot}` to see its files")]
    PathNotInSnapshot {
        /// The path asked for.
        path: String,
        /// The snapshot's short id.
        snapshot: String,
    },

    /// Files cannot be restored because data they need is damaged or missing.
    #[error(
        "cannot restore {files}: data they need is damaged or missing; restore the rest with --skip-damaged, and run `cairn check`"
    )]
    Unrestorable {
        /// The files, named (a few, then a count).
        files: String,
        /// What is damaged.
        #[source]
        source: Box<Error>,
    },

    /// Another command holds a lock that conflicts with the one needed.
    #[error(
        "the repository is locked by {holder}; waited {waited_s} s. Retry when it ends, or wait longer with --lock-wait"
    )]
    Locked {
        /// Who holds it.
        holder: String,
        /// Seconds waited.
        waited_s: u64,
    },

    /// A command's lock was removed by another command while it ran (it was suspended for
    /// longer than a lock stays valid, or could not refresh its lock), so it stopped before a
    /// step that needs the lock.
    #[error(
        "the {operation} lost its repository lock (suspended too long, or the lock could not be refreshed) and stopped before changing anything more; run it again"
    )]
    LockLost {
        /// The command.
        operation: String,
    },

    /// Prune found something that keeps it from knowing what is safe to delete, and stopped
    /// before changing anything.
    #[error("prune stopped before changing anything: {source}")]
    PruneRefused {
        /// What it found.
        #[source]
        source: Box<Error>,
    },

    /// A restore target already holds files.
    #[error(
        "restore target {0} is not empty; restore into a new or empty directory, or over what it holds with --delta"
    )]
    TargetNotEmpty(PathBuf),

    /// A delta restore found a directory with entries where the snapshot has a file or a
    /// symlink: those entries are not in the snapshot, so only `--delete` may remove them.
    #[error(
        "{} is a directory in the restore target where the snapshot has a {wanted}; what it holds is not in the snapshot, so cairn leaves it: move it away, or restore with --delete",
        path.display()
    )]
    DirectoryInTheWay {
        /// The directory.
        path: PathBuf,
        /// What the snapshot has there: "file" or "symlink".
        wanted: &'static str,
    },

    /// Something a restore would remove has another filesystem mounted in it.
    #[error(
        "{} is a mount point inside the restore target; cairn does not remove another filesystem's files: unmount it or move it away",
        .0.display()
    )]
    MountPointInTheWay(PathBuf),

    /// The user gave an argument the engine cannot act on.
    #[error("{0}")]
    InvalidInput(String),

    /// The operation was stopped by the user. For a backup, what it had uploaded is indexed.
    #[error(
        "interrupted: {kept} bytes of new data were stored and indexed before stopping; the next backup will not upload them again"
    )]
    Interrupted {
        /// Bytes of packs and index files kept in the repository.
        kept: u64,
    },
}

impl Error {
    /// True if this error means repository data is damaged or missing (as opposed to a
    /// local problem or a passing storage fault).
    pub fn is_damage(&self) -> bool {
        match self {
            Error::Corrupt { .. } | Error::MissingBlob { .. } => true,
            Error::Storage { source, .. } => source.kind() == opendal::ErrorKind::NotFound,
            _ => false,
        }
    }

    /// Builds an [`Error::Corrupt`].
    pub fn corrupt(object: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            object: object.into(),
            detail: detail.into(),
        }
    }

    /// Builds an [`Error::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// What to do about a storage failure, where its kind says.
fn storage_hint(source: &opendal::Error) -> &'static str {
    if source.to_string().contains("NoSuchBucket") {
        return " (the bucket does not exist: create it first, or check the name and endpoint)";
    }
    match source.kind() {
        opendal::ErrorKind::PermissionDenied => {
            " (access denied: check the credentials and what they may do in this bucket)"
        }
        opendal::ErrorKind::RateLimited => " (the store kept throttling; try again later)",
        _ if source.is_persistent() => " (gave up after retrying; is the store reachable?)",
        _ => "",
    }
}
