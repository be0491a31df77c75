/**
 * The example's worker process: runs `chatwork_rooms_sync` jobs from kyu, reporting
 * progress per room; a cancel aborts the signal the Chatwork requests use. Stops
 * gracefully on SIGTERM.
 *
 *   KYU_URL=http://127.0.0.1:7878 CHATWORK_API_URL=… CHATWORK_API_TOKEN=… node dist/worker.js
 */
import { Client, NonRetryable, Worker, type JobContext, type WorkerJob } from "@kyu/client";
import { syncChatworkRooms } from "./chatwork-sync.js";

const base = process.env.CHATWORK_API_URL ?? "https://api.chatwork.com";
const token = process.env.CHATWORK_API_TOKEN ?? "";

async function chatworkRoomsSync(job: WorkerJob<{ user_id?: string }>, ctx: JobContext) {
  if (!token) throw new NonRetryable("CHATWORK_API_TOKEN is not set");
  return syncChatworkRooms(base, token, ctx.signal, async (done, total) => {
    await ctx.progress((100 * done) / total);
    console.log(`[worker] job ${job.id}: room ${done}/${total}`);
  });
}

const client = new Client({ url: process.env.KYU_URL ?? "http://127.0.0.1:7878", token: process.env.KYU_TOKEN });
const worker = new Worker(client, { handlers: { chatwork_rooms_sync: chatworkRoomsSync }, concurrency: 4 });
console.log(`[worker] ${worker.id} running`);
await worker.run();
console.log("[worker] stopped");
