//! Space on a real SQLite database: what a second backup adds when few pages changed, against
//! the compressed size of the pages that differ; and the first backup against restic and borg
//! at zstd level 3.
//!
//! Run with `./benches/sqlite_space.sh [MB]` (default 200): builds cairn, makes a database of
//! about that size with `sqlite3` (orders of about 117 bytes a row on disk: ids, customers,
//! amounts, text), backs it up, updates 1% of its rows at random and inserts 1% more, and
//! backs it up again.
//! The changed pages are counted by comparing the two copies page by page; their size is given
//! compressed with zstd level 3 page by page (the reference of the comparison) and all together.
//! cairn runs at its defaults (page-aligned chunks, frames) and, for the comparison, with
//! content-defined chunks (`--no-pages`) and in format version 2 (each chunk alone).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mb: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let cairn = PathBuf::from(std::env::var("CAIRN").expect("CAIRN: path of the cairn binary"));
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let db = w.join("src/shop.db");
    std::fs::create_dir_all(db.parent().expect("parent")).expect("mkdir");
    let rows = mb * 1_000_000 / 117;
    sqlite(
        &db,
        &format!(
            "pragma page_size=4096; pragma journal_mode=delete;
             create table orders(id integer primary key, customer text, amount real,
                                 status text, note text);
             with recursive n(i) as (select 1 union all select i + 1 from n where i < {rows})
             insert into orders(customer, amount, status, note)
             select 'customer-' || (abs(random()) % 50000), abs(random()) % 100000 / 100.0,
                    case abs(random()) % 3 when 0 then 'shipped' when 1 then 'paid'
                    else 'open' end,
                    'order note ' || hex(randomblob(24)) || ' for delivery ' || (i % 977)
             from n;"
        ),
    );
    let src = w.join("src");
    let src = src.to_str().expect("utf-8 path");
    let size = std::fs::metadata(&db).expect("db").len();
    let before = std::fs::read(&db).expect("read");

    let variants: [(&str, &[&str]); 3] = [
        ("cairn (pages, frames)", &[]),
        ("cairn --no-pages (FastCDC, frames)", &["--no-pages"]),
        (
            "cairn format 2 (FastCDC, each chunk alone)",
            &["--format-version", "2"],
        ),
    ];
    let mut first = Vec::new();
    for (i, (_, opts)) in variants.iter().enumerate() {
        let repo = w.join(format!("repo{i}"));
        let mut a = vec!["init", "--kdf-memory", "8MiB", "--kdf-iterations", "1"];
        a.extend_from_slice(opts);
        cairn_ok(&cairn, w, &repo, &a);
        cairn_ok(&cairn, w, &repo, &["backup", src]);
        first.push(files_size(&repo));
    }
    let restic = w.join("restic");
    let borg = w.join("borg");
    let peers = peer_backups(w, &restic, &borg, &db);

    // 1% of rows updated at random, 1% inserted.
    sqlite(
        &db,
        &format!(
            "update orders set amount = amount + 1, status = 'changed'
               where id in (select abs(random()) % {rows} + 1 from orders limit {});
             with recursive n(i) as (select 1 union all select i + 1 from n where i < {})
             insert into orders(customer, amount, status, note)
             select 'customer-' || (abs(random()) % 50000), 1.0, 'open',
                    'late order ' || hex(randomblob(24)) from n;",
            rows / 100,
            rows / 100
        ),
    );
    let after = std::fs::read(&db).expect("read");
    let (changed, alone, together) = changed_pages(&before, &after, 4096);

    let mut added = Vec::new();
    for i in 0..variants.len() {
        let repo = w.join(format!("repo{i}"));
        let start = files_size(&repo);
        cairn_ok(&cairn, w, &repo, &["backup", src]);
        added.push(files_size(&repo) - start);
    }

    println!(
        "SQLite database of {:.1} MB ({} rows, 4 KiB pages); then 1% of rows \
         updated at random and 1% inserted: {} of {} pages differ, {:.2} MB compressed page by \
         page with zstd level 3 ({:.2} MB all together)",
        size as f64 / 1e6,
        rows,
        changed,
        after.len() / 4096,
        alone as f64 / 1e6,
        together as f64 / 1e6
    );
    println!();
    println!(
        "| | first backup, stored | second backup, added | added / changed pages (zstd-3 each) |"
    );
    println!("|---|---|---|---|");
    for (i, (name, _)) in variants.iter().enumerate() {
        println!(
            "| {name} | {:.2} MB | {:.2} MB | {:.2} |",
            first[i] as f64 / 1e6,
            added[i] as f64 / 1e6,
            added[i] as f64 / alone as f64
        );
    }
    for (name, bytes) in peers {
        println!("| {name} | {:.2} MB | | |", bytes as f64 / 1e6);
    }
}

fn sqlite(db: &Path, sql: &str) {
    let ok = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .status()
        .expect("run sqlite3")
        .success();
    assert!(ok, "sqlite3 failed");
}

fn cairn_ok(cairn: &Path, w: &Path, repo: &Path, args: &[&str]) {
    std::fs::write(w.join("password"), "bench password\n").expect("password");
    let out = Command::new(cairn)
        .arg("--repo")
        .arg(repo)
        .arg("--cache-dir")
        .arg(w.join("cache"))
        .arg("--password-file")
        .arg(w.join("password"))
        .args(args)
        .output()
        .expect("run cairn");
    assert!(
        out.status.success(),
        "cairn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// First backups by restic and borg at zstd level 3 (restic's `auto` is zstd's default
/// level, 3), when they are installed; their repository sizes.
fn peer_backups(w: &Path, restic: &Path, borg: &Path, db: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let src = db.parent().expect("parent");
    let env = [
        ("RESTIC_PASSWORD", "bench password"),
        ("BORG_PASSPHRASE", "bench password"),
        ("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes"),
    ];
    let run = |prog: &str, args: &[&str]| {
        Command::new(prog)
            .args(args)
            .envs(env)
            .current_dir(w)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let r = restic.to_str().expect("utf-8");
    if run("restic", &["init", "--repo", r])
        && run(
            "restic",
            &[
                "backup",
                "--repo",
                r,
                "--compression",
                "auto",
                src.to_str().expect("utf-8"),
            ],
        )
    {
        out.push(("restic (zstd auto = level 3)".into(), files_size(restic)));
    }
    let b = borg.to_str().expect("utf-8");
    if run("borg", &["init", "--encryption", "none", b])
        && run(
            "borg",
            &[
                "create",
                "--compression",
                "zstd,3",
                &format!("{b}::first"),
                src.to_str().expect("utf-8"),
            ],
        )
    {
        out.push(("borg (zstd,3, unencrypted)".into(), files_size(borg)));
    }
    out
}

/// Pages that differ (the new file's extra pages count as differing), and their zstd-3 size
/// page by page and all together.
fn changed_pages(before: &[u8], after: &[u8], page: usize) -> (usize, u64, u64) {
    let mut n = 0;
    let mut alone = 0u64;
    let mut joined = Vec::new();
    for (i, p) in after.chunks(page).enumerate() {
        if before.get(i * page..i * page + p.len()) != Some(p) {
            n += 1;
            alone += zstd::bulk::compress(p, 3).expect("zstd").len() as u64;
            joined.extend_from_slice(p);
        }
    }
    let together = zstd::bulk::compress(&joined, 3).expect("zstd").len() as u64;
    (n, alone, together)
}

/// Bytes of the files under `p`.
fn files_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(p) {
        for e in entries.flatten() {
            let m = e.metadata().expect("metadata");
            total += if m.is_dir() {
                files_size(&e.path())
            } else {
                m.len()
            };
        }
    }
    total
}
