//! Measures how the average chunk size trades deduplication against metadata on database-like
//! files, to choose the repository default. Run: `cargo run --release -p cairn-benches --bin
//! chunk_size`. Results are written down in `benches/CHUNK_SIZE.md`.

use std::collections::HashSet;
use std::time::Instant;

use cairn_benches::Rng;
use cairn_engine::decode::{Chunker, ChunkerParams};

/// Bytes one chunk costs in manifests and index: a list reference (32-byte id + varint) and an
/// index entry (pack directory + index file + cache: 3 × 52 bytes).
const PER_CHUNK_META: usize = 35 + 3 * 52;

struct Workload {
    name: &'static str,
    base: Vec<u8>,
    changed: Vec<u8>,
}

fn workloads(page: usize, mib: usize) -> Vec<Workload> {
    let mut rng = Rng(0x5eed);
    let pages = mib * 1024 * 1024 / page;
    let mut base = Vec::with_capacity(pages * page);
    for p in 0..pages as u64 {
        base.extend_from_slice(&rng.page(page, p));
    }
    let mut updated = base.clone();
    for _ in 0..pages / 100 {
        let p = rng.below(pages as u64) as usize;
        let new = rng.page(page, p as u64);
        updated[p * page..(p + 1) * page].copy_from_slice(&new);
    }
    let mut appended = base.clone();
    for p in 0..(pages / 20) as u64 {
        appended.extend_from_slice(&rng.page(page, pages as u64 + p));
    }
    vec![
        Workload {
            name: "1% pages updated",
            base: base.clone(),
            changed: updated,
        },
        Workload {
            name: "5% pages appended",
            base,
            changed: appended,
        },
    ]
}

fn chunks(c: &Chunker, data: &[u8]) -> Vec<std::ops::Range<usize>> {
    c.cut_all(data)
}

fn main() {
    let mib = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(256usize);
    println!("# chunk size measurement: {mib} MiB of database-like pages per workload\n");
    println!(
        "| page | workload | avg chunk | chunks | new bytes (raw) | new / changed-page bytes | zstd ratio | metadata per GiB | chunking MB/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for page in [4096usize, 8192, 16384] {
        for w in workloads(page, mib) {
            let changed_pages = if w.name.starts_with("1%") {
                (w.base.len() / page / 100) * page
            } else {
                w.changed.len() - w.base.len()
            };
            for avg in [4096u32, 8192, 16384, 32768, 65536, 131072] {
                let c = Chunker::new(&ChunkerParams::with_average(avg).expect("params"));
                let t = Instant::now();
                let a = chunks(&c, &w.base);
                let secs = t.elapsed().as_secs_f64();
                let have: HashSet<blake3::Hash> =
                    a.iter().map(|r| blake3::hash(&w.base[r.clone()])).collect();
                let b = chunks(&c, &w.changed);
                let new: usize = b
                    .iter()
                    .filter(|r| !have.contains(&blake3::hash(&w.changed[(*r).clone()])))
                    .map(|r| r.len())
                    .sum();
                // Compression ratio of chunks compressed one by one, on a sample.
                let (mut raw, mut z) = (0usize, 0usize);
                for r in a.iter().step_by(16) {
                    let d = &w.base[r.clone()];
                    raw += d.len();
                    z += zstd::bulk::compress(d, 3)
                        .map(|v| v.len())
                        .unwrap_or(d.len());
                }
                let meta_per_gib =
                    (a.len() * PER_CHUNK_META) as f64 * (1u64 << 30) as f64 / w.base.len() as f64;
                println!(
                    "| {} KiB | {} | {} KiB | {} | {:.1} MiB | {:.2}x | {:.2} | {:.1} MiB | {:.0} |",
                    page / 1024,
                    w.name,
                    avg / 1024,
                    a.len(),
                    new as f64 / 1048576.0,
                    new as f64 / changed_pages as f64,
                    raw as f64 / z as f64,
                    meta_per_gib / 1048576.0,
                    w.base.len() as f64 / secs / 1e6
                );
            }
        }
    }
}
