//! The call-decision webhook's authentication: the telephony provider signs each request, not a
//! user, so the webhook takes no bearer token. It carries
//!
//! ```text
//! Meridian-Signature: p=<provider>,t=<unix seconds>,v1=<hex hmac_sha256(secret, "<t>.<raw body>")>
//! ```
//!
//! - one secret per provider (`CALLS_WEBHOOK_SECRETS`, `provider:secret` pairs); a provider may
//!   have two secrets while its secret rotates, and a request is accepted under either;
//! - `t` must be within [`REPLAY_WINDOW_SECS`] of this replica's clock (either side), so a
//!   captured request stops working five minutes later;
//! - the MAC is compared in constant time (`Mac::verify_slice`).
//!
//! Anything else answers 401 problem+json before the body is parsed: an unsigned request never
//! reaches the decision engine.

use axum::{
    extract::{FromRequest, Request},
    http::{HeaderName, HeaderValue},
    response::{IntoResponse, Response},
};
use hmac::{Hmac, KeyInit, Mac};
use serde::de::DeserializeOwned;
use sha2::Sha256;

use crate::api::AppState;

/// The signature header.
pub const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("meridian-signature");
/// How far a signature's timestamp may be from now, in seconds.
pub const REPLAY_WINDOW_SECS: i64 = 300;
/// The OpenAPI security scheme name (the kit documents the scheme).
pub const SCHEME: &str = kit::auth::SIGNATURE_SCHEME;
/// Largest decision request read (bytes); every field is bounded far below this.
pub const MAX_BODY: usize = 64 * 1024;
/// Shortest secret accepted (bytes).
pub const MIN_SECRET_LEN: usize = 32;
const MAX_PROVIDERS: usize = 16;
const MAX_PROVIDER_LEN: usize = 32;

/// The providers' secrets, each kept as keyed HMAC state.
#[derive(Clone, Default)]
pub struct WebhookKeys {
    keys: Vec<(String, Hmac<Sha256>)>,
}

impl std::fmt::Debug for WebhookKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let providers: Vec<&str> = self.keys.iter().map(|(p, _)| p.as_str()).collect();
        f.debug_struct("WebhookKeys")
            .field("providers", &providers)
            .finish_non_exhaustive()
    }
}

fn keyed(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!())
}

fn valid_provider(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= MAX_PROVIDER_LEN
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl WebhookKeys {
    /// `pairs` of (provider, secret); refuses bad names and short secrets.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Result<Self, String> {
        let mut keys = Vec::new();
        for (provider, secret) in pairs {
            if !valid_provider(provider) {
                return Err(format!(
                    "provider name {:?} must be 1..={MAX_PROVIDER_LEN} of letters, digits, - _",
                    provider.chars().take(40).collect::<String>()
                ));
            }
            if secret.len() < MIN_SECRET_LEN {
                return Err(format!(
                    "the secret of provider {provider} must be at least {MIN_SECRET_LEN} characters"
                ));
            }
            if keys.iter().filter(|(p, _)| p == provider).count() >= 2 {
                return Err(format!(
                    "provider {provider} has more than two secrets (two are for rotation)"
                ));
            }
            keys.push((provider.to_owned(), keyed(secret)));
        }
        if keys.len() > MAX_PROVIDERS {
            return Err(format!("at most {MAX_PROVIDERS} secrets"));
        }
        Ok(Self { keys })
    }

    /// Parses `provider:secret,provider:secret` (the `CALLS_WEBHOOK_SECRETS` format).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut pairs = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (provider, secret) = item
                .split_once(':')
                .ok_or("each entry must be provider:secret")?;
            pairs.push((provider.trim(), secret.trim().as_bytes()));
        }
        Self::new(pairs)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn providers(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(p, _)| p.as_str())
    }

    /// The header value for `body` signed at `t` with `provider`'s first secret (the local
    /// `meridian sign-decision` command and tests; the service itself never signs).
    pub fn sign(&self, provider: &str, t: i64, body: &[u8]) -> Option<String> {
        let (_, key) = self.keys.iter().find(|(p, _)| p == provider)?;
        let mut mac = key.clone();
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        Some(format!(
            "p={provider},t={t},v1={}",
            kit::secret::hex(&mac.finalize().into_bytes())
        ))
    }

    /// Checks `header` for `body` at `now` (unix seconds). Returns the provider.
    pub fn verify(&self, header: &str, body: &[u8], now: i64) -> Result<&str, Refused> {
        let sig = self.precheck(header, now)?;
        self.verify_body(&sig, body)
    }

    /// Everything that can be checked without the body: the header parses, its time is inside
    /// the window, its provider is known. Done before the body is read, so an anonymous client
    /// cannot make a replica buffer bodies it will refuse.
    fn precheck<'h>(&self, header: &'h str, now: i64) -> Result<Signature<'h>, Refused> {
        let sig = Signature::parse(header).ok_or(Refused::Malformed)?;
        if (now - sig.t).abs() > REPLAY_WINDOW_SECS {
            return Err(Refused::Stale);
        }
        if !self.keys.iter().any(|(p, _)| p == sig.provider) {
            return Err(Refused::BadSignature);
        }
        Ok(sig)
    }

    fn verify_body(&self, sig: &Signature<'_>, body: &[u8]) -> Result<&str, Refused> {
        let t = sig.t.to_string();
        for (provider, key) in self.keys.iter().filter(|(p, _)| p == sig.provider) {
            let mut mac = key.clone();
            mac.update(t.as_bytes());
            mac.update(b".");
            mac.update(body);
            if mac.verify_slice(&sig.mac).is_ok() {
                return Ok(provider);
            }
        }
        Err(Refused::BadSignature)
    }
}

/// Why a webhook request was refused (logged and counted; the answer is the same 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no signature")]
    Missing,
    #[error("malformed signature")]
    Malformed,
    #[error("timestamp outside the replay window")]
    Stale,
    #[error("signature does not match")]
    BadSignature,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Stale => "stale",
            Self::BadSignature => "bad_signature",
        }
    }
}

struct Signature<'a> {
    provider: &'a str,
    t: i64,
    mac: [u8; 32],
}

impl<'a> Signature<'a> {
    fn parse(header: &'a str) -> Option<Self> {
        let (mut provider, mut t, mut mac) = (None, None, None);
        for part in header.split(',').take(4) {
            match part.trim().split_once('=')? {
                ("p", v) if valid_provider(v) => provider = Some(v),
                ("t", v) if v.len() <= 12 => t = v.parse().ok(),
                ("v1", v) => mac = kit::secret::parse_hex32(v),
                _ => return None,
            }
        }
        Some(Self {
            provider: provider?,
            t: t?,
            mac: mac?,
        })
    }
}

/// A JSON body whose signature checked out.
pub struct Signed<T> {
    pub body: T,
}

/// The 401 of an unsigned or badly signed webhook.
pub struct Unsigned;

impl IntoResponse for Unsigned {
    fn into_response(self) -> Response {
        kit::auth::unauthorized(
            r#"Meridian-Signature realm="calls""#,
            "a valid Meridian-Signature is required",
        )
    }
}

fn signature(header: Option<&HeaderValue>) -> Result<&str, Refused> {
    header
        .ok_or(Refused::Missing)?
        .to_str()
        .map_err(|_| Refused::Malformed)
}

/// Marks an answer given before the request body was read to its end: the server closes the
/// connection after it (the rest of the body is never read), and `Connection: close` tells the
/// client so, instead of letting it put the connection back in its pool and fail its next
/// request on the reset (RFC 9112, section 9.6).
fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        HeaderValue::from_static("close"),
    );
    response
}

impl<T: DeserializeOwned> FromRequest<AppState> for Signed<T> {
    type Rejection = Response;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, Self::Rejection> {
        let refused = |why: Refused| {
            tracing::warn!(reason = %why, "webhook refused");
            metrics::counter!("calls_webhook_refusals_total", "reason" => why.label()).increment(1);
            Unsigned.into_response()
        };
        // Refused before the body is read: the connection closes after the answer.
        let refused_early = |why: Refused| closing(refused(why));
        let keys = &st.settings.webhook_keys;
        let now = chrono::Utc::now().timestamp();
        // A HeaderValue clone is a reference count, not a copy.
        let header = req.headers().get(&SIGNATURE_HEADER).cloned();
        let header = signature(header.as_ref()).map_err(refused_early)?;
        let sig = keys.precheck(header, now).map_err(refused_early)?;
        // A decision is a few hundred bytes: read at most MAX_BODY of it, and only for a
        // request that has already shown a plausible signature.
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|_| {
                closing(
                    kit::ApiError::new(
                        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                        "payload-too-large",
                        "Payload too large",
                    )
                    .with_detail(format!("a decision request is at most {MAX_BODY} bytes"))
                    .into_response(),
                )
            })?;
        keys.verify_body(&sig, &bytes).map_err(refused)?;
        let body = kit::extract::decode_json(&bytes).map_err(IntoResponse::into_response)?;
        Ok(Self { body })
    }
}

impl<T: schemars::JsonSchema> aide::OperationInput for Signed<T> {
    fn operation_input(ctx: &mut aide::generate::GenContext, op: &mut aide::openapi::Operation) {
        kit::Json::<T>::operation_input(ctx, op);
        op.security = vec![[(SCHEME.to_owned(), Vec::new())].into_iter().collect()];
    }
}

/// Signing for tests and benchmarks: provider `test` with a random secret made once per process
/// (nothing outside the process can sign for it).
pub mod testing {
    use super::WebhookKeys;

    pub const PROVIDER: &str = "test";

    /// The secret as `CALLS_WEBHOOK_SECRETS` would carry it (64 hex digits).
    pub fn secret() -> &'static str {
        static SECRET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        SECRET.get_or_init(|| {
            let seed = kit::secret::random32().unwrap_or_else(|e| panic!("{e}"));
            kit::secret::hex(&seed)
        })
    }

    /// `CALLS_WEBHOOK_SECRETS` for a service process that accepts [`signature`]s.
    pub fn env() -> String {
        format!("{PROVIDER}:{}", secret())
    }

    pub fn keys() -> WebhookKeys {
        shared().clone()
    }

    fn shared() -> &'static WebhookKeys {
        static KEYS: std::sync::OnceLock<WebhookKeys> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| {
            WebhookKeys::new([(PROVIDER, secret().as_bytes())]).unwrap_or_else(|e| panic!("{e}"))
        })
    }

    /// The `Meridian-Signature` value for `body`, signed now.
    pub fn signature(body: &[u8]) -> String {
        shared()
            .sign(PROVIDER, chrono::Utc::now().timestamp(), body)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NEXT: &[u8] = b"fedcba9876543210fedcba9876543210";

    fn keys() -> WebhookKeys {
        WebhookKeys::new([("telco", SECRET)]).expect("keys")
    }

    #[test]
    fn signed_body_verifies_and_names_its_provider() {
        let k = keys();
        let h = k.sign("telco", 1_000, b"{}").expect("sign");
        assert_eq!(k.verify(&h, b"{}", 1_000), Ok("telco"));
        assert_eq!(k.verify(&h, b"{} ", 1_000), Err(Refused::BadSignature));
    }

    #[test]
    fn replay_window_is_five_minutes_either_side() {
        let k = keys();
        let h = k.sign("telco", 1_000, b"x").expect("sign");
        assert!(k.verify(&h, b"x", 1_300).is_ok());
        assert_eq!(k.verify(&h, b"x", 1_301), Err(Refused::Stale));
        assert!(k.verify(&h, b"x", 700).is_ok());
        assert_eq!(k.verify(&h, b"x", 699), Err(Refused::Stale));
    }

    #[test]
    fn rotation_accepts_either_secret_of_the_provider_only() {
        let old = WebhookKeys::new([("telco", SECRET)]).expect("keys");
        let both = WebhookKeys::new([("telco", NEXT), ("telco", SECRET)]).expect("keys");
        let h = old.sign("telco", 5, b"b").expect("sign");
        assert_eq!(both.verify(&h, b"b", 5), Ok("telco"));
        let other = WebhookKeys::new([("other", SECRET)]).expect("keys");
        assert_eq!(other.verify(&h, b"b", 5), Err(Refused::BadSignature));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let k = keys();
        for h in [
            "",
            "t=5",
            "p=telco,t=5",
            "p=telco,t=x,v1=00",
            "p=tel co,t=5,v1=0000000000000000000000000000000000000000000000000000000000000000",
            "p=telco,t=5,v1=zz00000000000000000000000000000000000000000000000000000000000000",
            "p=telco,t=5,v2=0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert_eq!(k.verify(h, b"", 5), Err(Refused::Malformed), "{h:?}");
        }
    }

    #[test]
    fn configuration_is_checked() {
        assert!(WebhookKeys::parse("telco:short").is_err());
        assert!(WebhookKeys::parse("no-colon").is_err());
        assert!(WebhookKeys::parse("bad name:0123456789abcdef0123456789abcdef").is_err());
        let three = "a:0123456789abcdef0123456789abcdef,a:0123456789abcdef0123456789abcdeX,\
                     a:0123456789abcdef0123456789abcdeY";
        assert!(WebhookKeys::parse(three).is_err());
        let k = WebhookKeys::parse(" telco:0123456789abcdef0123456789abcdef ").expect("parse");
        assert_eq!(k.providers().collect::<Vec<_>>(), ["telco"]);
    }
}
