//! What a recording shows about credentials: who each token request presented itself as (ids, and
//! secrets only as verifiers), and how the platform answered, so replay answers a secret as the
//! platform did.

use super::*;

impl Auth {
    /// What the cassette says about the credentials a token request presents: a secret it saw
    /// refused is refused with the platform's recorded answer, one it saw accepted is accepted, a
    /// secret it never saw for an identity it saw accepted is a wrong one.
    pub(super) fn evidence_for(
        &self,
        call: &Call<'_>,
        params: &HashMap<String, String>,
        basic: Option<&(String, String)>,
        ev: &Evidence<'_>,
    ) -> Verdict {
        let live = presented_by(call.platform(), params, basic);
        let tokens = ev.recorded.tokens();
        let mut accepted: Option<Answer> = None;
        for p in &live {
            let Some(secret) = &p.secret else { continue };
            let seen: Vec<(&RecordedToken, &str)> = tokens
                .iter()
                .filter(|t| t.host == call.host)
                .flat_map(|t| {
                    t.credentials
                        .iter()
                        .filter(|c| c.role == p.role && c.id == p.id)
                        .filter_map(move |c| c.verifier.as_deref().map(|v| (t, v)))
                })
                .collect();
            if seen.is_empty() {
                continue;
            }
            match seen.iter().find(|(_, v)| crate::cassette::verifier::check(v, secret) == Some(true)) {
                Some((t, _)) if t.answer.status >= 400 => {
                    let detail = format!("recorded-refusal:{}:#{}", p.role, t.seq);
                    return Verdict::Refuse(Answer { detail, ..t.answer.clone() });
                }
                Some((t, _)) => {
                    accepted.get_or_insert_with(|| t.answer.clone());
                }
                None if seen.iter().any(|(t, _)| t.answer.status < 300) => {
                    // An identity the recording shows accepted with another secret: this one is wrong.
                    return Verdict::Refuse(self.wrong_secret(call, p.role, &tokens, ev.recorded));
                }
                None => {}
            }
        }
        if let Some(a) = accepted {
            return Verdict::Accept(a);
        }
        match ev.peek().filter(|p| p.fresh) {
            // Nothing to tell secrets apart by (a cassette recorded before verifiers): the platform's
            // answer at this point of the recording stands.
            Some(p) if p.exchange.response.status >= 400 => Verdict::FollowCassette,
            _ => Verdict::Unknown,
        }
    }

    /// The refusal of a wrong secret: the platform's own, when the cassette shows one for this kind
    /// of credential on this host, else one in its shape.
    pub(super) fn wrong_secret(
        &self,
        call: &Call<'_>,
        role: &str,
        tokens: &[RecordedToken],
        recorded: &Recorded,
    ) -> Answer {
        let detail = format!("wrong-secret:{role}");
        if let Some(t) = tokens
            .iter()
            .find(|t| t.host == call.host && t.answer.status >= 400 && t.credentials.iter().any(|c| c.role == role))
        {
            return Answer { detail, ..t.answer.clone() };
        }
        let platform = call.platform();
        let ours = match role {
            "access-key" => token_error(platform, 401, "invalid_grant", "invalid access key", &detail),
            "user" => token_error(platform, 400, "invalid_grant", "invalid username or password", &detail),
            _ => token_error(platform, 400, "invalid_client", "authentication failed", &detail),
        };
        self.refusal(recorded, ours)
    }
}

/// Parses an `application/x-www-form-urlencoded` body or query (a repeated name keeps its last value).
pub(crate) fn form(s: &str) -> HashMap<String, String> {
    crate::encoding::decode_pairs(s).into_iter().collect()
}

/// The client id and secret in an HTTP Basic `Authorization` value.
pub(super) fn basic_pair(authorization: Option<&str>) -> Option<(String, String)> {
    let (scheme, rest) = authorization?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    Some((percent_decode(id), percent_decode(secret)))
}

/// A token request's parameters: `grant_type` and the rest in a form body (also when the NICE SDK
/// labels it `application/json`), a JSON object body, or the NICE access-key endpoint's JSON
/// (`accessKeyId`, `accessKeySecret`, read as a password grant).
pub(super) fn token_params(body: &[u8], access_key: bool) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    let mut params: HashMap<String, String> = if text.trim_start().starts_with('{') {
        serde_json::from_str::<serde_json::Map<String, Value>>(&text)
            .map(|m| m.into_iter().filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string()))).collect())
            .unwrap_or_default()
    } else {
        form(&text)
    };
    if access_key {
        params.insert("grant_type".into(), "password".into());
        params.insert("username".into(), params.get("accessKeyId").cloned().unwrap_or_default());
        params.insert("password".into(), params.get("accessKeySecret").cloned().unwrap_or_default());
    }
    params
}

/// One identity a token request presents, with its secret (live only: a cassette keeps the id and
/// a verifier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Presented {
    /// `client`, `access-key` or `user`.
    pub role: &'static str,
    /// The client id, access key id or user name.
    pub id: String,
    /// The secret, when sent.
    pub secret: Option<String>,
}

/// A secret as sent; the redaction marker (a recorded request sent again, as `cassette check`
/// does) is no secret at all.
pub(super) fn secret_of(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty() && s != crate::cassette::redact::MARKER)
}

/// Who a token request presents itself as, from its parameters and Basic credentials (which win
/// over `client_id` in the body): the client, and for a password grant the user, or on NICE the
/// access key. A redacted secret counts as none.
pub(super) fn presented_by(
    platform: Platform,
    params: &HashMap<String, String>,
    basic: Option<&(String, String)>,
) -> Vec<Presented> {
    let mut out = Vec::new();
    let (client_id, client_secret) = match basic {
        Some((id, s)) => (id.clone(), Some(s.clone())),
        None => (params.get("client_id").cloned().unwrap_or_default(), params.get("client_secret").cloned()),
    };
    if !client_id.is_empty() {
        out.push(Presented { role: "client", id: client_id, secret: secret_of(client_secret) });
    }
    if params.get("grant_type").map(String::as_str) == Some("password") {
        let id = params.get("username").cloned().unwrap_or_default();
        if !id.is_empty() {
            let role = if platform == Platform::Nice { "access-key" } else { "user" };
            out.push(Presented { role, id, secret: secret_of(params.get("password").cloned()) });
        }
    }
    out
}

/// The platform of a token request and whether it is NICE's access-key endpoint; `None` for any
/// other request. `host` may carry a port.
fn token_route(host: &str, method: &str, path: &str) -> Option<(Platform, bool)> {
    let host = host.split(':').next().unwrap_or(host);
    let platform = Platform::of_host(host);
    match platform.auth_route(host, method, path)? {
        Route::Token => Some((platform, false)),
        Route::AccessKey => Some((platform, true)),
        _ => None,
    }
}

/// The identities a request presents when it is a token request (empty otherwise): what a
/// recording keeps, as ids and verifiers, for replay to answer a wrong secret as the platform did.
pub(crate) fn presented(
    host: &str,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Vec<Presented> {
    let Some((platform, access_key)) = token_route(host, method, path) else { return Vec::new() };
    presented_by(platform, &token_params(body, access_key), basic_pair(authorization).as_ref())
}

/// Whether a request is a token request (either platform).
pub(crate) fn is_token_request(host: &str, method: &str, path: &str) -> bool {
    token_route(host, method, path).is_some()
}

/// What a cassette says about a token request's credentials.
pub(super) enum Verdict {
    /// Refused, with this answer.
    Refuse(Answer),
    /// Refused by the platform at this point of the recording, with nothing to tell secrets
    /// apart by: the cassette answers.
    FollowCassette,
    /// Accepted; the recorded answer gives the shape.
    Accept(Answer),
    /// The cassette does not say.
    Unknown,
}

/// A recorded exchange's answer.
pub(super) fn answer_of(e: &crate::cassette::model::Exchange) -> Answer {
    crate::overlay::recorded_answer(
        e.response.status,
        &e.response.headers,
        &e.response.body.bytes,
        format!("recorded:#{}", e.seq),
    )
}

/// The `expires_in` of a recorded token answer.
pub(super) fn recorded_ttl_s(a: &Answer) -> Option<i64> {
    serde_json::from_slice::<Value>(&a.body).ok()?.get("expires_in")?.as_i64()
}

/// A minted token answer in the shape of the recorded one: the recorded fields, headers and order,
/// with the minted tokens and lifetime in place of the recorded (redacted) ones. Fields the
/// recording lacks are left out, fields only it has are kept as recorded.
pub(super) fn reshape(minted: Answer, recorded: &Answer) -> Answer {
    let (Ok(Value::Object(ours)), Ok(Value::Object(theirs))) =
        (serde_json::from_slice::<Value>(&minted.body), serde_json::from_slice::<Value>(&recorded.body))
    else {
        return minted;
    };
    let mut out = serde_json::Map::new();
    for (k, v) in theirs {
        let mine =
            ours.get(&k).filter(|_| matches!(k.as_str(), "access_token" | "refresh_token" | "id_token" | "expires_in"));
        out.insert(k, mine.cloned().unwrap_or(v));
    }
    let correlation = minted.headers.iter().find(|(k, _)| k == "inin-correlation-id").map(|(_, v)| v.clone());
    let headers = recorded
        .headers
        .iter()
        // A redacted header (a cookie) is not sent as the marker.
        .filter(|(_, v)| v != crate::cassette::redact::MARKER)
        .map(|(k, v)| match (&correlation, k.eq_ignore_ascii_case("inin-correlation-id")) {
            (Some(c), true) => (k.clone(), c.clone()),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    Answer {
        status: recorded.status,
        headers,
        body: bytes::Bytes::from(serde_json::to_vec(&Value::Object(out)).unwrap_or_default()),
        ..minted
    }
}
