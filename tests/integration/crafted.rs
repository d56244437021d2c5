//! Hand-made hostile snapshots: nothing they name is written outside the restore target.

use cairn_engine::decode::{
    BlobKind, Compression, Content, ContentRef, PackRecord, PackWriter, Tree, encode_index,
};
use cairn_engine::{Id, Node, NodeKind, Snapshot, Summary};

use crate::common::Sandbox;

fn node(name: &[u8], kind: NodeKind, size: u64) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode: 0o644,
        mtime: 1_700_000_000,
        mtime_ns: 0,
        ctime: 1_700_000_000,
        ctime_ns: 0,
        uid: 0,
        gid: 0,
        inode: 1,
        dev: 1,
        size,
    }
}

/// Writes a repository snapshot whose root tree is `root` (plus `extra` trees), by hand.
fn plant(sb: &Sandbox, mut root: Tree, extra: Vec<Tree>) {
    let payload = b"escaped!".to_vec();
    let mut w = PackWriter::new();
    w.add(
        BlobKind::Data,
        Id::of(&payload),
        payload.len() as u32,
        Compression::None,
        &payload,
    );
    for mut t in extra {
        let b = t.encode();
        w.add(
            BlobKind::Tree,
            Id::of(&b),
            b.len() as u32,
            Compression::None,
            &b,
        );
    }
    let rb = root.encode();
    let root_id = Id::of(&rb);
    w.add(
        BlobKind::Tree,
        root_id,
        rb.len() as u32,
        Compression::None,
        &rb,
    );
    let (pid, pbytes, blobs) = w.finish();
    let hex = pid.to_hex();
    let dir = sb.repo().join("data").join(&hex[..2]);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&hex), &pbytes).unwrap();
    let index = encode_index(&[PackRecord {
        id: pid,
        len: pbytes.len() as u64,
        blobs,
    }]);
    std::fs::create_dir_all(sb.repo().join("index")).unwrap();
    std::fs::write(
        sb.repo().join("index").join(Id::of(&index).to_hex()),
        &index,
    )
    .unwrap();
    let snap = Snapshot {
        version: 1,
        time: "2026-01-01T00:00:00Z".into(),
        time_end: "2026-01-01T00:00:01Z".into(),
        hostname: "crafted".into(),
        username: "mallory".into(),
        paths: vec!["/x".into()],
        stdin: false,
        name: None,
        tags: vec![],
        tree: root_id,
        parent: None,
        summary: Summary::default(),
        pg: None,
        root: None,
        partial: false,
        keep_forever: None,
    };
    let sb_bytes = snap.encode();
    std::fs::create_dir_all(sb.repo().join("snapshots")).unwrap();
    std::fs::write(
        sb.repo().join("snapshots").join(Id::of(&sb_bytes).to_hex()),
        sb_bytes,
    )
    .unwrap();
}

fn payload_file(name: &[u8]) -> Node {
    let id = Id::of(b"escaped!");
    let content = Content {
        depth: 0,
        refs: vec![ContentRef { id, len: 8 }],
    };
    node(name, NodeKind::File(content), 8)
}

fn files_named_anywhere(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            files_named_anywhere(&p, out);
        } else if m.is_file() && std::fs::read(&p).unwrap() == b"escaped!" {
            out.push(p);
        }
    }
}

#[test]
fn dot_dot_names_are_refused() {
    let sb = Sandbox::new();
    sb.ok(&["init", "--encryption", "none", "--format-version", "1"]);
    plant(
        &sb,
        Tree {
            nodes: vec![payload_file(b"..")],
        },
        vec![],
    );
    let target = sb.path("deep/target");
    let line = sb.fails(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(line.contains("not a safe path component"), "{line}");
    let mut found = Vec::new();
    files_named_anywhere(sb.dir.path(), &mut found);
    assert!(found.iter().all(|p| p.starts_with(sb.repo())), "{found:?}");
}

#[test]
fn duplicate_names_cannot_smuggle_a_symlink() {
    let sb = Sandbox::new();
    sb.ok(&["init", "--encryption", "none", "--format-version", "1"]);
    let outside = sb.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let mut sub = Tree {
        nodes: vec![payload_file(b"pwned")],
    };
    let sub_id = Id::of(&sub.encode());
    // Encoding sorts by name; the decoder must refuse the repeated name.
    let root = Tree {
        nodes: vec![
            node(
                b"a",
                NodeKind::Symlink(outside.to_str().unwrap().as_bytes().to_vec()),
                0,
            ),
            node(b"a", NodeKind::Dir(sub_id), 0),
        ],
    };
    plant(&sb, root, vec![sub]);
    let target = sb.path("target");
    let line = sb.fails(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(line.contains("out of order or repeated"), "{line}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn symlinks_are_restored_but_never_followed() {
    let sb = Sandbox::new();
    sb.ok(&["init", "--encryption", "none", "--format-version", "1"]);
    let outside = sb.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let root = Tree {
        nodes: vec![
            node(
                b"link",
                NodeKind::Symlink(outside.to_str().unwrap().as_bytes().to_vec()),
                0,
            ),
            payload_file(b"plain"),
        ],
    };
    plant(&sb, root, vec![]);
    let target = sb.path("target");
    sb.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(std::fs::read_link(target.join("link")).unwrap(), outside);
    assert_eq!(std::fs::read(target.join("plain")).unwrap(), b"escaped!");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn check_attributes_damage_reached_by_exponentially_many_paths() {
    let sb = Sandbox::new();
    sb.ok(&["init", "--encryption", "none", "--format-version", "1"]);
    // At the bottom, a file whose chunk is stored nowhere; above it, 60 trees each naming the
    // next twice: 2^60 paths reach that file, over 61 distinct trees.
    let missing = Content {
        depth: 0,
        refs: vec![ContentRef {
            id: Id::of(b"never stored"),
            len: 12,
        }],
    };
    let mut t = Tree {
        nodes: vec![node(b"lost", NodeKind::File(missing), 12)],
    };
    let mut trees = Vec::new();
    for _ in 0..60 {
        let id = Id::of(&t.encode());
        trees.push(t);
        t = Tree {
            nodes: vec![
                node(b"a", NodeKind::Dir(id), 0),
                node(b"b", NodeKind::Dir(id), 0),
            ],
        };
    }
    plant(&sb, t, trees);
    let out = sb.cairn(&["check", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = crate::common::last_json(&String::from_utf8_lossy(&out.stdout));
    let affected = &v["errors"][0]["affected"][0];
    let named = affected["files"].as_array().unwrap();
    assert!(!named.is_empty(), "{v}");
    assert!(named[0].as_str().unwrap().ends_with("/a/a/lost"), "{v}");
    assert_eq!(
        named.len() as u64 + affected["more_files"].as_u64().unwrap(),
        1 << 60,
        "{v}"
    );
}
