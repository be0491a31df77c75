//! How many claimed-but-unstarted jobs a node keeps: its appetite.
//!
//! A slot that finishes a job and finds nothing claimed idles for a whole claim round
//! trip. For millisecond jobs that is most of the time; for minute-long jobs it is
//! nothing, while jobs held ahead would wait on this node although another node may
//! have a free slot. So, with `Auto`, the appetite is measured: while a claim is on its
//! way each slot finishes about `claim time / job time` jobs, so the node holds twice
//! that per slot (a flood of short jobs is claimed in large batches), and nothing ahead
//! when jobs run longer than half a claim round trip (long jobs are claimed one per free
//! slot). A job that has been running longer than the average counts as the average,
//! so a switch from short to long jobs stops the claiming ahead at once. Until both
//! times are known nothing is held ahead.

/// The operator's choice (`kyu_prefetch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefetch {
    /// Measured, as the module says, never more than `max` jobs ahead.
    Auto { max: u32 },
    /// Always `pool size × per_worker` jobs ahead, whatever jobs take.
    PerWorker(u32),
}

/// Measured by default. Jobs held ahead start only while a third of their lease is
/// left (the dispatcher renews them first otherwise), so a claim that returns late
/// cannot hand a job to a slot after the leader began rescuing it; and the dispatcher
/// claims nothing while its acker is behind (`UnwrittenAcks`), so a node never runs
/// far ahead of its acknowledgements. `PerWorker(n)` is the fixed alternative.
impl Default for Prefetch {
    fn default() -> Self {
        Prefetch::Auto { max: AUTO_MAX }
    }
}

/// The bound `kyu_prefetch = "auto"` gets when `kyu_prefetch_max` does not say.
pub const AUTO_MAX: u32 = 1000;

/// Weight of the newest sample in the moving averages.
const ALPHA: f64 = 0.1;

/// Moving averages of how long jobs run and claims take on this node.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Appetite {
    job_secs: Option<f64>,
    claim_secs: Option<f64>,
}

fn average(old: Option<f64>, sample: f64) -> Option<f64> {
    let sample = sample.max(0.0);
    Some(old.map_or(sample, |o| o + ALPHA * (sample - o)))
}

impl Appetite {
    pub fn job_ran(&mut self, secs: f64) {
        self.job_secs = average(self.job_secs, secs);
    }

    pub fn claim_took(&mut self, secs: f64) {
        self.claim_secs = average(self.claim_secs, secs);
    }

    /// Jobs to hold claimed but unstarted, given the pool's size, its free slots and
    /// how long its longest running job has run so far.
    pub fn target(&self, mode: Prefetch, pool: usize, free: usize, running_for: f64) -> usize {
        match mode {
            Prefetch::PerWorker(n) => pool * n.max(1) as usize,
            Prefetch::Auto { max } => {
                let ahead = match (self.job_secs, self.claim_secs) {
                    (Some(job), Some(claim)) => {
                        let job = job.max(running_for);
                        let per_slot = 2.0 * claim / job.max(1e-6);
                        // floor: a job ahead is only worth it if a slot would
                        // otherwise idle for a good part of a round trip.
                        ((pool as f64) * per_slot).floor().min(f64::from(max)) as usize
                    }
                    _ => 0,
                };
                free + ahead
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(job: f64, claim: f64) -> Appetite {
        let mut a = Appetite::default();
        a.job_ran(job);
        a.claim_took(claim);
        a
    }

    #[test]
    fn short_jobs_are_claimed_far_ahead_up_to_the_bound() {
        let auto = Prefetch::Auto { max: 1000 };
        // 50 µs jobs, 2 ms claims, 10 slots: 40 per slot per trip, twice that, ×10.
        assert_eq!(measured(50e-6, 2e-3).target(auto, 10, 0, 0.0), 800);
        assert_eq!(measured(1e-6, 2e-3).target(auto, 10, 3, 0.0), 1003);
        assert_eq!(measured(0.0, 2e-3).target(auto, 10, 0, 0.0), 1000);
    }

    #[test]
    fn long_jobs_get_one_per_free_slot_and_nothing_ahead() {
        let a = measured(10.0, 2e-3);
        let auto = Prefetch::Auto { max: 1000 };
        assert_eq!(a.target(auto, 10, 0, 0.0), 0);
        assert_eq!(a.target(auto, 10, 4, 0.0), 4);
        // Jobs as long as a claim: a few ahead, not a batch.
        assert_eq!(measured(2e-3, 2e-3).target(auto, 10, 0, 0.0), 20);
    }

    #[test]
    fn before_measuring_only_free_slots_and_fixed_mode_ignores_times() {
        let auto = Prefetch::Auto { max: 1000 };
        assert_eq!(Appetite::default().target(auto, 10, 10, 0.0), 10);
        assert_eq!(
            measured(10.0, 1.0).target(Prefetch::PerWorker(2), 10, 10, 0.0),
            20
        );
        assert_eq!(
            Appetite::default().target(Prefetch::PerWorker(0), 3, 0, 0.0),
            3
        );
    }

    #[test]
    fn averages_follow_a_change_of_workload() {
        // Short to long at once (one long job ends hoarding), long to short within a
        // few hundred jobs (milliseconds when they are short).
        let auto = Prefetch::Auto { max: 1000 };
        let mut a = measured(50e-6, 2e-3);
        a.job_ran(10.0);
        assert_eq!(a.target(auto, 10, 0, 0.0), 0);
        for _ in 0..300 {
            a.job_ran(50e-6);
        }
        assert!(a.target(auto, 10, 0, 0.0) > 700);
        // One job of them has been running for a second: stop claiming ahead.
        assert_eq!(a.target(auto, 10, 0, 1.0), 0);
    }
}
