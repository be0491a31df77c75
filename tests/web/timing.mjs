// How fast the web page's Overview and Jobs pages answer with many jobs in the store
// (issue 7: under 100 ms with 100,000 jobs). Not part of CI: run it by hand after
// `cargo build --release`:
//
//   node timing.mjs [DATABASE_URL] [JOBS]
//
// DATABASE_URL defaults to a fresh SQLite file; for PostgreSQL give an empty database.
// JOBS = 0 times a database filled by an earlier run (e.g. after `VACUUM ANALYZE`).
// It starts `kyu serve` ($KYU_BIN, default $CARGO_TARGET_DIR/release/kyu), fills the
// store through the API's batch create (most jobs finish; some fail, some are
// scheduled, some wait in a paused queue), waits for the engine to drain, then times
// each page 30 times and prints one JSON line per page (median, p95, max in ms).

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const targetDir = process.env.CARGO_TARGET_DIR || path.join(here, '..', '..', 'target');
const kyuBin = process.env.KYU_BIN || path.join(targetDir, 'release', 'kyu');
const dir = mkdtempSync(path.join(tmpdir(), 'kyu-timing-'));
const dbUrl = process.argv[2] || `sqlite://${path.join(dir, 'kyu.db')}`;
const total = Number(process.argv[3] || 100_000);

function token(name, role) {
  const out = execFileSync(kyuBin, ['token', name, '--role', role], { encoding: 'utf8' });
  return { name, secret: /shown once\):\s*(\S+)/.exec(out)[1], line: /give to kyu\):\s*(\S+)/.exec(out)[1] };
}
const admin = token('ops', 'admin');
const alice = token('alice', 'user');

const proc = spawn(kyuBin, ['serve', '--bind', '127.0.0.1:0'], {
  env: {
    ...process.env,
    DATABASE_URL: dbUrl,
    KYU_API_TOKENS: `${admin.line},${alice.line}`,
    KYU_LEDGER_PATH: path.join(dir, 'ledger'),
    JOB_QUEUE_WORKER_COUNT: '8',
    KYU_AUTOSCALE: 'false',
    KYU_LOG: 'warn,kyu::serve=info',
    NO_COLOR: '1',
  },
  stdio: ['ignore', 'pipe', 'pipe'],
});
const base = await new Promise((resolve, reject) => {
  let log = '';
  const on = (c) => {
    log += c;
    const m = /kyu listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
    if (m) resolve(m[1]);
  };
  proc.stdout.on('data', on);
  proc.stderr.on('data', on);
  proc.on('exit', (c) => reject(new Error(`kyu exited ${c}: ${log}`)));
});

async function api(method, p, who, body) {
  const res = await fetch(base + p, {
    method,
    headers: { authorization: `Bearer ${who.secret}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${await res.text()}`);
  return res.json();
}

// The mix: 2 % failed (alice), 2 % scheduled far ahead (alice), 1 % waiting in a paused
// queue, the rest completed across three queues.
const started = Date.now();
if (total > 0) await api('POST', '/api/v1/queues/held/pause', admin);
const batches = Math.ceil(total / 1000);
for (let b = 0; b < batches; b++) {
  const n = Math.min(1000, total - b * 1000);
  const kind = b % 100;
  const jobs = Array.from({ length: n }, (_, i) => {
    if (kind < 2) return { type: 'ledger', payload: { fail: 'non_retryable', i }, max_retries: 0 };
    if (kind < 4) return { type: 'echo', payload: { i }, delay_seconds: 86400 };
    if (kind < 5) return { type: 'echo', payload: { i }, queue: 'held' };
    return { type: i % 2 ? 'noop' : 'echo', payload: { i }, queue: ['default', 'emails', 'reports'][b % 3] };
  });
  await api('POST', '/api/v1/jobs/batch', kind < 4 ? alice : admin, { jobs });
}
for (;;) {
  const { queues } = await api('GET', '/api/v1/queues', admin);
  const left = queues
    .filter((q) => q.name !== 'held')
    .reduce((s, q) => s + q.counts.queued + q.counts.running, 0);
  if (left === 0) break;
  await new Promise((r) => setTimeout(r, 500));
}
const seeded = (Date.now() - started) / 1000;

const cookie = (who) => `kyu_token=${Buffer.from(who.secret).toString('hex')}`;
async function time(label, p, who = admin, runs = 30) {
  const ms = [];
  for (let i = 0; i < runs + 3; i++) {
    const t = process.hrtime.bigint();
    const res = await fetch(base + p, { headers: { cookie: cookie(who) }, redirect: 'manual' });
    const body = await res.text();
    const d = Number(process.hrtime.bigint() - t) / 1e6;
    if (res.status !== 200) throw new Error(`${p}: ${res.status} ${body.slice(0, 200)}`);
    if (i >= 3) ms.push(d); // the first few warm caches and connections
  }
  ms.sort((a, b) => a - b);
  const q = (f) => ms[Math.min(ms.length - 1, Math.floor(f * ms.length))].toFixed(1);
  console.log(JSON.stringify({ page: label, path: p, median_ms: +q(0.5), p95_ms: +q(0.95), max_ms: +ms.at(-1).toFixed(1) }));
}

const { queues } = await api('GET', '/api/v1/queues', admin);
console.log(JSON.stringify({ backend: dbUrl.split(":")[0], seeded_jobs: total, seeded_s: seeded, queues }));
await time('overview', '/');
await time('jobs', '/jobs');
const first = await api('GET', '/api/v1/jobs?limit=50', admin);
await time('jobs page 2', `/jobs?cursor=${first.next_cursor}`);
await time('jobs status=failed', '/jobs?status=failed');
await time('jobs status=queued', '/jobs?status=queued');
await time('jobs queue=emails', '/jobs?queue=emails');
await time('jobs queue=held', '/jobs?queue=held');
await time('jobs type=ledger', '/jobs?type=ledger');
await time('jobs queue=reports type=echo status=completed', '/jobs?queue=reports&type=echo&status=completed');
await time('jobs as user alice', '/jobs', alice);
await time('overview as user alice', '/', alice);
const one = first.jobs[0].job_id;
await time('job', `/jobs/${one}`);

proc.kill('SIGTERM');
await new Promise((r) => proc.on('exit', r));
rmSync(dir, { recursive: true, force: true });
