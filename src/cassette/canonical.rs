//! Whether a JSON text is exactly what serde_json writes for its value (compact, serde_json's own
//! escapes, integers as it prints them, each key once), found by one scan without building the
//! value. A body for which this holds is stored in its readable JSON form as it is; the scan answers
//! "cannot tell" for what it does not model (a fraction or exponent), and the caller then parses and
//! compares. Plain data: no IO.

/// The answer of [`compact_as_serde_writes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Canonical {
    /// Valid JSON, byte for byte as serde_json would write it back.
    Yes,
    /// Not valid JSON, or valid but written otherwise (whitespace, another escape, a repeated key).
    No,
    /// Holds a number this scan does not model (a fraction or an exponent): parse and compare.
    Unsure,
}

/// Where the scan is, inside the containers open around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A value (top level, after `:`, after `[`, after `,` in an array).
    Value,
    /// A key or `}` right after `{`.
    FirstKey,
    /// A key after `,` in an object.
    Key,
    /// `:` after a key.
    Colon,
    /// `,` or the closing bracket after a value.
    After,
}

/// See the module documentation. Only an object or an array at the top counts (a scalar body is
/// not stored as JSON).
pub(crate) fn compact_as_serde_writes(text: &str) -> Canonical {
    let b = text.as_bytes();
    if !matches!(b.first(), Some(b'{' | b'[')) {
        return Canonical::No;
    }
    // Open containers: `true` for an object, with the keys seen in it.
    let mut stack: Vec<(bool, Vec<&[u8]>)> = Vec::new();
    let mut expect = Expect::Value;
    let mut unsure = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match expect {
            Expect::Value => match c {
                b'{' => {
                    stack.push((true, Vec::new()));
                    expect = Expect::FirstKey;
                    i += 1;
                }
                b'[' => {
                    stack.push((false, Vec::new()));
                    i += 1;
                    if b.get(i) == Some(&b']') {
                        stack.pop();
                        i += 1;
                        expect = Expect::After;
                    }
                }
                b'"' => match string_end(b, i) {
                    Some(end) => {
                        i = end;
                        expect = Expect::After;
                    }
                    None => return Canonical::No,
                },
                b't' | b'f' | b'n' => {
                    let word: &[u8] = match c {
                        b't' => b"true",
                        b'f' => b"false",
                        _ => b"null",
                    };
                    if !b[i..].starts_with(word) {
                        return Canonical::No;
                    }
                    i += word.len();
                    expect = Expect::After;
                }
                b'-' | b'0'..=b'9' => match number_end(b, i) {
                    Number::Integer(end) => {
                        i = end;
                        expect = Expect::After;
                    }
                    Number::Other(end) => {
                        unsure = true;
                        i = end;
                        expect = Expect::After;
                    }
                    Number::Bad => return Canonical::No,
                },
                _ => return Canonical::No,
            },
            Expect::FirstKey | Expect::Key => {
                if c == b'}' && expect == Expect::FirstKey {
                    stack.pop();
                    i += 1;
                    expect = Expect::After;
                    continue;
                }
                if c != b'"' {
                    return Canonical::No;
                }
                let Some(end) = string_end(b, i) else { return Canonical::No };
                let key = &b[i + 1..end - 1];
                let Some((_, keys)) = stack.last_mut() else { return Canonical::No };
                keys.push(key);
                i = end;
                expect = Expect::Colon;
            }
            Expect::Colon => {
                if c != b':' {
                    return Canonical::No;
                }
                i += 1;
                expect = Expect::Value;
            }
            Expect::After => {
                let Some((object, _)) = stack.last() else { return Canonical::No };
                match (c, object) {
                    (b',', true) => expect = Expect::Key,
                    (b',', false) => expect = Expect::Value,
                    (b'}', true) | (b']', false) => {
                        if let Some((_, mut keys)) = stack.pop() {
                            // A repeated key is written once by serde_json. Escapes are its own
                            // here, so equal keys are equal bytes.
                            keys.sort_unstable();
                            if keys.windows(2).any(|w| w[0] == w[1]) {
                                return Canonical::No;
                            }
                        }
                        expect = Expect::After;
                    }
                    _ => return Canonical::No,
                }
                i += 1;
            }
        }
        if stack.is_empty() && expect == Expect::After && i < b.len() {
            // Something after the top-level value.
            return Canonical::No;
        }
    }
    if !stack.is_empty() || expect != Expect::After {
        return Canonical::No;
    }
    if unsure {
        Canonical::Unsure
    } else {
        Canonical::Yes
    }
}

/// The index just past the string starting at `start` (a `"`), when its escapes are exactly
/// serde_json's: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, and `\u00xx` (lower-case hex) for the
/// other control characters; no raw control character.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Some(i + 1),
            b'\\' => {
                match *b.get(i + 1)? {
                    b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        let hex = b.get(i + 2..i + 6)?;
                        if hex[0] != b'0' || hex[1] != b'0' || !matches!(hex[2], b'0' | b'1') {
                            return None;
                        }
                        let low = match hex[3] {
                            d @ b'0'..=b'9' => d - b'0',
                            d @ b'a'..=b'f' => d - b'a' + 10,
                            _ => return None,
                        };
                        let code = (hex[2] - b'0') * 16 + low;
                        // These have short forms, which serde_json writes instead.
                        if matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                            return None;
                        }
                        i += 6;
                    }
                    _ => return None,
                }
            }
            c if c < 0x20 => return None,
            _ => i += 1,
        }
    }
    None
}

/// How a number ends.
enum Number {
    /// An integer as serde_json prints it (no leading zero, no `-0`, in `i64`/`u64` range): the
    /// index past it.
    Integer(usize),
    /// A valid number with a fraction or exponent: the index past it (the scan cannot tell how it
    /// prints).
    Other(usize),
    /// Not a JSON number, or an integer serde_json prints otherwise.
    Bad,
}

/// The index past the run of ASCII digits starting at `i`.
fn digits_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// The number starting at `start`.
fn number_end(b: &[u8], start: usize) -> Number {
    let mut i = start;
    let negative = b[i] == b'-';
    if negative {
        i += 1;
    }
    let digits_start = i;
    i = digits_end(b, i);
    let digits = &b[digits_start..i];
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
        return Number::Bad;
    }
    if matches!(b.get(i), Some(b'.' | b'e' | b'E')) {
        // A valid fraction or exponent is left to the parse; its digits are skipped here.
        if b[i] == b'.' {
            let s = i + 1;
            i = digits_end(b, s);
            if i == s {
                return Number::Bad;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let s = i;
            i = digits_end(b, s);
            if i == s {
                return Number::Bad;
            }
        }
        return Number::Other(i);
    }
    // An integer prints as itself only within the range serde_json keeps as an integer; `-0`
    // prints as `0`.
    let Ok(text) = std::str::from_utf8(digits) else { return Number::Bad };
    let fits =
        if negative { text != "0" && format!("-{text}").parse::<i64>().is_ok() } else { text.parse::<u64>().is_ok() };
    if fits {
        Number::Integer(i)
    } else {
        Number::Bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What parsing and writing back says: `Some(true)` when the text survives the round trip.
    fn slow(text: &str) -> Option<bool> {
        if !matches!(text.as_bytes().first(), Some(b'{' | b'[')) {
            return Some(false);
        }
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => Some(serde_json::to_string(&v).ok()? == text),
            Err(_) => Some(false),
        }
    }

    fn agrees(text: &str) {
        let fast = compact_as_serde_writes(text);
        let want = slow(text).unwrap();
        match fast {
            Canonical::Yes => assert!(want, "scan says exact, round trip differs: {text:?}"),
            Canonical::No => assert!(!want, "scan says not exact, round trip agrees: {text:?}"),
            Canonical::Unsure => {}
        }
    }

    #[test]
    fn the_scan_agrees_with_a_parse_and_write_back() {
        let samples = [
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#,
            r#"{"a": 1}"#,
            "{\"a\":1}\n",
            r#"[]"#,
            r#"{}"#,
            r#"[{},[],{"x":[]}]"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a":{"k":1},"b":{"k":1}}"#,
            r#"{"s":"line\nbreak \"quoted\" back\\slash \u0001 tab\t"}"#,
            r#"{"s":"\u000a"}"#,
            r#"{"s":"\u001F"}"#,
            r#"{"s":"\u001f"}"#,
            r#"{"s":"\/"}"#,
            r#"{"s":"\u00e9"}"#,
            "{\"s\":\"é ünïcode 💡\"}",
            "{\"s\":\"raw\u{1}control\"}",
            r#"{"n":-0}"#,
            r#"{"n":0}"#,
            r#"{"n":007}"#,
            r#"{"n":18446744073709551615}"#,
            r#"{"n":18446744073709551616}"#,
            r#"{"n":-9223372036854775808}"#,
            r#"{"n":-9223372036854775809}"#,
            r#"{"n":1.5}"#,
            r#"{"n":1.0}"#,
            r#"{"n":1e5}"#,
            r#"{"n":-}"#,
            r#"{"n":1.}"#,
            r#"[1,2,]"#,
            r#"[1 ,2]"#,
            r#"{"a":1}{"b":2}"#,
            r#"{"a":1}]"#,
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{,}"#,
            r#"[tru]"#,
            r#"[nul]"#,
            r#""just a string""#,
            "42",
            "",
            r#"{"unterminated":"x"#,
            r#"{"bad":"\x"}"#,
            r#"{"bad":"\u12"}"#,
        ];
        for s in samples {
            agrees(s);
        }
        assert_eq!(compact_as_serde_writes(r#"{"a":1,"b":[true,null],"c":"\u0001"}"#), Canonical::Yes);
        assert_eq!(compact_as_serde_writes(r#"{"n":1.5}"#), Canonical::Unsure);
        assert_eq!(compact_as_serde_writes(r#"{"a":1,"a":1}"#), Canonical::No);
    }

    #[test]
    fn the_scan_agrees_on_every_cut_and_every_byte_changed() {
        // Each prefix, and the text with each byte replaced in turn by characters that matter to
        // JSON: never does the scan call a text exact that the round trip does not reproduce.
        let base = r#"{"id":"5b4c1a7e","n":[1,-2,30],"s":"a\"b\\c\nd\u0002","o":{"t":true,"f":false,"z":null},"e":[]}"#;
        for cut in 0..=base.len() {
            if base.is_char_boundary(cut) {
                agrees(&base[..cut]);
            }
        }
        for at in 0..base.len() {
            for ch in ["\"", "\\", "{", "}", "[", "]", ",", ":", " ", "0", "-", "1", "e", ".", "u", "a", "\n"] {
                let mut t = base.as_bytes().to_vec();
                t.splice(at..at + 1, ch.bytes());
                if let Ok(t) = String::from_utf8(t) {
                    agrees(&t);
                }
            }
        }
    }
}
