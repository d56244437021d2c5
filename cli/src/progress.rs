//! Progress reports: a bar on a terminal; otherwise (cron, a service manager's journal) a
//! plain line on standard error at a fixed interval; JSON lines with `--json`.

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
    total_files: AtomicU64,
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
            total_files: AtomicU64::new(0),
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
        let files_total = self.total_files.load(Relaxed);
        let line = serde_json::json!({
            "type": "progress",
            "elapsed_s": secs,
            "files_done": self.files.load(Relaxed),
            "files_total": (files_total > 0).then_some(files_total),
            "bytes_done": bytes,
            "bytes_total": (total > 0).then_some(total),
            "percent_done": percent(bytes, total),
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
    fn reused(&self, n: u64) {
        self.bytes(n);
    }
    fn file_done(&self) {
        self.files.fetch_add(1, Relaxed);
        self.maybe_print();
    }
    fn total(&self, files: u64, bytes: u64) {
        self.total_files.store(files, Relaxed);
        self.total_bytes.store(bytes, Relaxed);
    }
    fn warn(&self, message: &str) {
        errln!("warning: {message}");
    }
}

/// Share of `total` that `done` is, in percent (rounded to 0.1); `None` while the total is
/// not known.
fn percent(done: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| (done.min(total) as f64 * 1000.0 / total as f64).round() / 10.0)
}

/// Seconds between plain progress lines: `CAIRN_PROGRESS_INTERVAL`, else 10.
fn plain_interval() -> Duration {
    std::env::var("CAIRN_PROGRESS_INTERVAL")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(Duration::from_secs(10), Duration::from_secs_f64)
}

/// Reports engine progress on standard error: a bar when it is a terminal, else a plain
/// line at a fixed interval.
#[derive(Debug)]
pub struct Bar {
    bar: Option<ProgressBar>,
    /// What `file_done` counts: files, packs…
    unit: &'static str,
    done: AtomicU64,
    total: AtomicU64,
    bytes: AtomicU64,
    total_bytes: AtomicU64,
    /// Without a terminal: when the last plain line was printed, and the interval.
    plain: Option<(std::sync::Mutex<std::time::Instant>, Duration)>,
    started: std::time::Instant,
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
        let plain = (enabled && bar.is_none()).then(|| {
            (
                std::sync::Mutex::new(std::time::Instant::now()),
                plain_interval(),
            )
        });
        Bar {
            bar,
            unit,
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            total_bytes: AtomicU64::new(0),
            plain,
            started: std::time::Instant::now(),
        }
    }

    /// A plain line, if the interval has passed since the last.
    fn maybe_print(&self) {
        let Some((last, interval)) = &self.plain else {
            return;
        };
        let Ok(mut last) = last.lock() else {
            return;
        };
        if last.elapsed() < *interval {
            return;
        }
        *last = std::time::Instant::now();
        let secs = self.started.elapsed().as_secs_f64();
        let bytes = self.bytes.load(Relaxed);
        let total_bytes = self.total_bytes.load(Relaxed);
        let mut line = format!(
            "progress: {} processed, {}/s, {} {} done",
            crate::units::human_bytes(bytes),
            crate::units::human_bytes((bytes as f64 / secs.max(1e-9)) as u64),
            self.done.load(Relaxed),
            self.unit
        );
        if let Some(p) = percent(bytes, total_bytes) {
            line.push_str(&format!(
                ", {p}% of {} ({} {})",
                crate::units::human_bytes(total_bytes),
                self.total.load(Relaxed),
                self.unit
            ));
        }
        line.push_str(&format!(", {secs:.0}s elapsed"));
        errln!("{line}");
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
        self.bytes.fetch_add(n, Relaxed);
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        self.maybe_print();
    }
    fn reused(&self, n: u64) {
        self.bytes(n);
    }
    fn file_done(&self) {
        self.maybe_print();
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
        self.total_bytes.store(bytes, Relaxed);
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
