//! Crash recovery with real processes.
//!
//! A `kyu worker` runs `ledger` jobs on a real database and is killed with SIGKILL at
//! random points, and at deterministic points inside a batch ack (failpoints), then
//! restarted. The ledger — appended outside kyu's transactions — is the evidence:
//! no job may be lost, and a job may run twice only if a process died (or stalled)
//! while it was running. Figures (duplicates, kill → re-run seconds) are printed, not
//! asserted: timing budgets belong in benchmarks.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{KyuProcess, TempDir, ledger, wait_until};
use kyu::chaos::ledger::Phase;
use kyu::engine::{JobStatus, NewJob, Store};
use kyu::store::testdb;
use serde_json::json;
use uuid::Uuid;

const JOBS: usize = 2_000;

/// Where the test's database lives.
struct Db {
    url: String,
    store: Arc<dyn Store>,
    _guard: Option<testdb::DbGuard>,
}

async fn sqlite_db(dir: &TempDir) -> Db {
    let url = format!("sqlite://{}", dir.path().join("kyu.db").display());
    let store = kyu::store::open(&url, Default::default())
        .await
        .expect("open sqlite");
    Db {
        url,
        store,
        _guard: None,
    }
}

async fn postgres_db() -> Option<Db> {
    let (url, guard) = testdb::postgres_db().await?;
    let store = kyu::store::open(&url, Default::default())
        .await
        .expect("open postgres");
    Some(Db {
        url,
        store,
        _guard: Some(guard),
    })
}

fn worker_env(
    db: &Db,
    ledger: &std::path::Path,
    extra: &[(&str, &str)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("DATABASE_URL", db.url.clone()),
        ("KYU_LEDGER_PATH", ledger.display().to_string()),
        ("JOB_QUEUE_WORKER_COUNT", "4".into()),
        ("KYU_AUTOSCALE", "false".into()),
        ("KYU_LEASE", "2s".into()),
        ("KYU_RESCUE_INTERVAL", "250ms".into()),
        ("JOB_QUEUE_POLL_INTERVAL", "100ms".into()),
        ("KYU_SHUTDOWN_GRACE", "1s".into()),
    ];
    for (k, v) in extra {
        let key: &'static str = match *k {
            "KYU_FAILPOINTS" => "KYU_FAILPOINTS",
            "JOB_QUEUE_WORKER_COUNT" => "JOB_QUEUE_WORKER_COUNT",
            "KYU_LEASE" => "KYU_LEASE",
            other => panic!("add {other} to worker_env"),
        };
        env.retain(|(ek, _)| *ek != key);
        env.push((key, v.to_string()));
    }
    env
}

fn start_worker(dir: &TempDir, env: &[(&str, String)], n: usize) -> KyuProcess {
    KyuProcess::start(&["worker"], env, dir.path().join(format!("worker-{n}.log")))
}

/// A deterministic spread of run times, 2–30 ms.
fn ledger_jobs(n: usize) -> Vec<NewJob> {
    (0..n)
        .map(|i| NewJob::new("ledger", json!({ "ms": 2 + (i * 7919) % 29 })).max_attempts(20))
        .collect()
}

async fn all_final(store: &dyn Store) -> bool {
    store
        .counts()
        .await
        .map(|c| c.iter().all(|q| q.status.is_final()))
        .unwrap_or(false)
}

struct Kill {
    pid: u32,
    at_ms: i64,
}

async fn crash_rounds(db: Db, tag: &str) {
    let dir = TempDir::new(tag);
    let ledger_path = dir.path().join("ledger.log");
    let ids: Vec<Uuid> = db
        .store
        .enqueue_many(ledger_jobs(JOBS))
        .await
        .expect("enqueue")
        .into_iter()
        .map(|e| e.id)
        .collect();

    let mut kills: Vec<Kill> = Vec::new();
    let mut n = 0;
    // Random kill points: after a varying amount of progress.
    for (round, lines) in [150usize, 420, 90, 300, 220].into_iter().enumerate() {
        n += 1;
        let env = worker_env(&db, &ledger_path, &[]);
        let mut w = start_worker(&dir, &env, n);
        let before = ledger(&ledger_path).len();
        wait_until(
            &format!("round {round} progress"),
            Duration::from_secs(60),
            || {
                let p = ledger_path.clone();
                async move { ledger(&p).len() >= before + lines }
            },
        )
        .await;
        let pid = w.pid();
        w.kill9();
        kills.push(Kill {
            pid,
            at_ms: chrono::Utc::now().timestamp_millis(),
        });
    }
    // Deterministic kill points inside a batch ack.
    for fp in [
        "ack.before_commit=3",
        "ack.after_commit=3",
        "ack.after_commit=1",
    ] {
        n += 1;
        let env = worker_env(&db, &ledger_path, &[("KYU_FAILPOINTS", fp)]);
        let mut w = start_worker(&dir, &env, n);
        let pid = w.pid();
        let st = w
            .wait_exit(Duration::from_secs(60))
            .expect("failpoint aborts the worker");
        assert!(!st.success(), "{fp}: the worker must die, not exit cleanly");
        assert!(w.log_text().contains("failpoint"), "{fp}: {}", w.log_text());
        kills.push(Kill {
            pid,
            at_ms: chrono::Utc::now().timestamp_millis(),
        });
    }
    // A last run finishes everything.
    n += 1;
    let env = worker_env(&db, &ledger_path, &[]);
    let mut w = start_worker(&dir, &env, n);
    let store = db.store.clone();
    wait_until("every job final", Duration::from_secs(120), || {
        let s = store.clone();
        async move { all_final(s.as_ref()).await }
    })
    .await;
    w.signal("TERM");
    w.wait_exit(Duration::from_secs(15))
        .expect("SIGTERM stops the worker");

    // The checker (Jepsen total-queue categories).
    let entries = ledger(&ledger_path);
    let killed: HashSet<u32> = kills.iter().map(|k| k.pid).collect();
    let kill_at: HashMap<u32, i64> = kills.iter().map(|k| (k.pid, k.at_ms)).collect();
    let mut by_job: HashMap<Uuid, Vec<&kyu::chaos::ledger::Entry>> = HashMap::new();
    for e in &entries {
        by_job.entry(e.job).or_default().push(e);
    }
    let known: HashSet<Uuid> = ids.iter().copied().collect();
    let unexpected = by_job.keys().filter(|j| !known.contains(j)).count();
    assert_eq!(unexpected, 0, "runs of jobs never enqueued");

    let mut lost = Vec::new();
    let mut duplicated = 0;
    let mut rerun_delays = Vec::new();
    for id in &ids {
        let job = db.store.get(*id).await.expect("get").expect("job row");
        let runs = by_job.get(id).cloned().unwrap_or_default();
        let ends: Vec<_> = runs.iter().filter(|e| e.phase == Phase::End).collect();
        if job.status != JobStatus::Completed || ends.is_empty() {
            lost.push((*id, job.status, runs.len()));
            continue;
        }
        let starts: Vec<_> = runs.iter().filter(|e| e.phase == Phase::Start).collect();
        if starts.len() > 1 {
            duplicated += 1;
            // Every run but the last was on a process that died.
            for s in &starts[..starts.len() - 1] {
                assert!(
                    killed.contains(&s.pid),
                    "job {id} ran again although its earlier run on pid {} was not killed",
                    s.pid
                );
            }
            for pair in starts.windows(2) {
                if let Some(k) = kill_at.get(&pair[0].pid) {
                    rerun_delays.push((pair[1].at_ms - k).max(0));
                }
            }
        }
        // The stored outcome is that of an attempt that really ended.
        assert!(
            ends.iter().any(|e| e.attempt == job.attempts),
            "job {id}: completed at attempt {} without an end record for it",
            job.attempts
        );
    }
    assert!(
        lost.is_empty(),
        "lost jobs: {:?}",
        &lost[..lost.len().min(10)]
    );
    rerun_delays.sort_unstable();
    let pct = |p: f64| {
        rerun_delays
            .get(((rerun_delays.len() as f64 - 1.0) * p) as usize)
            .copied()
    };
    eprintln!(
        "crash[{tag}]: jobs={JOBS} kills={} lost=0 duplicated_jobs={duplicated} \
         kill_to_rerun_ms p50={:?} max={:?}",
        kills.len(),
        pct(0.5),
        rerun_delays.last()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_failpoints_lose_nothing_on_sqlite() {
    let dir = TempDir::new("crash-sqlite-db");
    let db = sqlite_db(&dir).await;
    crash_rounds(db, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_failpoints_lose_nothing_on_postgres() {
    let Some(db) = postgres_db().await else {
        return;
    };
    crash_rounds(db, "postgres").await;
}

/// A worker stopped (SIGSTOP) past its lease: its job is rescued and run elsewhere,
/// and its late ack, when it wakes, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zombie_worker_is_fenced() {
    let dir = TempDir::new("zombie");
    // Several nodes share a server database in production, and a process stopped while
    // it holds SQLite's single write lock stops every other process on that file: the
    // zombie case is a PostgreSQL case (SQLite only when no server is configured).
    let db = match postgres_db().await {
        Some(db) => db,
        None => sqlite_db(&dir).await,
    };
    let ledger_path = dir.path().join("ledger.log");
    let id = db
        .store
        .enqueue(NewJob::new("ledger", json!({ "ms": 3000 })))
        .await
        .expect("enqueue")
        .id;
    let env = worker_env(
        &db,
        &ledger_path,
        &[("JOB_QUEUE_WORKER_COUNT", "1"), ("KYU_LEASE", "1s")],
    );
    let a = start_worker(&dir, &env, 1);
    wait_until("A starts the job", Duration::from_secs(90), || {
        let p = ledger_path.clone();
        async move { !ledger(&p).is_empty() }
    })
    .await;
    a.signal("STOP");
    let stopped_at = Instant::now();
    let b = start_worker(&dir, &env, 2);
    let store = db.store.clone();
    wait_until("B completes the job", Duration::from_secs(90), || {
        let s = store.clone();
        async move { matches!(s.get(id).await, Ok(Some(j)) if j.status == JobStatus::Completed) }
    })
    .await;
    let done = db.store.get(id).await.unwrap().unwrap();
    assert_eq!(done.result, Some(json!({ "pid": b.pid() })));
    assert_eq!(done.attempts, 2);
    a.signal("CONT");
    // Give A its chance to write; whatever it does must not change the outcome.
    wait_until("A notices its lost lease", Duration::from_secs(90), || {
        let log = a.log_text();
        async move { log.contains("lease lost") || log.contains("fenced") }
    })
    .await;
    let after = db.store.get(id).await.unwrap().unwrap();
    assert_eq!(after, done, "the zombie changed nothing");
    let starts: Vec<u32> = ledger(&ledger_path)
        .iter()
        .filter(|e| e.phase == Phase::Start)
        .map(|e| e.pid)
        .collect();
    assert_eq!(starts, vec![a.pid(), b.pid()]);
    eprintln!(
        "zombie: stopped for {:?}; rerun on B, late ack fenced",
        stopped_at.elapsed()
    );
}

/// SIGTERM: claiming stops, running jobs get the grace period, then every unfinished
/// job is given back at once (queued, no lease), not after its lease runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_unfinished_jobs_at_once() {
    let dir = TempDir::new("sigterm");
    let db = sqlite_db(&dir).await;
    let ledger_path = dir.path().join("ledger.log");
    let jobs: Vec<NewJob> = (0..10)
        .map(|_| NewJob::new("ledger", json!({ "ms": 60_000 })))
        .collect();
    db.store.enqueue_many(jobs).await.expect("enqueue");
    let env = worker_env(&db, &ledger_path, &[("KYU_LEASE", "60s")]);
    let mut w = start_worker(&dir, &env, 1);
    wait_until("4 jobs running", Duration::from_secs(90), || {
        let p = ledger_path.clone();
        async move { ledger(&p).len() >= 4 }
    })
    .await;
    let t = Instant::now();
    w.signal("TERM");
    let st = w
        .wait_exit(Duration::from_secs(15))
        .expect("worker exits after the grace period");
    assert!(st.success(), "graceful stop exits 0: {}", w.log_text());
    let page = db
        .store
        .list(&kyu::engine::store::ListJobs {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.jobs.len(), 10);
    for j in &page.jobs {
        assert_eq!(j.status, JobStatus::Queued, "job {} given back", j.id);
        assert_eq!(j.lease_owner, None);
    }
    let started = page.jobs.iter().filter(|j| j.attempts == 1).count();
    assert_eq!(
        started, 4,
        "the 4 started attempts count, prefetched ones do not"
    );
    assert!(
        ledger(&ledger_path).iter().all(|e| e.phase == Phase::Start),
        "no job ran to its end"
    );
    eprintln!(
        "sigterm: exited {:?} after SIGTERM with 10 jobs given back",
        t.elapsed()
    );
}
