//! Helpers of the purge tests: pyiceberg tables (tests/python/make_tables.py), the
//! S3-compatible server (tests/s3/s3.sh, moto behind a counting proxy), and listings.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use polaris_bridge_purge::object_store::{self, ObjectStore};
use polaris_bridge_purge::safety::ObjectUri;
use polaris_bridge_purge::store::Stores;
use polaris_bridge_purge::PurgeConfig;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python venv with pyiceberg (made once, cached).
pub fn venv() -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let out = Command::new(root().join("tests/python/setup.sh"))
            .output()
            .expect("run tests/python/setup.sh");
        assert!(
            out.status.success(),
            "tests/python/setup.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

/// A table made by make_tables.py.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Table {
    pub name: String,
    pub location: String,
    pub metadata_location: String,
    pub table_uuid: String,
}

/// The S3-compatible server: `S3_ENDPOINT` from tests/run.sh, else one started for this
/// test binary (stopped when the process exits... by the OS; moto dies with its group).
pub struct S3 {
    pub endpoint: String,
    pub request_log: PathBuf,
}

pub fn s3() -> &'static S3 {
    static S3: OnceLock<S3> = OnceLock::new();
    S3.get_or_init(|| {
        if let Ok(endpoint) = std::env::var("S3_ENDPOINT") {
            return S3 {
                endpoint,
                request_log: std::env::var("S3_REQUEST_LOG")
                    .expect("S3_REQUEST_LOG with S3_ENDPOINT")
                    .into(),
            };
        }
        let dir = std::env::temp_dir().join(format!("pb-s3-{}", std::process::id()));
        let out = Command::new(root().join("tests/s3/s3.sh"))
            .arg("start")
            .env("S3_DIR", &dir)
            .output()
            .expect("tests/s3/s3.sh start");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap()
                .to_string()
        };
        S3 {
            endpoint: get("S3_ENDPOINT="),
            request_log: get("S3_REQUEST_LOG=").into(),
        }
    })
}

/// Credentials for moto (any will do); set for the bridge and pyiceberg.
pub const S3_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
];

/// Runs make_tables.py; `extra` are more arguments (`--files`, `--name`, ...).
pub fn make_tables(warehouse: &str, tables: &str, s3: bool, extra: &[&str]) -> Vec<Table> {
    let mut cmd = Command::new(venv().join("bin/python"));
    cmd.arg(root().join("tests/python/make_tables.py"))
        .args(["--warehouse", warehouse, "--tables", tables])
        .args(extra)
        .envs(S3_ENV.iter().copied());
    if s3 {
        cmd.args(["--s3-endpoint", &self::s3().endpoint]);
    }
    let out = cmd.output().expect("run make_tables.py");
    assert!(
        out.status.success(),
        "make_tables.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Purge settings for the S3 server.
pub fn s3_toml() -> String {
    format!(
        "[connectors.purge.s3]\nendpoint = \"{}\"\nregion = \"us-east-1\"\n",
        s3().endpoint
    )
}

/// Every object under `prefix` (a URI), with its size.
pub fn list(prefix: &str) -> BTreeMap<String, u64> {
    let uri = ObjectUri::parse(prefix).unwrap();
    if uri.scheme == polaris_bridge_purge::safety::Scheme::File {
        let mut out = BTreeMap::new();
        walk(Path::new(&format!("/{}", uri.key)), &mut out);
        return out;
    }
    let config = PurgeConfig {
        store_options: [
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        s3: polaris_bridge_purge::config::S3Config {
            endpoint: Some(s3().endpoint.clone()),
            region: Some("us-east-1".into()),
            ..Default::default()
        },
        ..PurgeConfig::default()
    };
    let stores = Stores::new(std::sync::Arc::new(config));
    let (store, path) = stores.resolve(&uri).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures::TryStreamExt;
        let objects: Vec<object_store::ObjectMeta> =
            store.inner.list(Some(&path)).try_collect().await.unwrap();
        objects
            .into_iter()
            .map(|o| (format!("s3://{}/{}", uri.authority, o.location), o.size))
            .collect()
    })
}

fn walk(dir: &Path, out: &mut BTreeMap<String, u64>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.insert(path.display().to_string(), len);
        }
    }
}

/// Runs `polaris-bridge purge` with `args`; returns (success, stdout, stderr).
pub fn cli_purge(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_polaris-bridge"))
        .arg("purge")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run polaris-bridge purge");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A minimal bridge config file for the CLI (its Kafka settings are not used).
pub fn cli_config(dir: &Path, purge_toml: &str) -> PathBuf {
    let path = dir.join("purge-cli.toml");
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbootstrap_servers = \"127.0.0.1:9\"\n\n[connectors.purge]\ntype = \"purge\"\n{purge_toml}\n"
        ),
    )
    .unwrap();
    path
}

/// The last JSON line of a CLI run.
pub fn summary(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap()
}

/// One request the counting proxy logged.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Logged {
    pub t: f64,
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    pub keys: u64,
}

/// The DeleteObjects requests logged for `bucket`.
pub fn delete_requests(bucket: &str) -> Vec<Logged> {
    let text = std::fs::read_to_string(&s3().request_log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Logged>(l).ok())
        .filter(|r| r.method == "POST" && r.query.contains("delete"))
        .filter(|r| r.path.trim_start_matches('/').split('/').next() == Some(bucket))
        .collect()
}

/// The largest sum of `weight` over requests within any window of `window` seconds.
pub fn max_in_window(requests: &[Logged], window: f64, weight: impl Fn(&Logged) -> u64) -> u64 {
    let mut best = 0;
    for (i, first) in requests.iter().enumerate() {
        let sum: u64 = requests[i..]
            .iter()
            .take_while(|r| r.t < first.t + window)
            .map(&weight)
            .sum();
        best = best.max(sum);
    }
    best
}

/// A bucket name unique to this run.
pub fn bucket(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            % 1_000_000
    )
}
