//! Snapshot lifecycle: forget, delete, prune (alone, beside backups, killed) and stats.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Rng, Sandbox, copy_dir, database, files_under, last_json, snapshot_of};

/// A day of writes: `share` of the pages rewritten, and one file grows.
fn evolve(dir: &Path, share: f64, rng: &mut Rng) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for p in &files {
        let pages = std::fs::metadata(p).unwrap().len() / 8192;
        let mut f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        for _ in 0..((pages as f64 * share) as u64).max(1) {
            let page = rng.below(pages);
            f.seek(SeekFrom::Start(page * 8192)).unwrap();
            f.write_all(&rng.page(8192, page)).unwrap();
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&files[0])
        .unwrap();
    for p in 0..16 {
        f.write_all(&rng.page(8192, 10_000 + p)).unwrap();
    }
}

fn repo_bytes(repo: &Path) -> u64 {
    files_under(repo)
        .iter()
        .filter(|p| !p.starts_with(repo.join("locks")))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// The repository passes `check --read-data` without a warning, and its latest snapshot
/// restores to exactly `expected`.
fn assert_sound(sb: &Sandbox, expected: &Path, what: &str) {
    let v: serde_json::Value =
        serde_json::from_str(&sb.ok(&["check", "--read-data", "--json"])).unwrap();
    assert_eq!(v["ok"], true, "{what}: {v}");
    assert!(v["warnings"].as_array().unwrap().is_empty(), "{what}: {v}");
    let t = sb.path("restored");
    let _ = std::fs::remove_dir_all(&t);
    sb.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(snapshot_of(expected), snapshot_of(&t), "{what}");
}

fn snapshot_ids(sb: &Sandbox) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&sb.ok(&["list", "--json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn forget_and_prune_shrink_to_what_the_kept_snapshots_need() {
    let sb = Sandbox::new();
    let src = sb.path("pgdata");
    let mut rng = Rng(3);
    database(&src, 4, 300, &mut rng);
    sb.ok(&["init", "--pack-size", "1MiB"]);
    let mut kept_trees = Vec::new();
    for day in 0..10 {
        if day > 0 {
            evolve(&src, 0.1, &mut rng);
        }
        sb.backup(&[], &[&src]);
        if day >= 7 {
            // What each kept snapshot must restore to.
            let copy = sb.path(&format!("day{day}"));
            Command::new("cp")
                .arg("-a")
                .arg(&src)
                .arg(&copy)
                .status()
                .unwrap();
            kept_trees.push(copy);
        }
    }
    let before = repo_bytes(&sb.repo());
    let out = sb.ok(&["forget", "--keep-last", "3", "--json"]);
    let groups: serde_json::Value = serde_json::from_str(&out).unwrap();
    let verdicts = groups[0]["snapshots"].as_array().unwrap();
    assert_eq!(verdicts.iter().filter(|v| v["keep"] == true).count(), 3);
    let report = last_json(&sb.ok(&["prune", "--max-unused", "0%", "--json"]));
    let gone =
        report["packs_deleted"].as_u64().unwrap() + report["packs_repacked"].as_u64().unwrap();
    assert!(gone > 0, "{report}");
    let after = repo_bytes(&sb.repo());
    assert!(after < before, "{before} -> {after}");

    // A fresh repository holding the same three snapshots.
    let fresh = Sandbox::new();
    fresh.ok(&["init", "--pack-size", "1MiB"]);
    for tree in &kept_trees {
        fresh.backup(&[], &[tree]);
    }
    let fresh_bytes = repo_bytes(&fresh.repo());
    eprintln!(
        "10 backups {before} bytes; after forget and prune {after}; fresh with 3 {fresh_bytes}"
    );
    assert!(
        (after as f64) <= fresh_bytes as f64 * 1.10,
        "pruned repository {after} bytes, fresh one {fresh_bytes}"
    );

    let v: serde_json::Value =
        serde_json::from_str(&sb.ok(&["check", "--read-data", "--json"])).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let ids = snapshot_ids(&sb);
    assert_eq!(ids.len(), 3);
    for (id, tree) in ids.iter().zip(&kept_trees) {
        let t = sb.path(&format!("restored-{id}"));
        sb.ok(&["restore", id, "--target", t.to_str().unwrap()]);
        assert_eq!(snapshot_of(tree), snapshot_of(&t), "snapshot {id}");
    }
}

#[test]
fn backups_and_prunes_at_the_same_time_lose_nothing() {
    let sb = Sandbox::new();
    let src = sb.path("pgdata");
    let mut rng = Rng(11);
    database(&src, 3, 200, &mut rng);
    sb.ok(&["init", "--pack-size", "1MiB"]);
    sb.backup(&[], &[&src]);
    let spawn = |args: &[&str]| {
        sb.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let src_s = src.to_str().unwrap().to_string();
    for round in 0..20 {
        evolve(&src, 0.05, &mut rng);
        // Keep the repository small and give prune something to delete every round.
        sb.ok(&["forget", "--keep-last", "2"]);
        let first_prune = rng.below(2) == 0;
        let delay = Duration::from_millis(rng.below(120));
        let (a, b): (&[&str], &[&str]) = (&["backup", &src_s], &["prune", "--max-unused", "0%"]);
        let (first, second) = if first_prune { (b, a) } else { (a, b) };
        let p1 = spawn(first);
        std::thread::sleep(delay);
        let p2 = spawn(second);
        for (args, p) in [(first, p1), (second, p2)] {
            let out = p.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: cairn {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert_sound(&sb, &src, "after the last round");
    assert!(
        std::fs::read_dir(sb.repo().join("locks"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "locks left behind"
    );
}

#[test]
fn a_killed_prune_leaves_a_valid_repository_and_the_next_one_finishes() {
    let base = Sandbox::new();
    let src = base.path("pgdata");
    let mut rng = Rng(29);
    database(&src, 4, 250, &mut rng);
    base.ok(&["init", "--pack-size", "1MiB"]);
    for day in 0..6 {
        if day > 0 {
            evolve(&src, 0.2, &mut rng);
        }
        base.backup(&[], &[&src]);
    }
    base.ok(&["forget", "--keep-last", "2"]);
    let latest = base.path("latest");
    base.ok(&["restore", "latest", "--target", latest.to_str().unwrap()]);
    // How long a whole prune takes here, to spread the kills over it.
    let probe = Sandbox::new();
    copy_dir(&base.repo(), &probe.repo());
    let t = std::time::Instant::now();
    probe.ok(&["prune", "--max-unused", "0%"]);
    let mut span = t.elapsed().as_millis().max(20) as u64;

    let mut killed_midway = 0;
    // Other tests share the machine, so a prune's time varies: trials go on (up to 40) until
    // at least 10 prunes were stopped part way, each trial checked either way.
    let mut trials = 0;
    for trial in (0..40u64).map(|t| t % 20) {
        if trials >= 20 && killed_midway >= 10 {
            break;
        }
        trials += 1;
        let sb = Sandbox::new();
        copy_dir(&base.repo(), &sb.repo());
        let mut child = sb
            .command(&["prune", "--max-unused", "0%"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(trial * span / 20));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if !status.success() {
            killed_midway += 1;
        } else {
            // Finished before the kill: prunes run faster now than the probe did (other tests
            // share the machine), so the kills come sooner from here on.
            span = (span * 2 / 3).max(1);
        }
        let v: serde_json::Value = serde_json::from_str(&sb.ok(&["check", "--json"])).unwrap();
        assert_eq!(v["ok"], true, "trial {trial}: {v}");
        sb.ok(&["prune", "--max-unused", "0%"]);
        assert_sound(&sb, &latest, &format!("trial {trial}"));
    }
    eprintln!("{killed_midway} of {trials} prunes killed before they finished");
    assert!(
        killed_midway >= 10,
        "only {killed_midway} of {trials} prunes were stopped"
    );
}

#[test]
fn unique_bytes_are_what_deleting_and_pruning_frees() {
    let sb = Sandbox::new();
    let src = sb.path("pgdata");
    let mut rng = Rng(41);
    database(&src, 3, 200, &mut rng);
    sb.ok(&["init", "--pack-size", "1MiB"]);
    sb.backup(&[], &[&src]);
    // The middle snapshot holds a table no other snapshot has.
    let table = src.join("99999");
    std::fs::write(
        &table,
        (0..300)
            .flat_map(|p| rng.page(8192, p))
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let middle = sb.backup(&[], &[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(&table).unwrap();
    evolve(&src, 0.05, &mut rng);
    sb.backup(&[], &[&src]);

    let stats: serde_json::Value =
        serde_json::from_str(&sb.ok(&["stats", &middle, "--json"])).unwrap();
    let unique = stats["per_snapshot"][0]["unique_bytes"].as_u64().unwrap();
    assert!(unique > 300 * 1024, "{stats}");
    // Prune once first, so that only the deletion is measured.
    sb.ok(&["prune", "--max-unused", "0%"]);
    let before = repo_bytes(&sb.repo());
    sb.ok(&["delete", &middle]);
    sb.ok(&["prune", "--max-unused", "0%"]);
    let freed = before - repo_bytes(&sb.repo());
    // Beyond the blobs themselves: their pack directory and index entries, pack headers and
    // trailers, and the snapshot file.
    let overhead = freed.abs_diff(unique);
    eprintln!("unique {unique} bytes; freed {freed}");
    assert!(
        overhead <= unique / 20 + 16 * 1024,
        "unique {unique}, freed {freed}"
    );
}

#[test]
fn a_prune_stopped_after_any_step_leaves_a_repository_the_next_prune_finishes() {
    // The states a prune passes through (format-spec/locks.md), made by copying what a
    // finished prune wrote into a copy of the repository before it: new packs only; new packs
    // and new index files; and with the old index files gone, then half the old packs too.
    // A later prune may pack and list the same blobs the same way, under the same names: it
    // must not then delete them as leftovers or as obsolete.
    for stage in 0..4 {
        let sb = Sandbox::new();
        let src = sb.path("pgdata");
        let mut rng = Rng(53);
        database(&src, 3, 200, &mut rng);
        sb.ok(&["init", "--pack-size", "1MiB"]);
        for _ in 0..4 {
            evolve(&src, 0.2, &mut rng);
            sb.backup(&[], &[&src]);
        }
        sb.ok(&["forget", "--keep-last", "1"]);
        let done = Sandbox::new();
        copy_dir(&sb.repo(), &done.repo());
        let report = last_json(&done.ok(&["prune", "--max-unused", "0%", "--json"]));
        assert!(report["packs_written"].as_u64().unwrap() > 0, "{report}");
        let rel_files = |root: &Path| -> std::collections::BTreeSet<PathBuf> {
            files_under(root)
                .into_iter()
                .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
                .filter(|p| !p.starts_with("locks"))
                .collect()
        };
        let (before, after) = (rel_files(&sb.repo()), rel_files(&done.repo()));
        for rel in after.difference(&before) {
            if rel.starts_with("data") || (stage >= 1 && rel.starts_with("index")) {
                std::fs::create_dir_all(sb.repo().join(rel).parent().unwrap()).unwrap();
                std::fs::copy(done.repo().join(rel), sb.repo().join(rel)).unwrap();
            }
        }
        let gone: Vec<&PathBuf> = before.difference(&after).collect();
        for (i, rel) in gone.iter().enumerate() {
            let old_index = stage >= 2 && rel.starts_with("index");
            let old_pack = stage >= 3 && rel.starts_with("data") && i % 2 == 0;
            if old_index || old_pack {
                std::fs::remove_file(sb.repo().join(rel)).unwrap();
            }
        }
        let v: serde_json::Value = serde_json::from_str(&sb.ok(&["check", "--json"])).unwrap();
        assert_eq!(v["ok"], true, "stage {stage}: {v}");
        sb.ok(&["prune", "--max-unused", "0%"]);
        assert_sound(&sb, &src, &format!("stage {stage}"));
    }
}

#[test]
fn forget_dry_run_over_two_years_of_hourly_snapshots_keeps_what_the_policy_says() {
    use cairn_engine::Id;
    use cairn_engine::Snapshot;

    let sb = Sandbox::new();
    let src = sb.path("pgdata");
    database(&src, 1, 4, &mut Rng(7));
    sb.ok(&["init", "--encryption", "none", "--format-version", "1"]);
    let made = sb.backup(&[], &[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Two years of hourly snapshots of the same tree: 2024-01-01T00:00Z to 2025-12-31T23:00Z.
    let snaps = sb.repo().join("snapshots");
    let template = std::fs::read(snaps.join(&made)).unwrap();
    let template = Snapshot::decode(&template, &Id::of(&template)).unwrap();
    std::fs::remove_file(snaps.join(&made)).unwrap();
    let start: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
    let mut id_at = std::collections::HashMap::new();
    for h in 0..(366 + 365) * 24 {
        let t = (start + jiff::SignedDuration::from_hours(h)).to_string();
        let mut s = template.clone();
        s.time = t.clone();
        s.time_end = t.clone();
        let bytes = s.encode();
        let id = Id::of(&bytes).to_hex();
        std::fs::write(snaps.join(&id), bytes).unwrap();
        id_at.insert(t, id);
    }
    assert_eq!(id_at.len(), 17_544);

    // The table: which snapshot each rule keeps, newest first within each rule.
    let mut expected: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    let mut add =
        |t: String, why: &'static str| expected.entry(id_at[&t].clone()).or_default().push(why);
    for h in (0..24).rev() {
        let t = format!("2025-12-31T{h:02}:00:00Z");
        if h >= 22 {
            add(t.clone(), "last");
        }
        add(t, "hourly");
    }
    for d in (25..=31).rev() {
        add(format!("2025-12-{d}T23:00:00Z"), "daily");
    }
    // ISO weeks end on Sundays: the week of Monday 2025-12-29 holds the newest snapshot.
    for t in ["2025-12-31", "2025-12-28", "2025-12-21", "2025-12-14"] {
        add(format!("{t}T23:00:00Z"), "weekly");
    }
    for t in [
        "2025-12-31",
        "2025-11-30",
        "2025-10-31",
        "2025-09-30",
        "2025-08-31",
        "2025-07-31",
        "2025-06-30",
        "2025-05-31",
        "2025-04-30",
        "2025-03-31",
        "2025-02-28",
        "2025-01-31",
    ] {
        add(format!("{t}T23:00:00Z"), "monthly");
    }
    // Only two years exist: the third yearly slot stays empty.
    for t in ["2025-12-31", "2024-12-31"] {
        add(format!("{t}T23:00:00Z"), "yearly");
    }
    assert_eq!(expected.len(), 44);

    let out = sb.ok(&[
        "forget",
        "--dry-run",
        "--json",
        "--keep-last",
        "2",
        "--keep-hourly",
        "24",
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--keep-monthly",
        "12",
        "--keep-yearly",
        "3",
    ]);
    let groups: serde_json::Value = serde_json::from_str(&out).unwrap();
    let verdicts = groups[0]["snapshots"].as_array().unwrap();
    assert_eq!(verdicts.len(), 17_544);
    let kept: std::collections::BTreeMap<String, Vec<&str>> = verdicts
        .iter()
        .filter(|v| v["keep"] == true)
        .map(|v| {
            let reasons = v["reasons"].as_array().unwrap();
            (
                v["id"].as_str().unwrap().to_string(),
                reasons.iter().map(|r| r.as_str().unwrap()).collect(),
            )
        })
        .collect();
    assert_eq!(kept, expected);
    // A dry run removes nothing.
    assert_eq!(std::fs::read_dir(&snaps).unwrap().count(), 17_544);
}

#[test]
fn prune_relies_on_a_healthy_copy_over_a_missing_pack() {
    use cairn_engine::Id;
    use cairn_engine::decode::{PackRecord, decode_index, encode_index};

    let sb = Sandbox::new();
    let src = sb.path("pgdata");
    database(&src, 2, 100, &mut Rng(61));
    sb.ok(&["init", "--encryption", "none", "--format-version", "1"]);
    sb.backup(&[], &[&src]);
    // An index file that also lists every blob in a pack that is not there, named so that it
    // comes first: its blobs have a healthy copy, so prune drops it rather than stopping.
    let index_dir = sb.repo().join("index");
    let mut ghosts = Vec::new();
    for e in std::fs::read_dir(&index_dir).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        for r in decode_index(&bytes).unwrap() {
            ghosts.push(PackRecord {
                id: Id([0; 32]),
                len: r.len,
                blobs: r.blobs,
            });
        }
    }
    let ghost = encode_index(&ghosts[..1]);
    std::fs::write(index_dir.join(Id::of(&ghost).to_hex()), &ghost).unwrap();
    let report = last_json(&sb.ok(&["prune", "--json"]));
    assert_eq!(report["packs_deleted"], 1, "{report}");
    assert_sound(&sb, &src, "after the last round");
}

#[test]
fn prune_merges_many_small_index_files() {
    let sb = Sandbox::new();
    sb.ok(&["init"]);
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = Rng(77);
    // Each small backup writes one index file (as each archived WAL file does).
    for i in 0..40u64 {
        std::fs::write(src.join("table"), rng.page(8192, i)).unwrap();
        sb.backup(&[], &[&src]);
    }
    let index_files = || files_under(&sb.repo().join("index")).len();
    assert!(index_files() >= 40);
    let report = last_json(&sb.ok(&["prune", "--max-unused", "100%", "--json"]));
    assert_eq!(report["packs_deleted"], 0, "{report}");
    assert!(
        index_files() <= 2,
        "{} index files after prune: {report}",
        index_files()
    );
    // Every snapshot still restores, from a cache rebuilt from the merged files.
    std::fs::remove_dir_all(sb.cache()).unwrap();
    sb.ok(&["check", "--read-data"]);
    let out = sb.path("out");
    sb.ok(&["restore", "latest", "--target", out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(out.join("table")).unwrap(),
        std::fs::read(src.join("table")).unwrap()
    );
    // Nothing to merge the second time.
    let again = last_json(&sb.ok(&["prune", "--json"]));
    assert_eq!(again["index_files_written"], 0, "{again}");
}

#[test]
fn forget_and_delete_wait_for_readers_and_their_dry_runs_do_not() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    sb.ok(&["init", "--encryption", "none", "--format-version", "1"]);
    for i in 0..2 {
        std::fs::write(src.join("f"), format!("version {i}")).unwrap();
        sb.backup(&[], &[&src]);
    }
    // A check or copy on another host holds a shared lock: it may have listed the snapshots
    // and not read them yet.
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%dT%H:%M:%SZ")
        .output()
        .unwrap();
    let now = String::from_utf8(date.stdout).unwrap();
    let now = now.trim();
    let held = sb.repo().join("locks").join("a".repeat(64));
    std::fs::write(
        &held,
        format!(
            r#"{{"version": 1, "kind": "shared", "operation": "check", "hostname": "elsewhere", "pid": 7, "time": "{now}", "refreshed": "{now}"}}"#
        ),
    )
    .unwrap();
    for args in [
        &["--lock-wait", "1s", "forget", "--keep-last", "1"][..],
        &["--lock-wait", "1s", "delete", "latest"][..],
    ] {
        let err = sb.fails(args);
        assert!(err.contains("locked"), "{err}");
    }
    assert_eq!(
        snapshot_ids(&sb).len(),
        2,
        "nothing deleted while a reader holds the lock"
    );
    let dry = sb.ok(&[
        "--lock-wait",
        "1s",
        "forget",
        "--keep-last",
        "1",
        "--dry-run",
    ]);
    assert!(dry.contains("remove"), "{dry}");
    std::fs::remove_file(&held).unwrap();
    sb.ok(&["forget", "--keep-last", "1"]);
    assert_eq!(snapshot_ids(&sb).len(), 1);
}
