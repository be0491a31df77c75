//! Finished jobs (completed, failed, canceled) per queue, for the overview, without a
//! scan per request. Live jobs are counted exactly on every request through the
//! live-jobs index (`Store::live_counts`); finished jobs pile up until pruned, and
//! counting them is a scan of the table's (queue, status) index. So that count is
//! cached: a request older than [`MAX_AGE`] gets the cached answer at once and starts
//! one refresh in the background. Only the very first request waits for it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kyu_actors::{QueueCount, Store, StoreError};

/// How stale the finished counts may get.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(10);

/// Finished-job counts and when they were read.
#[derive(Clone)]
pub(crate) struct Finished {
    pub rows: Arc<Vec<QueueCount>>,
    pub at: DateTime<Utc>,
    read: Instant,
}

impl Finished {
    /// Rows read just now (not cached).
    pub fn fresh(rows: Vec<QueueCount>) -> Finished {
        Finished {
            rows: Arc::new(rows),
            at: Utc::now(),
            read: Instant::now(),
        }
    }
}

struct Inner {
    store: Arc<dyn Store>,
    cache: Mutex<Option<Finished>>,
    refreshing: std::sync::atomic::AtomicBool,
}

pub(crate) struct QueueCounts(Arc<Inner>);

impl QueueCounts {
    pub fn new(store: Arc<dyn Store>) -> QueueCounts {
        QueueCounts(Arc::new(Inner {
            store,
            cache: Mutex::new(None),
            refreshing: false.into(),
        }))
    }

    /// The finished counts, at most [`MAX_AGE`] old (or a little older while a refresh
    /// runs).
    pub async fn finished(&self) -> Result<Finished, StoreError> {
        let cached = self.0.cache.lock().ok().and_then(|c| c.clone());
        match cached {
            Some(c) if c.read.elapsed() < MAX_AGE => Ok(c),
            Some(c) => {
                use std::sync::atomic::Ordering;
                if !self.0.refreshing.swap(true, Ordering::AcqRel) {
                    let inner = self.0.clone();
                    tokio::spawn(async move {
                        if let Err(e) = inner.load().await {
                            tracing::warn!(error = %e, "web: could not refresh job counts");
                        }
                        inner.refreshing.store(false, Ordering::Release);
                    });
                }
                Ok(c)
            }
            None => self.0.load().await,
        }
    }
}

impl Inner {
    async fn load(&self) -> Result<Finished, StoreError> {
        let rows = self
            .store
            .counts()
            .await?
            .into_iter()
            .filter(|c| c.status.is_final())
            .collect();
        let f = Finished {
            rows: Arc::new(rows),
            at: Utc::now(),
            read: Instant::now(),
        };
        if let Ok(mut c) = self.cache.lock() {
            *c = Some(f.clone());
        }
        Ok(f)
    }
}
