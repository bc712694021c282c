//! Redaction of secrets (and optionally PII) from headers, query strings, form and JSON bodies.
//! Pure functions over data; applied to what is stored and to live requests before fingerprinting,
//! never to a live response.

use crate::encoding::{percent_decode, percent_encode};
use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::Value;

use crate::config::RedactConfig;

/// What replaces a secret unless `redact.replacement` says otherwise.
pub const MARKER: &str = crate::config::REDACTED;

/// Applies one redaction policy.
#[derive(Debug, Clone)]
pub struct Redactor {
    /// Header names (lower-case) whose whole value is replaced.
    headers: HashSet<String>,
    /// Secret field names (lower-case), in JSON at any depth and in query strings and forms.
    fields: HashSet<String>,
    /// Names secret only in query strings, forms and redirect URLs (an OAuth `code`), lower-case. Kept
    /// apart from `fields` because in JSON the same name is an error code, which must stay.
    query_fields: HashSet<String>,
    /// E-mail and phone-number patterns, when `redact.pii` is on.
    pii: Option<(regex::Regex, regex::Regex)>,
    /// What a redacted value becomes.
    replacement: String,
    /// Claims dropped from a stored JWT (lower-case): `redact.jwt_claims`, and the personal ones
    /// when `redact.pii` is on.
    jwt_claims: HashSet<String>,
}

/// Personal claims a stored JWT loses when `redact.pii` is on.
const PII_CLAIMS: &[&str] = &["email", "name", "given_name", "family_name", "preferred_username", "phone_number"];

/// The parts of a JWT (`header.claims.signature`, base64url, a header naming its `alg`), if `s` is one.
fn jwt_parts(s: &str) -> Option<(&str, &str, &str)> {
    // A JWT's header is a JSON object: its base64url text opens with `eyJ` (`{"`).
    if !s.starts_with("eyJ") {
        return None;
    }
    let mut it = s.split('.');
    let (h, c, sig) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || h.len() < 10 || c.is_empty() {
        return None;
    }
    json_segment(h)?.get("alg")?;
    Some((h, c, sig))
}

/// The claims a token is minted with afresh (its times and id); every other claim is what the
/// platform said, and a minted token must say it too.
pub const FRESH_CLAIMS: &[&str] = &["iat", "exp", "nbf", "auth_time", "jti"];

/// Whether a credential header's value carries no credential: empty, or an auth scheme alone
/// (`Bearer `, `Basic`), as an SDK sends before it has a token.
pub fn no_credential(value: &str) -> bool {
    let v = value.trim();
    v.is_empty() || v.eq_ignore_ascii_case("bearer") || v.eq_ignore_ascii_case("basic")
}

/// The header of a JWT (`alg`, `kid`, ...), as stored or live.
pub fn jwt_header(token: &str) -> Option<serde_json::Map<String, Value>> {
    json_segment(jwt_parts(token)?.0)
}

/// The claims of a JWT, as stored or live (the signature is not checked: this reads what a
/// recording shows, never trusts a token).
pub fn jwt_claims(token: &str) -> Option<serde_json::Map<String, Value>> {
    json_segment(jwt_parts(token)?.1)
}

/// A JWT segment (base64url) holding a JSON object.
fn json_segment(seg: &str) -> Option<serde_json::Map<String, Value>> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    match serde_json::from_slice(&b64.decode(seg.trim_end_matches('=')).ok()?).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

impl Redactor {
    /// Builds a redactor from configuration.
    pub fn new(cfg: &RedactConfig) -> Redactor {
        let pii = cfg.pii.then(|| {
            (
                regex::Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+").expect("e-mail pattern"),
                regex::Regex::new(r"\+?\d[\d\s().-]{6,}\d").expect("phone pattern"),
            )
        });
        Redactor {
            headers: cfg.headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            fields: cfg.fields.iter().map(|f| f.to_ascii_lowercase()).collect(),
            query_fields: cfg.query_fields.iter().map(|f| f.to_ascii_lowercase()).collect(),
            jwt_claims: cfg
                .jwt_claims
                .iter()
                .map(|c| c.to_ascii_lowercase())
                .chain(cfg.pii.then_some(PII_CLAIMS).into_iter().flatten().map(|c| c.to_string()))
                .collect(),
            pii,
            replacement: cfg.replacement.clone(),
        }
    }

    /// A JWT kept as what it says, no longer as a credential: its header and claims (less those
    /// `jwt_claims` drops), its signature replaced by the marker. `None` when `s` is no JWT.
    pub fn jwt(&self, s: &str) -> Option<String> {
        use base64::Engine;
        let (h, c, sig) = jwt_parts(s)?;
        if sig == self.replacement {
            return Some(s.to_string());
        }
        let claims = if self.jwt_claims.is_empty() {
            c.to_string()
        } else {
            let mut m = jwt_claims(s)?;
            m.retain(|k, _| !self.jwt_claims.contains(&k.to_ascii_lowercase()));
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&Value::Object(m)).ok()?)
        };
        Some(format!("{h}.{claims}.{}", self.replacement))
    }

    /// What a JWT found in text becomes: as stored (`keep_claims`), its claims kept and signature
    /// replaced; as matched, the marker. `None` when `s` is no JWT.
    pub(crate) fn jwt_text(&self, s: &str, keep_claims: bool) -> Option<String> {
        jwt_parts(s)?;
        if keep_claims {
            self.jwt(s)
        } else {
            Some(self.replacement.clone())
        }
    }

    /// Whether a stored value still holds a secret: not the marker, and not a JWT whose signature
    /// the marker replaced.
    fn is_live_secret(&self, v: &str) -> bool {
        let token = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).unwrap_or(v);
        !no_credential(v) && v != self.replacement && jwt_parts(token).is_none_or(|(_, _, sig)| sig != self.replacement)
    }

    /// Redacts a list of headers as they are stored: like [`Redactor::headers`], except that a
    /// bearer JWT in `Authorization` keeps its header and claims (signature replaced).
    pub fn stored_headers(&self, headers: &mut [(String, String)]) {
        for (k, v) in headers.iter_mut() {
            if k.eq_ignore_ascii_case("authorization") && self.headers.contains("authorization") {
                let kept = v.strip_prefix("Bearer ").and_then(|t| self.jwt(t)).map(|t| format!("Bearer {t}"));
                if let Some(t) = kept {
                    *v = t;
                    continue;
                }
            }
            if let Cow::Owned(r) = self.header(k, v) {
                *v = r;
            }
        }
    }

    /// The policy as text, the same for the same settings (sets sorted).
    pub fn policy(&self) -> String {
        let sorted = |s: &HashSet<String>| {
            let mut v: Vec<&str> = s.iter().map(String::as_str).collect();
            v.sort_unstable();
            v.join(",")
        };
        format!(
            "headers={};fields={};query={};pii={};with={}",
            sorted(&self.headers),
            sorted(&self.fields),
            sorted(&self.query_fields),
            self.pii.is_some(),
            self.replacement
        ) + &if self.jwt_claims.is_empty() {
            String::new()
        } else {
            let mut v: Vec<&str> = self.jwt_claims.iter().map(String::as_str).collect();
            v.sort_unstable();
            format!(";jwt_claims={}", v.join(","))
        }
    }

    /// The text that replaces a secret.
    pub fn replacement(&self) -> &str {
        &self.replacement
    }

    /// Whether `name` is a secret field (any case).
    pub(crate) fn is_field(&self, name: &str) -> bool {
        self.fields.contains(&name.to_ascii_lowercase())
    }

    /// A secret name in a query string, form body or redirect URL.
    fn is_query_field(&self, name: &str) -> bool {
        let n = name.to_ascii_lowercase();
        self.fields.contains(&n) || self.query_fields.contains(&n)
    }

    /// The value to store for header `name`. A redirect (`Location`) keeps its URL with the secrets
    /// in its query and fragment replaced: an OAuth redirect carries a code, or a token.
    pub fn header<'a>(&self, name: &str, value: &'a str) -> Cow<'a, str> {
        let name = name.to_ascii_lowercase();
        if self.headers.contains(&name) {
            // An empty credential holds no secret, and replay must see that it was empty (the
            // platform answers a request without a token by its own rule).
            if no_credential(value) {
                return Cow::Borrowed(value);
            }
            return Cow::Owned(self.replacement.clone());
        }
        if name == "location" || name == "content-location" {
            return self.url(value);
        }
        Cow::Borrowed(value)
    }

    /// A URL with the secrets in its query and fragment replaced.
    pub fn url<'a>(&self, url: &'a str) -> Cow<'a, str> {
        let (before_fragment, fragment) = match url.split_once('#') {
            Some((a, f)) => (a, Some(f)),
            None => (url, None),
        };
        let (base, query) = match before_fragment.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (before_fragment, None),
        };
        let q = query.map(|q| self.urlencoded(q));
        let f = fragment.map(|f| self.urlencoded(f));
        if !matches!(q, Some(Cow::Owned(_))) && !matches!(f, Some(Cow::Owned(_))) {
            return Cow::Borrowed(url);
        }
        let mut out = base.to_string();
        if let Some(q) = q {
            out.push('?');
            out.push_str(&q);
        }
        if let Some(f) = f {
            out.push('#');
            out.push_str(&f);
        }
        Cow::Owned(out)
    }

    /// Redacts a list of headers in place.
    pub fn headers(&self, headers: &mut [(String, String)]) {
        for (k, v) in headers.iter_mut() {
            if let Cow::Owned(r) = self.header(k, v) {
                *v = r;
            }
        }
    }

    /// Redacts `key=value` pairs of a query string or form body whose key is a secret field
    /// (and, with PII on, e-mail addresses and phone numbers in values).
    pub fn urlencoded<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut changed = false;
        let parts: Vec<String> = s
            .split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                if self.is_query_field(&percent_decode(k)) && v != percent_encode(&self.replacement) {
                    changed = true;
                    return format!("{k}={}", percent_encode(&self.replacement));
                }
                if self.pii.is_some() {
                    let decoded = percent_decode(v);
                    if let Cow::Owned(r) = self.pii_text(&decoded) {
                        changed = true;
                        return format!("{k}={}", percent_encode(&r));
                    }
                }
                pair.to_string()
            })
            .collect();
        if changed {
            Cow::Owned(parts.join("&"))
        } else {
            Cow::Borrowed(s)
        }
    }

    /// `s` with e-mail addresses and phone numbers replaced, borrowed when nothing matched or PII is off.
    pub(crate) fn pii_text<'a>(&self, s: &'a str) -> Cow<'a, str> {
        match &self.pii {
            None => Cow::Borrowed(s),
            Some((email, phone)) => {
                let a = email.replace_all(s, self.replacement.as_str());
                let b = phone.replace_all(&a, self.replacement.as_str()).into_owned();
                if b == s {
                    Cow::Borrowed(s)
                } else {
                    Cow::Owned(b)
                }
            }
        }
    }

    /// Values that redaction should have replaced and did not: (where, field or header, value).
    /// For auditing cassettes made elsewhere (HAR, hand-edited JSON Lines) or with other settings.
    pub fn sensitive_values(&self, c: &super::model::Cassette) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let live = |v: &str| self.is_live_secret(v);
        let json_walk = |at: &str, v: &Value, out: &mut Vec<(String, String, String)>| {
            /// Collects string values under secret field names, at any depth.
            fn walk(r: &Redactor, at: &str, v: &Value, out: &mut Vec<(String, String, String)>) {
                match v {
                    Value::Object(m) => {
                        for (k, val) in m {
                            match val.as_str() {
                                Some(s) if r.is_field(k) && r.is_live_secret(s) => {
                                    out.push((at.to_string(), k.clone(), s.to_string()))
                                }
                                _ => walk(r, at, val, out),
                            }
                        }
                    }
                    Value::Array(items) => items.iter().for_each(|i| walk(r, at, i, out)),
                    _ => {}
                }
            }
            walk(self, at, v, out)
        };
        let pairs = |at: &str, text: &str, out: &mut Vec<(String, String, String)>| {
            for (k, v) in crate::encoding::decode_pairs(text) {
                if self.is_field(&k) && live(&v) {
                    out.push((at.to_string(), k, v));
                }
            }
        };
        for e in &c.exchanges {
            let at = |what: &str| format!("exchange {} ({} {}) {what}", e.seq, e.request.method, e.request.path);
            for (side, headers) in [("request", &e.request.headers), ("response", &e.response.headers)] {
                for (k, v) in headers {
                    if self.headers.contains(&k.to_ascii_lowercase()) && live(v) {
                        out.push((at(&format!("{side} header")), k.clone(), v.clone()));
                    }
                }
            }
            if let Some(q) = &e.request.query {
                pairs(&at("query"), q, &mut out);
            }
            for (side, body) in [("request body", &e.request.body.bytes), ("response body", &e.response.body.bytes)] {
                match serde_json::from_slice::<Value>(body) {
                    Ok(v) => json_walk(&at(side), &v, &mut out),
                    Err(_) => {
                        if let Ok(t) = std::str::from_utf8(body) {
                            if t.contains('=') && !t.contains(' ') {
                                pairs(&at(side), t, &mut out);
                            }
                        }
                    }
                }
            }
        }
        for f in &c.frames {
            if let Ok(v) = serde_json::from_slice::<Value>(&f.data.bytes) {
                json_walk(&format!("frame {}/{}", f.session, f.n), &v, &mut out);
            }
        }
        out
    }

    /// Redacts a JSON value in place; returns whether anything changed.
    pub fn json(&self, v: &mut Value) -> bool {
        self.json_with(v, false)
    }

    /// Redacts a JSON value in place; a secret that is a JWT keeps its claims when `keep_claims`
    /// (what is stored), else becomes the marker (what is matched, so keys never depend on a token).
    fn json_with(&self, v: &mut Value, keep_claims: bool) -> bool {
        match v {
            Value::Object(map) => {
                let mut changed = false;
                for (k, val) in map.iter_mut() {
                    if self.is_field(k) {
                        let kept = val.as_str().filter(|_| keep_claims).and_then(|s| self.jwt(s));
                        let to = kept.unwrap_or_else(|| self.replacement.clone());
                        if !val.is_null() && val.as_str() != Some(to.as_str()) {
                            *val = Value::String(to);
                            changed = true;
                        }
                    } else {
                        changed |= self.json_with(val, keep_claims);
                    }
                }
                changed
            }
            Value::Array(items) => items.iter_mut().fold(false, |c, i| self.json_with(i, keep_claims) | c),
            Value::String(s) => {
                // A signed JWT is a credential under any name (`{"token": "eyJ…"}`).
                let to = match self.jwt_text(s, keep_claims) {
                    Some(t) => Cow::Owned(t),
                    None => self.pii_text(s),
                };
                match to {
                    Cow::Owned(r) if r != *s => {
                        *s = r;
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        }
    }

    /// Redacts a body given its content type. Returns the input unchanged when nothing was redacted.
    pub fn body<'a>(&self, content_type: Option<&str>, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        self.body_with(content_type, bytes, false)
    }

    /// Redacts a body as it is stored: like [`Redactor::body`], except that a JWT among the
    /// secrets keeps its header and claims (signature replaced), so replay can mint tokens that
    /// say what the platform's said.
    pub fn stored_body<'a>(&self, content_type: Option<&str>, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        self.body_with(content_type, bytes, true)
    }

    fn body_with<'a>(&self, content_type: Option<&str>, bytes: &'a [u8], keep_claims: bool) -> Cow<'a, [u8]> {
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        if ct.contains("x-www-form-urlencoded") {
            if let Ok(s) = std::str::from_utf8(bytes) {
                return match self.urlencoded(s) {
                    Cow::Borrowed(_) => Cow::Borrowed(bytes),
                    Cow::Owned(o) => Cow::Owned(o.into_bytes()),
                };
            }
            return Cow::Borrowed(bytes);
        }
        if looks_json(&ct, bytes) {
            if let Ok(mut v) = serde_json::from_slice::<Value>(bytes) {
                if self.json_with(&mut v, keep_claims) {
                    return Cow::Owned(serde_json::to_vec(&v).unwrap_or_else(|_| bytes.to_vec()));
                }
                return Cow::Borrowed(bytes);
            }
            // Labelled JSON but sent as form fields (NICE's SDKs post their token requests so).
            if let Ok(s) = std::str::from_utf8(bytes) {
                if !s.trim_start().starts_with(['{', '[']) && s.contains('=') {
                    if let Cow::Owned(o) = self.urlencoded(s) {
                        return Cow::Owned(o.into_bytes());
                    }
                }
            }
        }
        if self.pii.is_some() {
            if let Ok(s) = std::str::from_utf8(bytes) {
                if let Cow::Owned(r) = self.pii_text(s) {
                    return Cow::Owned(r.into_bytes());
                }
            }
        }
        Cow::Borrowed(bytes)
    }
}

/// Whether a body with this (lower-case) content type is read as JSON: the type says so, or the
/// body opens an object or an array.
pub(crate) fn looks_json(content_type: &str, bytes: &[u8]) -> bool {
    content_type.contains("json") || matches!(bytes.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'['))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_credential_is_kept_as_sent() {
        let r = Redactor::new(&RedactConfig::default());
        assert_eq!(r.header("Authorization", "Bearer "), "Bearer ");
        assert_eq!(r.header("authorization", ""), "");
        assert_eq!(r.header("authorization", "Bearer abc"), MARKER);
        assert_eq!(r.header("authorization", "bearerish"), MARKER);
        assert!(no_credential(" basic ") && !no_credential("Basic dXNlcjpwYXNz"));
    }

    fn r() -> Redactor {
        Redactor::new(&RedactConfig::default())
    }

    #[test]
    fn headers_and_fields_are_replaced() {
        let r = r();
        assert_eq!(r.header("Authorization", "Bearer abc"), "[REDACTED]");
        assert_eq!(r.header("Accept", "x"), "x");
        let q = r.urlencoded("grant_type=client_credentials&client_secret=s3cr3t&x=1");
        assert_eq!(q, "grant_type=client_credentials&client_secret=%5BREDACTED%5D&x=1");
        assert!(matches!(r.urlencoded("a=1&b=2"), Cow::Borrowed(_)));
        let body = br#"{"a":{"access_token":"tok","list":[{"refresh_token":"rt"}]},"keep":"v"}"#;
        let out = r.body(Some("application/json"), body);
        let s = std::str::from_utf8(&out).unwrap();
        assert!(!s.contains("\"tok\"") && !s.contains("\"rt\""), "{s}");
        assert!(s.contains("\"keep\":\"v\""), "{s}");
        assert!(s.find("\"a\"").unwrap() < s.find("\"keep\"").unwrap(), "order kept: {s}");
        let untouched = br#"{"b": 1}"#;
        assert!(matches!(r.body(Some("application/json"), untouched), Cow::Borrowed(_)));
    }

    #[test]
    fn oauth_codes_and_tokens_in_forms_and_redirects_are_replaced_but_json_error_codes_are_not() {
        let r = r();
        let form = r.body(Some("application/x-www-form-urlencoded"), b"grant_type=authorization_code&code=c0de-123");
        assert_eq!(std::str::from_utf8(&form).unwrap(), "grant_type=authorization_code&code=%5BREDACTED%5D");
        let err = br#"{"message":"x","code":"bad.request","status":400}"#;
        assert!(matches!(r.body(Some("application/json"), err), Cow::Borrowed(_)), "a JSON code is an error code");
        assert_eq!(
            r.header("Location", "http://localhost/cb?code=c0de-123&state=s-1"),
            "http://localhost/cb?code=%5BREDACTED%5D&state=s-1"
        );
        assert_eq!(
            r.header("location", "http://localhost/cb#access_token=eyJhbGci.x.y&expires_in=3600"),
            "http://localhost/cb#access_token=%5BREDACTED%5D&expires_in=3600"
        );
        assert!(matches!(r.header("Location", "https://apps.mypurecloud.com/a?b=1"), Cow::Borrowed(_)));
    }

    #[test]
    fn percent_decoding_handles_edges() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%41"), "A");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn pii_is_optional() {
        let cfg = RedactConfig { pii: true, ..Default::default() };
        let r = Redactor::new(&cfg);
        let out = r.body(Some("application/json"), br#"{"email":"jo@example.com","phone":"+1 317 555 0100"}"#);
        let s = std::str::from_utf8(&out).unwrap();
        assert!(!s.contains("example.com") && !s.contains("555"), "{s}");
    }

    fn b64(v: &Value) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn a_stored_jwt_keeps_its_claims_and_loses_its_signature() {
        let claims = serde_json::json!({"tenantId": "t-1", "icBUId": 4123456, "email": "jo@example.com", "iat": 1});
        let token = format!("{}.{}.c2lnbmF0dXJl", b64(&serde_json::json!({"alg": "RS256", "kid": "k"})), b64(&claims));
        let body = serde_json::json!({"access_token": token, "token_type": "bearer"}).to_string();
        let r = r();
        let stored: Value = serde_json::from_slice(&r.stored_body(Some("application/json"), body.as_bytes())).unwrap();
        let kept = stored["access_token"].as_str().unwrap();
        assert!(kept.ends_with(".[REDACTED]") && !kept.contains("c2lnbmF0dXJl"), "{kept}");
        assert_eq!(Value::Object(jwt_claims(kept).unwrap()), claims);
        // What is matched never depends on a token: the marker, whole.
        let matched: Value = serde_json::from_slice(&r.body(Some("application/json"), body.as_bytes())).unwrap();
        assert_eq!(matched["access_token"], "[REDACTED]");
        // An opaque token is no JWT: replaced whole.
        let opaque = br#"{"access_token":"aGVsbG8gd29ybGQ"}"#;
        let s: Value = serde_json::from_slice(&r.stored_body(Some("application/json"), opaque)).unwrap();
        assert_eq!(s["access_token"], "[REDACTED]");

        // `jwt_claims` and `pii` drop claims.
        let cfg = RedactConfig { pii: true, jwt_claims: vec!["icBUId".into()], ..RedactConfig::default() };
        let r2 = Redactor::new(&cfg);
        let c = jwt_claims(&r2.jwt(&token).unwrap()).unwrap();
        assert_eq!(Value::Object(c), serde_json::json!({"tenantId": "t-1", "iat": 1}));

        // The audit knows a signature-less JWT is no secret, and flags one whose signature survived.
        let ex = |body: &str| crate::cassette::model::test_exchange(1, "POST", "/oauth/token", None, "", 200, body);
        let cassette = |b: &str| crate::cassette::Cassette { exchanges: vec![ex(b)], frames: vec![] };
        let clean = serde_json::json!({"access_token": kept}).to_string();
        assert!(r.sensitive_values(&cassette(&clean)).is_empty());
        let found = r.sensitive_values(&cassette(&body));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1, "access_token");

        // A bearer JWT is stored by its signature too; any other credential header whole.
        let mut h = vec![("Authorization".to_string(), format!("Bearer {token}")), ("Cookie".into(), "s=1".into())];
        r.stored_headers(&mut h);
        assert_eq!(h[0].1, format!("Bearer {kept}"));
        assert_eq!(h[1].1, "[REDACTED]");
        let mut e = crate::cassette::model::test_exchange(1, "GET", "/x", None, "", 200, "{}");
        e.request.headers = h;
        let c = crate::cassette::Cassette { exchanges: vec![e], frames: vec![] };
        assert!(r.sensitive_values(&c).is_empty(), "{:?}", r.sensitive_values(&c));
        let mut basic = vec![("Authorization".to_string(), "Basic YTpi".to_string())];
        r.stored_headers(&mut basic);
        assert_eq!(basic[0].1, "[REDACTED]");
    }

    #[test]
    fn a_jwt_under_any_name_and_form_fields_labelled_json_are_redacted() {
        let claims = serde_json::json!({"tenantId": "t-1", "sub": "user:1"});
        let token = format!("{}.{}.c2lnbmF0dXJl", b64(&serde_json::json!({"alg": "RS256"})), b64(&claims));
        let r = r();
        // NICE's whoami sends the access token as `token`.
        let body = serde_json::json!({"token": token, "note": "api.example.com", "v": "1.2.3"}).to_string();
        let stored: Value = serde_json::from_slice(&r.stored_body(Some("application/json"), body.as_bytes())).unwrap();
        let kept = stored["token"].as_str().unwrap();
        assert!(kept.ends_with(".[REDACTED]") && !kept.contains("c2lnbmF0dXJl"), "{kept}");
        assert_eq!(Value::Object(jwt_claims(kept).unwrap()), claims);
        assert_eq!((stored["note"].as_str(), stored["v"].as_str()), (Some("api.example.com"), Some("1.2.3")));
        let matched: Value = serde_json::from_slice(&r.body(Some("application/json"), body.as_bytes())).unwrap();
        assert_eq!(matched["token"], "[REDACTED]");
        // A token request labelled JSON whose body is form fields.
        let form = b"grant_type=authorization_code&code=abc&code_verifier=xyz&client_id=app";
        let stored = r.stored_body(Some("application/json"), form);
        let text = std::str::from_utf8(&stored).unwrap();
        assert!(!text.contains("abc") && !text.contains("xyz"), "{text}");
        assert!(text.contains("grant_type=authorization_code") && text.contains("client_id=app"), "{text}");
    }
}
