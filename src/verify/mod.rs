//! `callvcr verify`: is this cassette still true? Its requests are sent again, in recorded order,
//! to the live sandbox, and each live answer is compared with the recorded one. The parts are
//! plain functions over data: which exchanges are sent and as what ([`plan`]), what a request
//! becomes live (credentials, tokens, codes: [`session`]; ids made along the way: [`ids`]), how
//! an answer differs ([`compare`], and [`events`] for WebSocket sessions), and what is reported or
//! written back ([`report`]). Only [`live`] does IO, through the verified upstream client; it
//! knows nothing of overlays, listeners or the CLI.

pub(crate) mod compare;
pub(crate) mod events;
pub(crate) mod ids;
pub(crate) mod live;
pub(crate) mod plan;
pub(crate) mod report;
pub(crate) mod session;

/// How long to wait before sending a request again after a 429: its `Retry-After` (seconds, or an
/// HTTP date against `now_ms`), else 1 s doubling with each `attempt` (0 first).
pub(crate) fn retry_after_ms(value: Option<&str>, now_ms: i64, attempt: u32) -> u64 {
    let backoff = 1_000u64 << attempt.min(6);
    let Some(v) = value.map(str::trim) else { return backoff };
    if let Ok(s) = v.parse::<u64>() {
        return s.saturating_mul(1_000);
    }
    match httpdate::parse_http_date(v) {
        Ok(t) => {
            let at = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
            at.saturating_sub(now_ms).max(0) as u64
        }
        Err(_) => backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_waits_its_retry_after() {
        assert_eq!(retry_after_ms(Some("2"), 0, 0), 2_000);
        assert_eq!(retry_after_ms(Some(" 0 "), 0, 3), 0);
        let now = crate::clock::parse_rfc3339("2026-01-05T09:00:00Z").unwrap();
        assert_eq!(retry_after_ms(Some("Mon, 05 Jan 2026 09:00:05 GMT"), now, 0), 5_000);
        assert_eq!(retry_after_ms(Some("Mon, 05 Jan 2026 08:00:00 GMT"), now, 0), 0, "a date gone by");
        assert_eq!((retry_after_ms(None, 0, 0), retry_after_ms(Some("soon"), 0, 2)), (1_000, 4_000));
    }
}
