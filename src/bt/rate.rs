//! A token bucket for `--max-upload-rate` and `--max-download-rate`: shared by every
//! connection of one process, so the limit is the total, not per peer. Rates parse from `10M`, `500K`, `64k` or bytes.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How much a bucket may hold, in seconds of its rate: one second lets a connection that
/// was idle send a burst of one second's worth, and no more, so the average over any few
/// seconds stays at the rate.
const BURST: Duration = Duration::from_secs(1);

/// Bytes per second, parsed from `R`, `RK` or `RM` (binary multiples: K = 1,024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(pub u64);

/// Why a rate did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RateError {
    /// Not a number with an optional K/M/G suffix.
    #[error("not a rate (bytes per second, like 500K or 10M)")]
    Malformed,
    /// Zero, or too large.
    #[error("a rate must be between 1 byte and 1 TiB per second")]
    OutOfRange,
}

impl std::str::FromStr for Rate {
    type Err = RateError;
    fn from_str(s: &str) -> Result<Rate, RateError> {
        let (digits, mult) = match s.as_bytes().last() {
            Some(b'k' | b'K') => (&s[..s.len() - 1], 1u64 << 10),
            Some(b'm' | b'M') => (&s[..s.len() - 1], 1 << 20),
            Some(b'g' | b'G') => (&s[..s.len() - 1], 1 << 30),
            _ => (s, 1),
        };
        let n: u64 = digits.parse().map_err(|_| RateError::Malformed)?;
        let r = n.checked_mul(mult).ok_or(RateError::OutOfRange)?;
        if r == 0 || r > 1 << 40 {
            return Err(RateError::OutOfRange);
        }
        Ok(Rate(r))
    }
}

/// A token bucket of `rate` bytes per second.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: Rate) -> TokenBucket {
        let rate = rate.0 as f64;
        TokenBucket {
            rate,
            state: Mutex::new((rate * BURST.as_secs_f64(), Instant::now())),
        }
    }

    /// Takes `n` bytes' worth, sleeping (outside the lock) until the bucket has them.
    pub fn take(&self, n: u64) {
        let wait = self.reserve(n, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Takes `n` bytes' worth at `now` and returns how long the taker must wait before
    /// using them (zero when the bucket held them): [`TokenBucket::take`] without the
    /// sleep, so the arithmetic is testable without a clock.
    pub fn reserve(&self, n: u64, now: Instant) -> Duration {
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let now = now.max(st.1);
            let cap = self.rate * BURST.as_secs_f64();
            st.0 = (st.0 + now.duration_since(st.1).as_secs_f64() * self.rate).min(cap);
            st.1 = now;
            // Taken at once (the balance may go negative): whoever comes next waits for
            // this debt too, so concurrent takers share the rate fairly enough.
            st.0 -= n as f64;
            if st.0 < 0.0 {
                Duration::from_secs_f64(-st.0 / self.rate)
            } else {
                Duration::ZERO
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_lends_one_second_of_burst_then_makes_takers_wait_for_the_debt() {
        let b = TokenBucket::new(Rate(1000));
        let t0 = b.state.lock().unwrap().1;
        // A full bucket: one second's worth goes at once.
        assert_eq!(b.reserve(600, t0), Duration::ZERO);
        assert_eq!(b.reserve(400, t0), Duration::ZERO);
        // Empty: 500 more bytes are half a second of the rate.
        assert_eq!(b.reserve(500, t0), Duration::from_millis(500));
        // The next taker also waits for the debt before it: 1.5 s in all.
        assert_eq!(b.reserve(1000, t0), Duration::from_millis(1500));
        // Two seconds later the debt (1.5 s) is paid and half a second refilled, never
        // more than the burst.
        assert_eq!(b.reserve(500, t0 + Duration::from_secs(2)), Duration::ZERO);
        assert_eq!(b.reserve(0, t0 + Duration::from_secs(100)), Duration::ZERO);
        assert_eq!(
            b.reserve(2000, t0 + Duration::from_secs(100)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn rates_parse() {
        assert_eq!("500K".parse(), Ok(Rate(500 << 10)));
        assert_eq!("10M".parse(), Ok(Rate(10 << 20)));
        assert_eq!("123".parse(), Ok(Rate(123)));
        assert_eq!("0".parse::<Rate>(), Err(RateError::OutOfRange));
        assert_eq!("x1".parse::<Rate>(), Err(RateError::Malformed));
        assert_eq!("99999999999G".parse::<Rate>(), Err(RateError::OutOfRange));
    }
}
