/**
 * How many jobs a worker holds beyond its free slots. While a fetch is on its way each
 * slot finishes about `fetch time / job time` jobs, so the worker holds twice that per
 * slot (up to `max`): a flood of short jobs comes in large fetches and no slot idles for
 * a round trip. Before both times are known, and when jobs run longer than half a fetch,
 * nothing is held ahead: leased jobs would only wait here while other workers idle. A
 * job still running longer than the average counts as the average.
 */
const ALPHA = 0.1;

const average = (old: number | undefined, sample: number): number =>
  old === undefined ? sample : old + ALPHA * (sample - old);

export class Pacing {
  private jobMs: number | undefined;
  private fetchMs: number | undefined;

  constructor(
    private readonly concurrency: number,
    private readonly max: number,
  ) {}

  jobRan(ms: number): void {
    this.jobMs = average(this.jobMs, Math.max(0, ms));
  }

  /** A fetch that brought jobs (a long poll's waiting says nothing of the trip). */
  fetched(ms: number): void {
    this.fetchMs = average(this.fetchMs, Math.max(0, ms));
  }

  /** Jobs to hold beyond the free slots, given how long the oldest running job has run. */
  ahead(runningForMs = 0): number {
    if (this.max === 0 || this.jobMs === undefined || this.fetchMs === undefined) return 0;
    const job = Math.max(this.jobMs, runningForMs, 0.001);
    return Math.min(this.max, Math.floor((this.concurrency * 2 * this.fetchMs) / job));
  }
}
