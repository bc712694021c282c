//! JSON Web Tokens as the auth overlay issues them: `header.claims.signature`, base64url without
//! padding. HS256 for tokens only callvcr reads; RS256 for tokens an SDK verifies against the key
//! set callvcr serves.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

/// What signs tokens.
pub enum Signer {
    /// HMAC-SHA256 with a secret only callvcr knows.
    Hs256(ring::hmac::Key),
    /// RSA PKCS#1 v1.5 with SHA-256 (deterministic), with the key id published in the key set.
    Rs256 {
        /// The key pair.
        key: ring::signature::RsaKeyPair,
        /// `kid` in the header and the key set.
        kid: String,
    },
}

impl std::fmt::Debug for Signer {
    /// The algorithm and key id only: never key material in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signer::Hs256(_) => f.write_str("Signer::Hs256"),
            Signer::Rs256 { kid, .. } => write!(f, "Signer::Rs256({kid})"),
        }
    }
}

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign a token: {0}")]
pub struct SignError(String);

impl Signer {
    /// An HS256 signer over `secret`.
    pub fn hs256(secret: &[u8]) -> Signer {
        Signer::Hs256(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret))
    }

    /// An RS256 signer from a PKCS#8 DER private key, with the key id `default` as NICE CXone
    /// names its key. (Its SDK decodes the JWT header with `atob`, which fails on base64url's `-`
    /// and `_`; this header encodes without either, and a test holds it to that.)
    pub fn rs256(pkcs8_der: &[u8]) -> Result<Signer, SignError> {
        let key = ring::signature::RsaKeyPair::from_pkcs8(pkcs8_der).map_err(|e| SignError(e.to_string()))?;
        Ok(Signer::Rs256 { key, kid: "default".into() })
    }

    /// The header's `alg`.
    fn alg(&self) -> &'static str {
        match self {
            Signer::Hs256(_) => "HS256",
            Signer::Rs256 { .. } => "RS256",
        }
    }

    /// A signed token carrying `claims`.
    pub fn sign(&self, claims: &Value) -> Result<String, SignError> {
        self.sign_as(claims, None)
    }

    /// A signed token carrying `claims`, its header naming the key `kid` (the platform's key id,
    /// as the recording shows it) instead of this signer's own.
    pub fn sign_as(&self, claims: &Value, kid: Option<&str>) -> Result<String, SignError> {
        let mut header = json!({"alg": self.alg(), "typ": "JWT"});
        if let Signer::Rs256 { kid: own, .. } = self {
            header["kid"] = Value::String(kid.unwrap_or(own).to_string());
        }
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default())
        );
        let sig = match self {
            Signer::Hs256(k) => ring::hmac::sign(k, input.as_bytes()).as_ref().to_vec(),
            Signer::Rs256 { key, .. } => {
                let mut sig = vec![0u8; key.public().modulus_len()];
                // PKCS#1 v1.5 needs no randomness; ring asks for a source anyway.
                let rng = ring::rand::SystemRandom::new();
                key.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig)
                    .map_err(|e| SignError(e.to_string()))?;
                sig
            }
        };
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// Checks an HS256 token's signature and returns its claims; `None` for anything else.
    pub fn verify_hs256(&self, token: &str) -> Option<Value> {
        let Signer::Hs256(k) = self else { return None };
        let (input, sig) = token.rsplit_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        ring::hmac::verify(k, input.as_bytes(), &sig).ok()?;
        let (_, claims) = input.split_once('.')?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()
    }

    /// The public key as a JWK (`kty`, `n`, `e`, `kid`, `alg`, `use`), for RS256 signers.
    pub fn jwk(&self) -> Option<Value> {
        self.jwk_as(None)
    }

    /// [`Signer::jwk`] under the key id `kid` (see [`Signer::sign_as`]).
    pub fn jwk_as(&self, kid: Option<&str>) -> Option<Value> {
        let Signer::Rs256 { key, kid: own } = self else { return None };
        let kid = kid.unwrap_or(own);
        use ring::signature::KeyPair;
        let pk = key.public_key();
        let comps: ring::rsa::PublicKeyComponents<Vec<u8>> = pk.into();
        Some(json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(&comps.n),
            "e": URL_SAFE_NO_PAD.encode(&comps.e),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hs256_tokens_verify_and_tampering_is_caught() {
        let s = Signer::hs256(b"secret");
        let t = s.sign(&json!({"sub": "client", "exp": 10})).unwrap();
        assert_eq!(t.split('.').count(), 3);
        assert_eq!(s.verify_hs256(&t).unwrap()["sub"], "client");
        assert_eq!(crate::cassette::redact::jwt_claims(&t).unwrap()["exp"], 10);
        let mut bad = t.clone();
        bad.replace_range(t.len() - 3.., "AAA");
        assert!(s.verify_hs256(&bad).is_none());
        assert!(Signer::hs256(b"other").verify_hs256(&t).is_none());
    }
}
