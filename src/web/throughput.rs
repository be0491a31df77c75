//! Throughput and failure rate over the last minutes, for the overview: a sampler reads
//! this process's engine counters (`Engine::stats`: jobs completed, attempts retried,
//! jobs failed) every [`EVERY`] and keeps [`KEEP`] of history; a window's rate is the
//! difference between now and the oldest sample inside it. It costs the store nothing.
//! It counts what *this* process's workers finished: with several `kyu worker` nodes, the
//! cluster's rates are in Prometheus (`kyu_jobs_finished_total`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use kyu_actors::{Engine, EngineStats};

const EVERY: Duration = Duration::from_secs(5);
const KEEP: Duration = Duration::from_secs(16 * 60);
/// The windows the overview shows, in minutes.
const WINDOWS: [u64; 3] = [1, 5, 15];

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    completed: u64,
    retried: u64,
    failed: u64,
}

impl Sample {
    fn of(s: &EngineStats, at: Instant) -> Sample {
        Sample {
            at,
            completed: s.completed,
            retried: s.retried,
            failed: s.failed,
        }
    }
}

/// One window's rates.
pub(crate) struct Rate {
    /// "1 min", or less while the process is younger than the window.
    pub label: String,
    /// Jobs completed per minute.
    pub per_minute: String,
    /// Failed attempts (retried or failed for good) over all finished attempts.
    pub failure: String,
    pub completed: u64,
    pub failed_attempts: u64,
    /// The process is younger than the window: it covers less.
    partial: bool,
}

pub(crate) struct Throughput {
    engine: Option<Weak<Engine>>,
    samples: Arc<Mutex<VecDeque<Sample>>>,
    task: Option<tokio::task::AbortHandle>,
}

impl Throughput {
    /// Starts sampling `engine` (none in an API-only process).
    pub fn start(engine: Option<&Arc<Engine>>) -> Throughput {
        let samples: Arc<Mutex<VecDeque<Sample>>> = Arc::default();
        let task = engine.map(|e| {
            let engine = Arc::downgrade(e);
            let samples = Arc::downgrade(&samples);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let (Some(engine), Some(samples)) = (engine.upgrade(), samples.upgrade())
                    else {
                        break;
                    };
                    let s = Sample::of(&engine.stats().await, Instant::now());
                    if let Ok(mut q) = samples.lock() {
                        q.push_back(s);
                        while q.front().is_some_and(|f| s.at.duration_since(f.at) > KEEP) {
                            q.pop_front();
                        }
                    }
                }
            })
            .abort_handle()
        });
        Throughput {
            engine: engine.map(Arc::downgrade),
            samples,
            task,
        }
    }

    /// The rates over each window; `None` without an engine in this process.
    pub async fn rates(&self) -> Option<Vec<Rate>> {
        let engine = self.engine.as_ref()?.upgrade()?;
        let now = Sample::of(&engine.stats().await, Instant::now());
        let samples: Vec<Sample> = self.samples.lock().ok()?.iter().copied().collect();
        let mut rates = Vec::new();
        for m in WINDOWS {
            let r = rate(&samples, now, Duration::from_secs(m * 60));
            let partial = r.partial;
            rates.push(r);
            // A longer window would show the same span again.
            if partial {
                break;
            }
        }
        Some(rates)
    }
}

impl Drop for Throughput {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// The rate between the oldest sample within `window` of `now` and `now`.
fn rate(samples: &[Sample], now: Sample, window: Duration) -> Rate {
    let from = samples
        .iter()
        .find(|s| now.at.duration_since(s.at) <= window)
        .copied()
        .unwrap_or(now);
    let span = now.at.duration_since(from.at);
    let completed = now.completed.saturating_sub(from.completed);
    let failed_attempts = (now.failed + now.retried).saturating_sub(from.failed + from.retried);
    let attempts = completed + failed_attempts;
    let partial = span + EVERY < window;
    // A full window is labelled and divided by its nominal length (the samples cover
    // it to within one sampling interval), so a "1 min" row's per-minute rate is its
    // completed count; a partial window by the span it really covers.
    let minutes = if partial { span } else { window }.as_secs_f64() / 60.0;
    let label = if partial {
        format!("{} s (since start)", span.as_secs())
    } else {
        format!("{} min", window.as_secs() / 60)
    };
    Rate {
        label,
        per_minute: if minutes > 0.0 {
            format!("{:.1}", completed as f64 / minutes)
        } else {
            "–".into()
        },
        failure: if attempts > 0 {
            format!("{:.1} %", 100.0 * failed_attempts as f64 / attempts as f64)
        } else {
            "–".into()
        },
        completed,
        failed_attempts,
        partial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_over_a_window() {
        let t0 = Instant::now();
        let s = |secs: u64, completed, retried, failed| Sample {
            at: t0 + Duration::from_secs(secs),
            completed,
            retried,
            failed,
        };
        let samples = [s(0, 0, 0, 0), s(60, 50, 5, 0), s(120, 110, 5, 5)];
        let now = s(120, 110, 5, 5);
        let r = rate(&samples, now, Duration::from_secs(60));
        assert_eq!(r.completed, 60);
        assert_eq!(r.failed_attempts, 5);
        assert_eq!(r.per_minute, "60.0");
        assert_eq!(r.failure, "7.7 %");
        assert_eq!(r.label, "1 min");
        let r = rate(&samples, now, Duration::from_secs(300));
        assert_eq!(r.completed, 110);
        assert_eq!(r.label, "120 s (since start)");
        // 55 s of samples (one interval short) is a full minute: 12 completed is 12.0
        // per minute, not 13.1.
        let late = [s(65, 50, 5, 0), s(120, 62, 5, 0)];
        let r = rate(&late, s(120, 62, 5, 0), Duration::from_secs(60));
        assert_eq!((r.label.as_str(), r.completed), ("1 min", 12));
        assert_eq!(r.per_minute, "12.0");
        let r = rate(&[], now, Duration::from_secs(60));
        assert_eq!((r.per_minute.as_str(), r.failure.as_str()), ("–", "–"));
    }
}
