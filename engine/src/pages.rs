//! The page rule (format version 3): which files are cut into whole database pages instead of
//! content-defined chunks, and how many pages go into one chunk.
//!
//! A database rewrites pages in place, so a content-defined cut wastes space there: a changed
//! 8 KiB page costs the chunk or two it overlaps. Cut at page boundaries, a changed page costs
//! one chunk. The rule lives in the config (`pages`) and is decided from a file's first bytes,
//! its length and its path only, so that every client cuts the same file the same way and
//! dedup holds across hosts (format-spec/pages.md).
//!
//! This module owns the rule only: bytes and numbers in, a chunk size out; no I/O.

use serde::{Deserialize, Serialize};

/// Bytes of a file's head the rule looks at.
pub const HEAD_LEN: usize = 100;

/// The config's page rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageRule {
    /// Recognise PostgreSQL relation files by their first page's header, and cut them into
    /// chunks of these groups of pages; absent: not recognised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgresql: Option<Vec<PageGroup>>,
    /// Recognise SQLite databases by their header, and cut them so; absent: not recognised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<Vec<PageGroup>>,
    /// Files whose path matches a glob have pages of the given size (InnoDB's `**/*.ibd`
    /// at 16384, say). The first match wins; globs are tried before recognition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub globs: Vec<PageGlob>,
}

/// A path glob with a page size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageGlob {
    /// A glob over the file's path as backed up (`*` also matches `/`).
    pub glob: String,
    /// Page size in bytes: a power of two from 512 to 1 MiB.
    pub page_size: u32,
    /// How many pages make a chunk, by file size.
    pub groups: Vec<PageGroup>,
}

/// One step of a chunk-size map: files of at least `from` bytes are cut into chunks of
/// `bytes`, rounded down to whole pages (at least one). A map's steps are sorted by `from`,
/// the first at 0; the last step at or below a file's length applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageGroup {
    /// Smallest file length (bytes) this step applies to.
    pub from: u64,
    /// Target chunk size in bytes.
    pub bytes: u32,
}

/// What a file was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paged {
    /// Its page size.
    pub page_size: u32,
    /// The chunk size the rule gives it: a whole number of pages.
    pub chunk_size: u32,
}

/// One page per chunk, whatever the file's size.
pub fn single_pages() -> Vec<PageGroup> {
    vec![PageGroup { from: 0, bytes: 0 }]
}

impl Default for PageRule {
    /// The rule `init` writes (chosen by the measurements in benches/SPACE.md): SQLite
    /// databases page by page; PostgreSQL relation files page by page up to 64 MiB, and in
    /// chunks of two pages (16 KiB) from there, where one chunk's metadata (about 80 bytes)
    /// would otherwise cost a large table of well-compressed rows more than it saves.
    fn default() -> Self {
        PageRule {
            postgresql: Some(vec![
                PageGroup { from: 0, bytes: 0 },
                PageGroup {
                    from: 64 << 20,
                    bytes: 16 << 10,
                },
            ]),
            sqlite: Some(single_pages()),
            globs: Vec::new(),
        }
    }
}

impl PageRule {
    /// Checks the rule as read from a config.
    pub fn validate(&self) -> Result<(), String> {
        for g in &self.globs {
            if !valid_page_size(g.page_size, 512, 1 << 20) {
                return Err(format!(
                    "page size {} of {:?} is not a power of two from 512 to 1 MiB",
                    g.page_size, g.glob
                ));
            }
            globset::Glob::new(&g.glob).map_err(|e| format!("page glob {:?}: {e}", g.glob))?;
            validate_groups(&g.groups)?;
        }
        for groups in [&self.postgresql, &self.sqlite].into_iter().flatten() {
            validate_groups(groups)?;
        }
        Ok(())
    }

    /// The matcher of the rule's globs (validated), for [`PageRule::paged`].
    pub fn matcher(&self) -> globset::GlobSet {
        let mut b = globset::GlobSetBuilder::new();
        for g in &self.globs {
            if let Ok(glob) = globset::Glob::new(&g.glob) {
                b.add(glob);
            }
        }
        b.build().unwrap_or_else(|_| globset::GlobSet::empty())
    }

    /// How the file at `path` (as backed up), of `len` bytes, beginning with `head` (its first
    /// [`HEAD_LEN`] bytes, or all of a shorter file), is cut: `None` for content-defined
    /// chunks. `globs` is [`PageRule::matcher`].
    pub fn paged(
        &self,
        globs: &globset::GlobSet,
        path: &[u8],
        head: &[u8],
        len: u64,
    ) -> Option<Paged> {
        let by_glob = globs
            .matches(String::from_utf8_lossy(path).as_ref())
            .first()
            .map(|&i| (self.globs[i].page_size, &self.globs[i].groups));
        let sqlite = || {
            let groups = self.sqlite.as_ref()?;
            Some((sqlite_page_size(head, len)?, groups))
        };
        let postgresql = || {
            let groups = self.postgresql.as_ref()?;
            Some((postgres_page_size(head, len)?, groups))
        };
        let (page, groups) = by_glob.or_else(sqlite).or_else(postgresql)?;
        if len < u64::from(page) {
            return None;
        }
        let bytes = groups
            .iter()
            .rev()
            .find(|g| g.from <= len)
            .map_or(0, |g| g.bytes);
        Some(Paged {
            page_size: page,
            chunk_size: (bytes / page).max(1) * page,
        })
    }
}

fn validate_groups(groups: &[PageGroup]) -> Result<(), String> {
    if groups.first().map(|g| g.from) != Some(0) {
        return Err("a page group map must start at file size 0".into());
    }
    if groups.windows(2).any(|w| w[0].from >= w[1].from) {
        return Err("a page group map must be sorted by file size".into());
    }
    if groups.iter().any(|g| g.bytes > 16 << 20) {
        return Err("a page group is larger than 16 MiB".into());
    }
    Ok(())
}

fn valid_page_size(n: u32, min: u32, max: u32) -> bool {
    n.is_power_of_two() && (min..=max).contains(&n)
}

/// A SQLite database: the header string, and the page size at offset 16 (big-endian; 1 means
/// 65536), a power of two from 512 to 65536 that divides the file's length.
pub fn sqlite_page_size(head: &[u8], len: u64) -> Option<u32> {
    if head.len() < 18 || &head[..16] != b"SQLite format 3\0" {
        return None;
    }
    let page = match u16::from_be_bytes([head[16], head[17]]) {
        1 => 65536,
        n => u32::from(n),
    };
    (valid_page_size(page, 512, 65536) && len.is_multiple_of(u64::from(page))).then_some(page)
}

/// A PostgreSQL relation file: its first page has a valid page header (`pd_pagesize_version`
/// at offset 18, little-endian: the page size, a power of two from 1 KiB to 32 KiB, plus
/// layout version 4; `24 ≤ pd_lower ≤ pd_upper ≤ pd_special ≤ page size` at offsets 12, 14,
/// 16), and the page size divides the file's length.
pub fn postgres_page_size(head: &[u8], len: u64) -> Option<u32> {
    if head.len() < 24 {
        return None;
    }
    let u16_at = |i: usize| u16::from_le_bytes([head[i], head[i + 1]]);
    let v = u16_at(18);
    let (page, layout) = (u32::from(v & 0xff00), v & 0xff);
    let (lower, upper, special) = (
        u32::from(u16_at(12)),
        u32::from(u16_at(14)),
        u32::from(u16_at(16)),
    );
    let ok = layout == 4
        && valid_page_size(page, 1024, 32768)
        && 24 <= lower
        && lower <= upper
        && upper <= special
        && special <= page
        && len.is_multiple_of(u64::from(page));
    ok.then_some(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg_page(size: u32) -> Vec<u8> {
        let mut p = vec![0u8; size as usize];
        p[12..14].copy_from_slice(&40u16.to_le_bytes());
        p[14..16].copy_from_slice(&((size - 200) as u16).to_le_bytes());
        p[16..18].copy_from_slice(&(size as u16).to_le_bytes());
        p[18..20].copy_from_slice(&((size as u16) | 4).to_le_bytes());
        p
    }

    #[test]
    fn recognises_postgresql_pages() {
        let p = pg_page(8192);
        assert_eq!(postgres_page_size(&p[..HEAD_LEN], 8192 * 3), Some(8192));
        // Not a whole number of pages, a zero page, a broken header: content-defined.
        assert_eq!(postgres_page_size(&p[..HEAD_LEN], 8192 * 3 + 1), None);
        assert_eq!(postgres_page_size(&[0u8; HEAD_LEN], 8192), None);
        let mut bad = p.clone();
        bad[12..14].copy_from_slice(&9000u16.to_le_bytes());
        assert_eq!(postgres_page_size(&bad[..HEAD_LEN], 8192), None);
        let p = pg_page(16384);
        assert_eq!(postgres_page_size(&p[..HEAD_LEN], 16384), Some(16384));
    }

    #[test]
    fn recognises_sqlite_headers() {
        let mut h = b"SQLite format 3\0".to_vec();
        h.extend_from_slice(&4096u16.to_be_bytes());
        h.resize(HEAD_LEN, 0);
        assert_eq!(sqlite_page_size(&h, 4096 * 10), Some(4096));
        assert_eq!(sqlite_page_size(&h, 4096 * 10 + 512), None);
        h[16..18].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(sqlite_page_size(&h, 65536), Some(65536));
        h[16..18].copy_from_slice(&3000u16.to_be_bytes());
        assert_eq!(sqlite_page_size(&h, 3000 * 4), None);
    }

    #[test]
    fn groups_and_globs_decide_the_chunk() {
        let rule = PageRule {
            postgresql: Some(vec![
                PageGroup { from: 0, bytes: 0 },
                PageGroup {
                    from: 1 << 20,
                    bytes: 32768,
                },
            ]),
            sqlite: None,
            globs: vec![PageGlob {
                glob: "**/*.ibd".into(),
                page_size: 16384,
                groups: single_pages(),
            }],
        };
        rule.validate().unwrap();
        let globs = rule.matcher();
        let p = pg_page(8192);
        let small = rule.paged(&globs, b"base/1/1234", &p[..HEAD_LEN], 8192 * 4);
        assert_eq!(small.map(|p| p.chunk_size), Some(8192));
        let big = rule.paged(&globs, b"base/1/1234", &p[..HEAD_LEN], 8192 * 200);
        assert_eq!(big.map(|p| p.chunk_size), Some(32768));
        let ibd = rule.paged(
            &globs,
            b"/var/lib/mysql/shop/t.ibd",
            &[0u8; 10],
            16384 * 100,
        );
        assert_eq!(ibd.map(|p| p.chunk_size), Some(16384));
        // A file shorter than one page is content-defined.
        assert_eq!(rule.paged(&globs, b"x.ibd", &[], 100), None);
        // SQLite is not recognised by this rule.
        let mut h = b"SQLite format 3\0".to_vec();
        h.extend_from_slice(&4096u16.to_be_bytes());
        assert_eq!(rule.paged(&globs, b"a.db", &h, 4096 * 3), None);
        let bad = PageRule {
            postgresql: Some(vec![PageGroup { from: 5, bytes: 0 }]),
            ..rule.clone()
        };
        assert!(bad.validate().is_err());
    }
}
