//! Byte and text encodings every layer shares: percent-encoding, `application/x-www-form-urlencoded`
//! pairs, and a small stable hash. Depends on nothing else in callvcr.

/// Decodes `%XX` escapes and `+` (as space) in a query or form component. Invalid escapes stay as they are.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes everything but unreserved characters.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `a=1&b=2` (a query string or form body) as decoded pairs, in order.
pub(crate) fn decode_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// FNV-1a, 64-bit: stable across runs and platforms.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The value of one hexadecimal digit, either case.
fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// A body, parsed as JSON at most once (when a step first asks) and shared by every step that
/// reads it: matching, validation, call state and collections. An 8 KB body costs one parse per
/// request, not one per reader; a recorded answer's, one per cassette.
#[derive(Debug)]
pub struct ParsedBody<'a> {
    bytes: &'a [u8],
    json: Slot<'a>,
}

/// Where a [`ParsedBody`] keeps its parse.
#[derive(Debug)]
enum Slot<'a> {
    /// Its own: lives as long as the request.
    Own(std::sync::OnceLock<Option<serde_json::Value>>),
    /// One kept beside the bytes, for as long as they are (a recorded answer's).
    Shared(&'a std::sync::OnceLock<Option<serde_json::Value>>),
}

impl<'a> ParsedBody<'a> {
    /// `bytes`, not parsed yet.
    pub fn new(bytes: &'a [u8]) -> Self {
        ParsedBody { bytes, json: Slot::Own(std::sync::OnceLock::new()) }
    }

    /// `bytes`, parsed into `slot` (once, by whichever reader comes first); `slot` must only ever
    /// hold the parse of these bytes.
    pub fn shared(bytes: &'a [u8], slot: &'a std::sync::OnceLock<Option<serde_json::Value>>) -> Self {
        ParsedBody { bytes, json: Slot::Shared(slot) }
    }

    /// The body as received.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The body as JSON; `None` when it is empty or not JSON.
    pub fn json(&self) -> Option<&serde_json::Value> {
        let slot = match &self.json {
            Slot::Own(s) => s,
            Slot::Shared(s) => *s,
        };
        slot.get_or_init(|| if self.bytes.is_empty() { None } else { serde_json::from_slice(self.bytes).ok() }).as_ref()
    }
}
