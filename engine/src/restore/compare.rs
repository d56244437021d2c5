//! Comparing files on disk with their chunk lists: which chunks already hold the right bytes
//! (delta restore) and whether a restored file is exactly what the snapshot says (`--verify`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::plan::FileChunk;
use crate::id::IdHasher;

/// Bytes read from a file at a time: small enough that the buffer stays in the core's own
/// cache from the kernel's copy into it to the hashing (with 8 MiB reads the hashing read
/// every buffer back from memory, and a delta restore took 10% longer). The kernel still
/// reads ahead over the whole run: see the `WillNeed` advice below.
const READ_SIZE: u64 = 256 << 10;

/// For each chunk, true if the file at `path` holds exactly its bytes at its offset. A missing
/// or unreadable file matches nothing.
pub(super) fn matching_chunks(path: &Path, chunks: &[FileChunk], hasher: &IdHasher) -> Vec<bool> {
    let mut out = vec![false; chunks.len()];
    let Ok(file) = File::open(path) else {
        return out;
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return out;
    };
    // One buffer per thread, kept between calls: a fresh buffer per run costs page faults
    // and zeroing on every call.
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    // Ask for the whole span at once: a copy that is not in the page cache (yesterday's data
    // directory) is then read with many requests in flight instead of one readahead window
    // per thread, which on a virtual or networked disk is most of a delta restore's time.
    if let (Some(first), Some(last)) = (chunks.first(), chunks.last()) {
        let end = (last.offset + u64::from(last.len)).min(len);
        // (A length of None would mean "to the end of the file".)
        if let Some(span) = std::num::NonZeroU64::new(end.saturating_sub(first.offset)) {
            // Advice only: if it fails, the reads below fetch the data all the same.
            let _ = rustix::fs::fadvise(
                &file,
                first.offset,
                Some(span),
                rustix::fs::Advice::WillNeed,
            );
        }
    }
    let mut buf = BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
    compare_runs(&file, len, chunks, hasher, &mut buf, &mut out);
    BUF.with(|b| *b.borrow_mut() = buf);
    out
}

fn compare_runs(
    file: &File,
    len: u64,
    chunks: &[FileChunk],
    hasher: &IdHasher,
    buf: &mut Vec<u8>,
    out: &mut [bool],
) {
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
        if file.read_exact_at(buf, start).is_err() {
            break;
        }
        for (k, c) in chunks[i..j].iter().enumerate() {
            let from = (c.offset - start) as usize;
            let to = from + c.len as usize;
            out[i + k] = to <= buf.len() && hasher.id(&buf[from..to]) == c.id;
        }
        i = j;
    }
}
