// The client side of the schedule strip: which request to send, how to cache it,
// how a plan (from GET /deepcache/plan, computed by core.schedule.plan_run) becomes
// strip cells and text. No schedule arithmetic here: Python computes the plan.

export const NODE_WIDGETS = ["cache_interval", "cache_branch", "start_percent", "end_percent", "schedule", "center", "power"];
const PARAM_OF = { cache_interval: "interval", cache_branch: "branch" };

/** Query parameters for /deepcache/plan from the node's widget values and describeNode()'s result. */
export function planParams(values, desc) {
  const p = {};
  for (const w of NODE_WIDGETS) {
    const v = values[w];
    if (v !== undefined && v !== null && v !== "") p[PARAM_OF[w] ?? w] = String(v);
  }
  const s = desc.settings;
  p.steps = String(Math.round(s.steps));
  if (s.denoise !== undefined && s.denoise !== null) p.denoise = String(s.denoise);
  if (s.start_step !== undefined) p.start_step = String(Math.round(s.start_step));
  if (s.end_step !== undefined) p.end_step = String(Math.round(s.end_step));
  if (s.scheduler) p.scheduler = String(s.scheduler);
  if (s.sampler) p.sampler = String(s.sampler);
  if (s.source && s.source !== "ksampler") p.source = s.source;
  if (desc.arch) p.arch = desc.arch;
  if (desc.size) {
    p.width = String(desc.size.width);
    p.height = String(desc.size.height);
  }
  return p;
}

/** A stable key (sorted query string): the same settings give the same key. */
export function paramsKey(params) {
  return Object.keys(params).sort().map((k) => `${encodeURIComponent(k)}=${encodeURIComponent(params[k])}`).join("&");
}

export function planUrl(params) {
  return `/deepcache/plan?${paramsKey(params)}`;
}

/**
 * A small LRU cache of plan responses with in-flight de-duplication.
 * fetchJson(url) -> Promise<object>; an error response rejects.
 */
export class PlanCache {
  constructor(fetchJson, { max = 64 } = {}) {
    this.fetchJson = fetchJson;
    this.max = max;
    this.done = new Map();
    this.pending = new Map();
  }

  peek(key) {
    return this.done.get(key);
  }

  get(params) {
    const key = paramsKey(params);
    if (this.done.has(key)) {
      const v = this.done.get(key);
      this.done.delete(key);
      this.done.set(key, v); // most recently used last
      return Promise.resolve(v);
    }
    if (this.pending.has(key)) return this.pending.get(key);
    const p = Promise.resolve()
      .then(() => this.fetchJson(`/deepcache/plan?${key}`))
      .then((v) => {
        this.pending.delete(key);
        this.done.set(key, v);
        while (this.done.size > this.max) this.done.delete(this.done.keys().next().value);
        return v;
      }, (e) => {
        this.pending.delete(key);
        throw e;
      });
    this.pending.set(key, p);
    return p;
  }
}

/** fn runs once, `ms` after the last call (per key). */
export function debounce(fn, ms, { setTimer = setTimeout, clearTimer = clearTimeout } = {}) {
  const timers = new Map();
  return (key, ...args) => {
    if (timers.has(key)) clearTimer(timers.get(key));
    timers.set(key, setTimer(() => {
      timers.delete(key);
      fn(key, ...args);
    }, ms));
  };
}

export const KIND_LABEL = { refresh: "full (refresh)", cached: "cached", off: "full (off)" };

/** One strip cell per sampler step. */
export function stripCells(plan) {
  return (plan ?? []).map((kind, i) => ({
    step: i, kind, title: `step ${i + 1}: ${KIND_LABEL[kind] ?? kind}`,
  }));
}

export function countPlan(plan) {
  const c = { refresh: 0, cached: 0, off: 0 };
  for (const k of plan ?? []) if (k in c) c[k]++;
  return { ...c, full: c.refresh + c.off, steps: (plan ?? []).length };
}

export function fmtPercent(x, digits = 1) {
  return `${(100 * x).toFixed(digits)} %`;
}

/** "branch 0: 64x64 latent (512 px), recomputes 7.9 % of the U-Net (SD1.5)" */
export function branchText(resp) {
  if (!resp) return "";
  if (resp.branch_error) return resp.branch_error;
  const b = resp.branch_info;
  if (!b) return "";
  const [lh, lw] = b.latent;
  const [ph, pw] = b.pixels;
  const down = b.downscale && b.downscale > 1 ? `, 1/${b.downscale} of the latent` : "";
  return `branch ${b.branch}: works at ${lw}x${lh} latent (${pw}x${ph} px${down}), ` +
    `recomputes ${fmtPercent(b.cached_fraction)} of the U-Net (${resp.arch?.label ?? "?"})`;
}

export function speedupText(resp) {
  if (!resp || resp.estimated_speedup == null) return "";
  return `est. x${resp.estimated_speedup.toFixed(2)}`;
}

/** "20 steps: 7 full + 13 cached" (+ off) */
export function planText(resp) {
  if (!resp) return "";
  const c = countPlan(resp.plan);
  if (!c.steps) return "no sampling steps";
  let s = `${c.steps} steps: ${c.refresh} full + ${c.cached} cached`;
  if (c.off) s += ` + ${c.off} outside start/end`;
  if (!resp.enabled) s = `${c.steps} steps: caching off (interval 1 or start >= end)`;
  return s;
}

/** The text shown after a run, from the deepcache.stats payload. */
export function statsText(stats) {
  if (!stats) return "";
  if (stats.disabled_reason) return `last run: DeepCache off (${stats.disabled_reason})`;
  let s = `last run: ${stats.full_steps} full / ${stats.cached_steps} cached steps`;
  if (typeof stats.speedup === "number") {
    s += `, U-Net x${stats.speedup.toFixed(2)} measured`;
    if (typeof stats.saved_seconds === "number") s += ` (${stats.saved_seconds.toFixed(1)} s saved)`;
  }
  if (typeof stats.seconds === "number") s += `, sampling ${stats.seconds.toFixed(1)} s`;
  return s;
}

/** Does the plan the run used agree with the strip's plan? (null when either is missing) */
export function planMatches(a, b) {
  if (!Array.isArray(a) || !Array.isArray(b)) return null;
  return a.length === b.length && a.every((k, i) => k === b[i]);
}
