//! Repository locks: what keeps `prune` from deleting data that a running command relies on.
//!
//! Commands that read or add data (backup, restore, check, copy, the `pg` ones) hold a
//! *shared* lock; `prune`, `forget`, `delete` and the WAL expiry after them hold an
//! *exclusive* one. A lock is a small JSON file under `locks/`, named by a random id,
//! refreshed while its holder runs and removed when it ends (format-spec/locks.md).
//!
//! ```text
//! acquire(kind):
//!   write locks/<random id>             (our claim, visible to everyone from now on)
//!   list locks/, read every other lock  (a lock written after our listing sees ours)
//!   stale ones (not refreshed for 30 min, or of a dead process on this host) are removed
//!   conflict = another live lock, where ours or theirs is exclusive
//!   no conflict: hold it, refreshing it every 5 min;  conflict: remove ours, wait, retry
//! ```
//!
//! Two commands that start together may both see the other and both step back; each then
//! waits a random while before trying again, so one of them wins.
//!
//! A holder counts on its lock only while its last refresh is under 20 minutes old, 10 short
//! of the stale limit: before each index file and each snapshot it writes, it confirms that
//! (see [`Lock::confirm`]), so nothing it writes can follow a prune that took its lock for
//! stale.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::lock_file::{LOCK_VERSION, LockFile, LockKind};

use super::layout::{Kind, Object};
use super::objects::Objects;

/// A holder rewrites its lock this often.
const REFRESH: Duration = Duration::from_secs(5 * 60);
/// A lock not refreshed for this long belongs to a holder that is gone.
const STALE: Duration = Duration::from_secs(30 * 60);
/// After a failed refresh, the next try comes this soon.
const RETRY: Duration = Duration::from_secs(30);
/// A holder whose last refresh is older than this no longer counts on its lock: well inside
/// [`STALE`], so that it stops before any other command may judge the lock stale.
const CONFIRM_AGE: Duration = Duration::from_secs(20 * 60);

impl LockFile {
    fn describe(&self) -> String {
        format!(
            "{} (pid {} on {}, since {})",
            self.operation, self.pid, self.hostname, self.time
        )
    }

    /// True if its holder is certainly gone: not refreshed for 30 minutes, or a process of
    /// this very machine and pid namespace that no longer runs.
    fn is_stale(&self, now: jiff::Timestamp) -> bool {
        let Ok(refreshed) = self.refreshed.parse::<jiff::Timestamp>() else {
            return true;
        };
        let age = now.duration_since(refreshed);
        if age > jiff::SignedDuration::try_from(STALE).unwrap_or(jiff::SignedDuration::MAX) {
            return true;
        }
        let here = Holder::current();
        let same_place = self.hostname == here.hostname
            && self.boot_id.is_some()
            && self.boot_id == here.boot_id
            && self.pid_ns.is_some()
            && self.pid_ns == here.pid_ns;
        same_place && start_ticks(self.pid) != self.start_ticks
    }
}

/// Who a process is, as lock files record it.
struct Holder {
    hostname: String,
    boot_id: Option<String>,
    pid_ns: Option<String>,
}

impl Holder {
    fn current() -> Holder {
        Holder {
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|s| s.trim().to_string()),
            pid_ns: std::fs::read_link("/proc/self/ns/pid")
                .ok()
                .map(|p| p.to_string_lossy().into_owned()),
        }
    }
}

/// When process `pid` started (field 22 of `/proc/<pid>/stat`), or `None` if it does not run.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct Lock {
    held: Arc<Held>,
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
}

/// What a held lock's holder and its refresher share.
#[derive(Debug)]
pub(crate) struct Held {
    objects: Objects,
    path: Object,
    /// The lock file's contents as first written (before any refresh).
    mine: LockFile,
    /// Set by the refresher when it found the lock file gone, or could not rewrite it for
    /// [`CONFIRM_AGE`].
    lost: AtomicBool,
    /// When the lock file was last written, in seconds since the Unix epoch (wall-clock time,
    /// which, unlike the monotonic clock, goes on while the machine is suspended).
    refreshed_at: AtomicU64,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Drop for Lock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let _ = self.held.objects.delete(&self.held.path);
    }
}

impl Held {
    /// See [`Lock::confirm`].
    pub(crate) fn confirm(&self) -> Result<()> {
        let held = !self.lost.load(Ordering::SeqCst)
            && self.age() < CONFIRM_AGE.as_secs()
            && self
                .objects
                .read_opt(&self.path)?
                .and_then(|b| LockFile::decode(&b))
                .is_some_and(|l| l.pid == self.mine.pid && l.time == self.mine.time);
        if held {
            Ok(())
        } else {
            Err(Error::LockLost {
                operation: self.mine.operation.clone(),
            })
        }
    }

    /// Seconds since the lock file was last written.
    fn age(&self) -> u64 {
        unix_now().saturating_sub(self.refreshed_at.load(Ordering::SeqCst))
    }

    /// Rewrites the lock file with the time now. `Ok(false)` if it is gone: another command
    /// judged it stale and removed it, and writing it again would claim what may be taken.
    /// So is a lock whose last refresh is [`CONFIRM_AGE`] old: another command may be about to
    /// remove it, between this read and this write, and rely on its holder being gone.
    fn refresh(&self) -> Result<bool> {
        if self.age() >= CONFIRM_AGE.as_secs() || self.objects.read_opt(&self.path)?.is_none() {
            return Ok(false);
        }
        let now = unix_now();
        let mut lock = self.mine.clone();
        lock.refreshed = jiff::Timestamp::now().to_string();
        self.objects.write(&self.path, lock.encode())?;
        self.refreshed_at.store(now, Ordering::SeqCst);
        Ok(true)
    }
}

impl Lock {
    /// Confirms that the lock is still held: its file is there, still ours, and refreshed
    /// within the last 20 minutes. Called before steps that must not happen without it (prune
    /// deleting, a backup writing an index file or committing its snapshot), since a holder
    /// suspended for longer than the stale limit, or whose refreshes failed, may have had its
    /// lock removed by another command.
    pub fn confirm(&self) -> Result<()> {
        self.held.confirm()
    }

    /// What the repository keeps to confirm this lock before each index file it writes.
    pub(crate) fn shared(&self) -> std::sync::Weak<Held> {
        Arc::downgrade(&self.held)
    }

    /// Takes a lock of `kind` for `operation`, waiting up to `wait` for conflicting holders
    /// to finish.
    pub(crate) fn acquire(
        objects: &Objects,
        kind: LockKind,
        operation: &str,
        wait: Duration,
    ) -> Result<Lock> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let name = hex::encode(rand::random::<[u8; 32]>());
            let now = jiff::Timestamp::now().to_string();
            let here = Holder::current();
            let mine = LockFile {
                version: LOCK_VERSION,
                kind,
                operation: operation.to_string(),
                hostname: here.hostname,
                pid: std::process::id(),
                time: now.clone(),
                refreshed: now,
                boot_id: here.boot_id,
                pid_ns: here.pid_ns,
                start_ticks: start_ticks(std::process::id()),
            };
            let path = Object::Lock(name.clone());
            objects.write(&path, mine.encode())?;
            match conflict(objects, &name, kind) {
                Ok(None) => {
                    let held = Arc::new(Held {
                        objects: objects.clone(),
                        path,
                        mine,
                        lost: AtomicBool::new(false),
                        refreshed_at: AtomicU64::new(unix_now()),
                    });
                    let (stop, refresher) = refresh_in_background(held.clone());
                    return Ok(Lock {
                        held,
                        stop: Some(stop),
                        refresher: Some(refresher),
                    });
                }
                Ok(Some(holder)) => {
                    objects.delete(&path)?;
                    if started.elapsed() >= wait {
                        return Err(Error::Locked {
                            holder,
                            waited_s: started.elapsed().as_secs(),
                        });
                    }
                }
                Err(e) => {
                    let _ = objects.delete(&path);
                    return Err(e);
                }
            }
            // Random, growing pauses: two commands that collided do not collide again.
            let jitter = Duration::from_millis(rand::random::<u64>() % 100);
            std::thread::sleep((pause + jitter).min(wait.saturating_sub(started.elapsed())));
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}

/// The first live lock other than `mine` that conflicts with a lock of `kind`; stale locks
/// found on the way are removed.
fn conflict(objects: &Objects, mine: &str, kind: LockKind) -> Result<Option<String>> {
    let now = jiff::Timestamp::now();
    let listing = objects.list(Kind::Lock)?;
    if let Some(path) = listing.stray.first() {
        return Ok(Some(format!(
            "a lock file this cairn cannot read ({path}; remove it if no cairn command runs on this repository)"
        )));
    }
    for object in listing.objects {
        if object.name() == Some(mine) {
            continue;
        }
        // A lock removed since the listing is no conflict.
        let bytes = match objects.read_opt(&object) {
            Ok(Some(bytes)) => Some(bytes),
            Ok(None) => continue,
            // Sealed under a key or epoch this build does not have, or not sealed at all.
            Err(e) if e.is_damage() => None,
            Err(e) => return Err(e),
        };
        // Lock files are written whole (atomically), so one that does not parse (or does not
        // open) was not written by this version: perhaps by a newer one. It is respected,
        // never removed.
        let Some(other) = bytes.as_deref().and_then(LockFile::decode) else {
            return Ok(Some(format!(
                "a lock file this cairn cannot read ({}; remove it if no cairn command runs on this repository)",
                object.path()
            )));
        };
        if other.is_stale(now) {
            let _ = objects.delete(&object);
            continue;
        }
        if kind == LockKind::Exclusive || other.kind == LockKind::Exclusive {
            return Ok(Some(other.describe()));
        }
    }
    Ok(None)
}

/// Refreshes the lock every [`REFRESH`]. A refresh that fails (the store unreachable for a
/// while) is tried again every [`RETRY`] until the lock is [`CONFIRM_AGE`] old; only then,
/// or when the lock file is gone, is the lock lost.
fn refresh_in_background(held: Arc<Held>) -> (mpsc::Sender<()>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<()>();
    let handle = std::thread::spawn(move || {
        let mut wait = REFRESH;
        loop {
            if !matches!(rx.recv_timeout(wait), Err(mpsc::RecvTimeoutError::Timeout)) {
                // The holder released the lock.
                return;
            }
            wait = match held.refresh() {
                Ok(true) => REFRESH,
                Ok(false) => break,
                Err(_) if held.age() < CONFIRM_AGE.as_secs() => RETRY,
                Err(_) => break,
            };
        }
        held.lost.store(true, Ordering::SeqCst);
    });
    (tx, handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::store::{Location, Store};

    fn store() -> Objects {
        Objects::new(Store::open(&Location::Memory, true).unwrap())
    }

    #[test]
    fn shared_locks_coexist_and_exclude_an_exclusive_one() {
        let s = store();
        let a = Lock::acquire(&s, LockKind::Shared, "backup", Duration::ZERO).unwrap();
        let b = Lock::acquire(&s, LockKind::Shared, "restore", Duration::ZERO).unwrap();
        let e = Lock::acquire(&s, LockKind::Exclusive, "prune", Duration::from_millis(200));
        assert!(matches!(e, Err(Error::Locked { .. })), "{e:?}");
        drop((a, b));
        let x = Lock::acquire(&s, LockKind::Exclusive, "prune", Duration::ZERO).unwrap();
        assert!(Lock::acquire(&s, LockKind::Shared, "backup", Duration::ZERO).is_err());
        drop(x);
        assert!(
            s.list(Kind::Lock).unwrap().objects.is_empty(),
            "a released lock is removed"
        );
    }

    #[test]
    fn locks_of_dead_processes_and_old_locks_are_stale() {
        let s = store();
        let now = jiff::Timestamp::now();
        let mut dead = LockFile {
            version: LOCK_VERSION,
            kind: LockKind::Exclusive,
            operation: "prune".into(),
            hostname: Holder::current().hostname,
            // Above the kernel's pid limit: no such process.
            pid: u32::MAX - 1,
            time: now.to_string(),
            refreshed: now.to_string(),
            boot_id: Holder::current().boot_id,
            pid_ns: Holder::current().pid_ns,
            start_ticks: Some(1),
        };
        assert!(dead.is_stale(now));
        s.write(&Object::Lock("dead".into()), dead.encode())
            .unwrap();
        let _ = Lock::acquire(&s, LockKind::Shared, "backup", Duration::ZERO).unwrap();
        assert!(
            s.read_opt(&Object::Lock("dead".into())).unwrap().is_none(),
            "stale lock removed"
        );
        // A live pid of a process that started at another time is another process.
        dead.pid = std::process::id();
        assert!(dead.is_stale(now));
        dead.start_ticks = start_ticks(std::process::id());
        assert!(!dead.is_stale(now));
        // Another host's (or pid namespace's) lock is stale only when not refreshed for long.
        dead.pid = u32::MAX - 1;
        dead.pid_ns = Some("pid:[1]".into());
        assert!(!dead.is_stale(now));
        dead.hostname = "elsewhere".into();
        assert!(!dead.is_stale(now));
        let later = now + jiff::SignedDuration::from_mins(31);
        assert!(dead.is_stale(later));
        // Round trip.
        assert_eq!(LockFile::decode(&dead.encode()), Some(dead.clone()));
        dead.version = 2;
        assert_eq!(LockFile::decode(&dead.encode()), None);
    }

    #[test]
    fn a_lock_unrefreshed_for_long_or_removed_is_not_confirmed() {
        let s = store();
        let lock = Lock::acquire(&s, LockKind::Shared, "backup", Duration::ZERO).unwrap();
        lock.confirm().unwrap();
        // Suspended, or the store unreachable, for 20 minutes: others may soon take it for
        // stale, so its holder stops counting on it.
        let now = lock.held.refreshed_at.load(Ordering::SeqCst);
        lock.held
            .refreshed_at
            .store(now - CONFIRM_AGE.as_secs(), Ordering::SeqCst);
        assert!(matches!(lock.confirm(), Err(Error::LockLost { .. })));
        // Nor is it refreshed then: a command that judged it stale may be removing it.
        assert!(!lock.held.refresh().unwrap());
        // Refreshed in time, it holds; removed by another command, it is lost, and a refresh
        // does not write it back.
        lock.held.refreshed_at.store(now, Ordering::SeqCst);
        assert!(lock.held.refresh().unwrap());
        lock.confirm().unwrap();
        s.delete(&lock.held.path).unwrap();
        assert!(matches!(lock.confirm(), Err(Error::LockLost { .. })));
        assert!(!lock.held.refresh().unwrap());
        assert!(s.read_opt(&lock.held.path).unwrap().is_none());
    }

    #[test]
    fn the_frozen_lock_file_still_reads() {
        let bytes = include_bytes!("../../../tests/fixtures/lock-v1.json");
        let l = LockFile::decode(bytes).unwrap();
        assert_eq!(l.kind, LockKind::Shared);
        assert_eq!(l.operation, "backup");
        assert_eq!(l.pid, 4242);
    }
}
