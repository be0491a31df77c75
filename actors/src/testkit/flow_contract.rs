//! The flow-control part of the store contract ([`flow_contract_tests!`]): a
//! concurrency key never runs more than its limit, claimed by several store handles at
//! once; a key at its limit holds up neither other keys nor plain jobs; keys are
//! visited in rotation; every way out of `running` frees a slot. Run by every backend,
//! the memory store included.
//!
//! [`flow_contract_tests!`]: crate::flow_contract_tests

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::clock::Clock;
use crate::job::{Job, NewJob};
use crate::priority::Priority;
use crate::store::{Ack, ClaimParams, KeyState, Outcome, Store};
use crate::testkit::TestStore;

/// Stamps one `#[tokio::test]` per flow-control case (see `store_contract_tests!`).
#[macro_export]
macro_rules! flow_contract_tests {
    ($factory:path) => {
        $crate::flow_contract_tests!(@cases $factory;
            key_limit_bounds_running_jobs, key_at_limit_holds_up_nothing_else,
            keys_rotate_past_the_per_claim_bound, every_exit_from_running_frees_a_slot,
            concurrent_claimers_respect_key_limit, a_tenants_burst_does_not_hold_up_another,
            priority_beats_fair_share);
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(ts) = $factory().await else {
                    eprintln!("skipped: service not configured");
                    return;
                };
                $crate::testkit::flow_contract::$case(&ts).await;
                drop(ts);
            }
        )*
    };
}

const LEASE: Duration = Duration::from_secs(30);

fn params(owner: &str, limit: u32) -> ClaimParams {
    ClaimParams {
        owner: owner.to_owned(),
        limit,
        lease: LEASE,
        aged_before: Some(Duration::from_secs(60)),
        types: vec!["noop".into(), "echo".into()],
        queues: None,
    }
}

fn keyed(key: &str, limit: u32, i: usize) -> NewJob {
    NewJob::new("noop", json!({ "i": i })).concurrency(key, limit)
}

async fn claim(store: &Arc<dyn Store>, limit: u32) -> Vec<Job> {
    store.claim(&params("node-a", limit)).await.expect("claim")
}

fn by_key(jobs: &[Job]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for j in jobs {
        *m.entry(j.concurrency_key.clone().unwrap_or_default())
            .or_default() += 1;
    }
    m
}

async fn complete(store: &Arc<dyn Store>, jobs: &[Job]) {
    let acks: Vec<Ack> = jobs
        .iter()
        .map(|j| Ack {
            lease: j.lease().expect("running"),
            outcome: Outcome::Completed {
                result: json!(null),
            },
        })
        .collect();
    let done = store.ack(&acks).await.expect("ack");
    assert!(done.iter().all(|d| *d));
}

/// 5 jobs of a key with limit 2, 3 of a key with limit 1, 3 plain: one claim starts 2,
/// 1 and 3; nothing more until one finishes, then exactly one more of that key.
pub async fn key_limit_bounds_running_jobs(ts: &TestStore) {
    let mut jobs: Vec<NewJob> = (0..5).map(|i| keyed("user:1", 2, i)).collect();
    jobs.extend((0..3).map(|i| keyed("user:2", 1, i)));
    jobs.extend((0..3).map(|i| NewJob::new("noop", json!({ "plain": i }))));
    ts.store.enqueue_many(jobs).await.expect("enqueue");

    let first = claim(&ts.store, 100).await;
    let counts = by_key(&first);
    assert_eq!(counts.get("user:1"), Some(&2), "{counts:?}");
    assert_eq!(counts.get("user:2"), Some(&1), "{counts:?}");
    assert_eq!(counts.get(""), Some(&3), "{counts:?}");
    assert!(claim(&ts.store, 100).await.is_empty());
    let keys = ts.store.concurrency_keys(None, 10).await.expect("keys");
    let state = |key: &str, limit: u32, running: u64, queued: u64| KeyState {
        key: key.into(),
        limit,
        running,
        queued,
    };
    assert_eq!(
        keys,
        vec![state("user:1", 2, 2, 3), state("user:2", 1, 1, 2)]
    );
    let after = ts
        .store
        .concurrency_keys(Some("user:1".into()), 10)
        .await
        .expect("keys");
    assert_eq!(after, vec![state("user:2", 1, 1, 2)]);

    let one = first
        .iter()
        .find(|j| j.concurrency_key.as_deref() == Some("user:1"))
        .cloned()
        .expect("a user:1 job");
    complete(&ts.store, std::slice::from_ref(&one)).await;
    let next = claim(&ts.store, 100).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].concurrency_key.as_deref(), Some("user:1"));
    assert!(claim(&ts.store, 100).await.is_empty());
}

/// A key at its limit with a backlog at the highest priority: a claim of 10 still
/// takes other keys' and plain jobs, of lower priority, beside it.
pub async fn key_at_limit_holds_up_nothing_else(ts: &TestStore) {
    let hot: Vec<NewJob> = (0..200)
        .map(|i| keyed("hot", 1, i).priority(Priority::new(10).expect("priority")))
        .collect();
    ts.store.enqueue_many(hot).await.expect("enqueue");
    let mut others: Vec<NewJob> = (0..4).map(|i| keyed(&format!("cold:{i}"), 1, i)).collect();
    others.extend((0..5).map(|i| NewJob::new("noop", json!({ "plain": i }))));
    ts.store.enqueue_many(others).await.expect("enqueue");

    let got = claim(&ts.store, 10).await;
    let counts = by_key(&got);
    assert_eq!(got.len(), 10, "{counts:?}");
    assert_eq!(counts.get("hot"), Some(&1), "{counts:?}");
    assert_eq!(counts.get(""), Some(&5), "{counts:?}");
    assert_eq!(counts.len(), 6, "four cold keys, hot and plain: {counts:?}");
    // The hot key stays at one however often it is asked.
    for _ in 0..3 {
        assert!(
            claim(&ts.store, 10)
                .await
                .iter()
                .all(|j| j.concurrency_key.as_deref() != Some("hot"))
        );
    }
}

/// More keys than one claim looks at: successive claims reach them all, each once.
pub async fn keys_rotate_past_the_per_claim_bound(ts: &TestStore) {
    let jobs: Vec<NewJob> = (0..150).map(|i| keyed(&format!("k{i:03}"), 1, i)).collect();
    ts.store.enqueue_many(jobs).await.expect("enqueue");
    let mut seen = HashMap::new();
    for _ in 0..10 {
        for j in claim(&ts.store, 100).await {
            *seen
                .entry(j.concurrency_key.clone().expect("keyed"))
                .or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len(), 150);
    assert!(seen.values().all(|n| *n == 1));
}

/// A slot comes back when its job completes, fails for a retry, is released, or has
/// its lease rescued — and a retried job is claimed under its key again.
pub async fn every_exit_from_running_frees_a_slot(ts: &TestStore) {
    let jobs: Vec<NewJob> = (0..4)
        .map(|i| keyed("solo", 1, i).max_attempts(3))
        .collect();
    ts.store.enqueue_many(jobs).await.expect("enqueue");

    let a = claim(&ts.store, 10).await;
    assert_eq!(a.len(), 1);
    let retry_at = ts.clock.now();
    let done = ts
        .store
        .ack(&[Ack {
            lease: a[0].lease().expect("running"),
            outcome: Outcome::Retry {
                delay: Duration::ZERO,
                error: crate::error::AttemptError {
                    attempt: 1,
                    kind: crate::error::ErrorKind::Retryable,
                    message: "again".into(),
                    at: retry_at,
                },
            },
        }])
        .await
        .expect("ack");
    assert_eq!(done, vec![true]);

    let b = claim(&ts.store, 10).await;
    assert_eq!(b.len(), 1, "the retry freed the slot");
    let done = ts
        .store
        .ack(&[Ack {
            lease: b[0].lease().expect("running"),
            outcome: Outcome::Released { uncount: false },
        }])
        .await
        .expect("ack");
    assert_eq!(done, vec![true]);

    let c = claim(&ts.store, 10).await;
    assert_eq!(c.len(), 1, "the release freed the slot");
    assert!(claim(&ts.store, 10).await.is_empty());
    ts.clock.advance(LEASE + Duration::from_secs(1));
    let rescued = ts.store.rescue_expired(100).await.expect("rescue");
    assert!(!rescued.is_empty());
    let d = claim(&ts.store, 10).await;
    assert_eq!(d.len(), 1, "the rescue freed the slot");
    assert!(claim(&ts.store, 10).await.is_empty());
}

/// Two store handles (separate pools) claim one key with limit 3 concurrently, over
/// and over, completing what they got: never more than 3 run at once. Claimers serve
/// different types, so they never want the same row: only the key's count keeps them
/// apart.
pub async fn concurrent_claimers_respect_key_limit(ts: &TestStore) {
    let jobs: Vec<NewJob> = (0..60)
        .map(|i| {
            let t = if i % 2 == 0 { "noop" } else { "echo" };
            NewJob::new(t, json!({ "i": i })).concurrency("shared", 3)
        })
        .collect();
    ts.store.enqueue_many(jobs).await.expect("enqueue");
    let running = Arc::new(tokio::sync::Mutex::new(Vec::<Job>::new()));
    let mut tasks = Vec::new();
    for (n, store) in [ts.store.clone(), ts.other.clone()]
        .into_iter()
        .cycle()
        .take(6)
        .enumerate()
    {
        let running = running.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("node-{n}");
            let mut p = params(&owner, 2);
            p.types = vec![if n % 2 == 0 { "noop" } else { "echo" }.to_owned()];
            let mut finished = 0;
            for _ in 0..300 {
                let got = store.claim(&p).await.expect("claim");
                {
                    let mut r = running.lock().await;
                    r.extend(got.iter().cloned());
                    assert!(r.len() <= 3, "{} running with limit 3", r.len());
                }
                tokio::task::yield_now().await;
                if got.is_empty() {
                    continue;
                }
                {
                    let mut r = running.lock().await;
                    r.retain(|j| !got.iter().any(|g| g.id == j.id));
                }
                complete(&store, &got).await;
                finished += got.len();
            }
            finished
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("claimer");
    }
    assert_eq!(total, 60);
}

fn owned(owner: &str, i: usize) -> NewJob {
    NewJob::new("noop", json!({ "i": i })).owner(owner)
}

/// Tenant A's 3,000 jobs, then tenant B's 5, all at the same instant and priority: the
/// first claim of 20 takes all of B's, between A's first ones; A's own order holds.
pub async fn a_tenants_burst_does_not_hold_up_another(ts: &TestStore) {
    let burst: Vec<NewJob> = (0..3000).map(|i| owned("a", i)).collect();
    let a_ids: Vec<_> = burst.iter().map(|j| j.id).collect();
    ts.store.enqueue_many(burst).await.expect("enqueue");
    let b: Vec<NewJob> = (0..5).map(|i| owned("b", i)).collect();
    ts.store.enqueue_many(b).await.expect("enqueue");

    let got = claim(&ts.store, 20).await;
    let of = |o: &str| got.iter().filter(|j| j.owner.as_deref() == Some(o)).count();
    assert_eq!(of("b"), 5, "all of b's jobs in the first claim");
    assert_eq!(of("a"), 15);
    let a_got: Vec<_> = got
        .iter()
        .filter(|j| j.owner.as_deref() == Some("a"))
        .map(|j| j.id)
        .collect();
    let mut sorted = a_got.clone();
    sorted.sort_by_key(|id| a_ids.iter().position(|a| a == id));
    assert_eq!(a_got.len(), 15);
    assert_eq!(
        sorted,
        a_ids[..15].to_vec(),
        "a's first 15, in its own order"
    );
}

/// Fair share orders jobs of one priority only: a later tenant's low-priority jobs
/// still wait for another's higher-priority burst.
pub async fn priority_beats_fair_share(ts: &TestStore) {
    let high = Priority::new(8).expect("priority");
    let low = Priority::new(2).expect("priority");
    let burst: Vec<NewJob> = (0..500).map(|i| owned("a", i).priority(high)).collect();
    ts.store.enqueue_many(burst).await.expect("enqueue");
    ts.store
        .enqueue_many((0..5).map(|i| owned("b", i).priority(low)).collect())
        .await
        .expect("enqueue");
    let got = claim(&ts.store, 100).await;
    assert!(got.iter().all(|j| j.owner.as_deref() == Some("a")));
}
