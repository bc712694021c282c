//! Time travels with the replay: the recording's times moved onto the virtual clock by one shift,
//! `replay start − recording start`, so every gap the recording shows is kept and "now" in the
//! answers is the replay's now. Dates are rewritten where they are written, in their own format
//! and precision (an RFC 3339 string keeps its fraction digits and offset; an HTTP date its
//! layout), so nothing but the value changes. Which JSON fields hold times is worked out from the
//! whole cassette ([`TimeFields`]): a field whose every string is a date-time, or whose every
//! number is an epoch time, plus the names `time_shift.fields` lists; ids that only sometimes look
//! like dates are left alone.

use std::collections::{BTreeMap, BTreeSet};

use crate::clock::{civil_from_days, days_from_civil};

pub use crate::config::ShiftMode;

/// A date-time written in text: where it is and what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    /// Where it starts in the text (byte offset).
    start: usize,
    /// Where it ends in the text (exclusive byte offset), after any zone.
    end: usize,
    /// Milliseconds since the epoch, as if UTC when no offset is written.
    ms: i64,
    /// Fraction digits written (0 when none).
    frac: usize,
    /// Whether seconds are written.
    secs: bool,
    /// The written offset in minutes (for re-writing the wall time in it).
    offset_min: i64,
}

/// The `n` ASCII digits at `at` as a number; `None` when the text is shorter or any is not a digit.
fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let s = b.get(at..at + n)?;
    if !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0i64, |a, d| a * 10 + (d - b'0') as i64))
}

/// The date-time starting at `at`: `YYYY-MM-DDTHH:MM[:SS[.f…]][Z|±HH:MM]`.
fn stamp_at(b: &[u8], at: usize) -> Option<Stamp> {
    let y = digits(b, at, 4)?;
    if b.get(at + 4) != Some(&b'-') || b.get(at + 7) != Some(&b'-') || b.get(at + 10) != Some(&b'T') {
        return None;
    }
    let (mo, d) = (digits(b, at + 5, 2)?, digits(b, at + 8, 2)?);
    let h = digits(b, at + 11, 2)?;
    if b.get(at + 13) != Some(&b':') {
        return None;
    }
    let mi = digits(b, at + 14, 2)?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 {
        return None;
    }
    let mut i = at + 16;
    let (mut sec, mut secs, mut frac, mut millis) = (0, false, 0, 0i64);
    if b.get(i) == Some(&b':') {
        sec = digits(b, i + 1, 2).filter(|s| *s <= 60)?;
        secs = true;
        i += 3;
        if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            let n = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            frac = n;
            let f = &b[i + 1..i + 1 + n];
            millis = (0..3).map(|k| f.get(k).map(|c| (c - b'0') as i64).unwrap_or(0)).fold(0, |a, d| a * 10 + d);
            i += 1 + n;
        }
    }
    let mut offset_min = 0;
    match b.get(i) {
        Some(b'Z') => i += 1,
        Some(c @ (b'+' | b'-')) if b.get(i + 3) == Some(&b':') => {
            let (oh, om) = (digits(b, i + 1, 2)?, digits(b, i + 4, 2)?);
            offset_min = (oh * 60 + om) * if *c == b'-' { -1 } else { 1 };
            i += 6;
        }
        _ => {}
    }
    // A digit or letter right after is not the end of a date-time: leave the text alone.
    if b.get(i).is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    let ms = ((days * 86_400 + h * 3600 + mi * 60 + sec) - offset_min * 60) * 1000 + millis;
    Some(Stamp { start: at, end: i, ms, frac, secs, offset_min })
}

/// Every date-time in the text `b`, in order. A date-time has a `T` ten bytes in, so only the
/// places ten bytes before a `T` are tried (found with a vectorised search: most bodies hold few,
/// and a byte-by-byte walk cost 5 µs per 8 KB body on every replayed request).
fn stamps(b: &[u8]) -> Vec<Stamp> {
    let mut out = Vec::new();
    // Where the next date-time may start: not inside the one found last.
    let mut open = 0;
    for t in memchr::memchr_iter(b'T', b) {
        let Some(i) = t.checked_sub(10) else { continue };
        if i + 16 > b.len() {
            break;
        }
        // `mediaType`, `Type`: most `T`s in JSON are in names, with no `-` where a date has them.
        if i < open || b[i + 4] != b'-' || b[i + 7] != b'-' || (i > 0 && b[i - 1].is_ascii_digit()) {
            continue;
        }
        if let Some(st) = stamp_at(b, i) {
            open = st.end;
            out.push(st);
        }
    }
    out
}

/// `ms` written as `st` was: the same offset, seconds and fraction digits.
fn write_like(st: &Stamp, ms: i64, original: &str) -> String {
    let local = ms + st.offset_min * 60_000;
    let secs = local.div_euclid(1000);
    let millis = local.rem_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut out = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}", sod / 3600, (sod % 3600) / 60);
    if st.secs {
        out.push_str(&format!(":{:02}", sod % 60));
    }
    let zone_at = st.end - zone_len(original, st);
    if st.frac > 0 {
        let f = format!("{millis:03}");
        // Digits past milliseconds were written; they are kept as written (the shift is whole ms).
        let written = &original.as_bytes()[zone_at - st.frac..zone_at];
        out.push('.');
        for (k, &c) in written.iter().enumerate() {
            out.push(if k < 3 { f.as_bytes()[k] as char } else { c as char });
        }
    }
    out.push_str(&original[zone_at..st.end]);
    out
}

/// How many bytes the zone (`Z`, `±HH:MM` or nothing) takes at the end of `st`.
fn zone_len(s: &str, st: &Stamp) -> usize {
    let b = &s.as_bytes()[st.start..st.end];
    match b.last() {
        Some(b'Z') => 1,
        _ if b.len() >= 6 && matches!(b[b.len() - 6], b'+' | b'-') && b[b.len() - 3] == b':' && b.len() > 16 => 6,
        _ => 0,
    }
}

/// `s` with every date-time in it moved by `delta_ms`, each in its own format; `None` when it holds
/// none. A shift finer than what a stamp writes (seconds only, say) is cut to what it writes.
pub fn shift_text(s: &str, delta_ms: i64) -> Option<String> {
    let found = stamps(s.as_bytes());
    (!found.is_empty()).then(|| shift_found(s, &found, delta_ms))
}

/// `s` with the date-times `found` in it (by [`stamps`]) moved by `delta_ms`.
fn shift_found(s: &str, found: &[Stamp], delta_ms: i64) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for st in found {
        out.push_str(&s[at..st.start]);
        out.push_str(&write_like(st, st.ms + delta_ms, s));
        at = st.end;
    }
    out.push_str(&s[at..]);
    out
}

/// Whether `s` is a date-time, or an interval of two (`a/b`), and nothing else: a time field's value.
pub fn is_time_value(s: &str) -> bool {
    let found = stamps(s.as_bytes());
    match found.as_slice() {
        [one] => one.start == 0 && one.end == s.len(),
        [a, b] => a.start == 0 && b.end == s.len() && &s[a.end..b.start] == "/",
        _ => false,
    }
}

/// Month names as HTTP dates write them.
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
/// Weekday names as HTTP dates write them, from Thursday: the epoch's first day (1970-01-01) was
/// a Thursday, so days since the epoch modulo 7 index this directly.
const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, or the cookie spelling `06-Nov-1994`) in
/// epoch milliseconds, and the separator its date uses.
fn parse_http_date(s: &str) -> Option<(i64, char)> {
    let s = s.trim();
    let (_, rest) = s.split_once(", ")?;
    let sep = if rest.as_bytes().get(2) == Some(&b'-') { '-' } else { ' ' };
    let mut parts = rest.splitn(2, [' ', '-']);
    let d: i64 = parts.next()?.parse().ok()?;
    let rest = parts.next()?;
    let mon = MONTHS.iter().position(|m| rest.starts_with(m))? as u32 + 1;
    let rest = &rest[4..];
    let (year, rest) = rest.split_once(' ')?;
    let y: i64 = year.parse().ok()?;
    let y = if y < 100 { y + if y < 70 { 2000 } else { 1900 } } else { y };
    let (hms, zone) = rest.split_once(' ')?;
    if zone != "GMT" && zone != "UTC" {
        return None;
    }
    let hms: Vec<i64> = hms.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, mi, sec] = hms[..] else { return None };
    if !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some(((days_from_civil(y, mon, d as u32) * 86_400 + h * 3600 + mi * 60 + sec) * 1000, sep))
}

/// `ms` as an HTTP date (IMF-fixdate), the date's parts joined by `sep` (`-` in cookie spelling).
pub fn http_date(ms: i64, sep: char) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let sod = secs.rem_euclid(86_400);
    let wd = DAYS[days.rem_euclid(7) as usize];
    let mon = MONTHS[m as usize - 1];
    format!("{wd}, {d:02}{sep}{mon}{sep}{y:04} {:02}:{:02}:{:02} GMT", sod / 3600, (sod % 3600) / 60, sod % 60)
}

/// An HTTP date moved by `delta_ms`, in the spelling it was written in.
pub fn shift_http_date(s: &str, delta_ms: i64) -> Option<String> {
    let (ms, sep) = parse_http_date(s)?;
    Some(http_date(ms + delta_ms, sep))
}

/// A `Set-Cookie` value with its `Expires` attribute moved (`Max-Age` is relative and stays).
pub fn shift_cookie(v: &str, delta_ms: i64) -> Option<String> {
    let lower = v.to_ascii_lowercase();
    let at = lower.find("expires=")? + "expires=".len();
    let end = v[at..].find(';').map(|i| at + i).unwrap_or(v.len());
    let shifted = shift_http_date(&v[at..end], delta_ms)?;
    Some(format!("{}{}{}", &v[..at], shifted, &v[end..]))
}

/// What the cassette shows about which JSON fields hold times, by field name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeFields {
    /// Fields whose every string value is a date-time (or an interval of two).
    pub strings: BTreeSet<String>,
    /// Fields whose every number is an epoch time: `true` for milliseconds, `false` for seconds.
    pub epochs: BTreeMap<String, bool>,
    /// Names `time_shift.fields` lists: numbers there are epoch times in the unit their size says.
    pub listed: BTreeSet<String>,
}

/// Epoch milliseconds from 2001 to 2100: a number in this range at a time-named field is a time.
const EPOCH_MS: std::ops::Range<f64> = 978_307_200_000.0..4_102_444_800_000.0;
/// The same years in epoch seconds.
const EPOCH_S: std::ops::Range<f64> = 978_307_200.0..4_102_444_800.0;

/// Whether a field's name says it holds a time (`startTime`, `created_at`, `timestamp`, `endDate`).
fn time_named(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["time", "timestamp", "date", "_at", "at_ms", "epoch"].iter().any(|s| n.ends_with(s))
        || n == "iat"
        || n == "exp"
        || n == "nbf"
}

/// Learns [`TimeFields`] from JSON samples, one field name at a time.
#[derive(Debug, Default)]
pub struct TimeFieldsBuilder {
    /// Per field: (date-time strings, other strings).
    strings: BTreeMap<String, (u32, u32)>,
    /// Per time-named field: (epoch ms, epoch s, other numbers).
    numbers: BTreeMap<String, (u32, u32, u32)>,
}

impl TimeFieldsBuilder {
    /// Sees one JSON document (a body or a frame); anything else is ignored.
    pub fn observe(&mut self, bytes: &[u8]) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else { return };
        self.walk(None, &v);
    }

    /// Counts `v` under the field `key` it sits at: each string as a time or not, each number at a
    /// time-named field by its epoch unit. An array's items count under the array's field.
    fn walk(&mut self, key: Option<&str>, v: &serde_json::Value) {
        use serde_json::Value;
        match v {
            Value::Object(m) => m.iter().for_each(|(k, v)| self.walk(Some(k), v)),
            Value::Array(a) => a.iter().for_each(|v| self.walk(key, v)),
            Value::String(s) => {
                if let Some(k) = key {
                    let e = self.strings.entry(k.to_string()).or_default();
                    if is_time_value(s) {
                        e.0 += 1;
                    } else {
                        e.1 += 1;
                    }
                }
            }
            Value::Number(n) => {
                if let (Some(k), Some(f)) = (key.filter(|k| time_named(k)), n.as_f64()) {
                    let e = self.numbers.entry(k.to_string()).or_default();
                    match f {
                        f if EPOCH_MS.contains(&f) => e.0 += 1,
                        f if EPOCH_S.contains(&f) => e.1 += 1,
                        _ => e.2 += 1,
                    }
                }
            }
            _ => {}
        }
    }

    /// The fields that held times every time they were seen.
    pub fn finish(self) -> TimeFields {
        let strings = self.strings.into_iter().filter(|(_, (t, o))| *t > 0 && *o == 0).map(|(k, _)| k).collect();
        let epochs = self
            .numbers
            .into_iter()
            .filter_map(|(k, (ms, s, other))| match (ms, s, other) {
                (m, 0, 0) if m > 0 => Some((k, true)),
                (0, s, 0) if s > 0 => Some((k, false)),
                _ => None,
            })
            .collect();
        TimeFields { strings, epochs, listed: BTreeSet::new() }
    }
}

impl TimeFields {
    /// As kept in a replay file's analyses.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"strings": self.strings, "epochs": self.epochs})
    }

    /// Read back from [`TimeFields::to_json`].
    pub fn from_json(v: &serde_json::Value) -> Option<TimeFields> {
        Some(TimeFields {
            strings: serde_json::from_value(v.get("strings")?.clone()).ok()?,
            epochs: serde_json::from_value(v.get("epochs")?.clone()).ok()?,
            listed: BTreeSet::new(),
        })
    }

    /// Adds the names `time_shift.fields` lists: their strings are times, and their numbers epoch
    /// times in whichever unit their size says.
    pub fn with_listed(mut self, listed: &[String]) -> TimeFields {
        self.strings.extend(listed.iter().cloned());
        self.listed.extend(listed.iter().cloned());
        self
    }
}

/// A JSON number moved by `delta_ms`, as epoch milliseconds (`ms`) or seconds, written as it was
/// (an integer stays an integer; seconds keep their fraction digits).
fn shift_number(text: &str, delta_ms: i64, ms: bool) -> Option<String> {
    if text.contains(['e', 'E']) {
        return None;
    }
    if let Ok(n) = text.parse::<i64>() {
        return Some(if ms { n + delta_ms } else { n + delta_ms.div_euclid(1000) }.to_string());
    }
    let (_, frac) = text.split_once('.')?;
    let f: f64 = text.parse().ok()?;
    let shifted = if ms { f + delta_ms as f64 } else { f + delta_ms as f64 / 1000.0 };
    Some(format!("{shifted:.*}", frac.len()))
}

/// The unit of a number at a listed field, from its size: `Some(true)` for epoch milliseconds.
fn unit_of(text: &str) -> Option<bool> {
    let f: f64 = text.parse().ok()?;
    if EPOCH_MS.contains(&f) {
        Some(true)
    } else if EPOCH_S.contains(&f) {
        Some(false)
    } else {
        None
    }
}

/// A JSON text with the times at `fields` moved by `delta_ms`, every other byte as it was; `None`
/// when nothing changed (or the text is not JSON enough to walk).
pub fn shift_json(s: &str, delta_ms: i64, fields: &TimeFields) -> Option<String> {
    let b = s.as_bytes();
    // Open containers: (is an object, the field name an array's items belong to).
    let mut stack: Vec<(bool, Option<(usize, usize)>)> = Vec::new();
    let mut key: Option<(usize, usize)> = None;
    let mut expect_key = false;
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    let value_key = |stack: &[(bool, Option<(usize, usize)>)], key: Option<(usize, usize)>| match stack.last() {
        Some((false, k)) => *k,
        _ => key,
    };
    while i < b.len() {
        match b[i] {
            b'{' => {
                stack.push((true, None));
                expect_key = true;
                i += 1;
            }
            b'[' => {
                let k = value_key(&stack, key);
                stack.push((false, k));
                i += 1;
            }
            b'}' | b']' => {
                stack.pop()?;
                i += 1;
            }
            b',' => {
                expect_key = matches!(stack.last(), Some((true, _)));
                i += 1;
            }
            b':' => {
                expect_key = false;
                i += 1;
            }
            b'"' => {
                let start = i + 1;
                let mut j = start;
                let mut escaped = false;
                while j < b.len() && b[j] != b'"' {
                    if b[j] == b'\\' {
                        escaped = true;
                        j += 1;
                    }
                    j += 1;
                }
                if j >= b.len() {
                    return None;
                }
                if expect_key && matches!(stack.last(), Some((true, _))) {
                    key = Some((start, j));
                } else if let Some((ks, ke)) = value_key(&stack, key) {
                    if !escaped && fields.strings.contains(&s[ks..ke]) {
                        if let Some(v) = shift_text(&s[start..j], delta_ms) {
                            out.push_str(&s[copied..start]);
                            out.push_str(&v);
                            copied = j;
                        }
                    }
                }
                i = j + 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    i += 1;
                }
                if let Some((ks, ke)) = value_key(&stack, key) {
                    let name = &s[ks..ke];
                    let text = &s[start..i];
                    let unit = fields.epochs.get(name).copied().or_else(|| {
                        if fields.listed.contains(name) {
                            unit_of(text)
                        } else {
                            None
                        }
                    });
                    if let Some(v) = unit.and_then(|ms| shift_number(text, delta_ms, ms)) {
                        out.push_str(&s[copied..start]);
                        out.push_str(&v);
                        copied = i;
                    }
                }
            }
            _ => i += 1,
        }
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&s[copied..]);
    Some(out)
}

/// One replay's shift: how far the recording's times move, how much of the replay moves, and
/// which fields hold times.
#[derive(Debug, Clone)]
pub struct TimeShift {
    /// `replay start − recording start`, in milliseconds.
    pub delta_ms: i64,
    /// How much moves.
    pub mode: ShiftMode,
    /// Which JSON fields hold times.
    pub fields: TimeFields,
}

impl TimeShift {
    /// Whether this shift leaves recorded bytes as they are (off, or no time between the two starts).
    pub fn is_identity(&self) -> bool {
        self.mode == ShiftMode::Off || self.delta_ms == 0
    }

    /// Whether `Date` is served as the virtual now.
    pub fn sets_date(&self) -> bool {
        self.mode != ShiftMode::Off
    }

    /// A recorded answer moved: `Expires`, `Last-Modified`, an HTTP-date `Retry-After` and cookie
    /// expiry always; a JSON body's time fields in `all`.
    pub fn response(&self, r: &mut super::RecordedResponse) {
        if self.is_identity() {
            return;
        }
        for (k, v) in r.headers.iter_mut() {
            let k = k.to_ascii_lowercase();
            let moved = match k.as_str() {
                "expires" | "last-modified" | "retry-after" => shift_http_date(v, self.delta_ms),
                "set-cookie" => shift_cookie(v, self.delta_ms),
                _ => None,
            };
            if let Some(m) = moved {
                *v = m;
            }
        }
        if self.mode == ShiftMode::All {
            let json = r.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.contains("json"));
            if json {
                self.json_bytes(&mut r.body.bytes);
            }
        }
    }

    /// A recorded frame's text moved (`all` only): WebSocket events carry times as bodies do.
    pub fn frame(&self, f: &mut super::Frame) {
        if !self.is_identity() && self.mode == ShiftMode::All && f.kind == super::FrameKind::Text {
            self.json_bytes(&mut f.data.bytes);
        }
    }

    /// Moves the times at the time fields of a JSON text in place; other text, and text that is
    /// not UTF-8, stays as it is.
    fn json_bytes(&self, bytes: &mut bytes::Bytes) {
        if let Ok(text) = std::str::from_utf8(bytes) {
            if let Some(s) = shift_json(text, self.delta_ms, &self.fields) {
                *bytes = bytes::Bytes::from(s);
            }
        }
    }

    /// A live request's query with its times moved back onto the recording's clock (`all` only),
    /// so it matches the request recorded for it; `None` when it holds no time.
    pub fn live_query(&self, q: &str) -> Option<String> {
        if self.is_identity() || self.mode != ShiftMode::All || !q.as_bytes().contains(&b'T') {
            return None;
        }
        let pairs = crate::encoding::decode_pairs(q);
        let mut changed = false;
        let moved: Vec<String> = pairs
            .iter()
            .map(|(k, v)| {
                let v = match shift_text(v, -self.delta_ms) {
                    Some(m) => {
                        changed = true;
                        m
                    }
                    None => v.clone(),
                };
                format!("{}={}", crate::encoding::percent_encode(k), crate::encoding::percent_encode(&v))
            })
            .collect();
        changed.then(|| moved.join("&"))
    }

    /// A live request's body with every time in it moved back (`all` only); `None` when it holds none.
    pub fn live_body(&self, body: &[u8]) -> Option<bytes::Bytes> {
        if self.is_identity() || self.mode != ShiftMode::All || body.len() < 16 {
            return None;
        }
        // Found on the bytes first: a body with no date-time (most) is not checked for UTF-8.
        let found = stamps(body);
        if found.is_empty() {
            return None;
        }
        let text = std::str::from_utf8(body).ok()?;
        Some(bytes::Bytes::from(shift_found(text, &found, -self.delta_ms)))
    }
}

/// Name of the analysis kept in a replay file: where the recording starts and its time fields.
pub const ANALYSIS: &str = "time";

/// Learns, over a whole cassette, where the recording starts and which fields hold times.
#[derive(Debug, Default)]
pub struct TimeAnalysis {
    /// The earliest `recorded_at` seen (epoch ms): where the recording starts.
    start_ms: Option<i64>,
    /// The time fields learnt so far.
    fields: TimeFieldsBuilder,
}

impl TimeAnalysis {
    /// The analysis of `exchanges` and `frames` at once (a cassette held in memory).
    pub fn of<'a>(
        exchanges: impl Iterator<Item = &'a super::Exchange>,
        frames: &[super::Frame],
    ) -> (Option<i64>, TimeFields) {
        let mut a = TimeAnalysis::default();
        exchanges.for_each(|e| a.observe(e));
        a.frames(frames);
        (a.start_ms, a.fields.finish())
    }

    /// Sees the recorded frames (their JSON events name time fields too).
    pub fn frames(&mut self, frames: &[super::Frame]) {
        for f in frames.iter().filter(|f| f.kind == super::FrameKind::Text) {
            self.fields.observe(&f.data.bytes);
        }
    }

    /// Sees one exchange (in recorded order): its time, and its JSON answer's fields.
    pub fn observe(&mut self, e: &super::Exchange) {
        if let Some(t) = crate::clock::parse_rfc3339(&e.recorded_at) {
            self.start_ms = Some(self.start_ms.map_or(t, |s| s.min(t)));
        }
        if e.response.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.contains("json")) {
            self.fields.observe(&e.response.body.bytes);
        }
    }

    /// What is kept in a replay file, read back by [`TimeAnalysis::read`].
    pub fn finish(self) -> serde_json::Value {
        serde_json::json!({"start_ms": self.start_ms, "fields": self.fields.finish().to_json()})
    }

    /// Reads back what [`TimeAnalysis::finish`] kept.
    pub fn read(v: &serde_json::Value) -> Option<(Option<i64>, TimeFields)> {
        Some((v.get("start_ms").and_then(|s| s.as_i64()), TimeFields::from_json(v.get("fields")?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk `stamps` replaced: every byte tried in turn.
    fn stamps_by_walk(s: &str) -> Vec<(usize, usize, i64)> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i + 16 <= b.len() {
            if b[i + 10] == b'T' && (i == 0 || !b[i - 1].is_ascii_digit()) {
                if let Some(st) = stamp_at(b, i) {
                    i = st.end;
                    out.push((st.start, st.end, st.ms));
                    continue;
                }
            }
            i += 1;
        }
        out
    }

    #[test]
    fn the_search_for_date_times_finds_what_a_byte_by_byte_walk_finds() {
        let pieces = [
            "2026-01-02T03:04:05Z",
            "2026-01-02T03:04:05.123456+02:00",
            "1999-12-31T23:59",
            "2026-13-01T00:00:00Z",
            "12026-01-02T03:04:05Z",
            "2026-01-02T03:04:05Zx",
            "T",
            "TT",
            "2026-01-02",
            "0",
            "7",
            "\"at\":\"",
            " ",
            "TIME",
            "\"mediaType\":\"PHONE\",",
            "-",
            ":",
            "é",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut found = 0;
        for _ in 0..20_000 {
            let mut s = String::new();
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            for _ in 0..(seed >> 60) as usize + 1 {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                s.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            let got: Vec<(usize, usize, i64)> =
                stamps(s.as_bytes()).iter().map(|st| (st.start, st.end, st.ms)).collect();
            assert_eq!(got, stamps_by_walk(&s), "{s:?}");
            found += got.len();
        }
        assert!(found > 1_000, "the inputs hold date-times: {found}");
    }

    #[test]
    fn a_date_time_moves_in_its_own_format() {
        let day = 86_400_000;
        assert_eq!(shift_text("2026-11-30T15:22:38Z", 2 * day).unwrap(), "2026-12-02T15:22:38Z");
        assert_eq!(shift_text("2026-11-30T15:22:38.123Z", 1500).unwrap(), "2026-11-30T15:22:39.623Z");
        assert_eq!(shift_text("2026-11-30T15:22:38.1234567Z", 1).unwrap(), "2026-11-30T15:22:38.1244567Z");
        assert_eq!(shift_text("2026-11-30T23:30:00+01:00", 3_600_000).unwrap(), "2026-12-01T00:30:00+01:00");
        assert_eq!(shift_text("2026-11-30T15:22", 60_000).unwrap(), "2026-11-30T15:23");
        assert_eq!(
            shift_text("2026-11-01T00:00:00.000Z/2026-11-02T00:00:00.000Z", day).unwrap(),
            "2026-11-02T00:00:00.000Z/2026-11-03T00:00:00.000Z"
        );
        // Seconds only: a shift finer than that is cut to what the stamp writes.
        assert_eq!(shift_text("2026-11-30T15:22:38Z", 999).unwrap(), "2026-11-30T15:22:38Z");
        assert_eq!(shift_text("no date here", day), None);
        assert_eq!(shift_text("id-2026-11-30T15:22:38Zx", day), None);
        assert!(is_time_value("2026-11-30T15:22:38Z") && !is_time_value("at 2026-11-30T15:22:38Z"));
    }

    #[test]
    fn http_dates_and_cookies_move_and_keep_their_spelling() {
        assert_eq!(http_date(0, ' '), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            shift_http_date("Mon, 30 Nov 2026 15:22:38 GMT", 2 * 86_400_000).unwrap(),
            "Wed, 02 Dec 2026 15:22:38 GMT"
        );
        assert_eq!(
            shift_cookie("s=1; Path=/; Expires=Mon, 30-Nov-2026 15:22:38 GMT; Max-Age=60", 86_400_000).unwrap(),
            "s=1; Path=/; Expires=Tue, 01-Dec-2026 15:22:38 GMT; Max-Age=60"
        );
        assert_eq!(shift_cookie("s=1; Max-Age=60", 1000), None);
    }

    #[test]
    fn json_times_move_at_time_fields_only_and_every_other_byte_stays() {
        let mut b = TimeFieldsBuilder::default();
        b.observe(br#"{"startTime":"2026-11-30T15:22:38.000Z","id":"2026-11-30T15:22:38Z","created":1764516158000}"#);
        b.observe(br#"{"id":"abc","items":[{"endTime":"2026-11-30T16:00:00Z"}],"createdDate":1764516158}"#);
        let f = b.finish();
        assert!(f.strings.contains("startTime") && f.strings.contains("endTime") && !f.strings.contains("id"));
        assert_eq!(f.epochs.get("createdDate"), Some(&false));
        // `created` is not named as a time: a number there is left alone.
        assert!(!f.epochs.contains_key("created"));
        let text = r#"{ "id" : "2026-11-30T15:22:38Z", "startTime":"2026-11-30T15:22:38.000Z",
  "list": [ {"endTime": "2026-11-30T16:00:00Z"} ], "createdDate": 1764516158, "n": 1764516158 }"#;
        let moved = shift_json(text, 60_000, &f).unwrap();
        assert_eq!(
            moved,
            r#"{ "id" : "2026-11-30T15:22:38Z", "startTime":"2026-11-30T15:23:38.000Z",
  "list": [ {"endTime": "2026-11-30T16:01:00Z"} ], "createdDate": 1764516218, "n": 1764516158 }"#
        );
        assert_eq!(shift_json(r#"{"id":"x"}"#, 60_000, &f), None);
        let listed = TimeFields::default().with_listed(&["when".into()]);
        assert_eq!(shift_json(r#"{"when":1764516158000}"#, 1, &listed).unwrap(), r#"{"when":1764516158001}"#);
    }

    #[test]
    fn a_live_query_moves_back() {
        let t = TimeShift { delta_ms: 86_400_000, mode: ShiftMode::All, fields: TimeFields::default() };
        let q = t.live_query("updatedSince=2026-12-01T10%3A00%3A00Z&pageSize=25").unwrap();
        let pairs = crate::encoding::decode_pairs(&q);
        assert_eq!(pairs[0], ("updatedSince".to_string(), "2026-11-30T10:00:00Z".to_string()));
        assert_eq!(pairs[1], ("pageSize".to_string(), "25".to_string()));
        assert_eq!(t.live_query("pageSize=25"), None);
        let body = br#"{"interval":"2026-12-01T00:00:00.000Z/2026-12-02T00:00:00.000Z","size":5}"#;
        assert_eq!(
            &t.live_body(body).unwrap()[..],
            br#"{"interval":"2026-11-30T00:00:00.000Z/2026-12-01T00:00:00.000Z","size":5}"#
        );
        assert_eq!(t.live_body(br#"{"size":5,"name":"no times here"}"#), None);
        let off = TimeShift { mode: ShiftMode::Off, ..t };
        assert_eq!(off.live_query("updatedSince=2026-12-01T10%3A00%3A00Z"), None);
    }
}
