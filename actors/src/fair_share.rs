//! Fair share across tenants, decided at enqueue so a claim stays an index range read.
//!
//! Every job gets a fair time (`fair_at`, epoch µs) and claims take jobs of the same
//! priority in fair-time order (aging, too, counts from it). A tenant's fair clock
//! advances by `1 / (rate × weight)` seconds per job, and never lags now; a job's
//! fair time is its due time moved back by how far its tenant's clock runs ahead of
//! now. A tenant enqueueing slower than its rate keeps its due times, as before; a
//! tenant's burst of 100,000 is spread over 100,000 / rate seconds of fair time, so
//! another tenant's job enqueued a second later is placed after about `rate` of them,
//! not after all (start-time fair queueing with real time as the system's virtual
//! time). While the drain keeps up with `rate`, a newcomer's jobs start within one
//! claim round.
//!
//! Clocks live in the process that enqueues (per store handle): with several API
//! nodes each keeps its own, so a tenant enqueueing through N nodes gets up to N
//! shares. A restart forgets them, which only forgives a tenant's past burst.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Jobs per second one tenant's fair clock allows at weight 1 (`kyu_fair_share_rate`).
pub const DEFAULT_RATE: u32 = 1000;

/// Clocks kept before the ones already past are dropped.
const MAX_CLOCKS: usize = 10_000;

/// `[[kyu_fair_share_weight]]`: a tenant's share relative to the default 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantWeight {
    pub tenant: String,
    pub weight: f64,
}

/// The rate and weights, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct FairShare {
    /// Jobs per second per tenant at weight 1; 0 turns fair share off (fair time =
    /// due time).
    pub rate: u32,
    pub weights: HashMap<String, f64>,
}

impl Default for FairShare {
    fn default() -> Self {
        FairShare {
            rate: DEFAULT_RATE,
            weights: HashMap::new(),
        }
    }
}

impl FairShare {
    /// Checks weights (positive, finite, each tenant once).
    pub fn new(rate: u32, weights: Vec<TenantWeight>) -> Result<FairShare, String> {
        let mut by_tenant = HashMap::new();
        for w in weights {
            if !(w.weight.is_finite() && w.weight > 0.0 && w.weight <= 1_000_000.0) {
                return Err(format!(
                    "tenant {:?}: weight must be above 0 and at most 1000000",
                    w.tenant
                ));
            }
            if by_tenant.insert(w.tenant.clone(), w.weight).is_some() {
                return Err(format!("tenant {:?} has two weights", w.tenant));
            }
        }
        Ok(FairShare {
            rate,
            weights: by_tenant,
        })
    }

    /// Microseconds of fair time one job of `tenant` takes.
    fn step_us(&self, tenant: &str) -> i64 {
        let w = self.weights.get(tenant).copied().unwrap_or(1.0);
        (1_000_000.0 / (f64::from(self.rate) * w)).round().max(1.0) as i64
    }
}

/// Each tenant's fair clock (epoch µs): where its next job goes at the earliest.
#[derive(Debug, Default)]
pub struct FairClocks {
    config: FairShare,
    clocks: Mutex<HashMap<String, i64>>,
}

impl FairClocks {
    pub fn new(config: FairShare) -> FairClocks {
        FairClocks {
            config,
            clocks: Mutex::default(),
        }
    }

    /// Fair times for jobs of `tenant` due at `due_us`, in order, given `now_us`.
    /// A job due in the future gets its due time (it is placed when it comes due).
    pub fn assign(&self, jobs: &[(&str, i64)], now_us: i64) -> Vec<i64> {
        if self.config.rate == 0 {
            return jobs.iter().map(|(_, due)| *due).collect();
        }
        let Ok(mut clocks) = self.clocks.lock() else {
            return jobs.iter().map(|(_, due)| *due).collect();
        };
        if clocks.len() > MAX_CLOCKS {
            clocks.retain(|_, c| *c > now_us);
        }
        jobs.iter()
            .map(|(tenant, due)| {
                if *due > now_us {
                    return *due;
                }
                let step = self.config.step_us(tenant);
                let clock = clocks.entry((*tenant).to_owned()).or_insert(i64::MIN);
                // The tenant's jobs move back by how far its clock runs ahead of now
                // (its share already spent), so its own jobs keep their order by due
                // time and a tenant within its share keeps due times as they are.
                let ahead = clock.saturating_sub(now_us).max(0);
                let at = due.saturating_add(ahead);
                *clock = (*clock).max(now_us).saturating_add(step);
                at
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000_000_000;

    #[test]
    fn a_slow_tenant_keeps_its_due_times() {
        let c = FairClocks::new(FairShare::default());
        assert_eq!(c.assign(&[("a", NOW)], NOW), vec![NOW]);
        // 2 ms later: the clock (NOW + 1 ms) is behind.
        assert_eq!(c.assign(&[("a", NOW + 2000)], NOW + 2000), vec![NOW + 2000]);
    }

    #[test]
    fn a_burst_is_spread_and_a_newcomer_goes_first() {
        let c = FairClocks::new(FairShare::default());
        let burst: Vec<(&str, i64)> = (0..100_000).map(|_| ("a", NOW)).collect();
        let a = c.assign(&burst, NOW);
        assert_eq!(a[0], NOW);
        assert_eq!(a[99_999], NOW + 99_999 * 1000);
        // One second later b's jobs land after ~1,000 of a's, not after 100,000.
        let later = NOW + 1_000_000;
        let b = c.assign(&[("b", later), ("b", later)], later);
        assert_eq!(b, vec![later, later + 1000]);
        assert_eq!(a.iter().filter(|t| **t < b[0]).count(), 1000);
        // a's next job goes after its own burst.
        assert_eq!(c.assign(&[("a", later)], later), vec![NOW + 100_000 * 1000]);
    }

    #[test]
    fn weights_and_backfills_and_off() {
        let weights = vec![TenantWeight {
            tenant: "big".into(),
            weight: 4.0,
        }];
        let c = FairClocks::new(FairShare::new(1000, weights).unwrap());
        let t = c.assign(&[("big", NOW), ("big", NOW), ("big", NOW)], NOW);
        assert_eq!(t, vec![NOW, NOW + 250, NOW + 500]);
        // A job due earlier than now keeps its due time when the clock is behind.
        let c = FairClocks::new(FairShare::default());
        assert_eq!(c.assign(&[("x", NOW - 5000)], NOW), vec![NOW - 5000]);
        // A job due later keeps its due time.
        assert_eq!(c.assign(&[("x", NOW + 5000)], NOW), vec![NOW + 5000]);
        let off = FairClocks::new(FairShare::new(0, vec![]).unwrap());
        assert_eq!(off.assign(&[("a", NOW), ("a", NOW)], NOW), vec![NOW, NOW]);
        assert!(
            FairShare::new(
                1,
                vec![TenantWeight {
                    tenant: "z".into(),
                    weight: 0.0
                }]
            )
            .is_err()
        );
    }
}
