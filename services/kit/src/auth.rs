//! Who is calling: every request to a service route carries `Authorization: Bearer <JWT>` issued
//! by the platform's identity provider (Cognito per country, or any OIDC issuer), and the kit
//! verifies it before a handler runs.
//!
//! - Signatures are asymmetric only (RS256, ES256, EdDSA); `alg: none` and every HMAC algorithm
//!   are refused, and a key is used only with the algorithm its JWK names (or implies), so a
//!   public key can never be replayed as an HMAC secret.
//! - `iss` must equal [`AuthSettings::issuer`]; the audience must be one of
//!   [`AuthSettings::audiences`], matched against `aud`, or against `client_id` for tokens
//!   without `aud` (Cognito access tokens); `exp` is required, `nbf` honoured, both with a small
//!   leeway.
//! - Keys come from the issuer's JWKS, fetched at start, refreshed periodically and when a token
//!   names an unknown `kid` (at most once per [`AuthSettings::min_refresh`]): verifying a token
//!   never waits on the network unless its key is new.
//!
//! Handlers take a [`Caller`] and state what they need ([`Caller::require_scope`],
//! [`Caller::require_user`]); a missing or invalid token answers 401, a valid one without the
//! right answers 403, both problem+json that never say which check failed.

use std::{
    collections::HashMap,
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use aide::{
    OperationInput,
    generate::GenContext,
    openapi::{Operation, ReferenceOr, SecurityRequirement},
    transform::TransformOperation,
};
use arc_swap::ArcSwap;
use axum::{
    extract::FromRequestParts,
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse},
};
use serde::Deserialize;

pub use jsonwebtoken::jwk::JwkSet as PublicKeys;

use crate::{
    config::{ConfigError, secs_or, var_opt, var_or},
    error::ApiError,
};

/// The OpenAPI security scheme name of bearer tokens.
pub const BEARER_SCHEME: &str = "bearer";
/// The OpenAPI security scheme of signed webhooks (`Meridian-Signature`, see calls' webhook).
pub const SIGNATURE_SCHEME: &str = "webhook-signature";
/// The OpenAPI extension every operation carries, saying who may call it.
pub const CALLER_EXTENSION: &str = "x-meridian-caller";

/// Longest token accepted; real tokens are well under 4 KiB.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Longest `sub` accepted (Cognito subs are UUIDs, client ids 26 characters).
const MAX_SUB_LEN: usize = 256;
/// At most this many scopes are kept from one token.
const MAX_SCOPES: usize = 64;
/// A JWKS larger than this is refused (issuers publish a handful of keys).
const MAX_JWKS_BYTES: usize = 256 * 1024;
const MAX_KEYS: usize = 64;

/// `MERIDIAN_DEV=1`: the explicit development mode in which local fallbacks (a generated signing
/// key, generated calls secrets) are allowed. Nothing else turns them on.
pub fn dev_mode() -> bool {
    std::env::var("MERIDIAN_DEV").is_ok_and(|v| v.trim() == "1")
}

/// Where tokens come from and what they must say.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `AUTH_ISSUER` | — (required outside dev mode) | exact `iss` of accepted tokens |
/// | `AUTH_AUDIENCE` | — (required outside dev mode) | comma-separated accepted audiences (`aud`, or `client_id` when a token has no `aud`) |
/// | `AUTH_JWKS_URL` | — (required outside dev mode) | the issuer's JWKS (https; http only to loopback) |
/// | `AUTH_SCOPE_PREFIX` | empty | stripped from each scope (Cognito: `<resource server identifier>/`) |
/// | `AUTH_LEEWAY_SECS` | 30 | clock skew allowed on `exp`/`nbf` |
/// | `AUTH_JWKS_REFRESH_SECS` | 600 | periodic JWKS refresh |
/// | `AUTH_JWKS_MIN_REFRESH_SECS` | 30 | least time between two fetches triggered by unknown `kid`s |
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks_url: String,
    pub scope_prefix: String,
    pub leeway: Duration,
    pub refresh: Duration,
    pub min_refresh: Duration,
}

impl AuthSettings {
    /// The issuer configuration from the environment; `None` when none of `AUTH_ISSUER`,
    /// `AUTH_AUDIENCE`, `AUTH_JWKS_URL` is set. Setting only some of them is an error naming the
    /// missing one.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        let issuer: Option<String> = var_opt("AUTH_ISSUER")?;
        let audience: Option<String> = var_opt("AUTH_AUDIENCE")?;
        let jwks_url: Option<String> = var_opt("AUTH_JWKS_URL")?;
        if issuer.is_none() && audience.is_none() && jwks_url.is_none() {
            return Ok(None);
        }
        let missing = |name: &str| ConfigError {
            name: name.into(),
            value: String::new(),
            reason: "required with the other AUTH_* settings".into(),
        };
        let issuer = issuer.ok_or_else(|| missing("AUTH_ISSUER"))?;
        let audiences: Vec<String> = audience
            .ok_or_else(|| missing("AUTH_AUDIENCE"))?
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        if audiences.is_empty() {
            return Err(missing("AUTH_AUDIENCE"));
        }
        let jwks_url = jwks_url.ok_or_else(|| missing("AUTH_JWKS_URL"))?;
        check_jwks_url(&jwks_url).map_err(|reason| ConfigError {
            name: "AUTH_JWKS_URL".into(),
            value: jwks_url.clone(),
            reason,
        })?;
        Ok(Some(Self {
            issuer,
            audiences,
            jwks_url,
            scope_prefix: var_or("AUTH_SCOPE_PREFIX", String::new())?,
            leeway: secs_or("AUTH_LEEWAY_SECS", Duration::from_secs(30))?,
            refresh: secs_or("AUTH_JWKS_REFRESH_SECS", Duration::from_mins(10))?,
            min_refresh: secs_or("AUTH_JWKS_MIN_REFRESH_SECS", Duration::from_secs(30))?,
        }))
    }

    /// [`from_env`](Self::from_env), failing (naming `AUTH_ISSUER`) when nothing is configured:
    /// what a production start calls.
    pub fn required_from_env() -> Result<Self, ConfigError> {
        Self::from_env()?.ok_or_else(Self::missing)
    }

    fn missing() -> ConfigError {
        ConfigError {
            name: "AUTH_ISSUER".into(),
            value: String::new(),
            reason: "required (with AUTH_AUDIENCE and AUTH_JWKS_URL): the identity provider \
                     whose tokens this service accepts; only MERIDIAN_DEV=1 runs without one"
                .into(),
        }
    }

    /// Settings for an issuer whose keys are given, not fetched (dev mode, tests).
    pub fn local(issuer: &str, audience: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            audiences: vec![audience.to_owned()],
            jwks_url: String::new(),
            scope_prefix: String::new(),
            leeway: Duration::from_secs(30),
            refresh: Duration::from_mins(10),
            min_refresh: Duration::from_secs(30),
        }
    }
}

fn check_jwks_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err("must be https (http is allowed only to loopback)".into()),
        _ => Err("must be an https URL".into()),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The verified identity of a request. Cheap to clone (shared, immutable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's subject: a user id, or an app client id for service tokens.
    pub sub: Arc<str>,
    scopes: Arc<[String]>,
}

impl Caller {
    pub fn new(
        sub: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            sub: Arc::from(sub.into()),
            scopes: scopes.into_iter().map(Into::into).collect(),
        }
    }

    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// 403 unless the token carries `scope`.
    pub fn require_scope(&self, scope: &str) -> Result<(), ApiError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(forbidden())
        }
    }

    /// 403 unless the caller is `user_id` itself or holds one of `scopes` (a service acting for
    /// users, or an admin).
    pub fn require_user(&self, user_id: &str, scopes: &[&str]) -> Result<(), ApiError> {
        if &*self.sub == user_id || scopes.iter().any(|s| self.has_scope(s)) {
            Ok(())
        } else {
            Err(forbidden())
        }
    }
}

/// A valid token that does not grant the operation.
pub fn forbidden() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden")
        .with_detail("the credentials do not grant this operation")
}

/// Why a token was refused. Logged (at debug) and counted, never sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("algorithm not allowed")]
    Algorithm,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("bad signature")]
    Signature,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("claims invalid")]
    Claims,
    #[error("no verifier configured")]
    Unconfigured,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Algorithm => "algorithm",
            Self::UnknownKey => "unknown_key",
            Self::Signature => "signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::Claims => "claims",
            Self::Unconfigured => "unconfigured",
        }
    }
}

/// The 401 answer: problem+json plus `WWW-Authenticate` (RFC 6750), the same for every reason.
#[derive(Debug)]
pub struct Unauthorized;

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        unauthorized(
            r#"Bearer realm="meridian", error="invalid_token""#,
            "a valid bearer token is required",
        )
    }
}

/// The one 401 of every credential check (bearer tokens, webhook signatures): problem+json and
/// the `WWW-Authenticate` challenge of the scheme that was expected.
pub fn unauthorized(challenge: &'static str, detail: &'static str) -> Response {
    let mut res = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
        .with_detail(detail)
        .into_response();
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    res
}

/// One usable verification key.
struct Key {
    key: DecodingKey,
    alg: Algorithm,
}

struct KeySet {
    keys: HashMap<String, Arc<Key>>,
}

/// Where fresh keys come from.
struct Remote {
    url: http::Uri,
    client: JwksClient,
    min_refresh: Duration,
    /// Single flight: one fetch at a time; the instant of the last attempt rate-limits them.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
}

type JwksClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Empty<bytes::Bytes>,
>;

/// Tokens this process has already verified, keyed by their exact text: a service calls with
/// one token for its whole lifetime (an hour), and an Ed25519 or RSA check costs more than the
/// rest of a request. Only a byte-identical token hits, its expiry is checked on every use, the
/// map is cleared whenever the key set changes (a key removed at the issuer stops its tokens at
/// the next refresh) and when it reaches [`MAX_CACHED`] entries (bounded memory, no eviction
/// bookkeeping on the hot path). Refused tokens are never cached.
struct Verified {
    caller: Caller,
    /// `exp` as unix seconds.
    exp: i64,
}

const MAX_CACHED: usize = 4096;

/// Verifies bearer tokens. One per process, shared by every service through
/// [`HttpSettings`](crate::app::HttpSettings).
pub struct Authenticator {
    issuer: String,
    audiences: Vec<String>,
    scope_prefix: String,
    leeway: Duration,
    keys: ArcSwap<KeySet>,
    remote: Option<Remote>,
    verified: std::sync::Mutex<HashMap<Arc<str>, Verified>>,
    /// Bumped with every key-set change, under the `verified` lock: a verification that started
    /// under an older key set does not enter the cache.
    generation: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("keys", &self.keys.load().keys.len())
            .finish_non_exhaustive()
    }
}

/// Claims the kit reads; the rest of the token is ignored.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default)]
    aud: Option<OneOrMany>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<Vec<String>>,
    /// Cognito marks its ID tokens `id`: only access tokens are credentials for an API.
    #[serde(default)]
    token_use: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Authenticator {
    /// Refuses every token: what an application gets when nothing was configured (fail closed).
    pub fn deny_all() -> Arc<Self> {
        Arc::new(Self {
            issuer: String::new(),
            audiences: Vec::new(),
            scope_prefix: String::new(),
            leeway: Duration::ZERO,
            keys: ArcSwap::from_pointee(KeySet {
                keys: HashMap::new(),
            }),
            remote: None,
            verified: std::sync::Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Trusts exactly the keys of `jwks` (dev mode, tests).
    pub fn with_jwks(settings: &AuthSettings, jwks: &JwkSet) -> Arc<Self> {
        let auth = Self::unloaded(settings, None);
        auth.replace_keys(parse_jwks(jwks));
        Arc::new(auth)
    }

    /// Fetches keys from `settings.jwks_url` now (a failure is logged, not fatal: tokens answer
    /// 401 until a fetch succeeds) and keeps them fresh in the background.
    pub async fn remote(settings: &AuthSettings) -> Result<Arc<Self>, ConfigError> {
        let url: http::Uri = settings.jwks_url.parse().map_err(|e| ConfigError {
            name: "AUTH_JWKS_URL".into(),
            value: settings.jwks_url.clone(),
            reason: format!("not a URL: {e}"),
        })?;
        let client = jwks_client().map_err(|reason| ConfigError {
            name: "AUTH_JWKS_URL".into(),
            value: settings.jwks_url.clone(),
            reason,
        })?;
        let auth = Arc::new(Self::unloaded(
            settings,
            Some(Remote {
                url,
                client,
                min_refresh: settings.min_refresh,
                last_attempt: tokio::sync::Mutex::new(None),
            }),
        ));
        auth.refresh(true).await;
        let weak = Arc::downgrade(&auth);
        let every = settings.refresh.max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(auth) = weak.upgrade() else { return };
                auth.refresh(true).await;
            }
        });
        Ok(auth)
    }

    fn unloaded(settings: &AuthSettings, remote: Option<Remote>) -> Self {
        Self {
            issuer: settings.issuer.clone(),
            audiences: settings.audiences.clone(),
            scope_prefix: settings.scope_prefix.clone(),
            leeway: settings.leeway,
            keys: ArcSwap::from_pointee(KeySet {
                keys: HashMap::new(),
            }),
            remote,
            verified: std::sync::Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Installs a new key set; tokens verified under the old one must be verified again.
    fn replace_keys(&self, set: KeySet) {
        let mut cache = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.keys.store(Arc::new(set));
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        cache.clear();
    }

    fn same_kids(&self, set: &KeySet) -> bool {
        let current = self.keys.load();
        current.keys.len() == set.keys.len()
            && set.keys.keys().all(|k| current.keys.contains_key(k))
    }

    /// How many keys are currently trusted.
    pub fn key_count(&self) -> usize {
        self.keys.load().keys.len()
    }

    /// Fetches the JWKS unless one was fetched less than `min_refresh` ago (`force` skips that
    /// wait, for the periodic refresh). Returns whether the key set was replaced.
    async fn refresh(&self, force: bool) -> bool {
        let Some(remote) = &self.remote else {
            return false;
        };
        // A token naming an unknown kid never queues behind a fetch in flight: it is refused
        // (401) at once, so made-up kids cannot hold requests while the issuer is slow.
        let mut last = if force {
            remote.last_attempt.lock().await
        } else {
            match remote.last_attempt.try_lock() {
                Ok(guard) => guard,
                Err(_) => return false,
            }
        };
        if !force && last.is_some_and(|t| t.elapsed() < remote.min_refresh) {
            return false;
        }
        *last = Some(Instant::now());
        match fetch_jwks(&remote.client, &remote.url).await {
            Ok(jwks) => {
                let set = parse_jwks(&jwks);
                if set.keys.is_empty() {
                    // A valid document without a usable key is the issuer withdrawing every key
                    // (or rotating to an algorithm this service refuses): fail closed, loudly.
                    // Only a failed fetch keeps the previous keys.
                    tracing::error!(url = %remote.url, "JWKS has no usable key: every token is refused until it has one");
                    metrics::counter!("auth_jwks_fetches_total", "outcome" => "empty").increment(1);
                } else if self.same_kids(&set) {
                    // Unchanged: keep the keys and the tokens already verified with them.
                    metrics::counter!("auth_jwks_fetches_total", "outcome" => "ok").increment(1);
                    return false;
                }
                tracing::info!(keys = set.keys.len(), "JWKS loaded");
                self.replace_keys(set);
                metrics::counter!("auth_jwks_fetches_total", "outcome" => "ok").increment(1);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, url = %remote.url, "JWKS fetch failed; keeping the previous keys");
                metrics::counter!("auth_jwks_fetches_total", "outcome" => "error").increment(1);
                false
            }
        }
    }

    /// Verifies `token` and returns its caller.
    pub async fn verify(&self, token: &str) -> Result<Caller, Refusal> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(Refusal::Malformed);
        }
        let now = chrono::Utc::now().timestamp();
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        if let Some(caller) = self.cached(token, now, leeway) {
            return Ok(caller);
        }
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let (caller, exp) = self.verify_uncached(token).await?;
        if let Ok(mut cache) = self.verified.lock()
            && self.generation.load(std::sync::atomic::Ordering::SeqCst) == generation
        {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(
                Arc::from(token),
                Verified {
                    caller: caller.clone(),
                    exp,
                },
            );
        }
        Ok(caller)
    }

    /// A previously verified, still unexpired token's caller.
    fn cached(&self, token: &str, now: i64, leeway: i64) -> Option<Caller> {
        let mut cache = self.verified.lock().ok()?;
        let hit = cache.get(token)?;
        if now > hit.exp.saturating_add(leeway) {
            cache.remove(token);
            return None;
        }
        Some(hit.caller.clone())
    }

    async fn verify_uncached(&self, token: &str) -> Result<(Caller, i64), Refusal> {
        // `decode_header` fails on algorithms the crate does not know, `none` among them.
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
        ) {
            return Err(Refusal::Algorithm);
        }
        let kid = header.kid.as_deref().ok_or(Refusal::UnknownKey)?;
        let key = match self.key(kid) {
            Some(k) => k,
            None => {
                // A new kid: the issuer may have rotated. One fetch per min_refresh at most.
                self.refresh(false).await;
                self.key(kid).ok_or(Refusal::UnknownKey)?
            }
        };
        if key.alg != header.alg {
            return Err(Refusal::Algorithm);
        }
        let claims = self.decode(token, &key)?;
        let exp = claims.exp;
        Ok((self.caller(claims)?, exp))
    }

    fn key(&self, kid: &str) -> Option<Arc<Key>> {
        self.keys.load().keys.get(kid).cloned()
    }

    fn decode(&self, token: &str, key: &Key) -> Result<Claims, Refusal> {
        use jsonwebtoken::errors::ErrorKind;
        let mut v = Validation::new(key.alg);
        v.leeway = self.leeway.as_secs();
        v.validate_exp = true;
        v.validate_nbf = true;
        // Audience is checked below (aud or Cognito's client_id).
        v.validate_aud = false;
        v.set_issuer(&[&self.issuer]);
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        jsonwebtoken::decode::<Claims>(token.as_bytes(), &key.key, &v)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => Refusal::Signature,
                ErrorKind::ExpiredSignature => Refusal::Expired,
                ErrorKind::ImmatureSignature => Refusal::NotYetValid,
                ErrorKind::InvalidIssuer => Refusal::Issuer,
                ErrorKind::InvalidAlgorithm => Refusal::Algorithm,
                ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) => {
                    Refusal::Malformed
                }
                _ => Refusal::Claims,
            })
    }

    fn caller(&self, claims: Claims) -> Result<Caller, Refusal> {
        if claims.token_use.as_deref().is_some_and(|u| u != "access") {
            return Err(Refusal::Claims);
        }
        let audience_ok = match &claims.aud {
            Some(OneOrMany::One(a)) => self.audiences.contains(a),
            Some(OneOrMany::Many(list)) => list.iter().any(|a| self.audiences.contains(a)),
            None => claims
                .client_id
                .as_ref()
                .is_some_and(|c| self.audiences.contains(c)),
        };
        if !audience_ok {
            return Err(Refusal::Audience);
        }
        if claims.sub.is_empty()
            || claims.sub.len() > MAX_SUB_LEN
            || claims.sub.chars().any(char::is_control)
        {
            return Err(Refusal::Claims);
        }
        let raw: Vec<&str> = match (&claims.scope, &claims.scp) {
            (Some(s), _) => s.split_ascii_whitespace().collect(),
            (None, Some(list)) => list.iter().map(String::as_str).collect(),
            (None, None) => Vec::new(),
        };
        let scopes = raw
            .into_iter()
            .take(MAX_SCOPES)
            // With a prefix, only the resource server's own scopes count: a bare
            // `streams:admin` from elsewhere grants nothing.
            .filter_map(|s| s.strip_prefix(self.scope_prefix.as_str()))
            .map(str::to_owned)
            .collect();
        Ok(Caller {
            sub: Arc::from(claims.sub),
            scopes,
        })
    }
}

fn jwks_client() -> Result<JwksClient, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(|e| format!("TLS setup: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https),
    )
}

async fn fetch_jwks(client: &JwksClient, url: &http::Uri) -> Result<JwkSet, String> {
    use http_body_util::BodyExt;
    let req = http::Request::get(url.clone())
        .header(header::ACCEPT, "application/json")
        .body(http_body_util::Empty::new())
        .map_err(|e| e.to_string())?;
    let res = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        return Err(format!("HTTP {}", res.status()));
    }
    let body = http_body_util::Limited::new(res.into_body(), MAX_JWKS_BYTES);
    let bytes = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .map_err(|_| "timed out reading the body".to_owned())?
        .map_err(|e| e.to_string())?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| format!("not a JWKS: {e}"))
}

/// The keys of `jwks` this verifier can use: signing keys with a `kid` and one of the allowed
/// algorithms (stated by `alg`, or implied by the key type when `alg` is absent).
fn parse_jwks(jwks: &JwkSet) -> KeySet {
    let mut keys = HashMap::new();
    for jwk in jwks.keys.iter().take(MAX_KEYS) {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let Some(alg) = key_algorithm(jwk) else {
            tracing::warn!(kid = %kid.chars().take(64).collect::<String>(), "JWKS key with an algorithm this service does not accept; ignored");
            continue;
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid, Arc::new(Key { key, alg }));
            }
            Err(e) => tracing::warn!(error = %e, "unusable JWKS key; ignored"),
        }
    }
    KeySet { keys }
}

fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(implied),
        Some(KeyAlgorithm::RS256) if implied == Algorithm::RS256 => Some(implied),
        Some(KeyAlgorithm::ES256) if implied == Algorithm::ES256 => Some(implied),
        Some(KeyAlgorithm::EdDSA) if implied == Algorithm::EdDSA => Some(implied),
        Some(_) => None,
    }
}

fn bearer(parts: &Parts) -> Result<&str, Refusal> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or(Refusal::Missing)?;
    let value = value.to_str().map_err(|_| Refusal::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(Refusal::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Refusal::Malformed);
    }
    Ok(token.trim())
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Unauthorized;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let result = match parts.extensions.get::<Arc<Authenticator>>() {
            None => Err(Refusal::Unconfigured),
            Some(auth) => match bearer(parts) {
                Ok(token) => auth.verify(token).await,
                Err(r) => Err(r),
            },
        };
        result.map_err(|refusal| {
            if refusal == Refusal::Unconfigured {
                tracing::error!("a route needs a caller but the application has no Authenticator");
            } else {
                tracing::debug!(reason = %refusal, "token refused");
            }
            metrics::counter!("auth_refusals_total", "reason" => refusal.label()).increment(1);
            Unauthorized
        })
    }
}

/// Documents every operation that takes a [`Caller`]: the bearer scheme and its 401/403.
impl OperationInput for Caller {
    fn operation_input(_ctx: &mut GenContext, operation: &mut Operation) {
        if operation.security.is_empty() {
            operation.security.push(bearer_requirement(&[]));
        }
    }

    fn inferred_early_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<aide::openapi::StatusCode>, aide::openapi::Response)> {
        use aide::OperationOutput;
        let Some(problem) = ApiError::operation_response(ctx, operation) else {
            return Vec::new();
        };
        let mut unauthorized = problem.clone();
        unauthorized.description = "missing or invalid bearer token".into();
        let mut forbidden = problem;
        forbidden.description = "the token does not grant this operation".into();
        vec![
            (Some(aide::openapi::StatusCode::Code(401)), unauthorized),
            (Some(aide::openapi::StatusCode::Code(403)), forbidden),
        ]
    }
}

fn bearer_requirement(scopes: &[&str]) -> SecurityRequirement {
    [(
        BEARER_SCHEME.to_owned(),
        scopes.iter().map(|s| (*s).to_owned()).collect(),
    )]
    .into_iter()
    .collect()
}

/// Route documentation: the operation needs a bearer token whose `sub` is `owner` (a phrase such
/// as "the user in the path"), or one carrying any of `scopes`. Records the rule in
/// `x-meridian-caller` and in the description.
pub fn requires<'a>(
    op: TransformOperation<'a>,
    owner: Option<&str>,
    scopes: &[&str],
) -> TransformOperation<'a> {
    let rule = match (owner, scopes) {
        (Some(owner), []) => owner.to_owned(),
        (Some(owner), s) => format!("{owner}, or a token with {}", s.join(" or ")),
        (None, s) => format!("a token with {}", s.join(" or ")),
    };
    let mut op = op;
    let inner = op.inner_mut();
    inner.security = vec![bearer_requirement(scopes)];
    note_caller(inner, &format!("bearer: {rule}"));
    op
}

/// Route documentation: deliberately callable without a bearer token, for the reason given
/// (e.g. authenticated by a webhook signature instead).
pub fn public<'a>(op: TransformOperation<'a>, why: &str) -> TransformOperation<'a> {
    let mut op = op;
    let inner = op.inner_mut();
    inner.security = Vec::new();
    note_caller(inner, &format!("public: {why}"));
    op
}

fn note_caller(op: &mut Operation, rule: &str) {
    op.extensions
        .insert(CALLER_EXTENSION.to_owned(), serde_json::json!(rule));
    let line = format!("Caller: {rule}.");
    op.description = Some(match op.description.take() {
        Some(d) => format!("{d}\n\n{line}"),
        None => line,
    });
}

/// Adds the security schemes (bearer tokens, signed webhooks) to `api`'s components.
pub fn document_scheme(api: &mut aide::openapi::OpenApi) {
    let components = api.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        BEARER_SCHEME.to_owned(),
        ReferenceOr::Item(aide::openapi::SecurityScheme::Http {
            scheme: "bearer".into(),
            bearer_format: Some("JWT".into()),
            description: Some(
                "A JWT from the platform's issuer (RS256, ES256 or EdDSA); the scopes listed \
                 per operation are alternatives"
                    .into(),
            ),
            extensions: Default::default(),
        }),
    );
    components.security_schemes.insert(
        SIGNATURE_SCHEME.to_owned(),
        ReferenceOr::Item(aide::openapi::SecurityScheme::ApiKey {
            location: aide::openapi::ApiKeyLocation::Header,
            name: "Meridian-Signature".into(),
            description: Some(
                "For webhooks from a provider, not a user: p=<provider>,t=<unix seconds>,\
                 v1=<hex HMAC-SHA256 of \"<t>.<raw body>\" under the provider's secret>; t must \
                 be within 300 s of the server's clock"
                    .into(),
            ),
            extensions: Default::default(),
        }),
    );
}

/// The process's verifier: the configured issuer (`AUTH_*`), else — only with `MERIDIAN_DEV=1` —
/// the local dev issuer ([`dev::issuer`]), else an error naming `AUTH_ISSUER`. Call it after
/// logging starts, so the dev-mode warning is seen.
pub async fn from_env() -> Result<Arc<Authenticator>, ConfigError> {
    from_env_with(dev_mode()).await
}

/// [`from_env`] with dev mode decided by the caller (`meridian serve` is dev mode by definition).
pub async fn from_env_with(dev: bool) -> Result<Arc<Authenticator>, ConfigError> {
    if let Some(settings) = AuthSettings::from_env()? {
        tracing::info!(issuer = %settings.issuer, jwks = %settings.jwks_url, "verifying bearer tokens");
        return Authenticator::remote(&settings).await;
    }
    if !dev {
        return Err(AuthSettings::missing());
    }
    let issuer = dev::issuer().map_err(|reason| ConfigError {
        name: "MERIDIAN_DEV".into(),
        value: "1".into(),
        reason,
    })?;
    tracing::warn!(
        issuer = %issuer.issuer,
        key = %dev::key_path().display(),
        "DEVELOPMENT MODE (MERIDIAN_DEV=1): trusting the local dev signing key, not an identity \
         provider; never run like this in production"
    );
    Ok(issuer.authenticator())
}

/// The local development issuer: one Ed25519 key per user account, created on first use in the
/// user's state directory (mode 0600 in a 0700 directory) and reused, so `meridian token` mints
/// tokens that a running `meridian serve` accepts.
pub mod dev {
    use std::path::PathBuf;

    pub use crate::secret::load_or_create as load_or_create_secret;

    use super::local::LocalIssuer;

    pub const ISSUER: &str = "meridian-dev";
    pub const AUDIENCE: &str = "meridian";

    /// [`crate::config::state_dir`], or `$TMPDIR/meridian` for an account without a home (the
    /// secrets in it are checked to be this user's alone, [`crate::secret::load_or_create`]).
    pub fn state_dir() -> PathBuf {
        crate::config::state_dir().unwrap_or_else(|| std::env::temp_dir().join("meridian"))
    }

    pub fn key_path() -> PathBuf {
        state_dir().join("dev-signing-key")
    }

    /// The dev issuer, creating its key on first use.
    pub fn issuer() -> Result<LocalIssuer, String> {
        let seed = load_or_create_secret(&key_path())?;
        LocalIssuer::from_seed(ISSUER, AUDIENCE, &seed)
    }
}

/// Signing tokens with a local Ed25519 key: the dev issuer of `meridian serve` / `meridian token`
/// and the tests' issuer. Never used to verify production traffic: a service trusts it only in
/// dev mode or in tests, through [`Authenticator::with_jwks`].
pub mod local {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk, jwk::JwkSet};

    /// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): the 32-byte seed follows.
    const PKCS8_ED25519_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];

    /// An Ed25519 signing key with its public JWK.
    pub struct LocalIssuer {
        pub issuer: String,
        pub audience: String,
        key: EncodingKey,
        jwk: Jwk,
        kid: String,
    }

    impl LocalIssuer {
        /// A fresh random key.
        pub fn generate(issuer: &str, audience: &str) -> Result<Self, String> {
            Self::from_seed(issuer, audience, &crate::secret::random32()?)
        }

        /// The key whose seed is `seed` (what a key file stores).
        pub fn from_seed(issuer: &str, audience: &str, seed: &[u8; 32]) -> Result<Self, String> {
            let mut der = PKCS8_ED25519_PREFIX.to_vec();
            der.extend_from_slice(seed);
            let key = EncodingKey::from_ed_der(&der);
            let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA)
                .map_err(|e| format!("derive public key: {e}"))?;
            let kid = jwk
                .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .map_err(|e| format!("thumbprint: {e}"))?;
            jwk.common.key_id = Some(kid.clone());
            Ok(Self {
                issuer: issuer.to_owned(),
                audience: audience.to_owned(),
                key,
                jwk,
                kid,
            })
        }

        pub fn kid(&self) -> &str {
            &self.kid
        }

        /// The public key set to serve / trust.
        pub fn jwks(&self) -> JwkSet {
            JwkSet {
                keys: vec![self.jwk.clone()],
            }
        }

        /// Settings that trust this issuer.
        pub fn settings(&self) -> super::AuthSettings {
            super::AuthSettings::local(&self.issuer, &self.audience)
        }

        /// An [`Authenticator`](super::Authenticator) trusting exactly this key.
        pub fn authenticator(&self) -> std::sync::Arc<super::Authenticator> {
            super::Authenticator::with_jwks(&self.settings(), &self.jwks())
        }

        /// A token for `sub` with `scopes`, valid for `ttl` from now.
        pub fn token(&self, sub: &str, scopes: &[&str], ttl: std::time::Duration) -> String {
            let now = chrono::Utc::now().timestamp();
            let claims = serde_json::json!({
                "iss": self.issuer,
                "aud": self.audience,
                "sub": sub,
                "iat": now,
                "nbf": now,
                "exp": now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
                "scope": scopes.join(" "),
            });
            self.sign(&claims)
        }

        /// Signs arbitrary claims (tests build expired, wrong-issuer, ... tokens with it).
        pub fn sign(&self, claims: &serde_json::Value) -> String {
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(self.kid.clone());
            // Signing our own well-formed claims with our own valid key cannot fail.
            jsonwebtoken::encode(&header, claims, &self.key).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_url_must_be_https_unless_loopback() {
        assert!(
            check_jwks_url("https://cognito-idp.eu-north-1.amazonaws.com/x/.well-known/jwks.json")
                .is_ok()
        );
        assert!(check_jwks_url("http://127.0.0.1:9/jwks").is_ok());
        assert!(check_jwks_url("http://localhost/jwks").is_ok());
        assert!(check_jwks_url("http://[::1]:8/jwks").is_ok());
        assert!(check_jwks_url("http://idp.example.com/jwks").is_err());
        assert!(check_jwks_url("ftp://idp.example.com/jwks").is_err());
        assert!(check_jwks_url("not a url").is_err());
    }

    #[test]
    fn user_rule_and_scope_rule() {
        let alice = Caller::new("alice", ["openid"]);
        assert!(alice.require_user("alice", &["streams:sessions"]).is_ok());
        assert!(alice.require_user("bob", &["streams:sessions"]).is_err());
        assert!(alice.require_scope("streams:admin").is_err());
        let svc = Caller::new("playback", ["streams:sessions"]);
        assert!(svc.require_user("bob", &["streams:sessions"]).is_ok());
        assert!(svc.require_scope("streams:admin").is_err());
        assert_eq!(
            alice.require_scope("x").err().map(|e| e.status),
            Some(StatusCode::FORBIDDEN)
        );
    }

    #[test]
    fn keys_are_used_only_with_their_algorithm() {
        let issuer = local::LocalIssuer::generate("i", "a").expect("key");
        let jwks = issuer.jwks();
        assert_eq!(key_algorithm(&jwks.keys[0]), Some(Algorithm::EdDSA));
        let mut hs = jwks.keys[0].clone();
        hs.common.key_algorithm = Some(KeyAlgorithm::HS256);
        assert_eq!(
            key_algorithm(&hs),
            None,
            "an OKP key claiming HS256 is refused"
        );
        let mut rs = jwks.keys[0].clone();
        rs.common.key_algorithm = Some(KeyAlgorithm::RS256);
        assert_eq!(
            key_algorithm(&rs),
            None,
            "an OKP key claiming RS256 is refused"
        );
    }

    #[tokio::test]
    async fn cognito_access_tokens_use_client_id_and_prefixed_scopes() {
        let issuer = local::LocalIssuer::generate("https://idp", "client-1").expect("key");
        let mut settings = issuer.settings();
        settings.scope_prefix = "meridian/".into();
        let auth = Authenticator::with_jwks(&settings, &issuer.jwks());
        let now = chrono::Utc::now().timestamp();
        let token = issuer.sign(&serde_json::json!({
            "iss": "https://idp", "sub": "svc", "client_id": "client-1", "exp": now + 60,
            "scope": "meridian/streams:sessions openid",
        }));
        let caller = auth.verify(&token).await.expect("accepted");
        assert_eq!(
            caller.scopes(),
            ["streams:sessions"],
            "only the resource server's own scopes count"
        );
        let id_token = issuer.sign(&serde_json::json!({
            "iss": "https://idp", "sub": "u", "aud": "client-1", "exp": now + 60, "token_use": "id",
        }));
        assert_eq!(
            auth.verify(&id_token).await,
            Err(Refusal::Claims),
            "an ID token is no credential"
        );
        let other = issuer.sign(&serde_json::json!({
            "iss": "https://idp", "sub": "svc", "client_id": "client-2", "exp": now + 60,
        }));
        assert_eq!(auth.verify(&other).await, Err(Refusal::Audience));
    }
}
