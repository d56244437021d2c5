//! PostgreSQL end to end, with the real server this machine ships (`/usr/lib/postgresql/15`,
//! or `CAIRN_PG_BIN`): a cluster in a scratch directory, run as the `postgres` user on a
//! loopback port, archiving its WAL with cairn; an online base backup under pgbench load;
//! point-in-time and latest restores checked row for row and with pg_amcheck; the space WAL
//! and a second base backup take; and a base backup killed half way.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::last_json;

/// A PostgreSQL installation and the user to run it as.
struct Pg {
    bin: PathBuf,
    uid: u32,
    gid: u32,
    dir: tempfile::TempDir,
    port: u16,
    cairn: PathBuf,
}

fn find() -> Option<Pg> {
    let bin = std::env::var_os("CAIRN_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    let id = |flag: &str| {
        Command::new("id")
            .args([flag, "postgres"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u32>()
                    .ok()
            })
    };
    let (Some(uid), Some(gid)) = (id("-u"), id("-g")) else {
        return skip("there is no postgres user");
    };
    if !bin.join("postgres").exists() {
        return skip(&format!(
            "there is no PostgreSQL server in {}",
            bin.display()
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The binary is copied where the postgres user can run it (the build directory may be
    // private to root).
    let cairn = dir.path().join("cairn");
    std::fs::copy(env!("CARGO_BIN_EXE_cairn"), &cairn).unwrap();
    std::fs::set_permissions(&cairn, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pg = Pg {
        bin,
        uid,
        gid,
        dir,
        port,
        cairn,
    };
    for d in ["repo", "cache", "scratch"] {
        std::fs::create_dir(pg.path(d)).unwrap();
    }
    // The repository's password, where the server's archive and restore commands read it
    // (readable by the postgres user only, once chowned below).
    std::fs::write(pg.path("password"), format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(pg.path("password"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new("chown")
        .args(["-R", &format!("{uid}:{gid}")])
        .arg(pg.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    Some(pg)
}

/// The repository's password: the server's commands read it from a file.
const PASSWORD: &str = "a PostgreSQL archive password";

/// Watches every process's command line (what `ps` shows) until dropped: the password must
/// never be among them. Counts the `archive-wal` and `fetch-wal` runs it saw.
struct CommandLines {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<(usize, usize, Vec<String>)>>,
}

impl CommandLines {
    fn watch() -> CommandLines {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut archive, mut fetch, mut leaks) = (0, 0, Vec::new());
            let mut seen = std::collections::HashSet::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
                        continue;
                    };
                    let line = String::from_utf8_lossy(&cmd).replace('\0', " ");
                    if line.contains(PASSWORD) {
                        leaks.push(line.clone());
                    }
                    if seen.insert((e.file_name(), line.clone())) {
                        archive += usize::from(line.contains(" archive-wal "));
                        fetch += usize::from(line.contains(" fetch-wal "));
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (archive, fetch, leaks)
        });
        CommandLines {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (usize, usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Every file below `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    crate::common::files_under(dir)
        .into_iter()
        .filter(|f| std::fs::read(f).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)))
        .collect()
}

fn skip(why: &str) -> Option<Pg> {
    assert!(
        std::env::var_os("CAIRN_REQUIRE_PG").is_none(),
        "CAIRN_REQUIRE_PG is set but {why}"
    );
    eprintln!("\n*** SKIPPING the PostgreSQL test: {why} ***\n");
    None
}

impl Pg {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A command run as the postgres user, talking to this cluster by default.
    fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        for k in crate::common::FOREIGN_ENV {
            c.env_remove(k);
        }
        c.uid(self.uid)
            .gid(self.gid)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("PGHOST", self.dir.path())
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", "postgres")
            .env("PGDATABASE", "postgres")
            .env("CAIRN_REPO", self.path("repo"))
            .env("CAIRN_CACHE_DIR", self.path("cache"))
            .env("CAIRN_PASSWORD_FILE", self.path("password"));
        c
    }

    fn tool(&self, name: &str) -> Command {
        self.cmd(self.bin.join(name))
    }

    fn ok(&self, mut c: Command) -> String {
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{c:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn cairn(&self, args: &[&str]) -> Output {
        self.cmd(&self.cairn).args(args).output().unwrap()
    }

    fn cairn_ok(&self, args: &[&str]) -> String {
        let mut c = self.cmd(&self.cairn);
        c.args(args);
        self.ok(c)
    }

    fn sql(&self, query: &str) -> String {
        let mut c = self.tool("psql");
        c.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", query]);
        self.ok(c).trim().to_string()
    }

    fn initdb(&self, data: &Path) {
        let mut c = self.tool("initdb");
        c.args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(data);
        self.ok(c);
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{dir}'\n\
             wal_level = replica\narchive_mode = on\n\
             archive_command = '{cairn} --repo {dir}/repo --cache-dir {dir}/cache --password-file {dir}/password pg archive-wal %p %f'\n\
             fsync = off\nmax_wal_size = 256MB\n",
            port = self.port,
            dir = self.dir.path().display(),
            cairn = self.cairn.display(),
        );
        let p = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&p).unwrap();
        text += &conf;
        std::fs::write(&p, text).unwrap();
    }

    fn start(&self, data: &Path) {
        let mut c = self.tool("pg_ctl");
        c.args(["-w", "-t", "120", "-l"])
            .arg(self.path("server.log"))
            .arg("-D")
            .arg(data)
            .arg("start");
        let out = c.output().unwrap();
        if !out.status.success() {
            let log = std::fs::read_to_string(self.path("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "PostgreSQL did not start on {}: {}",
                data.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }

    fn stop(&self, data: &Path) {
        let mut c = self.tool("pg_ctl");
        c.args(["-w", "-m", "fast", "-D"]).arg(data).arg("stop");
        self.ok(c);
    }

    /// Waits until the server has left recovery (after a restore).
    fn wait_promoted(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.sql("SELECT pg_is_in_recovery()") != "f" {
            assert!(Instant::now() < deadline, "recovery did not finish");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Switches to a new WAL segment and waits until the finished one is archived.
    fn switch_and_wait(&self) {
        let done = self.sql("SELECT pg_walfile_name(pg_switch_wal())");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let last = self.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
            if last.len() == 24 && last >= done {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{done} was not archived (last: {last}); server log: {}",
                std::fs::read_to_string(self.path("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The accounts' balance total and row count.
    fn balances(&self) -> String {
        self.sql("SELECT sum(abalance) || ' ' || count(*) FROM pgbench_accounts")
    }

    fn pgbench(&self, args: &[&str]) {
        let mut c = self.tool("pgbench");
        c.args(args);
        self.ok(c);
    }

    /// Runs `cairn pg restore TARGET-ARGS` into `name`, turns archiving off there unless
    /// `archive` (a trial restore must not archive into the production archive), starts the
    /// server and waits until recovery is over. Returns the data directory.
    fn restore_and_start(&self, name: &str, target: &[&str], archive: bool) -> PathBuf {
        let dir = self.path(name);
        let mut args = vec!["pg", "restore", "--target", dir.to_str().unwrap()];
        args.extend_from_slice(target);
        self.cairn_ok(&args);
        // The server gets the password file's path, never the password.
        assert_eq!(
            files_holding(&dir, PASSWORD.as_bytes()),
            Vec::<PathBuf>::new()
        );
        if !archive {
            append(&dir.join("postgresql.auto.conf"), "archive_mode = off\n");
        }
        self.start(&dir);
        self.wait_promoted();
        dir
    }

    fn repo_bytes(&self) -> u64 {
        fn size(p: &Path) -> u64 {
            std::fs::read_dir(p).map_or(0, |rd| {
                rd.flatten()
                    .map(|e| {
                        let m = e.metadata().unwrap();
                        if m.is_dir() { size(&e.path()) } else { m.len() }
                    })
                    .sum()
            })
        }
        size(&self.path("repo"))
    }
}

#[test]
fn postgres_backup_archive_and_point_in_time_restore() {
    let Some(pg) = find() else { return };
    let command_lines = CommandLines::watch();
    let data = pg.path("data");
    pg.initdb(&data);
    pg.cairn_ok(&["init"]);
    pg.start(&data);
    pg.pgbench(&["-i", "-s", "8", "-q"]);

    // 1. A base backup while pgbench writes.
    let mut load = pg.tool("pgbench");
    load.args(["-c", "2", "-T", "3", "-R", "50", "-n"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut load = load.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let first =
        last_json(&pg.cairn_ok(&["pg", "backup", "--pgdata", data.to_str().unwrap(), "--json"]));
    assert!(load.wait().unwrap().success());
    let first_added = first["bytes_added"].as_u64().unwrap();
    pg.pgbench(&["-c", "1", "-t", "100", "-n"]);
    let at_t1 = pg.balances();
    let lsn1 = pg.sql("SELECT pg_current_wal_lsn()");
    let t1 =
        pg.sql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')");
    std::thread::sleep(Duration::from_millis(1200));
    pg.pgbench(&["-c", "1", "-t", "100", "-n"]);
    pg.switch_and_wait();

    // 4a. A second base backup adds a small fraction of the first.
    let second =
        last_json(&pg.cairn_ok(&["pg", "backup", "--pgdata", data.to_str().unwrap(), "--json"]));
    let second_added = second["bytes_added"].as_u64().unwrap();
    eprintln!(
        "base backups: the first added {first_added} bytes, the second {second_added} ({:.1}%)",
        100.0 * second_added as f64 / first_added as f64
    );
    assert!(
        second_added * 5 < first_added,
        "{second_added} vs {first_added}"
    );
    // It adds at most 1.3 times the pages that differ between the two copies, each
    // compressed alone at zstd level 3 (page-aligned chunks: format-spec/pages.md).
    let copies: Vec<PathBuf> = [&first, &second]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let dir = pg.path(&format!("copy{i}"));
            let id = b["snapshot_id"].as_str().unwrap();
            pg.cairn_ok(&["restore", id, "--target", dir.to_str().unwrap()]);
            dir
        })
        .collect();
    let (pages, changed, compressed) = changed_pages(&copies[0], &copies[1]);
    eprintln!(
        "second base backup: {changed} of {pages} pages differ, {compressed} bytes compressed \
         page by page; it added {second_added} ({:.2} times)",
        second_added as f64 / compressed as f64
    );
    assert!(
        second_added * 10 <= compressed * 13,
        "{second_added} added for {compressed} bytes of changed pages"
    );
    pg.pgbench(&["-c", "1", "-t", "200", "-n"]);
    let latest = pg.balances();
    pg.switch_and_wait();

    // 4b. WAL of a quiet server: 100 segments, each switched after one small write.
    let before = pg.repo_bytes();
    pg.sql("CREATE TABLE quiet (i int)");
    let started = Instant::now();
    for i in 0..100 {
        pg.sql(&format!("INSERT INTO quiet VALUES ({i})"));
        pg.switch_and_wait();
    }
    let per_segment = started.elapsed().as_secs_f64() / 100.0;
    let wal_bytes = pg.repo_bytes() - before;
    eprintln!(
        "100 WAL segments of a quiet server: {wal_bytes} bytes in the repository ({:.3}% of 100 x 16 MiB); {:.0} ms per segment from switch to archived",
        100.0 * wal_bytes as f64 / (100.0 * 16.0 * 1048576.0),
        per_segment * 1000.0
    );
    assert!(wal_bytes < 100 * (16 << 20) / 50, "{wal_bytes}");

    // The archive is continuous and listed; check verifies it.
    let list = last_json(&pg.cairn_ok(&["pg", "list", "--json"]));
    assert_eq!(list["backups"].as_array().unwrap().len(), 2, "{list}");
    assert!(
        list["backups"][0]["consistent"].as_bool().unwrap(),
        "{list}"
    );
    assert_eq!(
        list["timelines"][0]["gaps"].as_array().unwrap().len(),
        0,
        "{list}"
    );
    pg.cairn_ok(&["check", "--read-data"]);

    // Archiving is idempotent, and refuses other contents under an archived name.
    let archived = list["timelines"][0]["last"].as_str().unwrap().to_string();
    let copy = pg.path("scratch/seg");
    let fetched = pg.cairn(&["pg", "fetch-wal", &archived, copy.to_str().unwrap()]);
    assert!(fetched.status.success());
    let again = pg.cairn(&["pg", "archive-wal", copy.to_str().unwrap(), &archived]);
    assert!(again.status.success(), "{again:?}");
    std::fs::write(&copy, b"not the same").unwrap();
    let clash = pg.cairn(&["pg", "archive-wal", copy.to_str().unwrap(), &archived]);
    assert_eq!(clash.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&clash.stderr).contains("different contents"));
    let missing = pg.cairn(&[
        "pg",
        "fetch-wal",
        "0000000100000000000000FE",
        copy.to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(1));

    // 2. Lose the cluster; recover to T1.
    pg.stop(&data);
    std::fs::remove_dir_all(&data).unwrap();
    let r1 = pg.restore_and_start("restored-t1", &["--time", &t1], false);
    assert_eq!(pg.balances(), at_t1, "the table at T1");
    let mut amcheck = pg.tool("pg_amcheck");
    amcheck.args(["--install-missing", "--all", "--heapallindexed"]);
    pg.ok(amcheck);
    pg.stop(&r1);

    // 2b. The same point named by its LSN.
    let r1b = pg.restore_and_start("restored-lsn", &["--lsn", &lsn1], false);
    assert_eq!(pg.balances(), at_t1, "the table at the LSN of T1");
    pg.stop(&r1b);

    // 3. Everything archived.
    let r2 = pg.restore_and_start("restored-latest", &["--latest"], true);
    assert_eq!(pg.balances(), latest, "the table at the end of the archive");
    assert_eq!(pg.sql("SELECT count(*) FROM quiet"), "100");

    // 5. A base backup killed half way: the server ends its backup, no snapshot appears.
    let snapshots = || {
        let v: Vec<serde_json::Value> =
            serde_json::from_str(pg.cairn_ok(&["list", "--json"]).trim()).unwrap();
        v.len()
    };
    let in_backup = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cairn' \
                     AND query LIKE '%pg_backup_start%'";
    let mut killed = None;
    // A backup that outruns the polling is simply tried again.
    for _ in 0..5 {
        let before = snapshots();
        let mut child = pg
            .cmd(&pg.cairn)
            .args(["pg", "backup", "--pgdata", r2.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while pg.sql(in_backup) != "1" && child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the backup never started");
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            child.wait().unwrap();
            killed = Some(before);
            break;
        }
    }
    let before = killed.expect("every backup finished before it could be killed");
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cairn'") != "0" {
        assert!(
            Instant::now() < deadline,
            "the killed backup's session stayed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(pg.path("server.log")).unwrap();
    assert!(
        log.contains("aborting backup due to backend exiting before pg_backup_stop was called"),
        "{log}"
    );
    assert_eq!(snapshots(), before);
    pg.cairn_ok(&["check"]);
    // A base backup that cannot have the repository (a prune holds it) gives up before the
    // server enters backup mode: no backup is aborted when it exits.
    let aborted = |log: &str| {
        log.matches("aborting backup due to backend exiting")
            .count()
    };
    let aborted_before = aborted(&log);
    let held = pg.path("repo/locks").join("f".repeat(64));
    // A lock of a version this cairn cannot read counts as held, and is never taken as stale.
    std::fs::write(&held, r#"{"version": 99}"#).unwrap();
    let out = pg.cairn(&[
        "--lock-wait",
        "1s",
        "pg",
        "backup",
        "--pgdata",
        r2.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("locked"), "{err}");
    std::fs::remove_file(&held).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let log = std::fs::read_to_string(pg.path("server.log")).unwrap();
    assert_eq!(aborted(&log), aborted_before, "{log}");
    // And a new base backup works.
    pg.cairn_ok(&["pg", "backup", "--pgdata", r2.to_str().unwrap()]);
    pg.stop(&r2);

    // Retention: deleting the first base backup expires the WAL only it needed; prune keeps
    // the rest, which still restores.
    let first_id = first["snapshot_id"].as_str().unwrap();
    let second_start = list["backups"][1]["pg"]["start_wal"].as_str().unwrap();
    let deleted = pg.cairn_ok(&["delete", &first_id[..8], "--prune"]);
    assert!(deleted.contains("expired"), "{deleted}");
    let after = last_json(&pg.cairn_ok(&["pg", "list", "--json"]));
    assert_eq!(after["timelines"][0]["first"], second_start, "{after}");
    assert!(
        after["backups"][0]["consistent"].as_bool().unwrap(),
        "{after}"
    );
    pg.cairn_ok(&["check", "--read-data"]);
    let second_id = list["backups"][1]["id"].as_str().unwrap();
    let r3 = pg.restore_and_start(
        "restored-after-retention",
        &["--latest", "--snapshot", second_id],
        false,
    );
    assert_eq!(pg.balances(), latest);
    pg.stop(&r3);

    // Through all of it, no command line held the password, while the server archived and
    // fetched WAL with it.
    let (archived, fetched, leaks) = command_lines.finish();
    assert!(leaks.is_empty(), "{leaks:?}");
    assert!(
        archived > 0 && fetched > 0,
        "saw {archived} archive-wal and {fetched} fetch-wal runs"
    );
    eprintln!(
        "command lines watched: {archived} archive-wal and {fetched} fetch-wal runs, no password"
    );
}

/// Pages (8 KiB) of the files of `b`, how many differ from the same page of the same file
/// in `a` (or are new), and the bytes those compress to with zstd level 3, each alone.
fn changed_pages(a: &Path, b: &Path) -> (u64, u64, u64) {
    const PAGE: usize = 8192;
    let (mut pages, mut changed, mut compressed) = (0, 0, 0);
    let mut dirs = vec![b.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                dirs.push(e.path());
                continue;
            }
            if !t.is_file() {
                continue;
            }
            let new = std::fs::read(e.path()).unwrap();
            let rel = e.path().strip_prefix(b).unwrap().to_path_buf();
            let old = std::fs::read(a.join(rel)).unwrap_or_default();
            for (i, page) in new.chunks(PAGE).enumerate() {
                pages += 1;
                if old.get(i * PAGE..(i * PAGE + page.len())) != Some(page) {
                    changed += 1;
                    compressed += zstd::bulk::compress(page, 3).unwrap().len() as u64;
                }
            }
        }
    }
    (pages, changed, compressed)
}

fn append(p: &Path, text: &str) {
    let mut s = std::fs::read_to_string(p).unwrap();
    s += text;
    std::fs::write(p, s).unwrap();
}

#[test]
fn a_stopped_cluster_restored_by_plain_commands_starts_as_it_is() {
    let Some(pg) = find() else { return };
    let data = pg.path("data");
    pg.initdb(&data);
    append(&data.join("postgresql.auto.conf"), "archive_mode = off\n");
    pg.start(&data);
    pg.sql("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g");
    pg.stop(&data);
    pg.cairn_ok(&["init"]);
    pg.cairn_ok(&["backup", data.to_str().unwrap()]);

    // Restored by root into an empty directory root made 0755: the data directory's own mode
    // (0700) and owner (postgres) come from the snapshot, or the server refuses to start.
    let target = pg.path("restored");
    std::fs::create_dir(&target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut restore = Command::new(env!("CARGO_BIN_EXE_cairn"));
    for k in crate::common::FOREIGN_ENV {
        restore.env_remove(k);
    }
    let out = restore
        .args(["restore", "latest", "--target", target.to_str().unwrap()])
        .env("CAIRN_REPO", pg.path("repo"))
        .env("CAIRN_CACHE_DIR", pg.path("root-cache"))
        .env("CAIRN_PASSWORD_FILE", pg.path("password"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    pg.start(&target);
    assert_eq!(pg.sql("SELECT count(*) FROM t"), "1000");
    pg.stop(&target);
}
