//! EKS bearer tokens from the operator's own IAM role (IRSA), what `aws eks get-token` prints,
//! made in-process: the operator image has no `aws` binary, and a token made from the pod's
//! role replaces the long-lived credentials a kubeconfig Secret would otherwise hold.
//!
//! The token is a presigned STS `GetCallerIdentity` URL: `GET https://sts.<region>.amazonaws.com/
//! ?Action=GetCallerIdentity&Version=2011-06-15`, signed (SigV4, query parameters, 60 s) with the
//! header `x-k8s-aws-id: <cluster name>` among the signed headers, so that it is good for that one
//! cluster; the token is `k8s-aws-v1.` followed by the URL in unpadded base64url. EKS's
//! authenticator calls that URL, learns the role, and maps it through the cluster's access entries
//! (terraform/modules/eks). EKS accepts a token for 15 minutes after it was signed, whatever
//! X-Amz-Expires says; the operator makes a new one for every client it builds (one per target
//! per reconcile).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine as _;

/// Prefix of every EKS token (the authenticator's token version).
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The header that binds a token to one cluster.
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";
/// What `aws eks get-token` presigns for (EKS ignores it past its own 15 minutes).
pub const PRESIGN_EXPIRY: Duration = Duration::from_mins(1);

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cluster name {0:?} is not an EKS cluster name")]
    BadClusterName(String),
    #[error("region {0:?} is not an AWS region")]
    BadRegion(String),
    #[error("signing the STS request: {0}")]
    Sign(String),
}

/// The STS endpoint of `region` (regional endpoints: EKS validates against the cluster's region).
pub fn sts_url(region: &str) -> String {
    format!("https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15")
}

/// An EKS token for `cluster` in `region`, signed with `credentials` at `time`.
/// Deterministic for the same inputs (the unit tests pin time and credentials).
pub fn token(
    cluster: &str,
    region: &str,
    credentials: &Credentials,
    time: SystemTime,
) -> Result<String, TokenError> {
    // EKS names: 1-100 of [0-9A-Za-z_-], starting alphanumerically. Checked so the value is a
    // valid header and nothing else ends up signed.
    let valid_name = !cluster.is_empty()
        && cluster.len() <= 100
        && cluster.starts_with(|c: char| c.is_ascii_alphanumeric())
        && cluster
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_name {
        return Err(TokenError::BadClusterName(cluster.to_owned()));
    }
    let valid_region = !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid_region {
        return Err(TokenError::BadRegion(region.to_owned()));
    }

    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_EXPIRY);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| TokenError::Sign(e.to_string()))?
        .into();
    let url = sts_url(region);
    let host = format!("sts.{region}.amazonaws.com");
    let request = SignableRequest::new(
        "GET",
        url.as_str(),
        [("host", host.as_str()), (CLUSTER_ID_HEADER, cluster)].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| TokenError::Sign(e.to_string()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| TokenError::Sign(e.to_string()))?
        .into_parts();

    // The signed URL: the original query, then the signing parameters (X-Amz-*), encoded.
    let mut signed = url;
    for (name, value) in instructions.params() {
        signed.push('&');
        signed.push_str(name);
        signed.push('=');
        signed.push_str(&form_encode(value));
    }
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signed)
    ))
}

/// RFC 3986 percent-encoding of a query value (SigV4's: unreserved characters stay).
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The current credentials of the pod's IAM role (a provider from the default chain, which on
/// EKS reads IRSA's web identity token and refreshes the role session before it expires).
pub async fn role_credentials(
    provider: &aws_credential_types::provider::SharedCredentialsProvider,
) -> Result<Credentials, TokenError> {
    use aws_credential_types::provider::ProvideCredentials as _;
    provider
        .provide_credentials()
        .await
        .map_err(|e| TokenError::Sign(format!("the pod's IAM role credentials: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed() -> (Credentials, SystemTime) {
        // AWS's documentation example key; the time is 2026-01-02T03:04:05Z.
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        (
            creds,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_323_045),
        )
    }

    fn decode(token: &str) -> String {
        let b64 = token
            .strip_prefix(TOKEN_PREFIX)
            .expect("k8s-aws-v1. prefix");
        assert!(!b64.contains('='), "unpadded");
        assert!(!b64.contains('+') && !b64.contains('/'), "base64url");
        String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b64)
                .expect("base64url"),
        )
        .expect("a URL")
    }

    /// The query parameter `name` of `url`, still percent-encoded.
    fn param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
        url.split_once('?')?
            .1
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }

    #[test]
    fn the_token_is_a_presigned_get_caller_identity_bound_to_the_cluster() {
        let (creds, time) = fixed();
        let t = token("meridian-prod-no", "eu-north-1", &creds, time).unwrap();
        let url = decode(&t);
        assert!(
            url.starts_with(
                "https://sts.eu-north-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
            ),
            "{url}"
        );
        assert_eq!(param(&url, "X-Amz-Algorithm"), Some("AWS4-HMAC-SHA256"));
        assert_eq!(
            param(&url, "X-Amz-Credential"),
            Some("AKIDEXAMPLE%2F20260102%2Feu-north-1%2Fsts%2Faws4_request")
        );
        assert_eq!(param(&url, "X-Amz-Date"), Some("20260102T030405Z"));
        assert_eq!(param(&url, "X-Amz-Expires"), Some("60"));
        // The cluster header is signed: the token is good for this cluster only.
        assert_eq!(
            param(&url, "X-Amz-SignedHeaders"),
            Some("host%3Bx-k8s-aws-id")
        );
        let sig = param(&url, "X-Amz-Signature").expect("a signature");
        assert_eq!(sig.len(), 64);
        assert!(sig.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(param(&url, "X-Amz-Security-Token").is_none());
    }

    /// SigV4 by hand (AWS's documented algorithm, not aws-sigv4): what STS will compute from the
    /// URL and the two signed headers.
    fn expected_signature(url: &str, cluster: &str, secret: &str) -> String {
        use hmac::{Hmac, KeyInit as _, Mac as _};
        use sha2::{Digest as _, Sha256};
        fn hmac(key: &[u8], data: &str) -> Vec<u8> {
            let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
            m.update(data.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
        fn hex(bytes: &[u8]) -> String {
            bytes.iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
        }
        let (base, query) = url.split_once('?').expect("a query");
        let host = base.trim_start_matches("https://").trim_end_matches('/');
        let mut pairs: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.starts_with("X-Amz-Signature="))
            .collect();
        pairs.sort_unstable();
        let date = param(url, "X-Amz-Date").expect("a date");
        let scope = format!("{}/eu-north-1/sts/aws4_request", &date[..8]);
        let canonical = format!(
            "GET\n/\n{}\nhost:{host}\nx-k8s-aws-id:{cluster}\n\nhost;x-k8s-aws-id\n{}",
            pairs.join("&"),
            hex(&Sha256::digest(b""))
        );
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let k_date = hmac(format!("AWS4{secret}").as_bytes(), &date[..8]);
        let k_region = hmac(&k_date, "eu-north-1");
        let k_service = hmac(&k_region, "sts");
        let k_signing = hmac(&k_service, "aws4_request");
        hex(&hmac(&k_signing, &to_sign))
    }

    #[test]
    fn the_signature_is_the_sigv4_signature_sts_recomputes() {
        let (creds, time) = fixed();
        let url = decode(&token("meridian-prod-no", "eu-north-1", &creds, time).unwrap());
        assert_eq!(
            param(&url, "X-Amz-Signature").unwrap(),
            expected_signature(
                &url,
                "meridian-prod-no",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
            )
        );
    }

    #[test]
    fn the_same_inputs_sign_the_same_and_any_change_changes_the_signature() {
        let (creds, time) = fixed();
        let sig = |cluster: &str, time: SystemTime, creds: &Credentials| {
            let t = token(cluster, "eu-north-1", creds, time).unwrap();
            param(&decode(&t), "X-Amz-Signature").unwrap().to_owned()
        };
        let base = sig("meridian-prod-no", time, &creds);
        assert_eq!(base, sig("meridian-prod-no", time, &creds), "deterministic");
        assert_ne!(
            base,
            sig("meridian-prod-se", time, &creds),
            "bound to the cluster"
        );
        assert_ne!(
            base,
            sig("meridian-prod-no", time + Duration::from_secs(1), &creds)
        );
        let other = Credentials::new("AKIDEXAMPLE", "another-secret", None, None, "test");
        assert_ne!(base, sig("meridian-prod-no", time, &other));
    }

    #[test]
    fn session_credentials_carry_their_token_in_the_url() {
        let (_, time) = fixed();
        let creds = Credentials::new(
            "ASIAEXAMPLE",
            "secret",
            Some("session/token+=".into()),
            None,
            "irsa",
        );
        let url = decode(&token("c1", "eu-north-1", &creds, time).unwrap());
        assert_eq!(
            param(&url, "X-Amz-Security-Token"),
            Some("session%2Ftoken%2B%3D")
        );
    }

    #[test]
    fn names_that_are_not_a_cluster_or_region_are_refused() {
        let (creds, time) = fixed();
        for bad in ["", "-x", "a b", "a\r\nx-evil: 1", &"a".repeat(101)] {
            assert!(matches!(
                token(bad, "eu-north-1", &creds, time),
                Err(TokenError::BadClusterName(_))
            ));
        }
        assert!(matches!(
            token("c1", "eu north", &creds, time),
            Err(TokenError::BadRegion(_))
        ));
    }
}
