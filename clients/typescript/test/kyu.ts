/**
 * Starts a real `kyu serve` for the tests: a free loopback port, a fresh temp dir (its own
 * SQLite file), a config declaring the tests' remote job types. Nothing on the server side
 * is mocked.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The client's folder (build/test/… → ../..). */
export const CLIENT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/**
 * KYU_BIN, else the repository's cargo debug build: target/debug/kyu, or
 * $CARGO_TARGET_DIR/debug/kyu when CARGO_TARGET_DIR is set (relative to the repository).
 */
export function kyuBin(): string {
  if (process.env.KYU_BIN) return process.env.KYU_BIN;
  return resolve(CLIENT_DIR, "../..", process.env.CARGO_TARGET_DIR || "target", "debug", "kyu");
}

export const TEST_CONFIG = `
[[kyu_remote_type]]
name = "ts_test"
timeout_seconds = 60
max_retries = 3

[[kyu_remote_type]]
name = "ts_noop"

[[kyu_remote_type]]
name = "ts_stocks"
schema = '''{"type": "object", "required": ["symbols"],
             "properties": {"symbols": {"type": "array", "items": {"type": "string"}}}}'''
`;

export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => ok(port));
    });
  });
}

export interface Kyu {
  url: string;
  dir: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

export async function startKyu(options: { env?: Record<string, string>; config?: string } = {}): Promise<Kyu> {
  const dir = mkdtempSync(join(tmpdir(), "kyu-ts-"));
  const configPath = join(dir, "kyu.toml");
  writeFileSync(configPath, options.config ?? TEST_CONFIG);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let log = "";
  const proc = spawn(kyuBin(), ["serve", "--bind", `127.0.0.1:${port}`, "--config", configPath], {
    cwd: dir,
    env: { ...process.env, KYU_LOG: "warn", ...options.env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  proc.stderr?.on("data", (b: Buffer) => {
    log = (log + b.toString()).slice(-4000);
  });
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  const started = Date.now();
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`kyu exited with ${proc.exitCode}:\n${log}`);
    try {
      const res = await fetch(`${url}/readyz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() - started > 20_000) {
      proc.kill("SIGKILL");
      throw new Error(`kyu did not get ready in 20 s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    dir,
    proc,
    async stop() {
      if (proc.exitCode === null) {
        proc.kill("SIGTERM");
        const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `check` until it returns a value other than undefined, or fails after `ms`. */
export async function eventually<T>(check: () => Promise<T | undefined>, ms = 10_000, what = "condition"): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
