//! The endpoint's rate limit: a token bucket of `burst` tokens refilled at `rate` per
//! second. A delivery that finds no token is deferred until the next one is due (not counted
//! as an attempt).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    /// (tokens, when they were counted).
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// `rate` tokens per second (> 0), at most `burst` (>= 1) saved up; starts full.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            rate,
            burst,
            state: Mutex::new((burst, now)),
        }
    }

    /// Takes a token, or says how long until one is there.
    pub fn try_acquire(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = *state;
        let elapsed = now.saturating_duration_since(last).as_secs_f64();
        let tokens = (tokens + elapsed * self.rate).min(self.burst);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now.max(last));
            Ok(())
        } else {
            *state = (tokens, now.max(last));
            let wait = (1.0 - tokens) / self.rate;
            Err(Duration::from_secs_f64(wait).max(Duration::from_millis(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_paces() {
        let t0 = Instant::now();
        let limiter = RateLimiter::new(10.0, 3, t0);
        for _ in 0..3 {
            limiter.try_acquire(t0).unwrap();
        }
        let wait = limiter.try_acquire(t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(95) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        limiter
            .try_acquire(t0 + Duration::from_millis(100))
            .unwrap();
        assert!(limiter
            .try_acquire(t0 + Duration::from_millis(150))
            .is_err());
        // Over one simulated second, about `rate` requests pass.
        let mut passed = 0;
        for ms in (200..1200).step_by(5) {
            if limiter.try_acquire(t0 + Duration::from_millis(ms)).is_ok() {
                passed += 1;
            }
        }
        assert!((9..=11).contains(&passed), "{passed}");
    }
}
