/**
 * The example end to end, as CI runs it: start kyu (with kyu.toml), the fake Chatwork
 * server and the worker process; enqueue a sync and follow it to the end with progress;
 * enqueue a second one and cancel it mid-way; stop everything. Exits non-zero if any
 * step does not go as expected.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@kyu/client";
import { FAKE_TOKEN, startFakeChatwork } from "./fake-chatwork.js";

const here = resolve(dirname(fileURLToPath(import.meta.url)), "..");
// KYU_BIN, else the repository's cargo debug build (target/, or CARGO_TARGET_DIR when set).
const kyuBin =
  process.env.KYU_BIN || resolve(here, "../..", process.env.CARGO_TARGET_DIR || "target", "debug", "kyu");

function freePort(): Promise<number> {
  return new Promise((ok) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => ok(port));
    });
  });
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`example failed: ${what}`);
}

const exited = (p: ChildProcess): Promise<unknown> => new Promise((r) => (p.exitCode !== null ? r(null) : p.once("exit", r)));

const dir = mkdtempSync(join(tmpdir(), "kyu-chatwork-"));
const port = await freePort();
const kyuUrl = `http://127.0.0.1:${port}`;
const kyu = spawn(kyuBin, ["serve", "--bind", `127.0.0.1:${port}`, "--config", join(here, "kyu.toml")], {
  cwd: dir,
  env: { ...process.env, KYU_LOG: "warn" },
  stdio: ["ignore", "inherit", "inherit"],
});
const chatwork = await startFakeChatwork();
let worker: ChildProcess | undefined;

try {
  for (let i = 0; ; i++) {
    check(kyu.exitCode === null && i < 400, "kyu starts");
    if (await fetch(`${kyuUrl}/readyz`).then((r) => r.ok, () => false)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  console.log(`kyu on ${kyuUrl}, fake Chatwork on ${chatwork.url}`);

  worker = spawn(process.execPath, [join(here, "dist/worker.js")], {
    env: { ...process.env, KYU_URL: kyuUrl, CHATWORK_API_URL: chatwork.url, CHATWORK_API_TOKEN: FAKE_TOKEN },
    stdio: ["ignore", "inherit", "inherit"],
  });

  const client = new Client({ url: kyuUrl });

  // 1. A sync followed to its end, progress per room.
  const first = await client.enqueue("chatwork_rooms_sync", { user_id: "u-1" });
  console.log(`enqueued sync ${first.id}`);
  const done = await client.wait(first.id, {
    timeoutMs: 30_000,
    onProgress: (p) => console.log(`  progress ${p}%`),
  });
  console.log(`sync ${done.status}: ${JSON.stringify(done.result)}`);
  check(done.status === "completed", "the first sync completes");
  check((done.result as { total?: number } | null)?.total === 8, "it synced the 8 rooms");

  // 2. A second sync, canceled once it has started.
  const second = await client.enqueue("chatwork_rooms_sync", { user_id: "u-2" });
  for (let i = 0; ; i++) {
    const j = await client.get(second.id);
    check(j.status !== "completed" && i < 600, "the second sync starts before it ends");
    if (j.status === "running" && j.progress > 0) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  console.log(`canceling sync ${second.id} mid-way`);
  await client.cancel(second.id);
  const canceled = await client.wait(second.id, { timeoutMs: 30_000 });
  console.log(`second sync ${canceled.status} at ${canceled.progress}% (${canceled.error?.message ?? ""})`);
  check(canceled.status === "canceled" && canceled.progress < 100, "the second sync is canceled mid-way");

  // 3. Two syncs of one user, enqueued together: kyu runs them one after the other
  // (concurrency key chatwork:<user_id>, limit 1), though the worker could take both.
  const pair = await Promise.all([0, 1].map(() => client.enqueue("chatwork_rooms_sync", { user_id: "u-3" })));
  const [a, b] = await Promise.all(pair.map((j) => client.wait(j.id, { timeoutMs: 60_000 })));
  check(a.status === "completed" && b.status === "completed", "both syncs of u-3 complete");
  check(a.concurrencyKey === "chatwork:u-3", "the sync carries its user's key");
  const [early, late] = a.startedAt! <= b.startedAt! ? [a, b] : [b, a];
  check(late.startedAt! >= early.finishedAt!, "the second sync of u-3 started after the first ended");
  console.log(`syncs of u-3 ran one after the other (${early.finishedAt!.toISOString()} → ${late.startedAt!.toISOString()})`);

  // 4. Graceful stop.
  worker.kill("SIGTERM");
  await exited(worker);
  check(worker.exitCode === 0, "the worker stops cleanly on SIGTERM");
  console.log("example ok");
} finally {
  if (worker && worker.exitCode === null) worker.kill("SIGKILL");
  await chatwork.close();
  kyu.kill("SIGTERM");
  await exited(kyu);
  rmSync(dir, { recursive: true, force: true });
}
