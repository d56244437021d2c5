//! Comparing files on disk with their chunk lists: which chunks already hold the right bytes
//! (delta restore) and whether a restored file is exactly what the snapshot says (`--verify`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::plan::FileChunk;
use crate::id::Id;

/// Bytes read from a file at a time.
const READ_SIZE: u64 = 8 << 20;

/// For each chunk, true if the file at `path` holds exactly its bytes at its offset. A missing
/// or unreadable file matches nothing.
pub(super) fn matching_chunks(path: &Path, chunks: &[FileChunk]) -> Vec<bool> {
    let mut out = vec![false; chunks.len()];
    let Ok(file) = File::open(path) else {
        return out;
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return out;
    };
    let mut buf = Vec::new();
    let mut i = 0;
    while i < chunks.len() {
        // A run of chunks ending at most READ_SIZE after the first one starts.
        let start = chunks[i].offset;
        let mut j = i + 1;
        while j < chunks.len() && chunks[j].offset + u64::from(chunks[j].len) - start <= READ_SIZE {
            j += 1;
        }
        let end = chunks[j - 1].offset + u64::from(chunks[j - 1].len);
        if start >= len {
            break;
        }
        let want = (end.min(len) - start) as usize;
        buf.resize(want, 0);
        if file.read_exact_at(&mut buf, start).is_err() {
            break;
        }
        for (k, c) in chunks[i..j].iter().enumerate() {
            let from = (c.offset - start) as usize;
            let to = from + c.len as usize;
            out[i + k] = to <= buf.len() && Id::of(&buf[from..to]) == c.id;
        }
        i = j;
    }
    out
}
