//! How long operations report what they are doing. The CLI implements this with progress bars
//! on a terminal or JSON lines; the engine only calls it.

/// Receives progress reports; every method has a no-op default. Calls come from many threads.
pub trait Progress: Sync {
    /// A file is about to be read (backup) or written (restore).
    fn file_started(&self, _path: &str) {}
    /// `n` more bytes were read (backup) or written (restore).
    fn bytes(&self, _n: u64) {}
    /// A file of `n` bytes was reused from the parent snapshot without being read (backup).
    fn reused(&self, _n: u64) {}
    /// One more file is done.
    fn file_done(&self) {}
    /// The total amount of work is known (restore).
    fn total(&self, _files: u64, _bytes: u64) {}
    /// Something was skipped or went wrong without stopping the operation.
    fn warn(&self, _message: &str) {}
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
