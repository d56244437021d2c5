//! Measures `check --read-data` on a local repository of database-like files.
//! Run: `cargo run --release -p cairn-benches --bin check_speed -- [GiB]` (default 2).
//! Figures are written down in `benches/RESULTS.md`.

use std::io::Write;
use std::time::Instant;

use cairn_benches::{Rng, cpu_seconds};
use cairn_engine::{
    BackupOptions, CheckOptions, InitOptions, Location, NoProgress, ReadData, Repository, backup,
    check,
};

fn main() -> cairn_engine::Result<()> {
    let gib: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let dir = std::env::temp_dir().join(format!("cairn-check-speed-{}", std::process::id()));
    let src = dir.join("data");
    std::fs::create_dir_all(&src).map_err(|e| cairn_engine::Error::io("cannot create", &src, e))?;
    // Files of 32 MiB of 8 KiB pages.
    let files = ((gib * 1024.0) / 32.0).ceil() as u64;
    let mut rng = Rng(1);
    for f in 0..files {
        let path = src.join(format!("{}", 16384 + f));
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&path)
                .map_err(|e| cairn_engine::Error::io("cannot create", &path, e))?,
        );
        for p in 0..4096 {
            out.write_all(&rng.page(8192, p))
                .map_err(|e| cairn_engine::Error::io("cannot write", &path, e))?;
        }
    }
    let location = Location::parse(dir.join("repo").to_str().unwrap_or("/nonexistent"))?;
    Repository::init(&location, &InitOptions::default())?;
    let cache = dir.join("cache");
    let mut repo = Repository::open(&location, &cache)?;
    let t = Instant::now();
    let done = backup(
        &mut repo,
        &BackupOptions {
            paths: vec![src.clone()],
            ..Default::default()
        },
        None,
        &NoProgress,
    )?;
    println!(
        "backup: {:.2} GiB in {:.2}s ({} added)",
        done.snapshot.summary.bytes_read as f64 / (1u64 << 30) as f64,
        t.elapsed().as_secs_f64(),
        done.snapshot.summary.bytes_added
    );
    drop(repo);

    println!(
        "| run | logical GiB verified | packs | wall s | GB/s (logical, whole check) | read-data phase s | GB/s (logical, read-data phase) | CPU s | cores used |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for run in 1..=3 {
        let mut repo = Repository::open(&location, &cache)?;
        let cpu0 = cpu_seconds();
        let t = Instant::now();
        let report = check(
            &mut repo,
            &CheckOptions {
                read_data: ReadData::All,
                snapshots: Vec::new(),
            },
            &NoProgress,
        )?;
        let wall = t.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        assert!(report.ok, "the benchmark repository must be clean");
        let logical = report.stats.logical_bytes_verified as f64;
        let phase = report.stats.read_duration_s;
        println!(
            "| {run} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            logical / (1u64 << 30) as f64,
            report.stats.packs_read,
            wall,
            logical / wall / 1e9,
            phase,
            logical / phase / 1e9,
            cpu,
            cpu / wall
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
