//! `summarize` through the real binary: `kyu serve` on SQLite talking to fake Groq and
//! Anthropic servers on loopback (`common::fake_providers`). Proves the fallback order,
//! that a 429 cools down only its provider, what `AI_FALLBACK_ENABLED=false` does with a
//! 429 and a 401, that keys never reach results, errors or logs, the offline summary in
//! English and Japanese, 422s for bad payloads, and that the Groq rate limit holds
//! while Claude-bound and offline jobs go on.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::api::Server;
use common::fake_providers::{FakeProvider, Reply};
use serde_json::{Value, json};

const GROQ_KEY: &str = "gsk-test-0123456789-groq-secret";
const CLAUDE_KEY: &str = "sk-ant-test-9876543210-claude-secret";

const EN: &str = "Kyu is a durable job engine written in Rust. It keeps every job in a \
    database, so nothing is lost when a process dies. Jobs that fail are retried with \
    exponential back-off. Summaries are written by an AI provider chain that falls back \
    from Groq to Claude to an offline extract. The offline extract takes the leading \
    sentences of the article. This last sentence is well past three hundred characters.";

const JA: &str = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。\
    何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している。\
    吾輩はここで始めて人間というものを見た。しかもあとで聞くとそれは書生という\
    人間中で一番獰悪な種族であったそうだ。この書生というのは時々我々を捕えて煮て\
    食うという話である。しかしその当時は何という考もなかったから別段恐しいとも\
    思わなかった。ただ彼の掌に載せられてスーと持ち上げられた時何だかフワフワした\
    感じがあったばかりである。掌の上で少し落ちついて書生の顔を見たのがいわゆる\
    人間というものの見始であろう。";

/// The env pointing kyu at both fakes, plus `extra`.
fn env_for(
    groq: &FakeProvider,
    claude: &FakeProvider,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut env = groq.env();
    env.extend(claude.env());
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

async fn fakes() -> (FakeProvider, FakeProvider) {
    (
        FakeProvider::groq(GROQ_KEY).await,
        FakeProvider::claude(CLAUDE_KEY).await,
    )
}

/// Enqueues a `summarize` job; `extra` adds top-level fields (provider, queue, …).
async fn summarize(kyu: &Server, payload: Value, extra: Value) -> String {
    let mut body = json!({"type": "summarize", "payload": payload});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    kyu.create(None, body).await
}

/// Runs one job to completion and returns its result.
async fn completed(kyu: &Server, payload: Value, extra: Value) -> Value {
    let id = summarize(kyu, payload, extra).await;
    kyu.wait_status(&id, None, "completed").await["result"].clone()
}

/// `[(provider, outcome)]` of a result's chain.
fn chain(result: &Value) -> Vec<(String, String)> {
    result["chain"]
        .as_array()
        .expect("chain")
        .iter()
        .map(|a| {
            (
                a["provider"].as_str().unwrap_or("").to_owned(),
                a["outcome"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn steps(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(p, o)| (p.to_string(), o.to_string()))
        .collect()
}

fn assert_no_keys(what: &str, text: &str) {
    for key in [GROQ_KEY, CLAUDE_KEY] {
        assert!(!text.contains(key), "a key leaked into {what}: {text}");
    }
}

#[tokio::test]
async fn the_chain_falls_back_in_order_and_counts_one_request_per_step() {
    let (groq, claude) = fakes().await;
    let kyu = Server::start(
        "sum-order",
        &env_for(&groq, &claude, &[("AI_REQUEST_TIMEOUT", "1s")]),
    )
    .await;

    // Both providers fail: the offline summary answers, after one request to each.
    groq.reply(Reply::ServerError);
    claude.reply(Reply::ServerError);
    let r = completed(&kyu, json!({"text": EN, "article_id": 42}), json!({})).await;
    assert_eq!(r["provider"], "extractive");
    assert_eq!(r["article_id"], 42);
    assert_eq!(
        chain(&r),
        steps(&[
            ("groq", "failed"),
            ("claude", "failed"),
            ("extractive", "ok")
        ])
    );
    assert!(r["chain"][0]["detail"].as_str().unwrap().contains("500"));
    assert!(EN.starts_with(r["summary"].as_str().unwrap()));
    assert_eq!((groq.hits(), claude.hits()), (1, 1));

    // Groq sends malformed JSON: Claude answers.
    groq.reply(Reply::Malformed);
    claude.reply(Reply::Summary("claude summary".into()));
    let r = completed(&kyu, json!({"text": EN}), json!({})).await;
    assert_eq!(r["provider"], "claude");
    assert_eq!(r["summary"], "claude summary");
    assert_eq!(r["model"], "fake-claude");
    assert_eq!(r["token_usage"], json!({"input": 120, "output": 12}));
    assert_eq!(chain(&r), steps(&[("groq", "failed"), ("claude", "ok")]));
    assert_eq!((groq.hits(), claude.hits()), (2, 2));

    // Groq answers slower than AI_REQUEST_TIMEOUT: Claude answers.
    groq.reply(Reply::Slow(Duration::from_secs(10)));
    let r = completed(&kyu, json!({"text": EN}), json!({})).await;
    assert_eq!(r["provider"], "claude");
    assert!(
        r["chain"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{r}"
    );
    assert_eq!((groq.hits(), claude.hits()), (3, 3));

    // Groq is fine: it answers, Claude is not asked.
    groq.reply(Reply::Summary("groq summary".into()));
    let r = completed(&kyu, json!({"text": EN, "language": "en"}), json!({})).await;
    assert_eq!(r["provider"], "groq");
    assert_eq!(r["model"], "fake-llama");
    assert_eq!(r["language"], "en");
    assert_eq!(chain(&r), steps(&[("groq", "ok")]));
    assert_eq!((groq.hits(), claude.hits()), (4, 3));
    assert_eq!(groq.bad_requests() + claude.bad_requests(), 0);

    // Every call is counted by provider and outcome.
    let metrics = kyu
        .http
        .get(kyu.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |provider: &str, outcome: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with("kyu_provider_requests_total{"))
            .filter(|l| l.contains(&format!("provider=\"{provider}\"")))
            .filter(|l| l.contains(&format!("outcome=\"{outcome}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert_eq!(count("groq", "retryable"), 3.0, "{metrics}");
    assert_eq!(count("groq", "ok"), 1.0);
    assert_eq!(count("claude", "retryable"), 1.0);
    assert_eq!(count("claude", "ok"), 2.0);
}

#[tokio::test]
async fn a_429_cools_down_only_that_provider() {
    let (groq, claude) = fakes().await;
    let kyu = Server::start("sum-cool", &env_for(&groq, &claude, &[])).await;
    groq.reply(Reply::RateLimited {
        retry_after_secs: 120,
    });

    let r = completed(&kyu, json!({"text": EN}), json!({})).await;
    assert_eq!(r["provider"], "claude");
    assert_eq!(
        chain(&r),
        steps(&[("groq", "rate_limited"), ("claude", "ok")])
    );
    assert_eq!(groq.hits(), 1);

    // While Groq cools down: a Groq-bound job waits; chain, Claude-bound and offline
    // jobs complete; Groq gets no request.
    let groq_bound = summarize(
        &kyu,
        json!({"text": EN, "providers": ["groq"]}),
        json!({"provider": "groq"}),
    )
    .await;
    for _ in 0..3 {
        let r = completed(&kyu, json!({"text": EN}), json!({})).await;
        assert_eq!(r["provider"], "claude");
        assert_eq!(r["chain"][0]["outcome"], "rate_limited");
        let r = completed(&kyu, json!({"text": EN}), json!({"provider": "claude"})).await;
        assert_eq!(chain(&r), steps(&[("claude", "ok")]));
        let r = completed(
            &kyu,
            json!({"text": JA, "providers": ["extractive"]}),
            json!({}),
        )
        .await;
        assert_eq!(r["provider"], "extractive");
    }
    assert_eq!(groq.hits(), 1, "Groq was called during its cool-down");
    let job = kyu
        .get(&format!("/api/v1/jobs/{groq_bound}"), None)
        .await
        .body;
    assert!(
        matches!(job["status"].as_str(), Some("queued" | "scheduled")),
        "{job}"
    );
    assert_eq!(
        job["attempts"], 0,
        "the Groq-bound job must not have run: {job}"
    );
}

#[tokio::test]
async fn without_fallback_a_401_fails_for_good_and_a_429_reschedules() {
    let (groq, claude) = fakes().await;
    let kyu = Server::start(
        "sum-nofallback",
        &env_for(
            &groq,
            &claude,
            &[("AI_FALLBACK_ENABLED", "false"), ("KYU_LOG", "debug")],
        ),
    )
    .await;

    groq.reply(Reply::Unauthorized);
    let id = summarize(&kyu, json!({"text": EN}), json!({})).await;
    let job = kyu.wait_status(&id, None, "failed").await;
    assert_eq!(job["attempts"], 1, "{job}");
    assert_eq!(job["error"]["kind"], "non_retryable");
    let message = job["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("401") && message.contains("[redacted]"),
        "{message}"
    );
    assert_no_keys("a job error", &job.to_string());
    assert_eq!((groq.hits(), claude.hits()), (1, 0));

    groq.reply(Reply::RateLimited {
        retry_after_secs: 120,
    });
    let id = summarize(&kyu, json!({"text": EN}), json!({})).await;
    let job = kyu.wait_status(&id, None, "scheduled").await;
    assert_eq!(job["error"]["kind"], "rate_limit", "{job}");
    assert_eq!(job["attempts"], 1);
    let run_at: chrono::DateTime<chrono::Utc> = job["run_at"].as_str().unwrap().parse().unwrap();
    let wait = run_at - chrono::Utc::now();
    assert!(wait.num_seconds() > 60, "rescheduled at Retry-After: {job}");
    assert_eq!((groq.hits(), claude.hits()), (2, 0));
    assert_no_keys("kyu's log", &kyu.log_text());
}

#[tokio::test]
async fn keys_never_reach_results_errors_or_logs() {
    let (groq, claude) = fakes().await;
    let kyu = Server::start(
        "sum-keys",
        &env_for(&groq, &claude, &[("KYU_LOG", "trace,sqlx=warn")]),
    )
    .await;
    groq.reply(Reply::Unauthorized);
    claude.reply(Reply::Unauthorized);

    let r = completed(&kyu, json!({"text": EN}), json!({})).await;
    assert_eq!(
        chain(&r),
        steps(&[
            ("groq", "failed"),
            ("claude", "failed"),
            ("extractive", "ok")
        ])
    );
    assert!(
        r["chain"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("[redacted]")
    );
    assert_no_keys("a result", &r.to_string());

    let id = summarize(
        &kyu,
        json!({"text": EN, "providers": ["groq", "claude"]}),
        json!({"max_retries": 0}),
    )
    .await;
    let job = kyu.wait_status(&id, None, "failed").await;
    assert_eq!(job["error"]["kind"], "non_retryable", "{job}");
    assert_no_keys("a job error", &job.to_string());

    let log = kyu.log_text();
    assert!(log.contains("provider call"), "debug logs were on");
    assert_no_keys("kyu's log", &log);
}

#[tokio::test]
async fn offline_summaries_work_without_keys_in_english_and_japanese() {
    // No provider configured: not even a base URL that could be reached.
    let kyu = Server::start("sum-offline", &[]).await;

    let r = completed(&kyu, json!({"text": EN, "article_id": "a-1"}), json!({})).await;
    assert_eq!(r["provider"], "extractive");
    assert_eq!(r["language"], "en");
    assert_eq!(r["article_id"], "a-1");
    assert_eq!(
        chain(&r),
        steps(&[
            ("groq", "skipped"),
            ("claude", "skipped"),
            ("extractive", "ok")
        ])
    );
    let summary = r["summary"].as_str().unwrap();
    assert!(
        EN.starts_with(summary) && summary.ends_with('.'),
        "{summary}"
    );
    assert!((150..=450).contains(&summary.chars().count()), "{summary}");
    assert!(!summary.contains("This last sentence"));

    let r = completed(&kyu, json!({"text": JA, "length": "short"}), json!({})).await;
    assert_eq!(r["language"], "ja");
    let summary = r["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("吾輩は猫である。") && summary.ends_with('。'),
        "{summary}"
    );
    assert!(summary.chars().count() <= 225, "{summary}");
    assert!(summary.chars().count() < JA.chars().count());
}

#[tokio::test]
async fn a_url_is_fetched_then_summarized() {
    let page = wiremock::MockServer::start().await;
    let paragraphs: String = EN
        .split(". ")
        .map(|s| format!("<p>{s}. {s}. {s}.</p>\n"))
        .collect();
    let html = format!(
        "<!doctype html><html><head><title>Kyu</title></head><body><nav>Home | About</nav>\
         <article><h1>Kyu</h1>{paragraphs}</article><footer>© kyu</footer></body></html>"
    );
    wiremock::Mock::given(wiremock::matchers::path("/article"))
        .respond_with(
            wiremock::ResponseTemplate::new(200).set_body_raw(html, "text/html; charset=utf-8"),
        )
        .mount(&page)
        .await;
    let kyu = Server::start("sum-url", &[("KYU_FETCH_ALLOW_PRIVATE", "true".to_owned())]).await;
    let url = format!("{}/article", page.uri());
    let r = completed(&kyu, json!({"url": url, "article_id": 9}), json!({})).await;
    assert_eq!(r["provider"], "extractive");
    assert_eq!(r["article_id"], 9);
    let summary = r["summary"].as_str().unwrap();
    assert!(summary.contains("Kyu is a durable job engine"), "{r}");
    assert!(!summary.contains("Home | About"), "{r}");
}

#[tokio::test]
async fn bad_payloads_are_422_naming_the_field_and_summaries_default_to_priority_7() {
    let kyu = Server::start("sum-422", &[]).await;
    for (payload, field) in [
        (json!({}), "payload.text"),
        (json!({"text": ""}), "payload.text"),
        (json!({"url": "ftp://example.com/a"}), "payload.url"),
        (json!({"text": "x", "length": "huge"}), "payload.length"),
        (
            json!({"text": "x", "language": "japanese"}),
            "payload.language",
        ),
        (
            json!({"text": "x", "providers": ["groq", "gpt"]}),
            "payload.providers[1]",
        ),
        (
            json!({"text": "x", "article_id": [1]}),
            "payload.article_id",
        ),
    ] {
        let a = kyu
            .post(
                "/api/v1/jobs",
                None,
                json!({"type": "summarize", "payload": payload}),
            )
            .await;
        assert_eq!(a.status.as_u16(), 422, "{payload}: {}", a.body);
        assert_eq!(a.code(), "invalid_payload", "{}", a.body);
        assert_eq!(a.field(), field, "{}", a.body);
    }
    let id = summarize(&kyu, json!({"text": EN}), json!({})).await;
    let job = kyu.get(&format!("/api/v1/jobs/{id}"), None).await.body;
    assert_eq!(job["priority"], 7);
}

/// Counts per queue and status from `GET /api/v1/queues`.
async fn queue_counts(kyu: &Server) -> HashMap<String, Value> {
    let a = kyu.get("/api/v1/queues", None).await;
    a.body["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .map(|q| {
            (
                q["name"].as_str().unwrap_or("").to_owned(),
                q["counts"].clone(),
            )
        })
        .collect()
}

fn done(counts: &HashMap<String, Value>, queue: &str) -> u64 {
    counts
        .get(queue)
        .and_then(|c| c["completed"].as_u64())
        .unwrap_or(0)
}

fn failed(counts: &HashMap<String, Value>) -> u64 {
    counts.values().filter_map(|c| c["failed"].as_u64()).sum()
}

/// `n` jobs in turn Groq-bound, Claude-bound and offline (queues name the kind).
async fn enqueue_mix(kyu: &Server, groq_n: usize, claude_n: usize, offline_n: usize) {
    let mut jobs = Vec::new();
    for i in 0..groq_n.max(claude_n).max(offline_n) {
        if i < groq_n {
            jobs.push(
                json!({"type": "summarize", "queue": "groq-bound", "provider": "groq",
                "payload": {"text": EN, "providers": ["groq"], "article_id": i}}),
            );
        }
        if i < claude_n {
            jobs.push(
                json!({"type": "summarize", "queue": "claude-bound", "provider": "claude",
                "payload": {"text": EN, "article_id": i}}),
            );
        }
        if i < offline_n {
            jobs.push(json!({"type": "summarize", "queue": "offline",
                "payload": {"text": JA, "providers": ["extractive"], "article_id": i}}));
        }
    }
    for chunk in jobs.chunks(500) {
        let a = kyu
            .post("/api/v1/jobs/batch", None, json!({"jobs": chunk}))
            .await;
        assert_eq!(a.status.as_u16(), 201, "{}", a.body);
    }
}

/// Most requests in any window of `window` among `times` (sorted).
fn max_in_window(times: &[Instant], window: Duration) -> usize {
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// The upper bound a bucket of `per_minute`/`burst` allows over `span`.
fn bucket_bound(per_minute: u32, burst: u32, span: Duration) -> f64 {
    f64::from(burst) + f64::from(per_minute) / 60.0 * span.as_secs_f64() + 1.0
}

#[tokio::test]
async fn the_groq_limit_holds_while_claude_bound_and_offline_jobs_go_on() {
    let (groq, claude) = fakes().await;
    let kyu = Server::start(
        "sum-limit",
        &env_for(
            &groq,
            &claude,
            &[
                ("KYU_RATE_LIMITS", "groq=60/5,claude=6000/100"),
                ("JOB_QUEUE_WORKER_COUNT", "20"),
            ],
        ),
    )
    .await;
    let started = Instant::now();
    enqueue_mix(&kyu, 50, 50, 50).await;

    let deadline = started + Duration::from_secs(60);
    let others_done = loop {
        let c = queue_counts(&kyu).await;
        assert_eq!(failed(&c), 0, "{c:?}");
        if done(&c, "claude-bound") == 50 && done(&c, "offline") == 50 {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "Claude-bound/offline jobs stalled: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        done(&others_done, "groq-bound") < 50,
        "Claude-bound and offline jobs must not wait behind Groq: {others_done:?}"
    );
    while started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let times = groq.hit_times();
    let span = times.last().unwrap().duration_since(times[0]);
    let bound = bucket_bound(60, 5, span);
    println!(
        "groq: {} requests over {span:?} (bound {bound:.1}); claude: {}",
        times.len(),
        claude.hits()
    );
    assert!((times.len() as f64) <= bound, "{} > {bound}", times.len());
    assert!(times.len() >= 5, "Groq-bound jobs made no progress");
    assert_eq!(claude.hits(), 50);
    assert_eq!(groq.bad_requests() + claude.bad_requests(), 0);
}

/// The run: 1,000 jobs, Groq at 100/min (burst 10). Prints Groq requests per
/// minute and when the Claude-bound and offline jobs were all done. About 4 minutes.
#[tokio::test]
#[ignore = "takes minutes: cargo test --test summarize -- --ignored --nocapture"]
async fn thousand_jobs_with_groq_at_100_per_minute() {
    const GROQ_N: usize = 300;
    const CLAUDE_N: usize = 350;
    const OFFLINE_N: usize = 350;
    let (groq, claude) = fakes().await;
    let kyu = Server::start(
        "sum-1000",
        &env_for(
            &groq,
            &claude,
            &[
                ("KYU_RATE_LIMITS", "groq=100/10,claude=6000/100"),
                ("JOB_QUEUE_WORKER_COUNT", "20"),
            ],
        ),
    )
    .await;
    let started = Instant::now();
    enqueue_mix(&kyu, GROQ_N, CLAUDE_N, OFFLINE_N).await;
    println!("enqueued 1000 jobs in {:?}", started.elapsed());

    let deadline = started + Duration::from_secs(420);
    let (mut claude_at, mut offline_at, mut groq_at) = (None, None, None);
    loop {
        let c = queue_counts(&kyu).await;
        assert_eq!(failed(&c), 0, "{c:?}");
        let t = started.elapsed();
        if claude_at.is_none() && done(&c, "claude-bound") == CLAUDE_N as u64 {
            claude_at = Some(t);
            println!(
                "all {CLAUDE_N} Claude-bound jobs done at {t:?} (groq-bound done: {})",
                done(&c, "groq-bound")
            );
        }
        if offline_at.is_none() && done(&c, "offline") == OFFLINE_N as u64 {
            offline_at = Some(t);
            println!(
                "all {OFFLINE_N} offline jobs done at {t:?} (groq-bound done: {})",
                done(&c, "groq-bound")
            );
        }
        if groq_at.is_none() && done(&c, "groq-bound") == GROQ_N as u64 {
            groq_at = Some(t);
            println!("all {GROQ_N} Groq-bound jobs done at {t:?}");
        }
        if claude_at.is_some() && offline_at.is_some() && groq_at.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "stalled: {c:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let times = groq.hit_times();
    let first = times[0];
    let mut per_minute: Vec<usize> = Vec::new();
    for t in &times {
        let minute = (t.duration_since(first).as_secs() / 60) as usize;
        if per_minute.len() <= minute {
            per_minute.resize(minute + 1, 0);
        }
        per_minute[minute] += 1;
    }
    for (m, n) in per_minute.iter().enumerate() {
        println!("groq minute {m}: {n} requests");
    }
    let busiest = max_in_window(&times, Duration::from_secs(60));
    println!(
        "groq: {} requests, busiest 60 s window {busiest}; claude: {} requests",
        times.len(),
        claude.hits()
    );
    assert!(busiest as f64 <= bucket_bound(100, 10, Duration::from_secs(60)));
    assert_eq!(times.len(), GROQ_N);
    assert!(claude_at.unwrap() < groq_at.unwrap() && offline_at.unwrap() < groq_at.unwrap());
}
