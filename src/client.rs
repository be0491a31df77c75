//! `kyu enqueue` and `kyu status`: a small client of a running kyu's HTTP API
//! (`KYU_URL`, `KYU_TOKEN`). `enqueue --wait` follows the job with a progress bar.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The kyu API to talk to (`kyu serve` listens on http://127.0.0.1:7878).
    #[arg(long, env = "KYU_URL", default_value = "http://127.0.0.1:7878")]
    pub url: String,
    /// A bearer token (made by `kyu token`), needed when the server has tokens
    /// configured (KYU_API_TOKENS).
    #[arg(long, env = "KYU_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The job type (`echo`, `delay_print`, …).
    pub job_type: String,
    /// The job's payload, as JSON.
    #[arg(long, default_value = "{}")]
    pub payload: String,
    #[arg(long)]
    pub priority: Option<i64>,
    #[arg(long)]
    pub queue: Option<String>,
    #[arg(long)]
    pub delay_seconds: Option<f64>,
    #[arg(long)]
    pub max_retries: Option<i64>,
    /// Follow the job until it ends; exit 1 unless it completed.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The job id.
    pub id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(a: &ClientArgs) -> anyhow::Result<Client> {
        Ok(Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            base: a.url.trim_end_matches('/').to_owned(),
            token: a.token.clone(),
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let e = &body["error"];
            anyhow::bail!(
                "{status}: {} ({}{}){}",
                e["message"].as_str().unwrap_or("no message"),
                e["code"].as_str().unwrap_or("?"),
                e["field"]
                    .as_str()
                    .map(|f| format!(", field {f}"))
                    .unwrap_or_default(),
                self.hint(status)
            );
        }
        Ok(body)
    }

    /// What to do about a 401: how the CLI passes a token.
    fn hint(&self, status: reqwest::StatusCode) -> &'static str {
        match (status, &self.token) {
            (reqwest::StatusCode::UNAUTHORIZED, None) => {
                ". This kyu requires a token: set KYU_TOKEN=<token> (or pass --token); \
                 `kyu token NAME` makes one"
            }
            (reqwest::StatusCode::UNAUTHORIZED, Some(_)) => {
                ". The token in KYU_TOKEN (or --token) is not one of the server's \
                 KYU_API_TOKENS"
            }
            _ => "",
        }
    }

    async fn job(&self, id: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}/api/v1/jobs/{id}", self.base)))
            .await
    }
}

fn is_final(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "canceled")
}

pub async fn enqueue(a: EnqueueArgs) -> anyhow::Result<()> {
    let payload: Value = serde_json::from_str(&a.payload).context("--payload is not JSON")?;
    let mut body = json!({ "type": a.job_type, "payload": payload });
    for (k, v) in [
        ("priority", a.priority.map(Value::from)),
        ("queue", a.queue.map(Value::from)),
        ("delay_seconds", a.delay_seconds.map(Value::from)),
        ("max_retries", a.max_retries.map(Value::from)),
    ] {
        if let Some(v) = v {
            body[k] = v;
        }
    }
    let c = Client::new(&a.client)?;
    let created = c
        .send(c.http.post(format!("{}/api/v1/jobs", c.base)).json(&body))
        .await?;
    let id = created["job_id"].as_str().unwrap_or_default().to_owned();
    if !a.wait {
        println!("{created}");
        return Ok(());
    }
    let bar = indicatif::ProgressBar::new(100);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos:>3}% {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let job = loop {
        let job = c.job(&id).await?;
        let status = job["status"].as_str().unwrap_or_default().to_owned();
        bar.set_position(job["progress"].as_u64().unwrap_or(0));
        bar.set_message(format!("{id} {status}"));
        if is_final(&status) {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    bar.finish();
    println!("{job}");
    match job["status"].as_str() {
        Some("completed") => Ok(()),
        s => anyhow::bail!("job {id} ended {}", s.unwrap_or("?")),
    }
}

pub async fn status(a: StatusArgs) -> anyhow::Result<()> {
    let c = Client::new(&a.client)?;
    let job = c.job(&a.id).await?;
    println!("{}", serde_json::to_string_pretty(&job)?);
    Ok(())
}
