//! Lock files (format-spec/locks.md): bytes and types only; taking, refreshing and judging
//! locks is the repository layer's (`repo/lock.rs`).

use serde::{Deserialize, Serialize};

/// Version of the lock file format.
pub(crate) const LOCK_VERSION: u32 = 1;

/// What a lock allows others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    /// Many holders at once; excludes an exclusive holder (backup, restore, check, copy).
    Shared,
    /// One holder, nothing else (prune, forget, delete).
    Exclusive,
}

/// The contents of a lock file (format-spec/locks.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockFile {
    /// Format version: 1.
    pub version: u32,
    /// Shared or exclusive.
    pub kind: LockKind,
    /// The command holding it, e.g. `backup`.
    pub operation: String,
    /// Host and process holding it.
    pub hostname: String,
    /// See `hostname`.
    pub pid: u32,
    /// When it was taken and when last refreshed (RFC 3339, UTC).
    pub time: String,
    /// See `time`.
    pub refreshed: String,
    /// The holder's boot (`/proc/sys/kernel/random/boot_id`), pid namespace and process start
    /// time (clock ticks after boot): a pid names the same live process only if all agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// See `boot_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<String>,
    /// See `boot_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
}

impl LockFile {
    /// Decodes a lock file; `None` if it is not one this version reads.
    pub fn decode(bytes: &[u8]) -> Option<LockFile> {
        serde_json::from_slice::<LockFile>(bytes)
            .ok()
            .filter(|l| l.version == LOCK_VERSION)
    }

    /// Encodes a lock file.
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}
