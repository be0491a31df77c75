//! Settling dependency edges when jobs become final, and reopening them on retry.
//!
//! Runs inside the transaction that made the jobs final, after that write, so the
//! finished jobs' rows are locked by it and their edges are touched by nobody else.
//! Guarantees:
//! - an edge is counted off its dependent at most once (`resolved` flips 0 → 1 only
//!   here, and only for the edges this transaction read unresolved);
//! - a dependent is released once: the release is a guarded update
//!   (`status = 'waiting' AND pending_deps <= 0`) of rows whose counter this
//!   transaction changed, so of two concurrent completions the second one to take
//!   the row lock sees the other's decrement and only one of them releases it;
//! - a cancel cascades: a dependent canceled here is final too, so its own edges are
//!   settled in the next round, with the same root (`canceled_by`).

use std::collections::{BTreeMap, HashMap};

use kyu_actors::telemetry;
use kyu_actors::{DependencyPolicy, StoreError};
use sqlx::QueryBuilder;

use super::{CHUNK, Col, Dialect, fetch_text, push_ids, required};

/// A job that just became final.
struct Final {
    id: String,
    ok: bool,
    /// The job whose failure started the cascade (itself if it failed on its own).
    root: String,
    workflow: String,
    /// A job of the workflow proper (callbacks, keyed `$…`, are not counted).
    member: bool,
}

impl Final {
    /// `row`: (workflow_id, workflow_key).
    fn new(id: String, ok: bool, root: Option<String>, row: &[Option<String>]) -> Final {
        Final {
            root: root.unwrap_or_else(|| id.clone()),
            id,
            ok,
            workflow: row[0].clone().unwrap_or_default(),
            member: is_member(&row[1]),
        }
    }
}

/// Whether a workflow key names a job of the workflow proper, not a callback.
fn is_member(key: &Option<String>) -> bool {
    !key.as_deref().unwrap_or("$").starts_with('$')
}

/// What a settle did that is worth telling once its transaction commits.
#[derive(Debug, Default)]
#[must_use = "record it once the transaction commits"]
pub(crate) struct Settled {
    /// Workflows whose last job became final: `true` if every job completed.
    finished: Vec<bool>,
}

impl Settled {
    /// Counts the finished workflows (`kyu_workflows_finished_total{outcome}`).
    pub(crate) fn record(self) {
        for ok in self.finished {
            let outcome = if ok { "completed" } else { "failed" };
            metrics::counter!(telemetry::WORKFLOWS_FINISHED, "outcome" => outcome).increment(1);
        }
    }
}

/// Settles the edges of those of `ids` that are final workflow jobs, and counts them
/// off their workflows. Jobs outside workflows, or not final, cost one indexed read
/// and nothing else.
pub(crate) async fn settle<DB: Dialect>(
    c: &mut DB::Connection,
    ids: &[String],
    now: i64,
) -> Result<Settled, StoreError> {
    let mut frontier = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT id, status, workflow_id, workflow_key FROM jobs \
             WHERE workflow_id IS NOT NULL \
             AND status IN ('completed', 'failed', 'canceled') AND id IN ",
        );
        push_ids(&mut qb, chunk);
        for r in fetch_text::<DB>(c, &mut qb, 4).await? {
            let id = required(&r[0])?.to_owned();
            let ok = r[1].as_deref() == Some("completed");
            frontier.push(Final::new(id, ok, None, &r[2..]));
        }
    }
    // Per workflow: jobs that became final, and how many of them did not complete.
    let mut counts: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    while !frontier.is_empty() {
        for f in frontier.iter().filter(|f| f.member) {
            let e = counts.entry(f.workflow.clone()).or_default();
            e.0 += 1;
            e.1 += i64::from(!f.ok);
        }
        frontier = settle_round::<DB>(c, &frontier, now).await?;
    }
    // The workflow row is the last lock taken: of concurrent settles of one workflow,
    // the one that brings `remaining` to 0 finished it.
    let mut settled = Settled::default();
    for (wf, (done, failed)) in counts {
        let mut qb = QueryBuilder::<DB>::new("UPDATE workflows SET remaining = remaining - ");
        DB::bind_int(&mut qb, done);
        qb.push(", failed = failed + ");
        DB::bind_int(&mut qb, failed);
        qb.push(" WHERE id = ");
        DB::bind_text(&mut qb, wf.clone());
        DB::execute(c, &mut qb).await?;
        let mut qb = QueryBuilder::<DB>::new("SELECT remaining, failed FROM workflows WHERE id = ");
        DB::bind_text(&mut qb, wf);
        if let Some(r) = DB::fetch(c, &mut qb, &[Col::Int, Col::Int]).await?.pop()
            && r[0].int().unwrap_or(1) <= 0
        {
            settled.finished.push(r[1].int().unwrap_or(0) <= 0);
        }
    }
    Ok(settled)
}

/// Settles the unresolved edges out of `finals`; returns the dependents it canceled.
async fn settle_round<DB: Dialect>(
    c: &mut DB::Connection,
    finals: &[Final],
    now: i64,
) -> Result<Vec<Final>, StoreError> {
    let by_id: HashMap<&str, &Final> = finals.iter().map(|f| (f.id.as_str(), f)).collect();
    let ids: Vec<String> = finals.iter().map(|f| f.id.clone()).collect();
    let mut edges: Vec<(String, String, String)> = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT parent_id, child_id, policy FROM job_dependencies \
             WHERE resolved = 0 AND parent_id IN ",
        );
        push_ids(&mut qb, chunk);
        for r in fetch_text::<DB>(c, &mut qb, 3).await? {
            edges.push((
                required(&r[0])?.to_owned(),
                required(&r[1])?.to_owned(),
                required(&r[2])?.to_owned(),
            ));
        }
    }
    if edges.is_empty() {
        return Ok(Vec::new());
    }
    let mut decrement: BTreeMap<String, i64> = BTreeMap::new();
    let mut run_now: Vec<String> = Vec::new();
    let mut cancel: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (parent, child, policy) in edges {
        let Some(f) = by_id.get(parent.as_str()) else {
            continue;
        };
        let policy = DependencyPolicy::parse(&policy).unwrap_or_default();
        match (f.ok, policy) {
            (true, _) | (false, DependencyPolicy::Ignore) => {
                *decrement.entry(child).or_default() += 1
            }
            (false, DependencyPolicy::Run) => run_now.push(child),
            (false, DependencyPolicy::Cancel) => {
                cancel.entry(f.root.clone()).or_default().push(child)
            }
        }
    }

    // Count the edges off: all of a completed job's, a failed job's but `cancel` ones
    // (those stay open: the dependent waits for a retry of this job).
    let (ok, failed): (Vec<&Final>, Vec<&Final>) = finals.iter().partition(|f| f.ok);
    for (group, extra) in [(ok, ""), (failed, " AND policy <> 'cancel'")] {
        let ids: Vec<String> = group.iter().map(|f| f.id.clone()).collect();
        for chunk in ids.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "UPDATE job_dependencies SET resolved = 1 WHERE resolved = 0",
            );
            qb.push(extra).push(" AND parent_id IN ");
            push_ids(&mut qb, chunk);
            DB::execute(c, &mut qb).await?;
        }
    }

    let mut by_amount: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (child, n) in &decrement {
        by_amount.entry(*n).or_default().push(child.clone());
    }
    for (n, children) in &by_amount {
        for chunk in children.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new("UPDATE jobs SET pending_deps = pending_deps - ");
            DB::bind_int(&mut qb, *n);
            qb.push(" WHERE id IN ");
            push_ids(&mut qb, chunk);
            DB::execute(c, &mut qb).await?;
        }
    }
    let decremented: Vec<String> = decrement.into_keys().collect();
    release::<DB>(c, &decremented, " AND pending_deps <= 0", now).await?;
    release::<DB>(c, &run_now, "", now).await?;

    let mut next = Vec::new();
    for (root, children) in cancel {
        for chunk in children.chunks(CHUNK) {
            // Lock first, then cancel only what still waits: a dependent released or
            // canceled meanwhile by another transaction is left alone.
            let mut qb = QueryBuilder::<DB>::new(
                "SELECT id, workflow_id, workflow_key FROM jobs WHERE status = 'waiting' AND id IN ",
            );
            push_ids(&mut qb, chunk);
            qb.push(DB::FOR_UPDATE);
            let rows = fetch_text::<DB>(c, &mut qb, 3).await?;
            if rows.is_empty() {
                continue;
            }
            let waiting: Vec<String> = rows
                .iter()
                .map(|r| required(&r[0]).map(str::to_owned))
                .collect::<Result<_, _>>()?;
            let mut qb =
                QueryBuilder::<DB>::new("UPDATE jobs SET status = 'canceled', finished_at = ");
            DB::bind_int(&mut qb, now);
            qb.push(", updated_at = ");
            DB::bind_int(&mut qb, now);
            qb.push(", canceled_by = ");
            DB::bind_text(&mut qb, root.clone());
            qb.push(" WHERE status = 'waiting' AND id IN ");
            push_ids(&mut qb, &waiting);
            DB::execute(c, &mut qb).await?;
            for (id, r) in waiting.into_iter().zip(&rows) {
                next.push(Final::new(id, false, Some(root.clone()), &r[1..]));
            }
        }
    }
    Ok(next)
}

/// Makes waiting jobs among `ids` due (matching `extra` too). Their `run_at` becomes
/// now unless it is later, so wait time counts from the release, not from enqueue.
async fn release<DB: Dialect>(
    c: &mut DB::Connection,
    ids: &[String],
    extra: &str,
    now: i64,
) -> Result<(), StoreError> {
    for chunk in ids.chunks(CHUNK) {
        // `status` first: MariaDB applies SET left to right.
        let mut qb = QueryBuilder::<DB>::new("UPDATE jobs SET status = CASE WHEN run_at > ");
        DB::bind_int(&mut qb, now);
        qb.push(" THEN 'scheduled' ELSE 'queued' END, run_at = CASE WHEN run_at > ");
        DB::bind_int(&mut qb, now);
        qb.push(" THEN run_at ELSE ");
        DB::bind_int(&mut qb, now);
        qb.push(" END, updated_at = ");
        DB::bind_int(&mut qb, now);
        qb.push(" WHERE status = 'waiting'")
            .push(extra)
            .push(" AND id IN ");
        push_ids(&mut qb, chunk);
        DB::execute(c, &mut qb).await?;
    }
    Ok(())
}

/// After `id` was retried: the dependents its failure canceled wait again, and
/// edges out of it (and out of them) that were counted off dependents still waiting
/// are opened again, so those wait for the new outcome.
pub(crate) async fn reopen<DB: Dialect>(
    c: &mut DB::Connection,
    id: &str,
    now: i64,
) -> Result<(), StoreError> {
    let mut qb = QueryBuilder::<DB>::new(
        "SELECT workflow_id, workflow_key FROM jobs WHERE workflow_id IS NOT NULL AND id = ",
    );
    DB::bind_text(&mut qb, id.to_owned());
    let Some(me) = fetch_text::<DB>(c, &mut qb, 2).await?.pop() else {
        return Ok(());
    };
    let workflow = required(&me[0])?.to_owned();
    // Jobs of the workflow no longer final: this one and what its failure canceled.
    let mut reopened = i64::from(is_member(&me[1]));
    let mut qb = QueryBuilder::<DB>::new("UPDATE jobs SET canceled_by = NULL WHERE id = ");
    DB::bind_text(&mut qb, id.to_owned());
    DB::execute(c, &mut qb).await?;

    let mut qb = QueryBuilder::<DB>::new(
        "SELECT id, workflow_key FROM jobs WHERE status = 'canceled' AND canceled_by = ",
    );
    DB::bind_text(&mut qb, id.to_owned());
    qb.push(DB::FOR_UPDATE);
    let resumed = fetch_text::<DB>(c, &mut qb, 2).await?;
    let mut parents: Vec<String> = vec![id.to_owned()];
    for r in &resumed {
        parents.push(required(&r[0])?.to_owned());
        reopened += i64::from(is_member(&r[1]));
    }
    if reopened > 0 {
        let mut qb = QueryBuilder::<DB>::new("UPDATE workflows SET remaining = remaining + ");
        DB::bind_int(&mut qb, reopened);
        qb.push(", failed = failed - ");
        DB::bind_int(&mut qb, reopened);
        qb.push(" WHERE id = ");
        DB::bind_text(&mut qb, workflow);
        DB::execute(c, &mut qb).await?;
    }
    if parents.len() > 1 {
        let mut qb = QueryBuilder::<DB>::new(
            "UPDATE jobs SET status = 'waiting', finished_at = NULL, canceled_by = NULL, updated_at = ",
        );
        DB::bind_int(&mut qb, now);
        qb.push(" WHERE status = 'canceled' AND canceled_by = ");
        DB::bind_text(&mut qb, id.to_owned());
        DB::execute(c, &mut qb).await?;
    }

    let mut edges: Vec<(String, String)> = Vec::new();
    for chunk in parents.chunks(CHUNK) {
        let mut qb = QueryBuilder::<DB>::new(
            // The status is checked here: in SQL it could lead the plan to a scan.
            "SELECT e.parent_id, e.child_id, d.status FROM job_dependencies e \
             JOIN jobs d ON d.id = e.child_id WHERE e.resolved = 1 AND e.parent_id IN ",
        );
        push_ids(&mut qb, chunk);
        for r in fetch_text::<DB>(c, &mut qb, 3).await? {
            if r[2].as_deref() != Some("waiting") {
                continue;
            }
            edges.push((required(&r[0])?.to_owned(), required(&r[1])?.to_owned()));
        }
    }
    let mut by_parent: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut increment: BTreeMap<String, i64> = BTreeMap::new();
    for (parent, child) in edges {
        *increment.entry(child.clone()).or_default() += 1;
        by_parent.entry(parent).or_default().push(child);
    }
    for (parent, children) in by_parent {
        for chunk in children.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "UPDATE job_dependencies SET resolved = 0 WHERE parent_id = ",
            );
            DB::bind_text(&mut qb, parent.clone());
            qb.push(" AND child_id IN ");
            push_ids(&mut qb, chunk);
            DB::execute(c, &mut qb).await?;
        }
    }
    let mut by_amount: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (child, n) in increment {
        by_amount.entry(n).or_default().push(child);
    }
    for (n, children) in by_amount {
        for chunk in children.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new("UPDATE jobs SET pending_deps = pending_deps + ");
            DB::bind_int(&mut qb, n);
            qb.push(" WHERE id IN ");
            push_ids(&mut qb, chunk);
            DB::execute(c, &mut qb).await?;
        }
    }
    Ok(())
}

/// Cancels every job of workflow `id` that is not final (asks running ones to stop),
/// then settles the canceled ones. Returns how many it canceled or asked to stop.
pub(crate) async fn cancel_workflow<DB: Dialect>(
    c: &mut DB::Connection,
    id: &str,
    now: i64,
) -> Result<(u64, Settled), StoreError> {
    let mut qb = QueryBuilder::<DB>::new(
        "SELECT id, status FROM jobs WHERE status IN ('waiting', 'queued', 'scheduled', 'running') \
         AND workflow_id = ",
    );
    DB::bind_text(&mut qb, id.to_owned());
    qb.push(DB::FOR_UPDATE);
    let mut live: Vec<(String, String)> = Vec::new();
    for r in fetch_text::<DB>(c, &mut qb, 2).await? {
        live.push((required(&r[0])?.to_owned(), required(&r[1])?.to_owned()));
    }
    let (running, idle): (Vec<_>, Vec<_>) = live.into_iter().partition(|(_, s)| s == "running");
    let idle: Vec<String> = idle.into_iter().map(|(i, _)| i).collect();
    let running: Vec<String> = running.into_iter().map(|(i, _)| i).collect();
    for chunk in idle.chunks(CHUNK) {
        let mut qb = QueryBuilder::<DB>::new("UPDATE jobs SET status = 'canceled', finished_at = ");
        DB::bind_int(&mut qb, now);
        qb.push(", updated_at = ");
        DB::bind_int(&mut qb, now);
        qb.push(" WHERE status IN ('waiting', 'queued', 'scheduled') AND id IN ");
        push_ids(&mut qb, chunk);
        DB::execute(c, &mut qb).await?;
    }
    for chunk in running.chunks(CHUNK) {
        let mut qb =
            QueryBuilder::<DB>::new("UPDATE jobs SET cancel_requested = TRUE, updated_at = ");
        DB::bind_int(&mut qb, now);
        qb.push(" WHERE status = 'running' AND id IN ");
        push_ids(&mut qb, chunk);
        DB::execute(c, &mut qb).await?;
    }
    let settled = settle::<DB>(c, &idle, now).await?;
    Ok(((idle.len() + running.len()) as u64, settled))
}
