//! The keyed part of a claim, written once for SQLite, PostgreSQL and MariaDB: jobs
//! that carry a concurrency key start only while fewer than the key's limit run.
//!
//! The caller holds what makes counting safe — SQLite's single writer, a transaction
//! advisory lock on PostgreSQL, the `flow_locks` row on MariaDB — from before these
//! statements until it commits the picked jobs as running, so no two claims count one
//! key at once, and each statement reads what committed before it (READ COMMITTED).
//! Keys are visited in rotation from a cursor, a bounded number per claim (a loose
//! scan, one index probe per key), so a key at its limit with a large backlog holds up
//! neither other keys nor plain jobs, which the plain claim reads from indexes keyed
//! jobs are not in.

use std::sync::Mutex;

use kyu_actors::StoreError;
use kyu_actors::store::{ClaimParams, KeyState};
use sqlx::QueryBuilder;

use super::workflow::{Col, Dialect, fetch_text};

/// Keys one claim looks at, at most.
const KEYS_PER_CLAIM: i64 = 64;

/// A claim's filter for paused queues, read in the claim's own statement: one round
/// trip less than fetching the list first. Used by every backend's keyed pick and by
/// SQLite's plain pick (PostgreSQL's plain claim has its own `NOT EXISTS`; MariaDB's
/// still reads the list before its transaction).
pub(crate) const NOT_PAUSED: &str = " AND queue NOT IN (SELECT name FROM queues WHERE paused)";

/// A key's limit (its first queued job's) and its running jobs, for each `k.ck`.
fn key_limit_and_running<DB: Dialect>() -> String {
    format!(
        "(SELECT q.concurrency_limit FROM jobs q{queued} \
         WHERE q.status = 'queued' AND q.concurrency_key = k.ck \
         ORDER BY q.priority DESC, q.fair_at, q.id LIMIT 1), \
         (SELECT COUNT(*) FROM jobs r{running} \
         WHERE r.status = 'running' AND r.concurrency_key = k.ck)",
        queued = DB::KEY_QUEUED,
        running = DB::KEY_RUNNING,
    )
}

/// Where the next claim's walk over keys starts: after the last key looked at.
#[derive(Debug, Default)]
pub(crate) struct KeyCursor(Mutex<String>);

impl KeyCursor {
    fn get(&self) -> String {
        self.0.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn set(&self, key: &str) {
        if let Ok(mut c) = self.0.lock() {
            key.clone_into(&mut c);
        }
    }
}

/// A key with queued jobs, its limit (its first queued job's) and how many run now.
struct KeyRoom {
    key: String,
    room: i64,
}

/// Whether any keyed job is queued (one index probe): claims skip the keyed part,
/// and its lock, when none is.
pub(crate) async fn any_queued<DB: Dialect>(c: &mut DB::Connection) -> Result<bool, StoreError> {
    let mut qb = QueryBuilder::<DB>::new(format!(
        "SELECT id FROM jobs{} WHERE status = 'queued' AND concurrency_key IS NOT NULL LIMIT 1",
        DB::KEY_QUEUED
    ));
    Ok(!fetch_text::<DB>(c, &mut qb, 1).await?.is_empty())
}

/// Up to `limit` queued keyed jobs of the claim's types and queues, best first, at
/// most each key's room; locked (PostgreSQL, MariaDB) and still queued. The caller
/// must hold the keyed-claim lock and mark them running before it commits.
pub(crate) async fn pick<DB: Dialect>(
    c: &mut DB::Connection,
    p: &ClaimParams,
    cursor: &KeyCursor,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    if limit <= 0 || p.types.is_empty() {
        return Ok(Vec::new());
    }
    let start = cursor.get();
    let mut keys = rooms::<DB>(c, &start, KEYS_PER_CLAIM).await?;
    if (keys.len() as i64) < KEYS_PER_CLAIM && !start.is_empty() {
        // Wrap around: the keys before the cursor, up to where this walk began.
        // Deduplicated by key: a key counted twice would get its room twice.
        let more = rooms::<DB>(c, "", KEYS_PER_CLAIM - keys.len() as i64).await?;
        let seen: std::collections::HashSet<String> = keys.iter().map(|k| k.key.clone()).collect();
        keys.extend(more.into_iter().filter(|k| !seen.contains(&k.key)));
    }
    if let Some(last) = keys.last() {
        cursor.set(&last.key);
    }
    let open: Vec<&KeyRoom> = keys.iter().filter(|k| k.room > 0).collect();
    if open.is_empty() {
        return Ok(Vec::new());
    }
    let mut qb = QueryBuilder::<DB>::new("SELECT id FROM (");
    for (i, k) in open.iter().enumerate() {
        if i > 0 {
            qb.push(" UNION ALL ");
        }
        qb.push(format!(
            "SELECT * FROM (SELECT id, priority, fair_at FROM jobs{} \
             WHERE status = 'queued' AND concurrency_key = ",
            DB::KEY_QUEUED
        ));
        DB::bind_text(&mut qb, k.key.clone());
        push_in::<DB>(&mut qb, " AND job_type IN ", &p.types);
        qb.push(NOT_PAUSED);
        if let Some(queues) = p.queues.as_ref().filter(|q| !q.is_empty()) {
            push_in::<DB>(&mut qb, " AND queue IN ", queues);
        }
        qb.push(" ORDER BY priority DESC, fair_at, id LIMIT ");
        DB::bind_int(&mut qb, k.room.min(limit));
        qb.push(format!(") k{i}"));
    }
    qb.push(") u ORDER BY priority DESC, fair_at, id LIMIT ");
    DB::bind_int(&mut qb, limit);
    let ids: Vec<String> = fetch_text::<DB>(c, &mut qb, 1)
        .await?
        .into_iter()
        .filter_map(|mut r| r.pop().flatten())
        .collect();
    if ids.is_empty() {
        return Ok(ids);
    }
    // A cancel may have taken one since: keep (and lock) those still queued.
    let mut qb = QueryBuilder::<DB>::new("SELECT id FROM jobs WHERE status = 'queued' AND id IN ");
    super::workflow::push_ids::<DB>(&mut qb, &ids);
    qb.push(DB::FOR_UPDATE);
    let held: Vec<String> = fetch_text::<DB>(c, &mut qb, 1)
        .await?
        .into_iter()
        .filter_map(|mut r| r.pop().flatten())
        .collect();
    Ok(ids.into_iter().filter(|id| held.contains(id)).collect())
}

/// The next `n` keys after `after` that have queued jobs, each with its room: a loose
/// index scan (one probe per key, not per job).
async fn rooms<DB: Dialect>(
    c: &mut DB::Connection,
    after: &str,
    n: i64,
) -> Result<Vec<KeyRoom>, StoreError> {
    let mut qb = QueryBuilder::<DB>::new("");
    push_key_walk::<DB>(&mut qb, after, n);
    qb.push(" SELECT k.ck, ")
        .push(key_limit_and_running::<DB>())
        .push(" FROM k WHERE k.ck IS NOT NULL");
    let rows = DB::fetch(c, &mut qb, &[Col::Text, Col::Int, Col::Int]).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let key = r[0].text()?;
            let limit = r[1].int().unwrap_or(1).max(1);
            let running = r[2].int().unwrap_or(0);
            Some(KeyRoom {
                key,
                room: limit - running,
            })
        })
        .collect())
}

/// `WITH RECURSIVE k (ck, n)`: the next `n` keys after `after` with queued jobs, one
/// index probe each (a loose scan).
fn push_key_walk<DB: Dialect>(qb: &mut QueryBuilder<DB>, after: &str, n: i64) {
    qb.push(format!(
        "WITH RECURSIVE k (ck, n) AS (\
         SELECT (SELECT MIN(concurrency_key) FROM jobs{} \
           WHERE status = 'queued' AND concurrency_key IS NOT NULL AND concurrency_key > ",
        DB::KEY_QUEUED
    ));
    DB::bind_text(qb, after.to_owned());
    qb.push(format!(
        "), 1 UNION ALL \
         SELECT (SELECT MIN(j.concurrency_key) FROM jobs j{} \
           WHERE j.status = 'queued' AND j.concurrency_key IS NOT NULL \
             AND j.concurrency_key > k.ck), k.n + 1 \
         FROM k WHERE k.ck IS NOT NULL AND k.n < ",
        DB::KEY_QUEUED
    ));
    DB::bind_int(qb, n);
    qb.push(")");
}

/// Up to `limit` keys after `after` with queued jobs: limit, running, queued.
pub(crate) async fn key_states<DB: Dialect>(
    c: &mut DB::Connection,
    after: &str,
    limit: u32,
) -> Result<Vec<KeyState>, StoreError> {
    let mut qb = QueryBuilder::<DB>::new("");
    push_key_walk::<DB>(&mut qb, after, i64::from(limit.clamp(1, 1000)));
    qb.push(" SELECT k.ck, ")
        .push(key_limit_and_running::<DB>())
        .push(format!(
            ", (SELECT COUNT(*) FROM jobs w{} \
             WHERE w.status = 'queued' AND w.concurrency_key = k.ck) \
             FROM k WHERE k.ck IS NOT NULL ORDER BY k.ck",
            DB::KEY_QUEUED
        ));
    let rows = DB::fetch(c, &mut qb, &[Col::Text, Col::Int, Col::Int, Col::Int]).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some(KeyState {
                key: r[0].text()?,
                limit: r[1].int().unwrap_or(1).clamp(1, i64::from(u32::MAX)) as u32,
                running: r[2].int().unwrap_or(0).max(0) as u64,
                queued: r[3].int().unwrap_or(0).max(0) as u64,
            })
        })
        .collect())
}

/// ` AND col IN (…)` binding each value.
fn push_in<DB: Dialect>(qb: &mut QueryBuilder<DB>, head: &str, values: &[String]) {
    qb.push(head);
    super::workflow::push_ids::<DB>(qb, values);
}
