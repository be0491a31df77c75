//! Shared helpers for tests that run the real `kyu` binary: start it with an
//! environment, send it signals, and wait on things outside the process (a ledger
//! file, the database) with a deadline.
#![allow(dead_code)]

pub mod api;
pub mod cluster;
pub mod fake_providers;
pub mod pg;
pub mod proxy;
pub mod redis_cluster;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kyu::chaos::ledger::{Entry, Ledger};

/// The `kyu` binary cargo built for these tests.
pub fn kyu_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kyu"))
}

/// A scratch directory removed on drop (kept when `KYU_KEEP_TEST_DIRS` is set, to read
/// the nodes' logs after a failure).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("kyu-{tag}-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KYU_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A running `kyu` process; killed (SIGKILL) if still running on drop.
pub struct KyuProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl KyuProcess {
    /// Starts `kyu <args>` with `env`, logging stderr to `log`.
    pub fn start(args: &[&str], env: &[(&str, String)], log: PathBuf) -> KyuProcess {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open log");
        let mut cmd = Command::new(kyu_bin());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .env("RUST_LOG", "info,sqlx=warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn kyu");
        KyuProcess { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} {}", self.pid());
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for KyuProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-CONT", &self.pid().to_string()])
                .status();
            self.kill9();
        }
    }
}

/// Waits until `cond` holds, checking every 20 ms; panics with `what` after `limit`.
/// Used only for things outside this process (another process, a file).
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn ledger(path: &Path) -> Vec<Entry> {
    if !path.exists() {
        return Vec::new();
    }
    Ledger::read(path).expect("read ledger")
}
