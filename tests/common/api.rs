//! A real `kyu serve` for HTTP tests: started on a free port, found from its
//! "listening on" log line, and a small JSON client for it.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use kyu::api::auth::{Role, TokenEntry, hash_token, new_token};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{KyuProcess, TempDir};

/// A token and the config line that admits it.
pub struct Token {
    pub secret: String,
    pub line: String,
}

impl Token {
    pub fn new(name: &str, role: Role) -> Token {
        let secret = new_token();
        let entry = TokenEntry {
            name: name.into(),
            role,
            hash: hash_token(&secret),
        };
        Token {
            secret,
            line: entry.to_config(),
        }
    }
}

/// A running `kyu serve` and where it listens.
pub struct Server {
    pub proc: KyuProcess,
    pub base: String,
    pub http: reqwest::Client,
    pub dir: TempDir,
}

/// An answer: status, headers and the body as JSON (`Value::Null` when not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The error code of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    pub fn field(&self) -> &str {
        self.body["error"]["field"].as_str().unwrap_or("")
    }
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

impl Server {
    /// `kyu serve` on SQLite in a fresh directory, fast polling, plus `env`.
    pub async fn start(tag: &str, env: &[(&str, String)]) -> Server {
        let dir = TempDir::new(tag);
        let db = format!("sqlite://{}", dir.path().join("kyu.db").display());
        Self::start_on(dir, &db, env).await
    }

    /// `kyu serve` on the database `url`.
    pub async fn start_on(dir: TempDir, url: &str, env: &[(&str, String)]) -> Server {
        let mut all = vec![
            ("DATABASE_URL", url.to_owned()),
            ("JOB_QUEUE_POLL_INTERVAL", "100ms".to_owned()),
            ("KYU_AUTOSCALE", "false".to_owned()),
            ("KYU_SHUTDOWN_GRACE", "1s".to_owned()),
            ("NO_COLOR", "1".to_owned()),
        ];
        for (k, v) in env {
            all.retain(|(ek, _)| ek != k);
            all.push((k, v.clone()));
        }
        let log = dir.path().join("kyu.log");
        let proc = KyuProcess::start(&["serve", "--bind", "127.0.0.1:0"], &all, log);
        let base = wait_listening(&proc, Duration::from_secs(60)).await;
        Server {
            proc,
            base,
            http: reqwest::Client::new(),
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `method path` with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&Token>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(&t.secret);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request reaches kyu");
        Self::answer(res).await
    }

    pub async fn answer(res: reqwest::Response) -> Answer {
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&Token>) -> Answer {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&Token>, body: Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// Creates a job and returns its id; panics unless 201.
    pub async fn create(&self, token: Option<&Token>, body: Value) -> String {
        let a = self.post("/api/v1/jobs", token, body).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body["job_id"].as_str().expect("job_id").to_owned()
    }

    /// Polls `GET /jobs/{id}` until its status is `status` (this is another process).
    pub async fn wait_status(&self, id: &str, token: Option<&Token>, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let a = self.get(&format!("/api/v1/jobs/{id}"), token).await;
            if a.body["status"] == status {
                return a.body;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} never became {status}: {}",
                a.body
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }
}

/// Reads the address from the "kyu listening on http://ADDR" log line.
pub async fn wait_listening(proc: &KyuProcess, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(addr) = listening_addr(&proc.log) {
            return format!("http://{addr}");
        }
        assert!(
            Instant::now() < deadline,
            "kyu did not start listening: {}",
            proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn listening_addr(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let rest = text.split("listening on http://").nth(1)?;
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    addr.contains(':').then_some(addr)
}

impl Server {
    /// Whether the process is still running.
    pub fn proc_alive(&mut self) -> bool {
        matches!(self.proc.child.try_wait(), Ok(None))
    }
}
