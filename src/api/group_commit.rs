//! Group commit for single creates. Each `POST /jobs` must be committed before it is
//! answered, and a database commits one transaction at a time per writer (SQLite) or pays
//! a round trip and a WAL flush for each (PostgreSQL, MariaDB). Under concurrent clients
//! that makes creates queue behind each other's commits. Here concurrent creates share
//! one transaction instead: a single task takes whatever creates are waiting (up to
//! [`MAX_GROUP`]), commits them with `enqueue_many`, and answers each only after that
//! commit. One create alone is committed at once; nothing waits for company.
//!
//! After each commit that made a job due now, other nodes are told through the wake-up
//! bus ([`crate::wake::Publisher`]): one message per group, not per job.
//!
//! A group fails as a whole only for reasons that hit every member (the database is
//! unreachable); any other failure is retried one job at a time so one job cannot fail
//! another's request.

use std::sync::Arc;

use kyu_actors::{Engine, Enqueued, NewJob, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

/// Most creates in one transaction.
pub const MAX_GROUP: usize = 512;
/// Creates waiting for the committer at most; more wait for room (back-pressure).
const QUEUE: usize = 8192;

type Reply = oneshot::Sender<Result<Enqueued, StoreError>>;

/// The handle requests commit through.
#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::Sender<(NewJob, Reply)>,
}

impl GroupCommit {
    /// Starts the committer task (on the current runtime).
    pub fn start(
        store: Arc<dyn Store>,
        engine: Option<Arc<Engine>>,
        wake: crate::wake::Publisher,
    ) -> GroupCommit {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(
            rx,
            Target {
                store,
                engine,
                wake,
            },
        ));
        GroupCommit { tx }
    }

    /// Commits `job`, sharing the transaction with creates that arrived meanwhile.
    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued, StoreError> {
        let gone = || StoreError::Unavailable("the committer stopped".into());
        let (reply, answer) = oneshot::channel();
        self.tx.send((job, reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Where jobs go: through the engine (which wakes its dispatcher) or the store alone;
/// then a word to the other nodes.
struct Target {
    store: Arc<dyn Store>,
    engine: Option<Arc<Engine>>,
    wake: crate::wake::Publisher,
}

impl Target {
    async fn commit(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError> {
        let due = crate::wake::any_due(&jobs);
        let done = match &self.engine {
            Some(e) => e.enqueue_many(jobs).await?,
            None => self.store.enqueue_many(jobs).await?,
        };
        self.wake.after_enqueue(due, &done);
        Ok(done)
    }
}

async fn run(mut rx: mpsc::Receiver<(NewJob, Reply)>, target: Target) {
    let mut batch = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut batch, MAX_GROUP).await > 0 {
        let (jobs, replies): (Vec<NewJob>, Vec<Reply>) = batch.drain(..).unzip();
        if jobs.len() == 1 {
            commit_each(&target, jobs, replies).await;
            continue;
        }
        // A member whose client gave up still commits: its job was accepted for commit.
        match target.commit(jobs.clone()).await {
            Ok(done) if done.len() == replies.len() => {
                for (reply, e) in replies.into_iter().zip(done) {
                    let _ = reply.send(Ok(e));
                }
            }
            Err(StoreError::Unavailable(m)) => {
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(m.clone())));
                }
            }
            // Out of space: one at a time would fail the same way, each after a write.
            Err(StoreError::Full(m)) => {
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Full(m.clone())));
                }
            }
            // Anything else: each job on its own, so each gets its own answer.
            _ => commit_each(&target, jobs, replies).await,
        }
    }
}

async fn commit_each(target: &Target, jobs: Vec<NewJob>, replies: Vec<Reply>) {
    for (job, reply) in jobs.into_iter().zip(replies) {
        let one = target.commit(vec![job]).await.and_then(|mut v| {
            v.pop()
                .ok_or_else(|| StoreError::Backend("enqueue returned nothing".into()))
        });
        let _ = reply.send(one);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use kyu_actors::testkit::{ManualClock, MemoryStore};
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn concurrent_creates_each_get_their_own_committed_job() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(Arc::new(ManualClock::fixed())));
        let gc = GroupCommit::start(store.clone(), None, crate::wake::Publisher::none());
        let mut tasks = Vec::new();
        for i in 0..300 {
            let gc = gc.clone();
            tasks.push(tokio::spawn(async move {
                let mut job = NewJob::new("noop", json!({ "i": i }));
                // Pairs share a unique key: one of each pair is the other's duplicate.
                if i < 20 {
                    job = job.unique_key(format!("k{}", i / 2));
                }
                gc.enqueue(job).await
            }));
        }
        let mut ids = HashSet::new();
        let mut duplicates = 0;
        for t in tasks {
            let e = t.await.expect("join").expect("committed");
            if e.duplicate {
                duplicates += 1;
            } else {
                assert!(ids.insert(e.id), "two creates got one id");
            }
        }
        assert_eq!(duplicates, 10);
        assert_eq!(ids.len(), 290);
        for id in ids {
            assert!(
                store.get(id).await.expect("get").is_some(),
                "{id} not stored"
            );
        }
    }
}
