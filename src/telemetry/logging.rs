//! Logs to stderr. Levels come from `KYU_LOG` (falling back to `RUST_LOG`, then
//! `info`), in `tracing`'s filter syntax (`info,kyu=debug,sqlx=warn`);
//! `KYU_LOG_FORMAT=json` writes one JSON object per line (with the current spans:
//! a job's id, type and attempt; a request's method and route) instead of text.
//! Read from the process environment, not the settings file: logging starts first.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The levels variable; `RUST_LOG` is the fallback.
pub const LOG_ENV: &str = "KYU_LOG";
/// `text` (default) or `json`.
pub const LOG_FORMAT_ENV: &str = "KYU_LOG_FORMAT";

/// Installs the global subscriber (a second call does nothing).
pub fn init() {
    let directives = std::env::var(LOG_ENV)
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .filter(|v| !v.trim().is_empty());
    let filter = match directives {
        Some(d) => EnvFilter::try_new(&d).unwrap_or_else(|e| {
            eprintln!("kyu: ignoring bad {LOG_ENV}/RUST_LOG {d:?}: {e}; logging at info");
            EnvFilter::new("info")
        }),
        None => EnvFilter::new("info"),
    };
    let json = std::env::var(LOG_FORMAT_ENV)
        .map(|v| v.trim().eq_ignore_ascii_case("json"))
        .unwrap_or(false);
    // Colour only for a person at a terminal (and never with NO_COLOR): a log file or
    // a pipe gets plain text.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}
