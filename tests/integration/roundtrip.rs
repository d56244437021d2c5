//! Random directory trees restore byte-identical, with modes, mtimes and symlinks.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use proptest::prelude::*;

use crate::common::{Rng, Sandbox, snapshot_of};

#[derive(Debug, Clone)]
enum Spec {
    File { size: usize, mode: u32, mtime: i64 },
    Dir(Vec<(String, Spec)>),
    Link(String),
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_][a-zA-Z0-9_. -]{0,12}".prop_filter("not dots", |n| n != "." && n != "..")
}

fn file() -> impl Strategy<Value = Spec> {
    let size = prop_oneof![
        3 => Just(0usize),
        5 => 0usize..5_000,
        3 => 5_000usize..200_000,
        1 => 1_000_000usize..4_000_000,
    ];
    let mode = prop_oneof![Just(0o644u32), Just(0o600), Just(0o755), Just(0o400)];
    (size, mode, 0i64..2_000_000_000).prop_map(|(size, mode, mtime)| Spec::File {
        size,
        mode,
        mtime,
    })
}

fn spec() -> impl Strategy<Value = Spec> {
    let leaf = prop_oneof![
        8 => file(),
        1 => "[a-z./]{1,20}".prop_map(Spec::Link),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop::collection::btree_map(name(), inner, 0..6)
            .prop_map(|m| Spec::Dir(m.into_iter().collect()))
    })
}

fn build(path: &Path, spec: &Spec, rng: &mut Rng) {
    match spec {
        Spec::File { size, mode, mtime } => {
            let mut data = Vec::with_capacity(*size);
            while data.len() < *size {
                let no = rng.below(1000);
                data.extend_from_slice(&rng.page(8192, no));
            }
            data.truncate(*size);
            std::fs::write(path, &data).unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode)).unwrap();
            let t = filetime::FileTime::from_unix_time(*mtime, 123_456_789);
            filetime::set_file_mtime(path, t).unwrap();
        }
        Spec::Dir(children) => {
            std::fs::create_dir(path).unwrap();
            for (n, c) in children {
                build(&path.join(n), c, rng);
            }
        }
        Spec::Link(target) => std::os::unix::fs::symlink(target, path).unwrap(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_round_trip(children in prop::collection::btree_map(name(), spec(), 0..6), seed in 1u64..u64::MAX) {
        let sb = Sandbox::new();
        let src = sb.path("src");
        build(&src, &Spec::Dir(children.into_iter().collect()), &mut Rng(seed));
        sb.ok(&["init"]);
        let summary = sb.backup(&[], &[&src]);
        let id = summary["snapshot_id"].as_str().unwrap().to_string();
        let target = sb.path("restored");
        sb.ok(&["restore", &id, "--target", target.to_str().unwrap()]);
        prop_assert_eq!(snapshot_of(&src), snapshot_of(&target));
    }
}

#[test]
fn empty_files_dirs_and_includes() {
    let sb = Sandbox::new();
    let src = sb.path("data");
    for db in ["db1", "db2"] {
        for part in ["2024-01-01", "2024-01-02", "2024-02-01"] {
            let d = src.join(db).join("orders").join(part);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("data.bin"), format!("{db}/{part}").repeat(1000)).unwrap();
        }
    }
    std::fs::create_dir_all(src.join("empty-dir")).unwrap();
    std::fs::write(src.join("empty-file"), b"").unwrap();
    sb.ok(&["init"]);
    sb.backup(&["--name", "nightly"], &[&src]);

    let t = sb.path("jan");
    sb.ok(&[
        "restore",
        "nightly",
        "--target",
        t.to_str().unwrap(),
        "--include",
        "db1/*/2024-01-*",
    ]);
    let got: Vec<String> = snapshot_of(&t)
        .keys()
        .map(|p| p.display().to_string())
        .filter(|p| p.ends_with(".bin"))
        .collect();
    assert_eq!(
        got,
        vec![
            "db1/orders/2024-01-01/data.bin",
            "db1/orders/2024-01-02/data.bin"
        ]
    );

    // One database restored under a new name.
    let t = sb.path("db1_restored");
    sb.ok(&["restore", "latest:db1", "--target", t.to_str().unwrap()]);
    assert_eq!(snapshot_of(&src.join("db1")), snapshot_of(&t));

    let t = sb.path("all");
    sb.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(snapshot_of(&src), snapshot_of(&t));

    let listing = sb.ok(&["ls", "latest", "db2/orders"]);
    assert!(
        listing.contains("db2/orders/2024-02-01/data.bin"),
        "{listing}"
    );
    assert!(!listing.contains("db1"), "{listing}");
}

#[test]
fn a_producer_that_fails_or_an_empty_stream_saves_no_snapshot() {
    let sb = Sandbox::new();
    sb.ok(&["init"]);
    // A producer that dies after writing 10 MiB: its status is named, nothing is saved.
    let err = sb.fails(&[
        "backup",
        "--stdin-from-command",
        "--stdin-name",
        "shop.sql",
        "--",
        "sh",
        "-c",
        "head -c 10485760 /dev/urandom; exit 3",
    ]);
    assert!(err.contains("exited with status 3"), "{err}");
    assert!(
        err.contains("'head -c 10485760 /dev/urandom; exit 3'"),
        "{err}"
    );
    let err = sb.fails(&[
        "backup",
        "--stdin-from-command",
        "--stdin-name",
        "x",
        "--",
        "sh",
        "-c",
        "kill -9 $$",
    ]);
    assert!(err.contains("killed by signal 9"), "{err}");
    // An empty stream (standard input here is empty) is refused unless allowed.
    let err = sb.fails(&["backup", "--stdin", "--stdin-name", "empty.sql"]);
    assert!(err.contains("empty"), "{err}");
    assert!(sb.ok(&["list"]).contains("0 snapshots"));
    sb.ok(&[
        "backup",
        "--stdin",
        "--stdin-name",
        "empty.sql",
        "--allow-empty",
    ]);
    // A producer that succeeds is backed up byte for byte.
    let src = sb.path("dump.bin");
    let mut rng = Rng(7);
    let dump: Vec<u8> = (0..64).flat_map(|i| rng.page(8192, i)).collect();
    std::fs::write(&src, &dump).unwrap();
    sb.ok(&[
        "backup",
        "--stdin-from-command",
        "--stdin-name",
        "db.sql",
        "--",
        "cat",
        src.to_str().unwrap(),
    ]);
    let t = sb.path("out");
    sb.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(std::fs::read(t.join("db.sql")).unwrap(), dump);
    assert!(sb.ok(&["list"]).contains("2 snapshots"));
}

#[test]
fn stdin_stream_round_trips() {
    use std::io::Write;
    let sb = Sandbox::new();
    sb.ok(&["init"]);
    let mut rng = Rng(42);
    let mut dump = Vec::new();
    for i in 0..300 {
        dump.extend_from_slice(&rng.page(8192, i));
    }
    let mut child = sb
        .command(&["backup", "--stdin", "--stdin-name", "db.sql", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&dump).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v = crate::common::last_json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["bytes_read"], dump.len() as u64);
    let t = sb.path("out");
    sb.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(std::fs::read(t.join("db.sql")).unwrap(), dump);
}
