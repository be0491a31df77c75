//! How many restarts a supervisor allows in a window before it gives up.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct RestartBudget {
    max: u32,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    pub fn new(max: u32, window: Duration) -> RestartBudget {
        RestartBudget {
            max,
            window,
            recent: VecDeque::new(),
        }
    }

    /// Records a restart at `now`; `false` when the budget is spent.
    pub fn allow(&mut self, now: Instant) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() as u32 >= self.max {
            return false;
        }
        self.recent.push_back(now);
        true
    }

    /// The back-off before the next restart: 100 ms doubling per recent restart.
    pub fn backoff(&self) -> Duration {
        Duration::from_millis(100) * (1u32 << self.recent.len().min(6))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spends_and_recovers() {
        let t = Instant::now();
        let mut b = RestartBudget::new(2, Duration::from_secs(10));
        assert!(b.allow(t));
        assert!(b.allow(t + Duration::from_secs(1)));
        assert!(!b.allow(t + Duration::from_secs(2)));
        assert!(b.allow(t + Duration::from_secs(12)));
    }
}
