//! What a cassette holds: exchanges of recorded requests and responses, as plain serde data.

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

#[derive(Serialize, Deserialize)]
struct BodyRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encoding: Option<String>,
}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (text, base64) = match std::str::from_utf8(&self.bytes) {
            Ok(t) => (Some(t.to_string()), None),
            Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(&self.bytes))),
        };
        BodyRepr { text, base64, encoding: self.encoding.clone() }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = BodyRepr::deserialize(d)?;
        let bytes = match (r.text, r.base64) {
            (Some(t), None) => Bytes::from(t),
            (None, Some(b)) => {
                Bytes::from(base64::engine::general_purpose::STANDARD.decode(b).map_err(serde::de::Error::custom)?)
            }
            (None, None) => Bytes::new(),
            (Some(_), Some(_)) => {
                return Err(serde::de::Error::custom("a body has either `text` or `base64`, not both"))
            }
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
