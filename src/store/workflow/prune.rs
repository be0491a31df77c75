//! Pruning and workflows: a finished job of a workflow that still runs is kept (its
//! result still flows to its dependents, and the workflow view stays whole); once a
//! finished workflow's jobs are all pruned, its row and edges go too.

use kyu_actors::StoreError;
use sqlx::QueryBuilder;

use super::{Dialect, fetch_text, push_ids, required};

/// The condition every backend's job prune adds: not a job of an unfinished workflow.
macro_rules! prunable {
    () => {
        " AND (workflow_id IS NULL OR workflow_id IN \
         (SELECT w.id FROM workflows w WHERE w.remaining <= 0))"
    };
}
pub(crate) use prunable;

/// Deletes up to `limit` finished workflows that have no job left, with their edges.
pub(crate) async fn prune_workflows<DB: Dialect>(
    c: &mut DB::Connection,
    limit: u32,
) -> Result<u64, StoreError> {
    let mut qb = QueryBuilder::<DB>::new(
        "SELECT w.id FROM workflows w WHERE w.remaining <= 0 \
         AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.workflow_id = w.id) LIMIT ",
    );
    DB::bind_int(&mut qb, i64::from(limit.max(1)));
    let ids: Vec<String> = fetch_text::<DB>(c, &mut qb, 1)
        .await?
        .iter()
        .map(|r| required(&r[0]).map(str::to_owned))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(0);
    }
    let mut qb = QueryBuilder::<DB>::new("DELETE FROM job_dependencies WHERE workflow_id IN ");
    push_ids(&mut qb, &ids);
    DB::execute(c, &mut qb).await?;
    let mut qb = QueryBuilder::<DB>::new("DELETE FROM workflows WHERE id IN ");
    push_ids(&mut qb, &ids);
    DB::execute(c, &mut qb).await?;
    Ok(ids.len() as u64)
}
