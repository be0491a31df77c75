/**
 * The worker protocol's messages as they travel (docs/worker-protocol.md), and the calls
 * that carry them. Only the worker uses this; names stay snake_case like the wire.
 */
import type { Client } from "./client.js";

export interface FetchRequest {
  worker_id: string;
  types: string[];
  queues?: string[];
  max: number;
  wait_ms: number;
  lease_seconds?: number;
  host?: string;
  version?: string;
}

export interface LeasedJob {
  job_id: string;
  type: string;
  payload: unknown;
  queue: string;
  provider: string | null;
  priority: number;
  attempt: number;
  max_attempts: number;
  lease: string;
  lease_expires_at: string;
  deadline: string | null;
  heartbeat_ms: number;
}

export interface FetchAnswer {
  jobs: LeasedJob[];
  stop: boolean;
}

export interface HeartbeatAnswer {
  lease_expires_at: string;
  cancel: boolean;
  stop: boolean;
}

export interface Ack {
  job_id: string;
  lease: string;
  op: "complete" | "fail" | "snooze" | "release";
  result?: unknown;
  kind?: "retryable" | "non_retryable" | "rate_limit" | "timeout" | "canceled";
  message?: string;
  retry_after_seconds?: number;
  seconds?: number;
}

export interface AckResult {
  job_id: string;
  ok: boolean;
  status?: string;
  code?: string;
}

/** Asks for up to `max` jobs; the answer may wait up to `wait_ms` (a long poll). */
export function fetchJobs(client: Client, req: FetchRequest, signal?: AbortSignal): Promise<FetchAnswer> {
  const init: { signal?: AbortSignal; extraMs: number } = { extraMs: req.wait_ms };
  if (signal) init.signal = signal;
  return client.request<FetchAnswer>("POST", "/fetch", req, init);
}

export function heartbeat(client: Client, jobId: string, body: { lease: string; progress?: number }): Promise<HeartbeatAnswer> {
  return client.request<HeartbeatAnswer>("POST", `/jobs/${encodeURIComponent(jobId)}/heartbeat`, body);
}

export async function sendAcks(client: Client, acks: Ack[]): Promise<AckResult[]> {
  return (await client.request<{ results: AckResult[] }>("POST", "/acks", { acks })).results;
}

/** Asks kyu to stop this worker: its waiting fetch answers at once. */
export function stopWorker(client: Client, workerId: string): Promise<unknown> {
  return client.request("POST", `/workers/${encodeURIComponent(workerId)}/stop`, {});
}
