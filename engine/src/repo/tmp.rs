//! Leftovers of writes: on a local disk the store writes each file into `tmp/` and renames it
//! into place, so a write killed midway (or failed on a full disk) leaves a file there. Prune
//! sweeps those an hour old.

use crate::error::{Error, Result};

/// A leftover of a write (in `tmp/`, or a WAL fetch's directory) this old belongs to a write
/// that is over.
pub(crate) const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// True if `m` was last modified more than `age` ago.
pub(crate) fn modified_before(m: &std::fs::Metadata, age: std::time::Duration) -> bool {
    m.modified()
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|elapsed| elapsed > age)
}

/// Removes the files directly in `dir` last modified more than `age` ago; returns how many.
pub(crate) fn remove_old_files(dir: &std::path::Path, age: std::time::Duration) -> Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("cannot list", dir, e)),
    };
    let mut removed = 0;
    for e in entries {
        let e = e.map_err(|e| Error::io("cannot list", dir, e))?;
        let old = e
            .metadata()
            .is_ok_and(|m| m.is_file() && modified_before(&m, age));
        if old {
            let p = e.path();
            std::fs::remove_file(&p).map_err(|err| Error::io("cannot remove", &p, err))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_leftovers_in_tmp_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        let new = dir.path().join("new");
        std::fs::write(&old, b"a failed write").unwrap();
        std::fs::write(&new, b"a write going on").unwrap();
        let two_hours_ago =
            filetime::FileTime::from_unix_time(filetime::FileTime::now().unix_seconds() - 7200, 0);
        filetime::set_file_mtime(&old, two_hours_ago).unwrap();
        assert_eq!(remove_old_files(dir.path(), STALE_TMP).unwrap(), 1);
        assert!(!old.exists() && new.exists());
        assert_eq!(
            remove_old_files(&dir.path().join("absent"), STALE_TMP).unwrap(),
            0
        );
    }
}
