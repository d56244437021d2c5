//! Restore (and backup, and check) throughput from an S3-compatible server on loopback,
//! against the same repository on local disk.
//!
//! Run with `./benches/s3_restore.sh [GiB]`, which installs and starts SeaweedFS on loopback
//! ports, makes a bucket, and runs this with `AWS_ENDPOINT_URL`, the keys and
//! `CAIRN_BENCH_BUCKET` set. Prints a Markdown table for `benches/RESULTS.md`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_benches::{Rng, generate_database};

fn cairn(bin: &Path, cache: &Path, repo: &str, args: &[&str]) -> f64 {
    let started = Instant::now();
    let out = Command::new(bin)
        .args(args)
        .env("CAIRN_REPO", repo)
        .env("CAIRN_CACHE_DIR", cache)
        .output()
        .expect("run cairn");
    assert!(
        out.status.success(),
        "cairn {args:?} on {repo}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed().as_secs_f64()
}

fn settle() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(2));
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let gib: f64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1.0);
    let bucket = std::env::var("CAIRN_BENCH_BUCKET").expect("CAIRN_BENCH_BUCKET");
    let bin = PathBuf::from(std::env::var("CAIRN_BIN").expect("CAIRN_BIN"));
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let cache = work.path().join("cache");
    generate_database(&mut Rng(42), &data, gib);
    let logical = gib * 1024.0;
    let local = work.path().join("repo").display().to_string();
    let s3 = format!("s3://{bucket}/bench");
    let data_arg = data.to_str().expect("utf-8");

    let mut rows = Vec::new();
    for (name, repo) in [
        ("local disk", local.as_str()),
        ("S3 on loopback", s3.as_str()),
    ] {
        cairn(&bin, &cache, repo, &["init"]);
        settle();
        let backup = cairn(&bin, &cache, repo, &["backup", data_arg]);
        settle();
        let mut restores = Vec::new();
        for i in 0..3 {
            let target = work.path().join(format!("out-{i}"));
            restores.push(cairn(
                &bin,
                &cache,
                repo,
                // Without the sync: it writes to the same local disk for both repositories,
                // and would only blur the difference between them.
                &[
                    "restore",
                    "latest",
                    "--target",
                    target.to_str().expect("utf-8"),
                    "--no-sync",
                ],
            ));
            std::fs::remove_dir_all(&target).expect("clean up");
            settle();
        }
        let check = cairn(&bin, &cache, repo, &["check", "--read-data"]);
        settle();
        rows.push((name, backup, median(restores), check));
    }
    println!("| repository | backup | restore (median of 3) | check --read-data |");
    println!("|---|---|---|---|");
    for (name, backup, restore, check) in &rows {
        println!(
            "| {name} | {backup:.2} s ({:.0} MiB/s) | {restore:.2} s ({:.0} MiB/s) | {check:.2} s ({:.0} MiB/s) |",
            logical / backup,
            logical / restore,
            logical / check
        );
    }
    let ratio = rows[0].2 / rows[1].2;
    println!(
        "\nS3 restore throughput is {:.0}% of local ({gib} GiB of database-like data, MiB/s of restored bytes)",
        ratio * 100.0
    );
}
