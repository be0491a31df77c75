//! Queue gauges (`kyu_queue_jobs`, `kyu_queue_oldest_job_age_seconds`) sampled from the
//! store every `metrics_sample_interval`, so a scrape never queries the database. One
//! [`Store::live_counts`] call per sample reads only live jobs through an index, and
//! samples space out when it is slow (a large backlog).
//!
//! Every queue ever seen gets all four live statuses (workflow jobs `waiting` for their
//! dependencies among them) on every sample: a count that drops to nothing reads 0
//! instead of keeping its last value.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kyu_actors::store::KeyState;
use kyu_actors::telemetry::{
    JOBS_HELD_BY_KEY, KEYS_FULL, QUEUE_JOBS, QUEUE_OLDEST_AGE, QUEUE_SAMPLE_SECONDS,
};
use kyu_actors::{JobStatus, LiveCount, Store};

const LIVE: [JobStatus; 4] = [
    JobStatus::Waiting,
    JobStatus::Queued,
    JobStatus::Scheduled,
    JobStatus::Running,
];

/// Samples `store` every `every` until the runtime stops.
pub fn spawn(store: Arc<dyn Store>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut gauges = QueueGauges::default();
        loop {
            let started = Instant::now();
            // A hung database must not pile samples up: one at a time, bounded.
            match tokio::time::timeout(every.max(Duration::from_secs(1)), store.live_counts()).await
            {
                Ok(Ok(counts)) => gauges.publish(&counts, Utc::now()),
                Ok(Err(e)) => tracing::warn!(error = %e, "queue metrics: sample failed"),
                Err(_) => tracing::warn!("queue metrics: sample timed out"),
            }
            match tokio::time::timeout(
                every.max(Duration::from_secs(1)),
                store.concurrency_keys(None, 1000),
            )
            .await
            {
                Ok(Ok(keys)) => publish_keys(&keys),
                Ok(Err(e)) => tracing::warn!(error = %e, "concurrency metrics: sample failed"),
                Err(_) => tracing::warn!("concurrency metrics: sample timed out"),
            }
            let took = started.elapsed();
            metrics::gauge!(QUEUE_SAMPLE_SECONDS).set(took.as_secs_f64());
            // A count reads every live job: beside a backlog of a million it takes
            // seconds of a database core. The next sample waits ten times as long as
            // this one took, if that is longer than `every`, so sampling never takes
            // more than a tenth of the database from the drain.
            tokio::time::sleep(every.max(took * 10).saturating_sub(took)).await;
        }
    })
}

/// Keys at their limit with jobs waiting, and the jobs those limits hold back.
fn publish_keys(keys: &[KeyState]) {
    let mut full = 0u64;
    let mut held = 0u64;
    for k in keys {
        if k.running >= u64::from(k.limit) && k.queued > 0 {
            full += 1;
        }
        held += k.held();
    }
    metrics::gauge!(KEYS_FULL).set(full as f64);
    metrics::gauge!(JOBS_HELD_BY_KEY).set(held as f64);
}

/// The queues published so far.
#[derive(Debug, Default)]
pub struct QueueGauges {
    seen: BTreeSet<String>,
}

impl QueueGauges {
    /// Sets the gauges of every known queue from one sample taken at `now`.
    pub fn publish(&mut self, counts: &[LiveCount], now: DateTime<Utc>) {
        let mut by_queue: BTreeMap<&str, Vec<&LiveCount>> = BTreeMap::new();
        for c in counts {
            by_queue.entry(c.queue.as_str()).or_default().push(c);
            if !self.seen.contains(&c.queue) {
                self.seen.insert(c.queue.clone());
            }
        }
        for queue in &self.seen {
            let groups = by_queue.get(queue.as_str()).map_or(&[][..], Vec::as_slice);
            for status in LIVE {
                let n = groups
                    .iter()
                    .find(|c| c.status == status)
                    .map_or(0, |c| c.count);
                metrics::gauge!(QUEUE_JOBS, "queue" => queue.clone(), "status" => status.as_str())
                    .set(n as f64);
            }
            let age = oldest_due(groups, now)
                .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
            metrics::gauge!(QUEUE_OLDEST_AGE, "queue" => queue.clone()).set(age);
        }
    }
}

/// The earliest due time among a queue's jobs that have not started: queued ones, and
/// scheduled ones already due but not yet moved to `queued`.
fn oldest_due(groups: &[&LiveCount], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    groups
        .iter()
        .filter_map(|c| match c.status {
            JobStatus::Queued => c.oldest_run_at,
            JobStatus::Scheduled => c.oldest_run_at.filter(|t| *t <= now),
            _ => None,
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    fn live(
        queue: &str,
        status: JobStatus,
        count: u64,
        ago_s: i64,
        now: DateTime<Utc>,
    ) -> LiveCount {
        LiveCount {
            queue: queue.into(),
            status,
            count,
            oldest_run_at: Some(now - chrono::Duration::seconds(ago_s)),
        }
    }

    /// (name, labels) → value of every gauge.
    fn gauges(rec: &DebuggingRecorder) -> BTreeMap<(String, Vec<String>), f64> {
        rec.snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(k, _, _, v)| match v {
                DebugValue::Gauge(g) => {
                    let key = k.key();
                    let labels = key
                        .labels()
                        .map(|l| format!("{}={}", l.key(), l.value()))
                        .collect();
                    Some(((key.name().to_owned(), labels), g.into_inner()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn counts_ages_and_drop_to_zero() {
        let rec = DebuggingRecorder::new();
        let now = Utc::now();
        let mut g = QueueGauges::default();
        metrics::with_local_recorder(&rec, || {
            g.publish(
                &[
                    live("a", JobStatus::Queued, 3, 40, now),
                    live("a", JobStatus::Scheduled, 2, 90, now),
                    live("a", JobStatus::Running, 1, 500, now),
                    live("b", JobStatus::Scheduled, 1, -60, now),
                ],
                now,
            );
        });
        let got = gauges(&rec);
        let jobs = |q: &str, s: &str| {
            got[&(
                QUEUE_JOBS.to_owned(),
                vec![format!("queue={q}"), format!("status={s}")],
            )]
        };
        let age = |q: &str| got[&(QUEUE_OLDEST_AGE.to_owned(), vec![format!("queue={q}")])];
        assert_eq!(jobs("a", "queued"), 3.0);
        assert_eq!(jobs("a", "scheduled"), 2.0);
        assert_eq!(jobs("a", "running"), 1.0);
        assert_eq!(jobs("b", "queued"), 0.0);
        assert_eq!(jobs("b", "scheduled"), 1.0);
        // A due scheduled job (90 s) is older than the oldest queued one; running jobs
        // do not count; a future job is not due.
        assert_eq!(age("a"), 90.0);
        assert_eq!(age("b"), 0.0);

        metrics::with_local_recorder(&rec, || g.publish(&[], now));
        let got = gauges(&rec);
        for s in ["waiting", "queued", "scheduled", "running"] {
            let k = (
                QUEUE_JOBS.to_owned(),
                vec!["queue=a".to_owned(), format!("status={s}")],
            );
            assert_eq!(got[&k], 0.0, "{s} drops to 0");
        }
        assert_eq!(
            got[&(QUEUE_OLDEST_AGE.to_owned(), vec!["queue=a".to_owned()])],
            0.0
        );
    }
}
