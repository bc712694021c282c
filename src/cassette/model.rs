//! What a cassette holds: exchanges of recorded requests and responses, WebSocket frames and the
//! credentials a token request presented, as plain serde data. The store, JSON Lines, HAR and the
//! replay file all write these types; bodies are kept decoded and byte-exact.

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Hop-by-hop headers: they describe one connection, so they are neither forwarded nor replayed.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A body as stored: the decoded bytes, and the content encoding they arrived with (if any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body {
    /// Decoded bytes.
    pub bytes: Bytes,
    /// The `Content-Encoding` the bytes had on the wire (`gzip`, `deflate`), re-applied on replay.
    pub encoding: Option<String>,
}

/// How a [`Body`] is written in JSON Lines and the store: exactly one of `json`, `text` (UTF-8 that is
/// not exact JSON) or `base64` (anything else), so bodies stay readable in review and byte-exact.
#[derive(Serialize, Deserialize)]
struct BodyRepr {
    /// A JSON body, as JSON: only when writing the value back gives the very same bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    json: Option<serde_json::Value>,
    /// A UTF-8 body that is not exact JSON, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    /// A body that is not UTF-8, base64 (standard alphabet, padded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
    /// The `Content-Encoding` the bytes had on the wire; the bytes themselves are stored decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encoding: Option<String>,
}

/// `text` as a JSON value, when the value written back compactly is exactly `text` (so the body's
/// bytes survive the round trip and reviewers read JSON, not an escaped string).
fn exact_json(text: &str) -> Option<serde_json::Value> {
    let t = text.trim_start();
    if !(t.starts_with('{') || t.starts_with('[')) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    (serde_json::to_string(&v).ok()? == text).then_some(v)
}

/// [`BodyRepr`] as written: the JSON form borrowed as it is when it is already exact, so a body
/// is neither parsed into a value nor written twice.
#[derive(Serialize)]
struct BodyOut<'a> {
    /// See [`BodyRepr::json`]: the body's own text.
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<&'a serde_json::value::RawValue>,
    /// See [`BodyRepr::json`]: a value parsed to find out (a body with fractions or exponents).
    #[serde(rename = "json", skip_serializing_if = "Option::is_none")]
    json_value: Option<serde_json::Value>,
    /// See [`BodyRepr::text`].
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    /// See [`BodyRepr::base64`].
    #[serde(skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
    /// See [`BodyRepr::encoding`].
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'a str>,
}

impl Serialize for Body {
    /// Picks the most readable form that gives the same bytes back: JSON, then text, then base64.
    /// Whether JSON gives the same bytes back is found by one scan of the text; only a body the
    /// scan cannot decide (a fraction, an exponent) is parsed and written back to compare.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut r =
            BodyOut { json: None, json_value: None, text: None, base64: None, encoding: self.encoding.as_deref() };
        match std::str::from_utf8(&self.bytes) {
            Ok(t) => match super::canonical::compact_as_serde_writes(t) {
                super::canonical::Canonical::Yes => match serde_json::from_str::<&serde_json::value::RawValue>(t) {
                    Ok(raw) => r.json = Some(raw),
                    Err(_) => r.text = Some(t),
                },
                super::canonical::Canonical::No => r.text = Some(t),
                super::canonical::Canonical::Unsure => match exact_json(t) {
                    Some(v) => r.json_value = Some(v),
                    None => r.text = Some(t),
                },
            },
            Err(_) => r.base64 = Some(base64::engine::general_purpose::STANDARD.encode(&self.bytes)),
        }
        r.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Body {
    /// Refuses a body naming more than one form rather than guess which one holds the bytes.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = BodyRepr::deserialize(d)?;
        let bytes = match (r.json, r.text, r.base64) {
            (Some(v), None, None) => Bytes::from(serde_json::to_string(&v).map_err(serde::de::Error::custom)?),
            (None, Some(t), None) => Bytes::from(t),
            (None, None, Some(b)) => {
                Bytes::from(base64::engine::general_purpose::STANDARD.decode(b).map_err(serde::de::Error::custom)?)
            }
            (None, None, None) => Bytes::new(),
            _ => return Err(serde::de::Error::custom("a body has one of `json`, `text` or `base64`, not several")),
        };
        Ok(Body { bytes, encoding: r.encoding })
    }
}

/// A request as recorded (after redaction).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// `https` or `http`.
    pub scheme: String,
    /// Target host, lower-case, with `:port` only when not the scheme's default.
    pub host: String,
    /// Path, percent-encoded as sent.
    pub path: String,
    /// Raw query string without `?`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Headers in arrival order (hop-by-hop removed).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Body,
}

/// A response as recorded (after redaction).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordedResponse {
    /// Status code.
    pub status: u16,
    /// Headers in arrival order (hop-by-hop removed).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Body,
}

/// One recorded request/response pair.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Exchange {
    /// Order of recording within the cassette.
    pub seq: u64,
    /// When it was recorded (RFC 3339, virtual clock).
    pub recorded_at: String,
    /// How long the upstream took, in milliseconds.
    pub duration_ms: u64,
    /// The SDK and version the request announced (from `User-Agent` or an SDK header), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk: Option<String>,
    /// The request.
    pub request: RecordedRequest,
    /// The response.
    pub response: RecordedResponse,
    /// For a long poll whose answer was caused by another request: the sequence number of the
    /// request by the same client that started after the poll was sent and before it was answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// For a token request: who it presented itself as (see [`Credential`]), so replay answers a
    /// wrong secret as the platform did without the cassette holding any secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<Credential>,
    /// The test scope it was recorded in (`POST /mock/admin/scope` or the `x-callvcr-scope`
    /// header), if any: replay serves a scope its own recordings first. A WebSocket session's
    /// frames belong to the scope of its handshake exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// For a token answer: the shape of each opaque token it gave (a JWT keeps its claims
    /// instead), so replay mints tokens an SDK cannot tell from the platform's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_shapes: Vec<TokenShape>,
}

/// The shape of an opaque token the platform issued: its length and the characters it is made
/// of, never the token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenShape {
    /// The answer's field: `access_token` or `refresh_token`.
    pub field: String,
    /// Its length in characters.
    pub len: usize,
    /// Its alphabet: any of `a-z`, `A-Z`, `0-9`, then each other character it held, in order.
    pub alphabet: String,
}

impl TokenShape {
    /// The shapes of the opaque tokens in a token answer's JSON body; none for a JWT (its
    /// claims are kept), an empty value, or a body that is not a JSON object.
    pub fn of_answer(body: &[u8]) -> Vec<TokenShape> {
        let Ok(serde_json::Value::Object(m)) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Vec::new();
        };
        ["access_token", "refresh_token"]
            .iter()
            .filter_map(|&f| {
                let t = m.get(f)?.as_str()?;
                if t.is_empty() || t.split('.').count() == 3 || t.len() > 4096 {
                    return None;
                }
                Some(TokenShape { field: f.to_string(), len: t.chars().count(), alphabet: alphabet_of(t) })
            })
            .collect()
    }

    /// The characters a token of this shape may hold.
    pub fn chars(&self) -> Vec<char> {
        let mut out = Vec::new();
        let mut rest = self.alphabet.as_str();
        for (class, range) in [("a-z", 'a'..='z'), ("A-Z", 'A'..='Z'), ("0-9", '0'..='9')] {
            if let Some(r) = rest.strip_prefix(class) {
                out.extend(range);
                rest = r;
            }
        }
        out.extend(rest.chars());
        if out.is_empty() {
            out.extend('a'..='z');
        }
        out
    }
}

/// The alphabet of `t`, as [`TokenShape::alphabet`] writes it.
fn alphabet_of(t: &str) -> String {
    let mut a = String::new();
    for (class, test) in [
        ("a-z", char::is_ascii_lowercase as fn(&char) -> bool),
        ("A-Z", char::is_ascii_uppercase),
        ("0-9", char::is_ascii_digit),
    ] {
        if t.chars().any(|c| test(&c)) {
            a.push_str(class);
        }
    }
    // Other characters hold no letters or digits, so they never read as a class.
    let mut others = String::new();
    for c in t.chars().filter(|c| !c.is_ascii_alphanumeric()) {
        if !others.contains(c) {
            others.push(c);
        }
    }
    a + &others
}

/// One identity a token request presented: its identifier, which is no secret (an OAuth client id,
/// a NICE access key id, a user name), and a verifier of its secret that cannot give the secret
/// back (PBKDF2-HMAC-SHA256, salted, many iterations; see `cassette::verifier`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Credential {
    /// `client` (OAuth client), `access-key` (NICE access key) or `user` (a password grant's user).
    pub role: String,
    /// The client id, access key id or user name.
    pub id: String,
    /// The secret's verifier, when the request carried a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<String>,
}

impl RecordedRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Encodes `bytes` with a content encoding (`gzip`, `x-gzip`, `deflate`); other encodings pass unchanged.
pub fn encode(encoding: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let level = flate2::Compression::default();
    let res = match encoding {
        "gzip" | "x-gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            e.write_all(bytes).and_then(|_| e.finish())
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
            e.write_all(bytes).and_then(|_| e.finish())
        }
        _ => Ok(bytes.to_vec()),
    };
    res.unwrap_or_else(|_| bytes.to_vec())
}

/// Decodes `gzip` or `deflate`; `None` when the encoding is not one of those or the bytes are bad.
pub fn decode(encoding: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    match encoding {
        "gzip" | "x-gzip" => flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).ok()?,
        "deflate" => flate2::read::ZlibDecoder::new(bytes).read_to_end(&mut out).ok()?,
        _ => return None,
    };
    Some(out)
}

/// Which way a WebSocket frame went.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    /// From the platform to the SDK.
    Server,
    /// From the SDK to the platform.
    Client,
}

/// What kind of WebSocket frame.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FrameKind {
    /// A text message.
    Text,
    /// A binary message.
    Binary,
    /// A ping control frame.
    Ping,
    /// A pong control frame.
    Pong,
    /// A close frame (with `close_code` and `close_reason` when sent).
    Close,
}

/// What a server frame followed, so replay can send it in step with what caused it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Anchor {
    /// The REST exchange (by sequence number) by the same client that was in flight or had just
    /// completed when the frame arrived.
    Rest(u64),
    /// The client frame (by its `n` within the session) the frame answered.
    Client(u32),
}

/// One recorded WebSocket frame.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Frame {
    /// The sequence number of the session's handshake exchange (the recorded 101).
    pub session: u64,
    /// Order within the session, both directions together, from 0.
    pub n: u32,
    /// Which way it went.
    pub dir: Dir,
    /// Milliseconds from the start of the connection.
    pub at_ms: u64,
    /// Its kind.
    pub kind: FrameKind,
    /// Its payload (text as text, binary as base64).
    pub data: Body,
    /// Close code, for close frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_code: Option<u16>,
    /// Close reason, for close frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<String>,
    /// What it followed (server frames).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Anchor>,
}

/// Everything a cassette holds: exchanges in sequence order, and WebSocket frames by session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cassette {
    /// Request/response exchanges (the handshake of a WebSocket session is one, with status 101).
    pub exchanges: Vec<Exchange>,
    /// WebSocket frames, ordered by session and `n`.
    pub frames: Vec<Frame>,
}

/// A recorded exchange for unit tests: `method` `api.mypurecloud.com` `path` (`?query`) with
/// `request` as body, answered `status` with a JSON `response` body.
#[cfg(test)]
pub(crate) fn test_exchange(
    seq: u64,
    method: &str,
    path: &str,
    query: Option<&str>,
    request: &str,
    status: u16,
    response: &str,
) -> Exchange {
    Exchange {
        seq,
        recorded_at: "2026-01-05T09:00:00.000Z".into(),
        duration_ms: 1,
        sdk: None,
        scope: None,
        token_shapes: Vec::new(),
        request: RecordedRequest {
            method: method.into(),
            scheme: "https".into(),
            host: "api.mypurecloud.com".into(),
            path: path.into(),
            query: query.map(String::from),
            headers: vec![],
            body: Body { bytes: Bytes::from(request.to_string()), encoding: None },
        },
        response: RecordedResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Body { bytes: Bytes::from(response.to_string()), encoding: None },
        },
        after: None,
        credentials: Vec::new(),
    }
}

/// `exchanges` indexed in memory under the default matching, for unit tests.
#[cfg(test)]
pub(crate) fn test_index(exchanges: &[Exchange]) -> std::sync::Arc<super::Index> {
    let cfg = crate::config::Config::default();
    let m = super::Matcher::new(&cfg.matching, super::Redactor::new(&cfg.redact));
    std::sync::Arc::new(super::Index::new(exchanges.to_vec(), &m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opaque_token_leaves_its_length_and_alphabet() {
        let body = br#"{"access_token":"aB3-x_Q9","refresh_token":"zz-zz","id_token":"h.c.s","token_type":"bearer"}"#;
        let s = TokenShape::of_answer(body);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].field.as_str(), s[0].len, s[0].alphabet.as_str()), ("access_token", 8, "a-zA-Z0-9-_"));
        assert_eq!(s[1].alphabet, "a-z-");
        let chars = s[0].chars();
        assert_eq!(chars.len(), 26 + 26 + 10 + 2);
        assert_eq!(s[1].chars(), ('a'..='z').chain(['-']).collect::<Vec<_>>());
        assert!(
            TokenShape::of_answer(br#"{"access_token":"eyJ.eyJ.sig"}"#).is_empty(),
            "a JWT keeps its claims instead"
        );
        assert!(TokenShape::of_answer(b"not json").is_empty());
    }

    fn round_trip(bytes: &[u8]) -> (String, Vec<u8>) {
        let b = Body { bytes: Bytes::copy_from_slice(bytes), encoding: None };
        let text = serde_json::to_string(&b).unwrap();
        let back: Body = serde_json::from_str(&text).unwrap();
        (text, back.bytes.to_vec())
    }

    #[test]
    fn json_bodies_are_written_as_json_only_when_the_bytes_survive() {
        let (t, b) = round_trip(br#"{"id":"u-1","n":[1,2.5,true,null]}"#);
        assert_eq!(t, r#"{"json":{"id":"u-1","n":[1,2.5,true,null]}}"#);
        assert_eq!(b, br#"{"id":"u-1","n":[1,2.5,true,null]}"#);
        // Spacing, exponents or duplicate keys would not survive: kept as text, byte for byte.
        for odd in [&br#"{ "id": "u-1" }"#[..], br#"{"n":1e5}"#, br#"{"a":1,"a":2}"#, b"not json", b""] {
            let (t, b) = round_trip(odd);
            assert!(!t.contains("\"json\""), "{t}");
            assert_eq!(b, odd);
        }
        let (t, b) = round_trip(&[0xff, 0x00, 0x10]);
        assert!(t.contains("base64"));
        assert_eq!(b, [0xff, 0x00, 0x10]);
    }
}
