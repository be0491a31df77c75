//! Leader-only maintenance in the engine (issue 9), over the in-memory store and a
//! manual clock: a follower's Scheduler rescues nothing and enqueues no cron tick; once
//! elected it rescues expired leases and the jobs of dead nodes, and enqueues due ticks.

use std::sync::Arc;
use std::time::Duration;

use kyu_actors::store::{ClaimParams, ListJobs};
use kyu_actors::testkit::{ManualClock, MemoryStore};
use kyu_actors::{
    CronEntry, Engine, EngineConfig, EngineEvent, JobStatus, Leadership, NewJob, NodeInfo, Store,
};
use serde_json::json;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

const DEADLINE: Duration = Duration::from_secs(30);

async fn until(
    events: &mut UnboundedReceiver<EngineEvent>,
    what: &str,
    mut f: impl FnMut(&EngineEvent) -> bool,
) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) if f(&e) => return,
            Ok(Some(_)) => {}
            _ => panic!("timed out waiting for {what}"),
        }
    }
}

async fn claim_as(store: &MemoryStore, owner: &str) -> kyu_actors::Job {
    store
        .enqueue(NewJob::new("noop", json!({})).queue("elsewhere"))
        .await
        .unwrap();
    let mut jobs = store
        .claim(&ClaimParams {
            owner: owner.into(),
            limit: 1,
            lease: Duration::from_secs(30),
            aged_before: None,
            types: vec!["noop".into()],
            queues: None,
        })
        .await
        .unwrap();
    jobs.pop().expect("claimed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_rescues_and_enqueues_cron_ticks() {
    let clock = Arc::new(ManualClock::fixed());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    // Jobs claimed by other (now dead) nodes before this engine starts.
    let dead = NodeInfo {
        id: "dead-node".into(),
        host: "h".into(),
        version: "0".into(),
        role: "worker".into(),
        pool_size: 1,
        started_at: kyu_actors::Clock::now(&*clock),
    };
    store.heartbeat(&dead).await.unwrap();
    let orphan = claim_as(&store, "dead-node").await;
    let expired = claim_as(&store, "unregistered-node").await;
    // Nobody else may claim them back in this test: pause their queue.
    store.set_queue_paused("elsewhere", true).await.unwrap();

    let leadership = Leadership::elected();
    let (tx, mut events) = unbounded_channel();
    let cfg = EngineConfig {
        workers: 1,
        autoscale: false,
        poll_interval: Duration::from_millis(50),
        rescue_interval: Duration::from_millis(50),
        cron_interval: Duration::from_millis(50),
        node_dead_after: Some(Duration::from_secs(10)),
        ..EngineConfig::default()
    };
    let engine = Engine::builder()
        .store(store.clone())
        .clock(clock.clone())
        .config(cfg)
        .events(tx)
        .leadership(leadership.clone())
        .cron(vec![
            CronEntry::new("every-second", "* * * * * *", "noop", json!({})).unwrap(),
        ])
        .start()
        .await
        .unwrap();
    assert!(!engine.is_leader());

    // The dead node is silent 11 s, the other lease expired: a follower leaves both.
    clock.advance(Duration::from_secs(31));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        store.get(orphan.id).await.unwrap().unwrap().status,
        JobStatus::Running
    );
    assert_eq!(
        store.get(expired.id).await.unwrap().unwrap().status,
        JobStatus::Running
    );
    assert_eq!(store.cron_last_tick("every-second").await.unwrap(), None);

    // Elected: both are rescued, and cron starts from now.
    leadership.grant(tokio::time::Instant::now() + Duration::from_secs(3600));
    assert!(engine.is_leader());
    let (mut orphans, mut rescued) = (false, false);
    until(&mut events, "both rescues", |e| {
        match e {
            EngineEvent::RescuedOrphans(1) => orphans = true,
            EngineEvent::Rescued(1) => rescued = true,
            _ => {}
        }
        orphans && rescued
    })
    .await;
    let o = store.get(orphan.id).await.unwrap().unwrap();
    assert_eq!(o.status, JobStatus::Queued);
    assert!(o.errors[0].message.contains("node died"), "{:?}", o.errors);
    // A new entry starts at its next tick after the leader first looks at it, which a
    // loaded machine may do late: let seconds pass until a tick is enqueued.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        clock.advance(Duration::from_secs(1));
        let tick = tokio::time::timeout(Duration::from_millis(200), async {
            while let Some(e) = events.recv().await {
                if matches!(&e, EngineEvent::CronEnqueued(name, _) if name == "every-second") {
                    return true;
                }
            }
            false
        })
        .await;
        match tick {
            Ok(true) => break,
            Ok(false) => panic!("the engine stopped"),
            Err(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for a cron tick"
            ),
        }
    }

    // Stepping down stops cron: a later tick waits for the next leader.
    leadership.revoke("test");
    // A cron pass that began before the revoke may still finish its write.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cron_jobs = || async {
        let page = store
            .list(&ListJobs {
                job_type: Some("noop".into()),
                limit: 100,
                ..ListJobs::default()
            })
            .await
            .unwrap();
        page.jobs.iter().filter(|j| j.unique_key.is_some()).count()
    };
    let last = store.cron_last_tick("every-second").await.unwrap();
    let enqueued = cron_jobs().await;
    assert!(enqueued >= 1);
    clock.advance(Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.cron_last_tick("every-second").await.unwrap(), last);
    assert_eq!(cron_jobs().await, enqueued);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}
