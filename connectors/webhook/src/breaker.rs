//! The endpoint's circuit breaker.
//!
//! Closed: requests flow; consecutive failures are counted and any success resets the count.
//! After `failures` consecutive failures the circuit opens: for `cooldown` no request goes
//! out (deliveries are deferred, not counted as attempts). Then it is half-open: exactly one
//! probe request goes out; its success closes the circuit, its failure opens it again for
//! another cooldown. A failure is a network error, a timeout or a retryable status other
//! than 429 (a 429 proves the endpoint is alive; its `Retry-After` paces the retries).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The circuit's state, as exported in the `circuit_state` gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Requests flow (gauge 0).
    Closed,
    /// No request goes out (gauge 1).
    Open,
    /// One probe may go out (gauge 2).
    HalfOpen,
}

impl CircuitState {
    /// The gauge value.
    pub fn gauge(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::Open => 1.0,
            CircuitState::HalfOpen => 2.0,
        }
    }

    /// A name for logs.
    pub fn name(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Permission to send one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Ticket {
    probe: bool,
}

/// How a request went, as far as the breaker is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The endpoint answered (2xx, 4xx, 429 ...).
    Alive,
    /// Network error, timeout, 5xx.
    Failed,
}

/// One endpoint's breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
}

/// A state change, for metrics and logs.
pub type Transition = Option<(CircuitState, CircuitState)>;

impl CircuitBreaker {
    /// A closed breaker; `threshold` 0 never opens.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        CircuitBreaker {
            threshold,
            cooldown,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current state.
    pub fn state(&self) -> CircuitState {
        state_of(&self.lock())
    }

    /// Lets a request through, or says how long to wait. May move open -> half-open.
    pub fn admit(&self, now: Instant) -> (Result<Ticket, Duration>, Transition) {
        let mut inner = self.lock();
        let before = state_of(&inner);
        let result = match &mut *inner {
            Inner::Closed { .. } => Ok(Ticket { probe: false }),
            Inner::Open { until } if now < *until => Err(*until - now),
            Inner::Open { .. } => {
                *inner = Inner::HalfOpen { probing: true };
                Ok(Ticket { probe: true })
            }
            Inner::HalfOpen { probing } if *probing => {
                // A probe is out: wait about as long as a probe may take.
                Err(self.cooldown.min(Duration::from_secs(1)))
            }
            Inner::HalfOpen { probing } => {
                *probing = true;
                Ok(Ticket { probe: true })
            }
        };
        (result, transition(before, state_of(&inner)))
    }

    /// Gives a ticket back unused (the request did not go out).
    pub fn release(&self, ticket: Ticket) {
        if ticket.probe {
            if let Inner::HalfOpen { probing } = &mut *self.lock() {
                *probing = false;
            }
        }
    }

    /// Records how a request went.
    pub fn record(&self, ticket: Ticket, verdict: Verdict, now: Instant) -> Transition {
        let mut inner = self.lock();
        let before = state_of(&inner);
        match (&mut *inner, verdict) {
            (Inner::Closed { failures }, Verdict::Alive) => *failures = 0,
            (Inner::Closed { failures }, Verdict::Failed) => {
                *failures += 1;
                if self.threshold > 0 && *failures >= self.threshold {
                    *inner = Inner::Open {
                        until: now + self.cooldown,
                    };
                }
            }
            (Inner::HalfOpen { .. }, verdict) if ticket.probe => {
                *inner = match verdict {
                    Verdict::Alive => Inner::Closed { failures: 0 },
                    Verdict::Failed => Inner::Open {
                        until: now + self.cooldown,
                    },
                };
            }
            // Results of requests admitted before the circuit opened change nothing.
            _ => {}
        }
        transition(before, state_of(&inner))
    }
}

fn state_of(inner: &Inner) -> CircuitState {
    match inner {
        Inner::Closed { .. } => CircuitState::Closed,
        Inner::Open { .. } => CircuitState::Open,
        Inner::HalfOpen { .. } => CircuitState::HalfOpen,
    }
}

fn transition(before: CircuitState, after: CircuitState) -> Transition {
    (before != after).then_some((before, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_then_probes() {
        let b = CircuitBreaker::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        // Successes reset the count.
        for verdict in [
            Verdict::Failed,
            Verdict::Failed,
            Verdict::Alive,
            Verdict::Failed,
        ] {
            let (ticket, _) = b.admit(t0);
            assert_eq!(b.record(ticket.unwrap(), verdict, t0), None);
        }
        assert_eq!(b.state(), CircuitState::Closed);
        let (t1, _) = b.admit(t0);
        let (t2, _) = b.admit(t0);
        assert_eq!(b.record(t1.unwrap(), Verdict::Failed, t0), None);
        assert_eq!(
            b.record(t2.unwrap(), Verdict::Failed, t0),
            Some((CircuitState::Closed, CircuitState::Open))
        );
        // Open: everything waits for the rest of the cooldown.
        let (wait, _) = b.admit(t0 + Duration::from_secs(4));
        assert_eq!(wait.unwrap_err(), Duration::from_secs(6));
        // Half-open: one probe, the others wait.
        let later = t0 + Duration::from_secs(10);
        let (probe, change) = b.admit(later);
        let probe = probe.unwrap();
        assert_eq!(change, Some((CircuitState::Open, CircuitState::HalfOpen)));
        assert!(b.admit(later).0.is_err(), "one probe at a time");
        // The probe fails: open again.
        assert_eq!(
            b.record(probe, Verdict::Failed, later),
            Some((CircuitState::HalfOpen, CircuitState::Open))
        );
        assert!(b.admit(later + Duration::from_secs(9)).0.is_err());
        // Next probe is released unused (rate limited), then another succeeds.
        let at = later + Duration::from_secs(10);
        let probe = b.admit(at).0.unwrap();
        b.release(probe);
        let probe = b.admit(at).0.unwrap();
        assert!(probe.probe);
        assert_eq!(
            b.record(probe, Verdict::Alive, at),
            Some((CircuitState::HalfOpen, CircuitState::Closed))
        );
        assert!(!b.admit(at).0.unwrap().probe);
    }

    #[test]
    fn threshold_zero_never_opens() {
        let b = CircuitBreaker::new(0, Duration::from_secs(1));
        let now = Instant::now();
        for _ in 0..100 {
            let t = b.admit(now).0.unwrap();
            b.record(t, Verdict::Failed, now);
        }
        assert_eq!(b.state(), CircuitState::Closed);
    }
}
