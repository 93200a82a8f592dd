//! OAuth2 client credentials against the target's token endpoint, with the token cached
//! until shortly before it expires and refreshed on demand (after a 401).

use std::time::{Duration, Instant};

use serde::Deserialize;
use std::sync::Mutex;
use tokio::sync::Notify;

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
    cached: Mutex<TokenCache>,
    /// Wakes the callers that waited for a fetch under way.
    fetched: Notify,
}

/// The cached token, and whether a caller is fetching a new one (one fetch at a time: the
/// others wait for it instead of asking the endpoint too).
#[derive(Default)]
struct TokenCache {
    token: Option<Cached>,
    fetching: bool,
}

/// What a caller of [`TokenSource::token`] found in the cache.
enum Lookup<'a> {
    /// A valid token.
    Cached(String),
    /// Another caller is fetching: wait for it, then look again.
    Wait(tokio::sync::futures::Notified<'a>),
    /// Nobody is fetching: this caller fetches (the cache is marked).
    Fetch,
}

/// Marks the fetch under way as over when dropped (also when the fetching caller is
/// cancelled), and wakes the waiting callers.
struct FetchGuard<'a>(&'a TokenSource);

impl Drop for FetchGuard<'_> {
    fn drop(&mut self) {
        self.0.with_cache(|cache| cache.fetching = false);
        self.0.fetched.notify_waiters();
    }
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
            cached: Mutex::new(TokenCache::default()),
            fetched: Notify::new(),
        }
    }

    /// A valid token: the cached one, or a fresh one. One caller fetches at a time; callers
    /// that miss meanwhile wait for its token (and fetch themselves only if it failed). The
    /// cache's lock is never held across an `.await`.
    pub async fn token(&self) -> Result<String, TokenError> {
        loop {
            let now = Instant::now();
            let lookup = self.with_cache(|cache| {
                if let Some(cached) = cache.token.as_ref().filter(|c| now < c.refresh_at) {
                    Lookup::Cached(cached.token.clone())
                } else if cache.fetching {
                    // Created under the lock, so the fetcher's wake-up cannot be missed.
                    Lookup::Wait(self.fetched.notified())
                } else {
                    cache.fetching = true;
                    Lookup::Fetch
                }
            });
            match lookup {
                Lookup::Cached(token) => return Ok(token),
                Lookup::Wait(fetched) => {
                    fetched.await;
                    continue;
                }
                Lookup::Fetch => {}
            }
            let guard = FetchGuard(self);
            let fresh = self.fetch().await;
            let result = fresh.map(|fresh| {
                let token = fresh.token.clone();
                self.with_cache(|cache| cache.token = Some(fresh));
                token
            });
            drop(guard);
            return result;
        }
    }

    /// Forgets `stale` (a token the server answered 401 to), so the next call fetches anew.
    /// A token fetched meanwhile by a concurrent request is kept.
    pub fn invalidate(&self, stale: &str) {
        self.with_cache(|cache| {
            if cache.token.as_ref().is_some_and(|c| c.token == stale) {
                cache.token = None;
            }
        });
    }

    /// Runs `f` on the cache under its lock (a poisoned lock is taken over: the cache holds
    /// only a token, which a fetch replaces).
    fn with_cache<T>(&self, f: impl FnOnce(&mut TokenCache) -> T) -> T {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A token endpoint on 127.0.0.1 that answers each request after `delay`, with token
    /// `t{n}` for its n-th request, counting them.
    fn token_endpoint(delay: Duration) -> (String, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/oauth/tokens", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let served = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let n = served.fetch_add(1, Ordering::SeqCst) + 1;
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf);
                    std::thread::sleep(delay);
                    let body = format!(
                        r#"{{"access_token":"t{n}","token_type":"bearer","expires_in":3600}}"#
                    );
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        (url, count)
    }

    fn source(url: String) -> TokenSource {
        TokenSource::new(
            reqwest::Client::new(),
            url,
            "client".into(),
            "secret".into(),
            "PRINCIPAL_ROLE:ALL".into(),
            None,
        )
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let (url, requests) = token_endpoint(Duration::from_millis(300));
        let tokens = Arc::new(source(url));
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let tokens = tokens.clone();
                tokio::spawn(async move { tokens.token().await.unwrap() })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap(), "t1");
        }
        assert_eq!(
            requests.load(Ordering::SeqCst),
            1,
            "one fetch for 8 callers"
        );

        // After a 401 the stale token is forgotten and the next callers share one new fetch.
        tokens.invalidate("t1");
        let (a, b) = tokio::join!(tokens.token(), tokens.token());
        assert_eq!(
            (a.unwrap(), b.unwrap()),
            ("t2".to_string(), "t2".to_string())
        );
        assert_eq!(requests.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_cancelled_fetch_does_not_block_the_next_caller() {
        let (url, requests) = token_endpoint(Duration::from_millis(500));
        let tokens = source(url);
        let cancelled = tokio::time::timeout(Duration::from_millis(50), tokens.token()).await;
        assert!(cancelled.is_err(), "the first fetch was cut short");
        let token = tokio::time::timeout(Duration::from_secs(5), tokens.token())
            .await
            .expect("the next caller fetches instead of waiting forever")
            .unwrap();
        assert_eq!(token, "t2");
        assert_eq!(requests.load(Ordering::SeqCst), 2);
    }
}
