//! Who may do what, over HTTP with tokens: admin sees everything; a user sees, cancels
//! and retries only its own jobs (another's answer 404 like a missing id) and only the
//! kind and message of errors; no token or a wrong one is a 401; queue control is
//! admin-only. Without tokens kyu will not listen beyond loopback.

mod common;

use common::api::{Server, Token};
use common::{KyuProcess, TempDir};
use kyu::api::auth::Role;
use reqwest::StatusCode;
use serde_json::json;

struct World {
    s: Server,
    admin: Token,
    alice: Token,
    bob: Token,
}

async fn world() -> World {
    let admin = Token::new("ops", Role::Admin);
    let alice = Token::new("alice", Role::User);
    let bob = Token::new("bob", Role::User);
    let tokens = [&admin, &alice, &bob]
        .iter()
        .map(|t| t.line.clone())
        .collect::<Vec<_>>()
        .join(",");
    let s = Server::start("api-access", &[("KYU_API_TOKENS", tokens)]).await;
    World {
        s,
        admin,
        alice,
        bob,
    }
}

#[tokio::test]
async fn the_ownership_matrix() {
    let World {
        s,
        admin,
        alice,
        bob,
    } = world().await;
    let nobody = Token {
        secret: "kyu_not_a_token".into(),
        line: String::new(),
    };

    // Create: a token is needed; the job belongs to its holder.
    for t in [None, Some(&nobody)] {
        let a = s.post("/api/v1/jobs", t, json!({"type": "echo"})).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
        assert_eq!(a.code(), "unauthorized");
        assert_eq!(
            a.headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer")
        );
    }
    let mine = s
        .create(Some(&alice), json!({"type": "echo", "delay_seconds": 600}))
        .await;
    let failing = s
        .create(
            Some(&alice),
            json!({"type": "http", "payload": {"url": "http://127.0.0.1:9/"}}),
        )
        .await;
    let bobs = s
        .create(Some(&bob), json!({"type": "echo", "delay_seconds": 600}))
        .await;
    let ops = s
        .create(Some(&admin), json!({"type": "echo", "delay_seconds": 600}))
        .await;

    // Read: owner and admin yes; another user gets the answer a missing id gets.
    let path = format!("/api/v1/jobs/{mine}");
    let a = s.get(&path, Some(&alice)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["owner"], "alice");
    assert_eq!(s.get(&path, Some(&admin)).await.status, StatusCode::OK);
    let hidden = s.get(&path, Some(&bob)).await;
    let missing = s
        .get(
            "/api/v1/jobs/01234567-89ab-7def-8123-456789abcdef",
            Some(&bob),
        )
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    assert_eq!(hidden.body, missing.body, "a hidden job must look missing");
    assert_eq!(s.get(&path, None).await.status, StatusCode::UNAUTHORIZED);

    // List: a user sees its own only, whatever owner filter it sends.
    let ids = |a: &common::api::Answer| -> Vec<String> {
        a.body["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j["job_id"].as_str().expect("id").to_owned())
            .collect()
    };
    let mut alices = ids(&s.get("/api/v1/jobs", Some(&alice)).await);
    alices.sort();
    let mut want = vec![mine.clone(), failing.clone()];
    want.sort();
    assert_eq!(alices, want);
    assert_eq!(
        ids(&s.get("/api/v1/jobs?owner=bob", Some(&alice)).await).len(),
        2,
        "owner filter must not widen a user's view"
    );
    assert_eq!(ids(&s.get("/api/v1/jobs", Some(&admin)).await).len(), 4);
    assert_eq!(
        ids(&s.get("/api/v1/jobs?owner=bob", Some(&admin)).await),
        vec![bobs.clone()]
    );
    assert_eq!(
        s.get("/api/v1/jobs", None).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Errors: a user sees kind and message; an admin also attempt and time.
    let user_view = s.wait_status(&failing, Some(&alice), "failed").await;
    let err = user_view["error"].as_object().expect("error");
    let mut keys: Vec<_> = err.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["kind", "message"]);
    let admin_view = s
        .get(&format!("/api/v1/jobs/{failing}"), Some(&admin))
        .await;
    assert!(
        admin_view.body["error"]["attempt"].is_u64(),
        "{}",
        admin_view.body
    );
    assert!(admin_view.body["error"]["at"].is_string());

    // Cancel and retry: another user's job is not found; the owner's works.
    let c = s
        .post(
            &format!("/api/v1/jobs/{bobs}/cancel"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(c.status, StatusCode::NOT_FOUND);
    let r = s
        .post(
            &format!("/api/v1/jobs/{failing}/retry"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let c = s
        .post(
            &format!("/api/v1/jobs/{bobs}/cancel"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    let c = s
        .post(
            &format!("/api/v1/jobs/{ops}/cancel"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(c.status, StatusCode::OK);
    let c = s
        .post(
            &format!("/api/v1/jobs/{mine}/cancel"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(c.status, StatusCode::OK, "an admin may cancel anyone's job");
    let r = s
        .post(
            &format!("/api/v1/jobs/{failing}/retry"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn tokens_are_read_strictly_and_users_count_only_their_own_jobs() {
    let World {
        s,
        admin,
        alice,
        bob,
    } = world().await;
    let send = |values: Vec<String>| {
        let mut req = s.http.get(s.url("/api/v1/queues"));
        for v in values {
            req = req.header(reqwest::header::AUTHORIZATION, v);
        }
        async move { req.send().await.expect("request").status() }
    };
    let ok = format!("Bearer {}", alice.secret);
    assert_eq!(send(vec![ok.clone()]).await, StatusCode::OK);
    // Two Authorization headers are refused, even when the first is valid.
    assert_eq!(
        send(vec![ok.clone(), ok.clone()]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(vec![ok.clone(), "Bearer kyu_other".into()]).await,
        StatusCode::UNAUTHORIZED
    );
    // Whitespace is never trimmed or skipped inside the value. (Whitespace at the very
    // end of a header line is not part of the value in HTTP/1.1 and never reaches
    // kyu; `auth::tests` covers a value that carries it.)
    for bad in [
        format!("Bearer  {}", alice.secret),
        format!("Bearer\t{}", alice.secret),
        format!("Bearer {} x", alice.secret),
        format!("Bearer {}\tx", alice.secret),
    ] {
        assert_eq!(
            send(vec![bad.clone()]).await,
            StatusCode::UNAUTHORIZED,
            "{bad:?}"
        );
    }

    // Users count their own jobs only, and see only the queues holding them.
    for (t, queue, n) in [(&alice, "queue-of-alice", 2), (&bob, "queue-of-bob", 3)] {
        for _ in 0..n {
            s.create(
                Some(t),
                json!({"type": "echo", "queue": queue, "delay_seconds": 600}),
            )
            .await;
        }
    }
    let mine = s.get("/api/v1/queues", Some(&alice)).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
    let names: Vec<&str> = mine.body["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert_eq!(names, ["queue-of-alice"], "{}", mine.body);
    assert_eq!(
        mine.body["queues"][0]["counts"]["scheduled"], 2,
        "{}",
        mine.body
    );
    let all = s.get("/api/v1/queues", Some(&admin)).await;
    let qb = all.body["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|q| q["name"] == "queue-of-bob")
        .cloned()
        .unwrap_or_default();
    assert_eq!(qb["counts"]["scheduled"], 3, "{}", all.body);
    // The web page agrees: Bob's overview shows his queue, not Alice's.
    let page = s
        .http
        .get(s.url("/"))
        .header(
            reqwest::header::COOKIE,
            format!("kyu_token={}", hex::encode(&bob.secret)),
        )
        .send()
        .await
        .expect("overview");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap_or_default();
    assert!(html.contains("queue-of-bob"), "{html}");
    assert!(
        !html.contains("queue-of-alice"),
        "bob's overview shows alice's queue"
    );
}

#[tokio::test]
async fn queue_control_is_for_admins_and_unique_keys_do_not_leak() {
    let World {
        s,
        admin,
        alice,
        bob,
    } = world().await;
    let a = s
        .post("/api/v1/queues/default/pause", Some(&alice), json!({}))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.code(), "forbidden");
    let a = s
        .post("/api/v1/queues/default/pause", Some(&admin), json!({}))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = s
        .post("/api/v1/queues/default/resume", Some(&bob), json!({}))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // Reading queues and workers needs a token, not the admin role.
    assert_eq!(
        s.get("/api/v1/queues", Some(&bob)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.get("/api/v1/workers", Some(&bob)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.get("/api/v1/queues", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The node list is for admins: this `kyu serve` is listed, and leads.
    let a = s.get("/api/v1/nodes", Some(&bob)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.code(), "forbidden");
    assert_eq!(
        s.get("/api/v1/nodes", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let a = s.get("/api/v1/nodes", Some(&admin)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["nodes"][0]["role"], "serve", "{}", a.body);
    assert_eq!(a.body["nodes"].as_array().map(Vec::len), Some(1));
    // Health needs no token.
    assert_eq!(s.get("/healthz", None).await.status, StatusCode::OK);
    assert_eq!(s.get("/readyz", None).await.status, StatusCode::OK);

    // Alice's unique key: Bob gets a conflict, not Alice's job id.
    let body = json!({"type": "echo", "unique_key": "k1", "delay_seconds": 600});
    s.create(Some(&alice), body.clone()).await;
    let a = s.post("/api/v1/jobs", Some(&bob), body.clone()).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    assert_eq!(a.code(), "unique_key_taken");
    assert!(a.body.get("job_id").is_none());
    let a = s.post("/api/v1/jobs", Some(&alice), body).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["duplicate"], true);
}

#[tokio::test]
async fn without_tokens_only_loopback_is_allowed() {
    let dir = TempDir::new("api-bind");
    let db = format!("sqlite://{}", dir.path().join("kyu.db").display());
    let mut p = KyuProcess::start(
        &["serve", "--bind", "0.0.0.0:0"],
        &[("DATABASE_URL", db), ("NO_COLOR", "1".into())],
        dir.path().join("kyu.log"),
    );
    let st = p
        .wait_exit(std::time::Duration::from_secs(30))
        .expect("kyu refuses and exits");
    assert!(!st.success());
    let log = p.log_text();
    assert!(log.contains("refusing to listen on 0.0.0.0"), "{log}");
    assert!(log.contains("KYU_API_TOKENS"), "{log}");
}
