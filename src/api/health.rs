//! `/healthz` (the process answers) and `/readyz` (the database answers and the engine,
//! if this process runs one, is up). Neither needs a token.

use std::time::Duration;

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::model::{Health, Readiness};

/// How long readiness waits for the database.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// The database answers and the engine runs: ready for traffic.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready; the message says why", body = ErrorBody),
    ))]
pub async fn readyz(State(st): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    match tokio::time::timeout(PING_TIMEOUT, st.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(ApiError::NotReady(format!("database: {e}"))),
        Err(_) => {
            return Err(ApiError::NotReady(format!(
                "database: no answer within {PING_TIMEOUT:?}"
            )));
        }
    }
    let engine = match &st.engine {
        None => "disabled",
        Some(e) if e.is_running() => "running",
        Some(_) => return Err(ApiError::NotReady("engine: stopped".into())),
    };
    Ok(Json(Readiness {
        status: "ready".into(),
        database: "ok".into(),
        engine: engine.into(),
    }))
}
