//! Settings of a `purge` connector instance (`[connectors.NAME]` with `type = "purge"`), and
//! the per-catalog purge policy.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// When a dropped table's files are purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Only when the drop asked for it (`DROP TABLE ... PURGE`, `purge_requested = true`).
    /// A drop whose event does not say (the stock JSON format) is not purged.
    #[default]
    Requested,
    /// Every dropped table.
    Always,
    /// Never: drops are ignored.
    Never,
}

/// `[connectors.NAME]` of `type = "purge"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeConfig {
    /// Policy for catalogs not listed in `catalogs`.
    #[serde(default)]
    pub policy: Policy,
    /// Policy per catalog name, e.g. `{ prod = "always", scratch = "never" }`.
    #[serde(default)]
    pub catalogs: BTreeMap<String, Policy>,
    /// Locations outside the table location where the table's files may live (for example a
    /// `write.data.path` elsewhere). Containment is per path segment.
    #[serde(default)]
    pub allowed_prefixes: Vec<String>,
    /// List what would be deleted; delete nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Files per delete request (bulk delete). At most what the store accepts in one request:
    /// 1000 for S3, 256 for Azure. Local files and GCS are deleted one request per file, in
    /// batches of this size.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Delete batches in flight per task.
    #[serde(default = "default_batch_concurrency")]
    pub batch_concurrency: usize,
    /// Most files deleted per second, across this connector's tasks. Absent: no limit.
    #[serde(default)]
    pub max_files_per_second: Option<f64>,
    /// Most delete batches (requests) per second, across this connector's tasks. Absent: no
    /// limit.
    #[serde(default)]
    pub max_batches_per_second: Option<f64>,
    /// Read every manifest once and check every path before deleting anything, so that a
    /// corrupt manifest or a file outside the table fails the task with nothing deleted.
    /// Costs one more read of each manifest.
    #[serde(default = "default_true")]
    pub verify_before_delete: bool,
    /// Tries of one delete batch before the attempt fails (the dispatcher then retries the
    /// task from its checkpoint).
    #[serde(default = "default_batch_tries")]
    pub batch_tries: u32,
    /// Wait between tries of a batch (doubled each time).
    #[serde(default = "default_batch_retry_interval", with = "humantime_serde")]
    pub batch_retry_interval: Duration,
    /// S3 settings.
    #[serde(default)]
    pub s3: S3Config,
    /// Extra `object_store` options for every store, e.g. `google_service_account`,
    /// `azure_storage_account_name`, `aws_sse_kms_key_id`.
    #[serde(default)]
    pub store_options: BTreeMap<String, String>,
}

fn default_batch_size() -> usize {
    1000
}
fn default_batch_concurrency() -> usize {
    4
}
fn default_true() -> bool {
    true
}
fn default_batch_tries() -> u32 {
    3
}
fn default_batch_retry_interval() -> Duration {
    Duration::from_millis(200)
}

/// `[connectors.NAME.s3]`. Credentials come from the standard AWS chain: the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), web identity
/// (`AWS_WEB_IDENTITY_TOKEN_FILE`), the container or instance metadata service, and static
/// keys of the shared profile (`AWS_PROFILE`, `~/.aws/credentials`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint of an S3-compatible store, e.g. `http://127.0.0.1:9000`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region (else `AWS_REGION` / `AWS_DEFAULT_REGION`, the profile's, or `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), as MinIO and most S3-compatible stores
    /// want. Default: true when an endpoint is set, else virtual-hosted style.
    #[serde(default)]
    pub path_style: Option<bool>,
    /// Allow plain `http://` endpoints. Default: true when the endpoint is http://.
    #[serde(default)]
    pub allow_http: Option<bool>,
    /// The shared-config profile to read static keys from (else `AWS_PROFILE`, else
    /// `default`), when the environment has none.
    #[serde(default)]
    pub profile: Option<String>,
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key, relative to the connector's table.
    pub key: String,
    /// What is wrong, and the fix.
    pub problem: String,
}

impl PurgeConfig {
    /// The policy for `catalog`.
    pub fn policy_for(&self, catalog: Option<&str>) -> Policy {
        catalog
            .and_then(|c| self.catalogs.get(c))
            .copied()
            .unwrap_or(self.policy)
    }

    /// Checks the settings; every problem found.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, problem: String| {
            problems.push(ConfigProblem {
                key: key.to_string(),
                problem,
            })
        };
        if self.batch_size == 0 || self.batch_size > 1000 {
            bad(
                "batch_size",
                format!(
                    "is {}; set 1..=1000 (S3 accepts at most 1000 keys per delete request)",
                    self.batch_size
                ),
            );
        }
        if self.batch_concurrency == 0 {
            bad("batch_concurrency", "is 0; set at least 1".into());
        }
        for (key, value) in [
            ("max_files_per_second", self.max_files_per_second),
            ("max_batches_per_second", self.max_batches_per_second),
        ] {
            if let Some(v) = value {
                if !(v.is_finite() && v > 0.0) {
                    bad(key, format!("is {v}; set a positive number or remove it"));
                }
            }
        }
        if self.batch_tries == 0 {
            bad("batch_tries", "is 0; set at least 1".into());
        }
        for (i, prefix) in self.allowed_prefixes.iter().enumerate() {
            if let Err(e) = crate::safety::ObjectUri::parse(prefix) {
                bad(&format!("allowed_prefixes[{i}]"), e.to_string());
            }
        }
        problems
    }
}

impl Default for PurgeConfig {
    fn default() -> Self {
        PurgeConfig {
            policy: Policy::default(),
            catalogs: BTreeMap::new(),
            allowed_prefixes: Vec::new(),
            dry_run: false,
            batch_size: default_batch_size(),
            batch_concurrency: default_batch_concurrency(),
            max_files_per_second: None,
            max_batches_per_second: None,
            verify_before_delete: true,
            batch_tries: default_batch_tries(),
            batch_retry_interval: default_batch_retry_interval(),
            s3: S3Config::default(),
            store_options: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_per_catalog() {
        let c: PurgeConfig = serde_json::from_value(serde_json::json!({
            "policy": "never",
            "catalogs": {"prod": "always", "dev": "requested"}
        }))
        .unwrap();
        assert_eq!(c.policy_for(Some("prod")), Policy::Always);
        assert_eq!(c.policy_for(Some("dev")), Policy::Requested);
        assert_eq!(c.policy_for(Some("other")), Policy::Never);
        assert_eq!(c.policy_for(None), Policy::Never);
        assert_eq!(
            PurgeConfig::default().policy_for(Some("x")),
            Policy::Requested
        );
    }

    #[test]
    fn validation_names_the_key() {
        let c = PurgeConfig {
            batch_size: 5000,
            max_files_per_second: Some(0.0),
            allowed_prefixes: vec!["relative".into()],
            ..PurgeConfig::default()
        };
        let keys: Vec<String> = c.validate().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            ["batch_size", "max_files_per_second", "allowed_prefixes[0]"]
        );
        assert!(PurgeConfig::default().validate().is_empty());
        let unknown = serde_json::from_value::<PurgeConfig>(serde_json::json!({"batchsize": 1}));
        assert!(unknown.unwrap_err().to_string().contains("batchsize"));
    }
}
