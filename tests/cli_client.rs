//! `kyu enqueue`, `kyu status` and `kyu token` against a real `kyu serve`, with a token.

mod common;

use std::process::Command;

use common::api::{Server, Token};
use common::kyu_bin;
use kyu::api::auth::Role;
use serde_json::Value;

fn kyu(args: &[&str], url: &str, token: &Token) -> std::process::Output {
    Command::new(kyu_bin())
        .args(args)
        .env("KYU_URL", url)
        .env("KYU_TOKEN", &token.secret)
        .output()
        .expect("run kyu")
}

#[tokio::test]
async fn enqueue_wait_follows_the_job_and_status_reads_it() {
    let user = Token::new("cli", Role::User);
    let s = Server::start("cli-client", &[("KYU_API_TOKENS", user.line.clone())]).await;
    let base = s.base.clone();

    let out = tokio::task::spawn_blocking({
        let base = base.clone();
        let user = Token {
            secret: user.secret.clone(),
            line: String::new(),
        };
        move || {
            kyu(
                &[
                    "enqueue",
                    "echo",
                    "--payload",
                    r#"{"hello":"kyu"}"#,
                    "--wait",
                ],
                &base,
                &user,
            )
        }
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job: Value = serde_json::from_slice(&out.stdout).expect("the job as JSON");
    assert_eq!(job["status"], "completed");
    assert_eq!(job["result"]["hello"], "kyu");
    assert_eq!(job["owner"], "cli");

    let id = job["job_id"].as_str().expect("id").to_owned();
    let out = tokio::task::spawn_blocking(move || kyu(&["status", &id], &base, &user))
        .await
        .expect("join");
    assert!(out.status.success());
    let again: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(again["job_id"], job["job_id"]);
}

#[tokio::test]
async fn a_refused_enqueue_says_why_and_fails() {
    let user = Token::new("cli", Role::User);
    let s = Server::start("cli-refused", &[("KYU_API_TOKENS", user.line.clone())]).await;
    let base = s.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        kyu(&["enqueue", "summon", "--payload", "{}"], &base, &user)
    })
    .await
    .expect("join");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown_job_type") && err.contains("echo"),
        "{err}"
    );
    assert!(!err.contains("backtrace"), "{err}");
}

#[tokio::test]
async fn without_a_token_the_401_says_how_to_pass_one() {
    let user = Token::new("cli", Role::User);
    let s = Server::start("cli-no-token", &[("KYU_API_TOKENS", user.line.clone())]).await;
    let base = s.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(kyu_bin())
            .args(["enqueue", "echo"])
            .env("KYU_URL", &base)
            .env_remove("KYU_TOKEN")
            .output()
            .expect("run kyu")
    })
    .await
    .expect("join");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("401") && err.contains("KYU_TOKEN") && err.contains("--token"),
        "{err}"
    );
}

#[test]
fn token_prints_a_secret_and_a_config_line_that_admits_it() {
    let out = Command::new(kyu_bin())
        .args(["token", "alice", "--role", "admin"])
        .output()
        .expect("run kyu token");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let secret = text
        .split_whitespace()
        .find(|w| w.starts_with("kyu_"))
        .expect("a token");
    let line = text
        .split_whitespace()
        .find(|w| w.starts_with("alice:admin:"))
        .expect("a config line");
    let tokens = kyu::api::auth::parse_tokens(line).expect("the line parses");
    assert!(kyu::api::auth::authenticate(&tokens, secret).is_some());
    assert!(
        !line.contains(secret),
        "the config line must not hold the token"
    );
}
