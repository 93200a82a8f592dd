//! The HTTP side: one pooled client per endpoint (keep-alive connections, rustls), and the
//! classification of each response into what the dispatcher does next.
//!
//! | response | result |
//! |---|---|
//! | 2xx | delivered |
//! | a `retry_on_status` status (default 408, 425, 429, 500-599), network error, timeout | transient: retried with backoff, or after `Retry-After` when the response has one |
//! | 410 Gone | the endpoint is disabled until an operator resumes it; the task waits |
//! | anything else (other 4xx, 3xx: redirects are not followed) | permanent: dead letter with the status and the first 256 bytes of the body |

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;

use crate::breaker::Verdict;
use crate::config::{ConfigProblem, StatusSet, WebhookConfig};
use crate::signing::Signer;

/// Bytes of a response body kept for messages (dead-letter reasons, logs).
pub const BODY_PREFIX: usize = 256;
/// Bytes of a response body read at most (a small body read to its end lets the connection
/// be reused).
const BODY_READ: usize = 4096;
/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Headers the connector sets itself; `headers` may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "host",
    "traceparent",
    "transfer-encoding",
    "connection",
];

/// Builds the endpoint's client: a connection pool with keep-alive, no redirects, rustls
/// with the system's roots plus `ca_file`.
pub fn build_client(
    config: &WebhookConfig,
    concurrency: usize,
) -> Result<reqwest::Client, Vec<ConfigProblem>> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(config.timeout)
        .connect_timeout(config.connect_timeout)
        .pool_max_idle_per_host(concurrency.max(1))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_keepalive(Duration::from_secs(60))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("polaris-bridge/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            vec![ConfigProblem::new(
                "ca_file",
                format!("cannot read {}: {e}", path.display()),
                "point ca_file at a readable PEM file of CA certificates",
            )]
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                vec![ConfigProblem::new(
                    "ca_file",
                    format!("{} holds no PEM certificate", path.display()),
                    "use a PEM file with `-----BEGIN CERTIFICATE-----` blocks",
                )]
            })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| {
        vec![ConfigProblem::new(
            "ca_file",
            format!("cannot build the HTTP client: {e}"),
            "check the TLS settings",
        )]
    })
}

/// The POST of one delivery to `url`: the endpoint's static `headers`, the payload's
/// CloudEvents headers, then the Standard Webhooks headers: `webhook-id` (`id`),
/// `webhook-timestamp` (now, in seconds) and `webhook-signature` (by `signer`, over id,
/// timestamp and `body`).
pub fn signed_post<B>(
    client: &reqwest::Client,
    url: &reqwest::Url,
    headers: &HeaderMap,
    payload_headers: &[(String, String)],
    signer: &Signer,
    id: &str,
    body: B,
) -> reqwest::RequestBuilder
where
    B: AsRef<[u8]> + Into<reqwest::Body>,
{
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let signature = signer.signature_header(id, timestamp, body.as_ref());
    let mut request = client.post(url.clone()).headers(headers.clone());
    for (name, value) in payload_headers {
        request = request.header(name.as_str(), value.as_str());
    }
    request
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
}

/// Validates `url`: absolute, `http` or `https`, with a host.
pub fn parse_url(url: &str) -> Result<reqwest::Url, ConfigProblem> {
    let fix = "set url = \"https://host[:port]/path\" (http or https)";
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ConfigProblem::new("url", format!("`{url}` is not a URL: {e}"), fix))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ConfigProblem::new(
            "url",
            format!("`{url}` is not an http or https URL"),
            fix,
        ));
    }
    Ok(parsed)
}

/// Validates the static headers.
pub fn static_headers(
    headers: &std::collections::BTreeMap<String, String>,
    problems: &mut Vec<ConfigProblem>,
) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let key = format!("headers.{name}");
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("ce-") {
            problems.push(ConfigProblem::new(
                key,
                "is set by the connector itself",
                "remove it",
            ));
            continue;
        }
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => {
                map.insert(n, v);
            }
            (Err(_), _) => problems.push(ConfigProblem::new(
                key,
                "is not a valid header name",
                "use letters, digits and `-`",
            )),
            (_, Err(_)) => problems.push(ConfigProblem::new(
                key,
                "has a value that is not a valid header value",
                "use visible ASCII characters",
            )),
        }
    }
    map
}

/// What a response means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// 2xx.
    Delivered,
    /// Retry, at the earliest after `retry_after`.
    Retry {
        /// Status and body prefix.
        message: String,
        /// `Retry-After`, when the response had one.
        retry_after: Option<Duration>,
    },
    /// 410 Gone.
    Gone {
        /// Status and body prefix.
        message: String,
    },
    /// Dead letter.
    Permanent {
        /// Status and body prefix.
        message: String,
    },
}

/// Classifies a response. `body` is the start of its body, `retry_after` its `Retry-After`
/// header, `now` the current time (for HTTP-date values).
pub fn classify(
    status: StatusCode,
    retry_after: Option<&str>,
    body: &[u8],
    retryable: &StatusSet,
    now: SystemTime,
) -> Classified {
    let code = status.as_u16();
    if status.is_success() {
        return Classified::Delivered;
    }
    let mut message = format!("HTTP {status}");
    let text = body_text(body);
    if !text.is_empty() {
        message.push_str(": ");
        message.push_str(&text);
    }
    if retryable.contains(code) {
        let retry_after = retry_after.and_then(|v| parse_retry_after(v, now));
        if let Some(wait) = retry_after {
            message.push_str(&format!(" (Retry-After {}s)", wait.as_secs()));
        }
        return Classified::Retry {
            message,
            retry_after,
        };
    }
    if code == 410 {
        return Classified::Gone { message };
    }
    if status.is_redirection() {
        message.push_str(" (redirects are not followed: configure the final URL)");
    }
    Classified::Permanent { message }
}

/// The bounded metrics label of a status.
pub fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        410 => "410",
        429 => "429",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// What the circuit breaker makes of a classified response.
pub fn verdict(status: StatusCode, classified: &Classified) -> Verdict {
    match classified {
        Classified::Retry { .. } if status.as_u16() != 429 => Verdict::Failed,
        _ => Verdict::Alive,
    }
}

/// `Retry-After`: delay-seconds or an HTTP date; `None` if unreadable. Capped at
/// [`MAX_RETRY_AFTER`]; a date in the past is zero.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The first [`BODY_PREFIX`] bytes of a body as one line of text: invalid UTF-8 replaced,
/// control characters as spaces.
pub fn body_text(body: &[u8]) -> String {
    let prefix = &body[..body.len().min(BODY_PREFIX)];
    let text: String = String::from_utf8_lossy(prefix)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim().to_string();
    if body.len() > BODY_PREFIX {
        format!("{text}...")
    } else {
        text
    }
}

/// Reads at most 4 KiB (`BODY_READ`) of a response body.
pub async fn read_body_prefix(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < BODY_READ {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(BODY_READ);
    body
}

/// Describes a request error without the URL (it may carry credentials) and classifies it
/// for the metrics: `timeout`, `connect` or `network`.
pub fn describe_error(error: &reqwest::Error, timeout: Duration) -> (&'static str, String) {
    let label = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else {
        "network"
    };
    let mut message = match label {
        "timeout" => format!(
            "no response within the timeout ({})",
            humantime_str(timeout)
        ),
        "connect" => "connection failed".to_string(),
        _ => "request failed".to_string(),
    };
    let mut source = std::error::Error::source(error);
    let mut seen = Vec::new();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !seen.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
            seen.push(text);
        }
        source = cause.source();
    }
    (label, message)
}

fn humantime_str(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> StatusSet {
        StatusSet::default()
    }

    #[test]
    fn responses_are_classified() {
        let now = SystemTime::now();
        let c = |code: u16, retry_after: Option<&str>, body: &[u8]| {
            classify(
                StatusCode::from_u16(code).unwrap(),
                retry_after,
                body,
                &set(),
                now,
            )
        };
        assert_eq!(c(200, None, b""), Classified::Delivered);
        assert_eq!(c(204, None, b""), Classified::Delivered);
        assert!(matches!(
            c(500, None, b"oops"),
            Classified::Retry { retry_after: None, ref message } if message == "HTTP 500 Internal Server Error: oops"
        ));
        assert_eq!(
            c(429, Some("7"), b""),
            Classified::Retry {
                message: "HTTP 429 Too Many Requests (Retry-After 7s)".into(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert!(matches!(
            c(503, Some("soon"), b""),
            Classified::Retry {
                retry_after: None,
                ..
            }
        ));
        for code in [408, 425, 502, 504] {
            assert!(
                matches!(c(code, None, b""), Classified::Retry { .. }),
                "{code}"
            );
        }
        assert!(
            matches!(c(410, None, b"bye"), Classified::Gone { ref message } if message.contains("410"))
        );
        let long = vec![b'x'; 1000];
        let Classified::Permanent { message } = c(400, None, &long) else {
            panic!()
        };
        assert!(
            message.starts_with("HTTP 400 Bad Request: xxx"),
            "{message}"
        );
        assert!(message.len() < 300 && message.ends_with("..."), "{message}");
        assert!(matches!(c(404, None, b""), Classified::Permanent { .. }));
        assert!(
            matches!(c(301, None, b""), Classified::Permanent { ref message } if message.contains("redirects"))
        );
        // A custom list: 500 not retryable, 409 is.
        let custom =
            crate::config::parse_statuses(&[crate::config::StatusSpec::Code(409)]).unwrap();
        let s = |code| StatusCode::from_u16(code).unwrap();
        assert!(matches!(
            classify(s(409), None, b"", &custom, now),
            Classified::Retry { .. }
        ));
        assert!(matches!(
            classify(s(500), None, b"", &custom, now),
            Classified::Permanent { .. }
        ));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("tomorrow", now), None);
    }

    #[test]
    fn breaker_counts_failures_but_not_throttling_or_rejections() {
        let now = SystemTime::now();
        let s = |code| StatusCode::from_u16(code).unwrap();
        let v = |code| verdict(s(code), &classify(s(code), None, b"", &set(), now));
        assert_eq!(v(503), Verdict::Failed);
        assert_eq!(v(429), Verdict::Alive);
        assert_eq!(v(400), Verdict::Alive);
        assert_eq!(v(200), Verdict::Alive);
    }

    #[test]
    fn urls_and_headers_are_validated() {
        assert!(parse_url("https://hooks.example.com/x").is_ok());
        assert_eq!(parse_url("ftp://x/y").unwrap_err().key, "url");
        assert_eq!(parse_url("not a url").unwrap_err().key, "url");
        let mut problems = Vec::new();
        let headers: std::collections::BTreeMap<String, String> = [
            ("X-Team", "data"),
            ("Webhook-Id", "x"),
            ("ce-type", "x"),
            ("bad header", "x"),
            ("X-Ok", "line\nbreak"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let map = static_headers(&headers, &mut problems);
        assert_eq!(map.len(), 1);
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "headers.Webhook-Id",
                "headers.X-Ok",
                "headers.bad header",
                "headers.ce-type"
            ]
        );
    }
}
