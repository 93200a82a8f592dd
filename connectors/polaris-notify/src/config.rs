//! Settings of a `polaris-notify` connector (`[connectors.NAME]` with `type = "polaris-notify"`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The connector's settings.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The target Polaris's Iceberg REST base, e.g. `https://polaris.example.com/api/catalog`;
    /// notifications go to `{uri}/v1/{catalog}/namespaces/{namespace}/tables/{table}/notifications`.
    pub uri: String,
    /// The EXTERNAL catalog of the target that mirrors the tables (the URL prefix).
    pub catalog: String,
    /// The OAuth2 token endpoint; default `{uri}/v1/oauth/tokens` (Polaris's built-in one).
    #[serde(default)]
    pub token_url: Option<String>,
    /// The target principal's client id.
    pub client_id: String,
    /// Its secret, inline (prefer `client_secret_env` or `client_secret_file`).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// The environment variable that holds the secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// A file that holds the secret (surrounding whitespace ignored).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The OAuth2 scope asked for.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// The target realm, sent as the `Polaris-Realm` header when set.
    #[serde(default)]
    pub realm: Option<String>,
    /// Where the connector keeps the DROP timestamps it sent (`<state_dir>/<name>.drops.json`),
    /// so that no restart lets an older CREATE/UPDATE resurrect a dropped table.
    pub state_dir: PathBuf,
    /// How long a sent DROP is remembered (older CREATE/UPDATE events are not expected later).
    #[serde(default = "default_drop_retention", with = "humantime_serde")]
    pub drop_retention: Duration,
    /// Timeout of one HTTP request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// The VALIDATE request of the healthcheck; without it the healthcheck only obtains a token.
    #[serde(default)]
    pub validate: Option<ValidateConfig>,
}

/// What the healthcheck's VALIDATE notification names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateConfig {
    /// Namespace levels of the probe table.
    pub namespace: Vec<String>,
    /// Name of the probe table (need not exist).
    #[serde(default = "default_validate_table")]
    pub table: String,
    /// A prospective metadata location or a parent directory, checked against the target
    /// catalog's allowed locations.
    pub location: String,
}

impl std::fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyConfig")
            .field("uri", &self.uri)
            .field("catalog", &self.catalog)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("client_secret_env", &self.client_secret_env)
            .field("client_secret_file", &self.client_secret_file)
            .field("realm", &self.realm)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

fn default_scope() -> String {
    "PRINCIPAL_ROLE:ALL".into()
}

fn default_drop_retention() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_validate_table() -> String {
    "polaris_bridge_validate".into()
}

impl NotifyConfig {
    /// The base URL without a trailing slash.
    pub fn base(&self) -> &str {
        self.uri.trim_end_matches('/')
    }

    /// The token endpoint.
    pub fn token_endpoint(&self) -> String {
        self.token_url
            .clone()
            .unwrap_or_else(|| format!("{}/v1/oauth/tokens", self.base()))
    }

    /// Reads the client secret from wherever it is configured.
    pub fn secret(&self) -> Result<String, String> {
        crate::auth::read_client_secret(
            self.client_secret.as_deref(),
            self.client_secret_env.as_deref(),
            self.client_secret_file.as_deref(),
        )
    }

    /// Checks what serde cannot; one message per problem.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(self.uri.starts_with("http://") || self.uri.starts_with("https://")) {
            problems.push(format!("`uri` {:?} must be an http(s) URL", self.uri));
        }
        if self.catalog.is_empty() {
            problems.push("`catalog` is empty".into());
        }
        if let Err(e) = self.secret() {
            problems.push(e);
        }
        if let Some(validate) = &self.validate {
            if validate.namespace.is_empty() {
                problems.push("`validate.namespace` needs at least one level".into());
            }
        }
        problems
    }
}
