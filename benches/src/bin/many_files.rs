//! Memory and time of backing up and restoring a tree of very many small files (a partitioned
//! store, or a database with a file per table and index), measured on the `cairn` binary
//! beside this one under `/usr/bin/time -v`.
//!
//! Usage: `many_files [FILES]` (default 1 000 000), after
//! `cargo build --release -p cairn-cli -p cairn-benches`. Prints a Markdown table row per
//! command; the figures go into `benches/RESULTS.md` by hand.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cairn_benches::Rng;

/// Files per directory.
const PER_DIR: u64 = 1000;

fn main() {
    let files: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let here = std::env::current_exe().expect("exe");
    let cairn = here.with_file_name("cairn");
    let work = std::env::temp_dir().join(format!("cairn-many-{}", std::process::id()));
    let data = work.join("data");
    eprintln!("writing {files} small files under {}", data.display());
    let started = Instant::now();
    let mut rng = Rng(1_000_003);
    let mut bytes = 0u64;
    for i in 0..files {
        let dir = data.join(format!("part-{:05}", i / PER_DIR));
        if i % PER_DIR == 0 {
            std::fs::create_dir_all(&dir).expect("mkdir");
        }
        // 200 bytes to 6 KiB: rows of a small table or a partition's index.
        let len = 200 + rng.below(6 * 1024) as usize;
        let page = rng.page(len, i);
        bytes += page.len() as u64;
        std::fs::write(dir.join(format!("{i:08}.dat")), page).expect("write");
    }
    eprintln!(
        "wrote {:.0} MiB in {:.0} s",
        bytes as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    let repo = work.join("repo");
    let cache = work.join("cache");
    let run = |args: &[&str]| -> (f64, f64, f64) {
        let t = Instant::now();
        let out = Command::new("/usr/bin/time")
            .arg("-v")
            .arg(&cairn)
            .args(args)
            .env("CAIRN_REPO", &repo)
            .env("CAIRN_CACHE_DIR", &cache)
            .output()
            .expect("run cairn under /usr/bin/time");
        let wall = t.elapsed().as_secs_f64();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "cairn {args:?} failed: {err}");
        let field = |name: &str| -> f64 {
            err.lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .and_then(|v| v.trim().trim_start_matches(':').trim().parse().ok())
                .unwrap_or(0.0)
        };
        let cpu = field("User time (seconds)") + field("System time (seconds)");
        (
            wall,
            cpu,
            field("Maximum resident set size (kbytes)") / 1024.0,
        )
    };
    run(&["init"]);
    let target = work.join("restored");
    let (t, d) = (path(&target), path(&data));
    println!("| command | wall s | CPU s | peak RSS MiB |");
    println!("|---|---|---|---|");
    for (label, args) in [
        ("backup", vec!["backup", d.as_str()]),
        (
            "restore into an empty directory",
            vec!["restore", "latest", "--target", t.as_str()],
        ),
        (
            "restore --delta over the identical copy",
            vec!["restore", "latest", "--target", t.as_str(), "--delta"],
        ),
    ] {
        eprintln!("{label}");
        let (wall, cpu, rss) = run(&args);
        println!("| {label} ({files} files) | {wall:.1} | {cpu:.1} | {rss:.0} |");
    }
    let same = Command::new("diff")
        .arg("-r")
        .arg(&data)
        .arg(&target)
        .status()
        .is_ok_and(|s| s.success());
    assert!(same, "the restored tree differs from the source");
    let _ = std::fs::remove_dir_all(&work);
}

fn path(p: &Path) -> String {
    PathBuf::from(p).to_string_lossy().into_owned()
}
