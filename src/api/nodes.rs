//! `GET /api/v1/nodes` (admins): the live kyu processes sharing this database, and
//! which one is the leader.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};

/// One live node (process).
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    /// The engine's lease owner id, or a fresh id for an API-only process.
    pub id: String,
    pub host: String,
    pub version: String,
    /// `api`, `worker` or `serve`; `remote` for a worker process in any language
    /// (the worker protocol).
    pub role: String,
    /// Worker slots at start (0 without an engine); a remote worker's jobs in flight.
    pub pool_size: u32,
    /// A remote worker's job types, when it is connected to the node answering.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    /// A remote worker's jobs in flight, when it is connected to the node answering.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
    pub started_at: DateTime<Utc>,
    /// The last heartbeat, by the database's clock.
    pub heartbeat_at: DateTime<Utc>,
    /// Whether this node holds the leader lease (runs rescue, pruning and cron).
    pub leader: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeList {
    /// Nodes whose last heartbeat is within `KYU_NODE_DEAD_AFTER`, by id.
    pub nodes: Vec<NodeView>,
}

/// The live nodes and the leader (admins).
#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The live nodes", body = NodeList),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "Database unreachable", body = ErrorBody),
    ))]
pub async fn list(State(st): State<AppState>, caller: Caller) -> Result<Json<NodeList>, ApiError> {
    caller.require_admin()?;
    let here: std::collections::HashMap<String, super::remote::registry::RemoteWorker> = st
        .remote
        .snapshot(st.node_dead_after)
        .into_iter()
        .map(|w| (w.id.clone(), w))
        .collect();
    let nodes = st
        .store
        .nodes(st.node_dead_after)
        .await?
        .into_iter()
        .map(|n| NodeView {
            types: here
                .get(&n.info.id)
                .map(|w| w.types.iter().cloned().collect()),
            in_flight: here.get(&n.info.id).map(|w| w.in_flight.len()),
            id: n.info.id,
            host: n.info.host,
            version: n.info.version,
            role: n.info.role,
            pool_size: n.info.pool_size,
            started_at: n.info.started_at,
            heartbeat_at: n.heartbeat_at,
            leader: n.leader,
        })
        .collect();
    Ok(Json(NodeList { nodes }))
}
