//! The one clock everything reads: wall time plus an offset, optionally frozen.
//! It does not schedule anything; callers ask it for "now" and for elapsed spans.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Virtual time shared by the proxy: real time plus an offset by default, or frozen at an instant.
#[derive(Debug)]
pub struct Clock {
    inner: Mutex<ClockState>,
}

#[derive(Debug, Clone, Copy)]
struct ClockState {
    /// Offset added to the wall clock, in milliseconds (may be negative).
    offset_ms: i64,
    /// When frozen, the fixed virtual time in milliseconds since the epoch.
    frozen_at_ms: Option<i64>,
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// A clock that follows the wall clock.
    pub fn system() -> Self {
        Clock { inner: Mutex::new(ClockState { offset_ms: 0, frozen_at_ms: None }) }
    }

    /// A clock frozen at `epoch_ms`; it moves only when advanced.
    pub fn frozen(epoch_ms: i64) -> Self {
        Clock { inner: Mutex::new(ClockState { offset_ms: 0, frozen_at_ms: Some(epoch_ms) }) }
    }

    #[allow(clippy::disallowed_methods)] // the one place that reads the wall clock
    fn wall_ms() -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }

    /// Virtual time, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        let s = *self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match s.frozen_at_ms {
            Some(t) => t,
            None => Self::wall_ms() + s.offset_ms,
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

/// (year, month, day) of the UTC date containing `ms` milliseconds since the epoch.
pub fn ymd(ms: i64) -> (i64, u32, u32) {
    civil_from_days(ms.div_euclid(86_400_000))
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
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
}
