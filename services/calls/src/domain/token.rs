//! The opaque state token handed to the telephony platform with each answer and sent back with
//! the next step. It makes decisions stateless: any replica in any region holding the same key
//! can continue a call. Format: `base64url(json) "." base64url(hmac_sha256(key, json))`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a call carries between steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallState {
    /// The call this token belongs to; a token replayed on another call is rejected.
    pub call_id: String,
    /// The PBX or subscriber number whose configuration drives the call.
    pub number: String,
    /// Node the platform is executing (`mobile` for mobile calls).
    pub node: String,
    /// Unix seconds when the call entered `node` (queues measure waiting time from it).
    pub entered_at: i64,
    /// Unix seconds when the token was issued.
    pub issued_at: i64,
    /// Steps taken so far: a bound against runaway flows.
    pub steps: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("state token is malformed")]
    Malformed,
    #[error("state token signature does not match")]
    BadSignature,
    #[error("state token expired")]
    Expired,
    #[error("state token belongs to another call")]
    WrongCall,
}

/// The HMAC key. Every replica of every region must share it. Kept as the keyed HMAC state
/// (inner and outer pads already hashed), so signing or checking a token clones it instead of
/// hashing the key again.
///
/// A second key may be *accepted* without being used to sign: that is how the key rotates
/// without failing calls in flight (see docs/calls.md, "Rotating the token key").
#[derive(Clone)]
pub struct TokenKey {
    signing: Hmac<Sha256>,
    also_accepted: Option<Hmac<Sha256>>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(***)")
    }
}

fn keyed(bytes: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    <Hmac<Sha256> as KeyInit>::new_from_slice(bytes).unwrap_or_else(|_| unreachable!())
}

impl TokenKey {
    pub fn new(bytes: impl AsRef<[u8]>) -> Self {
        Self {
            signing: keyed(bytes.as_ref()),
            also_accepted: None,
        }
    }

    /// Also accepts tokens signed with `bytes` (never signs with it).
    #[must_use]
    pub fn also_accepting(self, bytes: impl AsRef<[u8]>) -> Self {
        Self {
            also_accepted: Some(keyed(bytes.as_ref())),
            ..self
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.signing.clone()
    }

    pub fn sign(&self, state: &CallState) -> String {
        let payload = serde_json::to_vec(state).unwrap_or_default();
        let mut mac = self.mac();
        mac.update(&payload);
        let sig = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    /// Checks signature, call and age (`max_age_secs`) at `now` (unix seconds).
    pub fn verify(
        &self,
        token: &str,
        call_id: &str,
        now: i64,
        max_age_secs: i64,
    ) -> Result<CallState, TokenError> {
        let (payload_b64, sig_b64) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| TokenError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig_b64)
            .map_err(|_| TokenError::Malformed)?;
        let valid = |key: &Hmac<Sha256>| {
            let mut mac = key.clone();
            mac.update(&payload);
            mac.verify_slice(&sig).is_ok()
        };
        if !valid(&self.signing) && !self.also_accepted.as_ref().is_some_and(valid) {
            return Err(TokenError::BadSignature);
        }
        let state: CallState =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if state.call_id != call_id {
            return Err(TokenError::WrongCall);
        }
        if now - state.issued_at > max_age_secs || state.issued_at > now + 300 {
            return Err(TokenError::Expired);
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> CallState {
        CallState {
            call_id: "c1".into(),
            number: "+4610".into(),
            node: "menu".into(),
            entered_at: 1000,
            issued_at: 1000,
            steps: 1,
        }
    }

    #[test]
    fn round_trips_and_rejects_tampering() {
        let key = TokenKey::new(b"k");
        let t = key.sign(&state());
        assert_eq!(key.verify(&t, "c1", 1010, 60), Ok(state()));
        assert_eq!(key.verify(&t, "c2", 1010, 60), Err(TokenError::WrongCall));
        assert_eq!(key.verify(&t, "c1", 1100, 60), Err(TokenError::Expired));
        assert_eq!(
            TokenKey::new(b"other").verify(&t, "c1", 1010, 60),
            Err(TokenError::BadSignature)
        );
        // Change the payload but keep the signature.
        let forged = {
            let mut s = state();
            s.node = "admin".into();
            let good = key.sign(&s);
            let (p, _) = good.split_once('.').unwrap_or_default();
            let (_, sig) = t.split_once('.').unwrap_or_default();
            format!("{p}.{sig}")
        };
        assert_eq!(
            key.verify(&forged, "c1", 1010, 60),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            key.verify("garbage", "c1", 1010, 60),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            key.verify("a.b", "c1", 1010, 60),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn rotation_accepts_the_second_key_but_signs_with_the_first() {
        let (old, new) = (TokenKey::new(b"old"), TokenKey::new(b"new"));
        let from_old = old.sign(&state());
        let from_new = new.sign(&state());
        // Step 1: still signing with the old key, already accepting the new one.
        let step1 = TokenKey::new(b"old").also_accepting(b"new");
        assert_eq!(step1.verify(&from_new, "c1", 1010, 60), Ok(state()));
        assert_eq!(step1.sign(&state()), from_old);
        // Step 2: signing with the new key, still accepting calls started under the old one.
        let step2 = TokenKey::new(b"new").also_accepting(b"old");
        assert_eq!(step2.verify(&from_old, "c1", 1010, 60), Ok(state()));
        assert_eq!(step2.sign(&state()), from_new);
        // Step 3: the old key is gone.
        assert_eq!(
            new.verify(&from_old, "c1", 1010, 60),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            step2.verify(&TokenKey::new(b"other").sign(&state()), "c1", 1010, 60),
            Err(TokenError::BadSignature)
        );
    }
}
