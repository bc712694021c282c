//! The one clock everything reads: wall time plus an offset, optionally frozen, and the RFC 3339
//! formatting and parsing the cassette and admin API use. `SystemTime::now` and `Instant::now` are
//! banned elsewhere (`clippy.toml`), so nothing bypasses virtual time. It does not schedule
//! anything; callers ask it for "now" and for elapsed spans (waiting is `timer`'s part).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Virtual time shared by the proxy: real time plus an offset by default, or frozen at an instant.
#[derive(Debug)]
pub struct Clock {
    /// Changes are made under this lock, then published to the two numbers below.
    inner: Mutex<ClockState>,
    /// The state `reset` returns to.
    start: ClockState,
    /// What readers read, without the lock (every request reads the clock): the offset, and the
    /// frozen instant (`i64::MIN` when not frozen).
    offset_ms: AtomicI64,
    /// The frozen instant, `i64::MIN` when ticking. Stored after the offset with `Release` and read
    /// first with `Acquire`, so a reader that sees a change sees its offset too.
    frozen_at_ms: AtomicI64,
}

/// The clock's settings, changed only under [`Clock`]'s lock.
#[derive(Debug, Clone, Copy)]
struct ClockState {
    /// Offset added to the wall clock, in milliseconds (may be negative).
    offset_ms: i64,
    /// When frozen, the fixed virtual time in milliseconds since the epoch.
    frozen_at_ms: Option<i64>,
}

impl Default for Clock {
    /// The wall clock ([`Clock::system`]).
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// A clock that follows the wall clock.
    pub fn system() -> Self {
        Self::with_state(ClockState { offset_ms: 0, frozen_at_ms: None })
    }

    /// A clock frozen at `epoch_ms`; it moves only when advanced.
    pub fn frozen(epoch_ms: i64) -> Self {
        Self::with_state(ClockState { offset_ms: 0, frozen_at_ms: Some(epoch_ms) })
    }

    /// A clock that ticks with the wall clock but starts at `epoch_ms`.
    pub fn starting_at(epoch_ms: i64) -> Self {
        Self::with_state(ClockState { offset_ms: epoch_ms - Self::wall_ms(), frozen_at_ms: None })
    }

    /// A clock in state `s`, which is also where [`Clock::reset`] returns.
    fn with_state(s: ClockState) -> Self {
        let c = Clock {
            inner: Mutex::new(s),
            start: s,
            offset_ms: AtomicI64::new(0),
            frozen_at_ms: AtomicI64::new(i64::MIN),
        };
        c.publish(&s);
        c
    }

    /// Makes a change visible to readers (called with the lock held).
    fn publish(&self, s: &ClockState) {
        self.offset_ms.store(s.offset_ms, Ordering::Relaxed);
        self.frozen_at_ms.store(s.frozen_at_ms.unwrap_or(i64::MIN), Ordering::Release);
    }

    /// Whether time moves only when advanced.
    pub fn is_frozen(&self) -> bool {
        self.frozen_at_ms.load(Ordering::Acquire) != i64::MIN
    }

    /// Sets virtual time to `epoch_ms` (it keeps ticking from there unless frozen).
    pub fn set_ms(&self, epoch_ms: i64) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match s.frozen_at_ms.as_mut() {
            Some(t) => *t = epoch_ms,
            None => s.offset_ms = epoch_ms - Self::wall_ms(),
        }
        self.publish(&s);
    }

    /// Back to the state the clock was made in (the same offset, or the same frozen instant).
    pub fn reset(&self) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *s = self.start;
        self.publish(&s);
    }

    /// Wall time in milliseconds since the epoch; 0 for a system clock set before 1970.
    #[allow(clippy::disallowed_methods)] // the one place that reads the wall clock
    fn wall_ms() -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }

    /// Virtual time, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match self.frozen_at_ms.load(Ordering::Acquire) {
            i64::MIN => Self::wall_ms() + self.offset_ms.load(Ordering::Relaxed),
            t => t,
        }
    }

    /// Virtual time as a `SystemTime`.
    pub fn now(&self) -> SystemTime {
        let ms = self.now_ms();
        if ms >= 0 {
            UNIX_EPOCH + Duration::from_millis(ms as u64)
        } else {
            UNIX_EPOCH
        }
    }

    /// Moves virtual time forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match s.frozen_at_ms.as_mut() {
            Some(t) => *t += ms,
            None => s.offset_ms += ms,
        }
        self.publish(&s);
    }

    /// A monotonic instant for measuring how long real work took (timings, not virtual time).
    #[allow(clippy::disallowed_methods)] // the one place that reads the monotonic clock
    pub fn instant() -> Instant {
        Instant::now()
    }
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with millisecond precision.
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", sod / 3600, (sod % 3600) / 60, sod % 60)
}

/// Parses an RFC 3339 date-time (`2026-11-21T10:00:00Z`, fractional seconds and `+hh:mm` offsets
/// allowed) to milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo as u32) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let f = &frac[..digits];
        millis = f.chars().chain("000".chars()).take(3).collect::<String>().parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let oh: i64 = o.get(1..3)?.parse().ok()?;
            let om: i64 = o.get(4..6)?.parse().ok()?;
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if o.starts_with('-') {
                -m
            } else {
                m
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) - offset_min * 60) * 1000 + millis)
}

/// Days in month `m` of year `y` (Gregorian leap years), to refuse dates like February 30.
fn days_in_month(y: i64, m: u32) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month, day) to days since 1970-01-01, proleptic Gregorian.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of the UTC date containing `ms` milliseconds since the epoch.
pub fn ymd(ms: i64) -> (i64, u32, u32) {
    civil_from_days(ms.div_euclid(86_400_000))
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Milliseconds on the process's monotonic clock, comparable across sessions and requests.
pub fn mono_ms() -> u64 {
    ORIGIN.get_or_init(Clock::instant).elapsed().as_millis() as u64
}

/// The instant [`mono_ms`] counts from: its first call.
static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_clock_moves_only_when_advanced() {
        let c = Clock::frozen(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance_ms(500);
        assert_eq!(c.now_ms(), 1_500);
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(1_795_000_000_000), "2026-11-18T11:06:40.000Z");
    }

    #[test]
    fn rfc3339_parses_what_it_formats_and_offsets() {
        for ms in [0, 951_782_400_123, 1_795_000_000_000, -86_400_000] {
            assert_eq!(parse_rfc3339(&rfc3339_ms(ms)), Some(ms));
        }
        assert_eq!(parse_rfc3339("2026-11-18T12:06:40+01:00"), Some(1_795_000_000_000));
        assert_eq!(parse_rfc3339("2026-11-18T11:06:40.5Z"), Some(1_795_000_000_500));
        for bad in [
            "",
            "2026-11-18",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-18T11:06:40",
            "x026-11-18T11:06:40Z",
            "2026-11-18T11:06:40.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn set_and_reset_return_to_the_start() {
        let c = Clock::frozen(5_000);
        c.set_ms(9_000);
        assert_eq!(c.now_ms(), 9_000);
        c.reset();
        assert_eq!(c.now_ms(), 5_000);
        let r = Clock::starting_at(1_000_000);
        assert!((r.now_ms() - 1_000_000).abs() < 5_000);
        assert!(!r.is_frozen());
    }
}
