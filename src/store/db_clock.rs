//! The database's clock without a round trip per statement. PostgreSQL and MariaDB
//! stores decide due times and leases by the database's "now", so every node agrees
//! whatever its own clock says. Reading it costs a round trip, so it is read once a
//! second and carried forward on this node's monotonic clock in between: the error is
//! half a round trip plus a second's drift, not the skew between nodes.
//!
//! It never goes back: a fresh reading that lands below what was already handed out
//! (the half-round-trip guess was off) is held at that value. Otherwise a job enqueued
//! just before a refresh could carry a `run_at` after the "now" of the claim that
//! follows, and an idle dispatcher would not look again until the next wake-up.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use kyu_actors::StoreError;

/// How long one reading of the database clock is trusted.
const REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct DbClock {
    last: Mutex<Option<(i64, Instant)>>,
    /// The largest value handed out.
    high: AtomicI64,
}

fn since(at: Instant) -> i64 {
    i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX)
}

impl DbClock {
    /// Epoch ms by the database; `read` fetches its clock when the last reading is stale,
    /// with the instant its query was sent — after a connection was in hand: a wait for
    /// the pool is not round trip, and counting half of it would put this clock behind
    /// the database's (leases written by it would expire early, and under load the
    /// leader rescued jobs still running on live nodes).
    pub async fn now<F, Fut>(&self, read: F) -> Result<i64, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(i64, Instant), StoreError>>,
    {
        if let Some((ms, at)) = *self.last.lock().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < REFRESH
        {
            return Ok(self.forward(ms.saturating_add(since(at))));
        }
        let (db, sent) = read().await?;
        // The database read its clock about halfway through the round trip.
        let at = sent + sent.elapsed() / 2;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((db, at));
        Ok(self.forward(db.saturating_add(since(at))))
    }

    /// `ms`, or the largest value handed out if that is later.
    fn forward(&self, ms: i64) -> i64 {
        self.high.fetch_max(ms, Ordering::Relaxed).max(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_once_then_carries_forward() {
        let c = DbClock::default();
        let mut reads = 0;
        let a = c
            .now(|| async {
                reads += 1;
                Ok((1_000_000, Instant::now()))
            })
            .await
            .unwrap();
        let b = c.now(|| async { Ok((5, Instant::now())) }).await.unwrap();
        assert_eq!(reads, 1);
        assert!(a >= 1_000_000 && b >= a && b < 1_001_000, "{a} {b}");
    }

    #[tokio::test]
    async fn a_lower_fresh_reading_does_not_turn_it_back() {
        let c = DbClock::default();
        let a = c
            .now(|| async { Ok((1_000_000, Instant::now())) })
            .await
            .unwrap();
        // The next reading (forced) says the database is 50 ms behind the first guess.
        *c.last.lock().unwrap() = None;
        let b = c
            .now(|| async { Ok((999_950, Instant::now())) })
            .await
            .unwrap();
        assert!(b >= a, "{a} then {b}");
    }
}
