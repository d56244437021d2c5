//! Path filters given on the command line (`--include`, `--exclude`): shared by backup's
//! exclusions and restore's selections.

use globset::{GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// The globs `patterns` (given with `flag`) matching paths relative to a snapshot's root: `*`
/// stays within one directory, `**` crosses them; leading and trailing `/` are ignored. `None`
/// when there are none. Shared by restore's filters and backup's exclusions.
pub(crate) fn globs(flag: &str, patterns: &[String]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for g in patterns {
        let glob = globset::GlobBuilder::new(g.trim_matches('/'))
            .literal_separator(true)
            .build()
            .map_err(|e| Error::InvalidInput(format!("{flag} {g:?}: {e}")))?;
        b.add(glob);
    }
    b.build()
        .map(Some)
        .map_err(|e| Error::InvalidInput(format!("{flag}: {e}")))
}
