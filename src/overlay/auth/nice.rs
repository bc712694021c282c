//! NICE CXone's OpenID parts: the identity an access key stands for, the discovery document and
//! the key set its SDK verifies `id_token` with.

use super::*;

impl Auth {
    /// The OpenID discovery document for `call`'s host: as recorded, its `jwks_uri` pointing at
    /// callvcr's key set; else one of callvcr's own, every endpoint under that host so the SDK keeps
    /// talking to callvcr, RS256 and S256 only, as callvcr signs and checks.
    pub(super) fn nice_discovery(&self, call: &Call<'_>, ev: &Evidence<'_>) -> Decision {
        let iss = format!("https://{}", call.host);
        // The platform's own document when the recording holds it (its issuer, endpoints and
        // claims as the SDK saw them), with the key set moved to the one callvcr signs with.
        let recorded = ev
            .peek()
            .filter(|p| p.exchange.response.status == 200)
            .and_then(|p| serde_json::from_slice::<Value>(&p.exchange.response.body.bytes).ok())
            .filter(Value::is_object);
        if let Some(mut doc) = recorded {
            doc["jwks_uri"] = Value::String(format!("{iss}/auth/jwks"));
            return Decision::Answer(Answer::json(200, &doc, "discovery:recorded"));
        }
        Decision::Answer(Answer::json(
            200,
            &json!({
                "issuer": iss,
                "authorization_endpoint": format!("{iss}/auth/authorize"),
                "token_endpoint": format!("{iss}/auth/token"),
                "userinfo_endpoint": format!("{iss}/auth/userinfo"),
                "jwks_uri": format!("{iss}/auth/jwks"),
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
                "end_session_endpoint": format!("{iss}/auth/authorize/logout"),
                "scopes_supported": ["openid"],
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "request_object_signing_alg_values_supported": ["none"],
                "display_values_supported": ["page", "popup"],
                "claim_types_supported": ["normal"],
                "code_challenge_methods_supported": ["S256"],
            }),
            "discovery",
        ))
    }

    /// The key set holding the public half of the NICE signing key, which the SDK verifies `id_token`
    /// against, under the key id the recorded tokens name; shaped as the recorded key set (its
    /// first key's fields, with callvcr's modulus and exponent, and no certificate chain callvcr
    /// cannot sign for); a 500 when there is no key.
    pub(super) fn nice_jwks(&self, call: &Call<'_>, ev: &Evidence<'_>) -> Decision {
        let signer = match self.nice_signer() {
            Ok(s) => s,
            Err(a) => return Decision::Answer(a),
        };
        let kid = super::recorded_kid(ev.recorded, call.host);
        let Some(ours) = signer.jwk_as(kid.as_deref()) else {
            return Decision::Answer(Answer::json(200, &json!({"keys": []}), "jwks"));
        };
        let recorded = ev
            .peek()
            .filter(|p| p.exchange.response.status == 200)
            .and_then(|p| serde_json::from_slice::<Value>(&p.exchange.response.body.bytes).ok())
            .filter(|d| {
                d.get("keys").and_then(Value::as_array).is_some_and(|k| k.first().is_some_and(Value::is_object))
            });
        let Some(mut doc) = recorded else {
            return Decision::Answer(Answer::json(200, &json!({"keys": [ours]}), "jwks"));
        };
        let mut key = doc["keys"][0].as_object().cloned().unwrap_or_default();
        for drop in ["x5c", "x5t", "x5t#S256", "x5u"] {
            key.remove(drop);
        }
        for (k, v) in ours.as_object().into_iter().flatten() {
            key.insert(k.clone(), v.clone());
        }
        doc["keys"] = json!([key]);
        Decision::Answer(Answer::json(200, &doc, "jwks:recorded"))
    }
}

/// The user and tenant a NICE access key stands for: derived from the key id, so the same key is
/// always the same user.
pub(super) struct NiceIdentity {
    /// A UUID from the first half of the key id's SHA-256.
    pub(super) user_id: String,
    /// A UUID from the second half.
    pub(super) tenant_id: String,
    /// The business unit (`icBUId`), from 4000000 to 4999999.
    pub(super) bu_id: i64,
    /// The token audience, `CXone`.
    pub(super) aud: String,
}

impl NiceIdentity {
    /// The identity of an access key id (or client id).
    pub(super) fn of(client_id: &str) -> NiceIdentity {
        let h = ring::digest::digest(&ring::digest::SHA256, client_id.as_bytes());
        let b = h.as_ref();
        let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        NiceIdentity {
            user_id: crate::overlay::ids::uuid_from(word(0), word(8)),
            tenant_id: crate::overlay::ids::uuid_from(word(16), word(24)),
            bu_id: 4_000_000 + (word(0) % 1_000_000) as i64,
            aud: "CXone".into(),
        }
    }

    /// The claims of a NICE access and id token: the identity, issuer, and the fixed tenant, cluster and
    /// name fields the SDK reads.
    pub(super) fn claims(&self, iss: &str, iat: i64, exp: i64) -> Value {
        json!({
            "sub": format!("user:{}", self.user_id),
            "iss": iss,
            "aud": self.aud,
            "userId": self.user_id,
            "tenantId": self.tenant_id,
            "tenant": "callvcr",
            "icBUId": self.bu_id,
            "icClusterId": "B32",
            "icDomain": "nice-incontact.com",
            "name": "callvcr user",
            "given_name": "callvcr",
            "family_name": "user",
            "iat": iat,
            "exp": exp,
        })
    }
}
