//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `{webhook-id}.{webhook-timestamp}.{body}`, keyed by the base64-decoded part of a `whsec_`
//! secret. With several secrets (key rotation) the header carries one signature per secret,
//! separated by spaces; a receiver accepts the request if any of them verifies.
//!
//! Secrets never appear in `Debug` output, logs or error messages: only where they came from.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a Standard Webhooks symmetric secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// How to make a secret, for error messages.
pub const SECRET_HOWTO: &str = "a secret is `whsec_` followed by the base64 of 24 to 64 random bytes; make one with: python3 -c 'import base64,os; print(\"whsec_\" + base64.b64encode(os.urandom(32)).decode())'";

/// One signing key.
#[derive(Clone)]
pub struct Secret {
    /// HMAC-SHA256 keyed with the secret, cloned for each signature (keying hashes the padded
    /// key, so it is done once).
    mac: Hmac<Sha256>,
    /// Where it came from (`env ORDERS_SECRET`, `file /run/secrets/x`), never the value.
    origin: String,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<redacted>, from {})", self.origin)
    }
}

impl Secret {
    /// Parses `whsec_<base64>`; `origin` says where the text came from. The error never
    /// contains the text.
    pub fn parse(text: &str, origin: impl Into<String>) -> Result<Secret, String> {
        let text = text.trim();
        let Some(encoded) = text.strip_prefix(SECRET_PREFIX) else {
            return Err(format!("does not start with `{SECRET_PREFIX}`"));
        };
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| format!("the part after `{SECRET_PREFIX}` is not valid base64"))?;
        if !(24..=64).contains(&key.len()) {
            return Err(format!(
                "decodes to {} bytes; Standard Webhooks secrets have 24 to 64",
                key.len()
            ));
        }
        let mac = Hmac::<Sha256>::new_from_slice(&key)
            .map_err(|e| format!("cannot key HMAC-SHA256 with it: {e}"))?;
        Ok(Secret {
            mac,
            origin: origin.into(),
        })
    }

    /// Where the secret came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// Signs with every configured secret.
#[derive(Debug, Clone)]
pub struct Signer {
    secrets: Vec<Secret>,
}

impl Signer {
    /// A signer with these secrets (at least one).
    pub fn new(secrets: Vec<Secret>) -> Self {
        Signer { secrets }
    }

    /// The `webhook-signature` header value: one `v1,` signature per secret, space-separated.
    pub fn signature_header(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        self.secrets
            .iter()
            .map(|s| s.sign(id, timestamp, body))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// How many secrets sign.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// Whether no secret is configured.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference vector of the Standard Webhooks specification.
    #[test]
    fn standard_webhooks_reference_vector() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "test").unwrap();
        assert_eq!(
            secret.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn rotation_signs_with_every_secret() {
        let a = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "env A").unwrap();
        let b = Secret::parse(
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "file /b",
        )
        .unwrap();
        let header = Signer::new(vec![a.clone(), b.clone()]).signature_header("id", 5, b"x");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts, vec![a.sign("id", 5, b"x"), b.sign("id", 5, b"x")]);
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn bad_secrets_are_explained_without_echoing_them() {
        for (text, expect) in [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"),
            ("whsec_not base64!", "base64"),
            ("whsec_c2hvcnQ=", "5 bytes"),
        ] {
            let err = Secret::parse(text, "env X").unwrap_err();
            assert!(err.contains(expect), "{err}");
            assert!(!err.contains(text), "the error echoes the secret: {err}");
        }
        let secret = Secret::parse(" whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", "env X").unwrap();
        let debug = format!("{secret:?} {:?}", Signer::new(vec![secret.clone()]));
        assert!(!debug.contains("MfKQ9r8"), "{debug}");
        assert!(
            debug.contains("redacted") && debug.contains("env X"),
            "{debug}"
        );
    }
}
