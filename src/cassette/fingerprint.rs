//! Request fingerprints for replay matching, and the explanation of a miss.
//! Pure: a fingerprint is computed from a redacted request and the matching configuration.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::model::RecordedRequest;
use super::redact::{looks_json, Redactor};
use crate::config::MatchConfig;
use crate::encoding::{decode_pairs, fnv1a, ParsedBody};

/// The parts of a request that decide a replay match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// Upper-case method.
    pub method: String,
    /// Lower-case host (with a non-default port).
    pub host: String,
    /// Path as sent.
    pub path: String,
    /// Decoded query pairs, sorted; ignored parameters removed.
    pub query: Vec<(String, String)>,
    /// Headers that take part (configured), lower-case names, sorted.
    pub headers: Vec<(String, String)>,
    /// The body, compared by meaning where its type allows.
    pub body: BodyKey,
}

/// A fingerprint reduced to 128 bits: what the replay index keeps per recording. Two SipHash
/// passes with different salts over the fingerprint's parts, written out field by field so a key
/// can be made from a request's parts as well as from a [`Fingerprint`]; a collision among a
/// million recordings is about 1 in 10^26.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(u64, u64);

impl Key {
    /// The key as one number (how the replay file stores and orders keys).
    pub fn to_u128(self) -> u128 {
        (u128::from(self.0) << 64) | u128::from(self.1)
    }

    /// The key [`Key::to_u128`] gave.
    pub fn from_u128(v: u128) -> Key {
        Key((v >> 64) as u64, v as u64)
    }

    /// The key of a fingerprint.
    pub fn of(fp: &Fingerprint) -> Key {
        Key::from_parts(fp.method.as_bytes(), fp.host.as_bytes(), fp.path.as_bytes(), &fp.query, &fp.headers, &fp.body)
    }

    /// The key from normalised parts (method upper-case, host lower-case, pairs sorted). Each field is
    /// length-prefixed so `("ab", "c")` and `("a", "bc")` differ. `DefaultHasher::new()` has fixed keys, so
    /// keys are stable within one build; [`Matcher::identity`] catches a build that hashes differently.
    fn from_parts(
        method: &[u8],
        host: &[u8],
        path: &[u8],
        query: &[(String, String)],
        headers: &[(String, String)],
        body: &BodyKey,
    ) -> Key {
        use std::hash::{Hash, Hasher};
        let pass = |salt: u8| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            h.write_u8(salt);
            for field in [method, host, path] {
                h.write_usize(field.len());
                h.write(field);
            }
            for pairs in [query, headers] {
                h.write_usize(pairs.len());
                for (k, v) in pairs {
                    h.write_usize(k.len());
                    h.write(k.as_bytes());
                    h.write_usize(v.len());
                    h.write(v.as_bytes());
                }
            }
            body.hash(&mut h);
            h.finish()
        };
        Key(pass(0x5a), pass(0xa5))
    }
}

/// A body reduced to what decides a match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BodyKey {
    /// No body.
    Empty,
    /// JSON, canonical text (keys sorted, ignored paths removed).
    Json(String),
    /// Form fields, sorted.
    Form(Vec<(String, String)>),
    /// Anything else: length and a stable hash of the bytes.
    Raw {
        /// Byte length.
        len: usize,
        /// FNV-1a 64 of the bytes.
        hash: u64,
    },
}

/// Computes fingerprints under one matching configuration.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The `match:` settings: headers that take part, ignored query parameters and JSON paths.
    cfg: MatchConfig,
    /// `match.ignore_json_paths` split into segments once (`$.a.*.b` → `["a", "*", "b"]`).
    ignore_paths: Vec<Vec<String>>,
    /// Applied before fingerprinting, so a live secret and its recorded placeholder give one key.
    redactor: Redactor,
    /// Keys of requests with a body, by their exact bytes (shared by the matcher's clones).
    memo: std::sync::Arc<KeyMemo>,
}

/// Keys already worked out for requests with a body, by the request's exact bytes: the key is a
/// function of them (under one matcher), so an entry is checked byte for byte, never guessed from
/// a hash. Bounded: full, it starts over.
#[derive(Default)]
struct KeyMemo {
    /// Per thread (each core works on its own lock and map): by a hash of head and body, each
    /// request seen with that hash, and the bytes held.
    shards: crate::sharded::PerThread<std::sync::Mutex<Remembering>>,
}

/// One thread's memo: by hash, the requests seen; and how many bytes they hold.
type Remembering = (HashMap<u64, Vec<Remembered>>, usize);

/// A request's head (method, host, path, query and the headers that take part, length-prefixed),
/// its body, and its key.
type Remembered = (Box<[u8]>, Box<[u8]>, Key);

/// What one thread's memo may hold, in bytes of requests, before it starts over.
const MEMO_BYTES: usize = 4 << 20;

/// The largest request remembered (head and body).
const MEMO_MAX_REQUEST: usize = 64 << 10;

/// A fast hash of `head` then `body` for the memo: four independent multiply-rotate lanes over
/// 8-byte words, so a large body costs a fraction of SipHash. Not for untrusted maps: a collision
/// only costs a byte comparison, since every hit is checked byte for byte.
fn memo_hash(head: &[u8], body: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut lanes = [0x243f_6a88_85a3_08d3u64, 0x1319_8a2e_0370_7344, 0xa409_3822_299f_31d0, 0x082e_fa98_ec4e_6c89];
    let mix = |data: &[u8], lanes: &mut [u64; 4]| {
        let mut chunks = data.chunks_exact(32);
        for c in &mut chunks {
            for (i, lane) in lanes.iter_mut().enumerate() {
                let w = u64::from_le_bytes(c[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
                *lane = (*lane ^ w).wrapping_mul(K).rotate_left(29);
            }
        }
        let rest = chunks.remainder();
        for (i, w) in rest.chunks(8).enumerate() {
            let mut b = [0u8; 8];
            b[..w.len()].copy_from_slice(w);
            lanes[i] = (lanes[i] ^ u64::from_le_bytes(b)).wrapping_mul(K).rotate_left(29);
        }
        // The length ends each part, so where head stops and body starts is part of the hash.
        lanes[0] ^= data.len() as u64;
        lanes[0] = lanes[0].wrapping_mul(K);
    };
    mix(head, &mut lanes);
    mix(body, &mut lanes);
    let mut h = lanes[0] ^ lanes[1].rotate_left(17) ^ lanes[2].rotate_left(31) ^ lanes[3].rotate_left(47);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

impl KeyMemo {
    fn get(&self, head: &[u8], body: &[u8]) -> Option<Key> {
        let h = memo_hash(head, body);
        let entries = self.shards.mine().lock().unwrap_or_else(|e| e.into_inner());
        entries.0.get(&h)?.iter().find(|(hd, b, _)| **hd == *head && **b == *body).map(|(_, _, k)| *k)
    }

    fn put(&self, head: Vec<u8>, body: &[u8], key: Key) {
        let size = head.len() + body.len();
        if size > MEMO_MAX_REQUEST {
            return;
        }
        let h = memo_hash(&head, body);
        let mut entries = self.shards.mine().lock().unwrap_or_else(|e| e.into_inner());
        if entries.1 + size > MEMO_BYTES {
            *entries = Default::default();
        }
        entries.1 += size;
        entries.0.entry(h).or_default().push((head.into_boxed_slice(), body.into(), key));
    }
}

impl std::fmt::Debug for KeyMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n: usize = self.shards.all().map(|s| s.lock().map(|e| e.0.len()).unwrap_or(0)).sum();
        write!(f, "KeyMemo({n} bodies)")
    }
}

impl Matcher {
    /// A matcher that redacts with `redactor` before fingerprinting, as recording did.
    pub fn new(cfg: &MatchConfig, redactor: Redactor) -> Matcher {
        let ignore_paths = cfg
            .ignore_json_paths
            .iter()
            .map(|p| p.trim_start_matches("$.").split('.').map(String::from).collect())
            .collect();
        Matcher { cfg: cfg.clone(), ignore_paths, redactor, memo: Default::default() }
    }

    /// A number that changes whenever keys made by this matcher could: the callvcr version, the
    /// matching and redaction settings, and the key of a fixed sample request (so a change in how
    /// this build hashes shows too). Keys stored under another identity are not used.
    pub fn identity(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let sample = RecordedRequest {
            method: "POST".into(),
            scheme: "https".into(),
            host: "api.mypurecloud.com".into(),
            path: "/api/v2/sample".into(),
            query: Some("b=2&a=1".into()),
            headers: vec![("content-type".into(), "application/json".into())],
            body: crate::cassette::Body {
                bytes: bytes::Bytes::from_static(br#"{"z":1,"a":[true,null]}"#),
                encoding: None,
            },
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        env!("CARGO_PKG_VERSION").hash(&mut h);
        format!("{:?}", self.cfg).hash(&mut h);
        self.redactor.policy().hash(&mut h);
        Key::of(&self.fingerprint(&sample)).to_u128().hash(&mut h);
        h.finish()
    }

    /// The redactor used before fingerprinting.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// The fingerprint of a request. `req` may be live (it is redacted here) or recorded (redaction is idempotent).
    pub fn fingerprint(&self, req: &RecordedRequest) -> Fingerprint {
        self.fingerprint_parts(
            &req.method,
            &req.host,
            &req.path,
            req.query.as_deref(),
            |h| req.header(h),
            &req.body.bytes,
        )
    }

    /// The index key of a request from its parts: the hit path. A request with no query, no body
    /// and no matching headers configured (most reads) is hashed straight from its parts, with no
    /// allocation; any other goes through [`Matcher::fingerprint_parts`]. Both give the same key.
    pub fn key_parts<'h>(
        &self,
        method: &str,
        host: &str,
        path: &str,
        query: Option<&str>,
        header: impl Fn(&str) -> Option<&'h str>,
        body: &[u8],
    ) -> Key {
        self.key_parsed(method, host, path, query, header, &ParsedBody::new(body))
    }

    /// [`Matcher::key_parts`] of a body that may already be parsed.
    pub fn key_parsed<'h>(
        &self,
        method: &str,
        host: &str,
        path: &str,
        query: Option<&str>,
        header: impl Fn(&str) -> Option<&'h str>,
        body: &ParsedBody<'_>,
    ) -> Key {
        let plain = matches!(query, None | Some("")) && body.bytes().is_empty() && self.cfg.headers.is_empty();
        let (mut m, mut h) = ([0u8; 16], [0u8; 256]);
        if plain && method.len() <= m.len() && host.len() <= h.len() {
            let m = &mut m[..method.len()];
            m.copy_from_slice(method.as_bytes());
            m.make_ascii_uppercase();
            let h = &mut h[..host.len()];
            h.copy_from_slice(host.as_bytes());
            h.make_ascii_lowercase();
            return Key::from_parts(m, h, path.as_bytes(), &[], &[], &BodyKey::Empty);
        }
        if body.bytes().is_empty() {
            return Key::of(&self.fingerprint_parsed(method, host, path, query, header, body));
        }
        // A request with a body: SDKs send the same bodies again and again, so the key of each
        // distinct request (its exact bytes) is worked out once and remembered.
        let mut head = Vec::with_capacity(64 + path.len() + query.map_or(0, str::len));
        for part in [Some(method), Some(host), Some(path), query, header("content-type")]
            .into_iter()
            .chain(self.cfg.headers.iter().map(|h| header(&h.to_ascii_lowercase())))
        {
            match part {
                Some(p) => {
                    head.extend_from_slice(&(p.len() as u64).to_le_bytes());
                    head.extend_from_slice(p.as_bytes());
                }
                None => head.extend_from_slice(&u64::MAX.to_le_bytes()),
            }
        }
        if let Some(k) = self.memo.get(&head, body.bytes()) {
            return k;
        }
        let k = Key::of(&self.fingerprint_parsed(method, host, path, query, header, body));
        self.memo.put(head, body.bytes(), k);
        k
    }

    /// The fingerprint from a request's parts, without building a [`RecordedRequest`] (the hit path).
    /// `header` looks a request header up by lower-case name.
    pub fn fingerprint_parts<'h>(
        &self,
        method: &str,
        host: &str,
        path: &str,
        query: Option<&str>,
        header: impl Fn(&str) -> Option<&'h str>,
        body: &[u8],
    ) -> Fingerprint {
        self.fingerprint_parsed(method, host, path, query, header, &ParsedBody::new(body))
    }

    /// [`Matcher::fingerprint_parts`] of a body that may already be parsed (shared with the
    /// overlays that read it).
    pub fn fingerprint_parsed<'h>(
        &self,
        method: &str,
        host: &str,
        path: &str,
        query: Option<&str>,
        header: impl Fn(&str) -> Option<&'h str>,
        body: &ParsedBody<'_>,
    ) -> Fingerprint {
        let mut query: Vec<(String, String)> = match query {
            None | Some("") => Vec::new(),
            Some(q) => decode_pairs(&self.redactor.urlencoded(q))
                .into_iter()
                .filter(|(k, _)| !self.cfg.ignore_query.iter().any(|i| i == k))
                .collect(),
        };
        query.sort();
        let mut headers: Vec<(String, String)> = self
            .cfg
            .headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .filter_map(|h| header(&h).map(|v| (h.clone(), self.redactor.header(&h, v).into_owned())))
            .collect();
        headers.sort();
        let ct = header("content-type");
        let body = if body.bytes().is_empty() { BodyKey::Empty } else { self.request_body_key(ct, body) };
        Fingerprint {
            method: method.to_ascii_uppercase(),
            host: host.to_ascii_lowercase(),
            path: path.to_string(),
            query,
            headers,
            body,
        }
    }

    /// The body's match form: form fields sorted when the type says form-encoded, canonical JSON when it
    /// parses as JSON (whatever the type claims), otherwise length and hash.
    /// The key of a request body as it is sent: redacted as the recorder stores it, then compared by
    /// meaning. A JSON body is read from its one parse, redacted while it is written out.
    fn request_body_key(&self, content_type: Option<&str>, body: &ParsedBody<'_>) -> BodyKey {
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        let json =
            if ct.contains("x-www-form-urlencoded") || !looks_json(&ct, body.bytes()) { None } else { body.json() };
        let Some(v) = json else {
            return self.body_key(content_type, &self.redactor.body(content_type, body.bytes()));
        };
        let mut out = Vec::with_capacity(body.bytes().len());
        if self.ignore_paths.is_empty() {
            write_canonical(v, Some(&self.redactor), &mut out);
        } else {
            let mut v = v.clone();
            self.redactor.json(&mut v);
            for p in &self.ignore_paths {
                remove_path(&mut v, p);
            }
            write_canonical(&v, None, &mut out);
        }
        BodyKey::Json(into_text(out))
    }

    fn body_key(&self, content_type: Option<&str>, bytes: &[u8]) -> BodyKey {
        if bytes.is_empty() {
            return BodyKey::Empty;
        }
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        if ct.contains("x-www-form-urlencoded") {
            if let Ok(s) = std::str::from_utf8(bytes) {
                let mut f = decode_pairs(s);
                f.sort();
                return BodyKey::Form(f);
            }
        }
        if let Ok(mut v) = serde_json::from_slice::<Value>(bytes) {
            for p in &self.ignore_paths {
                remove_path(&mut v, p);
            }
            let mut out = Vec::with_capacity(bytes.len());
            write_canonical(&v, None, &mut out);
            return BodyKey::Json(into_text(out));
        }
        BodyKey::Raw { len: bytes.len(), hash: fnv1a(bytes) }
    }
}

/// Removes the value at a dotted path; `*` matches every key or array item.
fn remove_path(v: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else { return };
    match v {
        Value::Object(m) => {
            if rest.is_empty() {
                if first == "*" {
                    m.clear();
                } else {
                    m.shift_remove(first);
                }
            } else if first == "*" {
                m.values_mut().for_each(|c| remove_path(c, rest));
            } else if let Some(c) = m.get_mut(first) {
                remove_path(c, rest);
            }
        }
        Value::Array(a) if first == "*" || first.parse::<usize>().is_ok() => {
            if first == "*" {
                if rest.is_empty() {
                    a.clear();
                } else {
                    a.iter_mut().for_each(|c| remove_path(c, rest));
                }
            } else if let Ok(i) = first.parse::<usize>() {
                if rest.is_empty() {
                    if i < a.len() {
                        a.remove(i);
                    }
                } else if let Some(c) = a.get_mut(i) {
                    remove_path(c, rest);
                }
            }
        }
        _ => {}
    }
}

/// JSON with object keys sorted, no whitespace: equal for bodies equal in meaning. With a redactor,
/// written as it would be after redaction (a secret field's value as the marker, personal data in
/// strings replaced), so a live body needs no redacted copy.
fn write_canonical(v: &Value, redact: Option<&Redactor>, out: &mut Vec<u8>) {
    // Writing JSON text into a Vec cannot fail.
    let text = |out: &mut Vec<u8>, s: &str| {
        let _ = serde_json::to_writer(&mut *out, s);
    };
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                text(out, k);
                out.push(b':');
                let val = &m[k.as_str()];
                match redact {
                    Some(r) if !val.is_null() && r.is_field(k) => text(out, r.replacement()),
                    _ => write_canonical(val, redact, out),
                }
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(x, redact, out);
            }
            out.push(b']');
        }
        Value::String(s) => match redact.map(|r| (r, r.jwt_text(s, false))) {
            Some((_, Some(marker))) => text(out, &marker),
            Some((r, None)) => text(out, &r.pii_text(s)),
            None => text(out, s),
        },
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// Text that serde_json wrote.
fn into_text(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// How a live fingerprint differs from a recorded one, with a score (lower is closer).
#[derive(Debug, Clone)]
pub struct Difference {
    /// Weighted distance.
    pub score: u32,
    /// One line per differing part.
    pub parts: Vec<String>,
}

/// Compares `live` with `recorded`, part by part.
pub fn differences(live: &Fingerprint, recorded: &Fingerprint) -> Difference {
    let mut score = 0;
    let mut parts = Vec::new();
    if live.host != recorded.host {
        score += 16;
        parts.push(format!("host: `{}` vs recorded `{}`", live.host, recorded.host));
    }
    if live.method != recorded.method {
        score += 8;
        parts.push(format!("method: {} vs recorded {}", live.method, recorded.method));
    }
    if live.path != recorded.path {
        let a: Vec<&str> = live.path.split('/').collect();
        let b: Vec<&str> = recorded.path.split('/').collect();
        let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count() + a.len().abs_diff(b.len());
        score += 4 * differing as u32;
        parts.push(format!("path: `{}` vs recorded `{}`", live.path, recorded.path));
    }
    if live.query != recorded.query {
        let only_live: Vec<String> =
            live.query.iter().filter(|p| !recorded.query.contains(p)).map(|(k, v)| format!("{k}={v}")).collect();
        let only_rec: Vec<String> =
            recorded.query.iter().filter(|p| !live.query.contains(p)).map(|(k, v)| format!("{k}={v}")).collect();
        score += (only_live.len() + only_rec.len()) as u32;
        parts.push(format!("query: live has [{}], recorded has [{}]", only_live.join(", "), only_rec.join(", ")));
    }
    if live.headers != recorded.headers {
        score += 1;
        parts.push(format!("headers: {:?} vs recorded {:?}", live.headers, recorded.headers));
    }
    if live.body != recorded.body {
        score += 2;
        parts.push(format!("body: {} vs recorded {}", describe_body(&live.body), describe_body(&recorded.body)));
    }
    Difference { score, parts }
}

/// A body key as a miss report shows it, long JSON and forms cut at 200 bytes.
fn describe_body(b: &BodyKey) -> String {
    match b {
        BodyKey::Empty => "empty".into(),
        BodyKey::Json(s) => {
            let mut t = String::new();
            let _ = write!(t, "JSON {}", truncate(s, 200));
            t
        }
        BodyKey::Form(f) => format!(
            "form [{}]",
            truncate(&f.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"), 200)
        ),
        BodyKey::Raw { len, hash } => format!("{len} bytes (hash {hash:016x})"),
    }
}

/// `s` cut to at most `n` bytes on a character boundary, with `…` when cut.
fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cassette::model::Body;
    use crate::config::RedactConfig;

    #[test]
    fn a_body_keyed_from_its_one_parse_equals_the_redacted_copy_keyed() {
        let pii = RedactConfig { pii: true, ..RedactConfig::default() };
        let ignoring =
            MatchConfig { ignore_json_paths: vec!["$.meta.id".into(), "items.*.at".into()], ..MatchConfig::default() };
        let matchers = [
            Matcher::new(&MatchConfig::default(), Redactor::new(&RedactConfig::default())),
            Matcher::new(&MatchConfig::default(), Redactor::new(&pii)),
            Matcher::new(&ignoring, Redactor::new(&pii)),
        ];
        let bodies = [
            r#"{"b":1,"a":2}"#,
            r#"{"password":"hunter2","nested":{"client_secret":{"x":1},"token":null},"list":[{"access_token":"t"},2.5,"a@b.example"]}"#,
            r#"{"note":"call +1 317 555 0100 or mail x@y.example","meta":{"id":"m-1","n":[1,2]},"items":[{"at":"2026-01-05T09:00:00Z","k":"é\"q"}]}"#,
            r#"[{"refresh_token":"r"},"plain",true,null,-3]"#,
            r#"{"token":"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln","also":["eyJhbGciOiJub25lIn0.eyJhIjoxfQ."]}"#,
            "  {\"a\":1}",
            "42",
            "not json at all",
            "grant_type=password&password=x",
        ];
        for (i, m) in matchers.iter().enumerate() {
            for b in bodies {
                for ct in
                    [Some("application/json"), Some("text/plain"), None, Some("application/x-www-form-urlencoded")]
                {
                    let one = m.request_body_key(ct, &ParsedBody::new(b.as_bytes()));
                    let copied = m.body_key(ct, &m.redactor.body(ct, b.as_bytes()));
                    assert_eq!(one, copied, "matcher {i}, {ct:?}: {b}");
                }
            }
        }
    }

    #[test]
    fn a_remembered_key_is_the_key_of_exactly_that_request() {
        let m = Matcher::new(&MatchConfig::default(), Redactor::new(&RedactConfig::default()));
        let json = |h: &str| (h == "content-type").then_some("application/json");
        let form = |h: &str| (h == "content-type").then_some("application/x-www-form-urlencoded");
        let fresh = |ct: &dyn Fn(&str) -> Option<&'static str>, q: Option<&str>, b: &str| {
            Key::of(&m.fingerprint_parts("POST", "h", "/p", q, ct, b.as_bytes()))
        };
        for _ in 0..2 {
            // The second round is answered from the memo: each must still be its own request's key.
            assert_eq!(m.key_parts("POST", "h", "/p", None, json, br#"{"a":1}"#), fresh(&json, None, r#"{"a":1}"#));
            assert_eq!(m.key_parts("POST", "h", "/p", None, json, br#"{"a":2}"#), fresh(&json, None, r#"{"a":2}"#));
            assert_eq!(
                m.key_parts("POST", "h", "/p", Some("x=1"), json, br#"{"a":1}"#),
                fresh(&json, Some("x=1"), r#"{"a":1}"#)
            );
            assert_eq!(m.key_parts("POST", "h", "/p", None, form, b"a=1&b=2"), fresh(&form, None, "a=1&b=2"));
            assert_eq!(m.key_parts("POST", "h", "/p", None, |_| None, b"a=1&b=2"), fresh(&|_| None, None, "a=1&b=2"));
        }
        assert_ne!(
            m.key_parts("POST", "h", "/p", None, json, br#"{"a":1}"#),
            m.key_parts("POST", "h", "/q", None, json, br#"{"a":1}"#)
        );
        assert_eq!(
            m.key_parts("POST", "h", "/p", None, json, br#"{"b":1,"a":2}"#),
            m.key_parts("POST", "h", "/p", None, json, br#"{"a":2, "b":1}"#)
        );
    }

    #[test]
    fn the_hit_path_key_equals_the_fingerprint_key() {
        let m = Matcher::new(&MatchConfig::default(), Redactor::new(&RedactConfig::default()));
        let cases: [(&str, &str, &str, Option<&str>, &str); 5] = [
            ("get", "API.MyPureCloud.com", "/api/v2/users/me", None, ""),
            ("GET", "api.mypurecloud.com:8443", "/api/v2/users/me", Some(""), ""),
            ("GET", "api.mypurecloud.com", "/api/v2/users", Some("pageSize=25&b=1"), ""),
            ("POST", "api.mypurecloud.com", "/api/v2/echo", None, r#"{"b":1,"a":2}"#),
            ("PATCH", "api.mypurecloud.com", "/x", None, "a=1"),
        ];
        for (method, host, path, query, body) in cases {
            let ct = |h: &str| (h == "content-type").then_some("application/json");
            let fast = m.key_parts(method, host, path, query, ct, body.as_bytes());
            let full = Key::of(&m.fingerprint_parts(method, host, path, query, ct, body.as_bytes()));
            assert_eq!(fast, full, "{method} {host}{path}");
        }
        let k = |p: &str| m.key_parts("GET", "h", p, None, |_| None, b"");
        assert_ne!(k("/a"), k("/b"));
        assert_ne!(m.key_parts("GET", "h", "/a", Some("x=1"), |_| None, b""), k("/a"));
        // Field boundaries are part of the key: "ab"+"c" is not "a"+"bc".
        assert_ne!(
            m.key_parts("GET", "ab", "c", None, |_| None, b""),
            m.key_parts("GET", "a", "bc", None, |_| None, b"")
        );
    }

    fn req(method: &str, path: &str, query: Option<&str>, ct: Option<&str>, body: &str) -> RecordedRequest {
        let mut headers = vec![("authorization".to_string(), "Bearer live-token".to_string())];
        if let Some(ct) = ct {
            headers.push(("content-type".into(), ct.into()));
        }
        RecordedRequest {
            method: method.into(),
            scheme: "https".into(),
            host: "api.mypurecloud.com".into(),
            path: path.into(),
            query: query.map(String::from),
            headers,
            body: Body { bytes: body.to_string().into(), encoding: None },
        }
    }

    fn m(cfg: MatchConfig) -> Matcher {
        Matcher::new(&cfg, Redactor::new(&RedactConfig::default()))
    }

    #[test]
    fn query_order_json_order_and_authorization_do_not_matter() {
        let m = m(MatchConfig::default());
        let a = req("GET", "/api/v2/users", Some("pageSize=25&pageNumber=1"), None, "");
        let mut b = req("get", "/api/v2/users", Some("pageNumber=1&pageSize=25"), None, "");
        b.headers[0].1 = "Bearer other".into();
        assert_eq!(m.fingerprint(&a), m.fingerprint(&b));
        let j1 = req("POST", "/x", None, Some("application/json"), r#"{"a":1,"b":{"c":[1,2]}}"#);
        let j2 = req("POST", "/x", None, Some("application/json"), "{ \"b\": {\"c\": [1, 2]}, \"a\": 1 }");
        assert_eq!(m.fingerprint(&j1), m.fingerprint(&j2));
        let j3 = req("POST", "/x", None, Some("application/json"), r#"{"a":1,"b":{"c":[2,1]}}"#);
        assert_ne!(m.fingerprint(&j1), m.fingerprint(&j3));
    }

    #[test]
    fn redacted_fields_never_decide_a_match() {
        let m = m(MatchConfig::default());
        let ct = Some("application/x-www-form-urlencoded");
        let a = req("POST", "/oauth/token", None, ct, "grant_type=client_credentials&client_secret=one");
        let b = req("POST", "/oauth/token", None, ct, "client_secret=two&grant_type=client_credentials");
        assert_eq!(m.fingerprint(&a), m.fingerprint(&b));
    }

    #[test]
    fn volatile_json_paths_are_ignored() {
        let m = m(MatchConfig {
            ignore_json_paths: vec!["meta.requestId".into(), "items.*.ts".into()],
            ..Default::default()
        });
        let a = req(
            "POST",
            "/x",
            None,
            Some("application/json"),
            r#"{"meta":{"requestId":"1","k":2},"items":[{"ts":1,"v":1}]}"#,
        );
        let b = req(
            "POST",
            "/x",
            None,
            Some("application/json"),
            r#"{"meta":{"requestId":"2","k":2},"items":[{"ts":9,"v":1}]}"#,
        );
        assert_eq!(m.fingerprint(&a), m.fingerprint(&b));
    }

    #[test]
    fn differences_name_the_parts() {
        let m = m(MatchConfig::default());
        let a = m.fingerprint(&req("GET", "/api/v2/users/me", Some("expand=presence"), None, ""));
        let b = m.fingerprint(&req("GET", "/api/v2/users/me", None, None, ""));
        let c = m.fingerprint(&req("DELETE", "/api/v2/other", None, None, ""));
        let d1 = differences(&a, &b);
        let d2 = differences(&a, &c);
        assert!(d1.score < d2.score);
        assert_eq!(d1.parts.len(), 1);
        assert!(d1.parts[0].contains("expand=presence"), "{:?}", d1.parts);
    }
}
