//! `check` finds every injected fault, names the snapshots and files it affects, gives no false
//! positive, and gives the same verdict without the local cache.

use std::collections::BTreeSet;
use std::path::PathBuf;

use cairn_engine::decode::{BlobKind, decode_pack};
use serde_json::Value;

use crate::common::{Rng, Sandbox, pack_files};

/// A repository of two snapshots over files of incompressible data, stored uncompressed in
/// 1 MiB packs, so that each fault hits known files.
struct Fixture {
    sb: Sandbox,
    src: PathBuf,
    snaps: Vec<String>,
}

fn random_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n.div_ceil(8))
        .flat_map(|_| rng.next().to_le_bytes())
        .take(n)
        .collect()
}

fn fixture() -> Fixture {
    let sb = Sandbox::new();
    let src = sb.path("src");
    std::fs::create_dir_all(src.join("shared")).unwrap();
    let mut rng = Rng(99);
    for i in 0..4 {
        std::fs::write(
            src.join(format!("table{i}")),
            random_bytes(&mut rng, 700_000),
        )
        .unwrap();
    }
    std::fs::write(src.join("shared/catalog"), random_bytes(&mut rng, 300_000)).unwrap();
    sb.ok(&[
        "init",
        "--encryption",
        "none",
        "--format-version",
        "1",
        "--compression",
        "none",
        "--pack-size",
        "1MiB",
    ]);
    let a = sb.backup(&[], &[&src]);
    std::fs::write(src.join("table4"), random_bytes(&mut rng, 500_000)).unwrap();
    let b = sb.backup(&[], &[&src]);
    let snaps = [a, b]
        .iter()
        .map(|v| v["snapshot_id"].as_str().unwrap()[..8].to_string())
        .collect();
    Fixture { sb, src, snaps }
}

/// The data packs, each with the source files whose bytes it holds.
fn data_packs(fx: &Fixture) -> Vec<(PathBuf, BTreeSet<String>)> {
    let sources: Vec<(String, Vec<u8>)> = [
        "table0",
        "table1",
        "table2",
        "table3",
        "table4",
        "shared/catalog",
    ]
    .iter()
    .map(|n| (n.to_string(), std::fs::read(fx.src.join(n)).unwrap()))
    .collect();
    let mut out = Vec::new();
    for p in pack_files(&fx.sb.repo()) {
        let bytes = std::fs::read(&p).unwrap();
        let entries = decode_pack(&bytes).unwrap();
        if entries.iter().any(|e| e.kind != BlobKind::Data) {
            continue;
        }
        let mut files = BTreeSet::new();
        for e in &entries {
            let raw = &bytes[(e.offset + 44) as usize..e.end() as usize];
            for (name, data) in &sources {
                if data.windows(raw.len()).any(|w| w == raw) {
                    files.insert(name.clone());
                }
            }
        }
        out.push((p, files));
    }
    out
}

fn check(sb: &Sandbox, args: &[&str]) -> (i32, Value) {
    let mut a = vec!["check", "--json"];
    a.extend_from_slice(args);
    let out = sb.cairn(&a);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    (out.status.code().unwrap(), v)
}

/// Runs `check --read-data` with and without the local cache; both must agree. Returns the
/// errors.
fn damaged(fx: &Fixture) -> Vec<Value> {
    let (code, with_cache) = check(&fx.sb, &["--read-data"]);
    std::fs::remove_dir_all(fx.sb.cache()).unwrap();
    let (code2, without) = check(&fx.sb, &["--read-data"]);
    assert_eq!(code, 1, "{with_cache}");
    assert_eq!(code2, 1);
    assert_eq!(with_cache["ok"], false);
    assert_eq!(
        with_cache["errors"], without["errors"],
        "verdict changed without the cache"
    );
    with_cache["errors"].as_array().unwrap().clone()
}

/// The files named for `snapshot` in an error.
fn affected(err: &Value, snapshot: &str) -> BTreeSet<String> {
    err["affected"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["snapshot"] == snapshot)
        .flat_map(|a| {
            a["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn clean_repository_passes() {
    let fx = fixture();
    let (code, v) = check(&fx.sb, &["--read-data"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ok"], true);
    assert!(v["errors"].as_array().unwrap().is_empty());
    assert!(v["warnings"].as_array().unwrap().is_empty());
    let s = &v["stats"];
    assert_eq!(s["packs_read"], s["packs"]);
    assert_eq!(s["blobs_read"], s["blobs"]);
    assert!(s["logical_bytes_verified"].as_u64().unwrap() > 3_000_000);
    for spec in ["latest", fx.snaps[0].as_str()] {
        assert_eq!(check(&fx.sb, &[spec]).0, 0);
    }
    // A human report, too.
    let out = fx.sb.ok(&["check"]);
    assert!(out.contains("no damage found"), "{out}");
}

#[test]
fn flipped_byte_in_a_blob() {
    let fx = fixture();
    // A chunk of a file that both snapshots contain.
    let (pack, _) = data_packs(&fx)
        .into_iter()
        .find(|(_, f)| !f.is_empty() && !f.contains("table4"))
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let e = decode_pack(&bytes).unwrap()[1];
    let raw = bytes[(e.offset + 44) as usize..e.end() as usize].to_vec();
    let owner = ["table0", "table1", "table2", "table3", "shared/catalog"]
        .into_iter()
        .find(|n| {
            let data = std::fs::read(fx.src.join(n)).unwrap();
            data.windows(raw.len()).any(|w| w == raw)
        })
        .unwrap();
    bytes[(e.offset + 44 + 10) as usize] ^= 1;
    std::fs::write(&pack, bytes).unwrap();
    // The structure is intact: only reading the data finds it.
    assert_eq!(check(&fx.sb, &[]).0, 0);
    let errors = damaged(&fx);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["kind"], "blob");
    assert!(
        errors[0]["object"]
            .as_str()
            .unwrap()
            .contains(&e.id.to_hex())
    );
    for s in &fx.snaps {
        assert_eq!(
            affected(&errors[0], s),
            BTreeSet::from([owner.to_string()]),
            "{errors:?}"
        );
    }
}

#[test]
fn flipped_byte_in_a_pack_header() {
    let fx = fixture();
    let (pack, _) = data_packs(&fx).remove(0);
    let mut bytes = std::fs::read(&pack).unwrap();
    let n = bytes.len();
    bytes[n - 12 - 30] ^= 0x80; // inside the last directory entry's id
    std::fs::write(&pack, bytes).unwrap();
    let errors = damaged(&fx);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["kind"], "pack-header");
    assert!(pack.ends_with(errors[0]["object"].as_str().unwrap()));
}

#[test]
fn truncated_pack() {
    let fx = fixture();
    let (pack, files) = data_packs(&fx).remove(0);
    let len = std::fs::metadata(&pack).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(len - 1000)
        .unwrap();
    // Found by the structure check alone.
    let (code, v) = check(&fx.sb, &[]);
    assert_eq!(code, 1);
    assert_eq!(v["errors"][0]["kind"], "pack-size");
    let errors = damaged(&fx);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let named: BTreeSet<String> = fx
        .snaps
        .iter()
        .flat_map(|s| affected(&errors[0], s))
        .collect();
    assert_eq!(named, files);
}

#[test]
fn deleted_pack() {
    let fx = fixture();
    let (pack, files) = data_packs(&fx).remove(1);
    std::fs::remove_file(&pack).unwrap();
    let errors = damaged(&fx);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["kind"], "pack-missing");
    let named: BTreeSet<String> = fx
        .snaps
        .iter()
        .flat_map(|s| affected(&errors[0], s))
        .collect();
    assert_eq!(named, files);
}

#[test]
fn a_snapshot_filter_limits_the_audit() {
    let fx = fixture();
    // A pack only the second snapshot needs (it holds nothing but table4).
    let (pack, _) = data_packs(&fx)
        .into_iter()
        .find(|(_, f)| f.len() == 1 && f.contains("table4"))
        .unwrap();
    std::fs::remove_file(&pack).unwrap();
    assert_eq!(check(&fx.sb, &["--read-data", &fx.snaps[0]]).0, 0);
    let (code, v) = check(&fx.sb, &["--read-data", &fx.snaps[1]]);
    assert_eq!(code, 1);
    assert_eq!(
        affected(&v["errors"][0], &fx.snaps[1]),
        BTreeSet::from(["table4".to_string()])
    );
    assert_eq!(check(&fx.sb, &[]).0, 1);
}

#[test]
fn renamed_pack() {
    let fx = fixture();
    let (pack, files) = data_packs(&fx).remove(0);
    let fake = "ab".repeat(32);
    let to = fx.sb.repo().join("data/ab").join(&fake);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::rename(&pack, &to).unwrap();
    let errors = damaged(&fx);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["kind"], "pack-missing");
    let named: BTreeSet<String> = fx
        .snaps
        .iter()
        .flat_map(|s| affected(&errors[0], s))
        .collect();
    assert_eq!(named, files);
    let (_, v) = check(&fx.sb, &[]);
    let warnings = v["warnings"].as_array().unwrap();
    assert!(warnings.iter().any(
        |w| w["kind"] == "unreferenced-pack" && w["object"].as_str().unwrap().ends_with(&fake)
    ));
}

#[test]
fn deleted_index_file() {
    let fx = fixture();
    // The second backup's index file lists the packs of table4 and of its new trees.
    let mut indexes: Vec<_> = std::fs::read_dir(fx.sb.repo().join("index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    indexes.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    std::fs::remove_file(indexes.last().unwrap()).unwrap();
    let errors = damaged(&fx);
    assert!(!errors.is_empty());
    // Only the second snapshot is hurt, and table4 is among what it loses.
    let first: BTreeSet<String> = errors
        .iter()
        .flat_map(|e| affected(e, &fx.snaps[0]))
        .collect();
    let second: BTreeSet<String> = errors
        .iter()
        .flat_map(|e| affected(e, &fx.snaps[1]))
        .collect();
    assert!(first.is_empty(), "{errors:?}");
    assert!(!second.is_empty(), "{errors:?}");
    let (_, v) = check(&fx.sb, &[]);
    assert!(
        v["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["kind"] == "unreferenced-pack")
    );
}

#[test]
fn corrupted_tree() {
    let fx = fixture();
    // Find the tree of `shared/`, which both snapshots share, in the metadata pack.
    let listing = fx.sb.ok(&["ls", "--json", "latest", "shared"]);
    assert!(listing.contains("catalog"));
    let mut hit = false;
    for p in pack_files(&fx.sb.repo()) {
        let mut bytes = std::fs::read(&p).unwrap();
        let entries = decode_pack(&bytes).unwrap();
        for e in entries.iter().filter(|e| e.kind == BlobKind::Tree) {
            let raw = &bytes[(e.offset + 44) as usize..e.end() as usize];
            if raw.windows(7).any(|w| w == b"catalog") {
                bytes[(e.offset + 44 + 3) as usize] ^= 0x20;
                hit = true;
                break;
            }
        }
        if hit {
            std::fs::write(&p, bytes).unwrap();
            break;
        }
    }
    assert!(hit);
    // Trees are read by the structure check.
    let (code, _) = check(&fx.sb, &[]);
    assert_eq!(code, 1);
    let errors = damaged(&fx);
    let tree_errors: Vec<&Value> = errors.iter().filter(|e| e["kind"] == "tree").collect();
    assert_eq!(tree_errors.len(), 1, "{errors:?}");
    for s in &fx.snaps {
        assert_eq!(
            affected(tree_errors[0], s),
            BTreeSet::from(["shared/".to_string()])
        );
    }
}

#[test]
fn snapshot_whose_tree_is_gone() {
    let fx = fixture();
    let snap_dir = fx.sb.repo().join("snapshots");
    let first = std::fs::read_dir(&snap_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut v: Value = serde_json::from_slice(&std::fs::read(&first).unwrap()).unwrap();
    v["tree"] = Value::String("cd".repeat(32));
    v["time"] = Value::String("2030-01-01T00:00:00Z".into());
    let bytes = format!("{v}\n");
    let id = blake3::hash(bytes.as_bytes()).to_hex().to_string();
    std::fs::write(snap_dir.join(&id), bytes).unwrap();
    let errors = damaged(&fx);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["kind"], "tree");
    assert_eq!(
        affected(&errors[0], &id[..8]),
        BTreeSet::from(["/".to_string()])
    );
}

#[test]
fn damaged_snapshot_file() {
    let fx = fixture();
    let snap_dir = fx.sb.repo().join("snapshots");
    let damaged_one = snap_dir.join(
        std::fs::read_dir(&snap_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .find(|n| n.starts_with(&fx.snaps[0]))
            .unwrap(),
    );
    std::fs::write(&damaged_one, b"{\"version\":1}").unwrap();
    let errors = damaged(&fx);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["kind"], "snapshot");
    // A check of another snapshot still runs.
    assert_eq!(check(&fx.sb, &[&fx.snaps[1]]).0, 1);
    // Damage found is not lost when the report cannot be written (a full disk under `>`):
    // the exit status and standard error still say it.
    for json in [false, true] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let args: &[&str] = if json {
            &["check", "--json"]
        } else {
            &["check"]
        };
        let out = fx.sb.command(args).stdout(full).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("cannot write to standard output"), "{err}");
        assert!(err.contains("DAMAGE FOUND: 1 errors"), "{err}");
    }
}

#[test]
fn subsets_read_every_pack_once() {
    let fx = fixture();
    let all: BTreeSet<String> = pack_files(&fx.sb.repo())
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert!(all.len() >= 4);
    let mut seen = Vec::new();
    for part in ["1/3", "2/3", "3/3"] {
        let (code, v) = check(&fx.sb, &["--read-data-subset", part]);
        assert_eq!(code, 0);
        for id in v["stats"]["packs_read_ids"].as_array().unwrap() {
            seen.push(id.as_str().unwrap().to_string());
        }
    }
    seen.sort();
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), unique.len(), "a pack was read twice");
    assert_eq!(unique, all);
    let (_, v) = check(&fx.sb, &["--read-data-subset", "50%"]);
    let n = v["stats"]["packs_read"].as_u64().unwrap() as usize;
    assert_eq!(n, all.len().div_ceil(2));
}

#[test]
fn check_that_cannot_run_exits_2() {
    let sb = Sandbox::new();
    let (code, _) = check(&sb, &[]);
    assert_eq!(code, 2);
    let fx = fixture();
    assert_eq!(check(&fx.sb, &["--read-data-subset", "4/3"]).0, 2);
    assert_eq!(check(&fx.sb, &["nosuchsnapshot"]).0, 2);
}
