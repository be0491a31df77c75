//! Inserting a workflow: its row, its jobs (waiting ones with their counters), its
//! callbacks and one edge per dependency, inside the caller's transaction.

use std::collections::BTreeMap;

use kyu_actors::workflow::{ON_COMPLETE_KEY, ON_SUCCESS_KEY};
use kyu_actors::{DependencyPolicy, JobStatus, NewJob, NewWorkflow, StoreError, WorkflowCreated};
use sqlx::QueryBuilder;

use super::{CHUNK, Dialect};
use crate::store::write::InsertRow;

/// Job rows per multi-row INSERT (17 binds each); edges go by [`CHUNK`] (4 binds each).
const JOB_CHUNK: usize = 500;

/// One job row of the workflow, ready to bind.
struct Member {
    row: InsertRow,
    key: String,
    pending: i64,
}

/// Validates `wf` and writes it. The caller commits.
pub(crate) async fn insert_workflow<DB: Dialect>(
    c: &mut DB::Connection,
    wf: &NewWorkflow,
    now: i64,
) -> Result<WorkflowCreated, StoreError> {
    let deps = wf.validate()?;
    let wf_id = wf.id.to_string();
    let owned = |job: &NewJob| {
        let mut job = job.clone();
        if wf.owner.is_some() {
            job.owner = wf.owner.clone();
        }
        job
    };
    let mut members = Vec::with_capacity(wf.jobs.len() + 2);
    let mut created = BTreeMap::new();
    for (j, d) in wf.jobs.iter().zip(&deps) {
        let row = InsertRow::new(&owned(&j.job), now)?;
        created.insert(j.key.clone(), j.job.id);
        members.push(Member {
            row,
            key: j.key.clone(),
            pending: d.len() as i64,
        });
    }
    let total = wf.jobs.len() as i64;
    let mut edges: Vec<(String, String, DependencyPolicy)> = Vec::new();
    for (i, j) in wf.jobs.iter().enumerate() {
        for &p in &deps[i] {
            edges.push((
                members[p].row.id.clone(),
                members[i].row.id.clone(),
                j.on_dependency_failure,
            ));
        }
    }
    // Callbacks wait for every job: on_complete counts failures as done (it runs once
    // all are final), on_success is canceled by any failure (it runs if all completed).
    for (key, cb, policy) in [
        (ON_COMPLETE_KEY, &wf.on_complete, DependencyPolicy::Ignore),
        (ON_SUCCESS_KEY, &wf.on_success, DependencyPolicy::Cancel),
    ] {
        if let Some(job) = cb {
            let row = InsertRow::new(&owned(job), now)?;
            created.insert(key.to_owned(), job.id);
            for m in &members[..wf.jobs.len()] {
                edges.push((m.row.id.clone(), row.id.clone(), policy));
            }
            members.push(Member {
                row,
                key: key.to_owned(),
                pending: total,
            });
        }
    }

    let mut qb = QueryBuilder::<DB>::new(
        "INSERT INTO workflows (id, name, owner, total, remaining, on_complete, on_success, \
         created_at) VALUES (",
    );
    DB::bind_text(&mut qb, wf_id.clone());
    qb.push(", ");
    DB::bind_opt_text(&mut qb, wf.name.clone());
    qb.push(", ");
    DB::bind_opt_text(&mut qb, wf.owner.clone());
    qb.push(", ");
    DB::bind_int(&mut qb, total);
    qb.push(", ");
    DB::bind_int(&mut qb, total);
    qb.push(", ");
    DB::bind_opt_text(&mut qb, wf.on_complete.as_ref().map(|j| j.id.to_string()));
    qb.push(", ");
    DB::bind_opt_text(&mut qb, wf.on_success.as_ref().map(|j| j.id.to_string()));
    qb.push(", ");
    DB::bind_int(&mut qb, now);
    qb.push(")");
    DB::execute(c, &mut qb).await?;

    for chunk in members.chunks(JOB_CHUNK) {
        let mut qb = QueryBuilder::<DB>::new(
            "INSERT INTO jobs (id, queue, job_type, provider, priority, payload, status, \
             max_attempts, run_at, timeout_ms, unique_key, owner, concurrency_key, concurrency_limit, fair_at, created_at, updated_at, \
             workflow_id, workflow_key, pending_deps, errors) VALUES ",
        );
        for (n, m) in chunk.iter().enumerate() {
            let r = &m.row;
            qb.push(if n == 0 { "(" } else { ", (" });
            DB::bind_text(&mut qb, r.id.clone());
            qb.push(", ");
            DB::bind_text(&mut qb, r.queue.clone());
            qb.push(", ");
            DB::bind_text(&mut qb, r.job_type.clone());
            qb.push(", ");
            DB::bind_opt_text(&mut qb, r.provider.clone());
            qb.push(", ");
            DB::bind_int(&mut qb, i64::from(r.priority));
            qb.push(", ");
            DB::bind_text(&mut qb, r.payload.clone());
            qb.push(", ");
            let status = if m.pending > 0 {
                JobStatus::Waiting.as_str()
            } else {
                r.status
            };
            DB::bind_text(&mut qb, status.to_owned());
            qb.push(", ");
            DB::bind_int(&mut qb, i64::from(r.max_attempts));
            qb.push(", ");
            DB::bind_int(&mut qb, r.run_at);
            qb.push(", ");
            DB::bind_int(&mut qb, r.timeout_ms);
            qb.push(", ");
            DB::bind_opt_text(&mut qb, None);
            qb.push(", ");
            DB::bind_opt_text(&mut qb, r.owner.clone());
            qb.push(", ");
            DB::bind_opt_text(&mut qb, r.concurrency_key.clone());
            qb.push(", ");
            DB::bind_opt_int(&mut qb, r.concurrency_limit);
            qb.push(", ");
            DB::bind_int(&mut qb, r.fair_at);
            qb.push(", ");
            DB::bind_int(&mut qb, r.now);
            qb.push(", ");
            DB::bind_int(&mut qb, r.now);
            qb.push(", ");
            DB::bind_text(&mut qb, wf_id.clone());
            qb.push(", ");
            DB::bind_text(&mut qb, m.key.clone());
            qb.push(", ");
            DB::bind_int(&mut qb, m.pending);
            // MariaDB has no default for a TEXT column.
            qb.push(", '[]')");
        }
        DB::execute(c, &mut qb).await?;
    }

    for chunk in edges.chunks(CHUNK) {
        let mut qb = QueryBuilder::<DB>::new(
            "INSERT INTO job_dependencies (workflow_id, parent_id, child_id, policy) VALUES ",
        );
        for (n, (parent, child, policy)) in chunk.iter().enumerate() {
            qb.push(if n == 0 { "(" } else { ", (" });
            DB::bind_text(&mut qb, wf_id.clone());
            qb.push(", ");
            DB::bind_text(&mut qb, parent.clone());
            qb.push(", ");
            DB::bind_text(&mut qb, child.clone());
            qb.push(", ");
            DB::bind_text(&mut qb, policy.as_str().to_owned());
            qb.push(")");
        }
        DB::execute(c, &mut qb).await?;
    }
    Ok(WorkflowCreated {
        id: wf.id,
        jobs: created,
    })
}
