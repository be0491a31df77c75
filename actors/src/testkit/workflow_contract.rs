//! The workflow part of the store contract ([`workflow_contract_tests!`]): release
//! exactly once under concurrent completions, failure policies, callbacks, retry
//! resuming a workflow, cancel. Run by every SQL backend; the memory store has no
//! workflows.
//!
//! [`workflow_contract_tests!`]: crate::workflow_contract_tests

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::clock::Clock;
use crate::error::{AttemptError, ErrorKind};
use crate::job::{Job, NewJob};
use crate::status::JobStatus;
use crate::store::{Ack, CancelOutcome, ClaimParams, Outcome, Store, StoreError};
use crate::testkit::TestStore;
use crate::workflow::{
    DependencyPolicy, ListWorkflows, NewWorkflow, ON_COMPLETE_KEY, ON_SUCCESS_KEY, WorkflowCreated,
    WorkflowStatus,
};

/// Stamps one `#[tokio::test]` per workflow case (see `store_contract_tests!`).
#[macro_export]
macro_rules! workflow_contract_tests {
    ($factory:path) => {
        $crate::workflow_contract_tests!(@cases $factory;
            workflow_diamond_runs_in_order, workflow_release_exactly_once_under_concurrency,
            workflow_failure_cancels_transitively, workflow_ignore_and_run_policies,
            workflow_callbacks_run_once, workflow_retry_resumes_canceled_dependents,
            workflow_invalid_is_refused_whole, workflow_cancel_and_list,
            workflow_rescued_final_failure_settles, workflow_prune_keeps_running_workflows);
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(ts) = $factory().await else {
                    eprintln!("skipped: service not configured");
                    return;
                };
                $crate::testkit::workflow_contract::$case(&ts).await;
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
        aged_before: None,
        types: vec!["noop".into(), "echo".into()],
        queues: None,
    }
}

fn noop(i: u64) -> NewJob {
    NewJob::new("noop", json!({ "i": i }))
}

async fn claim_all(store: &Arc<dyn Store>) -> Vec<Job> {
    store.claim(&params("node-a", 100)).await.expect("claim")
}

async fn status(ts: &TestStore, id: Uuid) -> JobStatus {
    ts.store.get(id).await.expect("get").expect("job").status
}

async fn finish(ts: &TestStore, job: &Job, outcome: Outcome) {
    let applied = ts
        .store
        .ack(&[Ack {
            lease: job.lease().expect("running"),
            outcome,
        }])
        .await
        .expect("ack");
    assert_eq!(applied, [true]);
}

fn completed(key: &str) -> Outcome {
    Outcome::Completed {
        result: json!({ "from": key }),
    }
}

fn failed(ts: &TestStore, job: &Job) -> Outcome {
    Outcome::Failed {
        error: AttemptError {
            attempt: job.attempts,
            kind: ErrorKind::NonRetryable,
            message: "boom".into(),
            at: ts.clock.now(),
        },
    }
}

/// Claims exactly the jobs under `keys` (and nothing else).
async fn claim_keys(ts: &TestStore, wf: &WorkflowCreated, keys: &[&str]) -> HashMap<String, Job> {
    let jobs = claim_all(&ts.store).await;
    let got: HashMap<String, Job> = jobs
        .into_iter()
        .map(|j| (j.workflow_key.clone().expect("workflow key"), j))
        .collect();
    let mut want: Vec<&str> = keys.to_vec();
    want.sort();
    let mut have: Vec<&str> = got.keys().map(String::as_str).collect();
    have.sort();
    assert_eq!(have, want, "claimable jobs");
    for (k, j) in &got {
        assert_eq!(Some(&j.id), wf.jobs.get(k));
    }
    got
}

fn diamond(i: u64) -> NewWorkflow {
    NewWorkflow::new()
        .name(format!("diamond-{i}"))
        .job("a", noop(i))
        .job("b", noop(i))
        .depends_on(["a"])
        .job("c", noop(i))
        .depends_on(["a"])
        .job("d", noop(i))
        .depends_on(["b", "c"])
}

/// A → {B, C} → D: only A is due; B and C after A; D after both, with their results.
pub async fn workflow_diamond_runs_in_order(ts: &TestStore) {
    let wf = ts
        .store
        .enqueue_workflow(diamond(1).owner("alice"))
        .await
        .expect("enqueue workflow");
    assert_eq!(wf.jobs.len(), 4);
    assert_eq!(status(ts, wf.jobs["d"]).await, JobStatus::Waiting);
    let rec = ts.store.workflow(wf.id).await.unwrap().expect("workflow");
    assert_eq!(rec.summary.total, 4);
    assert_eq!(rec.summary.owner.as_deref(), Some("alice"));
    assert_eq!(rec.status(), WorkflowStatus::Running);
    let d = rec.jobs.iter().find(|m| m.key == "d").expect("d");
    let mut want = vec![wf.jobs["b"], wf.jobs["c"]];
    want.sort();
    assert_eq!(d.depends_on, want);
    let job_d = ts.store.get(wf.jobs["d"]).await.unwrap().unwrap();
    assert_eq!(job_d.workflow_id, Some(wf.id));
    assert_eq!(job_d.owner.as_deref(), Some("alice"));
    let deps = ts.store.dependencies(wf.jobs["d"]).await.unwrap();
    assert_eq!(deps.len(), 2);
    assert!(deps.iter().all(|d| d.policy == DependencyPolicy::Cancel));

    let a = claim_keys(ts, &wf, &["a"]).await;
    finish(ts, &a["a"], completed("a")).await;
    let bc = claim_keys(ts, &wf, &["b", "c"]).await;
    assert_eq!(bc["b"].dependency_results["a"], json!({ "from": "a" }));
    finish(ts, &bc["b"], completed("b")).await;
    assert_eq!(status(ts, wf.jobs["d"]).await, JobStatus::Waiting);
    // Time spent waiting for dependencies is not queue wait: a released job is due
    // from its release on.
    ts.clock.advance(Duration::from_secs(600));
    finish(ts, &bc["c"], completed("c")).await;
    let released = ts.store.get(wf.jobs["d"]).await.unwrap().unwrap();
    assert_eq!(released.status, JobStatus::Queued);
    assert_eq!(
        released.run_at.timestamp_millis(),
        ts.clock.now().timestamp_millis(),
        "due from its release"
    );
    let d = claim_keys(ts, &wf, &["d"]).await;
    let results = &d["d"].dependency_results;
    assert_eq!(results.len(), 2);
    assert_eq!(results["b"], json!({ "from": "b" }));
    assert_eq!(results["c"], json!({ "from": "c" }));
    finish(ts, &d["d"], completed("d")).await;
    let rec = ts.store.workflow(wf.id).await.unwrap().unwrap();
    assert_eq!(rec.status(), WorkflowStatus::Completed);
    assert_eq!(rec.counts, vec![(JobStatus::Completed, 4)]);
}

/// 1,000 diamonds, 8 concurrent claimers on two handles: every D is released once,
/// claimed once, and only after both of its dependencies completed.
pub async fn workflow_release_exactly_once_under_concurrency(ts: &TestStore) {
    const N: u64 = 1000;
    let mut ds = HashSet::new();
    for i in 0..N {
        let wf = ts
            .store
            .enqueue_workflow(diamond(i))
            .await
            .expect("enqueue");
        ds.insert(wf.jobs["d"]);
    }
    let total = (N * 4) as usize;
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..8 {
        let store = if c % 2 == 0 {
            ts.store.clone()
        } else {
            ts.other.clone()
        };
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("claimer-{c}");
            let mut claimed: Vec<Job> = Vec::new();
            while done.load(Ordering::SeqCst) < total {
                let jobs = store.claim(&params(&owner, 20)).await.expect("claim");
                if jobs.is_empty() {
                    // Others hold the jobs that release the rest.
                    tokio::task::yield_now().await;
                    continue;
                }
                let acks: Vec<Ack> = jobs
                    .iter()
                    .map(|j| Ack {
                        lease: j.lease().expect("leased"),
                        outcome: completed(j.workflow_key.as_deref().unwrap_or("?")),
                    })
                    .collect();
                let applied = store.ack(&acks).await.expect("ack");
                assert!(applied.iter().all(|a| *a), "own leases are never fenced");
                done.fetch_add(jobs.len(), Ordering::SeqCst);
                claimed.extend(jobs);
            }
            claimed
        }));
    }
    let mut seen = HashSet::new();
    let mut d_runs = 0;
    for t in tasks {
        for j in t.await.expect("claimer") {
            assert!(seen.insert(j.id), "job {} claimed twice", j.id);
            if ds.contains(&j.id) {
                d_runs += 1;
                let r = &j.dependency_results;
                assert_eq!(r.len(), 2, "D claimed before both dependencies completed");
                assert_eq!(r["b"], json!({ "from": "b" }));
            }
        }
    }
    assert_eq!(seen.len(), total);
    assert_eq!(d_runs, N as usize, "every D ran exactly once");
    let counts = ts.store.counts().await.unwrap();
    assert_eq!(counts.len(), 1);
    assert_eq!(
        (counts[0].status, counts[0].count),
        (JobStatus::Completed, N * 4)
    );
}

/// A fails: B (cancel) is canceled, and so is C behind it, transitively; D, which
/// ignores A's failure, runs.
pub async fn workflow_failure_cancels_transitively(ts: &TestStore) {
    let wf = ts
        .store
        .enqueue_workflow(
            NewWorkflow::new()
                .job("a", noop(0).max_attempts(1))
                .job("b", noop(1))
                .depends_on(["a"])
                .job("c", noop(2))
                .depends_on(["b"])
                .job("d", noop(3))
                .depends_on(["a"])
                .on_dependency_failure(DependencyPolicy::Ignore),
        )
        .await
        .unwrap();
    let a = claim_keys(ts, &wf, &["a"]).await;
    finish(ts, &a["a"], failed(ts, &a["a"])).await;
    assert_eq!(status(ts, wf.jobs["b"]).await, JobStatus::Canceled);
    assert_eq!(status(ts, wf.jobs["c"]).await, JobStatus::Canceled);
    let d = claim_keys(ts, &wf, &["d"]).await;
    assert!(d["d"].dependency_results.is_empty(), "a failed: no result");
    finish(ts, &d["d"], completed("d")).await;
    let rec = ts.store.workflow(wf.id).await.unwrap().unwrap();
    assert_eq!(rec.status(), WorkflowStatus::Failed);

    // Canceling a waiting job through the API propagates the same way.
    let wf = ts
        .store
        .enqueue_workflow(
            NewWorkflow::new()
                .job("a", noop(0))
                .job("b", noop(1))
                .depends_on(["a"])
                .job("c", noop(2))
                .depends_on(["b"]),
        )
        .await
        .unwrap();
    match ts.store.request_cancel(wf.jobs["b"]).await.unwrap() {
        CancelOutcome::Canceled(j) => assert_eq!(j.status, JobStatus::Canceled),
        other => panic!("expected canceled, got {other:?}"),
    }
    assert_eq!(status(ts, wf.jobs["c"]).await, JobStatus::Canceled);
    assert_eq!(status(ts, wf.jobs["a"]).await, JobStatus::Queued);
}

/// `ignore` waits for the other dependencies; `run` releases at once.
pub async fn workflow_ignore_and_run_policies(ts: &TestStore) {
    let wf = ts
        .store
        .enqueue_workflow(
            NewWorkflow::new()
                .job("p1", noop(1).max_attempts(1))
                .job("p2", noop(2))
                .job("p3", noop(3))
                .job("x", noop(4))
                .depends_on(["p1", "p2"])
                .on_dependency_failure(DependencyPolicy::Ignore)
                .job("y", noop(5))
                .depends_on(["p1", "p3"])
                .on_dependency_failure(DependencyPolicy::Run),
        )
        .await
        .unwrap();
    let ps = claim_keys(ts, &wf, &["p1", "p2", "p3"]).await;
    finish(ts, &ps["p1"], failed(ts, &ps["p1"])).await;
    assert_eq!(status(ts, wf.jobs["x"]).await, JobStatus::Waiting);
    let y = claim_keys(ts, &wf, &["y"]).await;
    finish(ts, &ps["p2"], completed("p2")).await;
    let x = claim_keys(ts, &wf, &["x"]).await;
    assert_eq!(x["x"].dependency_results.len(), 1);
    // p3 completing later does not release y a second time.
    finish(ts, &ps["p3"], completed("p3")).await;
    assert!(claim_all(&ts.store).await.is_empty());
    finish(ts, &y["y"], completed("y")).await;
    finish(ts, &x["x"], completed("x")).await;
    assert_eq!(status(ts, wf.jobs["y"]).await, JobStatus::Completed);
}

/// `on_complete` runs once all jobs are final; `on_success` only if all completed.
pub async fn workflow_callbacks_run_once(ts: &TestStore) {
    let with_callbacks = |wf: NewWorkflow| {
        wf.on_complete(NewJob::new("echo", json!({ "cb": "complete" })))
            .on_success(NewJob::new("echo", json!({ "cb": "success" })))
    };
    // One job fails: on_complete runs, on_success is canceled.
    let wf = ts
        .store
        .enqueue_workflow(with_callbacks(
            NewWorkflow::new()
                .job("a", noop(1))
                .job("b", noop(2).max_attempts(1)),
        ))
        .await
        .unwrap();
    assert_eq!(
        status(ts, wf.jobs[ON_COMPLETE_KEY]).await,
        JobStatus::Waiting
    );
    let ab = claim_keys(ts, &wf, &["a", "b"]).await;
    finish(ts, &ab["b"], failed(ts, &ab["b"])).await;
    assert_eq!(
        status(ts, wf.jobs[ON_SUCCESS_KEY]).await,
        JobStatus::Canceled
    );
    assert_eq!(
        status(ts, wf.jobs[ON_COMPLETE_KEY]).await,
        JobStatus::Waiting
    );
    finish(ts, &ab["a"], completed("a")).await;
    let cb = claim_keys(ts, &wf, &[ON_COMPLETE_KEY]).await;
    assert_eq!(cb[ON_COMPLETE_KEY].dependency_results.len(), 1);
    finish(ts, &cb[ON_COMPLETE_KEY], completed("cb")).await;
    assert!(claim_all(&ts.store).await.is_empty());
    let rec = ts.store.workflow(wf.id).await.unwrap().unwrap();
    assert_eq!(
        rec.status(),
        WorkflowStatus::Failed,
        "callbacks are not counted"
    );

    // All complete: both callbacks run, once each.
    let wf = ts
        .store
        .enqueue_workflow(with_callbacks(
            NewWorkflow::new().job("a", noop(1)).job("b", noop(2)),
        ))
        .await
        .unwrap();
    let ab = claim_keys(ts, &wf, &["a", "b"]).await;
    ts.store
        .ack(&[
            Ack {
                lease: ab["a"].lease().unwrap(),
                outcome: completed("a"),
            },
            Ack {
                lease: ab["b"].lease().unwrap(),
                outcome: completed("b"),
            },
        ])
        .await
        .unwrap();
    let cbs = claim_keys(ts, &wf, &[ON_COMPLETE_KEY, ON_SUCCESS_KEY]).await;
    assert_eq!(cbs[ON_SUCCESS_KEY].dependency_results.len(), 2);
    assert_eq!(cbs[ON_SUCCESS_KEY].payload, json!({ "cb": "success" }));
    for j in cbs.values() {
        finish(ts, j, completed("cb")).await;
    }
    assert!(claim_all(&ts.store).await.is_empty());
}

/// Retrying the failed job resumes the workflow: what its failure canceled waits
/// again (on_success too), and runs once the retried job completes.
pub async fn workflow_retry_resumes_canceled_dependents(ts: &TestStore) {
    let wf = ts
        .store
        .enqueue_workflow(
            NewWorkflow::new()
                .job("a", noop(0).max_attempts(1))
                .job("b", noop(1))
                .depends_on(["a"])
                .job("c", noop(2))
                .depends_on(["b"])
                .on_success(NewJob::new("echo", json!({}))),
        )
        .await
        .unwrap();
    let a = claim_keys(ts, &wf, &["a"]).await;
    finish(ts, &a["a"], failed(ts, &a["a"])).await;
    for k in ["b", "c", ON_SUCCESS_KEY] {
        assert_eq!(status(ts, wf.jobs[k]).await, JobStatus::Canceled, "{k}");
    }
    let retried = ts.store.retry(wf.jobs["a"]).await.expect("retry");
    assert_eq!(retried.status, JobStatus::Queued);
    for k in ["b", "c", ON_SUCCESS_KEY] {
        assert_eq!(status(ts, wf.jobs[k]).await, JobStatus::Waiting, "{k}");
    }
    let a = claim_keys(ts, &wf, &["a"]).await;
    finish(ts, &a["a"], completed("a")).await;
    let b = claim_keys(ts, &wf, &["b"]).await;
    finish(ts, &b["b"], completed("b")).await;
    let c = claim_keys(ts, &wf, &["c"]).await;
    finish(ts, &c["c"], completed("c")).await;
    let s = claim_keys(ts, &wf, &[ON_SUCCESS_KEY]).await;
    finish(ts, &s[ON_SUCCESS_KEY], completed("s")).await;
    let rec = ts.store.workflow(wf.id).await.unwrap().unwrap();
    assert_eq!(rec.status(), WorkflowStatus::Completed);
}

/// A cycle or an unknown key is refused with the field named, and nothing is written.
pub async fn workflow_invalid_is_refused_whole(ts: &TestStore) {
    let cycle = NewWorkflow::new()
        .job("a", noop(0))
        .depends_on(["b"])
        .job("b", noop(1))
        .depends_on(["a"]);
    match ts.store.enqueue_workflow(cycle).await {
        Err(StoreError::InvalidWorkflow(e)) => assert!(e.field.starts_with("jobs["), "{e}"),
        other => panic!("expected InvalidWorkflow, got {other:?}"),
    }
    let unknown = NewWorkflow::new().job("a", noop(0)).depends_on(["nope"]);
    match ts.store.enqueue_workflow(unknown).await {
        Err(StoreError::InvalidWorkflow(e)) => assert_eq!(e.field, "jobs[0].depends_on[0]"),
        other => panic!("expected InvalidWorkflow, got {other:?}"),
    }
    assert!(ts.store.counts().await.unwrap().is_empty());
    let page = ts
        .store
        .list_workflows(&ListWorkflows {
            limit: 10,
            ..Default::default()
        })
        .await;
    assert!(page.unwrap().workflows.is_empty());
}

/// Cancel stops every job that is not final; listing pages newest first by owner.
pub async fn workflow_cancel_and_list(ts: &TestStore) {
    let mut ids = Vec::new();
    for i in 0..3 {
        let wf = ts
            .store
            .enqueue_workflow(diamond(i).owner(if i == 1 { "bob" } else { "alice" }))
            .await
            .unwrap();
        ids.push(wf);
    }
    let wf = &ids[2];
    let a = claim_all(&ts.store).await;
    assert_eq!(a.len(), 3, "the three A jobs");
    let n = ts.store.cancel_workflow(wf.id).await.expect("cancel");
    assert_eq!(n, 4, "a asked to stop, b c d canceled");
    for k in ["b", "c", "d"] {
        assert_eq!(status(ts, wf.jobs[k]).await, JobStatus::Canceled, "{k}");
    }
    let a2 = a.iter().find(|j| j.id == wf.jobs["a"]).unwrap();
    let ack = ts
        .store
        .ack(&[Ack {
            lease: a2.lease().unwrap(),
            outcome: Outcome::Canceled {
                error: AttemptError {
                    attempt: 1,
                    kind: ErrorKind::Canceled,
                    message: "canceled".into(),
                    at: ts.clock.now(),
                },
            },
        }])
        .await
        .unwrap();
    assert_eq!(ack, [true]);
    let rec = ts.store.workflow(wf.id).await.unwrap().unwrap();
    assert_eq!(rec.counts, vec![(JobStatus::Canceled, 4)]);
    assert!(matches!(ts.store.workflow(Uuid::now_v7()).await, Ok(None)));

    let page = ts
        .store
        .list_workflows(&ListWorkflows {
            owner: Some("alice".into()),
            limit: 1,
            cursor: None,
        })
        .await
        .unwrap();
    assert_eq!(page.workflows.len(), 1);
    assert_eq!(page.workflows[0].id, ids[2].id, "newest first");
    let next = ts
        .store
        .list_workflows(&ListWorkflows {
            owner: Some("alice".into()),
            limit: 1,
            cursor: page.next_cursor,
        })
        .await
        .unwrap();
    assert_eq!(next.workflows[0].id, ids[0].id);
    assert_eq!(next.next_cursor, None);
}

/// A job whose node died on its last attempt fails by lease rescue, and its
/// dependents settle as after any failure (B canceled, C under `run` released).
pub async fn workflow_rescued_final_failure_settles(ts: &TestStore) {
    let wf = ts
        .store
        .enqueue_workflow(
            NewWorkflow::new()
                .job("a", noop(0).max_attempts(1))
                .job("b", noop(1))
                .depends_on(["a"])
                .job("c", noop(2))
                .depends_on(["a"])
                .on_dependency_failure(DependencyPolicy::Run),
        )
        .await
        .unwrap();
    let _held = claim_keys(ts, &wf, &["a"]).await;
    ts.clock.advance(LEASE + Duration::from_secs(1));
    let rescued = ts.store.rescue_expired(10).await.expect("rescue");
    assert_eq!(rescued, vec![wf.jobs["a"]]);
    assert_eq!(status(ts, wf.jobs["a"]).await, JobStatus::Failed);
    assert_eq!(status(ts, wf.jobs["b"]).await, JobStatus::Canceled);
    let c = claim_keys(ts, &wf, &["c"]).await;
    finish(ts, &c["c"], completed("c")).await;
    let rec = ts.store.workflow(wf.id).await.unwrap().unwrap();
    assert_eq!(rec.status(), WorkflowStatus::Failed);
}

/// Pruning keeps the finished jobs of a workflow that still runs (their results still
/// flow); once it finished and its jobs are pruned, the workflow goes too.
pub async fn workflow_prune_keeps_running_workflows(ts: &TestStore) {
    let wf = ts
        .store
        .enqueue_workflow(
            NewWorkflow::new()
                .job("a", noop(0))
                .job("b", noop(1))
                .depends_on(["a"])
                .job("c", noop(2))
                .depends_on(["b"]),
        )
        .await
        .unwrap();
    let a = claim_keys(ts, &wf, &["a"]).await;
    finish(ts, &a["a"], completed("a")).await;
    let plain = ts.store.enqueue(noop(9)).await.unwrap().id;
    let p = claim_all(&ts.store).await;
    assert_eq!(p.len(), 2, "b and the plain job");
    for j in &p {
        finish(ts, j, completed("x")).await;
    }
    ts.clock.advance(Duration::from_secs(3600));
    let later = ts.clock.now();
    let pruned = ts.store.prune(later, 100).await.expect("prune");
    assert_eq!(pruned, 1, "only the plain job: the workflow still runs");
    assert!(ts.store.get(plain).await.unwrap().is_none());
    let c = claim_keys(ts, &wf, &["c"]).await;
    assert_eq!(c["c"].dependency_results["b"], json!({ "from": "x" }));
    finish(ts, &c["c"], completed("c")).await;
    ts.clock.advance(Duration::from_secs(3600));
    let pruned = ts.store.prune(ts.clock.now(), 100).await.expect("prune");
    assert_eq!(pruned, 3);
    // The workflow row goes once its jobs are gone (the same or the next prune).
    let _ = ts.store.prune(ts.clock.now(), 100).await.expect("prune");
    assert!(ts.store.workflow(wf.id).await.unwrap().is_none());
}
