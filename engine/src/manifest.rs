//! Snapshot manifests: trees (directory listings) and chunk lists, as content-addressed blobs.
//!
//! A snapshot names one root tree. A tree lists the entries of one directory, sorted by name;
//! a directory entry names its subtree by id, so unchanged directories are shared between
//! snapshots. A file entry holds its [`Content`]: its chunk list, inline when short. A long
//! chunk list is cut into content-defined sub-lists (list blobs), and those lists into lists
//! again, until the top fits inline: a change to a few chunks of a huge file rewrites only the
//! sub-lists on the path to those chunks, so manifests grow with the change, not the file.
//!
//! The byte-exact encodings are in `format-spec/manifest.md`. Decoders treat their input as
//! hostile: entry names are checked to be single, safe path components in strictly increasing
//! order, so no snapshot can name `..`, an absolute path or the same entry twice.

use crate::config::ListSplitParams;
use crate::error::Result;
use crate::id::Id;
use crate::wire::{DecodeResult, Malformed, Put, Reader};

/// Tree and list encoding version written and read by this build.
pub const MANIFEST_VERSION: u8 = 1;
/// Longest entry name accepted.
pub const MAX_NAME_LEN: usize = 4096;
/// Deepest list nesting written or accepted; with the default split (8 references per list)
/// depth 32 covers 2^96 chunks, beyond any file.
pub const MAX_DEPTH: u8 = 32;
/// Deepest directory nesting a snapshot may have; readers refuse deeper trees as hostile
/// (paths that deep exceed what the kernel accepts anyway).
pub(crate) const MAX_TREE_DEPTH: usize = 2048;
/// Smallest encoding of a tree entry (a one-byte name and the fixed-width fields); bounds the
/// entry count a tree may claim.
const MIN_NODE_LEN: usize = 34;

/// One reference in a chunk list: a chunk (depth 0) or a sub-list, and the bytes it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentRef {
    /// Id of the chunk or list blob.
    pub id: Id,
    /// Bytes of file content it covers.
    pub len: u64,
}

/// A file's contents: a chunk list at `depth` 0, or a list of lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Content {
    /// 0: `refs` are chunks; d > 0: `refs` are list blobs of depth d-1.
    pub depth: u8,
    /// The references, in file order.
    pub refs: Vec<ContentRef>,
}

impl Content {
    /// Total bytes covered (saturating; decoded contents never overflow, see `decode_from`).
    pub fn len(&self) -> u64 {
        self.refs.iter().fold(0u64, |a, r| a.saturating_add(r.len))
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(self.depth);
        out.put_varint(self.refs.len() as u64);
        for r in &self.refs {
            out.put_id(&r.id);
            out.put_varint(r.len);
        }
    }

    fn decode_from(r: &mut Reader<'_>) -> DecodeResult<Content> {
        let depth = r.u8()?;
        if depth > MAX_DEPTH {
            return Err(Malformed::new(format!("list depth {depth} too deep")));
        }
        let n = r.count(33)?;
        let mut refs = Vec::with_capacity(n);
        let mut total = 0u64;
        for _ in 0..n {
            let id = r.id()?;
            let len = r.varint()?;
            total = total
                .checked_add(len)
                .ok_or_else(|| Malformed::new("content length overflows 64 bits"))?;
            refs.push(ContentRef { id, len });
        }
        Ok(Content { depth, refs })
    }
}

/// Encodes a list blob.
pub fn encode_list(list: &Content) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + list.refs.len() * 36);
    out.put_u8(MANIFEST_VERSION);
    list.encode_into(&mut out);
    out
}

/// Decodes a list blob.
pub fn decode_list(bytes: &[u8]) -> DecodeResult<Content> {
    let mut r = Reader::new(bytes);
    check_version(&mut r)?;
    let c = Content::decode_from(&mut r)?;
    r.expect_end()?;
    Ok(c)
}

fn check_version(r: &mut Reader<'_>) -> DecodeResult<()> {
    let v = r.u8()?;
    if v != MANIFEST_VERSION {
        return Err(Malformed::new(format!(
            "manifest version {v}, this build reads {MANIFEST_VERSION}"
        )));
    }
    Ok(())
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A regular file and its contents.
    File(Content),
    /// A directory and the id of its tree.
    Dir(Id),
    /// A symbolic link and its target, as stored (not resolved).
    Symlink(Vec<u8>),
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The entry's name: one path component.
    pub name: Vec<u8>,
    /// What it is.
    pub kind: NodeKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds part of the modification time.
    pub mtime_ns: u32,
    /// Status-change time, seconds (used to spot unchanged files).
    pub ctime: i64,
    /// Nanoseconds part of the status-change time.
    pub ctime_ns: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Inode number (used to spot unchanged files).
    pub inode: u64,
    /// Device number (used to spot unchanged files).
    pub dev: u64,
    /// Size in bytes (the content length for files).
    pub size: u64,
}

impl Node {
    /// Type name used in listings.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            NodeKind::File(_) => "file",
            NodeKind::Dir(_) => "dir",
            NodeKind::Symlink(_) => "symlink",
        }
    }
}

/// True if `name` is a single path component that is safe to create inside a directory.
pub fn is_safe_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != b"."
        && name != b".."
        && !name.contains(&b'/')
        && !name.contains(&0)
}

/// A directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree {
    /// Entries in strictly increasing byte order of name.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Encodes the tree blob. Sorts the nodes first; names must be unique and safe.
    pub fn encode(&mut self) -> Vec<u8> {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = Vec::with_capacity(16 + self.nodes.len() * 96);
        out.put_u8(MANIFEST_VERSION);
        out.put_varint(self.nodes.len() as u64);
        for n in &self.nodes {
            out.put_bytes(&n.name);
            let kind = match n.kind {
                NodeKind::File(_) => 1,
                NodeKind::Dir(_) => 2,
                NodeKind::Symlink(_) => 3,
            };
            out.put_u8(kind);
            out.put_varint(u64::from(n.mode));
            out.put_i64(n.mtime);
            out.put_u32(n.mtime_ns);
            out.put_i64(n.ctime);
            out.put_u32(n.ctime_ns);
            out.put_varint(u64::from(n.uid));
            out.put_varint(u64::from(n.gid));
            out.put_varint(n.inode);
            out.put_varint(n.dev);
            out.put_varint(n.size);
            match &n.kind {
                NodeKind::File(c) => c.encode_into(&mut out),
                NodeKind::Dir(id) => out.put_id(id),
                NodeKind::Symlink(t) => out.put_bytes(t),
            }
        }
        out
    }

    /// Decodes and validates a tree blob.
    pub fn decode(bytes: &[u8]) -> DecodeResult<Tree> {
        let mut r = Reader::new(bytes);
        check_version(&mut r)?;
        let n = r.count(MIN_NODE_LEN)?;
        let mut nodes: Vec<Node> = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.bytes()?.to_vec();
            if !is_safe_name(&name) {
                return Err(Malformed::new(format!(
                    "entry name {:?} is not a safe path component",
                    String::from_utf8_lossy(&name)
                )));
            }
            if let Some(prev) = nodes.last()
                && prev.name >= name
            {
                return Err(Malformed::new(format!(
                    "entry {:?} is out of order or repeated",
                    String::from_utf8_lossy(&name)
                )));
            }
            let kind = r.u8()?;
            let mode = u32::try_from(r.varint()?)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| Malformed::new("mode out of range"))?;
            let mtime = r.i64()?;
            let mtime_ns = r.u32()?;
            let ctime = r.i64()?;
            let ctime_ns = r.u32()?;
            if mtime_ns >= 1_000_000_000 || ctime_ns >= 1_000_000_000 {
                return Err(Malformed::new("nanoseconds out of range"));
            }
            let uid = u32::try_from(r.varint()?).map_err(|_| Malformed::new("uid too large"))?;
            let gid = u32::try_from(r.varint()?).map_err(|_| Malformed::new("gid too large"))?;
            let inode = r.varint()?;
            let dev = r.varint()?;
            let size = r.varint()?;
            let kind = match kind {
                1 => {
                    let c = Content::decode_from(&mut r)?;
                    if c.len() != size {
                        return Err(Malformed::new(format!(
                            "file {:?} has size {size} but its chunks cover {}",
                            String::from_utf8_lossy(&name),
                            c.len()
                        )));
                    }
                    NodeKind::File(c)
                }
                2 => NodeKind::Dir(r.id()?),
                3 => NodeKind::Symlink(r.bytes()?.to_vec()),
                k => return Err(Malformed::new(format!("unknown entry type {k}"))),
            };
            nodes.push(Node {
                name,
                kind,
                mode,
                mtime,
                mtime_ns,
                ctime,
                ctime_ns,
                uid,
                gid,
                inode,
                dev,
                size,
            });
        }
        r.expect_end()?;
        Ok(Tree { nodes })
    }

    /// The entry named `name`.
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

/// Builds a file's [`Content`] from its chunks as they arrive, storing sub-lists through a
/// callback, with memory bounded by the split parameters (not by the file size).
///
/// The result equals the batch definition in `format-spec/manifest.md`: while a level holds
/// more than `max_inline` references, cut it after every reference whose id ends a sub-list
/// (or after `max_entries`), store each sub-list, and go up one level with their references.
#[derive(Debug)]
pub struct ContentBuilder {
    params: ListSplitParams,
    /// Pending references per level; a level is "splitting" once it has exceeded
    /// `max_inline`, after which complete groups are stored as soon as they close.
    levels: Vec<Level>,
}

#[derive(Debug, Default)]
struct Level {
    pending: Vec<ContentRef>,
    splitting: bool,
}

impl ContentBuilder {
    /// A builder for one file.
    pub fn new(params: ListSplitParams) -> ContentBuilder {
        ContentBuilder {
            params,
            levels: vec![Level::default()],
        }
    }

    fn ends_group(&self, id: &Id) -> bool {
        let mask = (1u64 << self.params.bits) - 1;
        let v = u64::from_le_bytes(id.0[..8].try_into().unwrap_or([0; 8]));
        v & mask == mask
    }

    /// Appends a chunk.
    pub fn push(
        &mut self,
        r: ContentRef,
        store: &mut dyn FnMut(Vec<u8>) -> Result<Id>,
    ) -> Result<()> {
        self.push_at(0, r, store)
    }

    fn push_at(
        &mut self,
        level: usize,
        r: ContentRef,
        store: &mut dyn FnMut(Vec<u8>) -> Result<Id>,
    ) -> Result<()> {
        if level > usize::from(MAX_DEPTH) {
            return Err(crate::Error::InvalidInput(format!(
                "a file needs chunk lists nested deeper than {MAX_DEPTH}; use a larger chunk size"
            )));
        }
        if self.levels.len() <= level {
            self.levels.push(Level::default());
        }
        self.levels[level].pending.push(r);
        let lv = &mut self.levels[level];
        if !lv.splitting && lv.pending.len() > self.params.max_inline as usize {
            lv.splitting = true;
        }
        if self.levels[level].splitting {
            self.flush_complete(level, store)?;
        }
        Ok(())
    }

    /// Stores every complete group at the front of `level`'s pending references.
    fn flush_complete(
        &mut self,
        level: usize,
        store: &mut dyn FnMut(Vec<u8>) -> Result<Id>,
    ) -> Result<()> {
        loop {
            let max = self.params.max_entries as usize;
            let cut = self.levels[level]
                .pending
                .iter()
                .take(max)
                .position(|r| self.ends_group(&r.id))
                .map(|i| i + 1)
                .or_else(|| (self.levels[level].pending.len() >= max).then_some(max));
            let Some(cut) = cut else { return Ok(()) };
            let group: Vec<ContentRef> = self.levels[level].pending.drain(..cut).collect();
            let up = store_group(level, group, store)?;
            self.push_at(level + 1, up, store)?;
        }
    }

    /// Finishes the file: stores the remaining sub-lists and returns the inline top level.
    pub fn finish(mut self, store: &mut dyn FnMut(Vec<u8>) -> Result<Id>) -> Result<Content> {
        let mut level = 0;
        loop {
            if !self.levels[level].splitting {
                let refs = std::mem::take(&mut self.levels[level].pending);
                return Ok(Content {
                    depth: level as u8,
                    refs,
                });
            }
            let rest = std::mem::take(&mut self.levels[level].pending);
            if !rest.is_empty() {
                let up = store_group(level, rest, store)?;
                self.push_at(level + 1, up, store)?;
            }
            level += 1;
        }
    }
}

fn store_group(
    level: usize,
    refs: Vec<ContentRef>,
    store: &mut dyn FnMut(Vec<u8>) -> Result<Id>,
) -> Result<ContentRef> {
    let list = Content {
        depth: level as u8,
        refs,
    };
    let len = list.len();
    let id = store(encode_list(&list))?;
    Ok(ContentRef { id, len })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn params() -> ListSplitParams {
        ListSplitParams {
            bits: 3,
            max_entries: 32,
            max_inline: 8,
        }
    }

    fn chunk(i: u64) -> ContentRef {
        ContentRef {
            id: Id::of(&i.to_le_bytes()),
            len: 100 + i % 7,
        }
    }

    fn build(refs: &[ContentRef], blobs: &mut HashMap<Id, Vec<u8>>) -> Content {
        let mut store = |b: Vec<u8>| -> Result<Id> {
            let id = Id::of(&b);
            blobs.insert(id, b);
            Ok(id)
        };
        let mut builder = ContentBuilder::new(params());
        for r in refs {
            builder.push(*r, &mut store).unwrap();
        }
        builder.finish(&mut store).unwrap()
    }

    fn expand(c: &Content, blobs: &HashMap<Id, Vec<u8>>, out: &mut Vec<ContentRef>) {
        if c.depth == 0 {
            out.extend_from_slice(&c.refs);
            return;
        }
        for r in &c.refs {
            let sub = decode_list(&blobs[&r.id]).unwrap();
            assert_eq!(sub.depth + 1, c.depth);
            assert_eq!(sub.len(), r.len);
            expand(&sub, blobs, out);
        }
    }

    #[test]
    fn short_lists_stay_inline() {
        let mut blobs = HashMap::new();
        let refs: Vec<_> = (0..8).map(chunk).collect();
        let c = build(&refs, &mut blobs);
        assert_eq!(c.depth, 0);
        assert_eq!(c.refs, refs);
        assert!(blobs.is_empty());
    }

    #[test]
    fn long_lists_split_and_expand() {
        let mut blobs = HashMap::new();
        let refs: Vec<_> = (0..5000).map(chunk).collect();
        let c = build(&refs, &mut blobs);
        assert!(c.depth >= 2, "depth {}", c.depth);
        assert!(c.refs.len() <= 8);
        let mut out = Vec::new();
        expand(&c, &blobs, &mut out);
        assert_eq!(out, refs);
    }

    #[test]
    fn one_changed_chunk_rewrites_few_lists() {
        let mut blobs = HashMap::new();
        let mut refs: Vec<_> = (0..5000).map(chunk).collect();
        build(&refs, &mut blobs);
        let before = blobs.len();
        refs[2500] = chunk(999_999);
        build(&refs, &mut blobs);
        let added = blobs.len() - before;
        assert!(added <= 6, "{added} new list blobs for one changed chunk");
    }

    #[test]
    fn smallest_entries_decode() {
        let tiny = |name: &[u8], kind| Node {
            name: name.to_vec(),
            kind,
            mode: 0,
            mtime: 0,
            mtime_ns: 0,
            ctime: 0,
            ctime_ns: 0,
            uid: 0,
            gid: 0,
            inode: 0,
            dev: 0,
            size: 0,
        };
        for node in [
            tiny(b"a", NodeKind::File(Content::default())),
            tiny(b"l", NodeKind::Symlink(Vec::new())),
        ] {
            let mut t = Tree { nodes: vec![node] };
            let bytes = t.encode();
            assert_eq!(Tree::decode(&bytes).unwrap(), t, "{} bytes", bytes.len());
        }
    }

    #[test]
    fn tree_round_trip_and_safety() {
        let node = |name: &[u8], kind| Node {
            name: name.to_vec(),
            kind,
            mode: 0o644,
            mtime: 1_700_000_000,
            mtime_ns: 5,
            ctime: -3,
            ctime_ns: 0,
            uid: 1000,
            gid: 1000,
            inode: 42,
            dev: 7,
            size: 0,
        };
        let mut t = Tree {
            nodes: vec![
                node(b"z", NodeKind::Symlink(b"../x".to_vec())),
                node(b"a", NodeKind::File(Content::default())),
                node(b"m", NodeKind::Dir(Id::of(b"sub"))),
            ],
        };
        let bytes = t.encode();
        let back = Tree::decode(&bytes).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.find(b"m").unwrap().type_name(), "dir");
        for bad in [&b".."[..], b".", b"a/b", b"", b"x\0"] {
            let mut t = Tree {
                nodes: vec![node(bad, NodeKind::File(Content::default()))],
            };
            assert!(Tree::decode(&t.encode()).is_err(), "{bad:?} accepted");
        }
        let mut dup = Tree {
            nodes: vec![
                node(b"a", NodeKind::File(Content::default())),
                node(b"a", NodeKind::Dir(Id::of(b"x"))),
            ],
        };
        assert!(Tree::decode(&dup.encode()).is_err());
    }

    #[test]
    fn overflowing_lengths_are_rejected() {
        // Found by fuzzing: two references whose lengths sum past 2^64.
        let big = ContentRef {
            id: Id::of(b"x"),
            len: u64::MAX,
        };
        let list = Content {
            depth: 0,
            refs: vec![big, big],
        };
        assert!(decode_list(&encode_list(&list)).is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes: Vec<u8>) {
            let _ = Tree::decode(&bytes);
            let _ = decode_list(&bytes);
        }

        #[test]
        fn builder_matches_input(n in 0usize..3000) {
            let mut blobs = HashMap::new();
            let refs: Vec<_> = (0..n as u64).map(chunk).collect();
            let c = build(&refs, &mut blobs);
            let mut out = Vec::new();
            expand(&c, &blobs, &mut out);
            prop_assert_eq!(out, refs);
        }
    }
}
