//! Reading workflows back: one workflow with its jobs and edges, a page of
//! workflows, a job's dependencies, and the results a claimed job receives.

use std::collections::HashMap;

use kyu_actors::clock::from_millis;
use kyu_actors::workflow::{
    Dependency, ListWorkflows, WorkflowMember, WorkflowPage, WorkflowRecord, WorkflowSummary,
};
use kyu_actors::{DependencyPolicy, Job, JobStatus, MAX_PAGE, StoreError};
use sqlx::QueryBuilder;
use uuid::Uuid;

use super::{CHUNK, Col, Dialect, Val, fetch_text, push_ids, required};
use crate::store::row::{parse_id, parse_status};

const SUMMARY_KINDS: [Col; 7] = [
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Int,
    Col::Text,
    Col::Text,
    Col::Int,
];

fn summary(r: &[Val]) -> Result<WorkflowSummary, StoreError> {
    let opt_id = |v: &Val| v.text().as_deref().map(parse_id).transpose();
    Ok(WorkflowSummary {
        id: parse_id(required(&r[0].text())?)?,
        name: r[1].text(),
        owner: r[2].text(),
        total: r[3].int().unwrap_or(0).max(0) as u64,
        on_complete: opt_id(&r[4])?,
        on_success: opt_id(&r[5])?,
        created_at: from_millis(r[6].int().unwrap_or(0)),
    })
}

const SUMMARY_COLUMNS: &str = "id, name, owner, total, on_complete, on_success, created_at";

pub(crate) async fn workflow<DB: Dialect>(
    c: &mut DB::Connection,
    id: Uuid,
) -> Result<Option<WorkflowRecord>, StoreError> {
    let mut qb = QueryBuilder::<DB>::new(format!(
        "SELECT {SUMMARY_COLUMNS} FROM workflows WHERE id = "
    ));
    DB::bind_text(&mut qb, id.to_string());
    let Some(row) = DB::fetch(c, &mut qb, &SUMMARY_KINDS).await?.pop() else {
        return Ok(None);
    };
    let summary = summary(&row)?;
    let mut qb = QueryBuilder::<DB>::new(
        "SELECT id, workflow_key, job_type, status FROM jobs WHERE workflow_id = ",
    );
    DB::bind_text(&mut qb, id.to_string());
    qb.push(" ORDER BY id");
    let rows = fetch_text::<DB>(c, &mut qb, 4).await?;
    let mut qb = QueryBuilder::<DB>::new(
        "SELECT e.parent_id, e.child_id FROM job_dependencies e \
         JOIN jobs d ON d.id = e.child_id WHERE d.workflow_id = ",
    );
    DB::bind_text(&mut qb, id.to_string());
    let mut deps: HashMap<String, Vec<Uuid>> = HashMap::new();
    for r in fetch_text::<DB>(c, &mut qb, 2).await? {
        deps.entry(required(&r[1])?.to_owned())
            .or_default()
            .push(parse_id(required(&r[0])?)?);
    }
    let mut counts: HashMap<JobStatus, u64> = HashMap::new();
    let mut jobs = Vec::with_capacity(rows.len());
    for r in rows {
        let [jid, key, job_type, status] = <[Option<String>; 4]>::try_from(r)
            .map_err(|_| StoreError::Backend("workflow job row: wrong width".into()))?;
        let jid = jid.unwrap_or_default();
        let job_type = job_type.unwrap_or_default();
        let key = key.unwrap_or_default();
        let status = parse_status(status.unwrap_or_default())?;
        if key.starts_with('$') {
            // A callback: listed, not counted, its edges (to every job) left out.
            jobs.push(WorkflowMember {
                id: parse_id(&jid)?,
                key,
                job_type,
                status,
                depends_on: Vec::new(),
            });
            continue;
        }
        *counts.entry(status).or_default() += 1;
        let mut depends_on = deps.remove(&jid).unwrap_or_default();
        depends_on.sort();
        jobs.push(WorkflowMember {
            id: parse_id(&jid)?,
            key,
            job_type,
            status,
            depends_on,
        });
    }
    let mut counts: Vec<(JobStatus, u64)> = counts.into_iter().collect();
    counts.sort();
    Ok(Some(WorkflowRecord {
        summary,
        counts,
        jobs,
    }))
}

pub(crate) async fn list_workflows<DB: Dialect>(
    c: &mut DB::Connection,
    q: &ListWorkflows,
) -> Result<WorkflowPage, StoreError> {
    let limit = q.limit.clamp(1, MAX_PAGE);
    let mut qb = QueryBuilder::<DB>::new(format!(
        "SELECT {SUMMARY_COLUMNS} FROM workflows WHERE 1 = 1"
    ));
    if let Some(o) = &q.owner {
        qb.push(" AND owner = ");
        DB::bind_text(&mut qb, o.clone());
    }
    if let Some(cur) = q.cursor {
        qb.push(" AND id < ");
        DB::bind_text(&mut qb, cur.to_string());
    }
    qb.push(" ORDER BY id DESC LIMIT ");
    DB::bind_int(&mut qb, i64::from(limit) + 1);
    let rows = DB::fetch(c, &mut qb, &SUMMARY_KINDS).await?;
    let more = rows.len() > limit as usize;
    let workflows = rows
        .iter()
        .take(limit as usize)
        .map(|r| summary(r))
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if more {
        workflows.last().map(|w| w.id)
    } else {
        None
    };
    Ok(WorkflowPage {
        workflows,
        next_cursor,
    })
}

pub(crate) async fn dependencies<DB: Dialect>(
    c: &mut DB::Connection,
    id: Uuid,
) -> Result<Vec<Dependency>, StoreError> {
    let mut qb = QueryBuilder::<DB>::new(
        "SELECT e.parent_id, p.workflow_key, p.status, e.policy FROM job_dependencies e \
         JOIN jobs p ON p.id = e.parent_id WHERE e.child_id = ",
    );
    DB::bind_text(&mut qb, id.to_string());
    qb.push(" ORDER BY e.parent_id");
    let rows = fetch_text::<DB>(c, &mut qb, 4).await?;
    rows.into_iter()
        .map(|r| {
            Ok(Dependency {
                job_id: parse_id(required(&r[0])?)?,
                key: r[1].clone(),
                status: parse_status(required(&r[2])?.to_owned())?,
                policy: DependencyPolicy::parse(required(&r[3])?).unwrap_or_default(),
            })
        })
        .collect()
}

/// Fills `dependency_results` of the workflow jobs among `jobs` (claimed ones) with
/// the results of their completed dependencies. No query when none is in a workflow.
pub(crate) async fn attach_results<DB: Dialect>(
    c: &mut DB::Connection,
    jobs: &mut [Job],
) -> Result<(), StoreError> {
    let ids: Vec<String> = jobs
        .iter()
        .filter(|j| j.workflow_id.is_some())
        .map(|j| j.id.to_string())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let mut by_child: HashMap<String, Vec<(String, Option<String>)>> = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let mut qb = QueryBuilder::<DB>::new(
            // Filtered by status here, not in SQL: given `status = 'completed'`, SQLite
            // would walk every completed job instead of these jobs' edges.
            "SELECT e.child_id, p.workflow_key, p.result, p.status FROM job_dependencies e \
             JOIN jobs p ON p.id = e.parent_id WHERE e.child_id IN ",
        );
        push_ids(&mut qb, chunk);
        for r in fetch_text::<DB>(c, &mut qb, 4).await? {
            if r[3].as_deref() != Some("completed") {
                continue;
            }
            by_child
                .entry(required(&r[0])?.to_owned())
                .or_default()
                .push((r[1].clone().unwrap_or_default(), r[2].clone()));
        }
    }
    for j in jobs.iter_mut() {
        let Some(results) = by_child.remove(&j.id.to_string()) else {
            continue;
        };
        for (key, result) in results {
            let value = match result {
                Some(text) => serde_json::from_str(&text).map_err(|e| {
                    StoreError::Backend(format!("corrupt result of dependency {key}: {e}"))
                })?,
                None => serde_json::Value::Null,
            };
            j.dependency_results.insert(key, value);
        }
    }
    Ok(())
}
