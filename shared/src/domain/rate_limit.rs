//! Per-API-key rate limiting with GCRA (the generic cell rate algorithm): one number per key,
//! the theoretical arrival time `tat`, kept in DynamoDB so every Lambda instance shares it.
//! A request is allowed when `max(tat, now) <= now + (burst - 1) * interval`; it then pushes
//! `tat` by one interval.

/// Requests per second and burst for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    interval_us: i64,
    burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// The key is idle (`tat` in the past or absent): set `tat = now + interval`.
    Idle,
    /// Within the burst: add one interval to `tat`, on condition `now <= tat <= limit_us`.
    Busy { limit_us: i64 },
    /// Over the limit until `retry_after_s` seconds from now.
    Limited { retry_after_s: u64 },
}

impl RateLimit {
    pub fn new(rps: u32, burst: u32) -> Option<Self> {
        if rps == 0 || burst == 0 || rps > 1_000_000 {
            return None;
        }
        Some(RateLimit {
            interval_us: 1_000_000 / i64::from(rps),
            burst,
        })
    }

    pub fn from_parts(interval_us: i64, burst: u32) -> Option<Self> {
        (interval_us > 0 && burst > 0).then_some(RateLimit { interval_us, burst })
    }

    pub fn interval_us(&self) -> i64 {
        self.interval_us
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    fn tolerance_us(&self) -> i64 {
        self.interval_us.saturating_mul(i64::from(self.burst) - 1)
    }

    pub fn decide(&self, tat_us: Option<i64>, now_us: i64) -> RateDecision {
        match tat_us {
            None => RateDecision::Idle,
            Some(tat) if tat < now_us => RateDecision::Idle,
            Some(tat) => {
                let limit_us = now_us.saturating_add(self.tolerance_us());
                if tat <= limit_us {
                    RateDecision::Busy { limit_us }
                } else {
                    let wait_us = tat - limit_us;
                    RateDecision::Limited {
                        retry_after_s: (wait_us as u64).div_ceil(1_000_000).max(1),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates the store: applies decisions to one `tat`.
    fn run(limit: RateLimit, times_us: &[i64]) -> Vec<bool> {
        let mut tat: Option<i64> = None;
        times_us
            .iter()
            .map(|&now| match limit.decide(tat, now) {
                RateDecision::Idle => {
                    tat = Some(now + limit.interval_us());
                    true
                }
                RateDecision::Busy { limit_us } => {
                    assert!(tat.unwrap() <= limit_us);
                    tat = Some(tat.unwrap() + limit.interval_us());
                    true
                }
                RateDecision::Limited { .. } => false,
            })
            .collect()
    }

    #[test]
    fn burst_then_limit_then_refill() {
        let limit = RateLimit::new(50, 100).unwrap();
        let at_once = run(limit, &[1_000_000; 101]);
        assert_eq!(at_once.iter().filter(|a| **a).count(), 100);
        assert!(!at_once[100]);
    }

    #[test]
    fn steady_rate_is_allowed() {
        let limit = RateLimit::new(10, 1).unwrap();
        let times: Vec<i64> = (0..50).map(|i| i * 100_000).collect();
        assert!(run(limit, &times).iter().all(|a| *a));
        let too_fast: Vec<i64> = (0..10).map(|i| i * 50_000).collect();
        assert_eq!(run(limit, &too_fast).iter().filter(|a| **a).count(), 5);
    }

    #[test]
    fn retry_after_is_whole_seconds() {
        let limit = RateLimit::new(1, 1).unwrap();
        assert_eq!(
            limit.decide(Some(3_500_000), 1_000_000),
            RateDecision::Limited { retry_after_s: 3 }
        );
        assert_eq!(
            limit.decide(Some(1_000_001), 1_000_000),
            RateDecision::Limited { retry_after_s: 1 }
        );
        assert!(RateLimit::new(0, 1).is_none());
    }
}
