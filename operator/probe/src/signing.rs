//! Signing a request body the way a telephony provider signs the calls decision webhook
//! (services/calls/src/webhook.rs):
//!
//! ```text
//! Meridian-Signature: p=<provider>,t=<unix seconds>,v1=<hex hmac_sha256(secret, "<t>.<raw body>")>
//! ```
//!
//! The secret is the provider's entry in the service's `CALLS_WEBHOOK_SECRETS`
//! (`provider:secret`), used as its bytes: the probe reads exactly that value from a file. It is
//! redacted from `Debug`, never part of an error, and never printed.

use std::io::Read;
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header the calls webhook reads its signature from.
pub const SIGNATURE_HEADER: &str = "meridian-signature";
/// Shortest secret accepted; the calls service refuses shorter ones (`MIN_SECRET_LEN`).
pub const MIN_SECRET_BYTES: usize = 32;
/// Longest secret accepted; bounds what is read from the file.
pub const MAX_SECRET_BYTES: usize = 4096;
/// Longest provider name (the calls service's limit).
pub const MAX_PROVIDER_LEN: usize = 32;

/// A webhook signing secret. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

/// Why a secret was refused. Carries no part of the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the secret is empty")]
    Empty,
    #[error("the secret is shorter than {MIN_SECRET_BYTES} bytes (the calls service refuses it)")]
    TooShort,
    #[error("the secret is longer than {MAX_SECRET_BYTES} bytes")]
    TooLong,
    #[error(
        "the secret has characters a CALLS_WEBHOOK_SECRETS entry cannot have (visible ASCII, no ',')"
    )]
    BadCharacters,
    #[error("reading the secret file: {0}")]
    Io(String),
}

impl WebhookSecret {
    /// The secret as it appears after `provider:` in `CALLS_WEBHOOK_SECRETS`. Surrounding
    /// whitespace is dropped (files end in a newline; the service trims its entries too).
    pub fn new(raw: &str) -> Result<Self, SecretError> {
        let secret = raw.trim();
        if secret.is_empty() {
            return Err(SecretError::Empty);
        }
        if secret.len() > MAX_SECRET_BYTES {
            return Err(SecretError::TooLong);
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return Err(SecretError::BadCharacters);
        }
        if secret.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort);
        }
        Ok(Self(secret.as_bytes().to_vec()))
    }

    /// Reads and validates a secret file, reading at most [`MAX_SECRET_BYTES`] (+ a newline).
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let file = std::fs::File::open(path).map_err(|e| SecretError::Io(e.to_string()))?;
        let mut raw = Vec::new();
        file.take(MAX_SECRET_BYTES as u64 + 2)
            .read_to_end(&mut raw)
            .map_err(|e| SecretError::Io(e.to_string()))?;
        let text = std::str::from_utf8(&raw).map_err(|_| SecretError::BadCharacters)?;
        Self::new(text)
    }

    /// The `Meridian-Signature` value for `body` signed at `t` (unix seconds) as `provider`.
    pub fn sign(&self, provider: &str, t: i64, body: &[u8]) -> String {
        // HMAC takes keys of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!(
            "p={provider},t={t},v1={}",
            hex(&mac.finalize().into_bytes())
        )
    }
}

/// A provider name the calls service accepts: 1..=32 of letters, digits, `-`, `_`.
pub fn valid_provider(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= MAX_PROVIDER_LEN
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-slo-probe";

    #[test]
    fn signs_like_the_provider_known_vector() {
        // Computed independently: python3 -c 'import hmac, hashlib; print(hmac.new(
        // b"key-of-thirty-two-bytes-exactly!", b"1700000000.{}", hashlib.sha256).hexdigest())'
        let s = WebhookSecret::new("key-of-thirty-two-bytes-exactly!").unwrap();
        assert_eq!(
            s.sign("dev", 1_700_000_000, b"{}"),
            "p=dev,t=1700000000,v1=535e4948285590f401473e39cec81838ab77f93d665711c65e7db38a4f8da912"
        );
    }

    #[test]
    fn secrets_are_validated_and_never_shown() {
        let s = WebhookSecret::new(&format!("{SECRET}\n")).unwrap();
        assert_eq!(s, WebhookSecret::new(SECRET).unwrap());
        assert_eq!(format!("{s:?}"), "WebhookSecret([redacted])");
        assert_eq!(WebhookSecret::new(" \n"), Err(SecretError::Empty));
        assert_eq!(WebhookSecret::new("short"), Err(SecretError::TooShort));
        for bad in [
            "with a space 0123456789abcdef0123456789",
            "comma,0123456789abcdef0123456789abcdef",
            "é0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(
                WebhookSecret::new(bad),
                Err(SecretError::BadCharacters),
                "{bad:?}"
            );
        }
        let long = "a".repeat(MAX_SECRET_BYTES + 1);
        assert_eq!(WebhookSecret::new(&long), Err(SecretError::TooLong));
        assert!(WebhookSecret::new(&long[1..]).is_ok());
        let err = WebhookSecret::new("secret value that is long enough..")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret value"), "{err}");
    }

    #[test]
    fn secret_files_are_read_bounded() {
        let dir = std::env::temp_dir().join(format!("probe-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = dir.join("ok");
        std::fs::write(&ok, format!("{SECRET}\n")).unwrap();
        assert_eq!(
            WebhookSecret::from_file(&ok).unwrap(),
            WebhookSecret::new(SECRET).unwrap()
        );
        let huge = dir.join("huge");
        std::fs::write(&huge, "a".repeat(1 << 20)).unwrap();
        assert_eq!(WebhookSecret::from_file(&huge), Err(SecretError::TooLong));
        assert!(matches!(
            WebhookSecret::from_file(&dir.join("missing")),
            Err(SecretError::Io(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn provider_names() {
        assert!(valid_provider("slo-probe"));
        assert!(valid_provider("dev_2"));
        assert!(!valid_provider(""));
        assert!(!valid_provider("a,b"));
        assert!(!valid_provider(&"a".repeat(33)));
    }
}
