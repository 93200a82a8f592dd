//! Sends one notification and classifies the answer.
//!
//! | answer | meaning |
//! |---|---|
//! | 2xx | accepted |
//! | 409 | a state at least as new is already admitted: done, counted apart |
//! | 404 to a DROP | the table is already gone: done, counted apart |
//! | 401 | the token is refreshed once and the request repeated; a second 401 is transient |
//! | 400, other 4xx | permanent, with the server's message (a non-EXTERNAL catalog answers 400) |
//! | 403 | misconfigured: the principal lacks a privilege or the location is not allowed |
//! | 408, 429, 5xx, network | transient, `Retry-After` honoured |

use std::time::Duration;

use polaris_bridge_api::DeliveryError;
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};

use crate::auth::{TokenError, TokenSource};
use crate::notification::{Kind, Notification};

/// What the target made of a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// 2xx.
    Accepted,
    /// Nothing to do: 409, or 404 to a DROP. The text says which.
    AlreadyDone(String),
}

/// The Notification API client of one target catalog.
pub struct NotifyClient {
    http: reqwest::Client,
    base: String,
    catalog: String,
    realm: Option<String>,
    tokens: TokenSource,
}

impl NotifyClient {
    /// A client for `catalog` at `base` (the Iceberg REST base URL).
    pub fn new(
        http: reqwest::Client,
        base: String,
        catalog: String,
        realm: Option<String>,
        tokens: TokenSource,
    ) -> Self {
        NotifyClient {
            http,
            base,
            catalog,
            realm,
            tokens,
        }
    }

    /// The token source (the healthcheck uses it).
    pub fn tokens(&self) -> &TokenSource {
        &self.tokens
    }

    /// Sends `notification`; on a 401 refreshes the token and sends it once more.
    pub async fn send(&self, notification: &Notification) -> Result<Reply, DeliveryError> {
        let url = format!("{}{}", self.base, notification.path(&self.catalog));
        let body = notification.body();
        let what = format!(
            "{} {}.{}",
            notification.kind.name(),
            self.catalog,
            notification.table_path()
        );
        let mut refreshed = false;
        loop {
            let token = self.tokens.token().await.map_err(token_error)?;
            let mut request = self
                .http
                .post(&url)
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(realm) = &self.realm {
                request = request.header("Polaris-Realm", realm);
            }
            let response = request
                .send()
                .await
                .map_err(|e| DeliveryError::transient(format!("{what}: {e}")))?;
            let status = response.status().as_u16();
            let retry_after = retry_after(response.headers());
            let text = response.text().await.unwrap_or_default();
            let message = server_message(&text);
            match status {
                200..=299 => return Ok(Reply::Accepted),
                409 => {
                    return Ok(Reply::AlreadyDone(
                        "409: newer state admitted".to_string(),
                    ))
                }
                404 if notification.kind == Kind::Drop => {
                    return Ok(Reply::AlreadyDone(format!(
                        "404: table already absent ({message})"
                    )))
                }
                401 if !refreshed => {
                    tracing::info!(target = %what, "401 from the target: refreshing the token once");
                    self.tokens.invalidate(&token);
                    refreshed = true;
                }
                401 => {
                    return Err(DeliveryError::transient(format!(
                        "{what}: 401 even with a fresh token: {message}"
                    )))
                }
                403 => {
                    return Err(DeliveryError::misconfigured(format!(
                        "{what}: 403 forbidden: {message}; grant the principal the catalog privileges (TABLE_CREATE, TABLE_WRITE_PROPERTIES, TABLE_DROP) and check the catalog's allowed locations"
                    )))
                }
                408 | 429 | 500..=599 => {
                    return Err(DeliveryError::Transient {
                        message: format!("{what}: HTTP {status}: {message}"),
                        retry_after,
                    })
                }
                _ => {
                    return Err(DeliveryError::permanent(format!(
                        "{what}: HTTP {status}: {message}"
                    )))
                }
            }
        }
    }
}

/// Maps a token failure: refused credentials and an unreachable endpoint are both retried
/// (a credential rotation can be fixed without losing tasks); the message says which.
pub fn token_error(error: TokenError) -> DeliveryError {
    DeliveryError::transient(error.to_string())
}

/// The Iceberg error model's `error.message`, else the body's start.
pub fn server_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| {
            body.chars()
                .take(300)
                .collect::<String>()
                .trim()
                .to_string()
        })
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_iceberg_error_model() {
        assert_eq!(
            server_message(
                r#"{"error":{"message":"Cannot update internal catalog via notifications","type":"BadRequestException","code":400}}"#
            ),
            "Cannot update internal catalog via notifications"
        );
        assert_eq!(server_message("plain text"), "plain text");
    }
}
