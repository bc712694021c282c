//! What a recorded request becomes when it is sent live. The cassette holds no secrets, so the run
//! signs in itself: the credentials come from the environment (named in `proxy.yaml`), the code
//! of the browser step from its live redirect, and the tokens from the live token answers; each
//! goes where the recorded request had its redacted counterpart. Ids learned along the way
//! ([`IdMap`]) are written into paths, queries, bodies and headers. Every secret the run holds is
//! known here, so any text can be scrubbed of them before it is shown.

use std::collections::HashMap;

use base64::Engine as _;
use bytes::Bytes;

use crate::cassette::model::{Exchange, HOP_BY_HOP};
use crate::cassette::redact::{no_credential, MARKER};
use crate::encoding::{decode_pairs, percent_encode};

use super::ids::IdMap;
use super::plan::{token_key, Kind};

/// The sandbox credentials a run signs in with (values, read from the environment).
#[derive(Debug, Clone, Default)]
pub(crate) struct Credentials {
    /// The OAuth client id.
    pub(crate) client_id: Option<String>,
    /// The OAuth client secret.
    pub(crate) client_secret: Option<String>,
    /// A password grant's user name (NICE: the access key id).
    pub(crate) username: Option<String>,
    /// A password grant's password (NICE: the access key secret).
    pub(crate) password: Option<String>,
    /// A sign-in session cookie for the headless browser step.
    pub(crate) cookie: Option<String>,
}

/// A request as it goes to the live platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveRequest {
    /// Method.
    pub(crate) method: String,
    /// `https` or `http`.
    pub(crate) scheme: String,
    /// Host, with a port when the recording had one.
    pub(crate) host: String,
    /// Path.
    pub(crate) path: String,
    /// Query, without `?`.
    pub(crate) query: Option<String>,
    /// Headers (hop-by-hop and framing headers left out).
    pub(crate) headers: Vec<(String, String)>,
    /// Body.
    pub(crate) body: Bytes,
}

impl LiveRequest {
    /// The absolute URI.
    pub(crate) fn uri(&self) -> String {
        match &self.query {
            Some(q) => format!("{}://{}{}?{q}", self.scheme, self.host, self.path),
            None => format!("{}://{}{}", self.scheme, self.host, self.path),
        }
    }
}

/// A platform's live tokens.
#[derive(Debug, Default, Clone)]
struct Tokens {
    /// The access token calls carry.
    access: Option<String>,
    /// The refresh token a refresh grant sends.
    refresh: Option<String>,
}

/// The PKCE challenge for `verifier` by `method` (`S256`, else `plain`).
pub(crate) fn challenge(verifier: &str, method: &str) -> String {
    if method.eq_ignore_ascii_case("plain") {
        return verifier.to_string();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// `a=1&b=2` with the values of the keys `sub` answers for replaced (percent-encoded); every other
/// pair stays byte for byte.
fn substitute_pairs(raw: &str, sub: &dyn Fn(&str) -> Option<String>) -> String {
    raw.split('&')
        .map(|pair| {
            let key = pair.split_once('=').map(|(k, _)| k).unwrap_or(pair);
            let name = decode_pairs(key).into_iter().next().map(|(k, _)| k).unwrap_or_default();
            match sub(&name) {
                Some(v) => format!("{key}={}", percent_encode(&v)),
                None => pair.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Headers never sent as recorded: the connection's own, the framing (the body may change), an
/// encoding (bodies are stored decoded) and a WebSocket handshake's keys (made afresh).
fn dropped(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
        || matches!(
            name,
            "content-length"
                | "content-encoding"
                | "accept-encoding"
                | "sec-websocket-key"
                | "sec-websocket-accept"
                | "sec-websocket-extensions"
                | "sec-websocket-version"
        )
}

/// A verify run's sign-in state: credentials, live tokens, the last sign-in code, and ids.
#[derive(Debug)]
pub(crate) struct Session {
    /// What the environment gave.
    creds: Credentials,
    /// Live tokens by token key (see [`token_key`]).
    tokens: HashMap<String, Tokens>,
    /// The code of the last live sign-in redirect.
    code: Option<String>,
    /// The PKCE verifier this run sends (its challenge replaces the recorded one).
    verifier: String,
    /// Ids learned so far.
    pub(crate) ids: IdMap,
    /// Every secret value seen: credentials, tokens, codes.
    secrets: Vec<String>,
}

impl Session {
    /// A session signing in with `creds`, sending `verifier` for PKCE.
    pub(crate) fn new(creds: Credentials, verifier: String, ids: IdMap) -> Session {
        let mut secrets: Vec<String> =
            [&creds.client_secret, &creds.password, &creds.cookie].into_iter().flatten().cloned().collect();
        secrets.push(verifier.clone());
        Session { creds, tokens: HashMap::new(), code: None, verifier, ids, secrets }
    }

    /// Whether a live access token is held for `key`.
    pub(crate) fn has_token(&self, key: &str) -> bool {
        self.tokens.get(key).is_some_and(|t| t.access.is_some())
    }

    /// HTTP Basic client credentials: the configured client id (else `recorded_id`) and secret.
    fn basic(&self, recorded_id: Option<&str>) -> Option<String> {
        let id = self.creds.client_id.as_deref().or(recorded_id)?;
        let secret = self.creds.client_secret.as_deref()?;
        let pair = format!("{}:{}", percent_encode(id), percent_encode(secret));
        Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)))
    }

    /// The live value of a sign-in parameter, where this run has one.
    fn param(&self, key: &str, name: &str) -> Option<String> {
        let c = &self.creds;
        match name {
            "client_id" => c.client_id.clone(),
            "client_secret" => c.client_secret.clone(),
            "username" | "accessKeyId" => c.username.clone(),
            "password" | "accessKeySecret" => c.password.clone(),
            "code" => self.code.clone(),
            "refresh_token" => self.tokens.get(key).and_then(|t| t.refresh.clone()),
            "code_verifier" => Some(self.verifier.clone()),
            _ => None,
        }
    }

    /// A token request's body with the live credentials, code and refresh token in place: a form,
    /// or a JSON object (NICE's access-key endpoint).
    fn token_body(&self, key: &str, body: &str) -> String {
        if let Ok(serde_json::Value::Object(mut m)) = serde_json::from_str::<serde_json::Value>(body) {
            for (k, v) in m.iter_mut() {
                if let (Some(live), true) = (self.param(key, k), v.is_string()) {
                    *v = serde_json::Value::String(live);
                }
            }
            return serde_json::Value::Object(m).to_string();
        }
        substitute_pairs(body, &|name| self.param(key, name))
    }

    /// The recorded request `e`, of kind `kind`, as it goes out live: ids rewritten; for a
    /// sign-in, the live client id, PKCE challenge and cookie; for a token request, the live
    /// credentials; elsewhere the live bearer where the recording had a redacted one (a
    /// credential header without a live counterpart is left out).
    pub(crate) fn request(&self, e: &Exchange, kind: Kind) -> LiveRequest {
        let r = &e.request;
        let key = token_key(e);
        let mut query = r.query.as_deref().map(|q| self.ids.rewrite(q).into_owned());
        if kind == Kind::Authorize {
            let q = query.unwrap_or_default();
            let method = decode_pairs(&q)
                .into_iter()
                .find(|(k, _)| k == "code_challenge_method")
                .map(|(_, v)| v)
                .unwrap_or_else(|| "plain".into());
            query = Some(substitute_pairs(&q, &|name| match name {
                "client_id" => self.creds.client_id.clone(),
                "code_challenge" => Some(challenge(&self.verifier, &method)),
                _ => None,
            }));
        }
        let text = String::from_utf8_lossy(&r.body.bytes);
        let body = match (kind, std::str::from_utf8(&r.body.bytes)) {
            (Kind::Token, Ok(_)) => Bytes::from(self.token_body(&key, &self.ids.rewrite(&text))),
            (_, Ok(_)) => match self.ids.rewrite(&text) {
                std::borrow::Cow::Borrowed(_) => r.body.bytes.clone(),
                std::borrow::Cow::Owned(o) => Bytes::from(o),
            },
            (_, Err(_)) => r.body.bytes.clone(),
        };
        let recorded_client = e.credentials.iter().find(|c| c.role == "client").map(|c| c.id.as_str());
        let mut headers = Vec::new();
        for (k, v) in &r.headers {
            let name = k.to_ascii_lowercase();
            if dropped(&name) {
                continue;
            }
            let redacted = v.contains(MARKER);
            let value = match name.as_str() {
                "authorization" if kind == Kind::Token && !no_credential(v) => self.basic(recorded_client),
                "authorization" if redacted => {
                    self.tokens.get(&key).and_then(|t| t.access.clone()).map(|t| format!("Bearer {t}"))
                }
                "cookie" if redacted => self.creds.cookie.clone().filter(|_| kind == Kind::Authorize),
                _ if redacted => None,
                _ => Some(self.ids.rewrite(v).into_owned()),
            };
            if let Some(value) = value {
                headers.push((k.clone(), value));
            }
        }
        LiveRequest {
            method: r.method.clone(),
            scheme: r.scheme.clone(),
            host: r.host.clone(),
            path: self.ids.rewrite(&r.path).into_owned(),
            query,
            headers,
            body,
        }
    }

    /// A client-credentials token request to `host` `path`, for API calls the cassette sends with
    /// a bearer but holds no sign-in for.
    pub(crate) fn sign_in_request(&self, host: &str, path: &str) -> LiveRequest {
        let mut headers = vec![
            ("host".to_string(), host.to_string()),
            ("content-type".to_string(), "application/x-www-form-urlencoded".to_string()),
        ];
        if let Some(b) = self.basic(None) {
            headers.push(("authorization".into(), b));
        }
        LiveRequest {
            method: "POST".into(),
            scheme: "https".into(),
            host: host.to_string(),
            path: path.to_string(),
            query: None,
            headers,
            body: Bytes::from_static(b"grant_type=client_credentials"),
        }
    }

    /// Takes what a live answer gives the run: a sign-in redirect's code (or an implicit grant's
    /// token), a token answer's tokens. `key` is the request's token key.
    pub(crate) fn took_answer(
        &mut self,
        key: &str,
        kind: Kind,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) {
        match kind {
            Kind::Authorize => {
                let Some(loc) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("location")).map(|(_, v)| v) else {
                    return;
                };
                let (before, fragment) = loc.split_once('#').unwrap_or((loc, ""));
                let query = before.split_once('?').map(|(_, q)| q).unwrap_or("");
                for (k, v) in decode_pairs(query).into_iter().chain(decode_pairs(fragment)) {
                    match k.as_str() {
                        "code" => {
                            self.secrets.push(v.clone());
                            self.code = Some(v);
                        }
                        "access_token" => {
                            self.secrets.push(v.clone());
                            self.tokens.entry(key.to_string()).or_default().access = Some(v);
                        }
                        _ => {}
                    }
                }
            }
            Kind::Token if (200..300).contains(&status) => {
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return };
                let t = self.tokens.entry(key.to_string()).or_default();
                for (field, slot) in [("access_token", &mut t.access), ("refresh_token", &mut t.refresh)] {
                    if let Some(s) = v.get(field).and_then(|s| s.as_str()) {
                        *slot = Some(s.to_string());
                        self.secrets.push(s.to_string());
                    }
                }
                if let Some(s) = v.get("id_token").and_then(|s| s.as_str()) {
                    self.secrets.push(s.to_string());
                }
            }
            _ => {}
        }
    }

    /// `text` with every secret this run holds (credentials, tokens, codes, also
    /// percent-encoded or inside HTTP Basic) replaced by the redaction marker.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        let mut all: Vec<String> = Vec::new();
        for s in self.secrets.iter().filter(|s| s.len() >= 4) {
            all.push(s.clone());
            all.push(percent_encode(s));
        }
        if let Some(b) = self.basic(None) {
            all.push(b.trim_start_matches("Basic ").to_string());
        }
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for s in all {
            if out.contains(&s) {
                out = out.replace(&s, MARKER);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cassette::model::test_exchange;

    const CALL: &str = "5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e";
    const LIVE: &str = "9d2e3f4a-1b2c-4d5e-8f9a-0b1c2d3e4f5a";

    fn creds() -> Credentials {
        Credentials {
            client_id: Some("live-client".into()),
            client_secret: Some("LIVE-SECRET-1".into()),
            username: None,
            password: Some("LIVE-PASSWORD-2".into()),
            cookie: Some("sid=LIVE-COOKIE-3".into()),
        }
    }

    fn on(mut e: Exchange, host: &str, headers: &[(&str, &str)]) -> Exchange {
        e.request.host = host.into();
        e.request.headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        e
    }

    #[test]
    fn the_browser_step_and_the_code_grant_carry_the_live_client_code_and_pkce() {
        let mut s = Session::new(creds(), "verifier-0123456789".into(), IdMap::default());
        let authorize = on(
            test_exchange(
                1,
                "GET",
                "/oauth/authorize",
                Some("response_type=code&client_id=rec-client&code_challenge=REC&code_challenge_method=S256&state=s1"),
                "",
                302,
                "",
            ),
            "login.mypurecloud.com",
            &[("host", "login.mypurecloud.com"), ("cookie", MARKER)],
        );
        let live = s.request(&authorize, Kind::Authorize);
        let want = format!(
            "response_type=code&client_id=live-client&code_challenge={}&code_challenge_method=S256&state=s1",
            challenge("verifier-0123456789", "S256")
        );
        assert_eq!(live.query.as_deref(), Some(want.as_str()));
        assert!(live.headers.contains(&("cookie".into(), "sid=LIVE-COOKIE-3".into())));
        s.took_answer(
            "genesys",
            Kind::Authorize,
            302,
            &[("location".into(), "http://localhost/cb?code=LIVE-CODE-4&state=s1".into())],
            b"",
        );
        let token = on(
            test_exchange(2, "POST", "/oauth/token", None, "grant_type=authorization_code&code=%5BREDACTED%5D&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&code_verifier=%5BREDACTED%5D", 200, ""),
            "login.mypurecloud.com",
            &[("host", "login.mypurecloud.com"), ("authorization", MARKER), ("content-length", "91")],
        );
        let live = s.request(&token, Kind::Token);
        assert_eq!(
            std::str::from_utf8(&live.body).unwrap(),
            "grant_type=authorization_code&code=LIVE-CODE-4&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&code_verifier=verifier-0123456789"
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("live-client:LIVE-SECRET-1");
        assert_eq!(
            live.headers,
            [
                ("host".to_string(), "login.mypurecloud.com".to_string()),
                ("authorization".into(), format!("Basic {basic}"))
            ]
        );
        s.took_answer(
            "genesys",
            Kind::Token,
            200,
            &[],
            br#"{"access_token":"LIVE-ACCESS-5","refresh_token":"LIVE-REFRESH-6"}"#,
        );
        assert!(s.has_token("genesys") && !s.has_token("nice"));
        let text =
            format!("a LIVE-ACCESS-5 b {basic} c LIVE-CODE-4 d sid%3DLIVE-COOKIE-3 e LIVE-SECRET-1 f live-client");
        assert_eq!(
            s.scrub(&text),
            "a [REDACTED] b [REDACTED] c [REDACTED] d [REDACTED] e [REDACTED] f live-client",
            "a client id is no secret"
        );
    }

    #[test]
    fn calls_carry_the_live_bearer_and_the_live_ids() {
        let mut s = Session::new(creds(), "v".repeat(43), IdMap::new(Default::default()));
        s.took_answer("genesys", Kind::Token, 200, &[], br#"{"access_token":"LIVE-ACCESS-5"}"#);
        s.ids.learn_json(4, &serde_json::json!({"id": CALL}), &serde_json::json!({"id": LIVE}));
        let get = on(
            test_exchange(
                5,
                "PATCH",
                &format!("/api/v2/conversations/calls/{CALL}"),
                Some(&format!("c={CALL}")),
                &format!(r#"{{"call":"{CALL}"}}"#),
                202,
                "",
            ),
            "api.mypurecloud.com",
            &[
                ("host", "api.mypurecloud.com"),
                ("authorization", MARKER),
                ("x-api-key", MARKER),
                ("connection", "keep-alive"),
                ("referer", &format!("/x/{CALL}")),
            ],
        );
        let live = s.request(&get, Kind::Call);
        assert_eq!(live.path, format!("/api/v2/conversations/calls/{LIVE}"));
        assert_eq!(live.query, Some(format!("c={LIVE}")));
        assert_eq!(&live.body[..], format!(r#"{{"call":"{LIVE}"}}"#).as_bytes());
        assert_eq!(
            live.headers,
            [
                ("host".to_string(), "api.mypurecloud.com".to_string()),
                ("authorization".into(), "Bearer LIVE-ACCESS-5".into()),
                ("referer".into(), format!("/x/{LIVE}")),
            ],
            "a redacted header with no live counterpart is left out"
        );
        assert_eq!(live.uri(), format!("https://api.mypurecloud.com/api/v2/conversations/calls/{LIVE}?c={LIVE}"));
    }

    #[test]
    fn a_password_grant_and_an_access_key_take_the_live_secret() {
        let mut s = Session::new(creds(), "v".into(), IdMap::default());
        let form = on(
            test_exchange(
                1,
                "POST",
                "/auth/token",
                None,
                "grant_type=password&username=key-1&password=%5BREDACTED%5D",
                200,
                "",
            ),
            "cxone.niceincontact.com",
            &[],
        );
        assert_eq!(
            &s.request(&form, Kind::Token).body[..],
            b"grant_type=password&username=key-1&password=LIVE-PASSWORD-2"
        );
        let json = on(
            test_exchange(
                2,
                "POST",
                "/authentication/v1/token/access-key",
                None,
                r#"{"accessKeyId":"key-1","accessKeySecret":"[REDACTED]"}"#,
                200,
                "",
            ),
            "api-na1.niceincontact.com",
            &[],
        );
        assert_eq!(
            &s.request(&json, Kind::Token).body[..],
            br#"{"accessKeyId":"key-1","accessKeySecret":"LIVE-PASSWORD-2"}"#
        );
        s.took_answer("nice", Kind::Token, 200, &[], br#"{"access_token":"A-1","refresh_token":"R-OLD"}"#);
        let refresh = on(
            test_exchange(
                3,
                "POST",
                "/auth/token",
                None,
                "grant_type=refresh_token&refresh_token=%5BREDACTED%5D",
                200,
                "",
            ),
            "cxone.niceincontact.com",
            &[],
        );
        assert_eq!(&s.request(&refresh, Kind::Token).body[..], b"grant_type=refresh_token&refresh_token=R-OLD");
        let sign_in = s.sign_in_request("login.mypurecloud.com", "/oauth/token");
        assert_eq!(sign_in.uri(), "https://login.mypurecloud.com/oauth/token");
        assert!(sign_in.headers.iter().any(|(k, v)| k == "authorization" && v.starts_with("Basic ")));
    }
}
