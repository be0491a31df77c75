//! The store contract: one suite, run against every backend through
//! [`store_contract_tests!`](crate::store_contract_tests). Each case takes a fresh,
//! empty store driven by a [`ManualClock`], so time-dependent rules (due jobs, lease
//! expiry, pruning) are tested without sleeping.
//!
//! Cases panic on failure (they are test bodies). Each is a pub async fn so a backend
//! can also call one directly.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::clock::Clock;
use crate::error::{AttemptError, ErrorKind};
use crate::job::NewJob;
use crate::priority::Priority;
use crate::status::JobStatus;
use crate::store::{
    Ack, CancelOutcome, ClaimParams, JobLease, ListJobs, NodeInfo, Outcome, Store, StoreError,
};
use crate::testkit::ManualClock;

/// A fresh store for one contract case.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    /// A second handle on the same data (its own pool), for concurrency cases.
    pub other: Arc<dyn Store>,
    /// The clock both handles read.
    pub clock: Arc<ManualClock>,
    /// Dropped at the end of the case: removes the database.
    pub guard: Box<dyn Send + Sync>,
}

/// Stamps one `#[tokio::test]` per contract case. `$factory` is an
/// `async fn() -> Option<TestStore>`; `None` skips the case (service not configured).
#[macro_export]
macro_rules! store_contract_tests {
    ($factory:path) => {
        $crate::store_contract_tests!(@cases $factory;
            enqueue_and_get, enqueue_validates, delayed_job_waits_for_run_at, claim_order,
            claim_limit_and_lease, aged_jobs_are_claimed_first, claim_takes_only_named_types_and_queues,
            aged_backlog_across_types_then_fresh, unique_key_dedupes_while_live, unique_key_within_batch,
            ack_completed, ack_retry_then_claim_again, ack_failed_and_canceled,
            ack_is_fenced, error_history_keeps_every_attempt, released_jobs_queue_again,
            cancel_rules, retry_rules, lease_extension_and_rescue,
            rescue_never_overwrites_a_completed_job, late_ack_after_rescue_is_fenced,
            progress_is_fenced, list_filters_and_pagination, pause_and_resume,
            counts_by_queue_and_status, owner_counts_are_the_owners_only, live_counts_by_queue_and_status, prune_finished, next_run_at,
            concurrent_claimers_claim_each_job_once, unique_key_race,
            nodes_register_heartbeat_and_die, leadership_is_exclusive_expires_and_moves,
            only_the_holder_renews_or_releases, leadership_race_has_one_winner,
            cron_tick_record_is_monotonic, dead_owner_rescue_is_fenced);
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(ts) = $factory().await else {
                    eprintln!("skipped: service not configured");
                    return;
                };
                $crate::testkit::store_contract::$case(&ts).await;
                drop(ts);
            }
        )*
    };
}

const OWNER: &str = "node-a";
const LEASE: Duration = Duration::from_secs(30);

fn claim_params(owner: &str, limit: u32) -> ClaimParams {
    ClaimParams {
        owner: owner.to_owned(),
        limit,
        lease: LEASE,
        aged_before: None,
        types: CONTRACT_TYPES.iter().map(|t| t.to_string()).collect(),
        queues: None,
    }
}

/// Every job type the contract's cases enqueue.
const CONTRACT_TYPES: &[&str] = &["noop", "echo", "even", "odd", "remote"];

async fn claim(ts: &TestStore, limit: u32) -> Vec<crate::job::Job> {
    ts.store
        .claim(&claim_params(OWNER, limit))
        .await
        .expect("claim")
}

async fn claim_one(ts: &TestStore) -> crate::job::Job {
    let mut jobs = claim(ts, 1).await;
    assert_eq!(jobs.len(), 1, "expected one claimable job");
    jobs.remove(0)
}

async fn enqueue(ts: &TestStore, job: NewJob) -> Uuid {
    let e = ts.store.enqueue(job).await.expect("enqueue");
    assert!(!e.duplicate);
    e.id
}

async fn get(ts: &TestStore, id: Uuid) -> crate::job::Job {
    ts.store.get(id).await.expect("get").expect("job exists")
}

fn err(ts: &TestStore, attempt: u32, kind: ErrorKind, msg: &str) -> AttemptError {
    AttemptError {
        attempt,
        kind,
        message: msg.to_owned(),
        at: ts.clock.now(),
    }
}

async fn ack1(ts: &TestStore, lease: JobLease, outcome: Outcome) -> bool {
    let r = ts.store.ack(&[Ack { lease, outcome }]).await.expect("ack");
    assert_eq!(r.len(), 1);
    r[0]
}

fn noop(i: u64) -> NewJob {
    NewJob::new("noop", json!({ "i": i }))
}

pub async fn enqueue_and_get(ts: &TestStore) {
    let new = NewJob::new(
        "summarize",
        json!({"url": "https://example.com", "n": [1, 2]}),
    )
    .queue("ai")
    .provider("groq")
    .priority(Priority::new(9).unwrap())
    .max_attempts(7)
    .timeout(Duration::from_millis(1500))
    .unique_key("article-1")
    .owner("alice");
    let id = enqueue(ts, new.clone()).await;
    assert_eq!(id, new.id, "the id chosen before commit is the stored one");
    let job = get(ts, id).await;
    assert_eq!(job.queue, "ai");
    assert_eq!(job.job_type, "summarize");
    assert_eq!(job.provider.as_deref(), Some("groq"));
    assert_eq!(job.priority.get(), 9);
    assert_eq!(job.payload, new.payload);
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.progress, 0);
    assert_eq!(job.result, None);
    assert!(job.errors.is_empty());
    assert_eq!(job.attempts, 0);
    assert_eq!(job.max_attempts, 7);
    assert_eq!(job.timeout, Duration::from_millis(1500));
    assert_eq!(job.unique_key.as_deref(), Some("article-1"));
    assert_eq!(job.owner.as_deref(), Some("alice"));
    assert_eq!(job.lease_owner, None);
    assert_eq!(job.lease_expires_at, None);
    assert!(!job.cancel_requested);
    assert_eq!(job.created_at, ts.clock.now());
    assert_eq!(job.run_at, ts.clock.now());
    assert_eq!(job.started_at, None);
    assert_eq!(job.finished_at, None);
    assert!(ts.store.get(Uuid::now_v7()).await.expect("get").is_none());
}

pub async fn enqueue_validates(ts: &TestStore) {
    let good = noop(1);
    let bad = noop(2).queue("");
    let e = ts.store.enqueue_many(vec![good.clone(), bad]).await;
    assert!(
        matches!(e, Err(StoreError::Invalid { field: "queue", .. })),
        "{e:?}"
    );
    assert!(
        ts.store.get(good.id).await.expect("get").is_none(),
        "a refused batch stores nothing"
    );
}

pub async fn delayed_job_waits_for_run_at(ts: &TestStore) {
    let id = enqueue(ts, noop(1).delay(Duration::from_secs(60))).await;
    let job = get(ts, id).await;
    assert_eq!(job.status, JobStatus::Scheduled);
    assert_eq!(job.run_at, ts.clock.now() + chrono::Duration::seconds(60));
    assert!(claim(ts, 10).await.is_empty(), "not due yet");
    ts.clock.advance(Duration::from_secs(59));
    assert!(claim(ts, 10).await.is_empty(), "still not due");
    ts.clock.advance(Duration::from_secs(1));
    let jobs = claim(ts, 10).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].id, id);
    assert_eq!(jobs[0].status, JobStatus::Running);

    // run_at in the past is due at once, and queued.
    let past = ts.clock.now() - chrono::Duration::seconds(5);
    let id2 = enqueue(ts, noop(2).run_at(past)).await;
    assert_eq!(get(ts, id2).await.status, JobStatus::Queued);
}

pub async fn claim_order(ts: &TestStore) {
    // (priority, run_at offset s): expect priority desc, then run_at asc, then age.
    let now = ts.clock.now();
    let specs: [(i64, i64); 7] = [
        (5, 0),
        (9, -10),
        (5, -20),
        (1, -100),
        (9, -10),
        (10, 0),
        (5, -20),
    ];
    let mut ids = Vec::new();
    for (i, (p, off)) in specs.iter().enumerate() {
        let j = noop(i as u64)
            .priority(Priority::new(*p).unwrap())
            .run_at(now + chrono::Duration::seconds(*off));
        ids.push(enqueue(ts, j).await);
    }
    let mut order = Vec::new();
    for _ in 0..specs.len() {
        order.push(claim_one(ts).await.id);
    }
    let expect = [ids[5], ids[1], ids[4], ids[2], ids[6], ids[0], ids[3]];
    assert_eq!(order, expect);
    assert!(claim(ts, 1).await.is_empty());

    // A batch comes back in the same order.
    let mut ids = Vec::new();
    for (i, p) in [3, 8, 5].iter().enumerate() {
        ids.push(enqueue(ts, noop(i as u64).priority(Priority::new(*p).unwrap())).await);
    }
    let batch: Vec<Uuid> = claim(ts, 10).await.into_iter().map(|j| j.id).collect();
    assert_eq!(batch, vec![ids[1], ids[2], ids[0]]);
}

/// The starvation bound: a low-priority job due long enough goes before fresher
/// high-priority ones.
pub async fn aged_jobs_are_claimed_first(ts: &TestStore) {
    let now = ts.clock.now();
    let old_low = enqueue(
        ts,
        noop(1)
            .priority(Priority::MIN)
            .run_at(now - chrono::Duration::seconds(90)),
    )
    .await;
    let older_low = enqueue(
        ts,
        noop(2)
            .priority(Priority::LOW)
            .run_at(now - chrono::Duration::seconds(120)),
    )
    .await;
    let fresh_low = enqueue(ts, noop(3).priority(Priority::MIN)).await;
    let mut high = Vec::new();
    for i in 0..3 {
        high.push(enqueue(ts, noop(10 + i).priority(Priority::CRITICAL)).await);
    }
    let aged = |limit| ClaimParams {
        owner: OWNER.into(),
        limit,
        lease: LEASE,
        aged_before: Some(Duration::from_secs(60)),
        ..claim_params(OWNER, limit)
    };
    let got: Vec<Uuid> = ts
        .store
        .claim(&aged(3))
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(
        got,
        vec![older_low, old_low, high[0]],
        "aged first, oldest first, then priority"
    );
    let got: Vec<Uuid> = ts
        .store
        .claim(&aged(10))
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(got, vec![high[1], high[2], fresh_low]);
}

/// A claim names the types it serves (a local pool its handlers', a remote worker its
/// own) and optionally queues: nothing else is taken, whatever its priority or age.
pub async fn claim_takes_only_named_types_and_queues(ts: &TestStore) {
    let old = ts.clock.now() - chrono::Duration::seconds(600);
    let mut noops = Vec::new();
    for i in 0..3 {
        noops.push(enqueue(ts, noop(i).queue("a")).await);
    }
    let echo_b = enqueue(ts, NewJob::new("echo", json!({})).queue("b")).await;
    let echo_a = enqueue(ts, NewJob::new("echo", json!({})).queue("a")).await;
    // Older and more urgent than everything else, but nobody here serves it.
    let remote = enqueue(
        ts,
        NewJob::new("remote", json!({}))
            .priority(Priority::CRITICAL)
            .run_at(old),
    )
    .await;
    let params = |types: &[&str], queues: Option<&[&str]>, limit| ClaimParams {
        types: types.iter().map(|t| t.to_string()).collect(),
        queues: queues.map(|q| q.iter().map(|q| q.to_string()).collect()),
        aged_before: Some(Duration::from_secs(60)),
        ..claim_params(OWNER, limit)
    };
    let ids = |jobs: Vec<crate::job::Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    let got = ids(ts.store.claim(&params(&["noop"], None, 10)).await.unwrap());
    assert_eq!(got, noops, "only noop jobs, oldest first");
    let got = ids(ts
        .store
        .claim(&params(&["echo", "remote"], Some(&["b"]), 10))
        .await
        .unwrap());
    assert_eq!(got, vec![echo_b], "only queue b");
    let got = ids(ts.store.claim(&params(&["echo"], None, 10)).await.unwrap());
    assert_eq!(got, vec![echo_a]);
    let got = ts.store.claim(&params(&[], None, 10)).await.unwrap();
    assert!(got.is_empty(), "no types: nothing");
    let got = ts
        .store
        .claim(&params(&["remote"], None, 10))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, remote);
    assert_eq!(got[0].lease_owner.as_deref(), Some(OWNER));
    assert_eq!(got[0].attempts, 1, "the attempt is counted at claim");
}

/// Aged jobs of several types come first, oldest first across the types, and fill the
/// claim before any fresh job; then the fresh ones by priority across the types.
pub async fn aged_backlog_across_types_then_fresh(ts: &TestStore) {
    let now = ts.clock.now();
    let ago = |s: i64| now - chrono::Duration::seconds(s);
    let mut aged = Vec::new();
    for (i, (t, s)) in [
        ("noop", 300),
        ("echo", 290),
        ("noop", 280),
        ("echo", 270),
        ("noop", 260),
    ]
    .iter()
    .enumerate()
    {
        let j = NewJob::new(*t, json!({ "i": i }))
            .priority(Priority::MIN)
            .run_at(ago(*s));
        aged.push(enqueue(ts, j).await);
    }
    let fresh_echo = enqueue(
        ts,
        NewJob::new("echo", json!({})).priority(Priority::CRITICAL),
    )
    .await;
    let fresh_noop = enqueue(ts, noop(9).priority(Priority::HIGH)).await;
    let params = |limit| ClaimParams {
        aged_before: Some(Duration::from_secs(60)),
        ..claim_params(OWNER, limit)
    };
    let ids = |jobs: Vec<crate::job::Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    let got = ids(ts.store.claim(&params(3)).await.unwrap());
    assert_eq!(got, aged[..3].to_vec(), "aged, oldest first across types");
    let got = ids(ts.store.claim(&params(10)).await.unwrap());
    let mut expect = aged[3..].to_vec();
    expect.extend([fresh_echo, fresh_noop]);
    assert_eq!(got, expect, "the rest of the aged, then fresh by priority");
}

pub async fn claim_limit_and_lease(ts: &TestStore) {
    let jobs: Vec<NewJob> = (0..5).map(noop).collect();
    ts.store.enqueue_many(jobs).await.expect("enqueue");
    let claimed = claim(ts, 3).await;
    assert_eq!(claimed.len(), 3);
    for j in &claimed {
        assert_eq!(j.status, JobStatus::Running);
        assert_eq!(j.attempts, 1, "the attempt is counted at claim");
        assert_eq!(j.lease_owner.as_deref(), Some(OWNER));
        assert_eq!(
            j.lease_expires_at,
            Some(ts.clock.now() + chrono::Duration::seconds(30))
        );
        assert_eq!(j.started_at, Some(ts.clock.now()));
        let stored = get(ts, j.id).await;
        assert_eq!(&stored, j, "the claim returns the stored row");
    }
    assert_eq!(claim(ts, 10).await.len(), 2);
    assert!(claim(ts, 10).await.is_empty());
}

pub async fn unique_key_dedupes_while_live(ts: &TestStore) {
    let first = ts
        .store
        .enqueue(noop(1).unique_key("k"))
        .await
        .expect("enqueue");
    assert!(!first.duplicate);
    let again = ts
        .store
        .enqueue(noop(2).unique_key("k"))
        .await
        .expect("enqueue");
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);
    // Other keys and no key are independent.
    assert!(
        !ts.store
            .enqueue(noop(3).unique_key("other"))
            .await
            .unwrap()
            .duplicate
    );
    assert!(!ts.store.enqueue(noop(4)).await.unwrap().duplicate);
    // Still deduped while running.
    let mut running = None;
    for j in claim(ts, 10).await {
        if j.id == first.id {
            running = j.lease();
        }
    }
    let lease = running.expect("claimed the keyed job");
    assert!(
        ts.store
            .enqueue(noop(5).unique_key("k"))
            .await
            .unwrap()
            .duplicate
    );
    // Once final, the key is free again.
    assert!(ack1(ts, lease, Outcome::Completed { result: json!(1) }).await);
    let third = ts.store.enqueue(noop(6).unique_key("k")).await.unwrap();
    assert!(!third.duplicate);
    assert_ne!(third.id, first.id);
}

pub async fn unique_key_within_batch(ts: &TestStore) {
    let a = noop(1).unique_key("same");
    let b = noop(2).unique_key("same");
    let c = noop(3);
    let out = ts
        .store
        .enqueue_many(vec![a.clone(), b.clone(), c.clone()])
        .await
        .expect("enqueue");
    assert_eq!(out.len(), 3);
    assert_eq!((out[0].id, out[0].duplicate), (a.id, false));
    assert_eq!((out[1].id, out[1].duplicate), (a.id, true));
    assert_eq!((out[2].id, out[2].duplicate), (c.id, false));
    assert!(ts.store.get(b.id).await.unwrap().is_none());
}

pub async fn ack_completed(ts: &TestStore) {
    let id = enqueue(ts, noop(1)).await;
    let job = claim_one(ts).await;
    ts.clock.advance(Duration::from_millis(1234));
    assert!(
        ack1(
            ts,
            job.lease().unwrap(),
            Outcome::Completed {
                result: json!({"ok": true})
            }
        )
        .await
    );
    let done = get(ts, id).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.result, Some(json!({"ok": true})));
    assert_eq!(done.progress, 100);
    assert_eq!(done.finished_at, Some(ts.clock.now()));
    assert_eq!(done.updated_at, ts.clock.now());
    assert_eq!(done.lease_owner, None);
    assert_eq!(done.lease_expires_at, None);
    assert_eq!(done.attempts, 1);
    // A second ack of the same attempt changes nothing.
    assert!(
        !ack1(
            ts,
            job.lease().unwrap(),
            Outcome::Failed {
                error: err(ts, 1, ErrorKind::NonRetryable, "late")
            }
        )
        .await
    );
    assert_eq!(get(ts, id).await.status, JobStatus::Completed);
}

pub async fn ack_retry_then_claim_again(ts: &TestStore) {
    let id = enqueue(ts, noop(1)).await;
    let job = claim_one(ts).await;
    let e = err(ts, 1, ErrorKind::Retryable, "connection reset");
    assert!(
        ack1(
            ts,
            job.lease().unwrap(),
            Outcome::Retry {
                delay: Duration::from_secs(2),
                error: e.clone()
            }
        )
        .await
    );
    let j = get(ts, id).await;
    assert_eq!(j.status, JobStatus::Scheduled);
    assert_eq!(j.run_at, ts.clock.now() + chrono::Duration::seconds(2));
    assert_eq!(j.errors, vec![e]);
    assert_eq!(j.lease_owner, None);
    assert!(claim(ts, 1).await.is_empty(), "back-off not over");
    ts.clock.advance(Duration::from_secs(2));
    let again = claim_one(ts).await;
    assert_eq!(again.id, id);
    assert_eq!(again.attempts, 2);
}

pub async fn ack_failed_and_canceled(ts: &TestStore) {
    let a = enqueue(ts, noop(1)).await;
    let b = enqueue(ts, noop(2)).await;
    let jobs = claim(ts, 2).await;
    let lease = |id| jobs.iter().find(|j| j.id == id).unwrap().lease().unwrap();
    let ea = err(ts, 1, ErrorKind::NonRetryable, "401 from provider");
    let eb = err(ts, 1, ErrorKind::Canceled, "canceled by user");
    let r = ts
        .store
        .ack(&[
            Ack {
                lease: lease(a),
                outcome: Outcome::Failed { error: ea.clone() },
            },
            Ack {
                lease: lease(b),
                outcome: Outcome::Canceled { error: eb.clone() },
            },
        ])
        .await
        .expect("ack");
    assert_eq!(r, vec![true, true]);
    let ja = get(ts, a).await;
    assert_eq!(
        (ja.status, ja.errors.clone()),
        (JobStatus::Failed, vec![ea])
    );
    assert_eq!(ja.finished_at, Some(ts.clock.now()));
    let jb = get(ts, b).await;
    assert_eq!(
        (jb.status, jb.errors.clone()),
        (JobStatus::Canceled, vec![eb])
    );
}

pub async fn ack_is_fenced(ts: &TestStore) {
    let id = enqueue(ts, noop(1)).await;
    let job = claim_one(ts).await;
    let good = job.lease().unwrap();
    let wrong_owner = JobLease {
        owner: "node-b".into(),
        ..good.clone()
    };
    let wrong_attempt = JobLease {
        attempt: 2,
        ..good.clone()
    };
    let unknown = JobLease {
        id: Uuid::now_v7(),
        ..good.clone()
    };
    let done = Outcome::Completed {
        result: json!(null),
    };
    let r = ts
        .store
        .ack(&[
            Ack {
                lease: wrong_owner,
                outcome: done.clone(),
            },
            Ack {
                lease: wrong_attempt,
                outcome: done.clone(),
            },
            Ack {
                lease: unknown,
                outcome: done.clone(),
            },
        ])
        .await
        .expect("ack");
    assert_eq!(r, vec![false, false, false]);
    assert_eq!(get(ts, id).await, job, "fenced acks change nothing");
    // A batch mixing fenced and valid acks applies the valid one.
    let r = ts
        .store
        .ack(&[
            Ack {
                lease: JobLease {
                    owner: "x".into(),
                    ..good.clone()
                },
                outcome: done.clone(),
            },
            Ack {
                lease: good,
                outcome: done,
            },
        ])
        .await
        .expect("ack");
    assert_eq!(r, vec![false, true]);
    assert_eq!(get(ts, id).await.status, JobStatus::Completed);
}

pub async fn error_history_keeps_every_attempt(ts: &TestStore) {
    let id = enqueue(ts, noop(1).max_attempts(3)).await;
    let mut expect = Vec::new();
    for attempt in 1..=3u32 {
        let job = claim_one(ts).await;
        assert_eq!(job.attempts, attempt);
        let e = err(
            ts,
            attempt,
            ErrorKind::Timeout,
            &format!("attempt {attempt} timed out"),
        );
        expect.push(e.clone());
        let outcome = if attempt < 3 {
            Outcome::Retry {
                delay: Duration::ZERO,
                error: e,
            }
        } else {
            Outcome::Failed { error: e }
        };
        assert!(ack1(ts, job.lease().unwrap(), outcome).await);
    }
    let j = get(ts, id).await;
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!(j.errors, expect);
    assert_eq!(j.last_error().map(|e| e.attempt), Some(3));
}

pub async fn released_jobs_queue_again(ts: &TestStore) {
    let a = enqueue(ts, noop(1)).await;
    let b = enqueue(ts, noop(2)).await;
    let jobs = claim(ts, 2).await;
    let lease = |id| jobs.iter().find(|j| j.id == id).unwrap().lease().unwrap();
    let r = ts
        .store
        .ack(&[
            Ack {
                lease: lease(a),
                outcome: Outcome::Released { uncount: true },
            },
            Ack {
                lease: lease(b),
                outcome: Outcome::Released { uncount: false },
            },
        ])
        .await
        .unwrap();
    assert_eq!(r, vec![true, true]);
    let ja = get(ts, a).await;
    assert_eq!(
        (ja.status, ja.attempts, ja.lease_owner.clone()),
        (JobStatus::Queued, 0, None)
    );
    let jb = get(ts, b).await;
    assert_eq!((jb.status, jb.attempts), (JobStatus::Queued, 1));
    assert_eq!(
        claim(ts, 10).await.len(),
        2,
        "released jobs are claimable at once"
    );

    // Snoozed: not started, back after a delay, attempt uncounted, no error.
    let c = enqueue(ts, noop(3)).await;
    let job = claim_one(ts).await;
    assert_eq!(job.id, c);
    assert!(
        ack1(
            ts,
            job.lease().unwrap(),
            Outcome::Snoozed {
                delay: Duration::from_secs(5)
            }
        )
        .await
    );
    let jc = get(ts, c).await;
    assert_eq!(
        (jc.status, jc.attempts, jc.errors.len()),
        (JobStatus::Scheduled, 0, 0)
    );
    assert_eq!(jc.run_at, ts.clock.now() + chrono::Duration::seconds(5));
}

pub async fn cancel_rules(ts: &TestStore) {
    // queued → canceled
    let q = enqueue(ts, noop(1)).await;
    match ts.store.request_cancel(q).await.expect("cancel") {
        CancelOutcome::Canceled(j) => {
            assert_eq!(j.status, JobStatus::Canceled);
            assert_eq!(j.finished_at, Some(ts.clock.now()));
        }
        other => panic!("expected Canceled, got {other:?}"),
    }
    // scheduled → canceled, and never claimed
    let s = enqueue(ts, noop(2).delay(Duration::from_secs(10))).await;
    assert!(matches!(
        ts.store.request_cancel(s).await,
        Ok(CancelOutcome::Canceled(_))
    ));
    ts.clock.advance(Duration::from_secs(11));
    assert!(claim(ts, 10).await.is_empty());
    // running → requested; the worker learns it through extend_leases
    let r = enqueue(ts, noop(3)).await;
    let job = claim_one(ts).await;
    match ts.store.request_cancel(r).await.expect("cancel") {
        CancelOutcome::Requested(j) => {
            assert_eq!(j.status, JobStatus::Running);
            assert!(j.cancel_requested);
        }
        other => panic!("expected Requested, got {other:?}"),
    }
    let st = ts
        .store
        .extend_leases(&[job.lease().unwrap()], LEASE)
        .await
        .unwrap();
    assert!(st[0].held && st[0].cancel_requested);
    // the worker acks canceled
    let e = err(ts, 1, ErrorKind::Canceled, "canceled");
    assert!(ack1(ts, job.lease().unwrap(), Outcome::Canceled { error: e }).await);
    // final → refused, unknown → not found
    assert!(matches!(
        ts.store.request_cancel(r).await,
        Err(StoreError::InvalidTransition {
            status: JobStatus::Canceled,
            ..
        })
    ));
    assert!(matches!(
        ts.store.request_cancel(Uuid::now_v7()).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn retry_rules(ts: &TestStore) {
    let id = enqueue(ts, noop(1).max_attempts(1)).await;
    // queued and running jobs cannot be retried
    assert!(matches!(
        ts.store.retry(id).await,
        Err(StoreError::InvalidTransition {
            status: JobStatus::Queued,
            ..
        })
    ));
    let job = claim_one(ts).await;
    assert!(matches!(
        ts.store.retry(id).await,
        Err(StoreError::InvalidTransition {
            status: JobStatus::Running,
            ..
        })
    ));
    let e = err(ts, 1, ErrorKind::NonRetryable, "bad");
    assert!(
        ack1(
            ts,
            job.lease().unwrap(),
            Outcome::Failed { error: e.clone() }
        )
        .await
    );
    ts.clock.advance(Duration::from_secs(5));
    let j = ts.store.retry(id).await.expect("retry failed job");
    assert_eq!(j.status, JobStatus::Queued);
    assert_eq!(j.run_at, ts.clock.now());
    assert_eq!(j.finished_at, None);
    assert_eq!(j.max_attempts, 2, "one more attempt is allowed");
    assert_eq!(j.errors, vec![e], "history is kept");
    let again = claim_one(ts).await;
    assert_eq!((again.id, again.attempts), (id, 2));
    // canceled jobs can be retried too; completed ones cannot
    assert!(
        ack1(
            ts,
            again.lease().unwrap(),
            Outcome::Completed { result: json!(0) }
        )
        .await
    );
    assert!(matches!(
        ts.store.retry(id).await,
        Err(StoreError::InvalidTransition {
            status: JobStatus::Completed,
            ..
        })
    ));
    let c = enqueue(ts, noop(2)).await;
    ts.store.request_cancel(c).await.unwrap();
    assert_eq!(ts.store.retry(c).await.unwrap().status, JobStatus::Queued);
    assert!(matches!(
        ts.store.retry(Uuid::now_v7()).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn lease_extension_and_rescue(ts: &TestStore) {
    let id = enqueue(ts, noop(1).max_attempts(2)).await;
    let job = claim_one(ts).await;
    ts.clock.advance(Duration::from_secs(20));
    assert!(ts.store.find_expired(10).await.unwrap().is_empty());
    let st = ts
        .store
        .extend_leases(&[job.lease().unwrap()], LEASE)
        .await
        .unwrap();
    assert!(st[0].held && !st[0].cancel_requested);
    assert_eq!(
        get(ts, id).await.lease_expires_at,
        Some(ts.clock.now() + chrono::Duration::seconds(30))
    );
    ts.clock.advance(Duration::from_secs(25));
    assert!(
        ts.store.rescue_expired(10).await.unwrap().is_empty(),
        "extended lease holds"
    );
    ts.clock.advance(Duration::from_secs(6));
    assert_eq!(
        ts.store.find_expired(10).await.unwrap(),
        vec![job.lease().unwrap()]
    );
    assert_eq!(ts.store.rescue_expired(10).await.unwrap(), vec![id]);
    let j = get(ts, id).await;
    assert_eq!(j.status, JobStatus::Queued);
    assert_eq!(
        j.run_at, job.run_at,
        "a rescued job keeps its place in line"
    );
    assert_eq!(j.lease_owner, None);
    assert_eq!(j.errors.len(), 1);
    assert_eq!(
        (j.errors[0].attempt, j.errors[0].kind),
        (1, ErrorKind::Retryable)
    );
    // The lost lease can no longer be extended.
    let st = ts
        .store
        .extend_leases(&[job.lease().unwrap()], LEASE)
        .await
        .unwrap();
    assert!(!st[0].held);
    // Second attempt dies too: attempts used up → failed.
    let again = claim_one(ts).await;
    assert_eq!(again.attempts, 2);
    ts.clock.advance(Duration::from_secs(31));
    assert_eq!(ts.store.rescue_expired(10).await.unwrap(), vec![id]);
    let j = get(ts, id).await;
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!(j.errors.len(), 2);
    assert_eq!(j.finished_at, Some(ts.clock.now()));
}

/// riverqueue/river#1302: a job completed between the rescuer's read and its write
/// must stay completed.
pub async fn rescue_never_overwrites_a_completed_job(ts: &TestStore) {
    let id = enqueue(ts, noop(1)).await;
    let job = claim_one(ts).await;
    ts.clock.advance(Duration::from_secs(31));
    let expired = ts.store.find_expired(10).await.unwrap();
    assert_eq!(expired.len(), 1);
    // The slow worker's ack lands before the rescuer writes: its lease is still its own.
    assert!(
        ack1(
            ts,
            job.lease().unwrap(),
            Outcome::Completed {
                result: json!("done")
            }
        )
        .await
    );
    assert!(ts.store.rescue(&expired).await.unwrap().is_empty());
    let j = get(ts, id).await;
    assert_eq!(j.status, JobStatus::Completed);
    assert_eq!(j.result, Some(json!("done")));
    assert!(j.errors.is_empty());
}

pub async fn late_ack_after_rescue_is_fenced(ts: &TestStore) {
    let id = enqueue(ts, noop(1)).await;
    let zombie = claim_one(ts).await;
    ts.clock.advance(Duration::from_secs(31));
    assert_eq!(ts.store.rescue_expired(10).await.unwrap(), vec![id]);
    let fresh = ts
        .other
        .claim(&claim_params("node-b", 1))
        .await
        .unwrap()
        .pop()
        .expect("re-claimed elsewhere");
    assert_eq!(fresh.attempts, 2);
    // The zombie wakes up and reports: refused, for every kind of write.
    assert!(
        !ack1(
            ts,
            zombie.lease().unwrap(),
            Outcome::Completed {
                result: json!("stale")
            }
        )
        .await
    );
    assert!(
        !ts.store
            .set_progress(&zombie.lease().unwrap(), 50)
            .await
            .unwrap()
    );
    assert!(
        !ts.store
            .extend_leases(&[zombie.lease().unwrap()], LEASE)
            .await
            .unwrap()[0]
            .held
    );
    let j = get(ts, id).await;
    assert_eq!(
        (j.status, j.lease_owner.as_deref(), j.progress),
        (JobStatus::Running, Some("node-b"), 0)
    );
    assert!(
        ack1(
            ts,
            fresh.lease().unwrap(),
            Outcome::Completed {
                result: json!("fresh")
            }
        )
        .await
    );
    assert_eq!(get(ts, id).await.result, Some(json!("fresh")));
}

pub async fn progress_is_fenced(ts: &TestStore) {
    let id = enqueue(ts, noop(1)).await;
    let job = claim_one(ts).await;
    assert!(
        ts.store
            .set_progress(&job.lease().unwrap(), 42)
            .await
            .unwrap()
    );
    assert_eq!(get(ts, id).await.progress, 42);
    let other = JobLease {
        owner: "node-b".into(),
        ..job.lease().unwrap()
    };
    assert!(!ts.store.set_progress(&other, 99).await.unwrap());
    assert_eq!(get(ts, id).await.progress, 42);
    assert!(
        ack1(
            ts,
            job.lease().unwrap(),
            Outcome::Completed {
                result: json!(null)
            }
        )
        .await
    );
    assert!(
        !ts.store
            .set_progress(&job.lease().unwrap(), 10)
            .await
            .unwrap()
    );
}

pub async fn list_filters_and_pagination(ts: &TestStore) {
    let mut ids = Vec::new();
    for i in 0..25u64 {
        let mut j = NewJob::new(if i % 2 == 0 { "even" } else { "odd" }, json!({"i": i}))
            .queue(if i < 10 { "q1" } else { "q2" });
        if i % 5 == 0 {
            j = j.owner("alice");
        }
        ids.push(enqueue(ts, j).await);
    }
    let newest_first: Vec<Uuid> = ids.iter().rev().copied().collect();
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = ts
            .store
            .list(&ListJobs {
                cursor,
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        pages += 1;
        seen.extend(page.jobs.iter().map(|j| j.id));
        if pages == 1 {
            // New jobs arriving between pages do not shift later pages.
            for i in 100..105 {
                enqueue(ts, noop(i)).await;
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);
    assert_eq!(pages, 3);

    let count = |q: ListJobs| {
        let s = ts.store.clone();
        async move {
            s.list(&ListJobs { limit: 100, ..q })
                .await
                .unwrap()
                .jobs
                .len()
        }
    };
    assert_eq!(
        count(ListJobs {
            job_type: Some("even".into()),
            ..Default::default()
        })
        .await,
        13
    );
    assert_eq!(
        count(ListJobs {
            queue: Some("q1".into()),
            ..Default::default()
        })
        .await,
        10
    );
    assert_eq!(
        count(ListJobs {
            owner: Some("alice".into()),
            ..Default::default()
        })
        .await,
        5
    );
    assert_eq!(
        count(ListJobs {
            owner: Some("alice".into()),
            job_type: Some("even".into()),
            queue: Some("q2".into()),
            ..Default::default()
        })
        .await,
        2 // i = 10, 20
    );
    claim(ts, 3).await;
    assert_eq!(
        count(ListJobs {
            status: Some(JobStatus::Running),
            ..Default::default()
        })
        .await,
        3
    );
    assert_eq!(
        count(ListJobs {
            status: Some(JobStatus::Queued),
            ..Default::default()
        })
        .await,
        27
    );
    assert_eq!(
        count(ListJobs {
            job_type: Some("none".into()),
            ..Default::default()
        })
        .await,
        0
    );
}

pub async fn pause_and_resume(ts: &TestStore) {
    let a = enqueue(ts, noop(1).queue("paused-q").priority(Priority::CRITICAL)).await;
    let b = enqueue(ts, noop(2).queue("open-q")).await;
    ts.store.set_queue_paused("paused-q", true).await.unwrap();
    let got: Vec<Uuid> = claim(ts, 10).await.into_iter().map(|j| j.id).collect();
    assert_eq!(got, vec![b]);
    let queues = ts.store.queues().await.unwrap();
    assert!(queues.iter().any(|q| q.name == "paused-q" && q.paused));
    assert!(queues.iter().any(|q| q.name == "open-q" && !q.paused));
    ts.store.set_queue_paused("paused-q", false).await.unwrap();
    let got: Vec<Uuid> = claim(ts, 10).await.into_iter().map(|j| j.id).collect();
    assert_eq!(got, vec![a]);
    // Pausing a queue with no jobs yet is remembered.
    ts.store.set_queue_paused("future-q", true).await.unwrap();
    enqueue(ts, noop(3).queue("future-q")).await;
    assert!(claim(ts, 10).await.is_empty());
}

pub async fn counts_by_queue_and_status(ts: &TestStore) {
    for i in 0..4 {
        enqueue(ts, noop(i).queue("a")).await;
    }
    enqueue(ts, noop(9).queue("b").delay(Duration::from_secs(60))).await;
    ts.store.set_queue_paused("b", true).await.unwrap();
    let jobs = claim(ts, 1).await;
    assert!(
        ack1(
            ts,
            jobs[0].lease().unwrap(),
            Outcome::Completed {
                result: json!(null)
            }
        )
        .await
    );
    claim(ts, 1).await;
    let mut got: HashMap<(String, JobStatus), u64> = HashMap::new();
    for c in ts.store.counts().await.unwrap() {
        got.insert((c.queue, c.status), c.count);
    }
    let expect: HashMap<(String, JobStatus), u64> = [
        (("a".to_string(), JobStatus::Queued), 2),
        (("a".to_string(), JobStatus::Running), 1),
        (("a".to_string(), JobStatus::Completed), 1),
        (("b".to_string(), JobStatus::Scheduled), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, expect);
}

/// `owner_counts` counts one owner's jobs: another's and unowned ones are left out.
pub async fn owner_counts_are_the_owners_only(ts: &TestStore) {
    for i in 0..3 {
        enqueue(ts, noop(i).queue("a").owner("alice")).await;
    }
    enqueue(ts, noop(3).queue("b").owner("bob")).await;
    enqueue(ts, noop(4).queue("a").owner("bob")).await;
    enqueue(ts, noop(5).queue("a")).await;
    let got: Vec<(String, JobStatus, u64)> = ts
        .store
        .owner_counts("alice")
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.queue, c.status, c.count))
        .collect();
    assert_eq!(got, [("a".to_string(), JobStatus::Queued, 3)]);
    assert!(ts.store.owner_counts("carol").await.unwrap().is_empty());
}

/// Live jobs only, per queue and status, each group with its earliest `run_at`; a
/// queue whose jobs all finished is absent.
pub async fn live_counts_by_queue_and_status(ts: &TestStore) {
    assert!(ts.store.live_counts().await.unwrap().is_empty());
    let t0 = ts.clock.now();
    enqueue(ts, noop(1).queue("a")).await;
    ts.clock.advance(Duration::from_secs(1));
    enqueue(ts, noop(2).queue("a")).await;
    enqueue(ts, noop(3).queue("a")).await;
    ts.clock.advance(Duration::from_secs(1));
    enqueue(ts, noop(4).queue("b")).await;
    enqueue(ts, noop(5).queue("b").delay(Duration::from_secs(60))).await;
    let gone = enqueue(ts, noop(6).queue("c")).await;
    ts.store.request_cancel(gone).await.unwrap();
    let running = claim_one(ts).await;
    let s = chrono::Duration::seconds;
    let read = || async {
        let mut got = HashMap::new();
        for c in ts.store.live_counts().await.unwrap() {
            got.insert((c.queue, c.status), (c.count, c.oldest_run_at));
        }
        got
    };
    let mut expect: HashMap<(String, JobStatus), (u64, Option<_>)> = [
        (("a".to_string(), JobStatus::Running), (1, Some(t0))),
        (("a".to_string(), JobStatus::Queued), (2, Some(t0 + s(1)))),
        (("b".to_string(), JobStatus::Queued), (1, Some(t0 + s(2)))),
        (
            ("b".to_string(), JobStatus::Scheduled),
            (1, Some(t0 + s(62))),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(read().await, expect);
    let done = Outcome::Completed {
        result: json!(null),
    };
    assert!(ack1(ts, running.lease().unwrap(), done).await);
    expect.remove(&("a".to_string(), JobStatus::Running));
    assert_eq!(
        read().await,
        expect,
        "a finished job leaves the live counts"
    );
}

pub async fn prune_finished(ts: &TestStore) {
    let old = enqueue(ts, noop(1)).await;
    let keep_running = enqueue(ts, noop(2)).await;
    let jobs = claim(ts, 2).await;
    let lease = |id| jobs.iter().find(|j| j.id == id).unwrap().lease().unwrap();
    assert!(
        ack1(
            ts,
            lease(old),
            Outcome::Completed {
                result: json!(null)
            }
        )
        .await
    );
    ts.clock.advance(Duration::from_secs(3600));
    let queued = enqueue(ts, noop(3)).await;
    let recent = enqueue(ts, noop(4)).await;
    ts.store.request_cancel(recent).await.unwrap();
    let cutoff = ts.clock.now() - chrono::Duration::seconds(60);
    assert_eq!(ts.store.prune(cutoff, 100).await.unwrap(), 1);
    assert!(ts.store.get(old).await.unwrap().is_none());
    for id in [keep_running, queued, recent] {
        assert!(ts.store.get(id).await.unwrap().is_some());
    }
    assert!(lease(keep_running).id == keep_running);
    // The limit bounds one call.
    for i in 0..5 {
        let id = enqueue(ts, noop(10 + i)).await;
        ts.store.request_cancel(id).await.unwrap();
    }
    ts.clock.advance(Duration::from_secs(120));
    let cutoff = ts.clock.now() - chrono::Duration::seconds(60);
    assert_eq!(ts.store.prune(cutoff, 2).await.unwrap(), 2);
    assert_eq!(ts.store.prune(cutoff, 100).await.unwrap(), 4);
}

pub async fn next_run_at(ts: &TestStore) {
    assert_eq!(ts.store.next_run_at().await.unwrap(), None);
    enqueue(ts, noop(1)).await;
    assert_eq!(
        ts.store.next_run_at().await.unwrap(),
        None,
        "queued jobs are not scheduled"
    );
    enqueue(ts, noop(2).delay(Duration::from_secs(90))).await;
    enqueue(ts, noop(3).delay(Duration::from_secs(30))).await;
    assert_eq!(
        ts.store.next_run_at().await.unwrap(),
        Some(ts.clock.now() + chrono::Duration::seconds(30))
    );
}

/// 8 claimers over 10,000 jobs, on two handles (pools): every job claimed exactly once.
pub async fn concurrent_claimers_claim_each_job_once(ts: &TestStore) {
    const N: u64 = 10_000;
    let mut all = HashSet::new();
    for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
        let jobs: Vec<NewJob> = chunk.iter().map(|i| noop(*i)).collect();
        for e in ts.store.enqueue_many(jobs).await.expect("enqueue") {
            all.insert(e.id);
        }
    }
    assert_eq!(all.len() as u64, N);
    let mut tasks = Vec::new();
    for c in 0..8 {
        let store = if c % 2 == 0 {
            ts.store.clone()
        } else {
            ts.other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let owner = format!("claimer-{c}");
            let mut got = Vec::new();
            loop {
                let jobs = store
                    .claim(&ClaimParams {
                        owner: owner.clone(),
                        limit: 50,
                        lease: LEASE,
                        aged_before: Some(Duration::from_secs(3600)),
                        ..claim_params(&owner, 50)
                    })
                    .await
                    .expect("claim");
                if jobs.is_empty() {
                    return got;
                }
                let acks: Vec<Ack> = jobs
                    .iter()
                    .map(|j| Ack {
                        lease: j.lease().expect("leased"),
                        outcome: Outcome::Completed {
                            result: json!(null),
                        },
                    })
                    .collect();
                let applied = store.ack(&acks).await.expect("ack");
                assert!(
                    applied.iter().all(|a| *a),
                    "own fresh leases are never fenced"
                );
                got.extend(jobs.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for t in tasks {
        for id in t.await.expect("claimer task") {
            total += 1;
            assert!(seen.insert(id), "job {id} claimed twice");
        }
    }
    assert_eq!(total, N as usize);
    assert_eq!(seen, all, "no job left behind");
    let counts = ts.store.counts().await.unwrap();
    assert_eq!(counts.len(), 1);
    assert_eq!(
        (counts[0].status, counts[0].count),
        (JobStatus::Completed, N)
    );
}

/// 200 keys × 16 concurrent enqueues: exactly one live job per key, and every caller
/// of a key is told the same id.
pub async fn unique_key_race(ts: &TestStore) {
    const KEYS: usize = 200;
    const RACERS: usize = 16;
    let mut tasks = Vec::new();
    for r in 0..RACERS {
        let store = if r % 2 == 0 {
            ts.store.clone()
        } else {
            ts.other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(KEYS);
            for k in 0..KEYS {
                let key = format!("key-{}", (k + r * 7) % KEYS);
                let e = store
                    .enqueue(noop(k as u64).unique_key(key.clone()))
                    .await
                    .expect("enqueue");
                got.push((key, e));
            }
            got
        }));
    }
    let mut by_key: HashMap<String, HashSet<Uuid>> = HashMap::new();
    let mut created = 0;
    for t in tasks {
        for (key, e) in t.await.expect("racer") {
            if !e.duplicate {
                created += 1;
            }
            by_key.entry(key).or_default().insert(e.id);
        }
    }
    assert_eq!(by_key.len(), KEYS);
    for (key, ids) in &by_key {
        assert_eq!(ids.len(), 1, "key {key} got {} different jobs", ids.len());
    }
    assert_eq!(created, KEYS, "exactly one insert per key");
    let live = ts
        .store
        .list(&ListJobs {
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(live.jobs.len(), KEYS);
}

// ---- Nodes, leadership, cron ------------------------------------------------------

fn node(ts: &TestStore, id: &str, role: &str) -> NodeInfo {
    NodeInfo {
        id: id.to_owned(),
        host: "host-1".into(),
        version: "0.1.0".into(),
        role: role.into(),
        pool_size: 4,
        started_at: ts.clock.now(),
    }
}

const DEAD_AFTER: Duration = Duration::from_secs(10);
const TTL: Duration = Duration::from_secs(5);

pub async fn nodes_register_heartbeat_and_die(ts: &TestStore) {
    let a = node(ts, "node-a", "worker");
    let b = node(ts, "node-b", "api");
    ts.store.heartbeat(&a).await.unwrap();
    ts.store.heartbeat(&b).await.unwrap();
    let nodes = ts.store.nodes(DEAD_AFTER).await.unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0].info, a);
    assert_eq!(nodes[1].info, b);
    assert_eq!(nodes[0].heartbeat_at, ts.clock.now());
    assert!(nodes.iter().all(|n| !n.leader));
    // a keeps beating, b stops: after dead_after only a is listed.
    ts.clock.advance(Duration::from_secs(6));
    ts.store.heartbeat(&a).await.unwrap();
    ts.clock.advance(Duration::from_secs(6));
    let nodes = ts.store.nodes(DEAD_AFTER).await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].info.id, "node-a");
    assert_eq!(
        nodes[0].heartbeat_at,
        ts.clock.now() - chrono::Duration::seconds(6)
    );
    // The leader is marked.
    assert!(
        ts.store
            .acquire_leadership("maintenance", "node-a", TTL)
            .await
            .unwrap()
    );
    assert!(ts.store.nodes(DEAD_AFTER).await.unwrap()[0].leader);
    // Dead rows are pruned after a while; live ones stay.
    assert_eq!(
        ts.store
            .prune_nodes(Duration::from_secs(100))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        ts.store.prune_nodes(Duration::from_secs(10)).await.unwrap(),
        1
    );
    // A deregistered node is gone at once; deregistering twice is fine.
    ts.store.deregister("node-a").await.unwrap();
    ts.store.deregister("node-a").await.unwrap();
    assert!(ts.store.nodes(DEAD_AFTER).await.unwrap().is_empty());
}

pub async fn leadership_is_exclusive_expires_and_moves(ts: &TestStore) {
    let l = "maintenance";
    assert!(ts.store.acquire_leadership(l, "a", TTL).await.unwrap());
    assert!(!ts.other.acquire_leadership(l, "b", TTL).await.unwrap());
    // Another lease name is independent.
    assert!(
        ts.other
            .acquire_leadership("other", "b", TTL)
            .await
            .unwrap()
    );
    ts.clock.advance(Duration::from_secs(3));
    assert!(
        ts.store.acquire_leadership(l, "a", TTL).await.unwrap(),
        "the holder renews"
    );
    ts.clock.advance(Duration::from_secs(4));
    assert!(
        !ts.other.acquire_leadership(l, "b", TTL).await.unwrap(),
        "the renewed lease still holds"
    );
    ts.clock.advance(Duration::from_secs(2));
    assert!(
        ts.other.acquire_leadership(l, "b", TTL).await.unwrap(),
        "an expired lease moves"
    );
    assert!(!ts.store.acquire_leadership(l, "a", TTL).await.unwrap());
}

pub async fn only_the_holder_renews_or_releases(ts: &TestStore) {
    let l = "maintenance";
    assert!(ts.store.acquire_leadership(l, "a", TTL).await.unwrap());
    assert!(!ts.store.release_leadership(l, "b").await.unwrap());
    assert!(!ts.store.acquire_leadership(l, "b", TTL).await.unwrap());
    assert!(ts.store.release_leadership(l, "a").await.unwrap());
    assert!(!ts.store.release_leadership(l, "a").await.unwrap());
    assert!(
        ts.other.acquire_leadership(l, "b", TTL).await.unwrap(),
        "a released lease is free at once"
    );
    assert!(!ts.store.acquire_leadership(l, "a", TTL).await.unwrap());
}

pub async fn leadership_race_has_one_winner(ts: &TestStore) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 {
            ts.store.clone()
        } else {
            ts.other.clone()
        };
        tasks.push(tokio::spawn(async move {
            store
                .acquire_leadership("maintenance", &format!("n{i}"), TTL)
                .await
                .expect("acquire")
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.expect("task"));
    }
    assert_eq!(winners, 1);
}

pub async fn cron_tick_record_is_monotonic(ts: &TestStore) {
    let t = |s: i64| ts.clock.now() + chrono::Duration::seconds(s);
    let job = |tick: chrono::DateTime<chrono::Utc>| {
        NewJob::new("echo", json!({}))
            .unique_key(format!("cron:c:{}", tick.timestamp()))
            .run_at(tick)
    };
    assert_eq!(ts.store.cron_last_tick("c").await.unwrap(), None);
    let first = ts.store.enqueue_cron("c", t(1), job(t(1))).await.unwrap();
    assert!(first.is_some_and(|e| !e.duplicate));
    assert_eq!(ts.store.cron_last_tick("c").await.unwrap(), Some(t(1)));
    // The same tick again, from either handle: nothing.
    assert!(
        ts.other
            .enqueue_cron("c", t(1), job(t(1)))
            .await
            .unwrap()
            .is_none()
    );
    let id = ts
        .store
        .enqueue_cron("c", t(3), job(t(3)))
        .await
        .unwrap()
        .expect("a later tick is enqueued")
        .id;
    assert_eq!(
        get(ts, id).await.unique_key.as_deref(),
        Some(&*format!("cron:c:{}", t(3).timestamp()))
    );
    // An earlier tick never moves the record back (or enqueues).
    assert!(
        ts.store
            .enqueue_cron("c", t(2), job(t(2)))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(ts.store.cron_last_tick("c").await.unwrap(), Some(t(3)));
    assert_eq!(ts.store.cron_last_tick("other").await.unwrap(), None);
    // Racing enqueues of one tick: exactly one.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = if i % 2 == 0 {
            ts.store.clone()
        } else {
            ts.other.clone()
        };
        let j = job(t(4));
        let tick = t(4);
        tasks.push(tokio::spawn(async move {
            store
                .enqueue_cron("c", tick, j)
                .await
                .expect("enqueue_cron")
        }));
    }
    let mut won = 0;
    for task in tasks {
        won += usize::from(task.await.expect("task").is_some());
    }
    assert_eq!(won, 1);
    let page = ts
        .store
        .list(&ListJobs {
            limit: 100,
            ..ListJobs::default()
        })
        .await
        .unwrap();
    assert_eq!(page.jobs.len(), 3);
    // A bad job is refused and the record does not move.
    let bad = NewJob::new("", json!({}));
    assert!(ts.store.enqueue_cron("c", t(9), bad).await.is_err());
    assert_eq!(ts.store.cron_last_tick("c").await.unwrap(), Some(t(4)));
}

pub async fn dead_owner_rescue_is_fenced(ts: &TestStore) {
    let dead = node(ts, "node-dead", "worker");
    let live = node(ts, "node-live", "worker");
    ts.store.heartbeat(&dead).await.unwrap();
    ts.store.heartbeat(&live).await.unwrap();
    let a = enqueue(ts, noop(1).max_attempts(1)).await;
    let b = enqueue(ts, noop(2)).await;
    let c = enqueue(ts, noop(3)).await;
    let d = enqueue(ts, noop(4)).await;
    let on_dead = ts.store.claim(&claim_params("node-dead", 3)).await.unwrap();
    assert_eq!(on_dead.len(), 3);
    let on_live = ts.store.claim(&claim_params("node-live", 1)).await.unwrap();
    assert_eq!(on_live[0].id, d);
    let unregistered = enqueue(ts, noop(5)).await;
    let ghost = ts
        .store
        .claim(&claim_params("node-unregistered", 1))
        .await
        .unwrap();
    assert_eq!(ghost[0].id, unregistered);
    // Within dead_after nobody is dead.
    ts.clock.advance(Duration::from_secs(8));
    ts.store.heartbeat(&live).await.unwrap();
    assert!(
        ts.store
            .find_orphaned(DEAD_AFTER, 10)
            .await
            .unwrap()
            .is_empty()
    );
    ts.clock.advance(Duration::from_secs(4));
    ts.store.heartbeat(&live).await.unwrap();
    // node-dead is silent for 12 s, its leases (30 s) have not expired.
    let mut found = ts.store.find_orphaned(DEAD_AFTER, 10).await.unwrap();
    found.sort_by_key(|l| l.id);
    let mut want: Vec<JobLease> = on_dead.iter().filter_map(|j| j.lease()).collect();
    want.sort_by_key(|l| l.id);
    assert_eq!(found, want, "only the dead node's running jobs");
    // Between the find and the rescue, job c completes (late but with its lease).
    let lc = on_dead.iter().find(|j| j.id == c).unwrap().lease().unwrap();
    assert!(
        ack1(
            ts,
            lc,
            Outcome::Completed {
                result: json!(null)
            }
        )
        .await
    );
    // A stale lease (wrong attempt) is fenced too.
    let mut stale = want.clone();
    stale.push(JobLease {
        id: d,
        attempt: 1,
        owner: "node-dead".into(),
    });
    let mut rescued = ts.store.rescue_orphaned(&stale, DEAD_AFTER).await.unwrap();
    rescued.sort();
    let mut expect = vec![a, b];
    expect.sort();
    assert_eq!(rescued, expect);
    assert_eq!(get(ts, c).await.status, JobStatus::Completed);
    assert_eq!(get(ts, d).await.status, JobStatus::Running);
    assert_eq!(get(ts, unregistered).await.status, JobStatus::Running);
    let ja = get(ts, a).await;
    assert_eq!(ja.status, JobStatus::Failed, "attempts used up");
    assert_eq!(ja.errors.len(), 1);
    let jb = get(ts, b).await;
    assert_eq!(jb.status, JobStatus::Queued);
    assert_eq!(jb.lease_owner, None);
    assert_eq!(
        (jb.errors[0].attempt, jb.errors[0].kind),
        (1, ErrorKind::Retryable)
    );
    // A late ack of the rescued attempt is fenced.
    let lb = on_dead.iter().find(|j| j.id == b).unwrap().lease().unwrap();
    assert!(
        !ack1(
            ts,
            lb.clone(),
            Outcome::Completed {
                result: json!(null)
            }
        )
        .await
    );
    // Rescuing again changes nothing.
    assert!(
        ts.store
            .rescue_orphaned(&[lb], DEAD_AFTER)
            .await
            .unwrap()
            .is_empty()
    );
    // A node that comes back before the rescue keeps its jobs.
    let again = claim_one(ts).await;
    assert_eq!(again.id, b);
    let back = node(ts, OWNER, "worker");
    ts.store.heartbeat(&back).await.unwrap();
    ts.clock.advance(Duration::from_secs(11));
    ts.store.heartbeat(&live).await.unwrap();
    let orphans = ts.store.find_orphaned(DEAD_AFTER, 10).await.unwrap();
    assert_eq!(orphans, vec![again.lease().unwrap()]);
    ts.store.heartbeat(&back).await.unwrap();
    assert!(
        ts.store
            .rescue_orphaned(&orphans, DEAD_AFTER)
            .await
            .unwrap()
            .is_empty(),
        "the owner is alive again"
    );
    assert_eq!(get(ts, b).await.status, JobStatus::Running);
}
