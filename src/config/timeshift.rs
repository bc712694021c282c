//! `time_shift` as written in `proxy.yaml`: the mode, and the fields named as times. The shift
//! itself lives with the cassette (`cassette::timeshift`); this is the spec it is built from.

use std::fmt;

use serde::Deserialize;

/// How much of a replay is moved in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShiftMode {
    /// The recorded bytes, as recorded.
    Off,
    /// `Date` is now; `Expires`, `Last-Modified` and cookie expiry are shifted; bodies untouched.
    Headers,
    /// Headers, and timestamps in JSON bodies, WebSocket events and requests.
    #[default]
    All,
}

impl ShiftMode {
    /// The mode named in `proxy.yaml` or on the command line.
    pub fn parse(s: &str) -> Option<ShiftMode> {
        match s {
            "off" => Some(ShiftMode::Off),
            "headers" => Some(ShiftMode::Headers),
            "all" => Some(ShiftMode::All),
            _ => None,
        }
    }

    /// The mode's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ShiftMode::Off => "off",
            ShiftMode::Headers => "headers",
            ShiftMode::All => "all",
        }
    }
}

/// `time_shift` as written: a mode alone (`time_shift: headers`), or a map with a mode and the
/// fields that hold times beyond those the cassette shows. The mode is checked with the rest
/// (`config::validate`), at the value's line and column.
#[derive(Debug, Default)]
pub struct RawTimeShift {
    /// `off`, `headers` or `all` (the default), as written.
    pub mode: Option<String>,
    /// JSON field names whose values are times (RFC 3339 strings, or epoch numbers).
    pub fields: Vec<String>,
}

impl<'de> Deserialize<'de> for RawTimeShift {
    /// A mode string or a `{mode, fields}` map. Written by hand so that an unknown key is named in
    /// the error; an untagged enum would only say that no variant matched.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawTimeShift, D::Error> {
        /// Reads either spelling of `time_shift`.
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            /// What either spelling becomes.
            type Value = RawTimeShift;
            /// The shapes accepted, for serde's "invalid type" message.
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mode (off, headers, all) or a map with `mode` and `fields`")
            }
            /// `time_shift: <mode>`: just the mode, checked later with the rest.
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RawTimeShift, E> {
                Ok(RawTimeShift { mode: Some(s.to_string()), fields: Vec::new() })
            }
            /// `time_shift: {mode, fields}`: either key may be left out; any other is refused.
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<RawTimeShift, A::Error> {
                let mut out = RawTimeShift::default();
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "mode" => out.mode = m.next_value()?,
                        "fields" => out.fields = m.next_value()?,
                        other => {
                            return Err(serde::de::Error::custom(format!(
                                "time_shift: unknown field `{other}`, expected `mode` or `fields`"
                            )))
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_any(Visit)
    }
}
