//! Pool sizing from CPU, memory and backlog. The policy is a pure
//! function of a reading; the Autoscaler actor feeds it and applies the answer.

use std::time::Duration;

use serde::Serialize;

/// CPU and memory in percent of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reading {
    pub cpu_percent: f64,
    pub memory_percent: f64,
}

/// Where readings come from (sysinfo in production, a fake in tests).
pub trait ResourceProbe: Send + Sync + 'static {
    fn read(&self) -> Reading;
}

/// No growth at or above this CPU: more workers would only contend for it.
pub const CPU_HIGH: f64 = 70.0;
/// Shrink at or above this CPU (a reading averages the whole interval): the machine
/// is saturated, and fewer jobs at once get through it sooner. Between the two the
/// pool holds, so a pool that itself keeps the CPU busy (a drain of short jobs) is
/// not shrunk for it, which would only slow the drain.
pub const CPU_SATURATED: f64 = 90.0;
/// Shrink at or above this memory.
pub const MEMORY_HIGH: f64 = 80.0;

/// What the pool looks like when the autoscaler decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolView {
    pub size: usize,
    pub busy: usize,
    /// Jobs waiting (claimed but not started, or the last claim came back full).
    pub backlog: bool,
}

/// The size the pool should have, within [min, max]. One step at a time.
pub fn decide(r: Reading, pool: PoolView, min: usize, max: usize) -> usize {
    let size = pool.size.clamp(min, max);
    let target = if r.cpu_percent >= CPU_SATURATED || r.memory_percent >= MEMORY_HIGH {
        size.saturating_sub(1)
    } else if r.cpu_percent >= CPU_HIGH {
        size
    } else if pool.backlog && pool.busy >= size {
        size + 1
    } else if !pool.backlog && pool.busy < size / 2 {
        size.saturating_sub(1)
    } else {
        size
    };
    target.clamp(min, max)
}

/// Refuses resizes closer together than the cooldown (anti-flapping).
#[derive(Debug, Clone)]
pub struct Cooldown {
    period: Duration,
    last: Option<tokio::time::Instant>,
}

impl Cooldown {
    pub fn new(period: Duration) -> Cooldown {
        Cooldown { period, last: None }
    }

    /// Whether a resize may happen now; records it if so.
    pub fn try_pass(&mut self, now: tokio::time::Instant) -> bool {
        match self.last {
            Some(t) if now.duration_since(t) < self.period => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(cpu: f64) -> Reading {
        Reading {
            cpu_percent: cpu,
            memory_percent: 30.0,
        }
    }

    #[test]
    fn high_cpu_shrinks_to_min_and_low_cpu_with_backlog_grows_to_max() {
        let mut size = 10;
        for _ in 0..20 {
            size = decide(
                r(90.0),
                PoolView {
                    size,
                    busy: size,
                    backlog: true,
                },
                1,
                10,
            );
        }
        assert_eq!(size, 1);
        for _ in 0..20 {
            size = decide(
                r(20.0),
                PoolView {
                    size,
                    busy: size,
                    backlog: true,
                },
                1,
                10,
            );
            assert!((1..=10).contains(&size));
        }
        assert_eq!(size, 10);
    }

    #[test]
    fn busy_cpu_holds_the_pool_and_only_saturation_shrinks_it() {
        let busy = PoolView {
            size: 5,
            busy: 5,
            backlog: true,
        };
        assert_eq!(decide(r(75.0), busy, 1, 10), 5);
        assert_eq!(decide(r(89.0), busy, 1, 10), 5);
        assert_eq!(decide(r(90.0), busy, 1, 10), 4);
        assert_eq!(decide(r(69.0), busy, 1, 10), 6);
    }

    #[test]
    fn memory_pressure_shrinks_and_idle_shrinks() {
        let m = Reading {
            cpu_percent: 5.0,
            memory_percent: 85.0,
        };
        assert_eq!(
            decide(
                m,
                PoolView {
                    size: 4,
                    busy: 4,
                    backlog: true
                },
                1,
                10
            ),
            3
        );
        assert_eq!(
            decide(
                r(5.0),
                PoolView {
                    size: 4,
                    busy: 0,
                    backlog: false
                },
                1,
                10
            ),
            3
        );
        assert_eq!(
            decide(
                r(5.0),
                PoolView {
                    size: 1,
                    busy: 0,
                    backlog: false
                },
                1,
                10
            ),
            1
        );
    }
}
