//! Helpers of the webhook integration tests: the Python receiver
//! (`tests/receivers/webhook_receiver.py`, standard library only, so it verifies signatures
//! independently of the connector) as a child process, and its recorded requests.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Signing secrets of the tests (24 and 32 random bytes).
pub const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const SECRET_B: &str = "whsec_3q2+7wAAAAB3ZWJob29rLXRlc3Qtc2VjcmV0LWI=";
pub const SECRET_C: &str = "whsec_c29tZXRoaW5nIGVsc2UgZW50aXJlbHkgISEhISE=";

/// The receiver script.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/receivers/webhook_receiver.py")
}

/// One request the receiver recorded.
#[derive(Debug, Clone)]
pub struct Record {
    /// Arrival, Unix seconds.
    pub t: f64,
    /// `webhook-id`.
    pub id: String,
    /// Whether the signature verified.
    pub verified: bool,
    /// Why not.
    pub error: Option<String>,
    /// The status it answered.
    pub status: u16,
    /// 1 for the first request with this id.
    pub attempt: u32,
    /// Request headers, lowercase names.
    pub headers: BTreeMap<String, String>,
    /// Raw body.
    pub body: String,
}

impl Record {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON: {e}: {}", self.body))
    }
}

/// A running receiver.
pub struct Receiver {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where it records requests.
    pub log: PathBuf,
    /// Its URL.
    pub url: String,
}

impl Receiver {
    /// Starts `webhook_receiver.py` on a free port, accepting `secrets`, with extra `args`
    /// (`--mode flaky --k 2` ...). Waits until it listens unless `--start-after` is given.
    pub fn start(dir: &Path, name: &str, secrets: &[&str], args: &[&str]) -> Receiver {
        Self::start_on(dir, name, super_free_port(), secrets, args)
    }

    /// Like [`Receiver::start`] on a given port.
    pub fn start_on(
        dir: &Path,
        name: &str,
        port: u16,
        secrets: &[&str],
        args: &[&str],
    ) -> Receiver {
        let log = dir.join(format!("{name}.requests.jsonl"));
        let mut command = Command::new("python3");
        command
            .arg(script())
            .args(["--port", &port.to_string(), "--log"])
            .arg(&log)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for secret in secrets {
            command.args(["--secret", secret]);
        }
        let child = command.spawn().expect("python3 runs the receiver");
        let receiver = Receiver {
            child: Some(child),
            port,
            log,
            url: format!("http://127.0.0.1:{port}/hooks/{name}"),
        };
        if !args.contains(&"--start-after") {
            let started = std::time::Instant::now();
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "receiver {name} did not start"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        receiver
    }

    /// Every request recorded so far (a line being written is left for later).
    pub fn records(&self) -> Vec<Record> {
        read_records(&self.log)
    }

    /// The distinct ids answered 2xx.
    pub fn delivered_ids(&self) -> std::collections::HashSet<String> {
        self.records()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .map(|r| r.id)
            .collect()
    }

    /// Stops the receiver.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn super_free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Reads a receiver's JSON-lines log.
pub fn read_records(path: &Path) -> Vec<Record> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("bad line in {}: {e}: {line}", path.display()));
            Record {
                t: v["t"].as_f64().unwrap(),
                id: v["id"].as_str().unwrap_or_default().to_string(),
                verified: v["verified"].as_bool().unwrap(),
                error: v["error"].as_str().map(str::to_string),
                status: v["status"].as_u64().unwrap() as u16,
                attempt: v["attempt"].as_u64().unwrap() as u32,
                headers: v["headers"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect(),
                body: v["body"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}

/// Records grouped by webhook-id, in arrival order.
pub fn by_id(records: &[Record]) -> HashMap<String, Vec<Record>> {
    let mut map: HashMap<String, Vec<Record>> = HashMap::new();
    for r in records {
        map.entry(r.id.clone()).or_default().push(r.clone());
    }
    for list in map.values_mut() {
        list.sort_by(|a, b| a.t.total_cmp(&b.t));
    }
    map
}

/// Writes `secret` to `dir/name` and returns the path.
pub fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path
}

/// POSTs `body` with `headers` to 127.0.0.1:`port`; returns the status.
pub fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Makes a test CA and a server certificate for 127.0.0.1 signed by it, with the `openssl`
/// command; returns (ca.pem, server chain, server key).
pub fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=polaris-bridge test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}
