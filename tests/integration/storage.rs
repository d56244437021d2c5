//! The storage conformance suite, run against every store (in-memory, local disk, S3), and the
//! whole command-line life of a repository run against a local directory and against S3.

use std::path::Path;

use cairn_engine::{Location, S3Settings, Store};

use crate::common::{Rng, Sandbox, last_json, snapshot_of};

/// What every store must do.
fn conformance(store: &Store) {
    assert_eq!(store.read_opt("index/none").unwrap(), None);
    assert_eq!(store.size("index/none").unwrap(), None);
    assert!(store.list("index/").unwrap().is_empty());
    store.write("index/a", b"hello".to_vec()).unwrap();
    let up = store.spawn_write("data/00/b", b"world!".to_vec());
    store.finish(up).unwrap();
    assert_eq!(store.read("index/a").unwrap(), b"hello");
    assert_eq!(store.read_range("data/00/b", 1..4).unwrap(), b"orl");
    assert!(store.read_range("data/00/b", 4..40).is_err());
    assert_eq!(store.size("data/00/b").unwrap(), Some(6));
    assert_eq!(store.list("data/").unwrap(), vec!["data/00/b".to_string()]);
    store.delete("index/a").unwrap();
    store.delete("index/a").unwrap();
    store.delete("data/zz/never-there").unwrap();
    assert_eq!(store.read_opt("index/a").unwrap(), None);
    assert!(store.list("index/").unwrap().is_empty());
    // A missing file is damage (a pack the index names), not a passing fault.
    assert!(store.read("index/a").unwrap_err().is_damage());
    assert!(store.read_range("index/a", 0..1).unwrap_err().is_damage());
    // Overwriting (the config's retention policy, lock refreshes) replaces the whole file.
    store.write("locks/l", b"first version".to_vec()).unwrap();
    store.write("locks/l", b"second".to_vec()).unwrap();
    assert_eq!(store.read("locks/l").unwrap(), b"second");
    // A conditional write writes once; the first content stays.
    assert!(store.write_new("keys/k", b"one".to_vec()).unwrap());
    assert!(!store.write_new("keys/k", b"two".to_vec()).unwrap());
    assert_eq!(store.read("keys/k").unwrap(), b"one");
    // Large objects, read whole and by ranges up to their last byte.
    let big: Vec<u8> = (0..40u32 << 20).map(|i| (i % 251) as u8).collect();
    store.write("data/ff/big", big.clone()).unwrap();
    assert_eq!(store.size("data/ff/big").unwrap(), Some(big.len() as u64));
    assert_eq!(store.read("data/ff/big").unwrap(), big);
    let n = big.len() as u64;
    assert_eq!(
        store.read_range("data/ff/big", n - 7..n).unwrap(),
        &big[big.len() - 7..]
    );
    assert_eq!(
        store
            .read_range("data/ff/big", 20 << 20..(20 << 20) + 5)
            .unwrap(),
        &big[20 << 20..(20 << 20) + 5]
    );
    assert!(store.read_range("data/ff/big", n - 7..n + 1).is_err());
    let mut listed = store.list("data/").unwrap();
    listed.sort();
    assert_eq!(
        listed,
        vec!["data/00/b".to_string(), "data/ff/big".to_string()]
    );
    // Nothing being written shows under a listed directory.
    assert!(store.list("tmp/").unwrap().is_empty());
    store.delete("data/ff/big").unwrap();
    assert_eq!(store.list("data/").unwrap(), vec!["data/00/b".to_string()]);
    // Listings longer than one page of an object store (1000 keys), in nested directories.
    let uploads: Vec<_> = (0..1100)
        .map(|i| store.spawn_write(&format!("many/{:02x}/{i:04}", i % 7), vec![1]))
        .collect();
    for u in uploads {
        store.finish(u).unwrap();
    }
    let mut many = store.list("many/").unwrap();
    many.sort();
    many.dedup();
    assert_eq!(many.len(), 1100);
    let root = store.list_root().unwrap();
    for dir in ["data", "keys", "locks", "many"] {
        assert!(root.iter().any(|r| r == dir), "{dir} not in {root:?}");
    }
}

#[test]
fn memory_store_conforms() {
    conformance(&Store::open(&Location::Memory, true).unwrap());
}

#[test]
fn local_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(&Store::open(&Location::Local(dir.path().join("repo")), true).unwrap());
}

/// The location of a fresh prefix in a fresh bucket of the test server.
fn s3_location(endpoint: &str, key: &str, secret: &str) -> Option<(Location, String)> {
    let server = crate::s3::server()?;
    let bucket = server.bucket();
    let location = Location::parse(&format!("s3://{bucket}/some/prefix"))
        .unwrap()
        .with_s3_settings(S3Settings {
            endpoint: Some(endpoint.into()),
            access_key_id: Some(key.into()),
            secret_access_key: Some(secret.into()),
            ..S3Settings::default()
        });
    Some((location, bucket))
}

#[test]
fn s3_store_conforms() {
    let Some(server) = crate::s3::server() else {
        return;
    };
    let (location, bucket) =
        s3_location(&server.endpoint, &server.access_key, &server.secret_key).unwrap();
    conformance(&Store::open(&location, true).unwrap());
    // Everything lives under the prefix.
    let keys = server.keys(&bucket, "");
    assert!(!keys.is_empty());
    assert!(
        keys.iter().all(|k| k.starts_with("some/prefix/")),
        "{keys:?}"
    );
}

#[test]
fn s3_refusals_are_clear_and_fast() {
    let Some(server) = crate::s3::server() else {
        return;
    };
    let (location, _) = s3_location(&server.endpoint, &server.access_key, "wrong-secret").unwrap();
    let store = Store::open(&location, true).unwrap();
    let started = std::time::Instant::now();
    let e = store.read_opt("config").unwrap_err().to_string();
    assert!(e.contains("access denied"), "{e}");
    assert!(!e.contains("wrong-secret"), "{e}");
    // Refusals are not retried.
    assert!(started.elapsed() < std::time::Duration::from_secs(3));

    let sb = Sandbox::s3().unwrap();
    let missing = sb.repo_spec.replace("s3://cairn-", "s3://missing-");
    let line = sb.fails(&["init", "--repo", &missing]);
    assert!(line.contains("bucket does not exist"), "{line}");
    let line = sb.fails(&["list"]);
    assert!(line.contains("no cairn repository"), "{line}");
    sb.ok(&["init"]);
    let line = sb.fails(&["init"]);
    assert!(line.contains("already holds a cairn repository"), "{line}");
}

/// A small database directory: a few page files and a WAL-like log.
fn database(dir: &Path, rng: &mut Rng, pages: u64) {
    for table in ["orders", "customers", "events"] {
        let d = dir.join("base").join(table);
        std::fs::create_dir_all(&d).unwrap();
        let mut bytes = Vec::new();
        for p in 0..pages {
            bytes.extend(rng.page(8192, p));
        }
        std::fs::write(d.join("data.db"), bytes).unwrap();
    }
    std::fs::create_dir_all(dir.join("wal")).unwrap();
    std::fs::write(dir.join("wal/000001.log"), rng.page(1 << 20, 0)).unwrap();
}

/// Rewrites a tenth of the pages of one table.
fn evolve(dir: &Path, rng: &mut Rng) {
    let f = dir.join("base/orders/data.db");
    let mut bytes = std::fs::read(&f).unwrap();
    let pages = bytes.len() / 8192;
    for _ in 0..pages / 10 {
        let p = rng.below(pages as u64) as usize;
        bytes[p * 8192..(p + 1) * 8192].copy_from_slice(&rng.page(8192, p as u64));
    }
    std::fs::write(f, bytes).unwrap();
}

/// The whole life of a repository through the command line: init, backups, list, restore of
/// all and of a part, check --read-data, forget, prune, stats, delete.
fn end_to_end(sb: &Sandbox) {
    let src = sb.path("db");
    let mut rng = Rng(7);
    database(&src, &mut rng, 300);
    sb.ok(&["init"]);
    let first = sb.backup(&["--name", "base"], &[&src]);
    let first_snapshot = snapshot_of(&src);
    evolve(&src, &mut rng);
    let second = sb.backup(&[], &[&src]);
    let added_first = first["bytes_added"].as_u64().unwrap();
    let added_second = second["bytes_added"].as_u64().unwrap();
    assert!(
        added_second * 5 < added_first,
        "the incremental backup added {added_second} bytes of {added_first}"
    );
    let list = sb.ok(&["list", "--json"]);
    let snaps: Vec<serde_json::Value> = serde_json::from_str(list.trim()).unwrap();
    assert_eq!(snaps.len(), 2);

    // Whole restores of both snapshots.
    let out = sb.path("out-latest");
    sb.ok(&["restore", "latest", "--target", out.to_str().unwrap()]);
    assert_eq!(snapshot_of(&out), snapshot_of(&src));
    let out = sb.path("out-base");
    sb.ok(&["restore", "base", "--target", out.to_str().unwrap()]);
    assert_eq!(snapshot_of(&out), first_snapshot);
    // One table only.
    let out = sb.path("out-table");
    sb.ok(&[
        "restore",
        "latest",
        "--target",
        out.to_str().unwrap(),
        "--include",
        "base/orders/**",
    ]);
    assert_eq!(
        std::fs::read(out.join("base/orders/data.db")).unwrap(),
        std::fs::read(src.join("base/orders/data.db")).unwrap()
    );
    assert!(!out.join("base/customers").exists());
    assert!(!out.join("wal").exists());

    sb.ok(&["check", "--read-data"]);

    // Retention and garbage collection.
    evolve(&src, &mut rng);
    sb.backup(&[], &[&src]);
    sb.ok(&["forget", "--keep-last", "1"]);
    let prune = last_json(&sb.ok(&["prune", "--max-unused", "0%", "--json"]));
    assert!(
        prune["packs_deleted"].as_u64().unwrap() + prune["packs_repacked"].as_u64().unwrap() > 0,
        "{prune}"
    );
    let list = sb.ok(&["list", "--json"]);
    let snaps: Vec<serde_json::Value> = serde_json::from_str(list.trim()).unwrap();
    // The named snapshot is kept by every policy, and the latest by --keep-last 1.
    assert_eq!(snaps.len(), 2, "{list}");
    sb.ok(&["check", "--read-data"]);
    let out = sb.path("out-after-prune");
    sb.ok(&["restore", "latest", "--target", out.to_str().unwrap()]);
    assert_eq!(snapshot_of(&out), snapshot_of(&src));
    let stats = last_json(&sb.ok(&["stats", "--json"]));
    assert_eq!(stats["snapshots"], 2, "{stats}");
    assert!(stats["stored_bytes"].as_u64().unwrap() < stats["logical_bytes"].as_u64().unwrap());
    sb.ok(&["delete", "base", "--prune"]);
    sb.ok(&["check", "--read-data"]);
    let out = sb.path("out-last");
    sb.ok(&["restore", "latest", "--target", out.to_str().unwrap()]);
    assert_eq!(snapshot_of(&out), snapshot_of(&src));
}

#[test]
fn end_to_end_on_a_local_directory() {
    end_to_end(&Sandbox::new());
}

#[test]
fn end_to_end_on_s3() {
    let Some(sb) = Sandbox::s3() else { return };
    end_to_end(&sb);
}

/// Fills `dir` with `mib` MiB of incompressible, unique data in a few files.
fn random_files(dir: &Path, mib: usize, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng(seed);
    for f in 0..4 {
        let bytes: Vec<u8> = (0..(mib << 20) / 4 / 8)
            .flat_map(|_| rng.next().to_le_bytes())
            .collect();
        std::fs::write(dir.join(format!("part-{f}.dat")), bytes).unwrap();
    }
}

#[test]
fn s3_backup_and_restore_survive_transient_faults() {
    let Some(server) = crate::s3::server() else {
        return;
    };
    let upstream = server.endpoint.trim_start_matches("http://");
    let proxy = crate::s3::FaultyProxy::start(upstream, 10);
    let mut sb = Sandbox::s3().unwrap();
    sb.env = crate::s3::env(&proxy.endpoint, &server.access_key, &server.secret_key);
    let src = sb.path("src");
    random_files(&src.join("big"), 24, 3);
    database(&src.join("db"), &mut Rng(5), 200);
    sb.ok(&["init", "--pack-size", "4MiB"]);
    sb.backup(&[], &[&src]);
    evolve(&src.join("db"), &mut Rng(6));
    sb.backup(&[], &[&src]);
    let out = sb.path("out");
    sb.ok(&["restore", "latest", "--target", out.to_str().unwrap()]);
    assert_eq!(snapshot_of(&out), snapshot_of(&src));
    sb.ok(&["check", "--read-data"]);
    let failed = proxy.failed.load(std::sync::atomic::Ordering::Relaxed);
    let passed = proxy.passed.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        failed * 20 > passed,
        "only {failed} of {} requests failed",
        failed + passed
    );
}

#[test]
fn s3_backup_stops_cleanly_when_its_credentials_are_revoked() {
    let Some(server) = crate::s3::server() else {
        return;
    };
    let mut sb = Sandbox::s3().unwrap();
    let bucket = sb.repo_spec["s3://".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let (key, secret) = server.user_for(&bucket);
    sb.env = crate::s3::env(&server.endpoint, &key, &secret);
    let first = sb.path("first");
    database(&first, &mut Rng(9), 100);
    sb.ok(&["init", "--pack-size", "4MiB"]);
    sb.backup(&["--name", "before"], &[&first]);
    let packs_before = server.keys(&bucket, "repo/data/").len();

    // A long backup; the key is revoked once it has uploaded a few packs.
    let big = sb.path("big");
    random_files(&big, 160, 11);
    let mut child = sb
        .command(&["backup", big.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while server.keys(&bucket, "repo/data/").len() < packs_before + 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the backup uploaded nothing: {:?}",
            child.try_wait()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Paused while the key is revoked, so that the revocation lands mid-backup however fast
    // the backup runs; resumed once the server refuses the key.
    let signal = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap()
    };
    assert!(
        signal("-STOP").success(),
        "the backup finished before the revocation"
    );
    server.revoke(&bucket, &key);
    let denied = || {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--aws-sigv4"])
            .arg("aws:amz:us-east-1:s3")
            .args(["--user", &format!("{key}:{secret}")])
            .arg(format!("{}/{bucket}/repo/config", server.endpoint))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout) == "403"
    };
    while !denied() {
        assert!(std::time::Instant::now() < deadline, "the key still works");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    signal("-CONT");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("access denied"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains(&secret) && !String::from_utf8_lossy(&out.stdout).contains(&secret));

    // The repository is as it was: the old snapshot only, whole, and usable again.
    sb.env = crate::s3::env(&server.endpoint, &server.access_key, &server.secret_key);
    let list = sb.ok(&["list", "--json"]);
    let snaps: Vec<serde_json::Value> = serde_json::from_str(list.trim()).unwrap();
    assert_eq!(snaps.len(), 1, "{list}");
    sb.ok(&["check", "--read-data"]);
    sb.backup(&[], &[&big]);
    let out = sb.path("out");
    sb.ok(&["restore", "latest", "--target", out.to_str().unwrap()]);
    assert_eq!(snapshot_of(&out), snapshot_of(&big));
}

/// Five snapshots of an evolving database in `sb`; returns the source's state after each.
fn five_snapshots(
    sb: &Sandbox,
) -> Vec<std::collections::BTreeMap<std::path::PathBuf, crate::common::Entry>> {
    let src = sb.path("db");
    let mut rng = Rng(21);
    database(&src, &mut rng, 150);
    let mut states = Vec::new();
    for i in 0..5 {
        if i > 0 {
            evolve(&src, &mut rng);
        }
        sb.backup(&["--name", &format!("day{i}")], &[&src]);
        states.push(snapshot_of(&src));
    }
    states
}

/// Copies all snapshots of `from` into `to` (which has no repository yet) and checks the copy.
fn copy_and_check(from: &Sandbox, to: &Sandbox, extra: &[&str]) {
    let states = five_snapshots(from);
    let mut args = vec!["copy", "--to", to.repo_spec.as_str(), "--json"];
    args.extend_from_slice(extra);
    let first = last_json(&from.ok(&args));
    assert_eq!(first["snapshots_copied"], 5, "{first}");
    assert!(first["blobs_copied"].as_u64().unwrap() > 0);
    // Again: nothing to send.
    let again = last_json(&from.ok(&args));
    assert_eq!(again["snapshots_copied"], 0, "{again}");
    assert_eq!(again["snapshots_present"], 5, "{again}");
    assert_eq!(again["blobs_copied"], 0, "{again}");
    to.ok(&["check", "--read-data"]);
    for (i, state) in states.iter().enumerate() {
        let out = to.path(&format!("copied-{i}"));
        to.ok(&[
            "restore",
            &format!("day{i}"),
            "--target",
            out.to_str().unwrap(),
        ]);
        assert_eq!(&snapshot_of(&out), state, "snapshot day{i}");
    }
    // The same snapshot ids on both sides.
    let ids = |sb: &Sandbox| {
        let v: Vec<serde_json::Value> =
            serde_json::from_str(sb.ok(&["list", "--json"]).trim()).unwrap();
        v.iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(from), ids(to));
    // A new snapshot copies only what it adds.
    evolve(&from.path("db"), &mut Rng(99));
    let added = from.backup(&[], &[&from.path("db")])["bytes_added"]
        .as_u64()
        .unwrap();
    args.push("latest");
    let one = last_json(&from.ok(&args));
    assert_eq!(one["snapshots_copied"], 1, "{one}");
    assert!(
        one["bytes_copied"].as_u64().unwrap() <= added,
        "{one} vs {added}"
    );
}

/// A sandbox sharing `sb`'s scratch directory and cache, for the other side of a copy.
fn other_side(sb: &Sandbox, s3: bool) -> Option<Sandbox> {
    let mut other = if s3 { Sandbox::s3()? } else { Sandbox::new() };
    if !s3 {
        other.repo_spec = sb.path("copy").display().to_string();
    }
    Some(other)
}

#[test]
fn copy_local_to_local_refuses_other_chunking() {
    let from = Sandbox::new();
    from.ok(&["init"]);
    let to = other_side(&from, false).unwrap();
    to.ok(&["init", "--chunk-size", "16KiB"]);
    let line = from.fails(&["copy", "--to", &to.repo_spec]);
    assert!(line.contains("chunk data differently"), "{line}");
    let from2 = Sandbox::new();
    from2.ok(&[
        "init",
        "--compression",
        "none",
        "--encryption",
        "none",
        "--format-version",
        "1",
    ]);
    let to2 = other_side(&from2, false).unwrap();
    copy_and_check(&from2, &to2, &[]);
    // The destination was made with the source's parameters.
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(from2.path("copy/config")).unwrap()).unwrap();
    assert_eq!(cfg["compression"]["algorithm"], "none");
}

#[test]
fn copy_local_to_s3() {
    let from = Sandbox::new();
    from.ok(&["init"]);
    let Some(to) = other_side(&from, true) else {
        return;
    };
    // The destination's settings come from a config file only: the source is local, and its
    // environment holds no S3 settings.
    let get = |k: &str| {
        to.env
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let config = from.path("offsite.toml");
    std::fs::write(
        &config,
        format!(
            "[s3]\nendpoint = {:?}\naccess_key_id = {:?}\nsecret_access_key = {:?}\nconnections = 4\n",
            get("AWS_ENDPOINT_URL"),
            get("AWS_ACCESS_KEY_ID"),
            get("AWS_SECRET_ACCESS_KEY")
        ),
    )
    .unwrap();
    assert!(from.env.is_empty());
    copy_and_check(&from, &to, &["--to-config", config.to_str().unwrap()]);
}

#[test]
fn copy_s3_to_local_and_s3_to_s3() {
    let Some(from) = Sandbox::s3() else { return };
    from.ok(&["init"]);
    let to = other_side(&from, false).unwrap();
    copy_and_check(&from, &to, &[]);
    let to_s3 = other_side(&from, true).unwrap();
    let out = last_json(&from.ok(&["copy", "--to", &to_s3.repo_spec, "--json"]));
    assert_eq!(out["snapshots_copied"], 6, "{out}");
    to_s3.ok(&["check", "--read-data"]);
    let restored = to_s3.path("r");
    to_s3.ok(&["restore", "latest", "--target", restored.to_str().unwrap()]);
    assert_eq!(snapshot_of(&restored), snapshot_of(&from.path("db")));
}

#[test]
fn copy_takes_the_wal_archive_along() {
    let from = Sandbox::new();
    from.ok(&["init"]);
    let mut rng = Rng(5);
    let mut segments = Vec::new();
    for i in 1..=3u64 {
        let seg = from.path(&format!("seg{i}"));
        let mut bytes = Vec::new();
        for p in 0..64 {
            bytes.extend(rng.page(8192, p));
        }
        std::fs::write(&seg, &bytes).unwrap();
        let name = format!("0000000100000000000000{i:02X}");
        from.ok(&["pg", "archive-wal", seg.to_str().unwrap(), &name]);
        segments.push((name, bytes));
    }
    let data = from.path("data");
    database(&data, &mut rng, 20);
    from.backup(&[], &[&data]);
    let to = other_side(&from, false).unwrap();
    // Only a plain snapshot named: no base backup, so no WAL goes.
    let some = last_json(&from.ok(&["copy", "--to", &to.repo_spec, "--json", "latest"]));
    assert_eq!(some["wal_files_copied"], 0, "{some}");
    // Everything: the archive goes too, and fetches whole from the copy.
    let all = last_json(&from.ok(&["copy", "--to", &to.repo_spec, "--json"]));
    assert_eq!(all["wal_files_copied"], 3, "{all}");
    for (name, bytes) in &segments {
        let out = to.path(&format!("fetched-{name}"));
        to.ok(&["pg", "fetch-wal", name, out.to_str().unwrap()]);
        assert_eq!(&std::fs::read(&out).unwrap(), bytes);
    }
    to.ok(&["check", "--read-data"]);
    let again = last_json(&from.ok(&["copy", "--to", &to.repo_spec, "--json"]));
    assert_eq!(again["wal_files_copied"], 0, "{again}");
    assert_eq!(again["wal_files_present"], 3, "{again}");
    assert_eq!(again["blobs_copied"], 0, "{again}");
}
