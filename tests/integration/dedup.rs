//! Incremental backups of a database-like directory cost what changed.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::common::{Rng, Sandbox, snapshot_of};

const PAGE: usize = 8192;

/// Writes `files` files of `pages` 8 KiB pages each.
fn make_db(dir: &Path, files: usize, pages: u64, rng: &mut Rng) {
    std::fs::create_dir_all(dir).unwrap();
    for f in 0..files {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(dir.join(format!("{}", 16384 + f))).unwrap(),
        );
        for p in 0..pages {
            out.write_all(&rng.page(PAGE, p)).unwrap();
        }
    }
}

/// Rewrites 1% of all pages in place, at random.
fn update_pages(dir: &Path, files: usize, pages: u64, rng: &mut Rng) {
    let total = files as u64 * pages;
    for _ in 0..total / 100 {
        let f = rng.below(files as u64);
        let p = rng.below(pages);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join(format!("{}", 16384 + f)))
            .unwrap();
        file.seek(SeekFrom::Start(p * PAGE as u64)).unwrap();
        file.write_all(&rng.page(PAGE, p)).unwrap();
    }
}

#[test]
fn files_changed_just_before_a_backup_are_read_again() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hot"), vec![1u8; 100_000]).unwrap();
    sb.ok(&["init"]);
    sb.backup(&[], &[&src]);
    // Too recent to trust: read again, though nothing changed.
    let again = sb.backup(&[], &[&src]);
    assert_eq!(again["files_changed"], 1, "{again}");
    assert_eq!(again["bytes_read"], 100_000);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    sb.backup(&[], &[&src]);
    // Now old enough: reused without reading.
    let settled = sb.backup(&[], &[&src]);
    assert_eq!(settled["files_unchanged"], 1, "{settled}");
    assert_eq!(settled["bytes_read"], 0);
}

#[test]
fn one_percent_change_costs_little() {
    let sb = Sandbox::new();
    let src = sb.path("pgdata");
    let mut rng = Rng(7);
    // 40 files of 3200 pages (25 MiB): 1000 MiB in all.
    let (files, pages) = (40, 3200);
    make_db(&src.join("base"), files, pages, &mut rng);
    // Unencrypted, so that the cut points (and the figures below) are the same on every run:
    // an encrypted repository's chunker table is random, and these bounds have little slack.
    sb.ok(&["init", "--encryption", "none", "--format-version", "1"]);
    let out = sb.ok(&["backup", "--json", src.to_str().unwrap()]);
    let first = crate::common::last_json(&out);
    assert_eq!(first["type"], "summary");
    // A backup of several seconds reports its progress as JSON lines first.
    let progress: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.contains("\"progress\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!progress.is_empty(), "{out}");
    assert!(
        progress
            .iter()
            .all(|p| p["bytes_done"].as_u64().unwrap() <= 1000 << 20)
    );

    update_pages(&src.join("base"), files, pages, &mut rng);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(src.join("base/16384"))
        .unwrap();
    for p in 0..64 {
        f.write_all(&rng.page(PAGE, pages + p)).unwrap();
    }
    drop(f);
    // Files changed within two seconds of being read are read again by the next backup (their
    // timestamps cannot prove them unchanged); let the change settle so that the third backup
    // below can show a truly unchanged run.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let second = sb.backup(&[], &[&src]);

    let a1 = first["bytes_added"].as_u64().unwrap();
    let a2 = second["bytes_added"].as_u64().unwrap();
    let m1 = first["metadata_bytes_added"].as_u64().unwrap();
    let m2 = second["metadata_bytes_added"].as_u64().unwrap();
    eprintln!(
        "first added {a1}, second added {a2} ({:.2}%); metadata {m1} then {m2}",
        100.0 * a2 as f64 / a1 as f64
    );
    assert!(a2 * 20 < a1, "second backup added {a2} bytes, first {a1}");
    assert!(
        m2 * 4 < m1,
        "second backup's metadata {m2} bytes, first {m1}"
    );
    assert_eq!(second["files_changed"].as_u64().unwrap(), files as u64);

    // A third backup with nothing changed reads nothing.
    let third = sb.backup(&[], &[&src]);
    assert_eq!(third["bytes_read"], 0);
    assert_eq!(third["files_unchanged"], files as u64);

    let t = sb.path("restored");
    sb.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(snapshot_of(&src), snapshot_of(&t));
}
