//! Shared pieces of cairn's benchmarks: deterministic generators of database-like data.

use std::io::Write;
use std::path::Path;

/// A small, fast, deterministic generator (xorshift64).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A database-like page of `size` bytes: a header with the page number and a checksum-like
    /// word, then rows of compressible text, as heap pages of PostgreSQL or SQLite hold.
    pub fn page(&mut self, size: usize, page_no: u64) -> Vec<u8> {
        let mut p = Vec::with_capacity(size + 64);
        p.extend_from_slice(&page_no.to_le_bytes());
        p.extend_from_slice(&self.next_u64().to_le_bytes());
        while p.len() < size {
            let row = format!(
                "|{:08}|customer-{:04}|{:>10}.{:02}|status=shipped|",
                self.below(100_000_000),
                self.below(5000),
                self.below(100_000),
                self.below(100)
            );
            p.extend_from_slice(row.as_bytes());
        }
        p.truncate(size);
        p
    }
}

/// Bytes of a database page.
pub const PAGE: usize = 8192;

/// Writes `pages` pages numbered from `first_page` into a new file `p`.
pub fn write_pages(rng: &mut Rng, p: &Path, pages: u64, first_page: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(p).expect("create"));
    for i in 0..pages {
        f.write_all(&rng.page(PAGE, first_page + i)).expect("write");
    }
}

/// A PostgreSQL-like data directory of `gib` GiB under `root`: three large table files per
/// database and several hundred small ones, of 8 KiB pages.
pub fn generate_database(rng: &mut Rng, root: &Path, gib: f64) {
    let total_pages = (gib * (1u64 << 30) as f64 / PAGE as f64) as u64;
    let large = total_pages * 6 / 10 / 3;
    for db in 0..3 {
        let dir = root.join(format!("base/{}", 16384 + db));
        std::fs::create_dir_all(&dir).expect("mkdir");
        write_pages(rng, &dir.join("1259"), large, 0);
    }
    let mut left = total_pages - 3 * large;
    let mut n = 0;
    while left > 0 {
        let pages = (1 + rng.below(400)).min(left);
        let dir = root.join(format!("base/{}", 16384 + n % 3));
        write_pages(rng, &dir.join(format!("{}", 20000 + n)), pages, 0);
        left -= pages;
        n += 1;
    }
}

/// CPU time (user + system) this process has used so far, in seconds, from `/proc/self/stat`.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}
