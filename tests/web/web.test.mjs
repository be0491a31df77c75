// Browser tests of kyu's web page (issue 7): Debian's headless chromium, driven by
// playwright-core, against a real `kyu serve` on a temporary SQLite database with an
// admin and two users. Requests to anything but kyu are blocked and reported, so the
// page must work with its network limited to kyu.
//
// Run: `cargo build` first (the binary is $CARGO_TARGET_DIR/debug/kyu, or KYU_BIN), then
// `npm ci && npm test` here. Screenshots of every page, 1280 px and 360 px wide, go to
// $KYU_WEB_SCREENSHOTS (default $CARGO_TARGET_DIR/web-screenshots); the path is printed.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const targetDir = process.env.CARGO_TARGET_DIR || path.join(root, 'target');
const kyuBin = process.env.KYU_BIN || path.join(targetDir, 'debug', 'kyu');
const shots = process.env.KYU_WEB_SCREENSHOTS || path.join(targetDir, 'web-screenshots');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 360, height: 780 };

let dir;
let server;
let base;
let browser;
const tokens = {};
const blocked = [];

function makeToken(name, role) {
  const out = execFileSync(kyuBin, ['token', name, '--role', role], { encoding: 'utf8' });
  const secret = /shown once\):\s*(\S+)/.exec(out)?.[1];
  const line = /give to kyu\):\s*(\S+)/.exec(out)?.[1];
  assert.ok(secret && line, `unexpected \`kyu token\` output: ${out}`);
  return { name, secret, line };
}

function startKyu(env) {
  return new Promise((resolve, reject) => {
    const proc = spawn(kyuBin, ['serve', '--bind', '127.0.0.1:0'], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    const timer = setTimeout(() => reject(new Error(`kyu did not start:\n${log}`)), 60_000);
    const onData = (chunk) => {
      log += chunk;
      const m = /kyu listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, base: m[1], log: () => log });
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code) => reject(new Error(`kyu exited (${code}):\n${log}`)));
  });
}

/// JSON API call with a bearer token (to set up jobs quickly).
async function api(method, p, token, body) {
  const res = await fetch(base + p, {
    method,
    headers: {
      authorization: `Bearer ${token.secret}`,
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await res.json().catch(() => null);
  return { status: res.status, json };
}

async function waitApiStatus(id, token, status, timeoutMs = 20_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const { json } = await api('GET', `/api/v1/jobs/${id}`, token);
    if (json?.status === status) return json;
    if (Date.now() > end) throw new Error(`job ${id} is ${json?.status}, not ${status}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/// A browser context (own cookies) whose requests may reach kyu only.
async function context(viewport = DESKTOP) {
  const ctx = await browser.newContext({ viewport, timezoneId: 'Asia/Tokyo', locale: 'en-GB' });
  await ctx.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(base + '/')) return route.continue();
    blocked.push(url);
    return route.abort();
  });
  return ctx;
}

async function signIn(ctx, token) {
  const page = await ctx.newPage();
  await page.goto(base + '/');
  assert.equal(new URL(page.url()).pathname, '/signin', 'unsigned visitors go to the sign-in form');
  await page.fill('#token', token.secret);
  await Promise.all([page.waitForURL(base + '/'), page.click('#signin-form button[type=submit]')]);
  return page;
}

function jobIdOf(page) {
  const m = /\/jobs\/([0-9a-f-]{36})/.exec(new URL(page.url()).pathname);
  assert.ok(m, `not a job page: ${page.url()}`);
  return m[1];
}

async function waitStatus(page, status, timeout = 20_000) {
  await page.waitForFunction(
    (s) => document.getElementById('job-status')?.textContent.trim() === s,
    status,
    { timeout },
  );
}

async function progressOf(page) {
  return Number(await page.locator('#job-progress').getAttribute('value'));
}

async function shot(page, name) {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/// The page is no wider than the viewport (no sideways scrolling of the whole page).
async function assertFits(page, width) {
  const w = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(w <= width, `${page.url()} is ${w}px wide at a ${width}px viewport`);
}

before(async () => {
  assert.ok(existsSync(kyuBin), `no kyu binary at ${kyuBin}: run cargo build first`);
  assert.ok(existsSync(chromiumPath), `no chromium at ${chromiumPath}: apt-get install chromium`);
  dir = mkdtempSync(path.join(tmpdir(), 'kyu-web-'));
  mkdirSync(shots, { recursive: true });
  tokens.admin = makeToken('ops', 'admin');
  tokens.alice = makeToken('alice', 'user');
  tokens.bob = makeToken('bob', 'user');
  server = await startKyu({
    DATABASE_URL: `sqlite://${path.join(dir, 'kyu.db')}`,
    KYU_API_TOKENS: [tokens.admin, tokens.alice, tokens.bob].map((t) => t.line).join(','),
    KYU_LEDGER_PATH: path.join(dir, 'ledger'),
    JOB_QUEUE_POLL_INTERVAL: '100ms',
    KYU_AUTOSCALE: 'false',
    KYU_SHUTDOWN_GRACE: '1s',
    NO_COLOR: '1',
  });
  base = server.base;
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--disable-dev-shm-usage',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  console.log(`kyu web screenshots: ${shots}`);
});

after(async () => {
  await browser?.close();
  if (server) {
    server.proc.kill('SIGTERM');
    await new Promise((r) => {
      const t = setTimeout(() => { server.proc.kill('SIGKILL'); r(); }, 5000);
      server.proc.on('exit', () => { clearTimeout(t); r(); });
    });
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
  console.log(`kyu web screenshots: ${shots}`);
});

test('sign in: a bad token is refused, a good one signs in with an HttpOnly SameSite=Strict cookie, sign out', async () => {
  const ctx = await context();
  const page = await ctx.newPage();
  const res = await page.goto(base + '/jobs');
  assert.equal(new URL(page.url()).pathname, '/signin');
  assert.match(res.headers()['content-security-policy'], /script-src 'self'/);
  await shot(page, 'signin-form-desktop');
  await page.fill('#token', 'kyu_not_a_token');
  await page.click('#signin-form button[type=submit]');
  assert.match(await page.textContent('#signin-error'), /not valid/);
  await page.fill('#token', tokens.admin.secret);
  await Promise.all([page.waitForURL(base + '/jobs'), page.click('#signin-form button[type=submit]')]);
  assert.equal(await page.textContent('#whoami'), 'ops · admin');
  const cookie = (await ctx.cookies()).find((c) => c.name === 'kyu_token');
  assert.ok(cookie, 'a session cookie');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.equal(await page.evaluate(() => document.cookie), '', 'scripts see no cookie');
  await Promise.all([page.waitForURL(/\/signin/), page.click('#signout')]);
  assert.match(await page.textContent('.notice'), /Signed out/);
  await page.goto(base + '/');
  assert.equal(new URL(page.url()).pathname, '/signin', 'signed out for real');
  await ctx.close();
});

test('enqueue an echo job through the form (payload checked before sending) and watch it complete', async () => {
  const ctx = await context();
  const page = await signIn(ctx, tokens.admin);
  await page.goto(base + '/enqueue');
  const types = await page.locator('#type option').allTextContents();
  assert.ok(types.includes('echo') && types.includes('ledger'), `types: ${types}`);
  await page.selectOption('#type', 'echo');
  // Not JSON: refused in the page, nothing is sent.
  await page.fill('#payload', '{"message": oops}');
  await page.click('#enqueue');
  assert.equal(new URL(page.url()).pathname, '/enqueue');
  assert.equal(await page.isVisible('#payload-error'), true);
  assert.match(await page.textContent('#payload-error'), /Not valid JSON/);
  await page.fill('#payload', '[1, 2]');
  await page.click('#enqueue');
  assert.match(await page.textContent('#payload-error'), /must be a JSON object/);
  // The server checks too (a request that skipped the script): a 400 page naming the field.
  const csrf = await page.locator('#enqueue-form input[name=csrf]').inputValue();
  const bad = await ctx.request.post(base + '/enqueue', {
    form: { csrf, type: 'echo', payload: '{nope', priority: '' },
    maxRedirects: 0,
  });
  assert.equal(bad.status(), 400);
  assert.match(await bad.text(), /payload/);
  // A payload its job type refuses: the form again, 422, naming the field.
  await page.selectOption('#type', 'delay_print');
  await page.fill('#payload', '{"text": "no message"}');
  await page.click('#enqueue');
  assert.equal(new URL(page.url()).pathname, '/enqueue');
  assert.match(await page.textContent('#form-error'), /payload\.message/);
  await page.selectOption('#type', 'echo');
  await page.fill('#payload', '{"message": "hello from the browser"}');
  await page.fill('#priority', '7');
  await page.fill('#max_retries', '2');
  await shot(page, 'enqueue-filled-desktop');
  await Promise.all([page.waitForURL(/\/jobs\/[0-9a-f-]{36}/), page.click('#enqueue')]);
  assert.match(await page.textContent('#notice'), /Job created/);
  await waitStatus(page, 'completed');
  assert.equal(await progressOf(page), 100);
  assert.match(await page.textContent('#job-result'), /hello from the browser/);
  assert.match(await page.textContent('#job-attempts'), /1 of 3/);
  // Times: the viewer's local time as text, with its zone (Tokyo: GMT+9), UTC on hover.
  const time = page.locator('.facts time').first();
  assert.match(await time.getAttribute('title'), / UTC$/);
  assert.match(await time.textContent(), /GMT\+9$/);
  await shot(page, 'job-completed-desktop');
  await ctx.close();
});

test('a slow job: its progress bar moves while it runs, and cancel (confirmed) stops it', async () => {
  const ctx = await context();
  const page = await signIn(ctx, tokens.admin);
  await page.goto(base + '/enqueue');
  await page.selectOption('#type', 'ledger');
  await page.fill('#payload', '{"ms": 30000, "progress": true}');
  await Promise.all([page.waitForURL(/\/jobs\/[0-9a-f-]{36}/), page.click('#enqueue')]);
  await waitStatus(page, 'running');
  // The page polls every 2 s; the job reports 10 % every 3 s.
  await page.waitForFunction(() => Number(document.getElementById('job-progress')?.value) > 0, null, { timeout: 15_000 });
  const first = await progressOf(page);
  await page.waitForFunction((p) => Number(document.getElementById('job-progress')?.value) > p, first, { timeout: 15_000 });
  const second = await progressOf(page);
  assert.ok(second > first && second < 100, `progress ${first} → ${second}`);
  assert.match(await page.textContent('#job-progress-text'), new RegExp(`${second} %`));
  await shot(page, 'job-running-desktop');
  const dialogs = [];
  page.once('dialog', async (d) => {
    dialogs.push(d.type());
    await d.accept();
  });
  await Promise.all([page.waitForURL(/notice=/), page.click('#cancel')]);
  assert.deepEqual(dialogs, ['confirm'], 'cancel asks first');
  assert.match(await page.textContent('#notice'), /asked to stop|canceled/);
  await waitStatus(page, 'canceled');
  assert.match(await page.textContent('#job-errors'), /canceled/);
  assert.ok((await progressOf(page)) < 100, 'stopped before the end');
  assert.equal(await page.isVisible('#cancel'), false, 'no cancel button on a final job');
  await ctx.close();
});

test('retry a failed job (confirmed): it runs again, and the first attempt\'s error is kept', async () => {
  // Fails its first attempt for good (non_retryable, no retries left), succeeds after.
  const created = await api('POST', '/api/v1/jobs', tokens.admin, {
    type: 'ledger',
    payload: { fail: 'non_retryable', fail_attempts: 1 },
    max_retries: 0,
  });
  assert.equal(created.status, 201);
  const id = created.json.job_id;
  await waitApiStatus(id, tokens.admin, 'failed');
  const ctx = await context();
  const page = await signIn(ctx, tokens.admin);
  await page.goto(`${base}/jobs/${id}`);
  assert.equal((await page.textContent('#job-status')).trim(), 'failed');
  const errors = await page.textContent('#job-errors');
  assert.match(errors, /non_retryable/);
  assert.match(errors, /asked to fail attempt 1/);
  assert.equal(await page.isVisible('#cancel'), false);
  await shot(page, 'job-failed-desktop');
  page.once('dialog', (d) => d.accept());
  await Promise.all([page.waitForURL(/notice=retried/), page.click('#retry')]);
  assert.match(await page.textContent('#notice'), /queued again/);
  await waitStatus(page, 'completed');
  assert.match(await page.textContent('#job-errors'), /asked to fail attempt 1/);
  assert.match(await page.textContent('#job-attempts'), /^2 of/);
  // Dismissing the confirmation changes nothing (no retry button now; cancel on another job).
  await ctx.close();
});

test('a user sees only its own jobs: another user\'s job is not listed and its URL is a 404', async () => {
  const alices = (await api('POST', '/api/v1/jobs', tokens.alice, { type: 'echo', payload: { who: 'alice' } })).json.job_id;
  const bobs = (await api('POST', '/api/v1/jobs', tokens.bob, { type: 'echo', payload: { who: 'bob' } })).json.job_id;
  await waitApiStatus(alices, tokens.alice, 'completed');
  const ctx = await context();
  const page = await signIn(ctx, tokens.bob);
  assert.equal(await page.textContent('#whoami'), 'bob · user');
  assert.equal(await page.locator('form[action="/queues/pause"]').count(), 0, 'users cannot pause queues');
  await page.goto(base + '/jobs');
  const listed = await page.locator('#jobs tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.job));
  assert.ok(listed.includes(bobs), 'bob sees his job');
  assert.ok(!listed.includes(alices), 'bob does not see alice\'s job');
  // Typing the URL: 404, like a job that does not exist.
  const res = await page.goto(`${base}/jobs/${alices}`);
  assert.equal(res.status(), 404);
  assert.match(await page.textContent('main'), /job not found/);
  assert.ok(!(await page.content()).includes('alice'), 'nothing of the job leaks');
  assert.equal((await page.goto(`${base}/jobs/${alices}/live`)).status(), 404);
  // Nor can bob act on it.
  await page.goto(`${base}/jobs/${bobs}`);
  const csrf = await page.locator('form[action="/signout"] input[name=csrf]').inputValue();
  const cancel = await ctx.request.post(`${base}/jobs/${alices}/cancel`, { form: { csrf }, maxRedirects: 0 });
  assert.equal(cancel.status(), 404);
  // The admin sees both.
  const admin = await context();
  const apage = await signIn(admin, tokens.admin);
  await apage.goto(base + '/jobs');
  const all = await apage.locator('#jobs tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.job));
  assert.ok(all.includes(alices) && all.includes(bobs));
  await apage.goto(`${base}/jobs?owner=alice`);
  const only = await apage.locator('#jobs tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.job));
  assert.deepEqual(only, [alices]);
  await admin.close();
  await ctx.close();
});

test('a payload holding <script>alert(1)</script> renders as text; no script runs', async () => {
  const evil = '<script>alert(1)</script>';
  const ctx = await context();
  const page = await signIn(ctx, tokens.admin);
  const dialogs = [];
  page.on('dialog', async (d) => {
    dialogs.push(d.message());
    await d.dismiss();
  });
  await page.goto(base + '/enqueue');
  await page.selectOption('#type', 'echo');
  await page.fill('#payload', JSON.stringify({ note: evil }));
  await page.fill('#queue', '<img src=x onerror=alert(2)>');
  await Promise.all([page.waitForURL(/\/jobs\/[0-9a-f-]{36}/), page.click('#enqueue')]);
  await waitStatus(page, 'completed');
  assert.ok((await page.textContent('#job-payload')).includes(evil), 'the payload is shown as text');
  assert.ok((await page.textContent('#job-result')).includes(evil), 'the result is shown as text');
  assert.equal(await page.locator('#job-live script, #job-live img').count(), 0, 'no element was made from it');
  await page.goto(base + '/');
  assert.ok((await page.textContent('#queues')).includes('<img src=x onerror=alert(2)>'), 'queue name as text');
  await page.goto(base + '/jobs?queue=' + encodeURIComponent('<img src=x onerror=alert(2)>'));
  assert.equal(await page.locator('#jobs tbody tr').count(), 1);
  await page.waitForTimeout(500);
  assert.deepEqual(dialogs, [], 'no alert fired');
  await ctx.close();
});

test('state-changing requests need the session\'s CSRF token', async () => {
  const ctx = await context();
  const page = await signIn(ctx, tokens.admin);
  const id = (await api('POST', '/api/v1/jobs', tokens.admin, { type: 'echo', delay_seconds: 3600 })).json.job_id;
  const wrong = await ctx.request.post(`${base}/jobs/${id}/cancel`, { form: { csrf: 'x'.repeat(32) }, maxRedirects: 0 });
  assert.equal(wrong.status(), 403);
  const none = await ctx.request.post(`${base}/queues/pause`, { form: { queue: 'default' }, maxRedirects: 0 });
  assert.equal(none.status(), 403);
  const csrf = await page.locator('form[action="/signout"] input[name=csrf]').inputValue();
  const foreign = await ctx.request.post(`${base}/jobs/${id}/cancel`, {
    form: { csrf },
    headers: { origin: 'http://evil.example' },
    maxRedirects: 0,
  });
  assert.equal(foreign.status(), 403, 'another site\'s Origin is refused');
  assert.equal((await api('GET', `/api/v1/jobs/${id}`, tokens.admin)).json.status, 'scheduled');
  const ok = await ctx.request.post(`${base}/jobs/${id}/cancel`, { form: { csrf }, maxRedirects: 0 });
  assert.equal(ok.status(), 303);
  assert.equal((await api('GET', `/api/v1/jobs/${id}`, tokens.admin)).json.status, 'canceled');
  await ctx.close();
});

test('pause and resume a queue from the overview (admin)', async () => {
  const ctx = await context();
  const page = await signIn(ctx, tokens.admin);
  const row = page.locator('#queues tr[data-queue="default"]');
  await Promise.all([page.waitForURL(/notice=paused/), row.locator('button', { hasText: 'Pause' }).click()]);
  assert.match(await page.textContent('#notice'), /paused/);
  assert.match(await row.textContent(), /paused/);
  const held = (await api('POST', '/api/v1/jobs', tokens.admin, { type: 'echo' })).json.job_id;
  await page.waitForTimeout(700);
  assert.equal((await api('GET', `/api/v1/jobs/${held}`, tokens.admin)).json.status, 'queued', 'a paused queue starts nothing');
  await page.reload();
  assert.ok(Number(await row.locator('td').nth(0).textContent()) >= 1, 'the queued job is counted');
  await shot(page, 'overview-paused-desktop');
  await Promise.all([page.waitForURL(/notice=resumed/), row.locator('button', { hasText: 'Resume' }).click()]);
  await waitApiStatus(held, tokens.admin, 'completed');
  await ctx.close();
});

test('concurrency keys: the overview lists a key at its limit with the jobs it holds; the job page names the key', async () => {
  const ids = [];
  for (let i = 0; i < 3; i++) {
    const r = await api('POST', '/api/v1/jobs', tokens.admin, { type: 'ledger', payload: { ms: 2000 }, concurrency_key: 'web:k' });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    ids.push(r.json.job_id);
  }
  await waitApiStatus(ids[0], tokens.admin, 'running');
  const ctx = await context();
  const page = await signIn(ctx, tokens.admin);
  const row = page.locator('tr[data-key="web:k"]');
  const cells = await row.locator('td').allTextContents();
  assert.deepEqual(cells.map((c) => c.trim()), ['1', '1', '2', '2'], `limit, running, queued, held: ${cells}`);
  await page.goto(`${base}/jobs/${ids[1]}`);
  assert.match(await page.textContent('body'), /Concurrency key\s*web:k/);
  await ctx.close();
  for (const id of ids.slice(1)) await api('POST', `/api/v1/jobs/${id}/cancel`, tokens.admin);
  await waitApiStatus(ids[0], tokens.admin, 'completed');
});

test('a workflow: its jobs by stage, statuses that follow it live, links to its jobs and back; another user gets a 404', async () => {
  const created = await api('POST', '/api/v1/workflows', tokens.alice, {
    name: 'nightly',
    jobs: [
      { key: 'slow', type: 'ledger', payload: { ms: 3000 } },
      { key: 'fetch', type: 'echo', payload: { n: 1 } },
      { key: 'digest', type: 'echo', payload: { n: 2 }, depends_on: ['slow', 'fetch'] },
    ],
  });
  assert.equal(created.status, 201, JSON.stringify(created.json));
  const { workflow_id: wf, jobs } = created.json;
  const ctx = await context();
  const page = await signIn(ctx, tokens.alice);
  await page.goto(`${base}/workflows/${wf}`);
  assert.equal(await page.textContent('#workflow-name'), 'nightly');
  const stages = await page.$$eval('#workflow-jobs tbody tr', (rows) =>
    rows.map((r) => [r.getAttribute('data-key'), r.querySelector('td').textContent.trim()]));
  assert.deepEqual(stages.map(([, s]) => s), ['1', '1', '2'], `stages: ${JSON.stringify(stages)}`);
  assert.equal(stages[2][0], 'digest');
  const digestStatus = () => page.textContent('#workflow-jobs tr[data-key=digest] .st');
  assert.equal((await digestStatus()).trim(), 'waiting', 'the join waits for the slow job');
  // No reload: the card polls until the workflow ends.
  await page.waitForFunction(
    () => document.getElementById('workflow-status')?.textContent.trim() === 'completed',
    null,
    { timeout: 30_000 },
  );
  assert.equal((await digestStatus()).trim(), 'completed');
  await shot(page, 'workflow-desktop');
  await Promise.all([page.waitForURL(`${base}/jobs/${jobs.digest}`), page.click('#workflow-jobs a:text-is("digest")')]);
  assert.equal(await page.textContent('#job-workflow'), 'digest');
  await Promise.all([page.waitForURL(`${base}/workflows/${wf}`), page.click('#job-workflow')]);
  await ctx.close();

  const other = await context();
  const bobPage = await signIn(other, tokens.bob);
  const res = await bobPage.goto(`${base}/workflows/${wf}`);
  assert.equal(res.status(), 404, 'another user\'s workflow is not shown');
  await other.close();
});

test('every page at 1280 px and 360 px: screenshots, and nothing wider than the screen', async () => {
  // A job still running for the job-page shots, and a failed one for colour.
  const running = (await api('POST', '/api/v1/jobs', tokens.admin, { type: 'ledger', payload: { ms: 60000, progress: true } })).json.job_id;
  await waitApiStatus(running, tokens.admin, 'running');
  const flow = (await api('POST', '/api/v1/workflows', tokens.admin, {
    name: 'screenshots',
    jobs: [
      { key: 'a-job-with-a-long-key', type: 'echo', payload: {} },
      { key: 'then', type: 'echo', payload: {}, depends_on: ['a-job-with-a-long-key'] },
    ],
  })).json.workflow_id;
  for (const [label, viewport] of [['desktop', DESKTOP], ['360', PHONE]]) {
    const ctx = await context(viewport);
    const page = await signIn(ctx, tokens.admin);
    await page.waitForTimeout(300);
    for (const [name, url] of [
      ['overview', '/'],
      ['jobs', '/jobs'],
      ['job', `/jobs/${running}`],
      ['enqueue', '/enqueue'],
      ['workflow', `/workflows/${flow}`],
    ]) {
      await page.goto(base + url);
      if (name === 'job') {
        await page.waitForFunction(() => Number(document.getElementById('job-progress')?.value) > 0, null, { timeout: 15_000 });
      }
      await assertFits(page, viewport.width);
      await shot(page, `${name}-${label}`);
    }
    await Promise.all([page.waitForURL(/\/signin/), page.click('#signout')]);
    await assertFits(page, viewport.width);
    await shot(page, `signin-${label}`);
    await ctx.close();
  }
  await api('POST', `/api/v1/jobs/${running}/cancel`, tokens.admin);
  assert.deepEqual(blocked, [], 'the page asked for nothing outside kyu');
});
