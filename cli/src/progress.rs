//! Progress reports: a bar on a terminal, nothing otherwise.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Prints progress as JSON lines on standard output, at most one a second (for `--json`).
#[derive(Debug)]
pub struct JsonLines {
    started: std::time::Instant,
    last: std::sync::Mutex<std::time::Instant>,
    bytes: AtomicU64,
    files: AtomicU64,
    total_bytes: AtomicU64,
}

impl JsonLines {
    /// Starts counting now.
    pub fn new() -> JsonLines {
        let now = std::time::Instant::now();
        JsonLines {
            started: now,
            last: std::sync::Mutex::new(now),
            bytes: AtomicU64::new(0),
            files: AtomicU64::new(0),
            total_bytes: AtomicU64::new(0),
        }
    }

    fn maybe_print(&self) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.elapsed() < Duration::from_secs(1) {
            return;
        }
        *last = std::time::Instant::now();
        let secs = self.started.elapsed().as_secs_f64();
        let bytes = self.bytes.load(Relaxed);
        let total = self.total_bytes.load(Relaxed);
        let line = serde_json::json!({
            "type": "progress",
            "elapsed_s": secs,
            "files_done": self.files.load(Relaxed),
            "bytes_done": bytes,
            "bytes_total": (total > 0).then_some(total),
            "bytes_per_s": bytes as f64 / secs.max(1e-9),
        });
        // Progress is best effort; the summary at the end reports a stdout that fails.
        let _ = crate::out_line(format_args!("{line}"));
    }
}

impl Default for JsonLines {
    fn default() -> Self {
        Self::new()
    }
}

impl cairn_engine::Progress for JsonLines {
    fn bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Relaxed);
        self.maybe_print();
    }
    fn file_done(&self) {
        self.files.fetch_add(1, Relaxed);
        self.maybe_print();
    }
    fn total(&self, _files: u64, bytes: u64) {
        self.total_bytes.store(bytes, Relaxed);
    }
    fn warn(&self, message: &str) {
        errln!("warning: {message}");
    }
}

/// Reports engine progress on standard error when it is a terminal.
#[derive(Debug)]
pub struct Bar {
    bar: Option<ProgressBar>,
    /// What `file_done` counts: files, packs…
    unit: &'static str,
    done: AtomicU64,
    total: AtomicU64,
}

impl Bar {
    /// A bar for a job whose size is not known in advance (backup); `unit` names what
    /// `file_done` counts.
    pub fn new(enabled: bool, unit: &'static str) -> Bar {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} {bytes} read, {binary_bytes_per_sec}, {elapsed} {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Bar {
            bar,
            unit,
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    /// True if a bar is shown.
    pub fn enabled(&self) -> bool {
        self.bar.is_some()
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl cairn_engine::Progress for Bar {
    fn file_started(&self, path: &str) {
        if let Some(b) = &self.bar {
            b.set_message(path.to_string());
        }
    }
    fn bytes(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    fn reused(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    fn file_done(&self) {
        let done = self.done.fetch_add(1, Relaxed) + 1;
        if let Some(b) = &self.bar {
            let total = self.total.load(Relaxed);
            if total > 0 {
                b.set_prefix(format!("{done}/{total} {}", self.unit));
            }
        }
    }
    fn total(&self, files: u64, bytes: u64) {
        self.total.store(files, Relaxed);
        if let Some(b) = &self.bar {
            b.set_length(bytes);
            b.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec}, ETA {eta}, {prefix} {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
        }
    }
    fn warn(&self, message: &str) {
        match &self.bar {
            Some(b) => b.println(format!("warning: {message}")),
            None => errln!("warning: {message}"),
        }
    }
}
