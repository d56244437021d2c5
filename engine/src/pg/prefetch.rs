//! Recovery at the disk's pace: while PostgreSQL replays one WAL segment, the next ones are
//! fetched ahead into a local spool, so that its next `restore_command` call finds its segment
//! there and returns at once instead of opening the repository.
//!
//! ```text
//! fetch-wal N:  spool/N there? -> copy it to %p (it was verified when fetched); done
//!               else fetch N from the repository
//!               then (the caller, in the background) prefetch_wal(N)
//!               (unless the spool still holds half of `ahead` after N: prefetch_wanted)
//! prefetch_wal(N): the spool's lock, or nothing to do (another prefetch runs)
//!               drop spooled segments before N (replayed, or skipped by a new timeline)
//!               half of `ahead` still spooled after N? nothing to do (the repository is
//!               opened once per half spool, not once per segment)
//!               for the archived segments after N on N's timeline, in order, up to `ahead`
//!               in the spool: fetch each into it (whole or not at all); stop at a gap
//! ```
//!
//! The spool is the user's own (0700, under the cache directory) and holds at most `ahead`
//! segments: bounded disk, and nothing held in memory.

use std::path::{Path, PathBuf};

use super::archive::fetch_wal;
use super::local::{create_private_dir, try_lock};
use crate::error::{Error, Result};
use crate::repo::{Repository, wal_names};

/// Where and how far segments are fetched ahead.
#[derive(Debug, Clone)]
pub struct PrefetchOptions {
    /// The spool directory.
    pub dir: PathBuf,
    /// Most segments held ahead.
    pub ahead: usize,
}

const LOCK_NAME: &str = "prefetch.lock";

/// Whether `name` is a WAL segment (not a history, backup or partial file): the only files
/// fetched ahead.
pub fn is_segment(name: &str) -> bool {
    name.len() == 24
        && name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
}

/// Copies `name` from the spool to `dest` (whole or not at all) if a prefetch left it there,
/// and removes it from the spool; true if it did.
pub fn take_prefetched(opts: &PrefetchOptions, name: &str, dest: &Path) -> Result<bool> {
    let spooled = opts.dir.join(name);
    if !is_segment(name) || !spooled.is_file() {
        return Ok(false);
    }
    // On one filesystem the segment moves at once; across two it is copied beside `dest`
    // first, so that `dest` appears whole or not at all.
    if std::fs::rename(&spooled, dest).is_ok() {
        return Ok(true);
    }
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty());
    let tmp = dir
        .unwrap_or(Path::new("."))
        .join(format!(".cairn-prefetched-{name}"));
    std::fs::copy(&spooled, &tmp)
        .and_then(|_| std::fs::rename(&tmp, dest))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io("cannot copy into place", dest, e)
        })?;
    let _ = std::fs::remove_file(&spooled);
    Ok(true)
}

/// Whether a prefetch after `name` has work to do: the spool holds fewer than half of
/// `ahead` segments after it. Refilling only then opens the repository once per several
/// segments, and the fetch-wal calls in between start no process at all.
pub fn prefetch_wanted(opts: &PrefetchOptions, name: &str) -> bool {
    if !is_segment(name) || opts.ahead == 0 {
        return false;
    }
    let timeline = &name[..8];
    let ahead = spooled_segments(&opts.dir)
        .iter()
        .filter(|n| n.as_str() > name && &n[..8] == timeline)
        .count();
    ahead < opts.ahead.div_ceil(2)
}

/// Fetches into the spool the archived segments that follow `name` on its timeline (see the
/// module's description); returns how many it fetched. The repository is opened (by `open`)
/// only by the one prefetcher that takes the spool's lock: every `fetch-wal` call starts one,
/// and the others must cost nothing (opening the index cache beside a running prefetcher would
/// build a private copy of it).
pub fn prefetch_wal(
    open: &dyn Fn() -> Result<Repository>,
    name: &str,
    opts: &PrefetchOptions,
) -> Result<usize> {
    if !is_segment(name) {
        return Ok(0);
    }
    create_private_dir(&opts.dir)?;
    let Some(_lock) = try_lock(&opts.dir.join(LOCK_NAME))? else {
        return Ok(0);
    };
    // What sorts before `name` was replayed, or skipped by a switch to another timeline.
    for spooled in spooled_segments(&opts.dir) {
        if spooled.as_str() <= name {
            let _ = std::fs::remove_file(opts.dir.join(&spooled));
        }
    }
    if !prefetch_wanted(opts, name) {
        return Ok(0);
    }
    let repo = &mut open()?;
    let timeline = &name[..8];
    let mut names: Vec<String> = wal_names(repo)?
        .into_iter()
        .filter(|n| is_segment(n) && n.as_str() > name && &n[..8] == timeline)
        .collect();
    names.sort();
    let mut fetched = 0;
    for n in names.into_iter().take(opts.ahead) {
        let at = opts.dir.join(&n);
        if at.is_file() {
            continue;
        }
        if !fetch_wal(repo, &n, &at)? {
            break;
        }
        fetched += 1;
    }
    Ok(fetched)
}

fn spooled_segments(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| is_segment(n))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_segments_are_fetched_ahead() {
        assert!(is_segment("000000010000000000000003"));
        assert!(!is_segment("00000002.history"));
        assert!(!is_segment("000000010000000000000003.partial"));
        assert!(!is_segment("000000010000000000000003.00000028.backup"));
        assert!(!is_segment("00000001000000000000000a"));
    }

    #[test]
    fn a_spooled_segment_is_taken_whole_once() {
        let dir = tempfile::tempdir().unwrap();
        let opts = PrefetchOptions {
            dir: dir.path().join("spool"),
            ahead: 4,
        };
        create_private_dir(&opts.dir).unwrap();
        let name = "000000010000000000000007";
        std::fs::write(opts.dir.join(name), b"segment").unwrap();
        let dest = dir.path().join("RECOVERYXLOG");
        assert!(take_prefetched(&opts, name, &dest).unwrap());
        assert_eq!(std::fs::read(&dest).unwrap(), b"segment");
        assert!(!take_prefetched(&opts, name, &dest).unwrap());
        assert!(!take_prefetched(&opts, "000000010000000000000008", &dest).unwrap());
    }
}
