//! Restore over existing copies (--delta, --delete), resumed restores, --exclude, sparse
//! output and --verify.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{Rng, Sandbox, snapshot_of};

fn database(sb: &Sandbox, files: u64, pages: u64) -> std::path::PathBuf {
    let src = sb.path("pgdata");
    let mut rng = Rng(21);
    for db in ["db1", "db2"] {
        let dir = src.join(db);
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            let data: Vec<u8> = (0..pages).flat_map(|p| rng.page(8192, p)).collect();
            std::fs::write(dir.join(format!("{}", 16384 + f)), data).unwrap();
        }
    }
    std::os::unix::fs::symlink("db1/16384", src.join("link")).unwrap();
    src
}

/// A repository (default settings) holding one backup of [`database`]`(files, pages)`.
fn backed_up_database(files: u64, pages: u64) -> (Sandbox, std::path::PathBuf) {
    let sb = Sandbox::new();
    let src = database(&sb, files, pages);
    sb.ok(&["init"]);
    sb.backup(&[], &[&src]);
    (sb, src)
}

/// A repository (uncompressed, 1 MiB packs) holding one backup of `files` files `t0`, `t1`…
/// of `words` random 64-bit words each.
fn incompressible_files(files: u32, words: usize, seed: u64) -> (Sandbox, std::path::PathBuf) {
    let sb = Sandbox::new();
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = Rng(seed);
    for i in 0..files {
        let data: Vec<u8> = (0..words).flat_map(|_| rng.next().to_le_bytes()).collect();
        std::fs::write(src.join(format!("t{i}")), data).unwrap();
    }
    // Frames of 4 KiB hold one chunk each, so that one flipped byte damages one chunk (a frame
    // of many chunks loses them all, whichever files they belong to).
    sb.ok(&[
        "init",
        "--compression",
        "none",
        "--pack-size",
        "1MiB",
        "--frame-size",
        "4KiB",
    ]);
    sb.backup(&[], &[&src]);
    (sb, src)
}

/// The repository's largest pack file.
fn largest_pack(sb: &Sandbox) -> std::path::PathBuf {
    let mut packs = crate::common::pack_files(&sb.repo());
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    packs.pop().unwrap()
}

/// The paths a `restore --json` summary lists as left out because of damage.
fn damaged_files(v: &serde_json::Value) -> Vec<String> {
    v["files_damaged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().split(':').next().unwrap().to_string())
        .collect()
}

/// `restore SNAPSHOT --target TARGET --skip-damaged --json EXTRA…`, which must report
/// something skipped (exit status 3); its summary.
fn restore_skipping_damage(sb: &Sandbox, target: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--skip-damaged",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = sb.cairn(&args);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn restore_json(sb: &Sandbox, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["restore", "--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&sb.ok(&a)).unwrap()
}

#[test]
fn delta_rewrites_only_what_differs() {
    let (sb, src) = backed_up_database(4, 600);
    let t = sb.path("copy");
    let t_s = t.to_str().unwrap();
    restore_json(&sb, &["latest", "--target", t_s]);
    // Yesterday's copy: 1% of its pages differ, a file is extra, a file is gone.
    let mut rng = Rng(5);
    let mut changed = 0;
    for f in 0..4u64 {
        let p = t.join("db2").join(format!("{}", 16384 + f));
        let mut file = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        for _ in 0..6 {
            file.seek(SeekFrom::Start(rng.below(600) * 8192)).unwrap();
            file.write_all(&rng.page(8192, 0)).unwrap();
            changed += 8192;
        }
    }
    std::fs::write(t.join("db1/stale"), b"not in the snapshot").unwrap();
    std::fs::remove_file(t.join("db1/16385")).unwrap();
    // (Without waiting for the disk: what is written is the same.)
    let v = restore_json(&sb, &["latest", "--target", t_s, "--delta", "--no-sync"]);
    let written = v["bytes_written"].as_u64().unwrap();
    assert!(written < 600 * 8192 + changed * 4, "{v}");
    assert!(
        v["bytes_skipped_delta"].as_u64().unwrap() > 6 * 600 * 8192,
        "{v}"
    );
    assert!(t.join("db1/stale").exists(), "kept without --delete");
    let v = restore_json(
        &sb,
        &["latest", "--target", t_s, "--delta", "--delete", "--verify"],
    );
    assert_eq!(v["entries_deleted"], 1, "{v}");
    assert_eq!(v["bytes_written"], 0, "{v}");
    assert_eq!(v["files_verified"], 8);
    assert_eq!(snapshot_of(&src), snapshot_of(&t));
}

#[test]
fn killed_restore_finishes_with_delta() {
    let (sb, src) = backed_up_database(6, 4000);
    let t = sb.path("restore");
    let mut child = sb
        .command(&["restore", "latest", "--target", t.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    // Refused without --delta, finished with it.
    if t.exists() && std::fs::read_dir(&t).unwrap().next().is_some() {
        assert!(
            sb.fails(&["restore", "latest", "--target", t.to_str().unwrap()])
                .contains("not empty")
        );
    }
    restore_json(
        &sb,
        &[
            "latest",
            "--target",
            t.to_str().unwrap(),
            "--delta",
            "--verify",
        ],
    );
    assert_eq!(snapshot_of(&src), snapshot_of(&t));
}

#[test]
fn delta_never_follows_a_planted_symlink() {
    let (sb, src) = backed_up_database(1, 10);
    let outside = sb.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let t = sb.path("t");
    std::fs::create_dir_all(&t).unwrap();
    std::os::unix::fs::symlink(&outside, t.join("db1")).unwrap();
    restore_json(&sb, &["latest", "--target", t.to_str().unwrap(), "--delta"]);
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert!(std::fs::symlink_metadata(t.join("db1")).unwrap().is_dir());
    assert_eq!(snapshot_of(&src), snapshot_of(&t));
}

#[test]
fn exclude_and_sparse_files() {
    let sb = Sandbox::new();
    let src = database(&sb, 2, 10);
    // A file with a large run of zeros, as preallocated WAL segments have.
    let mut sparse = vec![0u8; 4 << 20];
    sparse[..5000].copy_from_slice(&[7u8; 5000]);
    std::fs::write(src.join("db1/wal"), &sparse).unwrap();
    // Unencrypted, so that the chunk layout of the zero run is the same on every run: once, in
    // a full parallel run of the suite, an encrypted repository's random layout left this file
    // fully allocated (not reproduced alone in 18 runs; to be found).
    sb.ok(&["init", "--encryption", "none", "--format-version", "1"]);
    sb.backup(&[], &[&src]);
    let t = sb.path("t");
    let v = restore_json(
        &sb,
        &[
            "latest",
            "--target",
            t.to_str().unwrap(),
            "--exclude",
            "db2",
            "--verify",
        ],
    );
    assert!(!t.join("db2").exists());
    assert!(t.join("db1/16384").exists());
    assert!(v["bytes_sparse"].as_u64().unwrap() > 3 << 20, "{v}");
    assert_eq!(std::fs::read(t.join("db1/wal")).unwrap(), sparse);
    let blocks = std::fs::metadata(t.join("db1/wal")).unwrap().blocks() * 512;
    assert!(
        blocks < 1 << 20,
        "zeros were written: {blocks} bytes allocated"
    );
    assert!(
        sb.fails(&[
            "restore",
            "latest",
            "--target",
            sb.path("x").to_str().unwrap(),
            "--delete"
        ])
        .contains("--delta")
    );
}

#[test]
fn damaged_pack_names_files_and_skip_damaged_restores_the_rest() {
    let (sb, src) = incompressible_files(6, 90_000, 77);
    // Flip a byte in the middle of the largest data pack.
    let pack = &largest_pack(&sb);
    let mut bytes = std::fs::read(pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(pack, bytes).unwrap();

    let t = sb.path("t");
    let line = sb.fails(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert!(line.contains("cannot restore t"), "{line}");

    // In one batch, and in batches of 3 chunks: then the damaged file is cut across batches,
    // and the damage is found while the batch after it is already being prepared.
    for (dir, batch) in [("t2", None), ("t3", Some("3"))] {
        let t2 = sb.path(dir);
        let mut extra = vec!["--verify"];
        if let Some(b) = batch {
            extra.extend(["--batch-chunks", b]);
        }
        let v = restore_skipping_damage(&sb, &t2, &extra);
        let damaged = damaged_files(&v);
        assert_eq!(damaged.len(), 1, "{v}");
        // The damaged file is left out; every other file is restored exactly.
        for i in 0..6 {
            let name = format!("t{i}");
            let restored = t2.join(&name);
            if damaged.contains(&name) {
                assert!(!restored.exists(), "a damaged file was left behind");
            } else {
                assert_eq!(
                    std::fs::read(&restored).unwrap(),
                    std::fs::read(src.join(&name)).unwrap()
                );
            }
        }
        assert_eq!(v["files_verified"], 5, "{v}");
        assert_eq!(v["files_restored"], 5, "{v}");
    }
}

#[test]
fn delta_never_writes_through_a_hard_link() {
    let (sb, src) = backed_up_database(1, 10);
    let outside = sb.path("outside-file");
    std::fs::write(&outside, b"precious, elsewhere").unwrap();
    let t = sb.path("t");
    std::fs::create_dir_all(t.join("db1")).unwrap();
    std::fs::hard_link(&outside, t.join("db1/16384")).unwrap();
    restore_json(
        &sb,
        &[
            "latest",
            "--target",
            t.to_str().unwrap(),
            "--delta",
            "--verify",
        ],
    );
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious, elsewhere");
    assert_eq!(snapshot_of(&src), snapshot_of(&t));
    // --delete refuses to mirror a single file over a directory.
    let line = sb.fails(&[
        "restore",
        "latest:db1/16384",
        "--target",
        t.to_str().unwrap(),
        "--delta",
        "--delete",
    ]);
    assert!(line.contains("--delete needs a directory"), "{line}");
}

#[test]
fn small_batches_cut_files_and_restore_them_exactly() {
    let sb = Sandbox::new();
    let src = database(&sb, 4, 600);
    sb.ok(&["init", "--pack-size", "1MiB"]);
    sb.backup(&[], &[&src]);
    let t = sb.path("copy");
    let t_s = t.to_str().unwrap();
    // About 600 chunks a file: every file is cut into pieces restored in separate batches.
    let small = ["--batch-chunks", "97"];
    let v = restore_json(
        &sb,
        &["latest", "--target", t_s, "--verify", small[0], small[1]],
    );
    assert_eq!(v["files_verified"], 8, "{v}");
    assert_eq!(snapshot_of(&src), snapshot_of(&t));
    // A delta restore over a copy whose pages differ in every piece keeps the rest.
    let mut rng = Rng(9);
    for f in 0..4u64 {
        let p = t.join("db1").join(format!("{}", 16384 + f));
        let mut file = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        for page in (0..600).step_by(60) {
            file.seek(SeekFrom::Start(page * 8192)).unwrap();
            file.write_all(&rng.page(8192, 0)).unwrap();
        }
    }
    let v = restore_json(
        &sb,
        &[
            "latest", "--target", t_s, "--delta", "--verify", small[0], small[1],
        ],
    );
    let written = v["bytes_written"].as_u64().unwrap();
    assert!(written > 0 && written < 4 * 10 * 3 * 65536, "{v}");
    assert_eq!(snapshot_of(&src), snapshot_of(&t));

    // Damage in the second half of a file that was cut: the half already written goes too.
    let pack = &largest_pack(&sb);
    let mut bytes = std::fs::read(pack).unwrap();
    let at = bytes.len() * 3 / 4;
    bytes[at] ^= 0xff;
    std::fs::write(pack, bytes).unwrap();
    let t2 = sb.path("t2");
    let v = restore_skipping_damage(&sb, &t2, &small);
    let damaged = damaged_files(&v);
    assert!(!damaged.is_empty(), "{v}");
    for db in ["db1", "db2"] {
        for f in 0..4u64 {
            let rel = format!("{db}/{}", 16384 + f);
            let restored = t2.join(&rel);
            if damaged.contains(&rel) {
                assert!(!restored.exists(), "damaged {rel} was left behind");
            } else {
                assert_eq!(
                    std::fs::read(&restored).unwrap(),
                    std::fs::read(src.join(&rel)).unwrap(),
                    "{rel}"
                );
            }
        }
    }
}

#[test]
fn a_truncated_pack_costs_only_the_files_in_its_lost_tail() {
    let (sb, src) = incompressible_files(12, 12_000, 78);
    // Cut the largest data pack in the middle: the blobs before the cut are still readable.
    let pack = &largest_pack(&sb);
    let len = std::fs::metadata(pack).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(pack)
        .unwrap()
        .set_len(len * 6 / 10)
        .unwrap();
    let t = sb.path("t");
    let v = restore_skipping_damage(&sb, &t, &[]);
    let damaged = damaged_files(&v);
    // The 1 MiB pack holds all twelve 96 KB files; only those with chunks in the lost 40% go.
    assert!(!damaged.is_empty() && damaged.len() <= 7, "{v}");
    for i in 0..12 {
        let name = format!("t{i}");
        if !damaged.contains(&name) {
            assert_eq!(
                std::fs::read(t.join(&name)).unwrap(),
                std::fs::read(src.join(&name)).unwrap()
            );
        }
    }
}

#[test]
fn new_files_of_scattered_chunks_restore_exactly_and_sparse() {
    // Files of 1 MiB or more are written around the page cache: whole pages directly, the
    // partial pages at the ends of each run of neighbouring chunks held back to the end of
    // the batch. A second backup of scattered changes cuts each file into many short runs
    // from different packs, so most pages are shared by two runs. With small batches the
    // partial pages held back outgrow their bound (512 bytes per chunk of the batch), and are
    // also written in mid-batch: now and then with 97 chunks, after nearly every run with 7.
    let sb = Sandbox::new();
    let src = database(&sb, 2, 1000);
    let mut rng = Rng(33);
    // Preallocated-looking: data, 3 MiB of zeros, data, and a length that ends mid-page.
    let mut sparse: Vec<u8> = (0..200).flat_map(|p| rng.page(8192, p)).collect();
    sparse.extend(std::iter::repeat_n(0u8, 3 << 20));
    sparse.extend((0..300).flat_map(|p| rng.page(8192, p)));
    sparse.extend_from_slice(&[9u8; 1234]);
    std::fs::write(src.join("db1/sparse"), &sparse).unwrap();
    sb.ok(&["init", "--pack-size", "1MiB"]);
    sb.backup(&[], &[&src]);
    for db in ["db1", "db2"] {
        for f in 0..2u64 {
            let p = src.join(db).join(format!("{}", 16384 + f));
            let mut file = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            for _ in 0..40 {
                file.seek(SeekFrom::Start(rng.below(1000) * 8192)).unwrap();
                file.write_all(&rng.page(8192, 0)).unwrap();
            }
        }
    }
    sb.backup(&[], &[&src]);
    let batches = [
        &[][..],
        &["--batch-chunks", "97"][..],
        &["--batch-chunks", "7"][..],
    ];
    for (n, extra) in batches.into_iter().enumerate() {
        let t = sb.path(&format!("t{n}"));
        let mut args = vec!["latest", "--target", t.to_str().unwrap(), "--verify"];
        args.extend_from_slice(extra);
        let v = restore_json(&sb, &args);
        assert_eq!(v["files_verified"], 5, "{v}");
        assert_eq!(snapshot_of(&src), snapshot_of(&t), "{extra:?}");
        assert!(v["bytes_sparse"].as_u64().unwrap() > 5 << 19, "{v}");
        let allocated = std::fs::metadata(t.join("db1/sparse")).unwrap().blocks() * 512;
        assert!(
            allocated < sparse.len() as u64 - (2 << 20),
            "the zeros take space: {allocated} bytes allocated"
        );
    }
}

#[test]
fn delta_keeps_a_directory_in_the_way_unless_delete() {
    let (sb, src) = backed_up_database(2, 10);
    let t = sb.path("t");
    let t_s = t.to_str().unwrap();
    restore_json(&sb, &["latest", "--target", t_s]);

    // Where the snapshot has a file, the copy has a directory holding a file of its own: that
    // file is not in the snapshot, so only --delete may remove it.
    let file = t.join("db1/16385");
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir_all(file.join("sub")).unwrap();
    std::fs::write(file.join("sub/own"), b"not in the snapshot").unwrap();
    let line = sb.fails(&["restore", "latest", "--target", t_s, "--delta"]);
    assert!(
        line.contains(
            "db1/16385 is a directory in the restore target where the snapshot has a file"
        ),
        "{line}"
    );
    assert!(file.join("sub/own").exists());
    // An empty directory holds nothing to keep.
    std::fs::remove_dir_all(file.join("sub")).unwrap();
    restore_json(&sb, &["latest", "--target", t_s, "--delta"]);
    assert_eq!(snapshot_of(&src), snapshot_of(&t));

    // Likewise where the snapshot has a symlink.
    let link = t.join("link");
    std::fs::remove_file(&link).unwrap();
    std::fs::create_dir(&link).unwrap();
    std::fs::write(link.join("own"), b"not in the snapshot").unwrap();
    let line = sb.fails(&["restore", "latest", "--target", t_s, "--delta"]);
    assert!(line.contains("where the snapshot has a symlink"), "{line}");
    assert!(link.join("own").exists());
    let v = restore_json(&sb, &["latest", "--target", t_s, "--delta", "--delete"]);
    assert_eq!(v["symlinks_restored"], 1, "{v}");
    assert_eq!(snapshot_of(&src), snapshot_of(&t));
}

#[test]
fn damaged_tree_names_its_directory_and_skip_damaged_restores_the_rest() {
    use cairn_engine::decode::{BlobKind, decode_pack};
    let sb = Sandbox::new();
    let src = sb.path("src");
    for (dir, name) in [("kept", "a"), ("lost", "only_in_lost")] {
        std::fs::create_dir_all(src.join(dir)).unwrap();
        std::fs::write(src.join(dir).join(name), name.repeat(1000)).unwrap();
    }
    sb.ok(&[
        "init",
        "--compression",
        "none",
        "--encryption",
        "none",
        "--format-version",
        "1",
    ]);
    sb.backup(&[], &[&src]);
    // Flip a byte in the tree of lost/ (the one naming its file).
    let mut hit = false;
    for p in crate::common::pack_files(&sb.repo()) {
        let mut bytes = std::fs::read(&p).unwrap();
        let entries = decode_pack(&bytes).unwrap();
        let tree = entries.iter().find(|e| {
            e.kind == BlobKind::Tree
                && bytes[(e.offset + 44) as usize..e.end() as usize]
                    .windows(12)
                    .any(|w| w == b"only_in_lost")
        });
        if let Some(e) = tree {
            bytes[(e.offset + 44 + 3) as usize] ^= 0x20;
            std::fs::write(&p, bytes).unwrap();
            hit = true;
            break;
        }
    }
    assert!(hit);

    let t = sb.path("t");
    let line = sb.fails(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert!(
        line.contains("cannot restore lost/ (the whole directory)"),
        "{line}"
    );
    let t2 = sb.path("t2");
    let v = restore_skipping_damage(&sb, &t2, &[]);
    assert_eq!(damaged_files(&v), ["lost/ (the whole directory)"], "{v}");
    assert_eq!(v["files_restored"], 1, "{v}");
    assert_eq!(
        std::fs::read(t2.join("kept/a")).unwrap(),
        "a".repeat(1000).as_bytes()
    );
    assert!(!t2.join("lost").exists());
}

#[test]
fn restores_a_tree_as_deep_as_a_backup_reaches() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    let t = sb.path("t");
    // One-letter directories down to just under PATH_MAX (4096), as deep as a backup goes.
    let depth = (4000 - t.as_os_str().len().max(src.as_os_str().len())) / 2;
    assert!(depth > 1900, "{depth}");
    let rel: std::path::PathBuf = std::iter::repeat_n("a", depth).collect();
    std::fs::create_dir_all(src.join(&rel)).unwrap();
    std::fs::write(src.join(&rel).join("f"), b"deep").unwrap();
    sb.ok(&["init"]);
    sb.backup(&[], &[&src]);
    // The audit walks the same depth (on a pool thread).
    assert!(sb.ok(&["check"]).contains("no damage found"));
    for extra in [&[][..], &["--delta", "--verify"][..]] {
        let mut args = vec!["latest", "--target", t.to_str().unwrap()];
        args.extend_from_slice(extra);
        let v = restore_json(&sb, &args);
        assert_eq!(v["dirs_restored"].as_u64(), Some(depth as u64), "{v}");
        assert_eq!(std::fs::read(t.join(&rel).join("f")).unwrap(), b"deep");
    }
}

#[test]
fn delta_as_root_keeps_setuid_bits_when_fixing_the_owner() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let tool = src.join("tool");
    std::fs::write(&tool, b"#!/bin/sh\n").unwrap();
    if std::fs::metadata(&tool).unwrap().uid() != 0 {
        eprintln!("not run as root: owners are not restored, so nothing to check");
        return;
    }
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o6755)).unwrap();
    sb.ok(&["init"]);
    sb.backup(&[], &[&src]);
    let t = sb.path("t");
    let t_s = t.to_str().unwrap();
    restore_json(&sb, &["latest", "--target", t_s]);
    // The copy's file has the right bytes and mode but another owner.
    let copy = t.join("tool");
    std::os::unix::fs::chown(&copy, Some(1234), Some(1234)).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o6755)).unwrap();
    restore_json(&sb, &["latest", "--target", t_s, "--delta"]);
    let m = std::fs::metadata(&copy).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0));
    assert_eq!(m.permissions().mode() & 0o7777, 0o6755);
}
