/**
 * Throughput benchmark (not a test): N no-op jobs enqueued in batches, then drained by one
 * worker (this process) with concurrency 10. Starts its own kyu on SQLite unless KYU_URL is
 * given. Prints one JSON line per run, then the median.
 *
 *   npm run bench                       # N=20000, 1 run
 *   BENCH_N=20000 BENCH_RUNS=3 npm run bench
 */
import { Client, Worker } from "../src/index.js";
import { startKyu } from "../test/kyu.js";

const N = Number(process.env.BENCH_N ?? 20_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 1);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 10);
const TYPE = "ts_noop";

async function once(): Promise<number> {
  const kyu = process.env.KYU_URL ? null : await startKyu();
  const client = new Client({ url: process.env.KYU_URL ?? kyu!.url });
  try {
    for (let i = 0; i < N; i += 1000) {
      const size = Math.min(1000, N - i);
      await client.enqueueMany(Array.from({ length: size }, (_, k) => ({ type: TYPE, payload: { n: i + k } })));
    }
    let done = 0;
    let finished!: () => void;
    const all = new Promise<void>((r) => (finished = r));
    const worker = new Worker(client, {
      handlers: {
        [TYPE]: () => {
          if (++done === N) finished();
          return null;
        },
      },
      concurrency: CONCURRENCY,
      handleSignals: false,
      waitMs: 1000,
    });
    const t0 = performance.now();
    const running = worker.run();
    await all;
    await worker.stop(); // flushes the last reports
    await running;
    const seconds = (performance.now() - t0) / 1000;
    const rate = N / seconds;
    console.log(JSON.stringify({ client: "typescript", jobs: N, concurrency: CONCURRENCY, seconds: +seconds.toFixed(3), jobs_per_second: Math.round(rate) }));
    return rate;
  } finally {
    await kyu?.stop();
  }
}

const rates: number[] = [];
for (let r = 0; r < RUNS; r++) rates.push(await once());
rates.sort((a, b) => a - b);
if (RUNS > 1) {
  console.log(JSON.stringify({ client: "typescript", runs: RUNS, median_jobs_per_second: Math.round(rates[Math.floor(RUNS / 2)]!) }));
}
