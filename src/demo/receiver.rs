//! The demo's built-in webhook receiver: an HTTP server on 127.0.0.1 that verifies every
//! Standard Webhooks signature with its own code (not the connector's), counts duplicate
//! `webhook-id`s among the deliveries it accepted, and answers 503 to the first attempt of
//! about one delivery in eight (ids ending in `2` or `d`) so the demo shows retries.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;

/// What the receiver saw.
#[derive(Debug, Default)]
pub struct ReceiverStats {
    /// Requests whose signature verified.
    pub verified: AtomicU64,
    /// Requests whose signature did not verify (answered 401).
    pub failed: AtomicU64,
    /// Accepted deliveries whose webhook-id had been accepted before.
    pub duplicates: AtomicU64,
    /// First attempts answered 503 on purpose.
    pub refused_first: AtomicU64,
    accepted: Mutex<HashSet<String>>,
    refused: Mutex<HashSet<String>>,
}

impl ReceiverStats {
    /// Distinct webhook-ids accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.lock().map(|s| s.len()).unwrap_or(0)
    }
}

struct Shared {
    key: Vec<u8>,
    stats: Arc<ReceiverStats>,
}

/// A running receiver.
pub struct Receiver {
    /// Where to POST.
    pub url: String,
    /// Its counters.
    pub stats: Arc<ReceiverStats>,
    stop: watch::Sender<bool>,
}

impl Receiver {
    /// Starts a receiver that verifies with `secret` (`whsec_...`).
    pub async fn start(secret: &str) -> anyhow::Result<Receiver> {
        let key = STANDARD.decode(secret.trim().trim_start_matches("whsec_"))?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let stats = Arc::new(ReceiverStats::default());
        let shared = Arc::new(Shared {
            key,
            stats: stats.clone(),
        });
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(shared);
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
        });
        Ok(Receiver { url, stats, stop })
    }

    /// Stops serving.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let stats = &shared.stats;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(timestamp), Some(signatures)) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    ) else {
        stats.failed.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::UNAUTHORIZED, "missing webhook headers\n");
    };
    if !verify(&shared.key, id, timestamp, signatures, &body) {
        stats.failed.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::UNAUTHORIZED, "signature does not verify\n");
    }
    stats.verified.fetch_add(1, Ordering::Relaxed);
    // About one id in eight is refused once, to show retries.
    if id.bytes().last().is_some_and(|b| b % 10 == 0) {
        let first = stats
            .refused
            .lock()
            .map(|mut r| r.insert(id.to_string()))
            .unwrap_or(false);
        if first {
            stats.refused_first.fetch_add(1, Ordering::Relaxed);
            return (StatusCode::SERVICE_UNAVAILABLE, "try again\n");
        }
    }
    let new = stats
        .accepted
        .lock()
        .map(|mut a| a.insert(id.to_string()))
        .unwrap_or(true);
    if !new {
        stats.duplicates.fetch_add(1, Ordering::Relaxed);
    }
    (StatusCode::NO_CONTENT, "")
}

/// Standard Webhooks verification: one of the space-separated `v1,` signatures must equal
/// HMAC-SHA256(key, "{id}.{timestamp}.{body}"), and the timestamp must be within 5 minutes.
fn verify(key: &[u8], id: &str, timestamp: &str, signatures: &str, body: &[u8]) -> bool {
    let Ok(ts) = timestamp.parse::<i64>() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    if (now - ts).abs() > 300 {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    signatures.split(' ').any(|candidate| {
        candidate
            .strip_prefix("v1,")
            .and_then(|b64| STANDARD.decode(b64).ok())
            .is_some_and(|sig| {
                sig.len() == expected.len()
                    && sig
                        .iter()
                        .zip(expected.iter())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_the_reference_vector_shape() {
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        // The reference timestamp is years old: only the signature part is checked here.
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(b"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{\"test\": 2432232314}");
        assert_eq!(
            STANDARD.encode(mac.finalize().into_bytes()),
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(
            !verify(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                b"{\"test\": 2432232314}"
            ),
            "too old"
        );
    }
}
