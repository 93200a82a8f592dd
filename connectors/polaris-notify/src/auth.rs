//! OAuth2 client credentials against the target's token endpoint, with the token cached
//! until shortly before it expires and refreshed on demand (after a 401).

use std::time::{Duration, Instant};

use serde::Deserialize;
use std::sync::Mutex;

/// Refresh this long before the advertised expiry.
const EARLY: Duration = Duration::from_secs(30);
/// Assumed lifetime when the endpoint gives no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The endpoint refused the credentials (400/401/403): fix the configuration.
    #[error("token endpoint {url} refused the client credentials ({status}): {body}; check client_id, the client secret and scope")]
    Refused {
        /// The endpoint.
        url: String,
        /// HTTP status.
        status: u16,
        /// What it said (an OAuth2 error, never a secret).
        body: String,
    },
    /// The endpoint is unreachable or failing: try again later.
    #[error("token endpoint {url}: {message}")]
    Unavailable {
        /// The endpoint.
        url: String,
        /// What went wrong.
        message: String,
    },
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Clone)]
struct Cached {
    token: String,
    refresh_at: Instant,
}

/// Reads an OAuth2 client secret from exactly one of its sources: inline (`client_secret`),
/// an environment variable (`client_secret_env`) or a file (`client_secret_file`, surrounding
/// whitespace ignored). The error names the key to fix.
pub fn read_client_secret(
    inline: Option<&str>,
    env: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<String, String> {
    let sources = [inline.is_some(), env.is_some(), file.is_some()];
    if sources.iter().filter(|s| **s).count() != 1 {
        return Err(
            "set exactly one of `client_secret`, `client_secret_env`, `client_secret_file`".into(),
        );
    }
    if let Some(secret) = inline {
        return Ok(secret.to_string());
    }
    if let Some(var) = env {
        return std::env::var(var)
            .map_err(|_| format!("`client_secret_env`: environment variable {var} is not set"));
    }
    let path = file.ok_or("no secret source")?;
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("`client_secret_file` {}: {e}", path.display()))
}

/// A cached bearer token.
pub struct TokenSource {
    http: reqwest::Client,
    url: String,
    client_id: String,
    secret: String,
    scope: String,
    realm: Option<String>,
    cached: Mutex<Option<Cached>>,
}

impl TokenSource {
    /// A token source for these credentials.
    pub fn new(
        http: reqwest::Client,
        url: String,
        client_id: String,
        secret: String,
        scope: String,
        realm: Option<String>,
    ) -> Self {
        TokenSource {
            http,
            url,
            client_id,
            secret,
            scope,
            realm,
            cached: Mutex::new(None),
        }
    }

    /// A valid token: the cached one, or a fresh one. The cache's lock is never held across
    /// the fetch: concurrent callers that miss may each fetch, and the last one is kept.
    pub async fn token(&self) -> Result<String, TokenError> {
        let now = Instant::now();
        if let Some(token) = self.with_cache(|cached| {
            cached
                .as_ref()
                .filter(|c| now < c.refresh_at)
                .map(|c| c.token.clone())
        }) {
            return Ok(token);
        }
        let fresh = self.fetch().await?;
        let token = fresh.token.clone();
        self.with_cache(|cached| *cached = Some(fresh));
        Ok(token)
    }

    /// Forgets `stale` (a token the server answered 401 to), so the next call fetches anew.
    /// A token fetched meanwhile by a concurrent request is kept.
    pub async fn invalidate(&self, stale: &str) {
        self.with_cache(|cached| {
            if cached.as_ref().is_some_and(|c| c.token == stale) {
                *cached = None;
            }
        });
    }

    /// Runs `f` on the cache under its lock (a poisoned lock is taken over: the cache holds
    /// only a token, which a fetch replaces).
    fn with_cache<T>(&self, f: impl FnOnce(&mut Option<Cached>) -> T) -> T {
        let mut guard = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    async fn fetch(&self) -> Result<Cached, TokenError> {
        let unavailable = |message: String| TokenError::Unavailable {
            url: self.url.clone(),
            message,
        };
        let mut request = self.http.post(&self.url).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.as_str()),
            ("scope", self.scope.as_str()),
        ]);
        if let Some(realm) = &self.realm {
            request = request.header("Polaris-Realm", realm);
        }
        let response = request
            .send()
            .await
            .map_err(|e| unavailable(format!("{e}")))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| unavailable(format!("reading the response: {e}")))?;
        if matches!(status, 400 | 401 | 403) {
            return Err(TokenError::Refused {
                url: self.url.clone(),
                status,
                body: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            });
        }
        if !(200..300).contains(&status) {
            return Err(unavailable(format!("HTTP {status}")));
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("not a token response: {e}")))?;
        let lifetime = parsed
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LIFETIME);
        tracing::debug!(url = %self.url, lifetime_s = lifetime.as_secs(), "obtained an access token");
        Ok(Cached {
            token: parsed.access_token,
            refresh_at: Instant::now() + lifetime.saturating_sub(EARLY.min(lifetime / 2)),
        })
    }
}
