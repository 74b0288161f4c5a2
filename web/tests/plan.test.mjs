import assert from "node:assert/strict";
import { test } from "node:test";

import { describeNode } from "../lib/graph.js";
import {
  PlanCache, branchText, countPlan, debounce, paramsKey, planMatches, planParams, planText, planUrl, statsText, stripCells,
} from "../lib/plan.js";
import { FakeGraph, checkpoint, deepcache, ksampler, ksamplerAdvanced } from "./fake_graph.mjs";

const VALUES = { cache_interval: 4, cache_branch: 2, start_percent: 0.1, end_percent: 0.9, schedule: "non-uniform", center: 0.3, power: 1.4 };

test("planParams: widget names become the route's parameters; sampler settings are passed through", () => {
  const g = new FakeGraph();
  const c = checkpoint(g);
  const d = deepcache(g);
  const k = ksampler(g, { steps: 30, denoise: 0.6, scheduler: "karras", sampler_name: "uni_pc" });
  g.connect(c, "MODEL", d, "model");
  g.connect(d, "MODEL", k, "model");
  const p = planParams(VALUES, describeNode(g, d));
  assert.deepEqual(p, {
    interval: "4", branch: "2", start_percent: "0.1", end_percent: "0.9", schedule: "non-uniform", center: "0.3",
    power: "1.4", steps: "30", denoise: "0.6", scheduler: "karras", sampler: "uni_pc", arch: "sd15",
  });
  const url = planUrl(p);
  assert.ok(url.startsWith("/deepcache/plan?arch=sd15&branch=2&center=0.3&denoise=0.6&end_percent=0.9"));
});

test("planParams for KSamplerAdvanced carries start/end step; for BasicScheduler the source", () => {
  const g = new FakeGraph();
  const d = deepcache(g);
  const k = ksamplerAdvanced(g, { steps: 25, start_at_step: 20, end_at_step: 10000 });
  g.connect(d, "MODEL", k, "model");
  const p = planParams(VALUES, describeNode(g, d));
  assert.equal(p.start_step, "20");
  assert.equal(p.end_step, "10000");
  assert.equal(p.denoise, "1");
  assert.equal(p.source, undefined);
  assert.equal(planParams(VALUES, { settings: { steps: 8, denoise: 1, source: "basic", scheduler: "simple" } }).source, "basic");
});

test("paramsKey is order-independent and escapes", () => {
  assert.equal(paramsKey({ b: "1", a: "x y" }), paramsKey({ a: "x y", b: "1" }));
  assert.equal(paramsKey({ a: "x&y" }), "a=x%26y");
});

test("stripCells and counts map the plan one cell per step", () => {
  const plan = ["off", "refresh", "cached", "cached", "refresh", "off"];
  const cells = stripCells(plan);
  assert.deepEqual(cells.map((c) => c.kind), plan);
  assert.deepEqual(cells.map((c) => c.step), [0, 1, 2, 3, 4, 5]);
  assert.match(cells[2].title, /step 3: cached/);
  assert.deepEqual(countPlan(plan), { refresh: 2, cached: 2, off: 2, full: 4, steps: 6 });
  assert.deepEqual(stripCells(undefined), []);
});

test("texts", () => {
  const resp = {
    plan: ["refresh", "cached", "cached", "refresh"], enabled: true, estimated_speedup: 2.4926,
    branch_info: { branch: 0, cached_fraction: 0.0787, latent: [64, 64], pixels: [512, 512], downscale: 1 },
    arch: { label: "SD1.5" },
  };
  assert.equal(planText(resp), "4 steps: 2 full + 2 cached");
  assert.equal(branchText(resp), "branch 0: works at 64x64 latent (512x512 px), recomputes 7.9 % of the U-Net (SD1.5)");
  assert.match(branchText({ ...resp, branch_info: { ...resp.branch_info, branch: 9, latent: [8, 8], pixels: [64, 64], downscale: 8 } }), /1\/8 of the latent/);
  assert.equal(branchText({ branch_error: "cache_branch 11 does not exist in SDXL: use 0..8" }), "cache_branch 11 does not exist in SDXL: use 0..8");
  assert.equal(planText({ plan: ["off", "off"], enabled: false }), "2 steps: caching off (interval 1 or start >= end)");
  assert.equal(statsText({ full_steps: 7, cached_steps: 13, seconds: 12.345, speedup: 2.49, saved_seconds: 7.06 }),
    "last run: 7 full / 13 cached steps, U-Net x2.49 measured (7.1 s saved), sampling 12.3 s");
  assert.equal(statsText({ disabled_reason: "not a U-Net" }), "last run: DeepCache off (not a U-Net)");
  assert.equal(statsText(null), "");
  assert.equal(planMatches(["a"], ["a"]), true);
  assert.equal(planMatches(["a"], ["b"]), false);
  assert.equal(planMatches(null, ["b"]), null);
});

test("PlanCache: one request per key, in-flight de-duplication, LRU eviction, errors not cached", async () => {
  const calls = [];
  let fail = false;
  const cache = new PlanCache(async (url) => {
    calls.push(url);
    if (fail) throw new Error("boom");
    return { url };
  }, { max: 2 });
  const [a, b] = await Promise.all([cache.get({ steps: "1" }), cache.get({ steps: "1" })]);
  assert.equal(a, b);
  assert.equal(calls.length, 1);
  assert.equal(calls[0], "/deepcache/plan?steps=1");
  await cache.get({ steps: "2" });
  await cache.get({ steps: "3" });
  assert.equal(cache.peek("steps=1"), undefined); // evicted
  assert.ok(cache.peek("steps=3"));
  fail = true;
  await assert.rejects(cache.get({ steps: "4" }), /boom/);
  fail = false;
  assert.deepEqual(await cache.get({ steps: "4" }), { url: "/deepcache/plan?steps=4" });
});

test("debounce: only the last call per key runs", async () => {
  const seen = [];
  const f = debounce((key, v) => seen.push([key, v]), 5);
  f("a", 1);
  f("a", 2);
  f("b", 3);
  await new Promise((r) => setTimeout(r, 30));
  assert.deepEqual(seen.sort(), [["a", 2], ["b", 3]]);
});
