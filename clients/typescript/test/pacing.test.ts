/** How many jobs the worker holds ahead: no kyu needed. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Pacing } from "../src/pacing.js";

const measured = (jobMs: number, fetchMs: number, max = 100): Pacing => {
  const p = new Pacing(10, max);
  p.jobRan(jobMs);
  p.fetched(fetchMs);
  return p;
};

test("nothing ahead before measuring, or for jobs longer than half a fetch", () => {
  assert.equal(new Pacing(10, 100).ahead(), 0);
  assert.equal(measured(10_000, 2).ahead(), 0);
});

test("short jobs are fetched far ahead, up to the bound", () => {
  assert.equal(measured(0.5, 2).ahead(), 80);
  assert.equal(measured(0.01, 2).ahead(), 100);
  assert.equal(measured(0.01, 2, 0).ahead(), 0);
});

test("a job running long, or one long job ending, stops the prefetch", () => {
  assert.equal(measured(0.5, 2).ahead(1000), 0);
  const p = measured(0.5, 2);
  p.jobRan(10_000);
  assert.equal(p.ahead(), 0);
});
